"""Streaming mode (``data.streaming=True``): rows are read lazily from the files and
preprocessed as batches are drawn; nothing is written to the cache.

What differs from the default (map-style) mode:

* Splits: given files/DatasetDict splits as usual; ``data.split_column`` filters each split's
  rows lazily; otherwise each row goes to a split by a seeded hash of its values
  (``data.split.seed``), so the split sizes match ``data.split`` only approximately, are not
  stratified, and identical rows land in the same split (with ``data.split.group_column``
  the hash is of the row's group id, so every group lands whole in one split).
* Fitting: modalities and heads are fitted on the first :data:`FIT_ROWS` rows of the train
  split (a class that first appears later is a bad row: "not one of the classes").
* Order: ``shuffle`` uses ``IterableDataset.shuffle(seed, buffer_size=SHUFFLE_BUFFER)`` with
  ``set_epoch(epoch)``, a pure function of ``(seed, epoch)``, but only a buffer-wide shuffle.
* Sharding: ``datasets.distributed.split_dataset_by_node`` per rank, and again per
  DataLoader worker, before preprocessing, so each process preprocesses only its own rows.
* Bad rows: with ``data.bad_rows="skip"`` bad rows are dropped from their batch (batches can
  be smaller than ``batch_size``); they are handed to the loader's ``report`` (which adds them
  to ``DataModule.bad_rows``) when ``num_workers=0`` and printed to stderr by worker processes
  otherwise. ``BadRow.row`` is the row's position in the stream that process read.
* ``num_rows`` counts the split's raw rows once (bad rows included).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader
from torch.utils.data import IterableDataset as TorchIterableDataset

from mmcore.batch import Batch
from mmcore.collate import collate_batch
from mmcore.data.bad_rows import BadRow
from mmcore.data.loader_plan import LoaderPlan
from mmcore.data.preprocess import Processed, RowProcessor
from mmcore.data.sources import SPLITS, split_name
from mmcore.errors import DataError
from mmcore.spec.model import DataSpec

#: Rows of the train split that modalities and heads are fitted on in streaming mode.
FIT_ROWS = 10_000
#: Rows held in the shuffle buffer.
SHUFFLE_BUFFER = 2_000


def _row_fraction(row: dict[str, Any], seed: int) -> float:
    text = json.dumps(row, sort_keys=True, default=repr)
    digest = hashlib.blake2b(f"{seed}\0{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def split_stream(dataset: datasets.IterableDataset, data: DataSpec) -> dict[str, Any]:
    """Lazily filtered splits of one streamed table."""
    if data.split_column is not None:
        column = data.split_column

        def keep(name: str):
            def predicate(row: dict[str, Any]) -> bool:
                value = row[column]
                got = split_name(str(value)) if value is not None else None
                if got not in SPLITS:
                    raise DataError(
                        f"data.split_column {column!r} has value {value!r}; expected "
                        f"{', '.join(SPLITS)} (or valid/val/dev for validation)"
                    )
                return got == name

            return predicate

        return {name: dataset.filter(keep(name)) for name in SPLITS}
    val, test, seed = data.split.validation, data.split.test, data.split.seed
    bounds = {"validation": (0.0, val), "test": (val, val + test), "train": (val + test, 1.0)}
    group = data.split.group_column

    def key(row: dict[str, Any]) -> dict[str, Any]:
        """What is hashed: the row, or only its group id (so a group lands whole)."""
        if group is None:
            return row
        if row[group] is None:
            raise DataError(
                f"data.split.group_column {group!r} is empty in a row; every row needs a "
                "group id (e.g. a signer or session)"
            )
        return {"group": row[group]}

    def in_split(lo: float, hi: float):
        return lambda row: lo <= _row_fraction(key(row), seed) < hi

    return {name: dataset.filter(in_split(*bounds[name])) for name in SPLITS if
            bounds[name][1] > bounds[name][0]}


def first_rows(dataset: datasets.IterableDataset, columns: Sequence[str]) -> dict[str, list]:
    """The values of ``columns`` in the first :data:`FIT_ROWS` rows."""
    out: dict[str, list] = {c: [] for c in columns}
    if not columns:
        return out
    for row in dataset.take(FIT_ROWS):
        for c in columns:
            out[c].append(row[c])
    return out


def count_rows(dataset: datasets.IterableDataset) -> int:
    return sum(len(next(iter(b.values()))) for b in dataset.iter(batch_size=1000))


class StreamBatches(TorchIterableDataset):
    """Batches of one streamed split for one rank; preprocessing happens while iterating.

    ``processor`` preprocesses the rows (its modalities collate them); ``report`` is called
    with each bad row skipped in this process, while a DataLoader worker prints them.
    ``plan`` orders the batches, from its ``epoch`` until :meth:`set_epoch` changes it.
    """

    def __init__(
        self,
        dataset: datasets.IterableDataset,
        processor: RowProcessor,
        report: Callable[[BadRow], None],
        plan: LoaderPlan,
    ) -> None:
        self.dataset = dataset
        self.processor = processor
        self.report = report
        self.plan = plan
        self.epoch = plan.epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _stream(self) -> datasets.IterableDataset:
        ds = self.dataset
        plan = self.plan
        if plan.shuffle:
            ds = ds.shuffle(seed=plan.seed, buffer_size=SHUFFLE_BUFFER)
            ds.set_epoch(self.epoch)
        if plan.world_size > 1:
            ds = split_dataset_by_node(ds, rank=plan.rank, world_size=plan.world_size)
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.num_workers > 1:
            ds = split_dataset_by_node(ds, rank=worker.id, world_size=worker.num_workers)
        return ds

    def __iter__(self) -> Iterator[Batch]:
        in_worker = torch.utils.data.get_worker_info() is not None
        modalities = self.processor.modalities
        heads = [t.name for t in self.processor.targets]
        seen = 0
        plan = self.plan
        skip = plan.start_batch  # resuming mid-epoch: a stream cannot seek; read and drop
        for raw in self._stream().iter(batch_size=plan.batch_size, drop_last_batch=plan.drop_last):
            n = len(next(iter(raw.values())))
            rows = list(range(seen, seen + n))
            seen += n
            result = self.processor.process(raw, rows)
            keep = self._good_rows(result, rows, in_worker)
            if not keep:
                continue
            if skip:
                skip -= 1
                continue
            batch = collate_batch(
                modalities,
                {name: [result.inputs[name][i] for i in keep] for name in modalities},
                {name: [result.targets[name][i] for i in keep] for name in heads},
                [rows[i] for i in keep],
            )
            yield batch

    def _good_rows(self, result: Processed, rows: list[int], in_worker: bool) -> list[int]:
        """The positions in ``result`` of its good rows; the bad ones are reported."""
        errors = self.processor.final_errors(result)
        for i, error in enumerate(errors):
            if error is not None:
                bad = self.processor.bad_row(rows[i], *error)
                if in_worker:
                    print(f"mmcore: skipped bad row: {bad.describe()}", file=sys.stderr)
                else:
                    self.report(bad)
        return [i for i, e in enumerate(errors) if e is None]


def stream_loader(
    dataset: datasets.IterableDataset,
    root: Path | None,
    processor: RowProcessor,
    report: Callable[[BadRow], None],
    plan: LoaderPlan,
) -> DataLoader | SkipBatches:
    """A ``DataLoader`` over :class:`StreamBatches` (its ``dataset.set_epoch`` re-seeds it)
    of one split's rows (``dataset``) preprocessed by ``processor``, relative paths in them
    resolved against ``root``; ``report`` takes the bad rows skipped in this process."""
    if root is not None:
        # the processor holds the modalities; give them this split's root for its lifetime
        processor.modalities = {
            name: m.with_root(root) for name, m in processor.modalities.items()
        }
    # Several workers split the stream and the loader takes their batches in turn, starting
    # with worker 0 whatever the position: their skipping would reorder the batches, so the
    # loader's own output is skipped instead.
    in_workers = plan.num_workers > 1 and plan.start_batch > 0
    batches = StreamBatches(dataset, processor, report,
                            replace(plan, start_batch=0) if in_workers else plan)
    loader = DataLoader(batches, batch_size=None, num_workers=plan.num_workers,
                        pin_memory=plan.pin_memory)
    return SkipBatches(loader, plan.start_batch) if in_workers else loader


class SkipBatches:
    """A loader's batches after its first ``skip`` (read and dropped in order)."""

    def __init__(self, loader: DataLoader, skip: int) -> None:
        self.loader = loader
        self.skip = skip

    def __iter__(self) -> Iterator[Batch]:
        return itertools.islice(iter(self.loader), self.skip, None)

