"""Experiment trackers: a real MLflow tracking server on loopback (SQLite backend), W&B in
offline mode, and the failure rules (a tracker failing at the start stops the run in one line,
one failing later is a warning and training goes on). Nothing reaches the internet. Callbacks
by import path: test_callback_paths.py."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import mmcore
from mmcore.train import Trainer
from tests import train_toy as toy
from tests.ports import PortTaken, free_port, on_a_free_port, taken

#: neither library reports usage or errors to its vendor during the tests
NO_PHONING_HOME = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
                   "WANDB_ERROR_REPORTING": "false", "WANDB_DISABLE_GIT": "true"}


@pytest.fixture(autouse=True)
def toy_plugins(monkeypatch, tmp_path):
    for name in list(os.environ):  # the developer's own tracker settings stay out
        if name.startswith(("MLFLOW_", "WANDB_")):
            monkeypatch.delenv(name)
    for name in NO_PHONING_HOME:
        monkeypatch.setenv(name, NO_PHONING_HOME[name])
    monkeypatch.chdir(tmp_path)  # MLflow's default store, sqlite:///mlflow.db, lands here
    with toy.process_registry():
        yield


# -- MLflow -------------------------------------------------------------------------------
def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the server and its uvicorn worker (its process group), if any is left."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:  # the whole group has ended
            break
    proc.wait()


def _start_mlflow(folder: Path, port: int) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on ``port`` and its URI, once it answers ``/health``;
    :class:`PortTaken` when another process took the port first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no job workers: a faster start
    env.update(NO_PHONING_HOME)
    log = folder / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(port), "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder, start_new_session=True,
        )
    uri, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    # ours only while it still runs: a server that took the port answers too
                    if answer.status == 200 and proc.poll() is None:
                        return proc, uri
            except OSError:
                pass
            time.sleep(0.5)
    except BaseException:
        _stop_group(proc)
        raise
    _stop_group(proc)
    said = log.read_text()
    if taken(said):
        raise PortTaken(f"{port}: {said[-2000:]}")
    pytest.fail(f"mlflow server did not start:\n{said}")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and its own artifact folder,
    stopped (its whole process group) after the module."""
    pytest.importorskip("mlflow", reason="needs mmcore-torch[mlflow]")
    folder = tmp_path_factory.mktemp("mlflow")
    proc, uri = on_a_free_port(lambda port: _start_mlflow(folder, port))
    try:
        yield uri
    finally:
        _stop_group(proc)


def use_mlflow(monkeypatch, uri: str, experiment: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast once dropped
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.mark.slow
def test_mlflow_server_receives_the_spec_the_epochs_and_the_run_files(
        tmp_path, monkeypatch, mlflow_server):
    from mlflow.tracking import MlflowClient

    use_mlflow(monkeypatch, mlflow_server, "tiny-experiment")
    run = tmp_path / "run-mlflow"
    assert toy.train_quietly(toy.callbacks_spec(tmp_path, ["csv", "mlflow"]), run) == 0

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("tiny-experiment")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "run-mlflow" and found.info.status == "FINISHED"
    assert found.data.tags["mmcore.run_dir"] == str(run.resolve())
    params = found.data.params
    assert params["name"] == "tiny" and params["train.lr"] == "0.05"
    assert params["modalities.a.plugin"] == "scaled"
    assert params["train.callbacks"] == '["csv", "mlflow"]'
    assert params["heads.label.options.classes"] == '["a", "b", "c"]'  # the fitted spec

    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = client.get_metric_history(found.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in losses] == [
        (r["epoch"], pytest.approx(r["train/loss"])) for r in history]
    accuracy = client.get_metric_history(found.info.run_id, "validation/label.accuracy")
    assert [m.step for m in accuracy] == [1, 2]
    final = json.loads((run / "metrics.json").read_text())
    assert found.data.metrics["final/test/label.accuracy"] == pytest.approx(
        final["test"]["label.accuracy"])
    assert found.data.metrics["final/validation/loss"] == pytest.approx(
        final["validation"]["loss"])
    files = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"spec.json", "metrics.json", "metrics.jsonl", "metrics.csv", "README.md",
            "model.safetensors"} <= files


