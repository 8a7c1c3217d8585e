"""churn.features helpers that the stages share."""

import numpy as np
import pandas as pd
import pytest

from churn.features import text_isin


@pytest.mark.parametrize("dtype", ["str", object, "string[pyarrow]"])
def test_text_isin_matches_pandas_isin_of_the_texts(dtype):
    values = pd.Series(["007", "1", "x", None, "", "007"], dtype=dtype)
    allowed = pd.Series(["007", "", "y"], dtype=dtype)
    expected = values.astype(str).isin(allowed.astype(str)).to_numpy()
    mask = text_isin(values, allowed)
    assert mask.dtype == bool and mask.tolist() == expected.tolist() == [True, False, False, False, True, True]


def test_text_isin_compares_texts_across_types_and_takes_indexes():
    assert text_isin(pd.Index([1, 2, 3]), pd.Series(["2", "3.0"])).tolist() == [False, True, False]
    assert text_isin(pd.Series([], dtype=str), pd.Series(["x"])).tolist() == []
    assert not text_isin(pd.Series(["a"]), pd.Series([], dtype=str)).any()


def test_text_isin_on_many_ids_agrees_with_pandas():
    rng = np.random.default_rng(0)
    ids = pd.Series([f"{i:07d}" for i in rng.integers(0, 10**6, 50_000)], dtype="string[pyarrow]")
    allowed = pd.Series([f"{i:07d}" for i in rng.integers(0, 10**6, 30_000)], dtype="string[pyarrow]")
    assert text_isin(ids, allowed).tolist() == ids.isin(allowed).tolist()
