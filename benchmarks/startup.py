"""Start-up time: ``mmcore plugins``, ``mmcore validate`` and ``import mmcore`` against
``python -c "import torch"``, with every installed plugin discovered.

Each command runs in a fresh process, many times, the commands taking turns (round ``i`` starts
with command ``i mod n``), and the figure is the median wall time. Then each mmcore command
runs once more under ``python -X importtime`` to check that it imports no torch (and, if it
does, which import pulled it in).

``mmcore validate`` is timed on two specs: with ``--no-data`` on a plain spec declaring all five
modality plugins (position, gesture, image, text, audio: every plugin's options model is
loaded), and with its data checks on the README demo ``examples/av_digits/spec.py`` (whose
degraded data is made first, untimed, since the spec file makes it on first use). The data
checks read the csv's header and the columns they check with pyarrow (no ``datasets``) and fit
the head's targets with its torch-free target side (:mod:`mmcore.heads.targets`): it imports
no torch, held to the same target as the other commands. One more ``mmcore validate`` of
the demo sets ``train.monitor`` to a head metric: checking it loads the head class (torch).
Each command's CPU time (its process's user + system time) is measured beside its wall time,
and the targets are judged on CPU time, which other jobs on a shared machine move less.

Then ``DataModule.setup()`` on a warm cache: the demo's data set up once (untimed), then set up
again in fresh processes, timed with ``time.process_time`` around ``setup()`` alone (torch and
the loader imported before, as a trainer has them), the arms taking turns: with the set-up
record (:mod:`mmcore.data.split_record`: the splits memory-mapped, no row read) and with the
record removed before each run (``datasets``' caches only, as before the record: the sources
read through ``datasets``, the fits loaded and the heads fitted again, the maps found in
the cache).

    python benchmarks/startup.py [--rounds 10] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import benchlib

KEY = "startup"
TITLE = "Start-up"
#: under half of ``import torch`` (the CLI commands, ``mmcore validate`` with its data checks
#: too: issue 32); at most 1.3x (``import mmcore``); judged on CPU time
TARGETS = {"plugins": 0.5, "validate5": 0.5, "validate_av": 0.5, "import_mmcore": 1.3}
#: the warm set-up's arms: with the record, and with it removed before each run
SETUP_ARMS = {"record": "set-up record (memory-map and go)",
              "no_record": "record removed (datasets' caches only, as before)"}


@dataclass
class Command:
    key: str
    label: str
    argv: list[str]
    cwd: Path
    check_torch: bool = True


def cli() -> list[str]:
    """How to run the ``mmcore`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "mmcore"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "mmcore"]


def five_modality_spec_file(folder: Path) -> Path:
    """A spec file declaring all five modality plugins (a plain dict: it imports nothing)."""
    spec = benchlib.five_modality_spec(folder / "rows.csv", benchlib.FIVE, None)
    spec["data"] = {"path": "rows.csv", "split_column": "split"}
    path = folder / "spec.py"
    path.write_text(f'"""All five modality plugins, for start-up timing."""\n\nspec = {spec!r}\n')
    columns = ["label", "split", "image", "audio", "text", *benchlib.HAND, *benchlib.MOTION]
    # one row per split: validate reads the table (its columns and splits), not the files
    rows = [",".join(["a", split, "x.png", "x.wav", "text", *["0"] * (len(columns) - 5)])
            for split in ("train", "validation", "test")]
    (folder / "rows.csv").write_text("\n".join([",".join(columns), *rows]) + "\n")
    return path


def commands(folder: Path) -> list[Command]:
    python, repo = sys.executable, benchlib.REPO
    spec5 = five_modality_spec_file(folder)
    return [
        Command("python", 'python -c "pass"', [python, "-c", "pass"], repo, False),
        Command("import_torch", 'python -c "import torch"', [python, "-c", "import torch"],
                repo, False),
        Command("import_mmcore", 'python -c "import mmcore"', [python, "-c", "import mmcore"],
                repo),
        Command("plugins", "mmcore plugins", [*cli(), "plugins"], repo),
        Command("validate5", "mmcore validate --no-data (spec with all five plugins)",
                [*cli(), "validate", "--no-data", str(spec5)], repo),
        # with its data checks: the csv read with pyarrow, the head's targets fitted without
        # torch, so checked for torch like the others
        Command("validate_av", "mmcore validate examples/av_digits/spec.py (data checks too)",
                [*cli(), "validate", "examples/av_digits/spec.py"], repo),
        # a head metric to monitor: the check loads the head class (torch, for now)
        Command("validate_monitor", "mmcore validate examples/av_digits/spec.py "
                "train.monitor=digit.accuracy",
                [*cli(), "validate", "examples/av_digits/spec.py",
                 "train.monitor=digit.accuracy"], repo),
    ]


def children_cpu() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def run_once(cmd: Command, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``cmd``."""
    cpu, start = children_cpu(), time.perf_counter()
    done = subprocess.run(cmd.argv, cwd=cmd.cwd, env=env, capture_output=True, text=True,
                          check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd.label} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return took, children_cpu() - cpu


def setup_child(cache: Path) -> None:
    """One timed ``DataModule.setup()`` of the demo's data cached in ``cache``; prints its CPU
    and wall seconds and whether it imported ``datasets``, as JSON."""
    import torch

    import mmcore.data.loader  # noqa: F401 - a trainer has imported it (and torch) already
    from mmcore.data import DataModule
    from mmcore.data.modalities import build_modalities
    from mmcore.spec import load_spec

    torch.set_num_threads(1)
    spec = load_spec(str(benchlib.AV_DIGITS / "spec.py"), [f"data.cache_dir={cache}"])
    dm = DataModule(spec, build_modalities(spec), progress=False)
    cpu, start = time.process_time(), time.perf_counter()
    dm.setup()
    print(json.dumps({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - start,
                      "datasets": "datasets" in sys.modules,
                      "rows": [dm.num_rows(s) for s in dm.splits]}))


def warm_setups(cache: Path, rounds: int, env: dict[str, str]) -> dict[str, list[dict]]:
    """``rounds`` fresh-process set-ups per arm of :data:`SETUP_ARMS`, taking turns, after
    one untimed set-up that fills ``cache``."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--setup-child", str(cache)]

    def once() -> dict:
        done = subprocess.run(argv, cwd=benchlib.REPO, env=env, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"set-up failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    once()
    runs: dict[str, list[dict]] = {arm: [] for arm in SETUP_ARMS}
    for i in range(rounds):
        for arm in list(SETUP_ARMS)[i % 2:] + list(SETUP_ARMS)[: i % 2]:
            if arm == "no_record":
                for record in cache.glob("mmcore-setup-*.json"):
                    record.unlink()
            runs[arm].append(once())
    return runs


def torch_importer(cmd: Command, env: dict[str, str]) -> str | None:
    """``None`` when ``cmd`` imports no torch, else the chain of imports that pulled it in."""
    argv = list(cmd.argv)
    if argv[0] != sys.executable:  # the console script: run it with this python
        argv = [sys.executable, *argv]
    argv.insert(1, "-X")
    argv.insert(2, "importtime")
    done = subprocess.run(argv, cwd=cmd.cwd, env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{cmd.label} failed under -X importtime (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    # lines: "import time: self | cumulative | <indent>name", children before their parent
    entries = []
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+\d+ \|\s+\d+ \| (\s*)(\S+)$", line)
        if found:
            entries.append((len(found.group(1)) // 2, found.group(2)))
    for i, (depth, name) in enumerate(entries):
        if name == "torch":
            chain, want = [name], depth
            for d, parent in entries[i + 1 :]:
                if d < want:
                    chain.append(parent)
                    want = d
            return " <- ".join(chain)
    return None


def make_degraded(env: dict[str, str]) -> None:
    """The av_digits spec degrades its data on first use: do that before timing."""
    code = ("import sys; sys.path.insert(0, 'examples/av_digits'); "
            "from degrade import ensure_degraded; ensure_degraded()")
    subprocess.run([sys.executable, "-c", code], cwd=benchlib.REPO, env=env, check=True,
                   capture_output=True)


def report(cmds: list[Command], times: dict[str, list[float]], cpus: dict[str, list[float]],
           torch_of: dict[str, str | None], rounds: int, load: benchlib.Load,
           plugins_line: str, setups: dict[str, list[dict]]) -> str:
    med = benchlib.median
    base, base_cpu = med(times["import_torch"]), med(cpus["import_torch"])
    rows, verdicts = [], []
    for cmd in cmds:
        m, c = med(times[cmd.key]), med(cpus[cmd.key])
        ratio = c / base_cpu
        target = TARGETS.get(cmd.key)
        if target is not None:
            ok = ratio < target if target < 1 else ratio <= target
            verdicts.append(f"{cmd.label}: {ratio:.2f}x ({'met' if ok else '**NOT met**'}, "
                            f"target {'<' if target < 1 else '<='} {target:g}x)")
        if cmd.check_torch:
            chain = torch_of.get(cmd.key)
            imports = "no" if chain is None else f"**yes**: {chain}"
        else:
            imports = "—" if cmd.key == "python" else "yes"
        rows.append([f"`{cmd.label}`", f"{m * 1000:.0f}", benchlib.spread(
            [t * 1000 for t in times[cmd.key]]), f"{m / base:.2f}x", f"{c * 1000:.0f}",
            f"{ratio:.2f}x", imports])
    return "\n".join([
        f"Measured {benchlib.today()} on {benchlib.machine_line()}, by `python "
        f"benchmarks/startup.py`. {rounds} runs of each command in a fresh process, the "
        "commands taking turns; medians of wall time and of CPU time (the process's user + "
        "system time). Load while it ran: " + load.sentence(),
        "",
        f"Installed plugins (`mmcore plugins`): {plugins_line}.",
        "",
        benchlib.table(["command", "wall (ms)", "wall range (ms)", "wall / import torch",
                        "CPU (ms)", "CPU / import torch", "imports torch"], rows),
        "",
        "Targets (on CPU time): " + "; ".join(verdicts) + ".",
        "",
        "\"imports torch\" comes from one more run under `python -X importtime`. The five-"
        "plugin spec is a plain dict (every plugin's options model is loaded to validate it). "
        "`mmcore validate` with its data checks (the av_digits line) reads the csv's header "
        "and the columns it checks with pyarrow, without `datasets`, and checks the head's "
        "options against the train targets with the built-in heads' torch-free target side "
        "(`mmcore/heads/targets.py`), so it imports no torch. The av_digits spec file also "
        "imports numpy, Pillow and soundfile through its `degrade.py` (the example's own cost, "
        "not mmcore's). Registrations are by import "
        "path and options models are pydantic-only, so neither command loads a plugin's "
        "implementation. A `train.monitor` other than a loss is checked against the heads' "
        "metric names, which the built-in heads keep on their torch-free target side "
        "(`mmcore.heads.targets`), so that line imports no torch either.",
        "",
        setup_report(setups),
    ])


