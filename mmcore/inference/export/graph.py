"""The model as a graph of plain tensors: what ``torch.export`` and ONNX see.

:class:`GraphModel` takes every modality's :class:`~mmcore.batch.ModalityBatch` as flat
tensors in a fixed order (:class:`InputLayout`) and returns each head's raw output in a
fixed order, so an exported graph needs no mmcore types at run time. Batches are rebuilt
with ``full=False``: the encoders then take their masked path, whose graph does not depend
on the data (no "is every row present?" branch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from mmcore.batch import ModalityBatch

if TYPE_CHECKING:
    from mmcore.model import MultimodalModel


@dataclass(frozen=True)
class InputSlot:
    """One graph input: modality ``modality``'s ``field`` (``values``, ``present``, ``mask``
    or ``extra``; ``key`` names the extra tensor)."""

    modality: str
    field: str
    key: str | None = None

    @property
    def name(self) -> str:
        """The graph input's name: ``image.values``, ``text.extra.offsets``."""
        return ".".join(p for p in (self.modality, self.field, self.key) if p)


@dataclass(frozen=True)
class InputLayout:
    """The graph's inputs, in order, read from one collated batch of every modality."""

    slots: tuple[InputSlot, ...]

    @classmethod
    def of(cls, inputs: Mapping[str, ModalityBatch]) -> InputLayout:
        slots: list[InputSlot] = []
        for name in sorted(inputs):
            batch = inputs[name]
            slots += [InputSlot(name, "values"), InputSlot(name, "present")]
            if batch.mask is not None:
                slots.append(InputSlot(name, "mask"))
            slots += [InputSlot(name, "extra", key) for key in sorted(batch.extra)]
        return cls(tuple(slots))

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.slots]

    def flatten(self, inputs: Mapping[str, ModalityBatch]) -> tuple[Tensor, ...]:
        """The batch as the graph's input tensors; raises ``ValueError`` when a modality's
        batch lacks a tensor the layout has (or has one it lacks)."""
        if self != InputLayout.of(inputs):
            raise ValueError(
                f"the batch's tensors ({', '.join(InputLayout.of(inputs).names)}) are not the "
                f"graph's inputs ({', '.join(self.names)})"
            )
        out = []
        for slot in self.slots:
            batch = inputs[slot.modality]
            out.append(batch.extra[slot.key] if slot.key else getattr(batch, slot.field))
        return tuple(out)

    def unflatten(self, tensors: tuple[Tensor, ...]) -> dict[str, ModalityBatch]:
        parts: dict[str, dict] = {}
        for slot, tensor in zip(self.slots, tensors, strict=True):
            fields = parts.setdefault(slot.modality, {"extra": {}})
            if slot.key:
                fields["extra"][slot.key] = tensor
            else:
                fields[slot.field] = tensor
        return {name: ModalityBatch(full=False, **fields) for name, fields in parts.items()}


class GraphModel(nn.Module):
    """``model`` with flat tensor inputs (``layout``) and a tuple of head outputs, in
    ``heads`` order (default: the model's)."""

    def __init__(self, model: MultimodalModel, layout: InputLayout,
                 heads: list[str] | None = None) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        self.heads = list(heads or model.heads)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(self.layout.unflatten(tensors))
        return tuple(outputs[name] for name in self.heads)
