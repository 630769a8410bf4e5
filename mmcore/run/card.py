"""The model card: a ``README.md`` a person can read, in every run folder and export bundle.

It says where the data came from (its paths, or an in-memory dataset), the splits and their
sizes, the final metrics with the modality report, what the model is made of (each modality's
plugin and encoder, the fusion, the heads, the key training settings), the versions of mmcore
and of the plugins, the data's licence (``data.license``; "not stated" without it) and a
placeholder for the intended use.

Training writes it (atomically) at the end of :meth:`mmcore.train.Trainer.fit`. ``mmcore
evaluate`` adds (or replaces) one block per split or data file evaluated in its "Evaluations"
section and leaves the rest of the card as it is, edits included. ``mmcore export`` copies the
run's card into the bundle with a section on the bundle itself, before the manifest's checksums
are taken, so the bundle's card is checked like its other files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CARD = "README.md"
#: the card's first line; a README.md without it is not overwritten
MARKER = "<!-- model card written by mmcore -->"
INTENDED_USE = ("Trained by mmcore; evaluate before use. Replace this paragraph with what the "
                "model is for, who may use it, and where it must not be used.")
#: train settings shown in the card, in this order
TRAIN_KEYS = ("epochs", "batch_size", "lr", "optimizer", "scheduler", "weight_decay",
              "precision", "seed", "monitor", "early_stopping", "sampler",
              "modality_dropout", "modality_loss", "ensemble", "ema")
SPLIT_ORDER = ("train", "validation", "test")
EVALUATIONS = "## Evaluations"
#: the line under an evaluation's heading that names what was evaluated (a split or a file)
EVALUATION_KEY = "<!-- mmcore evaluation: {} -->"


def _cell(value: Any) -> str:
    """A table cell: numbers rounded, pipes escaped, ``-`` for nothing."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else str(value)
    if isinstance(value, dict | list):
        value = json.dumps(value, sort_keys=True)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def data_source(data: Mapping[str, Any]) -> list[str]:
    """Lines on where the rows came from, from ``spec.json``'s ``data``."""
    files = [(k, data[k]) for k in ("path", "train", "validation", "test") if data.get(k)]
    if not files:
        return ["- source: in-memory dataset (`data.dataset`, given from Python; not recorded)"]
    lines = [f"- {'source' if k == 'path' else k}: `{v}`" for k, v in files]
    if data.get("format", "auto") != "auto":
        lines.append(f"- format: {data['format']}")
    if data.get("split_column"):
        lines.append(f"- splits from the column `{data['split_column']}`")
    elif data.get("path") and isinstance(data.get("split"), Mapping):
        split = data["split"]
        how = (f"validation {split.get('validation')}, test {split.get('test')} of the rows, "
               f"seed {split.get('seed')}")
        if split.get("group_column"):
            how += f", whole groups of `{split['group_column']}`"
        lines.append(f"- splits made by mmcore when the data has none: {how}")
    return lines


def _licence(data: Mapping[str, Any]) -> str:
    licence = data.get("license")
    if licence:
        return f"- licence: {_cell(licence)}"
    return ("- licence: not stated (set `data.license` in the spec, or write it here; check it "
            "before sharing the model)")


def _splits(sizes: Mapping[str, int] | None) -> list[str]:
    if not sizes:
        return ["Split sizes were not recorded."]
    names = [s for s in SPLIT_ORDER if s in sizes] + [s for s in sizes if s not in SPLIT_ORDER]
    return _table(["split", "rows"], [[s, sizes[s]] for s in names])


def _metrics(final: Mapping[str, Any] | None, report: Mapping[str, Any] | None) -> list[str]:
    if not final:
        return ["No metrics were recorded."]
    lines = [f"Best epoch {final.get('best_epoch')} of {final.get('epochs')} by "
             f"{final.get('monitor')} on validation ({_cell(final.get('best_value'))})"
             + (", stopped early." if final.get("stopped_early") else ".")]
    splits = [s for s in ("validation", "test") if isinstance(final.get(s), Mapping)]
    if splits:
        names: list[str] = []
        for s in splits:
            names += [k for k in final[s] if k not in names]
        lines += ["", *_table(["metric", *splits], [[k, *(final[s].get(k) for s in splits)]
                                                    for k in names])]
    if "test" not in splits:
        lines += ["", "The test split was not evaluated (`train.final_test=false`, or no test "
                  "split): evaluate it with `mmcore evaluate` before trusting these figures."]
    if report:
        lines += ["", f"What each modality contributes ({report.get('split')} split, "
                  f"{report.get('monitor')}): with all of them, each one hidden, each alone.",
                  "", *_report_table(report)]
    return lines


