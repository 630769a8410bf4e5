"""The contract suite itself: a correct tiny modality passes it, and each deliberate flaw is
caught by the check meant for it (and only a few others).

Each tiny modality is a real installed distribution: a package plus a ``.dist-info`` folder
with an ``entry_points.txt`` on ``sys.path``, so discovery goes through entry points exactly
as for a pip-installed plugin. pytest runs in-process through ``pytester``.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

INIT = '''
from mmcore.plugins.hookspecs import hookimpl

MMCORE_API_VERSION = 1
{extra_import}

@hookimpl
def register_modalities(register):
    register("{name}", "{name}.impl:TinyModality", options="{name}.options:TinyOptions",
             description="numbers as a one-feature sequence (contract-suite test)")
'''

OPTIONS = '''
from typing import Literal

from mmcore.modality import ModalityOptions


class TinyOptions(ModalityOptions):
    hidden: int = 6
    output: Literal["pooled", "sequence"] = "pooled"
'''

# A small, correct modality; FLAW (set per package) switches on one deliberate bug.
IMPL = '''
import json

import numpy as np
import torch
from torch import nn

import mmcore
from mmcore.collate import pad_sequences
from mmcore.layers import run_rnn

from .options import TinyOptions

FLAW = "{flaw}"


class TinyEncoder(mmcore.Encoder):
    def __init__(self, hidden, sequence):
        super().__init__(hidden + 1 if FLAW == "wrong_size" else hidden, sequence=sequence)
        self.rnn = nn.GRU(1, hidden, batch_first=True)
        self.proj = nn.Linear(hidden, hidden)
        if FLAW == "unused_parameter":
            self.unused = nn.Linear(hidden, hidden)

    def forward(self, batch):
        out, _ = run_rnn(self.rnn, batch.values.unsqueeze(-1), batch.mask)
        out = self.proj(out)
        if FLAW == "leaks_missing":
            return mmcore.Features(out.mean(dim=1), batch.present)
        return self.features(out, batch.mask, batch)


class TinyModality(mmcore.Modality[TinyOptions]):
    # the registration names the options model; a leftover declaration must agree with it
    if FLAW == "same_options_class":
        options_class = TinyOptions
    if FLAW == "other_options_class":
        options_class = mmcore.ModalityOptions

    def __init__(self, name, options, root=None):
        super().__init__(name, options, root)
        self.scale = 1.0

    def fit(self, values):
        self.scale = max(abs(float(v)) for value in values for v in value) or 1.0

    def save_state(self, directory):
        if FLAW != "forgets_state":
            (directory / "tiny.json").write_text(json.dumps({{"scale": self.scale}}))

    def load_state(self, directory):
        path = directory / "tiny.json"
        if path.exists():
            self.scale = json.loads(path.read_text())["scale"]

    def fingerprint(self):
        return super().fingerprint() + f"|scale={{self.scale!r}}"

    def preprocess(self, value):
        if not isinstance(value, list) or not value:
            raise ValueError(f"expected a non-empty list of numbers, got {{value!r}}")
        arr = np.asarray(value, dtype=np.float32) / np.float32(self.scale)
        if FLAW == "random":
            arr = arr + np.random.rand(*arr.shape).astype(np.float32)
        if FLAW == "float64":
            arr = arr.astype(np.float64)
        return arr

    def collate(self, items):
        return pad_sequences(items, empty_shape=(), dtype=torch.float32)

    def build_encoder(self):
        return TinyEncoder(self.options.hidden, self.options.output == "sequence")
'''

TEST = '''
from mmcore.testing import ModalityContract


class TestTinyContract(ModalityContract):
    plugin = "{name}"
    samples = [[1.0, 2.0, 3.0], [4.0], [0.5, -2.0], [3.0, 3.0, 1.0, 0.0]]
    options = {{"hidden": 5}}
    bad_samples = ["not numbers", []]
'''

#: every check of the suite, as pytest names it
ALL_CHECKS = {
    "test_registered_through_entry_point",
    "test_options_reject_unknown_keys_and_defaults_validate",
    "test_modules_import_no_torch",
    "test_is_missing",
    "test_preprocess_is_deterministic_and_typed",
    "test_bad_samples_raise_value_error",
    "test_picklable",
    "test_state_round_trip",
    "test_collate_pads_and_masks",
    "test_collate_stacked_equals_collate",
    "test_collate_missing_samples",
    "test_collate_all_missing",
    "test_encoder_output_size[pooled]",
    "test_encoder_output_size[sequence]",
    "test_encoder_ignores_missing_rows[pooled]",
    "test_encoder_ignores_missing_rows[sequence]",
    "test_gradients_reach_every_parameter[pooled]",
    "test_gradients_reach_every_parameter[sequence]",
}


def install_tiny(pytester: pytest.Pytester, flaw: str) -> str:
    """Write the tiny plugin with ``flaw`` as an installed distribution; returns its name."""
    name = f"contract_tiny_{flaw}"
    site = pytester.path / "site"
    pkg = site / name
    pkg.mkdir(parents=True)
    extra = "import torch  # deliberate: a heavy import at top level" if flaw == "torch" else ""
    (pkg / "__init__.py").write_text(INIT.format(name=name, extra_import=extra))
    (pkg / "options.py").write_text(OPTIONS)
    (pkg / "impl.py").write_text(IMPL.format(flaw=flaw))
    info = site / f"{name}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[mmcore]\n{name} = {name}\n")
    pytester.syspathinsert(site)
    pytester.makepyfile(**{f"test_{name}": textwrap.dedent(TEST.format(name=name))})
    return name


def run_contract(pytester: pytest.Pytester, flaw: str) -> tuple[set[str], set[str]]:
    """(passed, failed) check names for the tiny plugin with ``flaw``."""
    install_tiny(pytester, flaw)
    reports = pytester.inline_run("-q", "-p", "no:cacheprovider")
    passed, skipped, failed = reports.listoutcomes()
    assert not skipped, [r.nodeid for r in skipped]

    def names(rs):
        return {r.nodeid.split("::")[-1] for r in rs}

    return names(passed), names(failed)


@pytest.mark.parametrize("flaw", ["none", "same_options_class"])
def test_correct_modality_passes_every_check(pytester: pytest.Pytester, flaw: str) -> None:
    """Correct: the options model named once, in the registration, or (as plugins written
    before) also as a class attribute ``options_class`` that agrees with it."""
    passed, failed = run_contract(pytester, flaw)
    assert failed == set()
    assert passed == ALL_CHECKS


@pytest.mark.parametrize(
    ("flaw", "caught_by"),
    [
        ("wrong_size", {"test_encoder_output_size[pooled]", "test_encoder_output_size[sequence]",
                        "test_collate_all_missing"}),
        ("torch", {"test_modules_import_no_torch"}),
        ("random", {"test_preprocess_is_deterministic_and_typed", "test_picklable",
                    "test_state_round_trip"}),
        ("float64", {"test_preprocess_is_deterministic_and_typed"}),
        ("forgets_state", {"test_state_round_trip"}),
        ("leaks_missing", {"test_encoder_ignores_missing_rows[pooled]",
                           "test_encoder_ignores_missing_rows[sequence]",
                           "test_encoder_output_size[sequence]",
                           "test_collate_all_missing"}),
        ("unused_parameter", {"test_gradients_reach_every_parameter[pooled]",
                              "test_gradients_reach_every_parameter[sequence]"}),
        # a second, different declaration: nothing builds (only the import check runs no build)
        ("other_options_class", ALL_CHECKS - {"test_modules_import_no_torch"}),
    ],
)
def test_flawed_modality_fails_the_right_checks(
    pytester: pytest.Pytester, flaw: str, caught_by: set[str]
) -> None:
    passed, failed = run_contract(pytester, flaw)
    assert failed == caught_by
    assert passed == ALL_CHECKS - caught_by


def test_unregistered_name_fails_with_install_hint(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_missing_plugin="""
        from mmcore.testing import ModalityContract

        class TestNothing(ModalityContract):
            plugin = "contract_no_such_modality"
            samples = [1, 2, 3]
        """
    )
    result = pytester.runpytest("-q", "-p", "no:cacheprovider", "-k", "registered")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*unknown modality 'contract_no_such_modality'*"])


def test_base_class_is_not_collected_itself(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_only_import="from mmcore.testing import ModalityContract\n")
    result = pytester.runpytest("-q", "-p", "no:cacheprovider")
    result.assert_outcomes()

