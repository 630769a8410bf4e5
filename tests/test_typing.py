"""Type checkers see mmcore as installed (issue 29).

mypy runs on two user scripts in a folder outside the repository, against the environment the
tests run in (``make install``'s venv): one that uses the public API as the docs show it and
must pass, one with mistakes that must be reported at their lines. With setuptools' default
editable install (an import hook) mypy cannot find ``mmcore`` at all, and the first script
fails with ``import-not-found``; the Makefile installs in ``compat`` mode so it can.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # mypy reads torch's stubs: 20-60 s from a cold cache

GOOD = '''\
"""A user's script: a fusion of their own, a spec, training, loading, their own loop."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import mmcore


class MeanFusion(mmcore.Fusion):
    """The mean of each modality's features, projected to ``size``."""

    def __init__(self, input_sizes: Mapping[str, int], size: int = 32) -> None:
        super().__init__(input_sizes, size)
        self.project = nn.ModuleDict(
            {name: nn.Linear(width, size) for name, width in self.input_sizes.items()})

    def forward(self, features: Mapping[str, mmcore.Features]) -> Tensor:
        parts = [self.project[name](features[name].values) for name in self.modalities]
        return torch.stack(parts).mean(dim=0)


def train(spec_file: Path) -> float:
    spec: mmcore.Spec = mmcore.load_spec(spec_file, ["train.epochs=1"])
    spec.fusion = mmcore.FusionSpec(name=MeanFusion, options={"size": 16})
    final: dict[str, Any] = mmcore.Trainer(spec, output="runs/typed", quiet=True).fit()
    predictor = mmcore.load("runs/typed")
    rows: list[dict[str, Any]] = predictor.predict([{"image": "a.png", "audio": "a.wav"}])
    metrics: dict[str, Any] = predictor.evaluate("test")["metrics"]
    print(final, rows)
    return float(metrics["loss"])


def own_loop(spec_file: str) -> int:
    prepared: mmcore.Prepared = mmcore.prepare(spec_file, overrides=["train.batch_size=64"])
    optimizer = torch.optim.AdamW(prepared.model.parameters(), lr=2e-3)
    seen = 0
    for batch in prepared.loader("train", epoch=0):
        loss = prepared.loss(prepared.model(batch.inputs), batch.targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(batch)
    return seen


def checked(spec: dict[str, Any]) -> mmcore.Spec | None:
    try:
        return mmcore.validate_spec(spec)
    except mmcore.MmcoreError as error:
        print(error)
        return None
'''

# each mistake is on the line its comment names; mypy must report an error there
BAD = '''\
import mmcore

trainer = mmcore.Trainer("spec.py", output=3)  # line 3: output is a path
epochs: str = mmcore.load_spec("spec.py").train.epochs  # line 4: epochs is an int
mmcore.load("runs/x").evaluate(split=1)  # line 5: split is a name
mmcore.prepare("spec.py").loader("train", shuffle="yes")  # line 6: shuffle is a bool
mmcore.Fusion({"a": 1}, output_size="8")  # line 7: the size is an int
'''
BAD_LINES = {3, 4, 5, 6, 7}


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("user")
    (folder / "good.py").write_text(GOOD)
    (folder / "bad.py").write_text(BAD)
    # only what is installed: no PYTHONPATH or MYPYPATH pointing back at the repository
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--python-executable", sys.executable,
         "--cache-dir", str(folder / ".mypy_cache"), "--no-error-summary",
         "--show-error-codes", "good.py", "bad.py"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode in (0, 1), done.stderr  # 2: mypy itself failed
    return done.stdout


def _errors(output: str, script: str) -> dict[int, str]:
    found: dict[int, str] = {}
    for line in output.splitlines():
        match = re.match(rf"{script}:(\d+): error: (.*)", line)
        if match:
            found.setdefault(int(match[1]), match[2])
    return found


def test_a_typed_user_script_passes_mypy(mypy_output: str) -> None:
    output = mypy_output
    if "import-not-found" in output and 'module named "mmcore"' in output:
        pytest.fail("mypy cannot find the installed mmcore: the editable install uses an "
                    "import hook; reinstall with `make install` (editable_mode=compat)\n" + output)
    assert _errors(output, "good.py") == {}, output


def test_mistakes_are_reported_at_their_lines(mypy_output: str) -> None:
    output = mypy_output
    errors = _errors(output, "bad.py")
    assert set(errors) == BAD_LINES, output
    assert "output" in errors[3] and "int" in errors[3]
    assert 'variable has type "str"' in errors[4] and "int" in errors[4]
