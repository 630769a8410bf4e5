"""``mmcore.data.tables.FileTable``: the columns ``mmcore validate`` reads without ``datasets``
are the columns training reads through it (same names, types and values), and a file it
cannot read is refused with the error training gives."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmcore.data.sources import load_path
from mmcore.data.tables import FileTable, open_table
from mmcore.errors import DataError

#: cells pandas (datasets' csv reader) types in different ways: whole numbers, whole numbers
#: with a gap, decimals, booleans (also with a gap), pandas' missing-value markers, text, a
#: duplicated and an unnamed header, numbers with signs and spaces, a quoted line break
TRICKY = (
    "i,gap,f,b,na,s,dup,dup,,signed,bgap\n"
    "1,1,1.5,True,NA,x,1,a,p,+3,True\n"
    '2,,2,false,null,"two\nlines",2,b,q,-4,\n'
    "3,3,inf,TRUE,None,n/a,3,c,r, 5,false\n"
    "007,4,1e3,False,,z,4,d,s,6,TRUE\n"
)


def read_by_datasets(path: Path, tmp_path: Path) -> datasets.Dataset:
    loaded = load_path(path, "auto", tmp_path / "cache", streaming=False)
    assert isinstance(loaded, datasets.Dataset)
    return loaded


@pytest.mark.parametrize("name", ["rows.csv", "rows.tsv"])
def test_csv_columns_read_as_datasets_reads_them(tmp_path, name):
    text = TRICKY.replace(",", "\t") if name.endswith(".tsv") else TRICKY
    path = tmp_path / name
    path.write_text(text)
    table = open_table(path, "csv")
    expected = read_by_datasets(path, tmp_path)
    assert table is not None
    assert table.column_names == expected.column_names
    assert len(table) == len(expected) == 4
    arrow = expected.with_format("arrow")
    for column in expected.column_names:
        mine, theirs = table.with_format("arrow")[column], arrow[column]
        assert mine.to_pylist() == theirs.to_pylist(), column
        kind = "string" if pa.types.is_large_string(theirs.type) else str(theirs.type)
        assert str(mine.type) == kind, column


def test_rows_and_columns_select_as_in_datasets(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(TRICKY)
    table, expected = open_table(path, "csv"), read_by_datasets(path, tmp_path)
    assert table is not None
    rows = np.array([3, 1])
    mine = table.select(rows).select_columns(["s", "i"]).with_format("arrow")[:]
    theirs = expected.select(rows).select_columns(["s", "i"]).with_format("arrow")[:]
    assert mine.column_names == ["s", "i"]
    assert mine.to_pydict() == theirs.to_pydict()
    assert len(table.select(rows).select([1])) == 1
    assert table.select(rows).select([1])["i"].to_pylist() == [2]


def test_parquet_reads_the_footer_then_only_the_columns_asked_for(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3], "label": ["a", None, "c"]}), path)
    table = open_table(path, "parquet")
    assert table is not None
    assert table.column_names == ["x", "label"] and len(table) == 3
    assert table["label"].to_pylist() == ["a", None, "c"]
    assert table.with_format("arrow")[:].to_pydict() == (
        read_by_datasets(path, tmp_path).with_format("arrow")[:].to_pydict())


@pytest.mark.parametrize("text", ["", "a,b\n", "a,b\n1,2\n3,4,5\n"])
def test_an_unreadable_csv_gives_the_error_training_gives(tmp_path, text):
    path = tmp_path / "rows.csv"
    path.write_text(text)
    with pytest.raises(DataError) as theirs:
        read_by_datasets(path, tmp_path)
    with pytest.raises(DataError) as mine:
        table = open_table(path, "csv")
        assert table is not None
        table["a"]  # a bad row past the header shows when a column is read
    assert str(mine.value) == str(theirs.value)


def test_formats_only_datasets_reads_are_left_to_it(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"x": 1}\n')
    assert open_table(tmp_path / "rows.jsonl", "json") is None
    loaded = load_path(tmp_path / "rows.jsonl", "auto", None, streaming=False, schema_only=True)
    assert isinstance(loaded, datasets.Dataset)


def test_a_folder_of_labelled_files_needs_no_datasets(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / "train" / label).mkdir(parents=True)
        (tmp_path / "train" / label / "1.png").write_bytes(b"")
    splits = load_path(tmp_path, "imagefolder", None, streaming=False, schema_only=True)
    assert isinstance(splits, dict) and list(splits) == ["train"]
    loaded = splits["train"]
    assert isinstance(loaded, FileTable)
    assert loaded["label"].to_pylist() == ["cat", "dog"]
    assert loaded["image"].to_pylist() == ["train/cat/1.png", "train/dog/1.png"]


def test_only_arrow_format_and_whole_slices(tmp_path):
    table = FileTable.from_arrow(pa.table({"x": [1, 2]}))
    with pytest.raises(ValueError, match="Arrow only"):
        table.with_format("numpy")
    with pytest.raises(TypeError):
        table[0:1]
    with pytest.raises(KeyError):
        table["y"]


def test_numpy_and_arrow_without_pandas() -> None:
    # as_numpy/as_arrow give what to_numpy/pa.array give; the rows are those of the view
    from mmcore.data.tables import as_arrow, as_numpy

    chunked = pa.chunked_array([pa.array([4, 5, 6], pa.int32()), pa.array([7], pa.int32())])
    assert as_numpy(chunked).tolist() == [4, 5, 6, 7]
    assert as_numpy(chunked.combine_chunks().slice(1, 2)).tolist() == [5, 6]
    assert as_numpy(pa.chunked_array([], pa.int64())).tolist() == []
    picked = as_arrow(np.arange(10)[::3])
    assert picked.type == pa.int64() and picked.to_pylist() == [0, 3, 6, 9]