class DropProxy(socketserver.ThreadingTCPServer):
    """A TCP relay to ``target`` on loopback; :meth:`drop` cuts every connection and stops
    listening, as a network that goes away would."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.dropped = target, threading.Event()
        super().__init__(("127.0.0.1", 0), _Relay)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def drop(self) -> None:
        self.dropped.set()
        self.shutdown()
        self.server_close()


class _Relay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: DropProxy = self.server  # type: ignore[assignment]
        with socket.create_connection(server.target) as upstream:
            ends = {self.request: upstream, upstream: self.request}
            while not server.dropped.is_set():
                ready, _, _ = select.select(list(ends), [], [], 0.1)
                for sock in ready:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    ends[sock].sendall(chunk)


class DropAfterFirstEpoch:
    """Cuts the tracker's network at the end of epoch 1 (called before the spec's callbacks:
    pluggy calls the last registered first)."""

    def __init__(self, proxy: DropProxy) -> None:
        self.proxy = proxy

    @mmcore.hookimpl
    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch == 1:
            self.proxy.drop()


@pytest.mark.slow
def test_a_tracker_losing_its_server_mid_run_warns_once_and_training_finishes(
        tmp_path, monkeypatch, mlflow_server, capsys):
    host, port = mlflow_server.removeprefix("http://").split(":")
    proxy = DropProxy((host, int(port)))
    use_mlflow(monkeypatch, proxy.uri, "dropped")
    run = tmp_path / "run-dropped"
    trainer = Trainer(toy.callbacks_spec(tmp_path, ["csv", "mlflow"], epochs=3), output=run,
                      report=False, plots=False, callbacks=[DropAfterFirstEpoch(proxy)])
    final = trainer.fit()

    assert final["epochs"] == 3 and len(trainer.history) == 3  # the run did not stop
    assert (run / "metrics.json").is_file() and (run / "model.safetensors").is_file()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "'mlflow'" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("warning: train.callbacks.1: callback 'mlflow' failed "
                                  "during training")


def test_a_tracker_that_cannot_reach_its_server_stops_the_run_before_training(
        tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason="needs mmcore-torch[mlflow]")
    uri = f"http://127.0.0.1:{free_port()}"  # nobody listens; MLflow's own retries left on
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    run = tmp_path / "run"
    started = time.monotonic()
    assert toy.train_quietly(toy.callbacks_spec(tmp_path, ["csv", "mlflow"]), run) == 2
    assert time.monotonic() - started < 60  # not after minutes of retries
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: train.callbacks.1: callback 'mlflow' could not start: "
                           f"no MLflow tracking server answers at {uri} (")
    assert line.endswith("check MLFLOW_TRACKING_URI")
    assert not (run / "metrics.jsonl").exists()  # no epoch was trained


def test_mlflow_refusing_its_file_store_is_one_line_that_says_how_to_fix_it(
        tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason="needs mmcore-torch[mlflow]")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    assert toy.train_quietly(toy.callbacks_spec(tmp_path, ["mlflow"]), tmp_path / "run") == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("error: train.callbacks.0: callback 'mlflow' could not start: MLflow "
                          "refuses its file store")
    assert "MLFLOW_ALLOW_FILE_STORE=true" in err and "sqlite:///mlflow.db" in err


def test_a_database_store_without_the_full_mlflow_says_what_to_install(
        tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow", reason="needs mmcore-torch[mlflow]")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # as with mlflow-skinny alone
    spec = toy.callbacks_spec(tmp_path, ["mlflow"])
    assert toy.train_quietly(spec, tmp_path / "run") == 2  # the default URI
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: train.callbacks.0: callback 'mlflow' could not start: the "
                          f"tracking store 'sqlite:///{tmp_path / 'mlflow.db'}' is a database, "
                          "which needs the full MLflow: pip install mlflow")
    assert len(err.splitlines()) == 1


def test_a_missing_tracker_package_is_named_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails
    assert toy.train_quietly(toy.callbacks_spec(tmp_path, ["csv", "wandb"]), tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ("error: train.callbacks.1: callback 'wandb' needs the wandb package: "
            "pip install 'mmcore-torch[wandb]'") in err


# -- W&B ----------------------------------------------------------------------------------
def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B ``.wandb`` file (a LevelDB-style log: a 7-byte header,
    then chunks of crc32, length, type in 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw, block = path.read_bytes(), 32768
    assert raw[:4] == b":W&B"
    records, parts, pos = [], b"", 7
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's zero trailer
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(raw[pos + 4:pos + 6], "little"), raw[pos + 6]
        parts += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def _items(items) -> dict:
    return {item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in items}


@pytest.mark.slow
def test_wandb_offline_writes_the_config_the_epochs_and_the_run_files(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="needs mmcore-torch[wandb]")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "tiny-project")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run-wandb"
    assert toy.train_quietly(toy.callbacks_spec(tmp_path, ["csv", "wandb"]), run) == 0
    # ``run.finish()`` tells W&B's service that the run is over without waiting for it to
    # close the run's file (wandb 0.31: ``inform_finish`` is a message, not a request): the
    # file is complete when the service stops, at the process's exit or here. Read before
    # that, it sometimes held no run record yet (seen in two full-suite runs, under load).
    import wandb

    wandb.teardown()
    (offline,) = (run / "wandb").glob("offline-run-*")  # W&B's files sit in the run folder
    files = {p.name for p in (offline / "files").iterdir()}
    assert {"spec.json", "metrics.json", "metrics.csv", "README.md", "model.safetensors"} <= files
    records = wandb_records(next(offline.glob("run-*.wandb")))
    (meta,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert meta.display_name == "run-wandb" and meta.project == "tiny-project"
    config = _items(meta.config.update)
    assert config["train"]["lr"] == 0.05 and config["modalities"]["a"]["plugin"] == "scaled"
    history = [_items(r.history.item) for r in records
               if r.WhichOneof("record_type") == "history"]
    expected = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [h["_step"] for h in history] == [1, 2]
    assert [h["train/loss"] for h in history] == [pytest.approx(r["train/loss"])
                                                  for r in expected]
    summary: dict = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r.summary.update))
    final = json.loads((run / "metrics.json").read_text())
    assert summary["final/test/label.accuracy"] == pytest.approx(final["test"]["label.accuracy"])
