"""docs/plugins/transformers.md: every Python block runs, in order, from the repository root
(a block whose first line is ``# not run: <reason>`` is skipped for that reason)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("transformers") is None:  # found, not imported: collecting is quick
    pytest.skip("needs transformers (pip install mmcore-plugin-transformers)",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[3]
PAGE = REPO / "docs" / "plugins" / "transformers.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[str]:
    return BLOCK.findall(PAGE.read_text(encoding="utf-8")) if PAGE.is_file() else []


@pytest.mark.skipif(not PAGE.is_file(), reason=f"{PAGE} is not here (an installed plugin)")
def test_the_pages_python_blocks_run(monkeypatch, capsys):
    found = blocks()
    assert len(found) >= 3
    monkeypatch.chdir(REPO)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict = {}
    ran = 0
    try:
        for code in found:
            if code.startswith("# not run:"):
                assert len(code.splitlines()[0]) > len("# not run: "), "give the reason"
                continue
            exec(compile(code, f"{PAGE}:block{ran}", "exec"), namespace)
            ran += 1
    finally:
        torch.set_num_threads(before)
    assert ran >= 2
    printed = capsys.readouterr().out.split()
    assert 0.0 <= float(printed[0]) <= 1.0 and printed[1] in {str(d) for d in range(10)}
    assert (namespace["work"] / "run" / "modalities" / "audio" / "config.json").is_file()
    assert namespace["spec"].modalities["review"].lr_scale == 0.1  # the last block's spec
