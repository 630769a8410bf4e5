"""``mmcore train``, ``mmcore evaluate`` and ``mmcore predict`` on a tiny run."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch

from mmcore.cli import main
from mmcore.plugins.default import reset_registry
from tests import train_toy as toy


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """The CLI sees the toy plugin through the process-wide registry; one run is trained
    with ``mmcore train`` and shared (read-only) by the tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_registry(toy.registry())
    root = tmp_path_factory.mktemp("cli")
    data = toy.write_data(root / "data.csv")
    spec_file = toy.write_spec(root / "spec.py", toy.spec_dict(data, root / "cache"))
    run = root / "run"
    code = main(["train", str(spec_file), "--output", str(run), "--quiet", "train.epochs=2"])
    yield {"root": root, "run": run, "data": data, "spec": spec_file, "code": code}
    reset_registry(None)
    torch.set_num_threads(before)


def test_train_prints_where_the_run_went_and_test_metrics(cli_run, capsys):
    assert cli_run["code"] == 0
    run = cli_run["run"]
    final = json.loads((run / "metrics.json").read_text())
    assert final["epochs"] == 2  # the override applied
    assert (run / "model.safetensors").is_file() and (run / "metrics.csv").is_file()
    plotted = [(run / "training_curves.png").is_file(), (run / "confusion_label.png").is_file()]
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert plotted == [has_matplotlib, has_matplotlib]


def test_train_no_plots_leaves_the_pictures_to_mmcore_plots(cli_run):
    run = cli_run["root"] / "no-plots"
    args = ["train", str(cli_run["spec"]), "--output", str(run), "--quiet", "--no-plots",
            "train.epochs=1"]
    assert main(args) == 0
    assert (run / "confusion.json").is_file() and not list(run.glob("*.png"))


def test_train_output_text(cli_run, tmp_path, capsys):
    code = main(["train", str(cli_run["spec"]), "--output", str(tmp_path / "r"), "--quiet",
                 "train.epochs=1", "train.callbacks=[]"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"run saved to {tmp_path / 'r'}" in out
    assert "best epoch: 1 (label.accuracy = " in out and "\ntest: loss " in out
    assert "modality report (test split)" in out
    assert not (tmp_path / "r" / "metrics.csv").exists()  # no csv callback
    assert (tmp_path / "r" / "modality_report.json").is_file()


def test_train_no_test_leaves_the_test_split_alone(cli_run, tmp_path, capsys):
    code = main(["train", str(cli_run["spec"]), "--output", str(tmp_path / "r"), "--quiet",
                 "--no-test", "train.epochs=1"])
    out = capsys.readouterr().out
    assert code == 0 and "\nvalidation: loss " in out
    assert "\ntest: " not in out and "modality report (validation split)" in out
    final = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert "validation" in final and "test" not in final
    report = json.loads((tmp_path / "r" / "modality_report.json").read_text())
    assert report["split"] == "validation"


def test_train_no_report_skips_the_modality_report(cli_run, tmp_path, capsys):
    code = main(["train", str(cli_run["spec"]), "--output", str(tmp_path / "r"), "--quiet",
                 "--no-report", "train.epochs=1"])
    out = capsys.readouterr().out
    assert code == 0 and "best epoch: 1" in out
    assert "modality report" not in out
    assert not (tmp_path / "r" / "modality_report.json").exists()


def test_train_errors_are_reported_without_traceback(cli_run, capsys):
    code = main(["train", str(cli_run["spec"]), "--output", str(cli_run["run"]), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "already holds a run" in err and "Traceback" not in err
    code = main(["train", str(cli_run["spec"]), "train.monitor=label.nope", "--quiet",
                 "--output", str(cli_run["root"] / "other")])
    assert code == 2 and "train.monitor" in capsys.readouterr().err


def test_evaluate_prints_metrics_and_the_modality_report(cli_run, capsys):
    assert main(["evaluate", str(cli_run["run"]), "--split", "validation"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("validation (12 rows)")
    assert "label.accuracy" in out and "modality report (validation split)" in out
    table = out[out.index("modality report"):].splitlines()
    assert [line.split()[0] for line in table[3:6]] == ["(all)", "a", "b"]
    report = json.loads((cli_run["run"] / "modality_report.json").read_text())
    assert report["split"] == "validation" and set(report["modalities"]) == {"a", "b"}
    assert main(["evaluate", str(cli_run["run"]), "--json", "--no-report"]) == 0
    result = json.loads(capsys.readouterr().out)
    final = json.loads((cli_run["run"] / "metrics.json").read_text())
    assert result["split"] == "test" and result["modality_report"] is None
    assert result["metrics"] == pytest.approx(final["test"])


def test_predict_reads_csv_jsonl_json_and_writes_jsonl_or_csv(cli_run, tmp_path, capsys):
    with open(cli_run["data"], newline="") as fh:
        rows = [r for r in csv.DictReader(fh)][:4]
    source = tmp_path / "in.csv"
    with open(source, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["x", "z"])
        writer.writeheader()
        writer.writerows({"x": r["x"], "z": r["z"]} for r in rows)
    out_csv = tmp_path / "out.csv"
    assert main(["predict", str(cli_run["run"]), "--input", str(source), "--output",
                 str(out_csv)]) == 0
    with open(out_csv, newline="") as fh:
        written = list(csv.DictReader(fh))
    assert len(written) == 4 and set(written[0]) == {"label.label", "label.probability"}
    assert "4 prediction(s) written" in capsys.readouterr().err

    lines = tmp_path / "in.jsonl"
    lines.write_text("".join(json.dumps({"x": float(r["x"]), "z": float(r["z"])}) + "\n"
                             for r in rows))
    assert main(["predict", str(cli_run["run"]), "--input", str(lines)]) == 0
    from_jsonl = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p["label"]["label"] for p in from_jsonl] == [w["label.label"] for w in written]

    listing = tmp_path / "in.json"
    listing.write_text(json.dumps([{"x": float(r["x"]), "z": float(r["z"])} for r in rows]))
    out_jsonl = tmp_path / "out.jsonl"
    assert main(["predict", str(cli_run["run"]), "-i", str(listing), "-o", str(out_jsonl)]) == 0
    assert [json.loads(line) for line in out_jsonl.read_text().splitlines()] == from_jsonl


def test_predict_errors(cli_run, tmp_path, capsys):
    bad = tmp_path / "in.jsonl"
    bad.write_text('{"x": 1.0, "z": 2.0}\n{"x": \n')
    assert main(["predict", str(cli_run["run"]), "--input", str(bad)]) == 2
    assert "in.jsonl, line 2: invalid JSON" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text('{"x": 1.0, "z": 2.0}\n')
    assert main(["predict", str(tmp_path), "--input", str(good)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    other = tmp_path / "in.txt"
    other.write_text("x")
    assert main(["predict", str(cli_run["run"]), "--input", str(other)]) == 2
    assert "expected .csv, .tsv, .jsonl, .ndjson or .json" in capsys.readouterr().err
