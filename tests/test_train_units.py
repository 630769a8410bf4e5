"""Trainer building blocks on hand-made batches: schedules, optimizers, modality masking,
losses and metrics, monitor choice, device and precision checks, callbacks."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

import mmcore
from mmcore.batch import Batch, ModalityBatch
from mmcore.errors import PluginError, SpecError
from mmcore.evaluate.ablation import format_report, modality_report
from mmcore.evaluate.masking import dropout_masks, hide, hide_all, modality_dropout
from mmcore.evaluate.split import evaluate_model, weighted_loss
from mmcore.fusions.concat import ConcatFusion
from mmcore.heads.classification import ClassificationHead
from mmcore.heads.regression import RegressionHead
from mmcore.model import MultimodalModel
from mmcore.spec import TrainSpec
from mmcore.strategy import load_optimizer_state, resolve_device
from mmcore.train.callbacks import CSVLogger, callback_manager
from mmcore.train.optim import (
    build_optimizer,
    build_scheduler,
    lr_factor,
    parameter_groups,
)
from mmcore.train.settings import (
    check_precision,
    resolve_epochs,
    resolve_monitor,
)
from tests.toy import ToyModality, ToyOptions


def test_warmup_then_cosine_and_constant():
    cosine = lr_factor("cosine", warmup_steps=4, total_steps=14)
    assert [cosine(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert cosine(4) == 1.0
    assert cosine(9) == pytest.approx(0.5)
    assert cosine(14) == pytest.approx(0.0) and cosine(20) == pytest.approx(0.0)
    constant = lr_factor("constant", warmup_steps=2, total_steps=10)
    assert [constant(s) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]
    assert lr_factor("cosine", 0, 10)(0) == 1.0


def test_scheduler_sets_learning_rate_per_optimizer_step():
    model = nn.Linear(2, 2)
    train = TrainSpec(lr=0.1, scheduler="cosine", warmup_steps=2)
    opt = build_optimizer(model, train)
    sched = build_scheduler(opt, train, total_steps=6)
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(0.05) and seen[1] == pytest.approx(0.1)
    assert seen[2] == pytest.approx(0.1) and seen[-1] < 0.03


def test_optimizers_and_weight_decay_groups():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    groups = parameter_groups(model, 0.5)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.5 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model[0].weight)}
    assert isinstance(build_optimizer(model, TrainSpec()), torch.optim.AdamW)
    assert isinstance(build_optimizer(model, TrainSpec(optimizer="adam")), torch.optim.Adam)
    sgd = build_optimizer(model, TrainSpec(optimizer="sgd"))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9


def test_an_older_checkpoints_optimizer_state_keeps_this_optimizers_update_kind():
    # checkpoints written before the fused update hold foreach groups without names
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    groups = [{k: v for k, v in g.items() if k not in ("name", "lr")}
              for g in parameter_groups(model, 0.01)]
    old = torch.optim.AdamW(groups, lr=1e-3, foreach=True)
    model(torch.randn(2, 3)).sum().backward()
    old.step()
    new = build_optimizer(model, TrainSpec())
    assert new.param_groups[0]["fused"] is True
    load_optimizer_state(new, old.state_dict())
    assert [g["fused"] for g in new.param_groups] == [True, True]
    assert [g["name"] for g in new.param_groups] == ["shared", "shared"]
    assert torch.equal(new.state[model[0].weight]["exp_avg"], old.state[model[0].weight]["exp_avg"])
    scaler = torch.amp.GradScaler("cpu")  # fused AMP scaling, as an fp16 run uses it
    new.zero_grad()
    scaler.scale(model(torch.randn(2, 3)).sum()).backward()
    scaler.step(new)
    scaler.update()


def _batch(values, present, mask=None):
    return ModalityBatch(torch.tensor(values), torch.tensor(present), mask)


def test_hide_makes_rows_absent_like_missing_data():
    mb = ModalityBatch(torch.ones(3, 2, 4), torch.tensor([True, True, False]),
                       torch.ones(3, 2, dtype=torch.bool), {"offsets": torch.arange(3)})
    out = hide(mb, torch.tensor([True, False, False]))
    assert out.present.tolist() == [False, True, False]
    assert out.values[0].abs().sum() == 0 and out.values[1].abs().sum() == 8
    assert out.mask[0].tolist() == [False, False] and out.mask[1].all()
    assert torch.equal(out.extra["offsets"], torch.arange(3))
    assert mb.values.sum() == 24  # the input is untouched
    both = hide_all({"a": mb, "b": mb}, {"b"})
    assert both["a"] is mb and not both["b"].present.any()


def test_modality_dropout_never_hides_every_modality_and_is_seeded():
    present = {"a": torch.ones(500, dtype=torch.bool), "b": torch.ones(500, dtype=torch.bool),
               "c": torch.tensor([True, False] * 250)}
    masks = dropout_masks(present, 0.9, torch.Generator().manual_seed(0))
    kept = sum((present[n] & ~masks[n]).int() for n in present)
    assert (kept >= 1).all()
    assert not (masks["c"] & ~present["c"]).any()  # only present modalities are dropped
    rate = masks["a"].float().mean().item()
    assert 0.5 < rate < 0.9  # p=0.9, minus the rows where one modality had to be kept
    again = dropout_masks(present, 0.9, torch.Generator().manual_seed(0))
    assert all(torch.equal(masks[n], again[n]) for n in present)
    other = dropout_masks(present, 0.9, torch.Generator().manual_seed(1))
    assert not all(torch.equal(masks[n], other[n]) for n in present)
    # A sample with a single present modality keeps it.
    lone = {"a": torch.tensor([True]), "b": torch.tensor([False])}
    assert not dropout_masks(lone, 0.99, torch.Generator().manual_seed(0))["a"].any()
    inputs = {"a": _batch([[1.0], [2.0]], [True, True]), "b": _batch([[3.0], [4.0]], [True, True])}
    out = modality_dropout(inputs, 0.99, torch.Generator().manual_seed(0))
    assert ((out["a"].present.int() + out["b"].present.int()) == 1).all()


def _model(classes=("x", "y", "z")):
    torch.manual_seed(0)
    mod = ToyModality("a", ToyOptions(hidden=4))
    mod2 = ToyModality("b", ToyOptions(hidden=4))
    encoders = {"a": mod.build_encoder(), "b": mod2.build_encoder()}
    fusion = ConcatFusion({"a": 4, "b": 4}, size=6, hidden=6, dropout=0.0)
    heads = {"label": ClassificationHead(6, "y", classes=list(classes), hidden=[4]),
             "score": RegressionHead(6, "s", hidden=[4])}
    return MultimodalModel(encoders, fusion, heads), mod


def _batches(mod, n=10, size=4):
    torch.manual_seed(1)
    out = []
    for i in range(0, n, size):
        rows = range(i, min(i + size, n))
        items = [mod.preprocess([float(r), float(r) / 2]) for r in rows]
        out.append(Batch(
            inputs={"a": mod.collate(items), "b": mod.collate(items)},
            targets={"label": torch.tensor([r % 3 for r in rows]),
                     "score": torch.tensor([float(r) for r in rows])},
            index=torch.tensor(list(rows)),
        ))
    return out


def test_weighted_loss_and_whole_split_metrics():
    model, mod = _model()
    batches = _batches(mod)
    weights = {"label": 2.0, "score": 0.5}
    result = evaluate_model(model, batches, device=torch.device("cpu"), weights=weights)
    assert result.rows == 10
    logits = result.outputs["label"]
    targets = result.targets["label"]
    expected_acc = (logits.argmax(-1) == targets).float().mean().item()
    assert result.metrics["label.accuracy"] == pytest.approx(expected_acc)
    full_ce = nn.functional.cross_entropy(logits, targets, label_smoothing=0.1).item()  # default
    assert result.metrics["label.loss"] == pytest.approx(full_ce, rel=1e-5)
    assert result.metrics["loss"] == pytest.approx(
        2.0 * result.metrics["label.loss"] + 0.5 * result.metrics["score.loss"], rel=1e-5
    )
    assert {"label.macro_f1", "label.top_k", "score.mae", "score.rmse"} <= set(result.metrics)
    assert model.training  # restored
    out = model(batches[0].inputs)
    total, losses = weighted_loss(model, out, batches[0].targets, weights)
    assert torch.allclose(total, 2.0 * losses[0] + 0.5 * losses[1])


def test_modality_report_hides_each_modality():
    model, mod = _model()
    batches = _batches(mod)
    seen = []

    def evaluate(transform):
        result = evaluate_model(model, batches, device=torch.device("cpu"),
                                weights={"label": 1.0, "score": 1.0}, transform=transform)
        if transform is not None:
            inputs = transform(batches[0].inputs)
            seen.append({n: bool(mb.present.any()) for n, mb in inputs.items()})
        return result

    report = modality_report(evaluate, ["b", "a"], "label.accuracy", "test")
    assert list(report["modalities"]) == ["a", "b"]
    # with two modalities "without a" is "only b": each subset is evaluated once
    assert seen == [{"a": False, "b": True}, {"a": True, "b": False}]
    table = format_report(report)
    assert "without (label.accuracy)" in table and table.splitlines()[3].startswith("(all)")
    # Hiding a modality changes the model's outputs (it is not ignored).
    assert report["modalities"]["a"]["without"]["loss"] != report["baseline"]["loss"]


def test_monitor_defaults_directions_and_errors():
    model, _ = _model()
    m = resolve_monitor(None, model, True, "s.py")
    assert (m.name, m.key, m.greater_is_better) == ("label.accuracy", "validation/label.accuracy",
                                                      True)
    m = resolve_monitor("score.rmse", model, True, "s.py")
    assert not m.greater_is_better and m.better(0.5, 1.0) and not m.better(1.5, 1.0)
    assert not m.better(float("nan"), 1.0) and m.better(float("nan"), None)
    assert resolve_monitor("label.loss", model, True, "s.py").greater_is_better is False
    no_val = resolve_monitor("label.accuracy", model, False, "s.py")
    assert no_val.key == "train/loss" and not no_val.greater_is_better
    with pytest.raises(SpecError, match=r"train\.monitor.*label\.acc.*expected one of"):
        resolve_monitor("label.acc", model, True, "s.py")


def test_device_and_precision_errors_name_the_field():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match="train.device.*CUDA"):
            resolve_device("cuda")
    with pytest.raises(SpecError, match="train.device"):
        resolve_device("tpu-ish")
    with pytest.raises(SpecError, match="train.precision.*fp16 needs a CUDA device"):
        check_precision("fp16", torch.device("cpu"))
    check_precision("bf16", torch.device("cpu"))
    with pytest.raises(SpecError, match="train.precision"):
        check_precision("bf16", torch.device("mps"))


class _Run:
    def __init__(self, path, history):
        self.run_dir = path
        self.history = history


def test_csv_callback_rewrites_the_file_with_every_column(tmp_path, toy_registry):
    pm = callback_manager(["csv"], toy_registry)
    history = [{"epoch": 1, "train/loss": 1.5}]
    run = _Run(tmp_path, history)
    pm.hook.on_epoch_end(trainer=run, epoch=1, metrics=history[0])
    history.append({"epoch": 2, "train/loss": float("nan"), "validation/x.accuracy": 0.5})
    pm.hook.on_epoch_end(trainer=run, epoch=2, metrics=history[1])
    with open(tmp_path / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0] == {"epoch": "1", "train/loss": "1.5", "validation/x.accuracy": ""}
    assert rows[1]["train/loss"] == "nan" and rows[1]["validation/x.accuracy"] == "0.5"
    assert any(isinstance(p, CSVLogger) for p in pm.get_plugins())


def test_tensorboard_callback_needs_its_package(tmp_path, toy_registry):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(PluginError,
                           match=r"tensorboard.*pip install 'mmcore-torch\[tensorboard\]'"):
            callback_manager(["tensorboard"], toy_registry)
        return
    pm = callback_manager(["tensorboard"], toy_registry)
    run = _Run(tmp_path, [])
    pm.hook.on_train_start(trainer=run)
    pm.hook.on_epoch_end(trainer=run, epoch=1, metrics={"train/loss": 1.0})
    pm.hook.on_train_end(trainer=run, metrics={})
    assert any((tmp_path / "tensorboard").iterdir())


def test_unknown_callback_and_plugin_event_hooks(toy_registry):
    with pytest.raises(PluginError, match="unknown callback 'nope'"):
        callback_manager(["nope"], toy_registry)

    calls = []

    class EventPlugin:
        @mmcore.hookimpl
        def on_epoch_end(self, trainer, epoch, metrics):
            calls.append(epoch)

    toy_registry.pm.register(EventPlugin(), name="events")
    pm = callback_manager([], toy_registry)
    pm.hook.on_epoch_end(trainer=None, epoch=7, metrics={})
    assert calls == [7]
    assert [name for name, _ in pm.list_name_plugin()] == ["plugin:events"]


def test_auto_epochs_give_small_data_enough_steps_and_large_data_ten_epochs():
    assert resolve_epochs(7, rows=36, batch_size=32) == 7  # a number is kept as given
    assert resolve_epochs("auto", rows=36, batch_size=32) == 150  # 2 steps an epoch
    assert resolve_epochs("auto", rows=270, batch_size=32) == 34  # 9 steps an epoch
    assert resolve_epochs("auto", rows=270, batch_size=32, accumulate=3) == 100
    assert resolve_epochs("auto", rows=50_000, batch_size=32) == 10
    assert resolve_epochs("auto", rows=5, batch_size=32) == 200
    assert TrainSpec(epochs="auto").epochs == "auto"
    for bad in (0, "many"):
        with pytest.raises(ValueError, match="epochs"):
            TrainSpec(epochs=bad)


@pytest.mark.parametrize("fusion", ["concat", "late"])
def test_modality_loss_is_the_mean_loss_of_each_modality_alone(fusion):
    from mmcore.fusions.late import LateFusion
    from mmcore.model import LateFusionModel
    from mmcore.train.modality_loss import alone_loss

    model, mod = _model()
    if fusion == "late":
        sizes = {n: e.output_size for n, e in model.encoders.items()}
        model = LateFusionModel(model.encoders, LateFusion(sizes, size=6, hidden=6, dropout=0.0),
                                model.heads)
    model.eval()  # no dropout draws, so the two computations compare exactly
    batch = _batches(mod)[0]
    weights = {"label": 1.0, "score": 0.5}
    outputs, alone = model(batch.inputs, alone=True)
    assert sorted(alone) == ["a", "b"]
    for kept, other in (("a", "b"), ("b", "a")):  # the encoders ran once, yet each output is
        hidden = model(hide_all(batch.inputs, {other}))  # what hiding the input gives
        for head in model.heads:
            torch.testing.assert_close(alone[kept][head], hidden[head])
    for head, value in model(batch.inputs).items():
        torch.testing.assert_close(outputs[head], value)
    got = alone_loss(model, alone, batch.targets, weights)
    expected = [weighted_loss(model, model(hide_all(batch.inputs, {other})), batch.targets,
                              weights)[0] for other in ("b", "a")]
    torch.testing.assert_close(got, torch.stack(expected).mean())
    got.backward()  # trains the encoders through each modality's own path
    assert all(p.grad is not None for p in model.encoders["a"].parameters())
    assert TrainSpec(modality_loss=1.0).modality_loss == 1.0
    with pytest.raises(ValueError, match="modality_loss"):
        TrainSpec(modality_loss=-1)


def test_a_tie_on_the_monitored_metric_goes_to_the_lower_validation_loss():
    from mmcore.train.settings import Monitor

    acc = Monitor("y.accuracy", "validation/y.accuracy", True)
    best = {"epoch": 3, "validation/y.accuracy": 1.0, "validation/loss": 0.40}
    later = {"epoch": 9, "validation/y.accuracy": 1.0, "validation/loss": 0.10}
    assert acc.improves(later, best)  # same accuracy, better trained: the later epoch
    assert not acc.improves({**later, "validation/loss": 0.50}, best)
    assert not acc.improves({**later, "validation/y.accuracy": 0.9}, best)
    assert acc.improves({**later, "validation/y.accuracy": float("nan")}, None)  # the first
    assert not acc.improves({**later, "validation/loss": float("nan")}, best)
    loss = Monitor("loss", "validation/loss", False)
    assert not loss.improves({"validation/loss": 0.4}, {"validation/loss": 0.4})
