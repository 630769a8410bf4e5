"""Model assembly: an encoder per modality, one fusion, one head per target; k such models
averaged (``train.ensemble``, :class:`EnsembleModel`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, cast, overload

import torch
from torch import Tensor, nn

from mmcore.batch import Features, ModalityBatch
from mmcore.data.modalities import build_modalities
from mmcore.encoder import Encoder
from mmcore.errors import PluginError, SpecError
from mmcore.fusion import Fusion, PerModalityFusion
from mmcore.head import Head
from mmcore.modality import Modality
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.spec.load import data_fusion_class, fusion_options_model, unchecked_data
from mmcore.spec.model import Spec
from mmcore.spec.modules import resolve_fusion_class
from mmcore.spec.options import implementation_model, keyword_arguments, validated


class MultimodalModel(nn.Module):
    """``encoders`` -> ``fusion`` -> ``heads``, trained end to end.

    ``forward`` takes ``{modality: ModalityBatch}`` and returns ``{head: output}``: the encoders'
    features, fused into one ``[B, fusion.output_size]`` representation that every head reads.
    A fusion of predictions (:class:`~mmcore.fusion.PerModalityFusion`) is another composition,
    :class:`LateFusionModel`; :func:`compose_model` picks the one a fusion needs.

    Both keep their parts under the same names (``encoders.<modality>``, ``fusion``,
    ``heads.<head>``), so a state dict does not depend on the composition.
    """

    def __init__(
        self, encoders: Mapping[str, Encoder], fusion: Fusion, heads: Mapping[str, Head]
    ) -> None:
        super().__init__()
        self._check_fusion(fusion)
        self.encoders = nn.ModuleDict(dict(sorted(encoders.items())))
        self.fusion = fusion
        self.heads = nn.ModuleDict(dict(heads))
        #: encoders kept fixed (``modalities.<m>.freeze``): eval mode, run without gradients
        self.frozen: frozenset[str] = frozenset()

    @staticmethod
    def _check_fusion(fusion: Fusion) -> None:
        # refused here rather than failing inside the first head with a dict for a tensor
        if isinstance(fusion, PerModalityFusion):
            raise TypeError(
                f"{type(fusion).__name__} is a PerModalityFusion (late fusion): compose it as "
                "LateFusionModel (mmcore.model.compose_model chooses the composition)"
            )

    def train(self, mode: bool = True) -> MultimodalModel:
        super().train(mode)
        for name in self.frozen:
            self.encoders[name].train(False)
        return self

    def encode(self, inputs: Mapping[str, ModalityBatch]) -> dict[str, Features]:
        if not self.frozen:
            return {name: enc(inputs[name]) for name, enc in self.encoders.items()}
        out = {}
        for name, enc in self.encoders.items():
            if name in self.frozen:
                with torch.no_grad():
                    out[name] = enc(inputs[name])
            else:
                out[name] = enc(inputs[name])
        return out

    @overload
    def forward(self, inputs: Mapping[str, ModalityBatch],
                alone: Literal[False] = False) -> dict[str, Tensor]: ...

    @overload
    def forward(self, inputs: Mapping[str, ModalityBatch],
                alone: Literal[True]) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]: ...

    @overload
    def forward(self, inputs: Mapping[str, ModalityBatch], alone: bool = False, *,
                kept: Sequence[Collection[str]]) -> list[dict[str, Tensor]]: ...

    def forward(self, inputs: Mapping[str, ModalityBatch], alone: bool = False, *,
                kept: Sequence[Collection[str]] | None = None) -> Any:
        """``{head: output}``; with ``alone`` also each modality's outputs with the others
        hidden, ``({head: output}, {modality: {head: output}})`` (``train.modality_loss``);
        with ``kept`` (groups of modality names) the list of the outputs with only each
        group's modalities kept (the modality and robustness reports).

        The encoders run once in every case: a hidden modality's features are
        :meth:`Features.absent`, which is what its encoder gives for a hidden input.
        """
        features = self.encode(inputs)
        if kept is not None:
            return [self.predict_features(keep_only(features, group)) for group in kept]
        outputs = self.predict_features(features)
        if not alone:
            return outputs
        return outputs, {m: self.predict_features(keep_only(features, {m})) for m in features}

    def predict_features(self, features: Mapping[str, Features]) -> dict[str, Tensor]:
        """The fusion and the heads: ``{head: output}`` from the encoders' features."""
        fused = self.fusion(features)
        return {name: head(fused) for name, head in self.heads.items()}


