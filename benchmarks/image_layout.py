"""The image encoder's CNN on the CPU: mmcore's (channels-last) against the same network
written by hand in plain ``torch.nn``, in the default layout and in channels-last.

The network is the README demo's image CNN (``examples/av_digits``: 28 x 28 grayscale,
convolutions of 32, 64 and 64 channels, kernels 5, 3, 3, BatchNorm, ReLU, 2 x 2 max pooling
after the first two) followed by the pooled summary (4 x 4 average, a linear layer to 64
features, ReLU): ``ImageEncoder.encode_images``, the CNN and summary of every image encoder's
forward pass. Arms, alternating in each round after an untimed warm-up round:

* ``hand``: plain ``torch.nn`` layers, default (NCHW) layout, sharing no code with mmcore;
* ``hand_channels_last``: the same modules and images converted to channels-last;
* ``mmcore``: ``mmcore_plugin_image``'s ``ImageEncoder.encode_images`` (channels-last), the
  hand arm's weights loaded, outputs checked equal to it in eval and in training mode;
* ``control``: the hand arm again (control / hand is the noise floor).

Timed per arm and round: a training step (forward, a sum of the features as the loss, backward,
fused AdamW) at batch 32, and an inference pass (``torch.inference_mode``) at batch 128, CPU
milliseconds per batch (this process, one torch thread), the median of the round's repeats.
Ratios are per round, against the hand arm as the mean of the round's ``hand`` and ``control``
runs (which bracket the others); the control line is ``hand`` against ``control`` alone.

    python benchmarks/image_layout.py                          # prints the section
    python benchmarks/image_layout.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import benchlib

KEY = "image_layout"
TITLE = "Image encoder: channels-last against the default layout and a hand-written twin"
ROUNDS, REPEATS, TRAIN_BATCH, EVAL_BATCH = 7, 10, 32, 128
CHANNELS, KERNELS, FEATURES, GRID, SIZE = (32, 64, 64), (5, 3, 3), 64, 4, 28


def hand_cnn():
    """The demo's image CNN and pooled summary, in plain ``torch.nn``."""
    from torch import nn

    layers: list[nn.Module] = []
    previous = 1
    for i, (out, k) in enumerate(zip(CHANNELS, KERNELS, strict=True)):
        layers += [nn.Conv2d(previous, out, k, padding=k // 2, bias=False),
                   nn.BatchNorm2d(out), nn.ReLU()]
        if i < 2:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        previous = out
    summary = [nn.AdaptiveAvgPool2d(GRID), nn.Flatten(),
               nn.Linear(previous * GRID**2, FEATURES), nn.ReLU()]
    return nn.Sequential(*layers, *summary)


def mmcore_encoder(hand):
    """mmcore's image encoder with the same options, the hand network's weights loaded."""
    from mmcore_plugin_image.encoder import ImageEncoder
    from mmcore_plugin_image.options import ImageOptions

    options = ImageOptions(channels=1, size=SIZE, conv_channels=list(CHANNELS),
                           kernel_sizes=list(KERNELS), feature_size=FEATURES, grid=GRID)
    encoder = ImageEncoder(options)
    mine = [*encoder.cnn, *encoder.summarise]
    for theirs, ours in zip(hand, mine, strict=True):
        ours.load_state_dict(theirs.state_dict())
    return encoder


def arms() -> dict[str, tuple[Callable, Callable]]:
    """Per arm: ``(train_step(images), infer(images))``."""
    import torch

    torch.manual_seed(0)
    hand = hand_cnn()
    layout = torch.channels_last

    def step_for(module, forward):
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, fused=True)

        def step(images):
            module.train()
            forward(images).sum().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        def infer(images):
            module.eval()
            with torch.inference_mode():
                forward(images)
        return step, infer

    twin = copy.deepcopy(hand).to(memory_format=layout)
    control = copy.deepcopy(hand)
    encoder = mmcore_encoder(copy.deepcopy(hand))
    images = torch.randn(EVAL_BATCH, 1, SIZE, SIZE)
    for training in (False, True):  # running statistics, then the batch's (on copies)
        theirs, ours = copy.deepcopy(hand).train(training), copy.deepcopy(encoder).train(training)
        with torch.no_grad():
            if not torch.allclose(theirs(images), ours.encode_images(images), atol=1e-4):
                raise SystemExit("mmcore's encoder and the hand network disagree")
    return {
        "hand": step_for(hand, hand),
        "hand_channels_last": step_for(twin, lambda x: twin(x.contiguous(memory_format=layout))),
        "mmcore": step_for(encoder, encoder.encode_images),
        "control": step_for(control, control),
    }


