"""What ``data.dataset`` accepts from Python: ``datasets`` tables, pandas DataFrames (made
into ``datasets.Dataset``), and the stand-in for a run's in-memory dataset read back from its
folder. Imports neither ``datasets`` nor pandas unless the value is one of theirs."""

from __future__ import annotations

import sys
from typing import Any

_DATASET_ACCEPTED = (
    "a datasets.Dataset, IterableDataset or DatasetDict, a pandas DataFrame, or a dict of them "
    "by split (train/validation/test)"
)


class NotSaved:
    """Stands in for the in-memory ``data.dataset`` of a run read back from its folder (the
    rows are not saved with the run)."""

    def __repr__(self) -> str:
        return "<in-memory dataset, not saved>"


#: the one :class:`NotSaved`
NOT_SAVED = NotSaved()


def is_datasets_object(value: Any) -> bool:
    """Whether ``value`` is one of ``datasets``' tables (without importing ``datasets``: an
    object of its classes means it is imported already)."""
    module = sys.modules.get("datasets")
    if module is None:
        return False
    return isinstance(value, module.Dataset | module.IterableDataset | module.DatasetDict
                      | module.IterableDatasetDict)


def dataset_table(value: Any, where: str) -> Any:
    if is_datasets_object(value) or isinstance(value, NotSaved):
        return value
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        import datasets

        # pandas' index is a row label, not data: it is dropped
        return datasets.Dataset.from_pandas(value, preserve_index=False)
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    raise ValueError(f"{f'data.dataset{where}: ' if where else ''}a value of type {kind} is not a "
                     f"table mmcore reads; data.dataset takes {_DATASET_ACCEPTED}")
