"""The spec's modalities as objects (:func:`build_modalities`), without importing torch:
a modality's options and its :meth:`~mmcore.modality.Modality.check` are all that
``mmcore validate`` needs of it, so neither this module nor :mod:`mmcore.modality` imports a
model (a plugin's modality class may; the built-in plugins import torch when they collate)."""

from __future__ import annotations

from mmcore.modality import Modality, new_modality
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.spec.model import Spec
from mmcore.spec.options import implementation_model, validated
from mmcore.spec.roots import data_root


def build_modalities(spec: Spec, registry: Registry | None = None) -> dict[str, Modality]:
    """A :class:`Modality` instance per declared modality, ``cls(name, options, root=,
    columns=)`` (:func:`~mmcore.modality.new_modality`): the options validated by its
    registered options model (:mod:`mmcore.spec.options`), the root the training table's
    (:func:`~mmcore.spec.roots.data_root`), the columns the spec's.

    Raises :class:`PluginError` for an unknown plugin and :class:`SpecError` for options
    the model refuses."""
    registry = registry or get_registry()
    root = data_root(spec)
    out: dict[str, Modality] = {}
    for name, mod in spec.modalities.items():
        reg = registry.get("modality", mod.plugin_name)
        cls = reg.load()
        options = validated(implementation_model(reg, cls), mod.options,
                            source=spec.source, path=f"modalities.{name}.options")
        out[name] = new_modality(cls, name, options, root=root, columns=mod.columns)
    return out

