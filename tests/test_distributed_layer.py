"""The distributed layer, read from the source (no import is executed): only
``mmcore/distributed/`` imports ``torch.distributed``, in any form, and no module outside it
and ``mmcore/strategy.py`` asks which rank it is or how many there are (``rank == 0``,
``world_size > 1``...): the others ask ``strategy.is_main`` or hand the work to
``strategy.on_main``, as Lightning's loops leave it to their strategy."""

from __future__ import annotations

import ast
import operator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmcore"
SOURCES = {p.relative_to(PACKAGE.parent).as_posix(): p for p in sorted(PACKAGE.rglob("*.py"))
           if "scaffold/template" not in p.as_posix()}
#: where torch.distributed may be imported
DISTRIBUTED = "mmcore/distributed/"
#: where a rank or a world size may be compared
STRATEGIES = (DISTRIBUTED, "mmcore/strategy.py")

TORCH_DISTRIBUTED = "torch.distributed"


def _is_torch_distributed(name: str) -> bool:
    return name == TORCH_DISTRIBUTED or name.startswith(TORCH_DISTRIBUTED + ".")


def torch_distributed_uses(source: str) -> list[int]:
    """Lines that import ``torch.distributed`` (``import torch.distributed as tdist``,
    ``from torch.distributed... import``, ``from torch import distributed``,
    ``importlib.import_module("torch.distributed...")``), at any level, or reach it as
    ``torch.distributed``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            hit = any(_is_torch_distributed(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            hit = (not node.level and node.module is not None) and (
                _is_torch_distributed(node.module)
                or (node.module == "torch" and any(a.name == "distributed" for a in node.names)))
        elif isinstance(node, ast.Attribute):
            hit = (node.attr == "distributed" and isinstance(node.value, ast.Name)
                   and node.value.id == "torch")
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            hit = (called in ("import_module", "__import__") and bool(node.args)
                   and isinstance(node.args[0], ast.Constant)
                   and isinstance(node.args[0].value, str)
                   and _is_torch_distributed(node.args[0].value))
        else:
            continue
        if hit:
            lines.append(node.lineno)
    return sorted(set(lines))


RANKS = {"rank", "local_rank"}
WORLDS = {"world_size", "local_world_size"}
#: comparisons asking "am I the main process?" / "are there several?", as ``name <op> number``
QUESTIONS = {
    ("rank", 0): (ast.Eq, ast.NotEq, ast.Gt, ast.LtE),
    ("rank", 1): (ast.Lt, ast.GtE),
    ("world", 1): (ast.Eq, ast.NotEq, ast.Gt, ast.LtE),
    ("world", 2): (ast.Lt, ast.GtE),
}
FLIPPED = {ast.Eq: ast.Eq, ast.NotEq: ast.NotEq, ast.Gt: ast.Lt, ast.Lt: ast.Gt,
           ast.GtE: ast.LtE, ast.LtE: ast.GtE}


def _kind(node: ast.expr) -> str | None:
    """``rank`` or ``world`` for a name or attribute so called (``self.strategy.rank``)."""
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
    if not isinstance(name, str):
        return None
    name = name.lower().lstrip("_")
    return "rank" if name in RANKS else "world" if name in WORLDS else None


def _asks(left: ast.expr, op: ast.cmpop, right: ast.expr) -> bool:
    if type(op) not in FLIPPED:  # is, in...
        return False
    if _kind(left) is None:
        left, right, op = right, left, FLIPPED[type(op)]()
    kind = _kind(left)
    if kind is None or not isinstance(right, ast.Constant) or type(right.value) is not int:
        return False
    return isinstance(op, QUESTIONS.get((kind, right.value), ()))


def rank_questions(source: str) -> list[int]:
    """Lines that compare a rank or a world size with the numbers that tell the main process
    or a run of several (``rank == 0``, ``0 < rank``, ``world_size > 1``, ``world_size == 1``),
    or test one for truth (``if rank:``, ``not self.world_size``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_asks(a, op, b) for a, op, b in zip(operands, node.ops, operands[1:],
                                                       strict=False)):
                lines.append(node.lineno)
            continue
        tests: list[ast.expr] = []
        if isinstance(node, ast.If | ast.IfExp | ast.While | ast.Assert):
            tests = [node.test]
        elif isinstance(node, ast.comprehension):
            tests = list(node.ifs)
        elif isinstance(node, ast.BoolOp):
            tests = list(node.values)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            tests = [node.operand]
        lines += [t.lineno for t in tests if _kind(t) is not None]
    return sorted(set(lines))


@pytest.mark.parametrize("path", [p for p in SOURCES if not p.startswith(DISTRIBUTED)])
def test_only_the_distributed_package_imports_torch_distributed(path: str) -> None:
    source = SOURCES[path].read_text(encoding="utf-8")
    assert torch_distributed_uses(source) == [], f"{path} imports torch.distributed"


