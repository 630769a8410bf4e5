"""The data layer: local files or a ``datasets`` object -> splits -> preprocessed, cached
Arrow tables -> batches (:class:`mmcore.batch.Batch`). See ``docs/data.md``."""

from mmcore.data.bad_rows import BadRow
from mmcore.data.module import DataModule

__all__ = ["BadRow", "DataModule"]
