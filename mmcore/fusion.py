"""The ``Fusion`` interface: per-modality features in, one representation out.

Writing a fusion in research code::

    import torch
    import mmcore
    from mmcore.fusions.common import Projection, presence

    class MaxFusion(mmcore.Fusion):
        def __init__(self, input_sizes, size: int = 128):
            super().__init__(input_sizes, output_size=size)
            self.project = Projection(input_sizes, size)  # a Linear per modality

        def forward(self, features):
            z = self.project(features)  # [B, M, size], modalities in sorted order
            present = presence(features, self.modalities)  # [B, M]
            # an absent modality must not take part in the max; no modality at all gives 0
            z = z.masked_fill(~present.unsqueeze(-1), float("-inf"))
            best = z.max(dim=1).values
            return torch.where(present.any(1, keepdim=True), best, torch.zeros_like(best))

Use it in a spec as ``fusion={"name": MaxFusion, "options": {"size": 64}}`` or by the
``"package.module:MaxFusion"`` path, or register it by name from a plugin's
``register_fusions`` hook. ``docs/fusion.md`` describes the built-in fusions and the contract.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mmcore.batch import Features


class Fusion(nn.Module):
    """Combines the features of several modalities into one ``[B, output_size]`` tensor.

    A subclass writes ``__init__(self, input_sizes, **options)``, calling
    ``super().__init__(input_sizes, output_size)``, and ``forward(self, features)``.

    Its options reach it as keyword arguments, validated by mmcore with the fusion's one
    options model: the model its registration names, or, for a class named in a spec, the
    model of its ``__init__`` parameters (annotations and defaults). Every field of the
    validated model is passed, defaults included (:mod:`mmcore.spec.options`).

    ``input_sizes`` maps each modality name to its feature size ``D``. ``features`` maps the
    same names to :class:`~mmcore.batch.Features`: ``values`` ``[B, D]`` or ``[B, T, D]``, a
    step ``mask`` for sequences and ``present`` (``[B]`` bool) for samples that lack the
    modality. A fusion must ignore absent modalities and return finite values even when every
    modality of a sample is absent. Iterate modalities in sorted order for determinism.

    A fusion that combines predictions instead of representations (late fusion) subclasses
    :class:`PerModalityFusion` instead.

    Attributes:
        input_sizes: modality name -> feature size.
        output_size: size of the fused representation.
        modalities: the modality names, sorted.
    """

    def __init__(self, input_sizes: Mapping[str, int], output_size: int) -> None:
        super().__init__()
        if not input_sizes:
            raise ValueError("a fusion needs at least one modality")
        self.input_sizes = dict(sorted(input_sizes.items()))
        self.output_size = int(output_size)
        self.modalities = list(self.input_sizes)

    def forward(self, features: Mapping[str, Features]) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class PerModalityFusion(Fusion):
    """Late fusion: one representation per modality, and the heads' predictions merged.

    ``forward(features)`` returns ``{modality: [B, output_size]}`` (every modality in
    :attr:`modalities`; rows where a modality is absent may hold anything, :meth:`combine`
    leaves them out). The model built around it, :class:`mmcore.model.LateFusionModel`, runs
    each head on each modality's representation and calls :meth:`combine` once per head.
    ``mmcore.build_model`` chooses that composition for an instance of this class; the
    :class:`~mmcore.model.MultimodalModel` of every other fusion refuses it. See
    :class:`mmcore.fusions.late.LateFusion`.
    """

    def forward(  # type: ignore[override]  # one tensor per modality, not one in all
        self, features: Mapping[str, Features]
    ) -> dict[str, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    def combine(
        self, head_outputs: Mapping[str, Tensor], features: Mapping[str, Features]
    ) -> Tensor:  # pragma: no cover - interface
        """Merge one head's ``{modality: output [B, ...]}`` into one output ``[B, ...]``.

        ``features`` are the encoders' (for ``present``); a row must get a finite output,
        taken from its present modalities only, even when none is present.
        """
        raise NotImplementedError