def keep_only(features: Mapping[str, Features], group: Collection[str]) -> dict[str, Features]:
    """``features`` with every modality outside ``group`` made absent (as hiding its input
    would make it)."""
    return {m: f if m in group else f.absent() for m, f in features.items()}


class LateFusionModel(MultimodalModel):
    """Late fusion as a model: each head predicts from each modality alone, and the fusion
    merges those predictions.

    ``fusion`` is a :class:`~mmcore.fusion.PerModalityFusion`: its ``forward`` gives one
    representation ``[B, fusion.output_size]`` per modality, every head runs on each, and
    ``fusion.combine`` merges one head's ``{modality: output}`` over the modalities present in
    each row. ``forward`` returns ``{head: output}`` as :class:`MultimodalModel` does, and the
    parts have the same names, so checkpoints, export and prediction treat both alike.
    """

    fusion: PerModalityFusion

    @staticmethod
    def _check_fusion(fusion: Fusion) -> None:
        if not isinstance(fusion, PerModalityFusion):
            raise TypeError(
                f"LateFusionModel needs a PerModalityFusion, got {type(fusion).__name__} (a "
                "fusion giving one representation composes as MultimodalModel)"
            )

    def predict_features(self, features: Mapping[str, Features]) -> dict[str, Tensor]:
        per_modality = self.fusion(features)
        return {
            name: self.fusion.combine({m: head(z) for m, z in per_modality.items()}, features)
            for name, head in self.heads.items()
        }


