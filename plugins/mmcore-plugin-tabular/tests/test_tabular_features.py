"""Per-column fitting and the row transform: kinds, scaling, categories, missing cells."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mmcore_plugin_tabular.features import MISSING, RESERVED, UNKNOWN
from mmcore_plugin_tabular.modality import TabularModality
from mmcore_plugin_tabular.options import TabularOptions

COLUMNS = ["age", "city", "code"]
TRAIN = [[20, "paris", 1], [30, "lyon", 2], [40, "paris", 2], [None, "nice", 3]]


def fitted(rows=TRAIN, **options) -> TabularModality:
    modality = TabularModality("t", TabularOptions(**options))
    modality.columns = list(COLUMNS)
    modality.fit(rows)
    return modality


def test_auto_kinds_standard_scaling_and_missing_indicators():
    m = fitted()
    state = m.state
    assert [c.name for c in state.numeric] == ["age", "code"]
    assert [c.name for c in state.categorical] == ["city"]
    assert state.categorical[0].categories == ["paris", "lyon", "nice"]  # by count, then name
    row = m.preprocess([30, "lyon", 2])
    # numbers (age, code), their missing flags, then the city id
    np.testing.assert_allclose(row[:2], [0.0, (2 - 2.0) / np.std([1, 2, 2, 3])], atol=1e-6)
    assert row[2:4].tolist() == [0.0, 0.0] and row[4] == 1 + RESERVED
    missing = m.preprocess([None, "", "3"])
    assert missing[0] == 0.0 and missing[2] == 1.0 and missing[4] == MISSING
    assert m.preprocess([25, "berlin", 1])[4] == UNKNOWN


def test_declared_categorical_columns_and_rare_categories():
    m = fitted(categorical=["c*"], min_frequency=2)
    assert [c.name for c in m.state.categorical] == ["city", "code"]
    assert m.state.categorical[1].categories == ["2"]  # 1 and 3 occur once
    row = m.preprocess([20, "paris", 1.0])
    assert row[-2:].tolist() == [RESERVED + 0, UNKNOWN]


def test_quantile_scaling_is_monotone_and_normal_like():
    rows = [[float(x), "a", 1] for x in np.random.default_rng(0).exponential(size=500)]
    m = fitted(rows, scaling="quantile")
    out = [m.preprocess([x, "a", 1])[0] for x in (0.01, 0.7, 5.0)]
    assert out[0] < out[1] < out[2] and abs(out[1]) < 0.2 and out[2] > 2


def test_a_word_in_a_numeric_column_is_a_bad_value_naming_the_column():
    with pytest.raises(ValueError, match="column 'age': 'old' is not a finite number"):
        fitted().preprocess(["old", "paris", 1])
    with pytest.raises(ValueError, match="expected the 3 cells"):
        fitted().preprocess([1, 2])


def test_the_row_is_missing_only_when_every_cell_is(tmp_path):
    m = fitted()
    assert m.is_missing([None, "", float("nan")]) and not m.is_missing([None, "paris", None])
    m.save_state(tmp_path)
    again = TabularModality("t", TabularOptions())
    again.columns = list(COLUMNS)
    again.load_state(tmp_path)
    assert json.loads((tmp_path / "table.json").read_text())["columns"] == COLUMNS
    assert again.preprocess([33, "nice", 2]).tolist() == m.preprocess([33, "nice", 2]).tolist()
    assert again.fingerprint() == m.fingerprint()
