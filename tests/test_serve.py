"""``mmcore serve``: a real uvicorn server on a loopback port, called with a real HTTP client
(urllib): predictions equal the runtime's, bad rows get predict's errors, limits hold."""

from __future__ import annotations

import base64
import contextlib
import csv
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="serve tests need mmcore-torch[serve]")
pytest.importorskip("uvicorn", reason="serve tests need mmcore-torch[serve]")
pytest.importorskip("onnxruntime", reason="serve tests need mmcore-torch[serve]")

import uvicorn  # noqa: E402

from mmcore.cli import main  # noqa: E402
from mmcore.cli.serve import load_target  # noqa: E402
from mmcore.inference.serve import create_app  # noqa: E402
from mmcore.version import DISTRIBUTION, __version__  # noqa: E402
from tests.ports import PortTaken, on_a_free_port, taken  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "av_digits" / "data" / "degraded"


@pytest.fixture(scope="module")
def bundle(av_digits_export) -> Path:
    """The av_digits example trained for one epoch and exported (tests/conftest.py)."""
    return av_digits_export()[1]


@contextlib.contextmanager
def _serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, for the block."""
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
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(bundle) -> Iterator[str]:
    predict, metadata = load_target(bundle)
    app = create_app(predict, metadata, root=DATA, max_rows=16, max_bytes=2_000_000)
    with _serving(app) as url:
        yield url


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
    bad = [*rows[:2], dict(rows[2], audio=[float("inf")])]
    with pytest.raises(Exception) as eager:
        load_target(bundle)[0](bad, root=DATA)
    status, body = _call(f"{server}/predict", json.dumps({"rows": bad}).encode())
    assert status == 422 and body["error"] == str(eager.value)
    assert "row 2, column 'audio'" in body["error"]
    missing = [*rows[:2], dict(rows[2], image="missing.png")]
    status, body = _call(f"{server}/predict", json.dumps({"rows": missing}).encode())
    assert status == 422 and "row 2, column 'image'" in body["error"]
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


# -- issue 30: --root is a boundary; malformed requests are 4xx ------------------------------
def _predict_image(server: str, value) -> tuple[int, dict]:
    row = {"image": value, "audio": {"base64": base64.b64encode(
        (DATA / "audio" / "0_george_1.flac").read_bytes()).decode()}}
    return _call(f"{server}/predict", json.dumps({"rows": [row]}).encode())


@pytest.fixture(scope="module")
def boundary(bundle, tmp_path_factory) -> Iterator[dict]:
    """A served root holding an image, a folder, a link to an image inside and one to an
    image outside; next to it, outside, a readable image and a text file."""
    base = tmp_path_factory.mktemp("boundary")
    root, outside = base / "root", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    image = (DATA / "images" / "mnist_t10k_07646.png").read_bytes()
    (root / "inside.png").write_bytes(image)
    (root / "sub" / "deeper.png").write_bytes(image)
    (outside / "secret.png").write_bytes(image)
    (outside / "notes.txt").write_text("not an image")
    (root / "link_in.png").symlink_to(root / "sub" / "deeper.png")
    (root / "link_out.png").symlink_to(outside / "secret.png")
    (root / "link_dir").symlink_to(outside, target_is_directory=True)
    predict, metadata = load_target(bundle)
    with _serving(create_app(predict, metadata, root=root)) as url:
        yield {"url": url, "root": root, "outside": outside, "image": image}


def test_files_inside_the_root_and_bytes_are_read(boundary) -> None:
    url = boundary["url"]
    for value in ("inside.png", "sub/deeper.png", "./inside.png", "link_in.png",
                  {"path": "inside.png"},
                  {"base64": base64.b64encode(boundary["image"]).decode()}):
        status, body = _predict_image(url, value)
        assert status == 200, (value, body)


def test_paths_leaving_the_root_or_missing_get_one_answer(boundary) -> None:
    """``..``, absolute, ``~``, ``{"path": ...}``, links leading out, folders and missing
    files: all 422 with the same message (the value as sent aside), so it tells nothing about
    what exists outside the root, and an image outside is never predicted."""
    url, outside = boundary["url"], boundary["outside"]
    values = ["../outside/secret.png", "../outside/notes.txt", "../outside/nothing.png",
              str(outside / "secret.png"), str(outside / "notes.txt"), "/etc/passwd",
              "/no/such/file.png", "~/.bashrc", "~/no_such_file", "link_out.png",
              "link_dir/secret.png", "sub/../inside.png", "missing.png", "sub", ".", "",
              "x" * 5000, {"path": "../outside/secret.png"},
              {"path": str(outside / "secret.png")}]
    shapes = set()
    for value in values:
        status, body = _predict_image(url, value)
        assert status == 422, (value, body)
        assert "row 0, column 'image'" in body["error"], body
        shown = value["path"] if isinstance(value, dict) else value
        if not shown:  # an empty string is a missing value, not a path
            continue
        shown = repr(shown if len(shown) <= 200 else shown[:200] + "...")
        assert shown in body["error"], body
        shapes.add(body["error"].replace(shown, "<value>"))
    assert len(shapes) == 1, shapes
    assert str(boundary["root"]) not in shapes.pop()  # nor where the root is


def test_without_a_root_no_file_is_read(bundle) -> None:
    predict, metadata = load_target(bundle)
    with _serving(create_app(predict, metadata, root=None)) as url:
        status, body = _predict_image(url, str(DATA / "images" / "mnist_t10k_07646.png"))
        assert status == 422 and "send the file's bytes" in body["error"]
        image = (DATA / "images" / "mnist_t10k_07646.png").read_bytes()
        assert _predict_image(url, {"base64": base64.b64encode(image).decode()})[0] == 200


def test_serve_needs_a_root_when_a_modality_reads_files(bundle, tmp_path, capsys) -> None:
    from mmcore.cli.serve import file_root, load_model

    assert main(["serve", str(bundle), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "--root" in err and "--no-files" in err and "Traceback" not in err
    assert main(["serve", str(bundle), "--root", str(tmp_path / "nope"), "--port", "1"]) == 2
    assert "not a folder" in capsys.readouterr().err
    modalities = load_model(bundle).modalities
    assert file_root(None, True, modalities) is None
    assert file_root(str(tmp_path), False, modalities) == tmp_path
    text_only = {"t": type("Text", (), {"reads_files": False})()}
    assert file_root(None, False, text_only) is None


def test_predict_root_keeps_the_input_inside_it(bundle, tmp_path, capsys) -> None:
    run = bundle.parent / "run"
    rows = _rows(2)
    inputs = tmp_path / "rows.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["predict", str(run), "--input", str(inputs), "--root", str(DATA)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    escaping = tmp_path / "escaping.jsonl"
    escaping.write_text(json.dumps(dict(rows[0], image=str(DATA / rows[0]["image"]),
                                        audio=str(DATA / rows[0]["audio"]))) + "\n")
    assert main(["predict", str(run), "--input", str(escaping), "--root", str(DATA)]) == 2
    err = capsys.readouterr().err
    assert "under the served root" in err and "Traceback" not in err
    # without --root the input is the user's own: paths resolve next to it, anywhere
    assert main(["predict", str(run), "--input", str(escaping)]) == 0


def _nested(depth: int) -> list:
    value: list = [0]
    for _ in range(depth):
        value = [value]
    return value


def test_malformed_requests_are_answered_4xx(server) -> None:
    url = f"{server}/predict"
    row = _rows(1)[0]
    cases = {
        b"[" * 100_000 + b"]" * 100_000: "nests more than",  # json.loads: RecursionError
        json.dumps({"rows": [dict(row, image=_nested(40))]}).encode(): "nests more",
        json.dumps({"rows": {"0": row}}).encode(): "'rows' is a JSON object, not an array",
        json.dumps({"rows": [row, [1]]}).encode(): "row 1 is a JSON array, not an object",
        json.dumps({"rows": "abc"}).encode(): "'rows' is a JSON string",
        json.dumps({"row": [row]}).encode(): "no 'rows'",
        json.dumps("rows").encode(): "got a JSON string",
        b"\xff\xfe": "not JSON",
        json.dumps({"rows": [dict(row, image="x" * 5000)]}).encode(): "under the served root",
        json.dumps({"rows": [dict(row, image={"bytes": "abc"})]}).encode(): "not bytes",
        json.dumps({"rows": [dict(row, audio={"array": [0.1] * 50, "sampling_rate": 10**18})]}
                   ).encode(): "sampling_rate",
        json.dumps({"rows": [dict(row, audio={"array": [0.1] * 50, "sampling_rate": -5})]}
                   ).encode(): "sampling_rate",
    }
    for body, text in cases.items():
        status, answer = _call(url, body)
        assert 400 <= status < 500 and text in answer["error"], (body[:80], status, answer)
    assert _call(url, json.dumps({"rows": [row]}).encode())[0] == 200


def test_outputs_that_are_not_numbers_are_a_422_not_a_500() -> None:
    def predict(rows, root=None):
        return [{"head": {"label": 1, "probability": float("nan")}} for _ in rows]

    with _serving(create_app(predict, {})) as url:
        status, body = _call(f"{url}/predict", json.dumps({"rows": [{"x": 1}]}).encode())
    assert status == 422 and "row 0, head.probability" in body["error"]


def _serve_process(bundle: Path, *flags: str) -> tuple[Any, str]:
    """``mmcore serve BUNDLE --no-files --port 0 FLAGS`` in a process; returns it and the
    address its first line names."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "mmcore", "serve", str(bundle), "--no-files",
                             "--port", "0", *flags], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # blocks until the server listens (or ends)
    found = re.search(r"on (http://127\.0\.0\.1:\d+) ", first)
    if found is None:
        proc.kill()
        pytest.fail(f"no address in the first line: {first!r} {proc.communicate()[1][-2000:]}")
    return proc, found.group(1)