def cpu_ms(fn: Callable, images, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn(images)
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times)


def measure(rounds: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    import torch

    train_images = torch.randn(TRAIN_BATCH, 1, SIZE, SIZE)
    eval_images = torch.randn(EVAL_BATCH, 1, SIZE, SIZE)
    functions = arms()
    runs: dict[str, dict[str, list[float]]] = {a: {"train": [], "infer": []} for a in functions}
    for i in range(rounds + 1):
        order = list(functions) if i % 2 == 0 else list(reversed(functions))
        for arm in order:
            step, infer = functions[arm]
            train_ms = cpu_ms(step, train_images, repeats)
            infer_ms = cpu_ms(infer, eval_images, repeats)
            if i:  # round 0 warms up
                runs[arm]["train"].append(train_ms)
                runs[arm]["infer"].append(infer_ms)
            print(f"round {i} {arm}: train {train_ms:.1f} ms, inference {infer_ms:.1f} ms",
                  file=sys.stderr)
    return runs


def report(runs: dict[str, dict[str, list[float]]], load: benchlib.Load, rounds: int) -> str:
    def speedup(arm: str, key: str) -> list[float]:
        """Per round: the hand arm's ms (mean of hand and control) over ``arm``'s; for the
        control arm, hand's over control's (a baseline holding control would halve it)."""
        if arm == "control":
            return [h / c for h, c in zip(runs["hand"][key], runs["control"][key], strict=True)]
        return [(h + c) / 2 / a for h, c, a in zip(runs["hand"][key], runs["control"][key],
                                                     runs[arm][key], strict=True)]

    rows = [[arm, f"{statistics.median(r['train']):.1f}", benchlib.spread(r["train"]),
             f"{statistics.median(r['infer']):.1f}", benchlib.spread(r["infer"])]
            for arm, r in runs.items()]
    lines = [
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, by `python "
        f"benchmarks/image_layout.py`. CPU, float32, one torch thread. Load while it ran: "
        f"{load.sentence()}",
        "",
        f"The README demo's image CNN ({SIZE} x {SIZE} grayscale, convolutions of "
        f"{', '.join(map(str, CHANNELS))} channels with kernels {', '.join(map(str, KERNELS))}, "
        "BatchNorm, ReLU, 2 x 2 max pooling after the first two, a 4 x 4 average and a linear "
        f"layer to {FEATURES} features). `hand` is that network in plain `torch.nn` in the "
        "default (NCHW) layout, sharing no code with mmcore; `hand_channels_last` the same "
        "modules and images in channels-last; `mmcore` the image plugin's "
        "`ImageEncoder.encode_images` (its CNN and summary, channels-last since 2026-12-07) "
        "with the hand network's weights, its features checked equal in eval and training "
        "mode; `control` the hand arm again. CPU ms per batch: a training step (forward, "
        f"backward, fused AdamW) at batch {TRAIN_BATCH}, inference at batch {EVAL_BATCH}; "
        f"medians over {rounds} alternating rounds after a warm-up round. Ratios are per "
        "round against the hand arm as the mean of the round's `hand` and `control` runs; the "
        "control line is `hand` against `control` alone (how far noise moves a ratio). "
        "`mmcore` and `hand_channels_last` run the same computation: their difference is noise.",
        "",
        benchlib.table(["arm", f"train step ms (batch {TRAIN_BATCH})", "range",
                        f"inference ms (batch {EVAL_BATCH})", "range"], rows),
        "",
    ]
    for arm in ("mmcore", "hand_channels_last", "control"):
        train, infer = speedup(arm, "train"), speedup(arm, "infer")
        label = "hand / control" if arm == "control" else f"{arm} speed / hand (NCHW)"
        lines.append(
            f"- {label}: training step **{statistics.median(train):.2f}x** "
            f"(rounds {min(train):.2f}-{max(train):.2f}), inference "
            f"**{statistics.median(infer):.2f}x** (rounds {min(infer):.2f}-{max(infer):.2f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="batches per arm and round")
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    args = parser.parse_args(argv)
    benchlib.offline()
    benchlib.torch_one_thread()
    meter = benchlib.LoadMeter()
    runs = measure(args.rounds, args.repeats)
    benchlib.publish(KEY, TITLE, report(runs, meter.stop(), args.rounds), args.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
