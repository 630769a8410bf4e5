"""The default ``tcn`` sequence encoder against the same network written by hand (issue 32):
one training step (forward, cross-entropy, backward, AdamW) on full-length batches, on the CPU.

Model: what ``encoder: "tcn"`` builds for a one-channel signal of 2,000 steps
(``SequenceEncoder(1)`` with ``halvings=5``, as ``"auto"`` picks for that length: five
stride-2 residual blocks and two dilated ones of 64 channels, kernel 5, dropout 0.1, a
bidirectional LSTM of 64, the mean over steps), then ``Linear(128, 4)``. Data: 8 batches of
32 random signals ``[32, 2000, 1]`` and labels, in memory.

Arms, alternating in each round after an untimed warm-up round:

* ``hand``: the network written out in plain ``torch.nn`` here (no mmcore import; its
  parameters are named as mmcore's, so mmcore's weights load into it and its output is checked
  equal before timing), no masks at all.
* ``fast``: ``SequenceEncoder`` on batches stated full (``ModalityBatch(..., full=True)``, as
  collate states it): the path with no mask arithmetic.
* ``masked``: ``SequenceEncoder`` on the same batches with ``full=False``: every block masks
  its steps and each downsampling level's mask is made, as for a padded batch.
* ``control``: the hand arm again; control / hand is the noise floor.

Figures: CPU seconds per step (``time.process_time``, one torch thread), the median over rounds
with the range, and the median of per-round speed ratios against ``hand`` (the mean of the
round's hand and control runs): 1.0 is parity, below 1 slower than the hand-written network.

    python benchmarks/tcn_fast_path.py                       # prints the section
    python benchmarks/tcn_fast_path.py --write docs/benchmarks.md
"""

from __future__ import annotations

import sys
import time
from typing import Any

import alternating
import benchlib

KEY = "tcn_fast_path"
TITLE = "TCN encoder: full-length fast path against the masked path and a hand-written twin"
STEPS, HALVINGS, BLOCKS, WIDTH, KERNEL, HIDDEN, CLASSES = 2000, 5, 2, 64, 5, 64, 4
BATCH, BATCHES = 32, 8
ROUNDS, STEPS_PER_ARM = 25, 2
ARMS = ("hand", "fast", "masked", "control")


