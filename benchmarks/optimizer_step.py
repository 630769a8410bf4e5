"""Optimizer step: mmcore's AdamW (``mmcore.train.fused_adam``) against torch's fused AdamW, on
the parameters of ``independent_loop.py``'s tiny model, on one CPU thread.

Arms, alternating in each round (reversed every other round) after an untimed warm-up round,
each on its own copy of the model with fixed gradients:

* ``torch_one``: ``torch.optim.AdamW(model.parameters(), fused=True)``, one group with weight
  decay on every parameter (what a hand-written loop writes);
* ``torch_two``: the same class over mmcore's two groups (matrices with weight decay, biases
  and norm scales without), written out here;
* ``mmcore``: ``mmcore.train.optim.build_optimizer`` on the model (mmcore's AdamW, the same
  two groups);
* ``control``: ``torch_one`` again (control / torch_one is the noise floor).

The torch arms share no code with mmcore. Each arm's result after the timing is checked: the
``torch_two`` and ``mmcore`` copies must hold equal parameters (the same kernel on the same
groups).

    python benchmarks/optimizer_step.py
    python benchmarks/optimizer_step.py --write docs/benchmarks.md
"""

from __future__ import annotations

import sys
import time
from typing import Any

import alternating
import benchlib
import independent_loop as il

KEY = "optimizer_step"
TITLE = "Optimizer step: mmcore's AdamW against torch's fused AdamW"
ARMS = ("torch_one", "torch_two", "mmcore", "control")
ROUNDS = 15
STEPS = 500


def build(arm: str) -> tuple[Any, Any]:
    """``arm``'s model (the tiny model, seeded) with fixed gradients, and its optimizer."""
    import torch

    from mmcore.spec.model import TrainSpec
    from mmcore.train.optim import build_optimizer

    torch.manual_seed(il.SEED)
    model = il.hand_model(il.SIZES["tiny"])
    gen = torch.Generator().manual_seed(1)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=gen) * 1e-3
    kwargs = {"lr": il.LR, "weight_decay": il.WEIGHT_DECAY, "fused": True}
    if arm == "mmcore":
        spec = TrainSpec(lr=il.LR, weight_decay=il.WEIGHT_DECAY)
        return model, build_optimizer(model, spec)
    if arm == "torch_two":
        params = list(model.parameters())
        groups = [{"params": [p for p in params if p.dim() >= 2]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        return model, torch.optim.AdamW(groups, **kwargs)
    return model, torch.optim.AdamW(model.parameters(), **kwargs)


def compare(rounds: int) -> dict[str, Any]:
    import torch

    built = {arm: build(arm) for arm in ARMS}

    def run(arm: str) -> float:
        step = built[arm][1].step
        start = time.process_time()
        for _ in range(STEPS):
            step()
        return (time.process_time() - start) / STEPS

    for arm in ARMS:  # warm-up round, untimed
        run(arm)
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for r in range(rounds):
        for arm in ARMS if r % 2 == 0 else tuple(reversed(ARMS)):
            times[arm].append(run(arm))
    same = all(torch.equal(a, b) for a, b in zip(built["torch_two"][0].parameters(),
                                                  built["mmcore"][0].parameters(), strict=True))
    if not same:
        raise AssertionError("mmcore's AdamW and torch's over the same groups disagree")
    model = built["mmcore"][0]
    return {"times": times, "tensors": len(list(model.parameters())),
            "params": sum(p.numel() for p in model.parameters())}


def report(result: dict[str, Any], rounds: int, load: benchlib.Load) -> str:
    times = result["times"]
    what = {"torch_one": "torch's fused AdamW, one group (decay on everything)",
            "torch_two": "torch's fused AdamW, mmcore's two groups",
            "mmcore": "mmcore's AdamW (`build_optimizer`), the same two groups",
            "control": "torch_one again (noise floor)"}
    rows = alternating.arm_rows(times, what, "torch_one", scale=1e6, digits=0)
    two = [t / m for t, m in zip(times["torch_two"], times["mmcore"], strict=True)]
    return "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()} with "
        f"`python benchmarks/optimizer_step.py`. CPU, float32, one torch thread. Load while "
        f"it ran: {load.sentence()}",
        f"One `optimizer.step()` over the {result['tensors']} parameter tensors "
        f"({result['params']:,} numbers) of the tiny model of `independent_loop.py`, "
        f"gradients fixed; {STEPS} steps per arm and round, {rounds} rounds after an untimed "
        "warm-up round, arms alternating. After timing, the `torch_two` and `mmcore` copies "
        "hold equal parameters.",
        benchlib.table(["arm", "what", "CPU us / step (median)", "range",
                        "speed / torch_one (median)", "range"], rows),
        f"mmcore's AdamW against torch's on the same two groups: "
        f"{benchlib.median(two):.3f}x the speed ({benchlib.spread(two)}). Speed ratios are "
        "per round; `torch_one` is the mean of the round's torch_one and control runs "
        "(control / torch_one for the control row).",
    ])


def main(argv: list[str] | None = None) -> int:
    return alternating.rounds_main(argv, __doc__, KEY, TITLE, ROUNDS, compare, report)


if __name__ == "__main__":
    sys.exit(main())
