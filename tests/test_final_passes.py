"""The end of a run evaluates no split twice: the calibration and the final validation figures
reuse the best epoch's validation pass, and the modality report's groups come from the final
pass over the test split (``Trainer.final_groups``); the figures are those of evaluating the
saved run again."""

from __future__ import annotations

import json

import pytest
import torch

from mmcore import Trainer, load
from tests import train_toy as toy


def _counted(monkeypatch) -> list[tuple[str, str, tuple[frozenset[str], ...]]]:
    """Every evaluation a trainer runs: ``(phase, split, groups)``; phase is ``epochs`` or
    ``end`` (after the last epoch)."""
    calls: list[tuple[str, str, tuple[frozenset[str], ...]]] = []
    phase = ["epochs"]
    evaluate, evaluate_kept, finish = Trainer.evaluate, Trainer.evaluate_kept, Trainer._finish

    def counted(self, split, transform=None):
        calls.append((phase[0], split, ()))
        return evaluate(self, split, transform)

    def counted_kept(self, split, groups):
        calls.append((phase[0], split, tuple(groups)))
        return evaluate_kept(self, split, groups)

    def finishing(self):
        phase[0] = "end"
        return finish(self)

    monkeypatch.setattr(Trainer, "evaluate", counted)
    monkeypatch.setattr(Trainer, "evaluate_kept", counted_kept)
    monkeypatch.setattr(Trainer, "_finish", finishing)
    return calls


@pytest.mark.parametrize("calibrate", [True, False])
def test_the_end_of_a_run_passes_over_each_split_once(tmp_path, monkeypatch, calibrate):
    data = toy.write_data(tmp_path / "data.csv")
    spec = toy.labelled(tmp_path, data, toy.registry(), epochs=3, callbacks=[])
    spec.heads["label"].options["calibrate"] = calibrate
    calls = _counted(monkeypatch)
    torch.manual_seed(0)
    trainer = Trainer(spec, output=tmp_path / "run", quiet=True, registry=toy.registry())
    final = trainer.fit()

    assert [c for c in calls if c[0] == "epochs"] == [("epochs", "validation", ())] * 3
    end = [c for c in calls if c[0] == "end"]
    every = frozenset({"a", "b"})
    # one pass over test for the figures and the report's "without"/"only" groups; none over
    # validation (the best epoch's pass is scored again)
    assert end == [("end", "test", (every, frozenset({"b"}), frozenset({"a"})))]
    assert trainer.best_validation is not None

    # the figures are those of the saved run evaluated again, pass by pass
    monkeypatch.undo()
    predictor = load(tmp_path / "run", registry=toy.registry())
    for split in ("validation", "test"):
        again = predictor.evaluate(split=split)["metrics"]
        assert final[split] == pytest.approx(again, abs=1e-6), split
    report = json.loads((tmp_path / "run" / "modality_report.json").read_text())
    assert report == predictor.modality_report(save=False)

    # the drift statistics measured in those passes are those of separate passes
    from mmcore.drift import drift_report, feature_statistics, measure_reference

    batch = spec.train.batch_size
    reference = json.loads((tmp_path / "run" / "drift_reference.json").read_text())
    alone = measure_reference(trainer.model, trainer.data, batch, trainer.device)
    assert _flat(reference) == pytest.approx(_flat(alone), abs=1e-9)
    test = feature_statistics(trainer.model, trainer.data.loader("test", batch_size=batch,
                                                                 shuffle=False), trainer.device)
    assert _flat(trainer.test_drift) == pytest.approx(
        _flat(drift_report(alone, test, "test")), abs=1e-9)


def _flat(value, prefix=""):
    """Nested dicts and lists as ``{path: leaf}``."""
    items = value.items() if isinstance(value, dict) else \
        enumerate(value) if isinstance(value, list) else None
    if items is None:
        return {prefix: value}
    return {k: v for key, item in items for k, v in _flat(item, f"{prefix}{key}/").items()}


def test_a_resumed_run_without_its_best_pass_evaluates_validation(tmp_path, monkeypatch):
    data = toy.write_data(tmp_path / "data.csv")
    spec = toy.labelled(tmp_path, data, toy.registry(), epochs=2, callbacks=[])
    spec.heads["label"].options["calibrate"] = True
    Trainer(spec, output=tmp_path / "run", quiet=True, registry=toy.registry(),
            report=False).fit()
    calls = _counted(monkeypatch)
    trainer = Trainer(spec, output=tmp_path / "run", resume=True, quiet=True,
                      registry=toy.registry(), report=False)
    trainer.fit()
    assert trainer.best_validation is None  # nothing trained in this session
    assert [c[1] for c in calls] == ["validation", "test"]


def test_feature_statistics_leave_out_absent_rows_and_add_up_across_shares():
    from mmcore.batch import Features
    from mmcore.evaluate.features import FeatureStatistics

    values = torch.tensor([[1.0, 2.0], [float("nan"), 5.0], [3.0, 6.0], [7.0, 8.0]])
    present = torch.tensor([True, False, True, True])
    whole = FeatureStatistics(["a"])
    whole.add("a", Features(values, present))
    first, second = FeatureStatistics(["a"]), FeatureStatistics(["a"])
    first.add("a", Features(values[:2], present[:2]))
    second.add("a", Features(values[2:], present[2:]))
    kept = values[present].double()
    expected = {"rows": 3, "mean": kept.mean(0).tolist(),
                "std": kept.std(0, unbiased=False).tolist()}
    for stats in (whole, first.cpu().merge([second.cpu()])):
        got = stats.result()["a"]
        assert got["rows"] == 3
        assert got["mean"] == pytest.approx(expected["mean"])
        assert got["std"] == pytest.approx(expected["std"])
    assert FeatureStatistics(["a", "b"]).result() == {"a": {"rows": 0}, "b": {"rows": 0}}


def test_evaluations_read_eval_batch_size_rows_at_a_time_and_give_the_same_figures(
        tmp_path, monkeypatch):
    data = toy.write_data(tmp_path / "data.csv")
    seen: dict[str, list[int]] = {}
    figures = {}
    loader_of = Trainer._evaluation_loader
    for size in (1, "auto"):
        spec = toy.labelled(tmp_path / str(size), data, toy.registry(), epochs=2, batch_size=2,
                            eval_batch_size=size, callbacks=[])
        sizes = seen.setdefault(str(size), [])

        def recorded(self, split, sizes=sizes):
            batches = list(loader_of(self, split))
            sizes.extend(len(batch) for batch in batches)
            return batches

        monkeypatch.setattr(Trainer, "_evaluation_loader", recorded)
        torch.manual_seed(0)
        figures[str(size)] = Trainer(spec, output=tmp_path / f"run{size}", quiet=True,
                                     registry=toy.registry()).fit()
    assert set(seen["1"]) == {1}
    assert max(seen["auto"]) == 8  # 4 x batch_size (the toy's splits have 12 rows)
    one, auto = _flat(figures["1"]), _flat(figures["auto"])
    assert one.keys() == auto.keys()
    for key, value in one.items():
        if isinstance(value, float):
            assert value == pytest.approx(auto[key], rel=1e-3, abs=1e-5), key
        else:
            assert value == auto[key], key
