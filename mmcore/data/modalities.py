"""The spec's modalities as objects (:func:`build_modalities`), without importing torch:
a modality's options and its :meth:`~mmcore.modality.Modality.check` are all that
``mmcore validate`` needs of it, so neither this module nor :mod:`mmcore.modality` imports a
model (a plugin's modality class may; the built-in plugins import torch when they collate)."""

from __future__ import annotations

from pathlib import Path

from mmcore.modality import Modality
from mmcore.plugins.default import get_registry
from mmcore.plugins.registry import Registry
from mmcore.spec.model import Spec
from mmcore.spec.options import implementation_model, validated


def build_modalities(spec: Spec, registry: Registry | None = None) -> dict[str, Modality]:
    """A :class:`Modality` instance per declared modality: ``cls(name, options, root=)``
    with the options validated by its registered options model (:mod:`mmcore.spec.options`).

    Raises :class:`PluginError` for an unknown plugin and :class:`SpecError` for options
    the model refuses."""
    registry = registry or get_registry()
    root = _data_root(spec)
    out: dict[str, Modality] = {}
    for name, mod in spec.modalities.items():
        reg = registry.get("modality", mod.plugin_name)
        cls = reg.load()
        options = validated(implementation_model(reg, cls), mod.options,
                            source=spec.source, path=f"modalities.{name}.options")
        out[name] = cls(name, options, root=root)
        out[name].columns = list(mod.columns)
    return out


def _data_root(spec: Spec) -> Path | None:
    """Folder that relative paths inside the data resolve against."""
    base = Path(spec.base_dir) if spec.base_dir else Path.cwd()
    if spec.data.root:
        return base / spec.data.root
    first = spec.data.path or spec.data.train
    if first is None:  # data given as a datasets object: paths in it are relative to the spec
        return Path(spec.base_dir) if spec.base_dir else None
    path = base / first
    return path if path.is_dir() else path.parent
