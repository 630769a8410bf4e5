"""Local csv/tsv and parquet tables read column by column, without ``datasets``.

``mmcore validate`` needs a table's column names, its row count and the few columns its checks
read (the split column, a group column, the targets); reading the whole table through
``datasets`` (and importing it) costs more than the checks. A :class:`FileTable` reads those
with pyarrow alone: a csv file's header, then only the columns asked for; a parquet file's
schema and row count from its footer.

Cells are typed as ``datasets`` types them (it reads csv with pandas): the empty cell and
pandas' other missing-value markers are nulls, a column of whole numbers is ``int64`` (or
``float64`` when a cell is missing), then ``float64``, then ``bool`` (True/False in pandas'
spellings), else ``string``. So a check sees the values training will see.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmcore.errors import DataError

#: pandas' default missing-value markers (``pandas.read_csv``'s ``na_values``).
PANDAS_NULLS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
#: the spellings pandas reads as booleans
BOOLEANS = {"True": True, "TRUE": True, "true": True,
            "False": False, "FALSE": False, "false": False}
#: what ``datasets`` says of a csv file with a header and no row (validate says the same)
NO_ROWS = 'ValueError: Instruction "train" corresponds to no data!'


def open_table(path: Path, fmt: str) -> FileTable | None:
    """A :class:`FileTable` of the file at ``path`` in format ``fmt`` (``csv`` or ``parquet``),
    its header read now; ``None`` for what only ``datasets`` reads (json, zip archives).
    A file that cannot be read is a :class:`DataError` naming it, as ``datasets``' would be."""
    name = path.name.lower()
    if fmt == "csv" and not name.endswith(".zip"):
        return FileTable(_CsvFile(path, "\t" if ".tsv" in name else ","))
    if fmt == "parquet":
        return FileTable(_ParquetFile(path))
    return None


class _Source:
    """Where a :class:`FileTable`'s columns come from; each is read once, when first asked for."""

    names: list[str]
    _columns: dict[str, pa.ChunkedArray]
    _rows: int | None = None

    def read(self, columns: Sequence[str]) -> pa.Table:
        raise NotImplementedError

    def num_rows(self) -> int:
        return len(self.column(self.names[0])) if self.names else 0

    def column(self, name: str) -> pa.ChunkedArray:
        if name not in self._columns:
            self._columns[name] = self.read([name]).column(name)
        return self._columns[name]

    def count(self) -> int:
        if self._rows is None:
            self._rows = self.num_rows()
        return self._rows


class _InMemory(_Source):
    def __init__(self, table: pa.Table) -> None:
        self.table, self.names, self._columns = table, list(table.column_names), {}

    def read(self, columns: Sequence[str]) -> pa.Table:
        return self.table.select(list(columns))

    def num_rows(self) -> int:
        return self.table.num_rows


class _ParquetFile(_Source):
    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path, self._columns = path, {}
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {path} as parquet: {type(exc).__name__}: {exc}"
                            ) from None
        self.names = list(self.file.schema_arrow.names)

    def read(self, columns: Sequence[str]) -> pa.Table:
        return self.file.read(columns=list(columns))

    def num_rows(self) -> int:
        return self.file.metadata.num_rows


class _CsvFile(_Source):
    def __init__(self, path: Path, sep: str) -> None:
        import pyarrow.csv as pcsv

        self.path, self.csv, self._columns = path, pcsv, {}
        # a quoted cell may hold a line break (pandas reads it so): without this, a block
        # boundary inside such a cell would cut a row
        self.parse = pcsv.ParseOptions(delimiter=sep, newlines_in_values=True)
        try:
            with pcsv.open_csv(path, parse_options=self.parse) as reader:
                raw = list(reader.schema.names)
                first = next(iter(reader), None)  # the block the types were inferred on
        except pa.ArrowInvalid as exc:
            raise self._error(exc) from None
        if first is None or first.num_rows == 0:
            raise DataError(f"cannot read {path} as csv: {NO_ROWS}")
        self.names = _pandas_names(raw)
        self.options = (pcsv.ReadOptions() if self.names == raw
                        else pcsv.ReadOptions(column_names=self.names, skip_rows=1))

    def read(self, columns: Sequence[str]) -> pa.Table:
        convert = self.csv.ConvertOptions(
            include_columns=list(columns), column_types=dict.fromkeys(columns, pa.string()),
            null_values=PANDAS_NULLS, strings_can_be_null=True,
            quoted_strings_can_be_null=True)
        try:
            table = self.csv.read_csv(self.path, read_options=self.options,
                                      parse_options=self.parse, convert_options=convert)
        except pa.ArrowInvalid as exc:
            raise self._error(exc) from None
        return pa.table({c: _pandas_typed(table.column(c)) for c in columns})

    def _error(self, exc: pa.ArrowInvalid) -> DataError:
        """The error ``datasets`` would give: pandas' (its csv reader), where pandas fails too."""
        import pandas as pd

        try:
            pd.read_csv(self.path, sep=self.parse.delimiter)
        except ValueError as pandas_exc:  # EmptyDataError and ParserError are ValueErrors
            exc = pandas_exc  # type: ignore[assignment]
        return DataError(f"cannot read {self.path} as csv: {type(exc).__name__}: {exc}")


