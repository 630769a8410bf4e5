"""The ``tabular`` modality: a row's cells -> one scaled vector -> a stacked batch -> an encoder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmcore.errors import CheckpointError, DataError
from mmcore.modality import Modality
from mmcore_plugin_tabular.features import (
    TableState,
    fit_table,
    is_missing_cell,
    transform_row,
)
from mmcore_plugin_tabular.options import TabularOptions

if TYPE_CHECKING:  # torch is imported to collate and to build the encoder, not to check a spec
    from mmcore.batch import ModalityBatch
    from mmcore_plugin_tabular.encoder import TabularEncoder

STATE_FILE = "table.json"


class TabularModality(Modality[TabularOptions]):
    """Many columns of a table as one modality: the spec's ``column`` list.

    :meth:`fit` decides which columns are numeric and which categorical (the ``categorical``
    option) and learns their scaling and categories on the training split; ``preprocess`` turns
    a row's cells into one float32 vector (:mod:`mmcore_plugin_tabular.features`); ``collate``
    stacks them to ``values [B, F]``. A row counts as missing only when every cell is; a missing
    cell is handled per feature. The fitted state is ``table.json`` in the run folder.
    """

    reads_files = False  # cells are values, never file paths

    def __init__(self, name: str, options: TabularOptions, root: Path | None = None, *,
                 columns: Sequence[str] = ()) -> None:
        super().__init__(name, options, root, columns=columns)
        self.state: TableState | None = None

    # -- the row ----------------------------------------------------------------------------
    def _names(self) -> list[str]:
        return list(self.columns) or [self.name]

    def _cells(self, value: Any) -> list[Any]:
        names = self._names()
        if len(names) == 1:
            return [value]
        if not isinstance(value, list | tuple) or len(value) != len(names):
            raise ValueError(f"expected the {len(names)} cells of columns {', '.join(names)}, "
                             f"got {type(value).__name__}")
        return list(value)

    def is_missing(self, value: Any) -> bool:
        if isinstance(value, list | tuple) and len(self._names()) > 1:
            return all(is_missing_cell(cell) for cell in value)
        return is_missing_cell(value)

    # -- fitted state -----------------------------------------------------------------------
    def fit(self, values: Sequence[Any]) -> None:
        rows = []
        for value in values:
            try:
                rows.append(self._cells(value))
            except ValueError:
                continue  # a malformed row is reported by preprocess
        if not rows:
            raise DataError(f"tabular modality {self.name!r}: no training rows to fit on "
                            f"(columns {', '.join(self._names())})")
        self.state = fit_table(self._names(), rows, self.options)

    def save_state(self, directory: Path) -> None:
        (Path(directory) / STATE_FILE).write_text(json.dumps(self._fitted().to_json()))

    def load_state(self, directory: Path) -> None:
        path = Path(directory) / STATE_FILE
        try:
            self.state = TableState.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise CheckpointError(f"tabular modality {self.name!r}: {path} is missing; the "
                                  "run folder is incomplete") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: not a tabular state file ({exc})") from None

    def fingerprint(self) -> str:
        state = "none" if self.state is None else json.dumps(self.state.to_json(),
                                                             sort_keys=True)
        return f"{super().fingerprint()}|columns={self._names()}|state={state}"

    def _fitted(self) -> TableState:
        if self.state is None:
            raise RuntimeError(f"tabular modality {self.name!r} is not fitted: call fit() on "
                               "the training rows or load_state() from a run folder")
        return self.state

    # -- data -------------------------------------------------------------------------------
    def preprocess(self, value: Any) -> np.ndarray:
        return transform_row(self._fitted(), self._cells(value))

    def collate(self, items: Sequence[np.ndarray | None]) -> ModalityBatch:
        import torch

        from mmcore.collate import stack_fixed

        return stack_fixed(items, shape=(self._fitted().width,), dtype=torch.float32)

    def collate_stacked(self, values: np.ndarray) -> ModalityBatch:
        import torch

        from mmcore.collate import stacked_fixed

        return stacked_fixed(values, dtype=torch.float32)

    def build_encoder(self) -> TabularEncoder:
        from mmcore_plugin_tabular.encoder import TabularEncoder

        state = self._fitted()
        return TabularEncoder(len(state.numeric), state.indicators,
                              [c.cardinality for c in state.categorical], self.options)