def hand_encoder() -> Any:
    """The tcn encoder written out by hand: plain ``torch.nn``, no masks."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, dilation: int, stride: int) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(cin) if cin > 1 else nn.Identity()
            self.conv1 = nn.Conv1d(cin, cout, KERNEL, stride, dilation * (KERNEL - 1) // 2,
                                   dilation)
            self.conv2 = nn.Conv1d(cout, cout, KERNEL, 1, (KERNEL - 1) // 2)
            self.drop = nn.Dropout(0.1)
            self.skip = nn.Conv1d(cin, cout, 1) if stride != 1 or cin != cout else None
            self.stride = stride

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C] channels-last
            h = self.drop(nn.functional.gelu(self.conv1(self.norm(x).transpose(1, 2))))
            h = self.conv2(h)
            skip = x.transpose(1, 2)[..., :: self.stride]
            if self.skip is not None:
                skip = self.skip(skip)
            return (h + skip).transpose(1, 2)

    class Front(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            sizes = [1] + [WIDTH] * (HALVINGS + BLOCKS)
            specs = [(1, 2)] * HALVINGS + [(2 ** (i % 3), 1) for i in range(BLOCKS)]
            self.blocks = nn.ModuleList(
                Block(sizes[i], sizes[i + 1], d, s) for i, (d, s) in enumerate(specs)
            )

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.front = Front()
            self.rnn = nn.LSTM(WIDTH, HIDDEN, batch_first=True, bidirectional=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.front.blocks:
                x = block(x)
            out, _ = self.rnn(x)
            return out.mean(dim=1)

    return Encoder()


def build(torch: Any) -> dict[str, Any]:
    """The two encoders (same weights), their heads, the batches and the equality check."""
    from mmcore.batch import ModalityBatch
    from mmcore.sequence.encoder import SequenceEncoder

    torch.manual_seed(0)
    ours = SequenceEncoder(1, halvings=HALVINGS, blocks=BLOCKS, channels=WIDTH,
                           kernel_size=KERNEL, hidden_size=HIDDEN)
    hand = hand_encoder()
    hand.load_state_dict(ours.state_dict())  # strict: the same parameters, name for name
    signals = [torch.randn(BATCH, STEPS, 1) for _ in range(BATCHES)]
    labels = [torch.randint(0, CLASSES, (BATCH,)) for _ in range(BATCHES)]
    present = torch.ones(BATCH, dtype=torch.bool)
    mask = torch.ones(BATCH, STEPS, dtype=torch.bool)
    batches = {full: [ModalityBatch(x, present, mask, full=full) for x in signals]
               for full in (True, False)}
    ours.eval(), hand.eval()
    with torch.no_grad():
        want = hand(signals[0])
        for full in (True, False):
            got = ours(batches[full][0]).values
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    ours.train(), hand.train()
    nparams = sum(p.numel() for p in ours.parameters())
    assert nparams == sum(p.numel() for p in hand.parameters())
    return {"ours": ours, "hand": hand, "signals": signals, "labels": labels,
            "batches": batches, "params": nparams}


def runner(torch: Any, setup: dict[str, Any], arm: str) -> Any:
    """A function that runs ``STEPS_PER_ARM`` training steps of ``arm`` and returns the CPU
    seconds they took."""
    from torch import nn

    hand = arm in ("hand", "control")
    encoder = setup["hand"] if hand else setup["ours"]
    head = nn.Linear(2 * HIDDEN, CLASSES)
    params = [*encoder.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    inputs = setup["signals"] if hand else setup["batches"][arm == "fast"]
    labels = setup["labels"]

    def steps() -> float:
        start = time.process_time()
        for i in range(STEPS_PER_ARM):
            k = i % BATCHES
            features = encoder(inputs[k]) if hand else encoder(inputs[k]).values
            loss = nn.functional.cross_entropy(head(features), labels[k])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.process_time() - start

    return steps


def compare(rounds: int) -> dict[str, Any]:
    import torch

    setup = build(torch)
    runs = {arm: runner(torch, setup, arm) for arm in ARMS}
    for arm in ARMS:  # warm-up round, untimed
        runs[arm]()
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for r in range(rounds):
        order = ARMS if r % 2 == 0 else tuple(reversed(ARMS))
        for arm in order:
            times[arm].append(runs[arm]() / STEPS_PER_ARM)
    return {"times": times, "params": setup["params"]}


def report(result: dict[str, Any], rounds: int, load: benchlib.Load) -> str:
    times = result["times"]
    rows = alternating.arm_rows(times, {
        "hand": "hand-written twin, no masks",
        "fast": "mmcore, batch stated full (no mask arithmetic)",
        "masked": "mmcore, same batch with full=False (masked path)",
        "control": "hand-written twin again (noise floor)"}, "hand", scale=1000, digits=1)
    fast_vs_masked = [m / f for f, m in zip(times["fast"], times["masked"], strict=True)]
    return "\n\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()} with "
        f"`python benchmarks/tcn_fast_path.py`. CPU, float32, one torch thread (intra- and "
        f"inter-op). Load while it ran: {load.sentence()}",
        f"One training step (forward, cross-entropy, backward, AdamW) of the default `tcn` "
        f"encoder for a one-channel signal of {STEPS} steps ({HALVINGS} strided and {BLOCKS} "
        f"dilated residual blocks of {WIDTH}, a bidirectional LSTM of {HIDDEN}, "
        f"{result['params']:,} parameters) and a linear head, on {BATCHES} in-memory batches "
        f"of {BATCH} full-length random signals. {rounds} rounds after an untimed warm-up "
        f"round, arms alternating (reversed every other round), {STEPS_PER_ARM} steps per arm "
        "and round. The hand-written twin shares no code with mmcore; mmcore's weights are "
        "loaded into it and the outputs checked equal before timing.",
        benchlib.table(["arm", "what", "CPU ms / step (median)", "range",
                        "speed / hand (median)", "range"], rows),
        f"Fast path against the masked path on the same batches: "
        f"{benchlib.median(fast_vs_masked):.3f}x the speed ({benchlib.spread(fast_vs_masked)}). "
        "Speed ratios are per round; `hand` is the mean of the round's hand and control runs "
        "(control / hand for the control row).",
    ])


def main(argv: list[str] | None = None) -> int:
    return alternating.rounds_main(argv, __doc__, KEY, TITLE, ROUNDS, compare, report)


if __name__ == "__main__":
    sys.exit(main())
