"""Process exit codes when a spec file raises a ``BaseException`` (``sys.exit``,
``KeyboardInterrupt``, ...) or a plugin calls ``sys.exit``, and broken pipes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_plugins import make_dist

ROOT = Path(__file__).resolve().parents[1]


def _env(site: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(site)] * (site is not None) + [str(ROOT), env.get("PYTHONPATH", "")]
    )
    return env


def run(*args: str, site: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    if "stdout" not in kwargs:
        kwargs["capture_output"] = True
    return subprocess.run(
        [sys.executable, "-m", "mmcore", *args], text=True, cwd=ROOT, env=_env(site), **kwargs
    )


def test_spec_calling_sys_exit_is_a_spec_error_naming_the_file(tmp_path):
    spec = tmp_path / "spec.py"
    spec.write_text("import sys\nsys.exit(3)\n")
    for argv in (["validate"], ["train", "--output", str(tmp_path / "runs")]):
        result = run(*argv, str(spec))
        assert result.returncode == 2, (argv, result.stderr)
        assert "Traceback" not in result.stderr
        assert (
            "spec.py called sys.exit(3) while it was being read; "
            "a spec file must define `spec`, not exit"
        ) in result.stderr
        assert str(spec) in result.stderr


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("class Boom(BaseException):\n    pass\n\nraise Boom('no')\n", "raised Boom: no"),
        ("raise GeneratorExit('gen')\n", "raised GeneratorExit: gen"),
        ("raise KeyboardInterrupt\n", "raised KeyboardInterrupt;"),
        ("raise SystemExit\n", "called sys.exit(None)"),
    ],
)
def test_any_base_exception_from_a_spec_file_is_exit_2_naming_the_file(tmp_path, body, reason):
    spec = tmp_path / "bad_spec.py"
    spec.write_text(body)
    for argv in (["validate"], ["train", "--output", str(tmp_path / "runs")]):
        result = run(*argv, str(spec))
        assert result.returncode == 2, (argv, result.stderr)
        assert "Traceback" not in result.stderr
        assert f"invalid spec {spec}:" in result.stderr
        assert reason in result.stderr


def test_ctrl_c_while_a_spec_file_loads_still_interrupts(tmp_path):
    marker = tmp_path / "loading"
    spec = tmp_path / "slow_spec.py"
    spec.write_text(f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\n"
                    "time.sleep(60)\n")
    # A shell starts background jobs with SIGINT ignored and Python keeps an ignored SIGINT
    # ignored; the child gets the default disposition back, as a terminal's Ctrl-C finds it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmcore", "validate", str(spec)], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(None),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the spec file never ran"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "invalid spec" not in err


def test_plugin_calling_sys_exit_at_import_does_not_end_commands(tmp_path):
    make_dist(tmp_path, "mmtest-quits", "mmtest_quits", "import sys\nsys.exit(7)\n")
    result = run("plugins", site=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "mmtest_quits  [failed]" in result.stdout
    assert "sys.exit(7)" in result.stdout
    spec = tmp_path / "bad.py"
    spec.write_text("spec = {'name': 'x'}\n")
    assert run("validate", str(spec), site=tmp_path).returncode == 2  # goes on to the spec


def test_broken_pipe_exits_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as with `| head`
    try:
        result = run("plugins", "--json", stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert result.returncode == 141
    assert result.stderr == ""