class EnsembleModel(MultimodalModel):
    """``members`` (k models of the same spec) averaged: ``forward`` returns ``{head: output}``
    like one model. Its ``encoders``, ``fusion`` and ``heads`` are the first member's (for
    reading: every member has the same classes and sizes); its weights are saved as
    ``members.<i>.<name>``."""

    def __init__(self, members: Sequence[MultimodalModel]) -> None:
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        nn.Module.__init__(self)
        self.members = nn.ModuleList(members)

    @property
    def first(self) -> MultimodalModel:
        """The first member: its parts stand for every member's."""
        return cast(MultimodalModel, self.members[0])

    @property
    def encoders(self) -> nn.ModuleDict:  # type: ignore[override]
        return self.first.encoders

    @property
    def fusion(self) -> Any:  # type: ignore[override]
        return self.first.fusion

    @property
    def heads(self) -> nn.ModuleDict:  # type: ignore[override]
        return self.first.heads

    @property
    def frozen(self) -> frozenset[str]:  # type: ignore[override]
        return self.first.frozen

    @frozen.setter
    def frozen(self, names: frozenset[str]) -> None:
        for member in self.members:
            cast(MultimodalModel, member).frozen = frozenset(names)

    def parts(self) -> list[MultimodalModel]:
        """The members, each trained on its own loss."""
        return [cast(MultimodalModel, m) for m in self.members]

    def forward(self, inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]],  # type: ignore[override]
                alone: bool = False, members: bool = False, *,
                kept: Sequence[Collection[str]] | None = None) -> Any:
        """The members' outputs averaged, as :meth:`MultimodalModel.forward` gives them
        (``alone`` too); with ``members``, the list of each member's outputs unaveraged (what
        training needs: one loss per member), and ``inputs`` may be a list of one batch per
        member (each member's own order of the training split). ``kept``: the averaged
        outputs per group, as :meth:`MultimodalModel.forward` gives them."""
        if kept is not None:
            per_member = [member(inputs, kept=kept) for member in self.members]
            return [self.average([outputs[i] for outputs in per_member])
                    for i in range(len(kept))]
        if isinstance(inputs, Sequence):
            if not members or len(inputs) != len(self.members):
                raise ValueError(f"{len(inputs)} batches for {len(self.members)} members: one "
                                 "batch per member is for training (members=True)")
            own = list(inputs)
        else:
            own = [inputs] * len(self.members)
        results = [member(x, alone=True) if alone else member(x)
                   for member, x in zip(self.members, own, strict=True)]
        if members:
            return results
        if not alone:
            return self.average(results)
        fused = self.average([r[0] for r in results])
        return fused, {m: self.average([r[1][m] for r in results]) for m in results[0][1]}

    def average(self, outputs: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
        """``{head: output}`` from each member's, averaged by the head (:meth:`Head.average`)."""
        return {name: cast(Head, head).average([o[name] for o in outputs])
                for name, head in self.heads.items()}

    def encode(self, inputs: Any) -> Any:
        raise TypeError("an ensemble has one set of encoders per member: encode with "
                        "model.members[i].encode")

    def predict_features(self, features: Any) -> Any:
        raise TypeError("an ensemble has one set of encoders per member: use "
                        "model.members[i].predict_features")


def compose_model(
    encoders: Mapping[str, Encoder], fusion: Fusion, heads: Mapping[str, Head]
) -> MultimodalModel:
    """The model composition ``fusion`` needs: :class:`LateFusionModel` for a
    :class:`~mmcore.fusion.PerModalityFusion` (late fusion), :class:`MultimodalModel` for
    every other fusion. The choice is made here, once, when the model is assembled."""
    if getattr(fusion, "late", False) and not isinstance(fusion, PerModalityFusion):
        # the flag older versions read, read by nothing now: say so rather than fail later
        raise PluginError(
            f"fusion {type(fusion).__qualname__} sets late = True, which mmcore no longer "
            "reads: a late fusion subclasses mmcore.PerModalityFusion (forward returns one "
            "tensor per modality, combine merges the heads' outputs); see docs/fusion.md"
        )
    composition = LateFusionModel if isinstance(fusion, PerModalityFusion) else MultimodalModel
    return composition(encoders, fusion, heads)


def build_fusion(
    spec: Spec,
    input_sizes: Mapping[str, int],
    registry: Registry,
    fusion_class: type | None = None,
) -> Fusion:
    """The spec's fusion, ``cls(input_sizes, **options)`` with its options validated by its
    one options model (:func:`mmcore.spec.load.fusion_options_model`).

    ``fusion_class`` (already resolved and checked, as :func:`mmcore.load` does for a run
    folder) replaces the lookup of ``fusion.name``. Raises :class:`SpecError` (field
    ``fusion.options``) for options refused, one by one or together (e.g. ``film.condition``
    naming no modality: the fusion's ``ValueError``)."""
    name = spec.fusion.name
    if fusion_class is None and isinstance(name, str) and ":" not in name:
        reg = registry.get("fusion", name)
        cls = reg.load()
        model = implementation_model(reg, cls)
    else:
        if fusion_class is None and unchecked_data(spec):  # spec_from_json's: data, see trust
            fusion_class = data_fusion_class(spec, registry, trust_code=False)
        cls = fusion_class or resolve_fusion_class(name, spec.base_dir)
        model = fusion_options_model(name, registry, spec.base_dir, fusion_class=cls)
    options = validated(model, spec.fusion.options, source=spec.source, path="fusion.options")
    try:
        return cls(dict(input_sizes), **keyword_arguments(options))
    except ValueError as exc:  # options valid one by one but not together (e.g. film.condition)
        raise SpecError(spec.source, [("fusion.options", str(exc))]) from None


def build_model(
    spec: Spec,
    modalities: Mapping[str, Modality] | None = None,
    registry: Registry | None = None,
    *,
    fusion_class: type | None = None,
) -> MultimodalModel:
    """Build the whole model a spec declares (``fusion_class``: see :func:`build_fusion`):
    a :class:`MultimodalModel`, or a :class:`LateFusionModel` for a late fusion
    (:func:`compose_model`); with ``train.ensemble`` k > 1, an
    :class:`EnsembleModel` of k of them (built one after another, so each
    draws its own initial weights).

    Heads whose targets need fitted state (classification classes) need it in their options:
    the trainer fills it in from the training split; give it yourself when building by hand.
    """
    registry = registry or get_registry()
    modalities = modalities or build_modalities(spec, registry)
    if spec.train.ensemble > 1:
        return EnsembleModel([_build_one(spec, modalities, registry, fusion_class)
                              for _ in range(spec.train.ensemble)])
    return _build_one(spec, modalities, registry, fusion_class)


def _build_one(spec: Spec, modalities: Mapping[str, Modality], registry: Registry,
               fusion_class: type | None) -> MultimodalModel:
    encoders = {name: m.build_encoder() for name, m in modalities.items()}
    sizes = {n: e.output_size for n, e in encoders.items()}
    fusion = build_fusion(spec, sizes, registry, fusion_class)
    heads: dict[str, Head] = {}
    for name, head in spec.heads.items():
        reg = registry.get("head", head.kind)
        cls = reg.load()
        path = f"heads.{name}.options"
        options = validated(implementation_model(reg, cls), head.options,
                            source=spec.source, path=path)
        try:
            heads[name] = cls(fusion.output_size, head.target, **keyword_arguments(options))
        except ValueError as exc:  # e.g. classes not fitted yet
            raise SpecError(spec.source, [(path, str(exc))]) from None
    return compose_model(encoders, fusion, heads)


def check_encoders(
    model: MultimodalModel, inputs: Mapping[str, ModalityBatch], spec: Spec | None = None
) -> None:
    """Run each encoder once on a real collated batch (eval mode, no gradients) and check
    that its :class:`Features` match what it declares: the feature size ``output_size``
    (the fusion is built for it) and the shape kind (``[B, D]`` pooled or ``[B, T, D]`` when
    ``sequence``). The model's mode and the CPU random state are left as they were.

    Raises :class:`PluginError` naming the modality, its plugin (from ``spec``) and encoder
    class, and the declared and actual sizes; unchecked, a mismatch only shows up as a raw
    shape error inside the fusion at the first training step.
    """
    problems: list[str] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for name, encoder in model.encoders.items():
                if name not in inputs:
                    continue
                # a ModuleDict's items are typed as Module; these are the modalities' Encoders
                problem = _features_problem(cast(Encoder, encoder), encoder(inputs[name]))
                if problem is None:
                    continue
                who = f"modality {name!r}"
                if spec is not None and name in spec.modalities:
                    who += f" (plugin {spec.modalities[name].plugin_name!r})"
                cls = type(encoder)
                problems.append(f"{who}: encoder {cls.__module__}.{cls.__qualname__} {problem}")
    finally:
        model.train(was_training)
    if problems:
        where = f"{spec.source}: " if spec is not None else ""
        raise PluginError(
            f"{where}an encoder's output does not match what it declares (checked on one "
            "batch before training):\n  " + "\n  ".join(problems) + "\nAn encoder must "
            "call super().__init__(output_size, sequence=...) with the feature size and kind "
            "its forward returns; fix the plugin's encoder (or the options that size it)"
        )


def _features_problem(encoder: Encoder, out: object) -> str | None:
    if not isinstance(out, Features):
        return f"returned {type(out).__name__}, expected mmcore.Features"
    kind = "sequence [B, T, D]" if encoder.sequence else "pooled [B, D]"
    if out.values.dim() not in (2, 3):
        return f"declares {kind} features but returned values of shape {list(out.values.shape)}"
    if out.is_sequence != encoder.sequence:
        actual = "sequence" if out.is_sequence else "pooled"
        return (f"declares {kind} features (sequence={encoder.sequence}) but returned "
                f"{actual} values of shape {list(out.values.shape)}")
    if out.size != encoder.output_size:
        return (f"declares output_size={encoder.output_size} but returned features of size "
                f"{out.size} (values of shape {list(out.values.shape)})")
    return None