def _report_table(report: Mapping[str, Any]) -> list[str]:
    """The modality report as a Markdown table (read from JSON: anything missing is '-')."""
    monitor = report.get("monitor")
    base = (report.get("baseline") or {}).get(monitor)
    rows = [["(all)", base, "", base]]
    for name, entry in (report.get("modalities") or {}).items():
        if not isinstance(entry, Mapping):
            continue
        without = (entry.get("without") or {}).get(monitor)
        only = (entry.get("only") or {}).get(monitor)
        change = (f"{without - base:+.4f}" if isinstance(without, int | float)
                  and isinstance(base, int | float) else "-")
        rows.append([name, without, change, only])
    return _table(["modality", "without", "change", "only"], rows)


def _model(spec: Mapping[str, Any], encoders: Mapping[str, str] | None) -> list[str]:
    rows = []
    for name, mod in spec.get("modalities", {}).items():
        columns = mod.get("column")
        rows.append([name, mod.get("plugin") or name,
                     ", ".join(columns) if isinstance(columns, list) else columns,
                     (encoders or {}).get(name), mod.get("options") or None])
    lines = ["Modalities:", "", *_table(["modality", "plugin", "column", "encoder", "options"],
                                         rows)]
    fusion = spec.get("fusion", {})
    lines += ["", f"Fusion: `{fusion.get('name')}`"
              + (f" with {_cell(fusion['options'])}" if fusion.get("options") else "")]
    heads = []
    for name, head in spec.get("heads", {}).items():
        options = dict(head.get("options") or {})
        classes = options.pop("classes", None)
        heads.append([name, head.get("kind"), head.get("target"),
                      len(classes) if isinstance(classes, list) else None, options or None])
    lines += ["", "Heads:", "", *_table(["head", "kind", "target", "classes", "options"], heads)]
    train = spec.get("train", {})
    settings = ", ".join(f"{k}={train[k]:g}" if isinstance(train[k], float)
                         else f"{k}={_cell(train[k])}" for k in TRAIN_KEYS
                         if k in train and train[k] is not None
                         and not (k == "ensemble" and train[k] == 1))
    lines += ["", f"Training: {settings}."]
    return lines


def _versions(spec: Mapping[str, Any], mmcore_version: str) -> list[str]:
    lines = [f"- mmcore {mmcore_version}"]
    lines += [f"- {dist} {version}" for dist, version in (spec.get("plugins") or {}).items()]
    return lines


def render_card(spec: Mapping[str, Any], final: Mapping[str, Any] | None = None,
                report: Mapping[str, Any] | None = None,
                sizes: Mapping[str, int] | None = None,
                encoders: Mapping[str, str] | None = None,
                mmcore_version: str | None = None) -> str:
    """The card's Markdown from a run's ``spec.json`` data, ``metrics.json``, modality report,
    split sizes (rows per split) and encoder descriptions (class and parameters)."""
    if mmcore_version is None:
        from mmcore.version import __version__

        mmcore_version = __version__
    name = spec.get("name", "mmcore-run")
    lines = [MARKER, f"# {name}", "",
             "A multimodal model trained with mmcore. This card was written by mmcore from the "
             "run's spec and metrics.", "",
             "## Intended use", "", INTENDED_USE, "",
             "## Data", "", *data_source(spec.get("data", {})), _licence(spec.get("data", {})),
             "",
             "Rows per split (after bad rows were left out):", "", *_splits(sizes), "",
             "## Metrics", "", *_metrics(final, report), "",
             "## Model", "", *_model(spec, encoders), "",
             "## Versions", "", *_versions(spec, mmcore_version), ""]
    return "\n".join(lines)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_run_card(run_dir: str | Path, final: Mapping[str, Any] | None = None,
                   report: Mapping[str, Any] | None = None,
                   sizes: Mapping[str, int] | None = None,
                   encoders: Mapping[str, str] | None = None) -> Path | None:
    """Write ``run_dir/README.md`` (atomically) from the run's ``spec.json`` and what is given
    (``metrics.json`` and ``modality_report.json`` are read when not given). A README.md
    that mmcore did not write is left alone (returns ``None``)."""
    from mmcore.run.atomic import atomic_write_text

    run_dir = Path(run_dir)
    path = run_dir / CARD
    if path.is_file() and not is_card(path):
        return None
    spec = _read(run_dir / "spec.json") or {}
    final = final if final is not None else _read(run_dir / "metrics.json")
    report = report if report is not None else _read(run_dir / "modality_report.json")
    atomic_write_text(path, render_card(spec, final, report, sizes, encoders))
    return path


def is_card(path: Path) -> bool:
    """Whether ``path`` is a card mmcore wrote (its first line is :data:`MARKER`)."""
    try:
        with path.open(encoding="utf-8") as fh:
            return fh.readline().strip() == MARKER
    except (OSError, UnicodeDecodeError):
        return False


