"""Hyperparameter search on Optuna: ``mmcore tune SPEC --space SPACE.py --trials N``.

The search space is a Python file of yours defining ``space(trial) -> {field path: value}``,
the same dotted paths as command-line overrides::

    def space(trial):
        return {"train.lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
                "fusion.options.size": trial.suggest_categorical("size", [32, 64, 128])}

Each trial is a normal run folder (``OUTPUT/trials/trial-NNNN``) trained with those overrides
and ``train.final_test=false``: trials are compared on the validation split only (the run's
best value of ``train.monitor``), and the test split stays untouched until you evaluate the
chosen run. A trial whose validation curve falls below the median of earlier trials at the same
epoch is pruned (stopped after that epoch, Optuna's ``MedianPruner``).

The study lives in an Optuna storage (``--storage``, default ``sqlite:///OUTPUT/study.db``): a
second ``mmcore tune`` with the same arguments resumes it, and several processes on one storage
share it (``--jobs J`` starts J workers); on a database server
(``--storage postgresql+psycopg://...``) workers on several machines share one study, each
trial recording its run folder and host. ``--trials N`` counts finished trials (complete or
pruned) across all of them. A trial interrupted by a kill is marked failed by the next worker
once its heartbeat is older than a minute and does not count.

Each finished trial is one line through the ``mmcore`` logger (its number, state, value,
parameters and the best so far), with a progress bar over the trials when stderr is a terminal.

At the end ``OUTPUT/trials.csv`` lists every trial, ``OUTPUT/best.json`` holds the best trial's
value, parameters, run folder and overrides, and ``OUTPUT/best_spec.json`` is the spec with them
applied, its data paths absolute, with the spec file copied beside it as ``OUTPUT/spec.py`` when
it defines the fusion class (train it with ``mmcore train OUTPUT/best_spec.json``, with
``--trust-code`` for a fusion class of the spec file: the JSON names that copy).
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmcore.errors import MmcoreError, SpecError, TrainingError
from mmcore.log import get_logger
from mmcore.spec.load import load_spec
from mmcore.spec.modules import SPEC_COPY, SPEC_MODULE_PREFIX, load_module

#: seconds between a running trial's heartbeats, and after which a silent one is failed
HEARTBEAT, GRACE = 10, 60
#: seconds a PostgreSQL connection attempt waits for the server before giving up
CONNECT_TIMEOUT = 30
#: storage URLs, for messages
STORAGE_EXAMPLES = "sqlite:///path/study.db or postgresql+psycopg://user@host:5432/database"


def load_space(path: str | Path) -> Callable[[Any], dict[str, Any]]:
    """The ``space`` function of a space file (a file you wrote and name on the command line:
    it is run)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(str(path), [("", "file not found")])
    module = load_module(path)
    space = getattr(module, "space", None)
    if not callable(space):
        raise SpecError(str(path), [("space", "the file defines no function space(trial)")])
    return space


def override_text(path: str, value: Any) -> str:
    return f"{path}={json.dumps(value)}"


