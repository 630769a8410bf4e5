"""``mmcore tune --storage`` on a database server: workers of two "machines" (two processes with
their own output folders) share one study on a real PostgreSQL server started by the test, and
a storage that cannot be opened is one line naming ``--storage``.

The server is a throwaway cluster (``initdb`` in a temporary folder, ``pg_ctl start`` on a free
loopback port and a socket in that folder), stopped and deleted after the test. It needs the
PostgreSQL server binaries (``apt-get install postgresql``) and a driver for SQLAlchemy
(``pip install 'psycopg[binary]'``); without them the test is skipped and says which is missing.
As root, the server runs as the ``postgres`` user (or ``nobody``): ``initdb`` refuses root.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmcore.errors import MmcoreError
from tests import train_toy as toy
from tests.ports import PortTaken, free_port, on_a_free_port, taken

optuna = pytest.importorskip("optuna", reason="mmcore tune needs Optuna (pip install "
                             "'mmcore-torch[tune]')")

REPO = Path(__file__).resolve().parents[1]
SPACE = 'def space(trial):\n    return {"train.lr": trial.suggest_float("lr", 1e-3, 1e-1)}\n'
#: the study's name: the toy spec's
STUDY = "tiny"


def _server_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (on PATH, or Debian's versioned folder)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")


def _driver() -> str:
    """SQLAlchemy's name of an installed PostgreSQL driver."""
    for module, name in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return name
    pytest.skip("no PostgreSQL driver for SQLAlchemy: pip install 'psycopg[binary]'")


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None for ourselves, an unprivileged one if we are root
    (``initdb`` and ``postgres`` refuse to run as root)."""
    if os.geteuid() != 0:
        return None
    if not (shutil.which("runuser") or shutil.which("su")):
        pytest.skip("running as root without runuser or su to start PostgreSQL as another user")
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.skip("running as root, and no 'postgres' or 'nobody' user to run PostgreSQL as")


def _as(user: pwd.struct_passwd | None, command: list[str]) -> list[str]:
    if user is None:
        return command
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--", *command]
    return ["su", "-s", "/bin/sh", user.pw_name, "-c", shlex.join(command)]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL server with an empty database ``mmcore_tune``: its SQLAlchemy URL."""
    binaries, driver, user = _server_binaries(), _driver(), _server_user()
    # not under tmp_path: pytest's base folder is private to us, and the server may be another
    # user; a short path also keeps the socket's name under the system's limit
    home = Path(tempfile.mkdtemp(prefix="mmcore-pg-"))
    data, log = home / "data", home / "server.log"
    started = False

    def start(port: int) -> int:
        """The server on ``port``; :class:`PortTaken` when another process took it first."""
        options = f"-F -p {port} -k {home} -c listen_addresses=127.0.0.1"
        before = log.stat().st_size if log.exists() else 0  # pg_ctl appends to its log
        done = subprocess.run(
            _as(user, [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                       "-t", "60", "-o", options, "start"]),
            capture_output=True, text=True, timeout=90)
        said = log.read_bytes()[before:].decode(errors="replace") if log.exists() else ""
        if done.returncode != 0 and taken(said):
            raise PortTaken(f"{port}: {said[-2000:]}")
        assert done.returncode == 0, f"pg_ctl start failed:\n{done.stderr}\n{said[-2000:]}"
        return port

    try:
        if user is not None:
            os.chown(home, user.pw_uid, user.pw_gid)
        init = subprocess.run(
            _as(user, [str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
                       "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]),
            capture_output=True, text=True, timeout=120)
        assert init.returncode == 0, f"initdb failed:\n{init.stdout}\n{init.stderr}"
        port = on_a_free_port(start)
        started = True
        created = subprocess.run(
            [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
             "mmcore_tune"], capture_output=True, text=True, timeout=60)
        assert created.returncode == 0, created.stderr
        yield f"postgresql+{driver}://postgres@127.0.0.1:{port}/mmcore_tune"
    finally:  # a server whose start timed out may still be coming up: stopped too
        if started or (data / "postmaster.pid").exists():
            subprocess.run(_as(user, [str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast",
                                      "-w", "-t", "60", "stop"]),
                           capture_output=True, timeout=90)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def study_files(tmp_path: Path) -> tuple[Path, Path]:
    data = toy.write_data(tmp_path / "data" / "data.csv")
    spec = toy.write_spec(tmp_path / "spec.py",
                          toy.spec_dict(data, tmp_path / "cache", callbacks=[], epochs=1))
    space = tmp_path / "space.py"
    space.write_text(SPACE)
    return spec, space


def _env(tmp_path: Path, delay: float = 0.0) -> dict[str, str]:
    site = toy.install_entry_point(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO), str(site)]),
                "MMCORE_PLUGINS": toy.PLUGIN, "OMP_NUM_THREADS": "1",
                "HF_DATASETS_OFFLINE": "1", toy.DELAY_ENV: str(delay)})
    return env


