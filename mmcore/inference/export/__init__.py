"""Exporting a trained run: an inference bundle (graph + preprocessing state + manifest)
that :mod:`mmcore.inference.runtime` runs without the training stack. See ``docs/export.md``."""

from mmcore.inference.export.bundle import export_run
from mmcore.inference.export.writers import ExportError

__all__ = ["ExportError", "export_run"]
