"""Every Python code block in README.md and docs/ runs, so a snippet cannot drift from the code.

The blocks of one page run in order in one namespace (a later block may use what an earlier one
defined), with one torch thread, from a scratch copy of ``examples/av_digits`` as the working
directory: its ``spec.py`` is the README demo and ``data/pairs.csv`` its table, which the pages
use. A block whose first line is ``# not run: <reason>`` is skipped for that
reason (it downloads, needs a GPU or several processes, or is a fragment of a file shown
whole elsewhere); a page whose blocks need a plugin that is not installed is skipped.
``docs/plugins/transformers.md`` runs in that plugin's own tests.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from mmcore.log import get_logger

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SKIP = "# not run:"
#: pages whose blocks run elsewhere
ELSEWHERE = {"docs/plugins/transformers.md"}


def pages() -> list[str]:
    found = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [str(p.relative_to(REPO)) for p in found
            if BLOCK.search(p.read_text(encoding="utf-8"))
            and str(p.relative_to(REPO)) not in ELSEWHERE]


def blocks(page: str) -> list[str]:
    return BLOCK.findall((REPO / page).read_text(encoding="utf-8"))


def test_every_skipped_block_says_why() -> None:
    for page in pages():
        for code in blocks(page):
            if code.startswith(SKIP):
                reason = code.splitlines()[0][len(SKIP):].strip()
                assert len(reason) >= 8, f"{page}: a skipped block needs a reason: {code[:80]!r}"


@pytest.mark.parametrize("page", pages())
def test_the_pages_python_blocks_run(page: str, tmp_path: Path, monkeypatch) -> None:
    needed = re.findall(r"plugins/(\w+)\.md$", page)
    for plugin in needed:
        if importlib.util.find_spec(f"mmcore_plugin_{plugin}") is None:
            pytest.skip(f"mmcore-plugin-{plugin} is not installed")
    work = tmp_path / "av_digits"
    shutil.copytree(REPO / "examples" / "av_digits", work,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(work)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict = {"__name__": "__docs__"}
    modules = set(sys.modules)
    logger, root = get_logger(), logging.getLogger()  # configured first, then saved
    saved = (list(logger.handlers), logger.propagate, logger.level, list(root.handlers),
             root.level)
    try:
        for i, code in enumerate(blocks(page)):
            if code.startswith(SKIP):
                continue
            try:
                exec(compile(code, f"{page} (python block {i + 1})", "exec"), namespace)
            except SystemExit as exc:  # a CLI call inside a block
                assert exc.code in (0, None), f"{page} block {i + 1} exited with {exc.code}"
    finally:
        torch.set_num_threads(before)
        logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]
        root.handlers[:], root.level = saved[3], saved[4]  # a block may configure logging
        for name in set(sys.modules) - modules:  # the demo's common.py, degrade.py
            if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(work)):
                del sys.modules[name]