def _tune(spec: Path, space: Path, output: Path, trials: int, storage: str) -> list[str]:
    return [sys.executable, "-m", "mmcore", "tune", str(spec), "--space", str(space),
            "--trials", str(trials), "--output", str(output), "--storage", storage]


def _finished(url: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=STUDY, storage=url)
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


@pytest.mark.slow
def test_workers_on_two_machines_share_one_study_on_a_postgresql_server(
        postgres_url, study_files, tmp_path):
    """docs/tuning.md "Several machines": the same command with the same spec, data, storage
    URL and study name, each worker with its own output folder; then one resumes."""
    spec, space = study_files
    first, second = tmp_path / "machine-a", tmp_path / "machine-b"
    # a's trials are slow (about 5 s each) so that b, started once a is in its first trial,
    # joins while trials are still wanted
    a = subprocess.Popen(_tune(spec, space, first, 4, postgres_url),
                         env=_env(tmp_path, delay=1.0), text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (first / "trials" / "trial-0000").exists():
            assert a.poll() is None, a.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "machine a started no trial in 120 s"
            time.sleep(0.2)
        b = subprocess.run(_tune(spec, space, second, 4, postgres_url),
                           env=_env(tmp_path, delay=0.02), text=True, capture_output=True,
                           timeout=300)
        out_a, err_a = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    assert a.returncode == 0, err_a[-2000:]
    assert b.returncode == 0, b.stderr[-2000:]
    assert "best trial" in out_a and "best trial" in b.stdout

    trials = _finished(postgres_url)
    assert 4 <= len(trials) <= 5  # a worker may start one more before it sees the count
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both machines ran trials
    assert {t.user_attrs["host"] for t in trials} == {socket.gethostname()}
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    for t in trials:  # each trial's run folder is on the machine that ran it
        run = Path(t.user_attrs["run"])
        assert run.parent.parent in (first.resolve(), second.resolve())
        assert (run / "metrics.json").is_file()
    assert not (first / "study.db").exists() and not (second / "study.db").exists()

    resumed = subprocess.run(_tune(spec, space, second, len(trials) + 1, postgres_url),
                             env=_env(tmp_path), text=True, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(_finished(postgres_url)) == len(trials) + 1  # resumed, one trial more
    best = optuna.load_study(study_name=STUDY, storage=postgres_url).best_trial
    summary = json.loads((second / "best.json").read_text())
    assert summary["trial"] == best.number and summary["run"] == best.user_attrs["run"]
    with (second / "trials.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(trials) + 1 and {r["host"] for r in rows} == {socket.gethostname()}


def _closed_port() -> int:
    return free_port()  # nothing listens on it once the probe socket is closed


@pytest.mark.parametrize("url, expected", [
    ("garbage", "--storage garbage: not a database URL; expected an Optuna storage URL"),
    ("nosuch://host/db", "--storage nosuch://host/db: unknown database kind 'nosuch'"),
    ("postgresql+pg8000://u@127.0.0.1/db", "the database driver is not installed (No module "
     "named 'pg8000'); install it where mmcore runs (PostgreSQL: pip install"),
    ("sqlite:///{tmp}/no/such/folder/study.db", "cannot open the database (unable to open "
     "database file); check that its folder exists and is writable"),
])
def test_a_storage_that_cannot_be_opened_says_what_and_expected(tmp_path, url, expected):
    from mmcore.tune import open_storage

    if "pg8000" in url and importlib.util.find_spec("pg8000") is not None:
        pytest.skip("pg8000 is installed: this case needs a driver that is not")
    url = url.replace("{tmp}", str(tmp_path))
    with pytest.raises(MmcoreError) as caught:
        open_storage(tmp_path / "tune", url)
    message = str(caught.value)
    assert message.startswith(f"--storage {url}") and expected in message
    assert "\n" not in message


def test_an_unreachable_server_is_named_with_its_password_hidden(tmp_path):
    from mmcore.tune import open_storage

    driver = _driver()
    url = f"postgresql+{driver}://mmcore:s3cret@127.0.0.1:{_closed_port()}/db"
    with pytest.raises(MmcoreError) as caught:
        open_storage(tmp_path / "tune", url)
    message = str(caught.value)
    assert message.startswith(f"--storage postgresql+{driver}://mmcore:***@127.0.0.1:")
    assert "cannot open the database (" in message and "Connection refused" in message
    assert "check that the server is running" in message
    assert "s3cret" not in message and "\n" not in message


@pytest.mark.slow
def test_the_cli_reports_a_bad_storage_in_one_line_and_exits_2(study_files, tmp_path):
    spec, space = study_files
    url = f"postgresql+psycopg://mmcore:s3cret@127.0.0.1:{_closed_port()}/db"
    done = subprocess.run(_tune(spec, space, tmp_path / "tune", 1, url), env=_env(tmp_path),
                          text=True, capture_output=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --storage postgresql+psycopg://"
                                                   "mmcore:***@127.0.0.1:"), done.stderr
    assert "s3cret" not in done.stderr and not (tmp_path / "tune" / "trials").exists()
