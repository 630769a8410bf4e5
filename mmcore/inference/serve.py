"""An HTTP endpoint for a bundle or a run folder (``mmcore serve``; ``pip install
'mmcore-torch[serve]'``): FastAPI, served by uvicorn.

``POST /predict`` takes ``{"rows": [{column: value, ...}, ...]}`` and returns
``{"predictions": [...]}``, one per row, as :meth:`mmcore.inference.predict.Predictor.predict` gives
them. A value ``{"base64": "..."}`` is decoded to bytes (an encoded image or sound file);
strings are passed on as they are (text, or a file path). ``GET /health`` and
``GET /metadata`` describe the model.

Files named in rows (a string path or ``{"path": ...}``) are read only inside ``root``
(:mod:`mmcore.paths`: no ``..``, absolute path, ``~`` or link leading out); every path refused
or missing gets the same message, and with no ``root`` no file is read at all.

A bad row is a 422 whose ``error`` is the message ``predict`` raises (naming the row and
column); a body over ``max_bytes`` or more than ``max_rows`` rows is a 413; a body that is
not such JSON (or nested more than :data:`MAX_DEPTH` deep) is a 400. No request ends in a
500 unless the server itself fails.

With ``access_log`` each request is one line through the ``mmcore`` logger: the client, the
method and path, the status and the milliseconds it took (``127.0.0.1 "POST /predict" 200
12.3 ms``); :func:`serve` also logs the address at start and a line at shutdown.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run
# time, and `Request` is imported inside create_app (FastAPI is an optional extra)

import base64
import binascii
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mmcore.errors import DataError
from mmcore.paths import confine
from mmcore.rows import input_row_error

#: defaults of ``mmcore serve --max-rows / --max-bytes``
MAX_ROWS = 1024
MAX_BYTES = 32 * 1024 * 1024
#: how deeply a request's JSON may nest (``{"rows": [{column: value}]}`` is 3; a value in it,
#: pixels ``[H, W, C]``, 3 more)
MAX_DEPTH = 32


class RequestError(ValueError):
    """A request the server refuses: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_rows(body: bytes, max_rows: int) -> list[dict[str, Any]]:
    """The rows of a ``/predict`` body, with ``{"base64": ...}`` values decoded to bytes."""
    shape = 'expected a JSON object {"rows": [{column: value, ...}, ...]}'
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, f"the body nests more than {MAX_DEPTH} levels deep") from None
    if not isinstance(payload, dict):
        raise RequestError(400, f"{shape}, got a JSON {_kind(payload)}")
    if "rows" not in payload:
        raise RequestError(400, f"{shape}: the object has no 'rows'")
    rows = payload["rows"]
    if not isinstance(rows, list):
        raise RequestError(400, f"{shape}: 'rows' is a JSON {_kind(rows)}, not an array")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(400, f"{shape}: row {i} is a JSON {_kind(row)}, not an object")
    if not rows:
        raise RequestError(400, "no rows given")
    if len(rows) > max_rows:
        raise RequestError(413, f"{len(rows)} rows, more than the {max_rows} allowed per request")
    if _depth(payload) > MAX_DEPTH:
        raise RequestError(400, f"the body nests more than {MAX_DEPTH} levels deep")
    return [{k: _value(v, i, k) for k, v in row.items()} for i, row in enumerate(rows)]


