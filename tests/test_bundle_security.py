"""A bundle is checked whole (issue 30): its manifest against a schema (one line naming each
malformed field, exit 2, no traceback), every path in it relative and inside the bundle, no
symbolic link, every file hashed; and its digest (the SHA-256 of the manifest, printed by
``mmcore export``) pins it: ``runtime.load(bundle, sha256=...)``, ``mmcore serve --sha256``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="export tests need mmcore-torch[export] (onnxruntime)")
pytest.importorskip("onnxscript", reason="export tests need mmcore-torch[export] (onnxscript)")

from mmcore.cli import main  # noqa: E402
from mmcore.errors import CheckpointError  # noqa: E402
from mmcore.inference import runtime  # noqa: E402
from mmcore.inference.export.manifest import bundle_digest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROWS = [{"text": "a wonderful film"}, {"text": "dull and far too long"}]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bundle_security")
    run, bundle = root / "run", root / "bundle"
    assert main(["train", str(REPO / "examples" / "text_sentiment" / "spec.py"), "-o", str(run),
                 "-q", "--no-report", "--no-test", "train.epochs=1"]) == 0
    return {"run": run, "bundle": bundle, "root": root}


@pytest.fixture(scope="module")
def bundle(made) -> Path:
    assert main(["export", str(made["run"]), "-o", str(made["bundle"])]) == 0
    return made["bundle"]


def test_the_run_folder_records_each_export_and_its_digest(made, bundle) -> None:
    from mmcore.inference.export.manifest import bundle_digest

    entries = json.loads((made["run"] / "exports.json").read_text())
    assert entries[-1]["bundle"] == str(bundle.resolve())
    assert entries[-1]["sha256"] == bundle_digest(bundle) and entries[-1]["format"] == "onnx"


def _copy(bundle: Path, tmp_path: Path, change=None) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    if change is not None:
        manifest = json.loads((copy / "manifest.json").read_text())
        change(manifest)
        (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def _cli(*argv: str) -> subprocess.CompletedProcess:
    """``python -m mmcore ARGV`` in a fresh process (a SystemExit or a traceback would show)."""
    return subprocess.run([sys.executable, "-m", "mmcore", *argv], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_export_prints_the_digest_and_it_pins_the_bundle(made, bundle, capsys, tmp_path):
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert bundle_digest(bundle) == digest
    again = tmp_path / "again"
    assert main(["export", str(made["run"]), "-o", str(again)]) == 0
    out = capsys.readouterr().out
    assert f"bundle digest (SHA-256 of manifest.json, which hashes every file): " \
           f"{bundle_digest(again)}" in out
    assert f"--sha256 {bundle_digest(again)}" in out
    loaded = runtime.load(bundle, sha256=digest)
    assert loaded.digest == digest and loaded.metadata()["sha256"] == digest
    assert runtime.load(bundle, sha256=f"sha256:{digest.upper()}").digest == digest
    with pytest.raises(CheckpointError, match="not the pinned"):
        runtime.load(bundle, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="not a SHA-256"):
        runtime.load(bundle, sha256="abc")


def test_a_changed_manifest_is_refused_by_the_pin(bundle, tmp_path):
    """Reversing the classes changes every label with no file changed but the manifest:
    only the digest can tell, and it does."""
    pinned = bundle_digest(bundle)

    def reverse(manifest):
        head = manifest["heads"]["sentiment"]["options"]
        head["classes"] = list(reversed(head["classes"]))

    copy = _copy(bundle, tmp_path, reverse)
    before = [p["sentiment"]["label"] for p in runtime.load(bundle).predict(ROWS)]
    after = [p["sentiment"]["label"] for p in runtime.load(copy).predict(ROWS)]
    assert before != after  # unpinned, the change goes through
    with pytest.raises(CheckpointError, match="not the pinned"):
        runtime.load(copy, sha256=pinned)
    result = _cli("serve", str(copy), "--sha256", pinned, "--port", "1")
    assert result.returncode == 2 and "not the pinned" in result.stderr
    assert "Traceback" not in result.stderr


def _set(path: str, value):
    def change(manifest):
        *parents, last = path.split(".")
        target = manifest
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target[p]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return change


class _Delete:
    """Marks a field the test removes; its repr keeps the test ids the same in every process
    (pytest-xdist's workers must collect the same ids)."""

    def __repr__(self) -> str:
        return "<deleted>"


_DELETE = _Delete()

MALFORMED = [
    ("graph.file", "/etc/passwd", "relative path inside the bundle"),
    ("graph.file", "../run/model.safetensors", "relative path inside the bundle"),
    ("graph.file", "spec.json", "onnxruntime can load"),  # listed and hashed, not a graph
    ("graph.kind", "pickle", "graph.kind"),
    ("modalities.text.state", "../../etc", "relative path inside the bundle"),
    ("modalities.text.state", "/tmp", "relative path inside the bundle"),
    ("modalities.text.columns", "text", "modalities.text.columns"),
    ("heads.sentiment.input_size", -1, "heads.sentiment.input_size"),
    ("heads.sentiment.input_size", "64", "heads.sentiment.input_size"),
    ("heads", _DELETE, "heads"),
    ("inputs", {"a": 1}, "inputs"),
    ("inputs.0.shape", _DELETE, "inputs.0.shape"),
    ("inputs.0.modality", "image", "inputs.0.modality"),
    ("outputs", ["nothing"], "outputs"),
    ("files.spec.json", "not-a-digest", "files"),
    ("format", "mmcore-bundle-0", "format"),
    ("evil", 1, "evil"),
    ("parity", None, "parity"),
]


@pytest.mark.parametrize(("field", "value", "named"), MALFORMED,
                         ids=[f"{f}={v!r}"[:40] for f, v, _ in MALFORMED])
def test_a_malformed_manifest_is_one_line_per_field(bundle, tmp_path, field, value, named):
    if field == "files.spec.json":
        def change(manifest):
            manifest["files"]["spec.json"] = value
    else:
        change = _set(field, value)
    copy = _copy(bundle, tmp_path, change)
    with pytest.raises(CheckpointError) as info:
        runtime.load(copy)
    message = str(info.value)
    assert named in message, message
    assert "manifest.json" in message or "model.onnx" in message or "spec.json" in message


@pytest.mark.parametrize("body", ["[1, 2]", "{", "[" * 100_000, ""])
def test_a_manifest_that_is_no_object_is_refused(bundle, tmp_path, body):
    copy = _copy(bundle, tmp_path)
    (copy / "manifest.json").write_text(body)
    with pytest.raises(CheckpointError, match="manifest.json"):
        runtime.load(copy)


def test_the_command_line_answers_a_malformed_manifest_in_lines(bundle, tmp_path):
    def several(manifest):
        manifest["graph"]["file"] = "/etc/passwd"
        manifest["modalities"]["text"]["state"] = "../x"
        del manifest["heads"]["sentiment"]["target"]

    copy = _copy(bundle, tmp_path, several)
    result = _cli("serve", str(copy), "--port", "1")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for field in ("graph.file", "modalities.text.state", "heads.sentiment.target"):
        assert sum(line.strip().startswith(f"{field}:") for line in lines) == 1, result.stderr


def test_links_in_a_bundle_are_refused(bundle, tmp_path):
    copy = _copy(bundle, tmp_path)
    outside = tmp_path / "spec.json"
    shutil.copyfile(copy / "spec.json", outside)  # same bytes: the checksum would match
    (copy / "spec.json").unlink()
    os.symlink(outside, copy / "spec.json")
    with pytest.raises(CheckpointError, match="symbolic link"):
        runtime.load(copy)


def test_sha256_pins_only_bundles(made, bundle):
    from mmcore.cli.serve import load_model

    with pytest.raises(CheckpointError, match="pins an export bundle"):
        load_model(made["run"], sha256=bundle_digest(bundle))
    assert load_model(bundle, sha256=bundle_digest(bundle)).digest == bundle_digest(bundle)
