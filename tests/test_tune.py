"""``mmcore tune`` on Optuna: trials are run folders compared on validation only, the best spec
is written out, a study resumes after the tuner is killed, and two workers share one study."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmcore.plugins.default import reset_registry
from mmcore.spec import load_spec
from tests import train_toy as toy

optuna = pytest.importorskip("optuna", reason="mmcore tune needs Optuna (pip install "
                             "'mmcore-torch[tune]')")

REPO = Path(__file__).resolve().parents[1]
SPACE = '''
def space(trial):
    return {"train.lr": trial.suggest_float("lr", 1e-3, 1e-1, log=True),
            "fusion.options.size": trial.suggest_categorical("size", [4, 8])}
'''


@pytest.fixture
def study_files(tmp_path):
    data = toy.write_data(tmp_path / "data" / "data.csv")
    spec = toy.write_spec(tmp_path / "spec.py",
                          toy.spec_dict(data, tmp_path / "cache", callbacks=[]))
    space = tmp_path / "space.py"
    space.write_text(SPACE)
    return spec, space


def _finished(output: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{output / 'study.db'}")
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def test_trials_are_run_folders_chosen_on_validation_and_the_best_spec_is_written(
        study_files, tmp_path):
    from mmcore.tune import run_study

    spec, space = study_files
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    reset_registry(toy.registry())
    try:
        best = run_study(spec, space, 4, tmp_path / "tune")
        written = load_spec(tmp_path / "tune" / "best_spec.json")
    finally:
        reset_registry(None)
        torch.set_num_threads(before)
    assert len(_finished(tmp_path / "tune")) == 4
    assert best["monitor"] == "label.accuracy" and best["direction"] == "maximize"
    assert written.train.lr == pytest.approx(best["params"]["lr"])
    assert written.fusion.options["size"] == best["params"]["size"]
    final = json.loads((Path(best["run"]) / "metrics.json").read_text())
    assert "validation" in final and "test" not in final  # the test split is left alone
    assert best["value"] == pytest.approx(final["best_value"])
    lines = (tmp_path / "tune" / "trials.csv").read_text().splitlines()
    assert lines[0].startswith("trial,state,label.accuracy,lr,size,run") and len(lines) == 5


def _env(tmp_path: Path, delay: float = 0.0) -> dict[str, str]:
    site = toy.install_entry_point(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO), str(site)]),
                "MMCORE_PLUGINS": toy.PLUGIN, "OMP_NUM_THREADS": "1",
                "HF_DATASETS_OFFLINE": "1", toy.DELAY_ENV: str(delay)})
    return env


def _tune(spec: Path, space: Path, output: Path, trials: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmcore", "tune", str(spec), "--space", str(space),
            "--trials", str(trials), "--output", str(output), *extra]


def test_a_killed_study_resumes_to_the_trials_asked_for(study_files, tmp_path):
    spec, space = study_files
    output = tmp_path / "tune"
    slow = _env(tmp_path, delay=0.02)  # each training step of the slowtoy encoder sleeps
    proc = subprocess.Popen(_tune(spec, space, output, 3), env=slow, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (output / "trials" / "trial-0001").exists():  # trial 0 done, 1 under way
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no second trial after 120 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(_finished(output)) < 3
    done = subprocess.run(_tune(spec, space, output, 3), env=_env(tmp_path), text=True,
                          capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(_finished(output)) == 3
    best = json.loads((output / "best.json").read_text())
    assert best["trials"]["COMPLETE"] + best["trials"]["PRUNED"] == 3


def test_two_workers_share_one_study(study_files, tmp_path):
    spec, space = study_files
    output = tmp_path / "tune"
    done = subprocess.run(_tune(spec, space, output, 6, "--jobs", "2"),
                          env=_env(tmp_path, delay=0.02), text=True, capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = _finished(output)
    assert 6 <= len(trials) <= 7  # a worker may start one more before it sees the count
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials
    numbers = [t.number for t in trials]
    runs = [t.user_attrs["run"] for t in trials]
    assert len(set(numbers)) == len(numbers) and len(set(runs)) == len(runs)
    assert "best trial" in done.stdout


def test_the_documented_next_step_trains_the_best_spec_as_written(tmp_path):
    """docs/tuning.md: ``mmcore tune spec.py ... --output runs/tune`` then ``mmcore train
    runs/tune/best_spec.json --trust-code``, with the spec's data given relative to the spec
    file and a fusion class the spec file defines (recorded as ``spec.py:Class``)."""
    project = tmp_path / "project"
    toy.write_data(project / "data" / "data.csv")
    spec = toy.spec_dict(Path("data/data.csv"), Path("cache"), callbacks=[], epochs=1)
    (project / "spec.py").write_text(toy.FUSION_SPEC.replace("SPEC", repr(spec)))
    (project / "space.py").write_text(
        'def space(trial):\n    return {"train.lr": trial.suggest_float("lr", 1e-3, 1e-1)}\n')
    env = _env(tmp_path)
    tuned = subprocess.run(_tune(Path("spec.py"), Path("space.py"), Path("runs/tune"), 2),
                           cwd=project, env=env, text=True, capture_output=True, timeout=300)
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    lines = [x for x in tuned.stderr.splitlines() if x.startswith("trial ")]
    assert len(lines) == 2, tuned.stderr[-2000:]
    assert lines[0].startswith("trial 0 complete: label.accuracy=")
    assert "(lr=" in lines[0] and "best so far: trial " in lines[1]
    written = json.loads((project / "runs" / "tune" / "best_spec.json").read_text())
    assert Path(written["data"]["path"]).is_absolute()
    assert written["fusion"]["name"] == "spec.py:MeanFusion"
    assert (project / "runs" / "tune" / "spec.py").is_file()
    # a spec.json is data: the copied spec.py runs only with the opt-in
    refused = subprocess.run(
        [sys.executable, "-m", "mmcore", "train", "runs/tune/best_spec.json", "--output",
         "runs/best"], cwd=project, env=env, text=True, capture_output=True, timeout=300)
    assert refused.returncode == 2 and "--trust-code" in refused.stderr, refused.stderr
    trained = subprocess.run(
        [sys.executable, "-m", "mmcore", "train", "runs/tune/best_spec.json", "--output",
         "runs/best", "--trust-code"], cwd=project, env=env, text=True, capture_output=True,
        timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    best = json.loads((project / "runs" / "tune" / "best.json").read_text())
    saved = json.loads((project / "runs" / "best" / "spec.json").read_text())
    assert saved["train"]["lr"] == pytest.approx(best["params"]["lr"])
    assert saved["fusion"]["name"] == "spec.py:MeanFusion"
    assert (project / "runs" / "best" / "model.safetensors").is_file()


def test_a_trial_line_names_the_trial_its_outcome_and_the_best_so_far():
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from mmcore.tune import trial_line

    lr = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    best = create_trial(value=0.875, params={"lr": 0.01}, distributions=lr)
    best.number = 1
    pruned = create_trial(state=TrialState.PRUNED, params={"lr": 0.0123456},
                          distributions=lr, intermediate_values={0: 0.3, 1: 0.4})
    pruned.number = 4
    assert trial_line(pruned, "label.accuracy", best) == (
        "trial 4 pruned: stopped after epoch 1 (lr=0.01235); best so far: trial 1, "
        "label.accuracy=0.8750")
    assert trial_line(best, "label.accuracy", None) == (
        "trial 1 complete: label.accuracy=0.8750 (lr=0.01)")


def test_on_a_terminal_a_bar_counts_the_finished_trials(monkeypatch, capsys):
    from optuna.trial import TrialState, create_trial

    import mmcore.train.progress as progress
    from mmcore.tune import _Progress

    monkeypatch.setattr(progress, "bars_render", lambda: True)
    bar = _Progress("label.accuracy", total=3, done=1)  # resumed: one trial already done
    trial = create_trial(value=0.5)
    trial.number = 0

    class Study:
        best_trial = trial

    bar(Study(), trial)
    assert bar.bar is not None and bar.bar.n == 2
    bar(Study(), create_trial(state=TrialState.FAIL))  # a failed trial does not count
    assert bar.bar.n == 2
    bar.close()
    err = capsys.readouterr().err
    assert "trials:" in err and "2/3" in err and "trial 0 complete: label.accuracy=0.5000" in err
