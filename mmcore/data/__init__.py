"""The data layer: local files or a ``datasets`` object -> splits -> preprocessed, cached
Arrow tables -> batches (:class:`mmcore.batch.Batch`). See ``docs/data.md``.

:class:`DataModule` is imported on first use, so importing one of this package's modules
(e.g. :mod:`mmcore.data.modalities`) does not import the whole data layer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mmcore.data.bad_rows import BadRow

if TYPE_CHECKING:
    from mmcore.data.module import DataModule

__all__ = ["BadRow", "DataModule"]


def __getattr__(name: str) -> Any:
    if name == "DataModule":
        from mmcore.data.module import DataModule

        return DataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
