"""How fast the audio pipeline feeds training: preprocessing per clip against the time a
training step spends per clip, on real FSDD recordings from av_digits.

    python plugins/mmcore-plugin-audio/benchmarks/preprocess_speed.py [--clips 300] [--threads N]

Preprocessing (decode + resample + log-mel) runs on the calling thread; the training step
(forward, backward, Adam step of the encoder and a linear head, batch 32) runs with torch's
thread count as given. The pipeline must be at least 5x faster than training consumes clips.

The data layer preprocesses each clip once and caches the arrays, so an epoch's pipeline is
``collate`` of cached arrays (measured too); preprocessing on the fly (streaming) costs the
full per-clip figure, spread over the loader's workers.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np
import torch
from mmcore_plugin_audio.modality import AudioModality
from mmcore_plugin_audio.options import AudioOptions
from torch import nn

SETTINGS = {
    "defaults (16 kHz, 64 mels)": {},
    "FSDD at 8 kHz (40 mels)": {"sample_rate": 8000, "n_fft": 256, "win_length": 200,
                                "hop_length": 80, "n_mels": 40},
}


def _av_digits() -> Path:
    env = os.environ.get("MMCORE_SHARED_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "data"
    return base / "av_digits"


def _train_ms_per_clip(modality: AudioModality, arrays: list[np.ndarray], batch: int) -> float:
    torch.manual_seed(0)
    encoder = modality.build_encoder()
    head = nn.Linear(encoder.output_size, 10)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()])
    labels = torch.zeros(batch, dtype=torch.long)
    steps, times = 12, []
    for step in range(steps):
        chunk = [arrays[(step * batch + i) % len(arrays)] for i in range(batch)]
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(head(encoder(modality.collate(chunk)).values), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:])) / batch * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = _av_digits()
    with (root / "pairs.csv").open() as f:
        paths = [row["audio"] for row in csv.DictReader(f)][: args.clips]
    for name, options in SETTINGS.items():
        modality = AudioModality("audio", AudioOptions(**options), root=root)
        modality.preprocess(paths[0])  # builds the filterbank once
        start, cpu = time.perf_counter(), time.process_time()
        arrays = [modality.preprocess(p) for p in paths]
        wall = (time.perf_counter() - start) / len(paths) * 1000
        cpu = (time.process_time() - cpu) / len(paths) * 1000
        start = time.perf_counter()
        for i in range(0, len(arrays), 32):
            modality.collate(arrays[i : i + 32])
        collate = (time.perf_counter() - start) / len(arrays) * 1000
        train = _train_ms_per_clip(modality, arrays, batch=32)
        print(f"{name}: mean {np.mean([a.shape[0] for a in arrays]):.0f} frames/clip\n"
              f"  preprocess {wall:.2f} ms/clip (cpu {cpu:.2f}); collate {collate:.3f} ms/clip\n"
              f"  training consumes {train:.2f} ms/clip ({args.threads} torch thread(s))\n"
              f"  on the fly: pipeline {train / wall:.1f}x faster than training; from the "
              f"cache: {train / collate:.0f}x")


if __name__ == "__main__":
    main()