class _Pruning:
    """Reports each epoch's monitored value to the trial; stops the run when Optuna prunes."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.pruned = False

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get(trainer.monitor.key)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.stop()


def _hooked(obj: _Pruning) -> Any:
    from mmcore.plugins.hookspecs import hookimpl

    class Hook:
        @hookimpl
        def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
            obj.on_epoch_end(trainer, epoch, metrics)

    return Hook()


def monitor_direction(spec: Any) -> tuple[str, bool]:
    """``(monitor name, larger is better)`` of the spec, without building a model."""
    from mmcore.heads.targets import check_monitor
    from mmcore.plugins import get_registry

    registry = get_registry()
    heads = {n: registry.get("head", h.kind).load() for n, h in spec.heads.items()}
    available = check_monitor(spec.train.monitor, heads, spec.source)
    name = spec.train.monitor
    if name is None:
        first, cls = next(iter(heads.items()))
        name = f"{first}.{cls.metric_names[0]}"
    return name, available[name]


def open_storage(output: Path, storage: str | None = None) -> Any:
    """The study's Optuna storage (default: ``OUTPUT/study.db``), its tables created. Open it
    once before starting workers: processes creating the tables of one new SQLite file at
    the same time collide (a unique-constraint error in Optuna's schema migration).

    A database server URL (``postgresql+psycopg://user@host:5432/db``, ``mysql+pymysql://...``)
    lets workers on several machines share one study. Its connections are checked before use
    (a server may drop one that idled through a long trial), and a PostgreSQL connection
    attempt gives up after :data:`CONNECT_TIMEOUT` seconds unless the URL sets
    ``connect_timeout``. A URL that cannot be parsed, names a database whose driver is not
    installed, or cannot be reached raises :class:`MmcoreError` naming ``--storage``."""
    import optuna

    output.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(output / 'study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=_engine_options(url),
                                              heartbeat_interval=HEARTBEAT,
                                              grace_period=GRACE)
    except Exception as exc:  # each cause becomes one line for the user, below
        raise storage_error(url, storage is None, exc) from exc


def _engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for ``url``: none for SQLite; for a server, check a pooled
    connection before use and bound a PostgreSQL connection attempt."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return {}  # RDBStorage reports it
    if parsed.get_backend_name() == "sqlite":
        return {}
    options: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    return options


def shown_url(url: str) -> str:
    """``url`` with its password, if any, written as ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)


def storage_error(url: str, default: bool, exc: BaseException) -> MmcoreError:
    """One line for a storage that cannot be opened: the URL (password hidden), what went
    wrong and what was expected."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    where = f"--storage {shown_url(url)}" + (" (the default)" if default else "")
    if isinstance(exc, ImportError):
        cause = exc.__cause__ or exc
        return MmcoreError(
            f"{where}: the database driver is not installed ({_first_line(cause)}); install "
            "it where mmcore runs (PostgreSQL: pip install 'psycopg[binary]' with a "
            "postgresql+psycopg:// URL; MySQL: pip install pymysql with mysql+pymysql://)")
    if isinstance(exc, NoSuchModuleError):
        kind = url.partition("://")[0]
        return MmcoreError(f"{where}: unknown database kind {kind!r}; expected an Optuna "
                           f"storage URL such as {STORAGE_EXAMPLES}")
    if isinstance(exc, (ArgumentError, ValueError, KeyError)):
        return MmcoreError(f"{where}: not a database URL; expected an Optuna storage URL "
                           f"such as {STORAGE_EXAMPLES}")
    if isinstance(exc, SQLAlchemyError):
        check = ("that its folder exists and is writable" if url.startswith("sqlite")
                 else "that the server is running and reachable from this machine, and the "
                 "user, password and database name")
        return MmcoreError(f"{where}: cannot open the database ({_first_line(exc)}); "
                           f"check {check}")
    return MmcoreError(f"{where}: {_first_line(exc)}")


def worker_offset() -> int:
    """A number that differs between this worker and the others on the study, added to the
    sampler's seed so that their first (random) trials differ: workers on several machines,
    or in containers, may well have the same process id."""
    return zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 1_000_003


def run_study(spec_path: str | Path, space_path: str | Path, trials: int, output: str | Path,
              storage: str | None = None, study_name: str | None = None, seed: int = 0,
              overrides: Sequence[str] = (), trust_code: bool = False) -> dict[str, Any]:
    """Run trials of the study until ``trials`` have finished; returns ``best.json``'s dict.
    ``trust_code`` lets a ``spec.json`` name fusion and callback classes in any module, and a
    fusion in a Python file (a ``best_spec.json``'s ``spec.py:ClassName``), as ``mmcore train
    --trust-code`` does."""
    try:
        import optuna
    except ImportError:
        raise MmcoreError("mmcore tune needs Optuna: pip install 'mmcore-torch[tune]'") from None
    from mmcore.train import Trainer

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    base = load_spec(spec_path, list(overrides), trust_code=trust_code)  # before any trial
    space = load_space(space_path)
    monitor, larger = monitor_direction(base)
    storage_obj = open_storage(output, storage)
    study = optuna.create_study(
        study_name=study_name or base.name, load_if_exists=True,
        storage=storage_obj,
        direction="maximize" if larger else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed + worker_offset()),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial: Any) -> float:
        chosen = space(trial)
        texts = [override_text(k, v) for k, v in chosen.items()]
        trial.set_user_attr("overrides", texts)
        run = (output / "trials" / f"trial-{trial.number:04d}").resolve()
        trial.set_user_attr("run", str(run))  # on "host": workers may be on other machines
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("worker", os.getpid())
        pruning = _Pruning(trial)
        trainer = Trainer(spec_path, output=run, overwrite=True, quiet=True, plots=False,
                          report=False, summary=False, callbacks=[_hooked(pruning)],
                          trust_code=trust_code,
                          overrides=[*overrides, *texts, "train.final_test=false",
                                     "train.progress=false"])
        trainer.fit()
        if pruning.pruned:
            raise optuna.TrialPruned()
        if trainer.best_value is None or not math.isfinite(trainer.best_value):
            raise MmcoreError(f"trial {trial.number}: no finite {monitor} on validation")
        return float(trainer.best_value)

    done = len(study.get_trials(deepcopy=False, states=finished))
    left = trials - done
    if left > 0:
        progress = _Progress(monitor, trials, done)
        try:
            study.optimize(
                objective, n_trials=left, catch=(TrainingError,),
                callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished), progress],
            )
        finally:
            progress.close()
    return write_summary(study, base, output, monitor, list(overrides), trust_code)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_line(trial: Any, monitor: str, best: Any | None) -> str:
    """``trial 3 complete: label.accuracy=0.8125 (lr=0.0123 size=64); best so far: trial 1,
    label.accuracy=0.8750``: one finished trial, and the study's best at that moment."""
    state = trial.state.name.lower()
    if trial.value is not None:
        outcome = f"{monitor}={trial.value:.4f}"
    elif state == "pruned":
        last = max(trial.intermediate_values, default=None)
        outcome = f"stopped after epoch {last}" if last is not None else "stopped"
    else:
        outcome = "no value"
    params = " ".join(f"{k}={_number(v)}" for k, v in trial.params.items())
    line = f"trial {trial.number} {state}: {outcome}" + (f" ({params})" if params else "")
    if best is not None:
        line += f"; best so far: trial {best.number}, {monitor}={best.value:.4f}"
    return line


class _Progress:
    """Optuna study callback: a log line per finished trial (the ``mmcore`` logger) and a
    progress bar over the trials when stderr is a terminal (or a notebook with ipywidgets)."""

    def __init__(self, monitor: str, total: int, done: int) -> None:
        self.monitor = monitor
        self.bar: Any = None
        from mmcore.train.progress import bars_render, tqdm

        if bars_render():  # a terminal, or a notebook with ipywidgets
            self.bar = tqdm(total=total, initial=done, desc="trials", unit="trial",
                            file=sys.stderr, dynamic_ncols=True)

    def __call__(self, study: Any, trial: Any) -> None:
        try:
            best = study.best_trial
        except ValueError:  # no trial complete yet
            best = None
        get_logger().info(trial_line(trial, self.monitor, best))
        if self.bar is not None and trial.state.name in ("COMPLETE", "PRUNED"):
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_best_spec(spec: Any, output: Path) -> Path:
    """``OUTPUT/best_spec.json``, ready for ``mmcore train`` from any folder: its data paths
    made absolute (they resolve against the original spec's folder), and the spec file copied
    beside it as ``spec.py`` when it defines the fusion class (recorded as ``spec.py:Class``)."""
    from mmcore.run.atomic import atomic_write_text
    from mmcore.run.layout import spec_json_data

    fusion = spec.fusion.name
    source: str | Path | None = None
    copy = output / SPEC_COPY
    if isinstance(fusion, type) and fusion.__module__.startswith(SPEC_MODULE_PREFIX):
        source = getattr(sys.modules.get(fusion.__module__), "__file__", None)
        if source is None:
            raise MmcoreError(f"cannot write best_spec.json: the module defining fusion "
                              f"{fusion.__qualname__} has no file to copy")
    elif isinstance(fusion, str) and fusion.partition(":")[0].endswith(".py"):
        file = Path(fusion.partition(":")[0])  # a spec.json naming "file.py:Class"
        if not file.is_absolute():
            source, copy = Path(spec.base_dir or ".") / file, output / file
    if source is not None and not (copy.exists() and copy.resolve() == Path(source).resolve()):
        atomic_write_text(copy, Path(source).read_text(encoding="utf-8"))
    path = output / "best_spec.json"
    atomic_write_text(path, json.dumps(spec_json_data(spec), indent=2) + "\n")
    return path


def write_summary(study: Any, base: Any, output: Path, monitor: str,
                  overrides: list[str], trust_code: bool = False) -> dict[str, Any]:
    """``trials.csv``, ``best.json`` and ``best_spec.json`` in ``output``."""
    import optuna

    rows = []
    names = sorted({k for t in study.trials for k in t.params})
    for t in study.trials:
        rows.append({"trial": t.number, "state": t.state.name,
                     monitor: "" if t.value is None else t.value,
                     **{k: t.params.get(k, "") for k in names},
                     "run": t.user_attrs.get("run", ""), "host": t.user_attrs.get("host", "")})
    with (output / "trials.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["trial", "state", monitor, *names, "run",
                                                "host"])
        writer.writeheader()
        writer.writerows(rows)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise MmcoreError("no trial completed; see trials.csv")
    best = study.best_trial
    chosen = list(best.user_attrs.get("overrides", []))
    importances: dict[str, float] = {}
    if len(complete) >= 3 and names:
        try:
            importances = dict(optuna.importance.get_param_importances(study))
        except (RuntimeError, ValueError):  # too few distinct values to tell
            importances = {}
    summary = {"monitor": monitor, "direction": study.direction.name.lower(),
               "value": best.value, "trial": best.number, "params": best.params,
               "overrides": chosen, "run": best.user_attrs.get("run"),
               "host": best.user_attrs.get("host"),
               "trials": {s: sum(t.state.name == s for t in study.trials)
                          for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
               "importances": importances}
    (output / "best.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_best_spec(load_spec(base.source, [*overrides, *chosen], trust_code=trust_code),
                    output)
    return summary


def start_workers(argv: list[str], jobs: int) -> list[subprocess.Popen]:
    """``jobs - 1`` more ``python -m mmcore`` processes with ``argv`` (a ``tune`` command
    line) on the same study (one runs here)."""
    return [subprocess.Popen([sys.executable, "-m", "mmcore", *argv])
            for _ in range(max(jobs - 1, 0))]
