from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported where used: pytest-xdist's controller loads this file and needs
    from mmcore.plugins.registry import Registry  # none of it (tests.toy imports torch)


def pytest_sessionstart(session: pytest.Session) -> None:
    """In a pytest-xdist worker, torch gets its share of the cores, not all of them: with
    ``-n logical`` there is a worker per core, and each one's default of a thread per core made
    (cores x cores) spinning threads (``-m "not slow"`` on two cores: about 4% more CPU time,
    alternating runs with ``OMP_NUM_THREADS=1`` and without)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers:
        import torch

        from mmcore.train.settings import usable_cores

        torch.set_num_threads(max(1, usable_cores() // workers))


@pytest.fixture
def one_thread():
    """One torch thread for the test: on two busy shared cores, more intra-op threads only add
    contention on these tiny models (and a resume compared across processes needs the same
    thread count in both). Test modules that train take it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def av_digits_export(tmp_path_factory) -> Callable[[], tuple[Path, Path]]:
    """A function giving the av_digits example trained for one epoch and exported to ONNX,
    ``(run, bundle)``, made on its first call once per test session, across pytest-xdist's
    workers too (the first worker to ask makes it under a file lock; the others read it). A
    minute of exporting saved for each module that reads it. Read-only: a test that changes
    either, or exports from the run, copies it first."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "av_digits_export"

    @functools.cache
    def made() -> tuple[Path, Path]:
        from filelock import FileLock

        run, bundle, done = root / "run", root / "bundle", root / "made"
        root.mkdir(exist_ok=True)
        # a worker stuck making it fails the others' tests after half an hour, not never
        with FileLock(str(root) + ".lock", timeout=1800):
            if not done.exists():
                _train_and_export(run, bundle)
                done.touch()
        return run, bundle

    return made


def train_example(spec: Path, run: Path, *overrides: str) -> Path:
    """The example ``spec`` trained for one epoch into ``run`` on one thread (no report, no
    test pass), with ``overrides`` (``key=value``); the thread count and ``sys.path`` (a spec
    file's folder joins it) restored."""
    import torch

    from mmcore.cli import main

    threads, path = torch.get_num_threads(), list(sys.path)
    torch.set_num_threads(1)
    try:
        code = main(["train", str(spec), "-o", str(run), "-q", "--no-report", "--no-test",
                     "train.epochs=1", *overrides])
    finally:
        torch.set_num_threads(threads)
        sys.path[:] = path
    assert code == 0
    return run


def _train_and_export(run: Path, bundle: Path) -> None:
    from mmcore.inference.export import export_run

    shutil.rmtree(run, ignore_errors=True)  # a worker that failed half-way left them
    shutil.rmtree(bundle, ignore_errors=True)
    train_example(Path(__file__).resolve().parents[1] / "examples" / "av_digits" / "spec.py", run)
    export_run(run, bundle)


@pytest.fixture
def reg() -> Registry:
    """The trainer tests' registry: the built-ins plus ``tests/train_toy.py``'s plugins."""
    from tests import train_toy

    return train_toy.registry()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """``tests/train_toy.py``'s tiny CSV (a ``split`` column) in ``tmp_path/data``."""
    from tests import train_toy

    return train_toy.write_data(tmp_path / "data" / "data.csv")


@pytest.fixture
def registry() -> Registry:
    """The data-layer tests' registry: the built-ins plus ``tests/data_toy.py``'s ``num``
    modality, whose preprocessing call count starts at zero."""
    from tests import data_toy

    data_toy.NumModality.calls = 0
    return data_toy.toy_registry()


@pytest.fixture
def toy_registry() -> Registry:
    """A registry with the core's built-ins and the toy modality plugin only."""
    from mmcore.plugins.discovery import new_plugin_manager
    from mmcore.plugins.registry import Registry
    from tests.toy import ToyPlugin

    pm = new_plugin_manager()
    pm.register(ToyPlugin(), name="toy")
    return Registry(pm, distributions={"toy": ("toy-dist", "1.0")})


#: the slow tail of the suite (``-m "not slow"`` leaves it out; ``make test`` runs it): whole
#: modules that train, export, serve or spawn processes, then single tests of half a second or
#: more. Paths are relative to the repository; measured with ``pytest --durations``.
SLOW_MODULES = (
    "tests/test_distributed.py",      # torchrun-style process groups
    "tests/test_distributed_fsdp.py",  # torchrun-style process groups, sharded
    "tests/test_export.py",           # trains the examples, exports every fusion
    "tests/test_serve.py",            # real servers on loopback
    "tests/test_bundle_security.py",  # trains and exports a run
    "tests/test_tune.py",             # Optuna studies, several workers
    "tests/test_docs.py",             # every docs page, some of which train
    "plugins/mmcore-plugin-transformers/tests/test_transformers_docs.py",
)
#: single slow tests, by test id prefix: one per line of tests/slow_tests.txt (# comments)
SLOW_TESTS = tuple(
    line.strip() for line in (Path(__file__).parent / "slow_tests.txt").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#")
)
REPO = Path(__file__).resolve().parents[1]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under ``-m "not slow"`` the slow modules are not even imported (their imports alone,
    ONNX export, servers, Optuna, cost each test process seconds); ``None``: pytest decides."""
    if config.getoption("markexpr", "").replace(" ", "") != "notslow":
        return None
    try:
        node = collection_path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return None
    return True if node in SLOW_MODULES else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        try:
            node = Path(item.path).resolve().relative_to(REPO).as_posix()
        except ValueError:
            continue
        test_id = f"{node}::{item.nodeid.split('::', 1)[1]}"  # with a test's class, if any
        if node in SLOW_MODULES or any(test_id.startswith(prefix) for prefix in SLOW_TESTS):
            item.add_marker(slow)