#: path -> how many rank questions it keeps, and why; each must still be there (a test below
#: fails otherwise), so that the list shrinks when one goes
KNOWN_RANK_QUESTIONS = {
    # A streamed split is cut into per-rank shards by datasets' split_dataset_by_node only when
    # there are several: on one rank that call would drop the epoch set on the shuffled stream
    # (every epoch would see the same order). The data layer is handed (rank, world_size) as a
    # shard's coordinates, like torch's DistributedSampler, not as this process's role.
    "mmcore/data/streaming.py": 1,
}


@pytest.mark.parametrize("path", [p for p in SOURCES if not p.startswith(STRATEGIES)])
def test_no_module_outside_the_strategies_asks_its_rank(path: str) -> None:
    """Ask ``strategy.is_main``, or run the work in ``strategy.on_main``."""
    source = SOURCES[path].read_text(encoding="utf-8")
    found = rank_questions(source)
    assert len(found) == KNOWN_RANK_QUESTIONS.get(path, 0), (
        f"{path}:{found} compares a rank or a world size")


@pytest.mark.parametrize("path", sorted(KNOWN_RANK_QUESTIONS))
def test_each_known_rank_question_is_still_there(path: str) -> None:
    assert rank_questions(SOURCES[path].read_text(encoding="utf-8"))


def test_the_distributed_package_is_where_they_are() -> None:
    """A check that finds nothing because it reads nothing would pass the tests above."""
    found = {p for p in SOURCES if torch_distributed_uses(SOURCES[p].read_text("utf-8"))}
    assert {"mmcore/distributed/process_group.py", "mmcore/distributed/launch.py",
            "mmcore/distributed/fsdp.py"} <= found
    asks = {p for p in SOURCES if rank_questions(SOURCES[p].read_text("utf-8"))}
    assert {"mmcore/strategy.py", "mmcore/distributed/launch.py"} <= asks
    assert len(SOURCES) > 100


@pytest.mark.parametrize("source", [
    "import torch.distributed as tdist",
    "import torch.distributed",
    "import os, torch.distributed.fsdp",
    "from torch.distributed import barrier",
    "from torch.distributed.fsdp import fully_shard",
    "from torch import nn, distributed",
    "def f():\n    from torch.distributed.tensor import DTensor\n",
    "class A:\n    def f(self):\n        import torch.distributed as d\n",
    "import torch\nok = torch.distributed.is_initialized()",
    "import importlib\nd = importlib.import_module('torch.distributed')",
    "d = __import__('torch.distributed.run')",
])
def test_the_import_check_sees_every_form(source: str) -> None:
    assert torch_distributed_uses(source)


@pytest.mark.parametrize("source", [
    "import torch\nfrom torch import nn\nimport torch.utils.data",
    "'''uses torch.distributed'''",
    "from .distributed import x",
    "from mmcore.distributed.launch import launch",
])
def test_the_import_check_lets_the_rest_pass(source: str) -> None:
    assert torch_distributed_uses(source) == []


@pytest.mark.parametrize("source", [
    "if self.rank == 0:\n    pass",
    "if trainer.rank != 0:\n    pass",
    "if 0 == env.rank:\n    pass",
    "if rank > 0:\n    pass",
    "if 0 < strategy.rank:\n    pass",
    "if rank >= 1:\n    pass",
    "if self.strategy.world_size > 1:\n    pass",
    "if world_size == 1:\n    pass",
    "if 1 < world_size:\n    pass",
    "if world_size >= 2:\n    pass",
    "if x and strategy.world_size <= 1:\n    pass",
    "y = a if self._rank == 0 else b",
    "main = rank == 0",
    "if not rank:\n    pass",
    "if self.rank:\n    pass",
    "while local_rank:\n    pass",
    "z = [a for a in b if strategy.world_size > 1]",
])
def test_the_rank_check_sees_every_question(source: str) -> None:
    assert rank_questions(source)


@pytest.mark.parametrize("source", [
    "if strategy.is_main:\n    pass",
    "share = ceil(n / strategy.world_size)\nfirst = strategy.rank * share",
    "order = order[self.rank :: self.world_size]",
    "if world_size < 1 or not 0 <= rank < world_size:\n    raise ValueError",
    "if worker.num_workers > 1:\n    pass",
    "if ranks[0] == 0:\n    pass",
    "if len(ranks) == world:\n    pass",
])
def test_the_rank_check_lets_the_rest_pass(source: str) -> None:
    assert rank_questions(source) == []


def test_the_flipped_operators_are_complete() -> None:
    pairs = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Gt: operator.gt,
             ast.Lt: operator.lt, ast.GtE: operator.ge, ast.LtE: operator.le}
    for op, flipped in FLIPPED.items():
        for a in range(3):
            for b in range(3):
                assert pairs[op](a, b) == pairs[flipped](b, a)
