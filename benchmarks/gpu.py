"""Trainer overhead on a CUDA GPU: ``mmcore.Trainer`` against a hand-written loop and PyTorch
Lightning, in float32, with bf16 autocast, and with bf16 plus ``torch.compile``.

The same comparison as ``trainer_overhead.py`` (same models, arms, alternation and medians; see
``training_arms.py``), on ``cuda``: batches are pinned and copied with ``non_blocking``, every
arm synchronises the device at the end of each epoch before the clock is read. With
``torch.compile`` every arm compiles the model in place (``model.compile()``; mmcore's through
an ``on_train_start`` hook) and the first epoch of each run, which compiles, is left out of the
timing; the other configurations time every epoch.

Without CUDA the script says why and exits 0 (with ``--write`` it adds a "not measured" note
only where the file has no GPU section yet, and never replaces measured figures).

    python benchmarks/gpu.py [--write docs/benchmarks.md]
    python benchmarks/gpu.py --device cpu --models gesture --rounds 1   # dry run of the logic
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import benchlib
import trainer_overhead
import training_arms as arms_lib

KEY = "gpu"
TITLE = "GPU"
#: (label, precision, compile)
CONFIGS = [("float32", "32", False), ("bf16 autocast", "bf16", False),
           ("bf16 autocast + torch.compile", "bf16", True)]
EPOCHS = {"av_digits": 3, "gesture": 2}


def not_measured(why: str) -> str:
    return (f"Not measured yet: {why} Run `python benchmarks/gpu.py --write docs/benchmarks.md` "
            "on a machine with a CUDA GPU to fill this section in.")


def write_unless_measured(path: Path, text: str) -> None:
    begin = f"<!-- benchmarks/{KEY}.py: begin -->"
    old = path.read_text() if path.exists() else ""
    if begin in old and "Not measured yet" not in old.split(begin, 1)[1].split("<!--", 1)[0]:
        print(f"{path} already has measured {TITLE} figures: left as they are", file=sys.stderr)
        return
    benchlib.write_section(path, KEY, TITLE, text)


def compiled_graphs() -> int:
    """Graphs Dynamo has compiled in this process so far (0 if torch does not say)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # a private counter: absent or renamed in some torch versions
        return 0


def device_line(device) -> str:
    import torch

    if device.type != "cuda":
        return f"{device.type} (dry run)"
    props = torch.cuda.get_device_properties(device)
    return (f"{torch.cuda.get_device_name(device)} ({props.total_memory / 2**30:.0f} GiB), "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(benchlib.MODELS),
                        choices=list(benchlib.MODELS))
    parser.add_argument("--configs", nargs="+", default=[c[0] for c in CONFIGS],
                        choices=[c[0] for c in CONFIGS])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, help=f"epochs per run (default {EPOCHS})")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=4, help="torch CPU threads (default 4)")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run")
    parser.add_argument("--no-lightning", action="store_true")
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    args = parser.parse_args(argv)
    benchlib.offline()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        why = (f"torch {torch.__version__} sees no CUDA device "
               f"({'a CPU-only build' if torch.version.cuda is None else 'no GPU or driver'}).")
        print(f"skipped: {why}")
        if args.write:
            write_unless_measured(args.write, not_measured(why))
        return 0
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if any(c[2] for c in CONFIGS if c[0] in args.configs):
        import torch._dynamo

        # Every run builds a new model; past the cache limit Dynamo would quietly fall back
        # to eager code and the "compiled" figures would not be compiled.
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
            torch._dynamo.config.accumulated_cache_size_limit = max(
                torch._dynamo.config.accumulated_cache_size_limit, 512)
    notes = []
    pl, version = (None, "--no-lightning given")
    if not args.no_lightning:
        pl, version = arms_lib.import_lightning()
    notes.append(f"PyTorch Lightning {version}." if pl is not None
                 else f"PyTorch Lightning was not measured ({version}).")
    arms = ["plain", "mmcore"] + (["lightning"] if pl is not None else []) + ["control"]
    configs = [c for c in CONFIGS if c[0] in args.configs]
    meter = benchlib.LoadMeter()
    sections = []
    with tempfile.TemporaryDirectory(prefix="mmcore-bench-") as tmp:
        for model in args.models:
            epochs = args.epochs or EPOCHS[model]
            for label, precision, compile_ in configs:
                if device.type != "cuda":
                    # a dry run checks the logic; oneDNN has no bf16 LSTM for some shapes
                    precision, label = "32", f"{label} (dry run: float32 on {device.type})"
                skip = 1 if compile_ else 0
                if epochs <= skip:
                    raise SystemExit("--epochs must exceed the compiled warm-up epoch")
                graphs = compiled_graphs() if compile_ else 0
                setup = arms_lib.prepare(
                    model, Path(tmp) / f"{model}-{precision}-{compile_}", device=args.device,
                    precision=precision, epochs=epochs, batch_size=args.batch_size,
                    compile=compile_,
                )
                if setup is None:
                    notes.append(f"The {model} model was skipped: its data is absent.")
                    break
                cmp = arms_lib.compare(setup, arms, rounds=args.rounds, epochs=epochs, pl=pl,
                                       threads=args.threads, skip=skip)
                text = trainer_overhead.model_report(cmp, f"{model}, {label}")
                if compile_:
                    text += (f"\n\n`torch.compile` built {compiled_graphs() - graphs} graph(s) "
                             "in this configuration (all arms, all rounds).")
                sections.append(text)
                if compile_:
                    torch._dynamo.reset()  # the next model starts with empty caches
    text = "\n".join([
        f"Measured {benchlib.today()} on {device_line(device)}; host: "
        f"{benchlib.machine_line()}; by `python benchmarks/gpu.py`. torch CPU threads: "
        f"{args.threads}; `num_workers=0`, pinned batches. Host load while it ran: "
        + meter.stop().sentence(),
        "",
        "Same arms, models and method as the CPU comparison above (alternating rounds, "
        "medians of per-round ratios). With `torch.compile`, each run's first (compiling) "
        "epoch is left out of the timing in every arm. Per CPU second figures are of the host "
        "process and matter little here.",
        "",
        *notes,
        *[f"\n{s}" for s in sections],
    ])
    text = re.sub(r"\n{3,}", "\n\n", text)
    print(benchlib.section(KEY, TITLE, text))
    if args.write:
        if device.type != "cuda":
            print("a dry run is not written to the docs", file=sys.stderr)
        else:
            benchlib.write_section(args.write, KEY, TITLE, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