def _pandas_names(names: list[str]) -> list[str]:
    """Header names as pandas gives them: an empty one ``Unnamed: <i>``, a repeated one
    ``<name>.<k>``."""
    out: list[str] = []
    for i, name in enumerate(names):
        name = name or f"Unnamed: {i}"
        base, k = name, 0
        while name in out:
            k += 1
            name = f"{base}.{k}"
        out.append(name)
    return out


_INTEGER = r"^\s*[+-]?\d+\s*$"
_BOOLEAN = "^(" + "|".join(BOOLEANS) + ")$"
_TRUE = "^(" + "|".join(k for k, v in BOOLEANS.items() if v) + ")$"


def _pandas_typed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column read as strings, typed as pandas infers a csv column (see the module doc)."""
    import pyarrow.compute as pc

    present = column.drop_null()
    if len(present) == 0:  # every cell missing: pandas gives a float column of NaN
        return column.cast(pa.float64())
    trimmed = pc.utf8_trim_whitespace(column)
    if pc.all(pc.match_substring_regex(present, _INTEGER)).as_py():
        try:
            typed = pc.cast(pc.replace_substring_regex(trimmed, r"^\+", ""), pa.int64())
        except pa.ArrowInvalid:  # past int64: pandas reads it as float
            return pc.cast(trimmed, pa.float64())
        return typed.cast(pa.float64()) if column.null_count else typed
    try:
        return pc.cast(trimmed, pa.float64())
    except pa.ArrowInvalid:
        pass
    if pc.all(pc.match_substring_regex(present, _BOOLEAN)).as_py():
        return pc.match_substring_regex(column, _TRUE)  # a null cell stays null
    return column


def as_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric Arrow array without nulls as numpy (a view where the memory allows), not
    through pyarrow's ``to_numpy``, whose converter imports pandas (0.2 s, as much as the
    rest of ``mmcore validate``'s data checks)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not hasattr(values, "__dlpack__"):  # pyarrow before 15
        return values.to_numpy(zero_copy_only=False)
    return np.from_dlpack(values)


def as_arrow(indices: np.ndarray) -> pa.Array:
    """Row indices as an int64 Arrow array, not through ``pa.array``, which imports pandas to
    ask whether they are a pandas object."""
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(indices), [None, pa.py_buffer(indices)])


class FileTable:
    """A table whose columns are read when first asked for (and kept), with the part of
    ``datasets.Dataset``'s interface that the data checks use on a table in Arrow format:
    ``column_names``, ``len()``, ``select(rows)``, ``select_columns(names)``,
    ``with_format("arrow")``, then ``[column]`` (a ``pyarrow.ChunkedArray``) or ``[:]``
    (a ``pyarrow.Table`` of the selected columns)."""

    def __init__(self, source: _Source, rows: np.ndarray | None = None,
                 columns: Sequence[str] | None = None) -> None:
        self._source, self._rows = source, rows
        self.column_names = list(source.names if columns is None else columns)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> FileTable:
        """A :class:`FileTable` over a table already in memory (e.g. a folder's file list)."""
        return cls(_InMemory(table))

    def __len__(self) -> int:
        return self._source.count() if self._rows is None else len(self._rows)

    def __getitem__(self, key: str | slice) -> Any:
        if isinstance(key, str):
            return self._column(key)
        if key != slice(None):
            raise TypeError("a FileTable gives one column ([name]) or all of them ([:])")
        return pa.table({c: self._column(c) for c in self.column_names})

    def _column(self, name: str) -> pa.ChunkedArray:
        if name not in self.column_names:
            raise KeyError(name)
        column = self._source.column(name)
        return column if self._rows is None else column.take(as_arrow(self._rows))

    def select(self, rows: Sequence[int] | np.ndarray) -> FileTable:
        """The rows at ``rows`` (indices into this table), in that order."""
        picked = np.asarray(rows, dtype=np.int64)
        if self._rows is not None:
            picked = self._rows[picked]
        return FileTable(self._source, picked, self.column_names)

    def select_columns(self, columns: Sequence[str]) -> FileTable:
        missing = [c for c in columns if c not in self.column_names]
        if missing:
            raise KeyError(", ".join(missing))
        return FileTable(self._source, self._rows, columns)

    def with_format(self, kind: str) -> FileTable:
        """This table: its columns are Arrow already (only ``"arrow"`` is known)."""
        if kind != "arrow":
            raise ValueError(f"a FileTable is read as Arrow only, not {kind!r}")
        return self
