"""The ``Fusion`` interface: per-modality features in, one representation out.

Writing a fusion in research code::

    import torch
    from torch import nn
    import mmcore

    class MaxFusion(mmcore.Fusion):
        def __init__(self, input_sizes, size: int = 128):
            super().__init__(input_sizes, output_size=size)
            self.proj = nn.ModuleDict({m: nn.Linear(d, size) for m, d in input_sizes.items()})

        def forward(self, features):
            outs = [self.proj[m](f.pooled()) for m, f in sorted(features.items())]
            return torch.stack(outs, 1).max(1).values

Use it in a spec as ``fusion={"name": MaxFusion, "options": {"size": 64}}`` or by the
``"package.module:MaxFusion"`` path.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from mmcore.batch import Features


class Fusion(nn.Module):
    """Combines the features of several modalities into one ``[B, output_size]`` tensor.

    A subclass writes ``__init__(self, input_sizes, **options)``, calling
    ``super().__init__(input_sizes, output_size)``, and ``forward(self, features)``.

    ``input_sizes`` maps each modality name to its feature size ``D``. ``features`` maps the
    same names to :class:`~mmcore.batch.Features`: ``values`` ``[B, D]`` or ``[B, T, D]``, a
    step ``mask`` for sequences and ``present`` (``[B]`` bool) for samples that lack the
    modality. A fusion must ignore absent modalities and return finite values even when every
    modality of a sample is absent. Iterate modalities in sorted order for determinism.

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
