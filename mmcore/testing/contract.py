"""``ModalityContract``: the checks every modality plugin must pass, as a pytest base class.

A plugin's test module subclasses it with a few attributes; pytest then runs every check::

    from mmcore.testing import ModalityContract

    class TestAudioContract(ModalityContract):
        plugin = "audio"                      # the registered modality name
        samples = ["a.wav", "b.wav", "c.wav"]  # >= 3 raw, present values
        options = {"sample_rate": 8000}       # options for the modality (default: {})

Samples that must be created first (files) come from overriding
``make_samples(self, tmp_path) -> list``; relative paths resolve against ``make_root(tmp_path)``
(``root`` if set, else ``tmp_path``). The base class's name does not start with ``Test`` so
pytest does not collect it on its own. Every check is a plain ``test_*`` method.

What the plugin must provide for an all-missing batch: ``collate([None, None])`` must build a
batch with ``present`` all false, which needs the per-sample shape known without any sample
(``pad_sequences(..., empty_shape=...)`` / ``stack_fixed(..., shape=...)``). A modality that
cannot know it sets ``supports_all_missing = False`` and must then raise ``ValueError``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pytest

from mmcore.version import DISTRIBUTION

if TYPE_CHECKING:
    from pydantic import BaseModel

ALLOWED_DTYPES = (np.dtype(np.float32), np.dtype(np.int64))
OUTPUTS = ("pooled", "sequence")
MIN_SAMPLES = 3


class ModalityContract:
    """Base class of a modality plugin's contract tests (see the module docstring).

    Attributes:
        plugin: the modality name the plugin registers (``registry.get("modality", plugin)``).
        samples: at least 3 raw, present values; for a modality with a time axis, of at least
            two different lengths so that padding is exercised.
        options: options for the modality, as they would appear in a spec.
        root: folder relative paths in ``samples`` resolve against (default: ``tmp_path``).
        outputs: the ``output`` option values the encoder supports (both by convention).
        supports_all_missing: whether ``collate`` can build a batch where every item is
            ``None``; if ``False`` it must raise ``ValueError`` instead.
        bad_samples: raw values ``preprocess`` must reject with ``ValueError``.
        atol: tolerance when comparing encoder outputs of the same sample in two batches.
    """

    plugin: ClassVar[str] = ""
    samples: ClassVar[Sequence[Any]] = ()
    options: ClassVar[Mapping[str, Any]] = {}
    root: ClassVar[str | Path | None] = None
    outputs: ClassVar[Sequence[str]] = OUTPUTS
    supports_all_missing: ClassVar[bool] = True
    bad_samples: ClassVar[Sequence[Any]] = ()
    atol: ClassVar[float] = 1e-4

    # -- hooks a subclass may override ---------------------------------------------------
    def make_samples(self, tmp_path: Path) -> Sequence[Any]:
        """The raw present values to test with; override to write sample files first."""
        return list(self.samples)

    def make_root(self, tmp_path: Path) -> Path | None:
        """The folder relative paths in the samples resolve against."""
        return Path(self.root) if self.root is not None else tmp_path

    def make_options(self, **changes: Any) -> dict[str, Any]:
        """The options as a spec would give them, with ``changes`` applied."""
        return {**dict(self.options), **changes}

    # -- helpers -------------------------------------------------------------------------
    def registration(self):
        """The plugin's :class:`~mmcore.plugins.Registration`, from a freshly discovered
        registry (so the check reflects what is installed, not a registry a test replaced)."""
        cls = type(self)
        cached = cls.__dict__.get("_contract_registration")
        if cached is not None:
            return cached
        from mmcore.plugins.discovery import build_registry

        assert self.plugin, f"{cls.__name__}: set the class attribute `plugin` (a modality name)"
        reg = build_registry(strict=False).get("modality", self.plugin)
        cls._contract_registration = reg
        return reg

    def modality_class(self) -> type:
        return self.registration().load()

    def options_model(self) -> type[BaseModel]:
        """The registered options model, as the model build uses it."""
        from mmcore.spec.options import implementation_model

        return implementation_model(self.registration(), self.modality_class())

    def build(self, tmp_path: Path, fit: bool = True, **changes: Any):
        """A new modality instance with the contract's options (and ``changes``), fitted on
        the samples unless ``fit`` is false."""
        samples = self.present_samples(tmp_path)  # first: it may write files options refer to
        options = self.options_model().model_validate(self.make_options(**changes))
        modality = self.modality_class()(self.plugin, options, root=self.make_root(tmp_path))
        if fit:
            modality.fit(samples)
        return modality

    def present_samples(self, tmp_path: Path) -> list[Any]:
        samples = list(self.make_samples(tmp_path))
        assert len(samples) >= MIN_SAMPLES, (
            f"{type(self).__name__}: give at least {MIN_SAMPLES} samples, got {len(samples)}"
        )
        return samples

    def arrays(self, modality, tmp_path: Path) -> list[np.ndarray]:
        return [modality.preprocess(s) for s in self.present_samples(tmp_path)]

    def supported_outputs(self) -> list[str]:
        fields = self.options_model().model_fields
        assert "output" in fields, (
            f"options model {self.options_model().__name__} has no `output` option; by "
            "convention every encoder offers output: Literal['pooled', 'sequence'] = 'pooled'"
        )
        return [o for o in OUTPUTS if o in self.outputs]

    def check_output(self, output: str) -> None:
        if output not in self.supported_outputs():
            pytest.skip(f"{self.plugin!r} declares outputs={list(self.outputs)}")

    # -- registration and options --------------------------------------------------------
    def test_registered_through_entry_point(self) -> None:
        from mmcore.modality import Modality, ModalityOptions

        reg = self.registration()
        assert reg.distribution not in (None, DISTRIBUTION), (
            f"modality {self.plugin!r} must come from an installed distribution's entry point "
            f"(group 'mmcore'), but it is registered by {reg.distribution or 'no distribution'}"
        )
        cls = reg.load()
        assert isinstance(cls, type) and issubclass(cls, Modality), (
            f"{reg.impl!r} must be a subclass of mmcore.Modality, got {cls!r}"
        )
        options = reg.load_options()
        assert options is not None, (
            f"register {self.plugin!r} with options='pkg.options:Model' so specs validate "
            "without importing the implementation"
        )
        assert issubclass(options, ModalityOptions), (
            f"{options!r} must subclass mmcore.modality.ModalityOptions"
        )
        # the registration is the one declaration; a leftover options_class must agree
        self.options_model()

    def test_options_reject_unknown_keys_and_defaults_validate(self) -> None:
        from pydantic import ValidationError

        model = self.options_model()
        model()  # every option has a default
        given = model.model_validate(self.make_options())
        with pytest.raises(ValidationError, match="no_such_option"):
            model.model_validate(self.make_options(no_such_option=1))
        again = model.model_validate_json(given.model_dump_json())
        assert again == given, "options must survive a JSON round trip (checkpoints store JSON)"

    def test_modules_import_no_torch(self) -> None:
        reg = self.registration()
        eps = [ep for ep in entry_points(group="mmcore") if ep.name == reg.plugin]
        assert eps, f"no entry point named {reg.plugin!r} in group 'mmcore'"
        modules = [eps[0].module]
        if isinstance(reg.options, str):
            modules.append(reg.options.partition(":")[0])
        script = textwrap.dedent(
            f"""
            import importlib, sys
            for name in {modules!r}:
                importlib.import_module(name)
                if "torch" in sys.modules:
                    sys.exit(f"importing {{name}} imported torch")
            """
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, (
            "the plugin's top-level module and options module must not import torch (keep "
            f"heavy imports in modality.py / encoder.py): {done.stderr.strip()[-2000:]}"
        )

    # -- preprocessing ---------------------------------------------------------------------
    def test_is_missing(self, tmp_path: Path) -> None:
        modality = self.build(tmp_path, fit=False)
        assert modality.is_missing(None) is True
        for i, sample in enumerate(self.present_samples(tmp_path)):
            assert not modality.is_missing(sample), f"sample {i} counts as missing: {sample!r}"

    def test_preprocess_is_deterministic_and_typed(self, tmp_path: Path) -> None:
        first = self.build(tmp_path)
        second = self.build(tmp_path)  # fitted independently: fitting must be deterministic too
        assert first.fingerprint() == second.fingerprint()
        for i, sample in enumerate(self.present_samples(tmp_path)):
            a, b, c = first.preprocess(sample), first.preprocess(sample), second.preprocess(sample)
            assert isinstance(a, np.ndarray), f"sample {i}: preprocess returned {type(a)}"
            assert a.dtype in ALLOWED_DTYPES, f"sample {i}: dtype {a.dtype}, expected float32/int64"
            if a.dtype.kind == "f":
                assert np.isfinite(a).all(), f"sample {i}: preprocess returned non-finite values"
            assert np.array_equal(a, b), f"sample {i}: preprocess gave different arrays twice"
            assert np.array_equal(a, c), f"sample {i}: two fitted instances disagree"

    def test_bad_samples_raise_value_error(self, tmp_path: Path) -> None:
        if not self.bad_samples:
            pytest.skip("no bad_samples declared")
        modality = self.build(tmp_path)
        for sample in self.bad_samples:
            with pytest.raises(ValueError):
                modality.preprocess(sample)

    def test_picklable(self, tmp_path: Path) -> None:
        # data workers and multi-process preprocessing receive the modality by pickling
        modality = self.build(tmp_path)
        clone = pickle.loads(pickle.dumps(modality))
        for sample in self.present_samples(tmp_path):
            assert np.array_equal(modality.preprocess(sample), clone.preprocess(sample))

    def test_state_round_trip(self, tmp_path: Path) -> None:
        fitted = self.build(tmp_path)
        state = tmp_path / "contract-state"
        state.mkdir()
        fitted.save_state(state)
        loaded = self.build(tmp_path, fit=False)
        loaded.load_state(state)
        assert loaded.fingerprint() == fitted.fingerprint(), "fingerprint changed after load"
        for i, sample in enumerate(self.present_samples(tmp_path)):
            assert np.array_equal(fitted.preprocess(sample), loaded.preprocess(sample)), (
                f"sample {i}: preprocess differs after save_state/load_state"
            )
        assert loaded.build_encoder().output_size == fitted.build_encoder().output_size

    # -- collation -------------------------------------------------------------------------
    def test_collate_pads_and_masks(self, tmp_path: Path) -> None:
        import torch

        from mmcore.batch import ModalityBatch

        modality = self.build(tmp_path)
        arrays = self.arrays(modality, tmp_path)
        batch = modality.collate(arrays)
        n = len(arrays)
        assert isinstance(batch, ModalityBatch)
        assert batch.values.shape[0] == n, f"values {tuple(batch.values.shape)}: first dim != {n}"
        assert batch.values.dtype in (torch.float32, torch.int64)
        assert batch.present.dtype == torch.bool and tuple(batch.present.shape) == (n,)
        assert bool(batch.present.all()), "every sample is present, so present must be all True"
        if batch.mask is None:
            return
        mask = batch.mask
        assert mask.dtype == torch.bool and mask.dim() == 2 and mask.shape[0] == n
        assert batch.values.shape[1] == mask.shape[1], "values [B, T, ...] must match mask [B, T]"
        lengths = [int(a.shape[0]) for a in arrays]
        assert mask.sum(dim=1).tolist() == lengths, (
            f"mask lengths {mask.sum(dim=1).tolist()} != sample lengths {lengths} "
            "(time is the first axis of a preprocessed array)"
        )
        assert not bool((mask[:, 1:] & ~mask[:, :-1]).any()), "real steps must come first"
        assert len(set(lengths)) > 1, (
            "samples of a sequence modality must have different lengths so padding is tested"
        )

    def test_collate_stacked_equals_collate(self, tmp_path: Path) -> None:
        """``collate_stacked`` (splits held in memory) gives what ``collate`` gives."""
        import torch

        modality = self.build(tmp_path)
        arrays = self.arrays(modality, tmp_path)
        same = [a for a in arrays if a.shape == arrays[0].shape and a.dtype == arrays[0].dtype]
        stacked, listed = modality.collate_stacked(np.stack(same)), modality.collate(same)
        for field in ("values", "present", "mask"):
            a, b = getattr(stacked, field), getattr(listed, field)
            assert (a is None) == (b is None), f"collate_stacked: {field} differs from collate's"
            if a is not None:
                assert a.dtype == b.dtype and torch.equal(a, b), (
                    f"collate_stacked: {field} differs from collate's"
                )

    def test_collate_missing_samples(self, tmp_path: Path) -> None:
        modality = self.build(tmp_path)
        a = self.arrays(modality, tmp_path)
        batch = modality.collate([a[0], None, a[1], None])
        assert batch.present.tolist() == [True, False, True, False]
        assert batch.values.shape[0] == 4
        absent = batch.values[~batch.present]
        assert bool((absent == 0).all()), "rows of missing samples must be zeros"
        if batch.mask is not None:
            assert not bool(batch.mask[~batch.present].any()), "missing rows must be all padding"

    def test_collate_all_missing(self, tmp_path: Path) -> None:
        modality = self.build(tmp_path)
        if not self.supports_all_missing:
            with pytest.raises(ValueError):
                modality.collate([None, None])
            return
        batch = modality.collate([None, None])
        assert batch.present.tolist() == [False, False]
        for output in self.supported_outputs():
            encoder = self.build(tmp_path, output=output).build_encoder().eval()
            features = encoder(batch)
            assert features.values.shape[0] == 2
            assert features.values.shape[-1] == encoder.output_size
            assert bool((features.values == 0).all()), "features of missing samples must be zero"

    # -- encoder ---------------------------------------------------------------------------
    @pytest.mark.parametrize("output", OUTPUTS)
    def test_encoder_output_size(self, tmp_path: Path, output: str) -> None:
        import torch

        from mmcore.batch import Features

        self.check_output(output)
        modality = self.build(tmp_path, output=output)
        torch.manual_seed(0)
        encoder = modality.build_encoder().eval()
        arrays = self.arrays(modality, tmp_path)
        batch = modality.collate(arrays)
        n, size = len(arrays), encoder.output_size
        with torch.no_grad():
            features = encoder(batch)
        assert isinstance(features, Features)
        assert encoder.sequence == (output == "sequence"), "pass sequence=(output == 'sequence')"
        values = features.values
        assert bool(torch.isfinite(values).all()), "encoder output is not finite"
        assert features.present.tolist() == batch.present.tolist()
        if output == "pooled":
            assert tuple(values.shape) == (n, size), f"pooled: {tuple(values.shape)} != {(n, size)}"
            assert features.mask is None
        else:
            assert values.dim() == 3 and values.shape[0] == n and values.shape[2] == size, (
                f"sequence: {tuple(values.shape)} is not [{n}, T, {size}]"
            )
            assert features.mask is not None and features.mask.shape == values.shape[:2]
            assert bool(features.mask.any(dim=1).all()), "every present row needs a real step"

    @pytest.mark.parametrize("output", OUTPUTS)
    def test_encoder_ignores_missing_rows(self, tmp_path: Path, output: str) -> None:
        import torch

        self.check_output(output)
        modality = self.build(tmp_path, output=output)
        torch.manual_seed(0)
        encoder = modality.build_encoder().eval()
        a = self.arrays(modality, tmp_path)
        with torch.no_grad():
            features = encoder(modality.collate([a[0], None, a[1], None]))
            mixed = features.pooled()
            alone = encoder(modality.collate([a[0], a[1]])).pooled()
        assert features.present.tolist() == [True, False, True, False]
        assert bool((features.values[~features.present] == 0).all()), (
            "features of missing samples must be zero (end forward with self.features(...))"
        )
        assert torch.allclose(mixed[[0, 2]], alone, atol=self.atol, rtol=self.atol), (
            "a present sample's features changed when missing samples were in its batch"
        )

    @pytest.mark.parametrize("output", OUTPUTS)
    def test_gradients_reach_every_parameter(self, tmp_path: Path, output: str) -> None:
        import torch

        self.check_output(output)
        modality = self.build(tmp_path, output=output)
        torch.manual_seed(0)
        encoder = modality.build_encoder().train()
        a = self.arrays(modality, tmp_path)
        features = encoder(modality.collate([*a, None]))
        pooled = features.pooled()
        loss = (pooled * torch.randn_like(pooled)).sum()
        loss.backward()
        params = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
        assert params, "the encoder has no trainable parameters"
        dead = [n for n, p in params if p.grad is None or not bool((p.grad != 0).any())]
        assert not dead, f"no gradient reaches {dead}"
        bad = [n for n, p in params if not bool(torch.isfinite(p.grad).all())]
        assert not bad, f"non-finite gradients in {bad}"
