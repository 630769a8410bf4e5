"""Each split of a ``DataModule`` is kept by one store (:mod:`mmcore.data.split_store`): a
prepared Arrow table or a stream, asked for its rows and batches the same way."""

from __future__ import annotations

import pytest

from mmcore.data.memory import MemorySplit
from mmcore.data.split_store import PreparedSplit, StreamedSplit
from mmcore.data.storage import target_key
from mmcore.errors import DataError
from tests import data_toy as toy
from tests.data_toy import setup, table, write_csv
from tests.test_data_streaming import module, write_rows


def test_a_stream_and_an_external_file_are_kept_side_by_side(tmp_path):
    dm = module(tmp_path, {"path": str(write_rows(tmp_path / "d.csv")), "split_column": "split"})
    name = dm.external(write_rows(tmp_path / "more.csv", n=12))
    assert {s: type(dm.store(s)) for s in dm.splits} == {
        "train": StreamedSplit, "validation": StreamedSplit, "test": StreamedSplit,
        name: PreparedSplit}
    assert len(dm.store(name).table()) == dm.num_rows(name) == 12
    for ask in (lambda: dm.store("train").table(), lambda: dm.store("train").class_codes("k")):
        with pytest.raises(DataError, match="split 'train' is streamed"):
            ask()
    with pytest.raises(DataError, match="no split 'nope'; the data has train, validation"):
        dm.num_rows("nope")


def test_a_stream_is_counted_once_and_processed_for_the_columns_it_has(tmp_path, monkeypatch):
    from mmcore.data import streaming

    dm = module(tmp_path, {"path": str(write_rows(tmp_path / "d.csv")), "split_column": "split"})
    counted = []
    count_rows = streaming.count_rows
    monkeypatch.setattr(streaming, "count_rows", lambda ds: counted.append(1) or count_rows(ds))
    assert dm.num_rows("train") == dm.num_rows("train") == 30
    assert counted == [1]

    store = dm.store("train")
    made = []
    processor = store.processor
    store.processor = lambda present: made.append(present) or processor(present)
    batch = next(iter(dm.loader("train", batch_size=4, shuffle=False)))
    assert made == [{"x", "label", "split"}]
    assert list(batch.targets) == ["label"]


def test_a_prepared_split_keeps_what_it_derives(tmp_path, monkeypatch):
    registry = toy.toy_registry()
    data = {"path": str(write_csv(tmp_path / "d.csv", table())), "split_column": "split"}
    held = setup(registry, {**data, "in_memory": True}, tmp_path)
    store = held.store("train")
    assert isinstance(store, PreparedSplit) and store.memory is None  # built on first use
    list(held.loader("train", batch_size=4, shuffle=False))
    memory = store.memory
    assert isinstance(memory, MemorySplit)
    list(held.loader("train", batch_size=4, shuffle=True, epoch=1))
    assert store.memory is memory

    reads = []
    columns = store.table().columns
    monkeypatch.setattr(store.table(), "columns", lambda c: reads.append(c) or columns(c))
    codes = store.class_codes(target_key("label"))
    assert codes.tolist() == [0, 1] * 10
    assert store.class_codes(target_key("label")) is codes and len(reads) == 1

    read = setup(registry, {**data, "in_memory": False}, tmp_path)
    list(read.loader("train", batch_size=4, shuffle=False))
    assert read.store("train").memory is None
