"""Exporting a trained run: an inference bundle (graph + preprocessing state + manifest)
that :mod:`mmcore.runtime` runs without the training stack. See ``docs/export.md``."""

from mmcore.export.bundle import ExportError, export_run

__all__ = ["ExportError", "export_run"]