def evaluation_block(result: Mapping[str, Any], report: Mapping[str, Any] | None = None, *,
                     data: str | Path | None = None, overrides: Iterable[str] = (),
                     when: datetime | None = None) -> tuple[str, list[str]]:
    """What :meth:`mmcore.inference.predictor.Predictor.evaluate` found, as a block of the
    card: its key (the split's name, or the data file's absolute path) and its Markdown lines
    (what was evaluated, when, with which overrides, every metric, and the modality report if
    given)."""
    when = when or datetime.now(timezone.utc)
    if data is not None:
        where = Path(data).resolve()
        key, title = f"file {where}", f"The data file `{where}`"
    else:
        key, title = f"split {result.get('split')}", f"The {result.get('split')} split"
    how = f"Evaluated {when:%Y-%m-%d %H:%M} UTC by `mmcore evaluate`"
    overrides = list(overrides)
    if overrides:
        how += " with " + ", ".join(f"`{o}`" for o in overrides)
    lines = [f"### {title}, {result.get('rows')} rows", EVALUATION_KEY.format(key), "",
             how + ".", "",
             *_table(["metric", "value"], [[k, v] for k, v in
                                           (result.get("metrics") or {}).items()])]
    if report:
        lines += ["", f"What each modality contributes ({report.get('monitor')}): with all of "
                  "them, each one hidden, each alone.", "", *_report_table(report)]
    return key, lines


def add_evaluation(card: str, key: str, block: list[str]) -> str:
    """``card`` with ``block`` in its "Evaluations" section: in place of the block with the
    same ``key``, else after the others. The section is made (before "## Model") when the card
    has none; every other line of the card is kept."""
    lines = card.rstrip("\n").split("\n")
    if EVALUATIONS not in lines:
        at = lines.index("## Model") if "## Model" in lines else len(lines)
        intro = ("The figures of `mmcore evaluate`, the newest of each split or data file "
                 "(the metrics above are training's).")
        lines[at:at] = [EVALUATIONS, "", intro, ""]
    start = lines.index(EVALUATIONS) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    heads = [i for i in range(start, end) if lines[i].startswith("### ")] + [end]
    blocks = [lines[a:b] for a, b in zip(heads, heads[1:], strict=False)]
    marker = EVALUATION_KEY.format(key)
    new = [*block, ""]
    if any(marker in b for b in blocks):
        blocks = [new if marker in b else b for b in blocks]
    else:
        if blocks and blocks[-1][-1] != "":
            blocks[-1] = [*blocks[-1], ""]
        blocks.append(new)
    section = lines[start:heads[0]] + [line for b in blocks for line in b]
    return "\n".join(lines[:start] + section + lines[end:]).rstrip("\n") + "\n"


def write_evaluation(run_dir: str | Path, result: Mapping[str, Any],
                     report: Mapping[str, Any] | None = None, *,
                     data: str | Path | None = None, overrides: Iterable[str] = (),
                     when: datetime | None = None) -> Path | None:
    """Add an evaluation (:func:`evaluation_block`) to ``run_dir``'s card, atomically; a run
    without a card gets one rendered from its files first. A README.md that mmcore did not
    write is left alone (returns ``None``)."""
    from mmcore.run.atomic import atomic_write_text

    run_dir = Path(run_dir)
    path = run_dir / CARD
    if path.is_file():
        if not is_card(path):
            return None
        text = path.read_text(encoding="utf-8")
    else:  # modality_report.json may be the evaluation's own by now: not training's figures
        text = render_card(_read(run_dir / "spec.json") or {}, _read(run_dir / "metrics.json"))
    key, block = evaluation_block(result, report, data=data, overrides=overrides, when=when)
    atomic_write_text(path, add_evaluation(text, key, block))
    return path


def bundle_card(run_dir: str | Path, format: str, graph_file: str) -> str:
    """The card of a bundle exported from ``run_dir``: the run's card (rendered from its
    files when the run has none) and a section on the bundle."""
    run_dir = Path(run_dir)
    path = run_dir / CARD
    if path.is_file() and is_card(path):
        text = path.read_text(encoding="utf-8")
    else:
        text = render_card(_read(run_dir / "spec.json") or {}, _read(run_dir / "metrics.json"),
                           _read(run_dir / "modality_report.json"))
    return text.rstrip("\n") + "\n" + "\n".join([
        "", "## This bundle", "",
        f"- exported from the run folder `{run_dir.resolve()}`",
        f"- graph: `{graph_file}` ({format}); inputs, outputs and preprocessing are described "
        "in `manifest.json`",
        "- every file, this card included, is listed with its SHA-256 in `manifest.json`",
        "- serve it with `mmcore serve`, or load it with `mmcore.inference.runtime`", ""])