def _stop(proc: Any) -> str:
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    return rest


def test_serve_logs_its_address_each_request_and_its_shutdown(bundle) -> None:
    proc, url = _serve_process(bundle)
    try:
        assert _call(f"{url}/health") == (200, {"status": "ok"})
        assert _call(f"{url}/predict", b"not json")[0] == 400
    finally:
        rest = _stop(proc)
    assert proc.returncode == 0, rest  # Ctrl-C is how a server is stopped
    lines = rest.splitlines()
    assert re.fullmatch(r'127\.0\.0\.1 "GET /health" 200 \d+\.\d ms', lines[0]), rest
    assert re.fullmatch(r'127\.0\.0\.1 "POST /predict" 400 \d+\.\d ms', lines[1]), rest
    assert lines[2:] == ["shutting down: finishing the requests under way",
                         "server stopped"], rest


def test_serve_without_the_access_log_and_quiet(bundle) -> None:
    proc, url = _serve_process(bundle, "--no-access-log")
    try:
        assert _call(f"{url}/health")[0] == 200
    finally:
        rest = _stop(proc)
    assert "/health" not in rest and "server stopped" in rest
    # on a port of the test's choosing: --quiet prints no address
    proc = on_a_free_port(lambda port: _serve_quietly(bundle, port))
    assert _stop(proc).strip() == ""


def _serve_quietly(bundle: Path, port: int) -> Any:
    """``mmcore serve BUNDLE --no-files --port PORT --quiet`` once it answers ``/health``;
    :class:`PortTaken` when another process took the port first."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "mmcore", "serve", str(bundle), "--no-files",
                             "--port", str(port), "--quiet"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                # ours only while it still runs: a server that took the port answers too
                if _call(f"http://127.0.0.1:{port}/health") == (200, {"status": "ok"}) \
                        and proc.poll() is None:
                    return proc
            except (OSError, ValueError, http.client.HTTPException):  # not up, or not ours
                pass
            time.sleep(0.2)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    err = _stop(proc) if proc.poll() is None else proc.communicate()[1]
    if taken(err):
        raise PortTaken(f"{port}: {err[-2000:]}")
    pytest.fail(f"no server: {err[-2000:]}")
