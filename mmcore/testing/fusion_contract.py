"""``FusionContract``: the checks every fusion should pass, as a pytest base class.

A research package's test module subclasses it with the fusion and its options; pytest then
runs every check::

    from mmcore.testing import FusionContract
    from my_research.fusions import MaxPoolFusion

    class TestMaxPoolFusion(FusionContract):
        fusion = MaxPoolFusion          # a Fusion subclass, a registered name or "module:Class"
        options = {"size": 16}          # keyword arguments after input_sizes

The checks, on random features where absent rows and padded steps hold large garbage values
(so that any leak shows): the output is ``[B, output_size]`` and finite; absent modalities,
padded steps and longer padding do not change it; a row without any modality still gives a
finite output; every present modality does change it; every parameter gets a gradient; in eval
mode it is deterministic and each row's output does not depend on the other rows of the batch.
A late fusion (a :class:`~mmcore.fusion.PerModalityFusion`) is checked through its ``combine``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import pytest

LAYOUTS = ("mixed", "sequences", "pooled")


def make_features(input_sizes: Mapping[str, int], layout: str, seed: int = 0) -> dict[str, Any]:
    """``{modality: Features}`` for a batch of ``M + 3`` rows (``M`` modalities).

    Row 0 has every modality; row ``1 + i`` lacks modality ``i``; the next row lacks all; the
    last has every modality with sequences one real step long. ``layout``: "mixed" (every other
    modality a sequence), "sequences" or "pooled". Absent rows and padded steps hold random
    values, not zeros.
    """
    import torch

    from mmcore.batch import Features

    names = sorted(input_sizes)
    m, g = len(names), torch.Generator().manual_seed(seed)
    b = m + 3
    out = {}
    for j, name in enumerate(names):
        present = torch.ones(b, dtype=torch.bool)
        present[1 + j] = False
        present[m + 1] = False
        d = input_sizes[name]
        is_sequence = layout == "sequences" or (layout == "mixed" and j % 2 == 0)
        if is_sequence:
            lengths = torch.randint(1, 8, (b,), generator=g)
            lengths[-1] = 1
            t = int(lengths.max())
            mask = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
            out[name] = Features(torch.randn(b, t, d, generator=g), present, mask)
        else:
            out[name] = Features(torch.randn(b, d, generator=g), present)
    return out


def scramble(features: Any, where: Any, seed: int) -> Any:
    """A copy of ``features`` with large random values wherever ``where`` (``[B]`` or
    ``[B, T]``) is true."""
    import torch

    from mmcore.batch import Features

    g = torch.Generator().manual_seed(seed)
    garbage = torch.randn(features.values.shape, generator=g) * 100
    where = where.view(*where.shape, *([1] * (features.values.dim() - where.dim())))
    return Features(torch.where(where, garbage, features.values), features.present,
                    features.mask)


def extend_padding(features: Any, steps: int) -> Any:
    """A copy with ``steps`` more padded (masked-out, garbage) steps at the end of every row."""
    import torch

    from mmcore.batch import Features

    b, _, d = features.values.shape
    extra = torch.randn(b, steps, d) * 100
    mask = torch.cat([features.mask, torch.zeros(b, steps, dtype=torch.bool)], dim=1)
    return Features(torch.cat([features.values, extra], dim=1), features.present, mask)


def rows(features: Mapping[str, Any], index: Any) -> dict[str, Any]:
    """The features of the rows ``index`` (a list of row numbers)."""
    from mmcore.batch import Features

    return {m: Features(f.values[index], f.present[index],
                        f.mask[index] if f.mask is not None else None)
            for m, f in features.items()}


class FusionContract:
    """Base class of a fusion's contract tests (see the module docstring).

    Attributes:
        fusion: the fusion: a :class:`~mmcore.Fusion` subclass, a registered fusion name, or
            ``"module:Class"``.
        options: the fusion's options as a spec gives them, validated by its options model
            (registered, or read from its ``__init__``) and passed as keyword arguments.
        input_sizes: the modalities and their feature sizes ``D`` (at least 2).
        layouts: which mixes of sequence and pooled features to check.
        atol: tolerance of the "does not change the output" checks.
    """

    fusion: ClassVar[Any] = None
    options: ClassVar[Mapping[str, Any]] = {}
    input_sizes: ClassVar[Mapping[str, int]] = {"audio": 6, "image": 5, "text": 3}
    layouts: ClassVar[Sequence[str]] = LAYOUTS
    atol: ClassVar[float] = 1e-5

    # -- helpers -------------------------------------------------------------------------
    def build(self) -> Any:
        """A new fusion for :attr:`input_sizes`, with the seed fixed."""
        import torch

        assert self.fusion is not None, f"{type(self).__name__}: set the class attribute fusion"
        assert len(self.input_sizes) >= 2, "give at least two modalities in input_sizes"
        from mmcore.spec.options import (
            implementation_model,
            keyword_arguments,
            signature_model,
            validated,
        )

        torch.manual_seed(0)
        cls = self.fusion
        if isinstance(cls, str) and ":" not in cls:
            from mmcore.plugins import get_registry

            registration = get_registry().get("fusion", cls)
            cls = registration.load()
            model = implementation_model(registration, cls)
        else:
            if isinstance(cls, str):
                from mmcore.spec.modules import resolve_fusion_class

                cls = resolve_fusion_class(cls, None)
            model = signature_model(cls)
        # the options reach the fusion as a spec's do: validated, every field as a keyword
        options = validated(model, self.options, source=type(self).__name__, path="options")
        return cls(dict(self.input_sizes), **keyword_arguments(options))

    @staticmethod
    def fuse(fusion: Any, features: Mapping[str, Any]) -> Any:
        """The fused output; a late fusion's per-modality outputs merged by its ``combine``."""
        from mmcore.fusion import PerModalityFusion

        out = fusion(features)
        if isinstance(fusion, PerModalityFusion):
            return fusion.combine(out, features)
        return out

    def check_layout(self, layout: str) -> None:
        if layout not in self.layouts:
            pytest.skip(f"{type(self).__name__} declares layouts={list(self.layouts)}")

    def assert_same(self, a: Any, b: Any, what: str) -> None:
        import torch

        torch.testing.assert_close(a, b, atol=self.atol, rtol=self.atol, msg=what)

    # -- the checks ------------------------------------------------------------------------
    @pytest.mark.parametrize("layout", LAYOUTS)
    def test_absent_modalities_and_padding_do_not_reach_the_output(self, layout: str) -> None:
        import torch

        self.check_layout(layout)
        fusion = self.build().eval()
        features = make_features(self.input_sizes, layout)
        with torch.no_grad():
            reference = self.fuse(fusion, features)
            b = next(iter(features.values())).present.shape[0]
            assert tuple(reference.shape) == (b, fusion.output_size), (
                f"output {tuple(reference.shape)}, expected [B, output_size] = "
                f"{(b, fusion.output_size)}")
            assert bool(torch.isfinite(reference).all()), "the output is not finite"
            for i, m in enumerate(sorted(features)):
                changed = dict(features)
                changed[m] = scramble(features[m], ~features[m].present, seed=i + 1)
                self.assert_same(self.fuse(fusion, changed), reference,
                                 f"the values of absent {m} rows reached the output")
                if features[m].is_sequence:
                    changed[m] = scramble(features[m], ~features[m].mask, seed=i + 10)
                    self.assert_same(self.fuse(fusion, changed), reference,
                                     f"padded steps of {m} reached the output")
                    changed[m] = extend_padding(features[m], steps=3)
                    self.assert_same(self.fuse(fusion, changed), reference,
                                     f"more padding of {m} changed the output")

    def test_no_modality_at_all_gives_finite_output(self) -> None:
        import torch

        from mmcore.batch import Features

        fusion = self.build()
        features = {m: Features(f.values, torch.zeros_like(f.present), f.mask)
                    for m, f in make_features(self.input_sizes, "mixed").items()}
        out = self.fuse(fusion, features)
        assert out.shape[1] == fusion.output_size
        assert bool(torch.isfinite(out).all()), "rows without any modality give non-finite output"

    def test_present_modalities_change_the_output(self) -> None:
        """Guards against a fusion that passes the checks above by ignoring its inputs."""
        import torch

        fusion = self.build().eval()
        features = make_features(self.input_sizes, "mixed")
        with torch.no_grad():
            reference = self.fuse(fusion, features)
            for i, m in enumerate(sorted(features)):
                changed = dict(features)
                changed[m] = scramble(features[m], features[m].present, seed=i + 20)
                moved = (self.fuse(fusion, changed) - reference).abs().amax(dim=1)
                assert bool((moved[features[m].present] > 1e-4).all()), (
                    f"the output ignores present {m} features")

    @pytest.mark.parametrize("layout", ["mixed", "sequences"])
    def test_gradients_reach_every_parameter(self, layout: str) -> None:
        import torch

        self.check_layout(layout)
        fusion = self.build()
        out = self.fuse(fusion, make_features(self.input_sizes, layout))
        (out * torch.randn_like(out)).sum().backward()
        dead = [n for n, p in fusion.named_parameters()
                if p.requires_grad and (p.grad is None or not bool((p.grad != 0).any()))]
        assert not dead, f"no gradient reaches {dead}"

    def test_eval_is_deterministic_and_rows_are_independent(self) -> None:
        import torch

        fusion = self.build().eval()
        features = make_features(self.input_sizes, "mixed")
        with torch.no_grad():
            once = self.fuse(fusion, features)
            self.assert_same(self.fuse(fusion, features), once, "eval mode is not deterministic")
            n = once.shape[0]
            for i in (0, n - 1):
                alone = self.fuse(fusion, rows(features, [i]))
                self.assert_same(alone[0], once[i],
                                 f"row {i}'s output depends on the other rows of its batch")
