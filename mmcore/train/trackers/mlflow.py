"""The ``mlflow`` callback: a run's parameters, per-epoch figures and files in MLflow.

Configured by MLflow's own environment variables: ``MLFLOW_TRACKING_URI`` (a server
``http://host:5000`` or a database ``sqlite:///mlflow.db``; MLflow's default is
``sqlite:///mlflow.db`` in the current folder), ``MLFLOW_EXPERIMENT_NAME`` or
``MLFLOW_EXPERIMENT_ID`` (default: MLflow's ``Default`` experiment), and
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``/``MLFLOW_TRACKING_TOKEN``,
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT`` for a server. Needs
``pip install 'mmcore-torch[mlflow]'``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mmcore.errors import PluginError
from mmcore.train.trackers.base import FINAL, Tracker, artifacts, flatten, missing_package, run_spec
from mmcore.version import __version__

#: MLflow's limits: characters of a parameter value, entries of one logging request
MAX_VALUE = 6000
BATCH = 100
#: the URI schemes of MLflow's database stores (``sqlite:///mlflow.db`` is its default)
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


class MLflowTracker(Tracker):
    """Logs to MLflow: the flattened resolved spec as parameters (``train.lr``,
    ``modalities.<name>.options.<option>``, ...), each epoch's figures at step ``epoch``, the
    best model's final figures as ``final/validation/...`` and ``final/test/...``, and the run
    folder's small files (spec, metrics, model card) as artifacts. The MLflow run is named
    after the run folder and tagged ``mmcore.run_dir``; inside an active MLflow run (started
    by your code) it is a child run of it."""

    name = "mlflow"

    def __init__(self) -> None:
        super().__init__()
        try:
            import mlflow
        except ImportError as exc:
            raise missing_package("mlflow", exc) from None
        self._mlflow: Any = mlflow
        self.client: Any = None
        self.run_id: str | None = None
        # checked now, when the trainer creates its callbacks: before the data is prepared
        self.uri: str = mlflow.get_tracking_uri()
        try:
            check_store(self.uri)
            check_reachable(self.uri)
        except PluginError as exc:
            raise PluginError(f"callback 'mlflow' could not start: {exc}") from None

    def start(self, trainer: Any) -> None:
        mlflow = self._mlflow
        self.client = mlflow.tracking.MlflowClient(tracking_uri=self.uri)
        tags = {"mmcore.run_dir": str(Path(trainer.run_dir).resolve()),
                "mmcore.version": __version__}
        parent = mlflow.active_run()
        if parent is not None:
            tags["mlflow.parentRunId"] = parent.info.run_id
        run = self.client.create_run(self._experiment_id(), run_name=Path(trainer.run_dir).name,
                                     tags=tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(key, value[:MAX_VALUE]) for key, value in flatten(run_spec(trainer))]
        for chunk in _chunks(params):
            self.client.log_batch(self.run_id, params=chunk)

    def _experiment_id(self) -> str:
        from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_EXPERIMENT_NAME

        if MLFLOW_EXPERIMENT_ID.get():
            return str(MLFLOW_EXPERIMENT_ID.get())
        name = MLFLOW_EXPERIMENT_NAME.get()
        if not name:
            return "0"  # MLflow's "Default" experiment
        found = self.client.get_experiment_by_name(name)
        return found.experiment_id if found is not None else self.client.create_experiment(name)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self._log_metrics(metrics, step=epoch)

    def finish(self, trainer: Any, metrics: Mapping[str, float]) -> None:
        self._log_metrics({FINAL + k: v for k, v in metrics.items()}, step=trainer.epoch)
        for path in artifacts(trainer.run_dir):
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED")

    def abandon(self) -> None:
        if self.client is None or self.run_id is None:
            return
        try:
            self.client.set_terminated(self.run_id, status="FAILED")
        except Exception:  # noqa: BLE001, S110 - the service is the thing that failed
            pass

    def _log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(key, value, now, step) for key, value in metrics.items()]
        for chunk in _chunks(entries):
            self.client.log_batch(self.run_id, metrics=chunk)


def check_store(uri: str) -> None:
    """MLflow >= 3 refuses its file store (``./mlruns``, ``file:...``) unless
    ``MLFLOW_ALLOW_FILE_STORE=true``, and a database store needs the full ``mlflow`` (not
    ``mlflow-skinny``, which the ``mlflow`` extra installs): say so, and how to fix it, in one
    line."""
    import importlib.util

    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

    scheme = urlparse(uri).scheme
    if scheme.split("+")[0] in DATABASES and importlib.util.find_spec("sqlalchemy") is None:
        raise PluginError(
            f"the tracking store {uri!r} is a database, which needs the full MLflow: pip "
            "install mlflow (mmcore-torch[mlflow] installs mlflow-skinny, the client for a "
            "tracking server), or set MLFLOW_TRACKING_URI to a server (http://host:5000)"
        )
    if (scheme == "file" or len(scheme) <= 1) and not MLFLOW_ALLOW_FILE_STORE.get():
        raise PluginError(
            f"MLflow refuses its file store {uri!r} unless MLFLOW_ALLOW_FILE_STORE=true: set "
            "MLFLOW_TRACKING_URI to a server (http://host:5000) or a database "
            "(sqlite:///mlflow.db), or set MLFLOW_ALLOW_FILE_STORE=true"
        )


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """A server nobody answers at fails in seconds, not after MLflow's retries (minutes):
    one TCP connection to an ``http(s)`` tracking URI's host and port (not through a proxy,
    which is left to MLflow)."""
    import socket

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    if urllib_proxy(parsed.scheme, parsed.hostname):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise PluginError(
            f"no MLflow tracking server answers at {uri} ({type(exc).__name__}: {exc}); "
            "check MLFLOW_TRACKING_URI"
        ) from None


def urllib_proxy(scheme: str, host: str) -> bool:
    """Whether requests to ``host`` go through a proxy (``HTTPS_PROXY``, ``NO_PROXY``...)."""
    from urllib.request import getproxies, proxy_bypass

    return scheme in getproxies() and not proxy_bypass(host)


def _chunks(entries: list[Any]) -> Iterable[list[Any]]:
    for i in range(0, len(entries), BATCH):
        yield entries[i:i + BATCH]