def setup_report(setups: dict[str, list[dict]]) -> str:
    """The warm ``DataModule.setup()`` figures: a table of the arms and a sentence."""
    med = benchlib.median
    rows = []
    for arm, label in SETUP_ARMS.items():
        cpu = [r["cpu"] for r in setups[arm]]
        imported = {r["datasets"] for r in setups[arm]}
        rows.append([label, f"{med(cpu):.3f}", benchlib.spread(cpu),
                     f"{med([r['wall'] for r in setups[arm]]):.3f}",
                     "yes" if imported == {True} else "no" if imported == {False} else "some"])
    first = setups["record"][0]["rows"]
    ratio = med([r["cpu"] for r in setups["no_record"]]) / med([r["cpu"] for r in
                                                                setups["record"]])
    return "\n".join([
        f"`DataModule.setup()` on a warm cache: the README demo's data (av_digits, {sum(first)} "
        f"rows: {', '.join(map(str, first))} by split) set up once, then {len(setups['record'])}"
        " times per arm in a fresh process (the arms taking turns, torch and the loader "
        "imported before the timer starts, as a trainer has them); CPU seconds of `setup()` "
        "alone (`time.process_time`).",
        "",
        benchlib.table(["arm", "CPU s (median)", "CPU range (s)", "wall s (median)",
                        "imports datasets"], rows),
        "",
        f"The record cuts a warm set-up's CPU time {ratio:.0f}x. Without it, `setup()` imports "
        "`datasets` (and pandas with it) to read the csv and find each split's fingerprint, "
        "reads the train targets row by row to fit the heads, and loads the modalities' fits "
        "from their cache; with it, it stats the source files, reads one JSON record, loads "
        "the fitted states and memory-maps each split's Arrow files with pyarrow.",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--write", type=Path, help="markdown file whose section to update")
    parser.add_argument("--setup-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.setup_child is not None:
        setup_child(args.setup_child)
        return 0
    env = {**os.environ, **benchlib.OFFLINE_ENV}
    env.pop("AV_DIGITS_CLEAN", None)  # validate the example as users run it
    make_degraded(env)
    meter = benchlib.LoadMeter()
    with tempfile.TemporaryDirectory(prefix="mmcore-bench-") as tmp:
        cmds = commands(Path(tmp))
        listing = subprocess.run([*cli(), "plugins"], env=env, capture_output=True, text=True,
                                 check=True).stdout
        plugins_line = ", ".join(
            f"{m.group(1)} ({m.group(2)})"
            for m in re.finditer(r"^(\S+)\s+\[(\w+)\]", listing, re.M)
        )
        times: dict[str, list[float]] = {c.key: [] for c in cmds}
        cpus: dict[str, list[float]] = {c.key: [] for c in cmds}
        for cmd in cmds:  # warm-up: page cache, .pyc files
            run_once(cmd, env)
        for i in range(args.rounds):
            for cmd in cmds[i % len(cmds):] + cmds[: i % len(cmds)]:
                took, cpu = run_once(cmd, env)
                times[cmd.key].append(took)
                cpus[cmd.key].append(cpu)
            print(f"round {i + 1}: " + ", ".join(
                f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()), file=sys.stderr)
        torch_of = {c.key: torch_importer(c, env) for c in cmds if c.check_torch}
        setups = warm_setups(Path(tmp) / "cache", max(3, args.rounds // 2), env)
        text = report(cmds, times, cpus, torch_of, args.rounds, meter.stop(), plugins_line,
                      setups)
    benchlib.publish(KEY, TITLE, text, args.write)
    bad = [k for k, v in torch_of.items() if v is not None and k != "validate_monitor"]
    if bad:
        print(f"these import torch: {', '.join(bad)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
