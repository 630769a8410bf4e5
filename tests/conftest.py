from __future__ import annotations

import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mmcore.plugins.discovery import new_plugin_manager
from mmcore.plugins.registry import Registry
from tests.toy import ToyPlugin


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
    pm = new_plugin_manager()
    pm.register(ToyPlugin(), name="toy")
    return Registry(pm, distributions={"toy": ("toy-dist", "1.0")})


#: the slow tail of the suite (``-m "not slow"`` leaves it out; ``make test`` runs it): whole
#: modules that train, export, serve or spawn processes, then single tests of a few seconds.
#: Paths are relative to the repository; measured with ``pytest --durations``.
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
SLOW_TESTS = (
    "tests/test_scaffold.py::test_generated_plugin_installs_and_passes_its_tests",
    "tests/test_sequence.py::test_long_single_channel_input_trains_without_crashing",
    "tests/test_train_resume.py::test_sigkill",
    "tests/test_minirocket.py::test_a_minirocket_run_exports_faithfully",
    "tests/test_cli_exits.py::test_any_base_exception_from_a_spec_file",
    "tests/test_cli_imports.py::test_training_on_a_warm_cache_imports_neither",
    "plugins/mmcore-plugin-gesture/tests/test_gesture_sensor_series.py::",
    "plugins/mmcore-plugin-gesture/tests/test_gesture_transforms.py::test_augmentation_trains",
    "plugins/mmcore-plugin-gesture/tests/test_gesture_transforms.py::test_a_run_saves",
    "plugins/mmcore-plugin-tabular/tests/test_tabular_learns.py::test_hand_signs_from_42_numeric",
    # 2.4-11 s each on 2 AMD EPYC cores (2026-12-07): subprocesses, exports, learning checks
    "tests/test_card.py::test_an_export_bundle_has_the_card_covered_by_its_checksums",
    "tests/test_card.py::test_overwrite_rewrites_the_card_and_a_readme_of_the_users_is_left_alone",
    "tests/test_share_buffers.py::test_every_process_takes_the_main_processes_buffers",
    "tests/test_weight_average.py::test_the_average_of_a_sharded_model_holds_its_buffers_too",
    "tests/test_weight_average.py::test_the_default_averages_a_small_run_of_auto_epochs",
    "tests/test_bad_rows_train.py::test_nan_in_a_training_array_under_raise_is_exit_2_naming_the_row",
    "tests/test_contract_suite.py::test_flawed_modality_fails_the_right_checks[torch-",
    "tests/test_ablation_once.py::test_evaluate_with_both_reports_evaluates_each_subset_once",
    "tests/test_cli_exits.py::test_spec_calling_sys_exit_is_a_spec_error_naming_the_file",
    "tests/test_minirocket.py::test_fitting_follows_minirockets_layout_and_is_seeded",
    "tests/test_data_record.py::test_a_warm_set_up_imports_no_datasets",
    "tests/test_cli_imports.py::test_the_trainer_is_still_where_it_was",
    "tests/test_train_run_folder.py::"
    "test_a_second_writer_is_refused_while_a_training_holds_the_folder",
    "plugins/mmcore-plugin-audio/tests/test_audio_minirocket.py::"
    "test_minirocket_learns_spoken_digits_from_few_clips",
    "plugins/mmcore-plugin-audio/tests/test_audio_learns.py::test_small_cnn_lstm_learns_spoken_digits",
    "plugins/mmcore-plugin-transformers/tests/test_transformers_train.py::"
    "test_plugins_and_validate_do_not_import_transformers",
    "tests/test_examples.py::"
    "test_two_processes_building_the_degraded_data_at_once_build_it_once",
)
REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        try:
            node = Path(item.path).resolve().relative_to(REPO).as_posix()
        except ValueError:
            continue
        test_id = f"{node}::{item.name}"
        if node in SLOW_MODULES or any(test_id.startswith(prefix) for prefix in SLOW_TESTS):
            item.add_marker(slow)
