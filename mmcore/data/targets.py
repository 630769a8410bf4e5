"""The spec's heads as the data layer sees them: each head's target column and target side
(:func:`mmcore.heads.targets.head_targets`: a built-in head's without torch), which heads fit
something on the train split, and which one stratified splits and the balanced sampler go by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmcore.data.preprocess import TargetSpec
from mmcore.errors import DataError
from mmcore.heads.targets import HeadTargets, head_targets
from mmcore.plugins.registry import Registry
from mmcore.spec.model import Spec


class Targets:
    """The heads of ``spec``, their kinds looked up in ``registry`` (a plugin's head class is
    imported here).

    Attributes:
        sides: head name -> its target side (``fit_targets``, ``encode_targets``,
            ``categorical``).
    """

    def __init__(self, spec: Spec, registry: Registry) -> None:
        self.spec = spec
        self.registry = registry
        self.sides: dict[str, type[HeadTargets]] = {
            name: head_targets(registry.get("head", head.kind))
            for name, head in spec.heads.items()
        }

    def specs(
        self, head_options: Mapping[str, dict[str, Any]], present: set[str] | None = None
    ) -> list[TargetSpec]:
        """What preprocessing encodes: one :class:`TargetSpec` per head with its options
        (``head_options``), for the heads whose target column is in ``present`` (``None``:
        every head)."""
        # the head class itself (imported now): its name is part of the cache key
        return [
            TargetSpec(name, head.target, self.registry.get("head", head.kind).load(),
                       head_options[name])
            for name, head in self.spec.heads.items()
            if present is None or head.target in present
        ]

    def fitted(self) -> list[str]:
        """The heads that fit something on the train split's targets (e.g. their classes)."""
        return [n for n in self.spec.heads
                if self.sides[n].fit_targets is not HeadTargets.fit_targets]

    def categorical(self) -> str | None:
        """The first categorical head (``Head.categorical``): stratified splits and the
        balanced sampler go by its target."""
        for name in self.spec.heads:
            if getattr(self.sides[name], "categorical", False):
                return name
        return None

    def balanced_by(self) -> str:
        """The head the balanced sampler (``train.sampler="balanced"``) balances by; a
        :class:`DataError` unless there is one to use."""
        if self.spec.data.streaming:
            raise DataError(
                "train.sampler='balanced' needs the whole train split prepared up front; it "
                "does not work with data.streaming=True (use train.sampler='shuffle')"
            )
        name = self.categorical()
        if name is None:
            raise DataError(
                "train.sampler='balanced' balances by the first classification head's target, "
                f"but no head is a classification head (heads: {', '.join(self.spec.heads)})"
            )
        return name
