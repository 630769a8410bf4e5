"""mmcore's Adam and AdamW step (less Python around torch's fused kernel) against torch's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mmcore.spec.model import TrainSpec
from mmcore.train import fused_adam
from mmcore.train.optim import build_optimizer

SHAPES = [(8, 3), (8,), (4, 8, 3), (4,), (2, 4), (2,)]


def _params(seed: int = 0) -> list[nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(shape, generator=gen)) for shape in SHAPES]


def _groups(params: list[nn.Parameter], weight_decay: float = 0.01) -> list[dict]:
    """mmcore's split: matrices with weight decay, biases without."""
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def _train(optimizers: list[torch.optim.Optimizer], params: list[list[nn.Parameter]],
           steps: int, first: int = 0) -> None:
    """The same gradients into every copy, a parameter without one now and then (a frozen
    encoder), a learning-rate change half-way (a schedule)."""
    for step in range(first, first + steps):
        gen = torch.Generator().manual_seed(100 + step)
        grads = [torch.randn(shape, generator=gen) for shape in SHAPES]
        for replica in params:
            for i, (param, grad) in enumerate(zip(replica, grads, strict=True)):
                param.grad = None if (i == 1 and step % 4 == 2) else grad.clone()
        for optimizer in optimizers:
            if step == 6:
                optimizer.param_groups[0]["lr"] *= 0.5
            optimizer.step()


def _assert_same(a: torch.optim.Optimizer, b: torch.optim.Optimizer,
                 pa: list[nn.Parameter], pb: list[nn.Parameter]) -> None:
    for x, y in zip(pa, pb, strict=True):
        assert torch.equal(x, y)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for key, values in sa["state"].items():
        assert values.keys() == sb["state"][key].keys()
        for name, value in values.items():
            other = sb["state"][key][name]
            assert value.dtype == other.dtype and torch.equal(value, other), (key, name)


@pytest.mark.parametrize(("ours", "torchs", "decay"), [
    (fused_adam.AdamW, torch.optim.AdamW, 0.01),
    (fused_adam.Adam, torch.optim.Adam, 0.01),
    (fused_adam.Adam, torch.optim.Adam, 0.0),
])
def test_step_is_torchs_bit_for_bit(ours, torchs, decay) -> None:
    pa, pb = _params(), _params()
    a = torchs(_groups(pa, decay), lr=0.01, fused=True)
    b = ours(_groups(pb, decay), lr=0.01, fused=True)
    _train([a, b], [pa, pb], steps=12)
    _assert_same(a, b, pa, pb)
    assert not torch.equal(pa[0], _params()[0])  # it did train


def test_the_fast_step_runs_without_torchs(monkeypatch) -> None:
    """The default settings take mmcore's step, not torch's (made to fail here: on both
    classes, as torch may have put a wrapped step on either)."""
    params = _params()
    optimizer = fused_adam.AdamW(_groups(params), lr=0.01, fused=True)
    torch.optim.AdamW([nn.Parameter(torch.zeros(1))])  # torch wraps its class's step

    def refuse(*args, **kwargs):
        raise AssertionError("torch's step ran")

    for cls in (torch.optim.Adam, torch.optim.AdamW):
        monkeypatch.setattr(cls, "step", refuse)
    before = [p.detach().clone() for p in params]
    _train([optimizer], [params], steps=2)
    assert all(not torch.equal(p, q) for p, q in zip(params, before, strict=True))
    assert optimizer.state[params[0]]["step"].item() == 2
    with pytest.raises(AssertionError, match="torch's step ran"):
        optimizer.step(lambda: 1.0)  # a closure: torch's step


def test_hooks_run_once_a_step_on_either_path() -> None:
    """torch runs the optimizer's hooks around ``step``; the fallback to torch's step does
    not run them a second time (torch may have wrapped its own class's step too)."""
    torch.optim.AdamW([nn.Parameter(torch.zeros(1))])
    params = _params()
    optimizer = fused_adam.AdamW(_groups(params), lr=0.01, fused=True)
    calls = []
    optimizer.register_step_pre_hook(lambda *args: calls.append("pre"))
    optimizer.register_step_post_hook(lambda *args: calls.append("post"))
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert calls == ["pre", "post"]
    calls.clear()
    optimizer.step(lambda: 1.0)
    assert calls == ["pre", "post"]


def test_a_checkpoint_moves_between_torchs_and_ours() -> None:
    """State written by one continues in the other exactly (old checkpoints were torch's)."""
    pa, pb = _params(), _params()
    a = torch.optim.AdamW(_groups(pa), lr=0.01, fused=True)
    b = fused_adam.AdamW(_groups(pb), lr=0.01, fused=True)
    _train([a, b], [pa, pb], steps=4)
    pa2, pb2 = _params(7), _params(7)
    with torch.no_grad():
        for x, y, src_a, src_b in zip(pa2, pb2, pa, pb, strict=True):
            x.copy_(src_b)
            y.copy_(src_a)
    a2 = torch.optim.AdamW(_groups(pa2), lr=0.01, fused=True)
    b2 = fused_adam.AdamW(_groups(pb2), lr=0.01, fused=True)
    # copies, as a checkpoint holds (loading keeps the very tensors it is given)
    a2.load_state_dict(copy.deepcopy(b.state_dict()))  # ours -> torch's
    b2.load_state_dict(copy.deepcopy(a.state_dict()))  # torch's -> ours
    _train([a, a2, b2], [pa, pa2, pb2], steps=4, first=4)
    _assert_same(a, a2, pa, pa2)
    _assert_same(a, b2, pa, pb2)


@pytest.mark.parametrize("settings", [{"amsgrad": True}, {"maximize": True},
                                      {"foreach": True, "fused": None}])
def test_other_settings_take_torchs_step(settings) -> None:
    pa, pb = _params(), _params()
    kwargs = {"lr": 0.01, "fused": True, **settings}
    a = torch.optim.AdamW(_groups(pa), **kwargs)
    b = fused_adam.AdamW(_groups(pb), **kwargs)
    _train([a, b], [pa, pb], steps=5)
    _assert_same(a, b, pa, pb)


def test_a_closure_and_the_gradient_scaler_take_torchs_step() -> None:
    params = _params()
    optimizer = fused_adam.AdamW(_groups(params), lr=0.01, fused=True)
    for p in params:
        p.grad = torch.ones_like(p)
    assert optimizer.step(lambda: 3.0) == 3.0
    # mmcore's fp16 step (mmcore.train.optim.optimizer_step): an overflow skips the update
    # and the step counter, as torch's fused step does with the scaler's found_inf
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale(torch.ones(()))  # a scaled loss: the scaler starts
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, float("inf"))
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(p, q) for p, q in zip(params, before, strict=True))
    assert optimizer.state[params[0]]["step"].item() == 1
    assert scaler.get_scale() == 2.0  # it saw the overflow
    for p in params:
        p.grad = torch.ones_like(p)
    scaler.scale(torch.ones(()))
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    assert optimizer.state[params[0]]["step"].item() == 2
    assert not torch.equal(params[0], before[0])


def test_build_optimizer_uses_it() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    assert type(build_optimizer(model, TrainSpec())) is fused_adam.AdamW
    assert type(build_optimizer(model, TrainSpec(optimizer="adam"))) is fused_adam.Adam