def _kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
             float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar: 0), counted without recursion and stopping
    past :data:`MAX_DEPTH`."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict | list):
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            todo += [(v, depth) for v in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _value(value: Any, row: int, column: str) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise RequestError(422, str(input_row_error(row, column, "not valid base64"))) from None
    return value


def _not_finite(predictions: list[dict[str, Any]]) -> str | None:
    """Where the first non-finite number (NaN, inf: not JSON) in ``predictions`` is."""
    for i, prediction in enumerate(predictions):
        todo: list[tuple[str, Any]] = [("", prediction)]
        while todo:
            where, item = todo.pop()
            if isinstance(item, float) and not math.isfinite(item):
                return f"row {i}, {where.lstrip('.')}"
            if isinstance(item, dict):
                todo += [(f"{where}.{k}", v) for k, v in item.items()]
            elif isinstance(item, list | tuple):
                todo += [(f"{where}[{j}]", v) for j, v in enumerate(item)]
    return None


def create_app(
    predict: Callable[..., list[dict[str, Any]]],
    metadata: Mapping[str, Any],
    *,
    root: str | Path | None = None,
    max_rows: int = MAX_ROWS,
    max_bytes: int = MAX_BYTES,
    access_log: bool = False,
) -> Any:
    """A FastAPI app serving ``predict(rows, root=root)``, one request's rows at a time (run
    more server processes for more throughput); ``access_log``: a line per request through
    the ``mmcore`` logger (:class:`AccessLog`).

    ``predict`` is :meth:`mmcore.inference.runtime.Runtime.predict` or
    :meth:`mmcore.inference.predict.Predictor.predict`; ``metadata`` is what ``/metadata`` returns.
    Files named in rows are read only inside ``root`` (none: no file is read; see
    :mod:`mmcore.paths`).
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError:
        from mmcore.errors import PluginError

        raise PluginError("mmcore serve needs FastAPI and uvicorn: pip install "
                          "'mmcore-torch[serve]'") from None

    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="mmcore", description="predictions of a trained mmcore model")
    lock = threading.Lock()  # the modalities' root and state are shared: one batch at a time
    if access_log:
        from mmcore.log import get_logger

        app.add_middleware(AccessLog, log=get_logger().info)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    def get_metadata() -> Mapping[str, Any]:
        return metadata

    @app.post("/predict")
    async def post_predict(request: Request) -> Any:
        try:
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise RequestError(
                    413, f"the body has {declared} bytes, more than the {max_bytes} allowed")
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_bytes:
                    raise RequestError(
                        413, f"the body has more than the {max_bytes} bytes allowed")
            rows = decode_rows(bytes(body), max_rows)
        except RequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return await run_in_threadpool(_predict, rows)

    def _predict(rows: list[dict[str, Any]]) -> Any:
        try:
            with lock, confine(root):
                predictions = predict(rows, root=root)
        except DataError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        except RecursionError:
            return JSONResponse({"error": "a value nests too deeply"}, status_code=400)
        where = _not_finite(predictions)
        if where is not None:
            return JSONResponse({"error": f"{where}: the model's output is not a finite number "
                                 "(NaN or infinity); check the row's values"}, status_code=422)
        return {"predictions": predictions}

    return app


class AccessLog:
    """ASGI middleware: one line per HTTP request, given to ``log`` once the response is
    sent: ``client "METHOD /path" status 12.3 ms`` (the path without its query string; a
    request that failed before answering counts as 500)."""

    def __init__(self, app: Any, log: Callable[[str], None]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            ms = (time.perf_counter() - start) * 1000
            self.log(f'{client[0] if client else "-"} "{scope["method"]} {scope["path"]}" '
                     f"{status[0]} {ms:.1f} ms")


def serve(app: Any, host: str, port: int, *, quiet: bool = False,
          describe: str = "the model") -> None:
    """Serve ``app`` with uvicorn until Ctrl-C (then returns) or SIGTERM; unless ``quiet``,
    log through the
    ``mmcore`` logger where it listens (the real port when ``port`` is 0) and when it stops.
    uvicorn's own messages are warnings and errors only."""
    import uvicorn

    from mmcore.log import get_logger

    logger = get_logger()

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if quiet or not self.started:
                return
            for server in self.servers:
                for sock in server.sockets:
                    address = sock.getsockname()
                    where = f"[{address[0]}]" if ":" in address[0] else address[0]
                    logger.info(f"serving {describe} on http://{where}:{address[1]} "
                                "(POST /predict, GET /health, GET /metadata); Ctrl-C to stop")

        async def shutdown(self, sockets: Any = None) -> None:
            if not quiet:
                logger.info("shutting down: finishing the requests under way")
            await super().shutdown(sockets=sockets)
            if not quiet:
                logger.info("server stopped")

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    try:
        Server(config).run()
    except KeyboardInterrupt:  # uvicorn raises Ctrl-C again once it has stopped: done
        pass
