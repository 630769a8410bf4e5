"""``mmcore serve``: a real uvicorn server on a loopback port, called with a real HTTP client
(urllib): predictions equal the runtime's, bad rows get predict's errors, limits hold."""

from __future__ import annotations

import base64
import csv
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serve tests need mmcore-torch[serve]")
pytest.importorskip("uvicorn", reason="serve tests need mmcore-torch[serve]")
pytest.importorskip("onnxruntime", reason="serve tests need mmcore-torch[serve]")

import uvicorn  # noqa: E402

from mmcore.cli import main  # noqa: E402
from mmcore.cli.serve import load_target  # noqa: E402
from mmcore.serve import create_app  # noqa: E402
from mmcore.version import DISTRIBUTION, __version__  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "av_digits" / "data" / "degraded"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    run = root / "run"
    assert main(["train", str(REPO / "examples" / "av_digits" / "spec.py"), "-o", str(run),
                 "-q", "--no-report", "--no-test", "train.epochs=1"]) == 0
    assert main(["export", str(run), "-o", str(root / "bundle")]) == 0
    return root / "bundle"


@pytest.fixture(scope="module")
def server(bundle) -> Iterator[str]:
    predict, metadata = load_target(bundle)
    app = create_app(predict, metadata, root=DATA, max_rows=16, max_bytes=2_000_000)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _oversized(server: str, declared: bool) -> int:
    """POST a body over the 2 MB limit: with a Content-Length header (nothing sent after the
    headers), or chunked without one."""
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        if declared:
            conn.putrequest("POST", "/predict")
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", "3000000")
            conn.endheaders()
        else:
            chunks = (b"x" * 700_000 for _ in range(4))
            conn.request("POST", "/predict", body=chunks, encode_chunked=True,
                         headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert "more than" in json.loads(response.read())["error"] or response.status != 413
        return response.status
    finally:
        conn.close()


def _rows(n: int) -> list[dict]:
    with (DATA / "pairs.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))[:n]


def test_health_and_metadata(server) -> None:
    assert _call(f"{server}/health") == (200, {"status": "ok"})
    status, meta = _call(f"{server}/metadata")
    assert status == 200
    assert meta["modalities"]["image"] == {"plugin": "image", "columns": ["image"]}
    assert meta["heads"]["digit"]["target"] == "label"
    assert sorted(meta["heads"]["digit"]["classes"]) == list(range(10))
    assert meta["parity"]["max_abs_diff"] < 1e-5
    # the core under its distribution name, once (issue 29)
    assert meta["versions"][DISTRIBUTION] == __version__ and "mmcore" not in meta["versions"]


def test_predictions_over_http_equal_the_runtimes(server, bundle) -> None:
    rows = _rows(6)
    expected = load_target(bundle)[0](rows, root=DATA)
    # the image as base64 bytes, the audio as a path relative to the server's root
    sent = [{"image": {"base64": base64.b64encode((DATA / r["image"]).read_bytes()).decode()},
             "audio": r["audio"]} for r in rows]
    status, body = _call(f"{server}/predict", json.dumps({"rows": sent}).encode())
    assert status == 200
    got = body["predictions"]
    assert [p["digit"]["label"] for p in got] == [p["digit"]["label"] for p in expected]
    for a, b in zip(got, expected, strict=True):
        assert abs(a["digit"]["probability"] - b["digit"]["probability"]) < 1e-6


def test_bad_requests_get_clear_errors(server, bundle) -> None:
    rows = _rows(3)
    bad = [*rows[:2], dict(rows[2], image="missing.png")]
    with pytest.raises(Exception) as eager:
        load_target(bundle)[0](bad, root=DATA)
    status, body = _call(f"{server}/predict", json.dumps({"rows": bad}).encode())
    assert status == 422 and body["error"] == str(eager.value)
    assert "row 2, column 'image'" in body["error"]
    status, body = _call(f"{server}/predict",
                         json.dumps({"rows": [dict(rows[0], image={"base64": "%%%"})]}).encode())
    assert status == 422 and "not valid base64" in body["error"]
    assert _call(f"{server}/predict", b"not json")[0] == 400
    assert _call(f"{server}/predict", json.dumps({"rows": []}).encode())[0] == 400
    assert _call(f"{server}/predict", json.dumps([1, 2]).encode())[0] == 400
    status, body = _call(f"{server}/predict", json.dumps({"rows": rows * 6}).encode())
    assert status == 413 and "more than the 16 allowed" in body["error"]
    assert _oversized(server, declared=True) == 413  # refused before the body is read
    assert _oversized(server, declared=False) == 413  # chunked: refused once it has read 2 MB
    # the server still answers after all that
    assert _call(f"{server}/predict", json.dumps({"rows": rows}).encode())[0] == 200


def test_a_run_folder_is_served_by_the_eager_model(bundle) -> None:
    run = bundle.parent / "run"
    predict, metadata = load_target(run)
    assert metadata["graph"]["kind"] == "eager"
    versions = metadata["versions"]
    assert versions[DISTRIBUTION] == __version__ and "mmcore" not in versions
    rows = _rows(4)
    eager = [p["digit"]["label"] for p in predict(rows, root=DATA)]
    exported = [p["digit"]["label"] for p in load_target(bundle)[0](rows, root=DATA)]
    assert eager == exported
