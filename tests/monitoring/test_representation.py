"""Drift ignores how numbers were written: float32 stores, pandas ``to_json`` (10 decimals), 15 digits, ±1e-6.

Clients round. The same rows sent through any of them must give the same decision and (nearly) the same
value of every check; before the bucket edges moved off the tied baseline values, ``trend_frequency`` (log
ratios of small counts) went from PSI 0.001 to 0.16 after a float32 round trip.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from monitoring import drift as D
from tests.monitoring.synthetic import churn_probability, feature_schema, generate

SCHEMA = feature_schema()
POLICY = D.DriftPolicy()
ALPHA = D.per_check_alpha(POLICY, len(SCHEMA.names) + 1)


def to_json_and_back(values: np.ndarray) -> np.ndarray:
    """What a pandas client sends: ``DataFrame.to_json`` (10 decimals), parsed exactly as the server does."""
    text = pd.DataFrame({"x": values}).to_json(orient="records")
    return np.array([row["x"] if row["x"] is not None else np.nan for row in json.loads(text)], dtype=float)


WRITERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "float32": lambda x: x.astype(np.float32).astype(float),
    "to_json": to_json_and_back,
    "15 digits": lambda x: np.array([float(f"{v:.15g}") for v in x]),
    "+1e-6": lambda x: x * (1.0 + 1e-6),
    "-1e-6": lambda x: x * (1.0 - 1e-6),
}
CHECKS = ("psi", "rank_shift", "rank_shift_all", "zero_share", "mean_shift")


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(20_000, seed=5), generate(10_000, seed=6)


def test_pandas_to_json_really_rounds_the_tied_values():
    """The premise: a pandas client changes log(2) in the 10th decimal, and float32 in the 8th digit."""
    assert to_json_and_back(np.array([math.log(2.0)]))[0] == 0.6931471806 != math.log(2.0)
    assert WRITERS["float32"](np.array([0.5, math.log(2.0)]))[1] != math.log(2.0)


@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("source", ["baseline rows", "fresh rows"])
def test_every_numeric_check_gives_the_same_decision_whatever_the_writer(
        tables: tuple[pd.DataFrame, pd.DataFrame], writer: str, source: str):
    base, fresh = tables
    changed = []
    columns = {name: base[name].to_numpy() for name in SCHEMA.numeric}
    columns["churn_probability"] = churn_probability(base)
    sent = {name: base[name].to_numpy()[:10_000] for name in SCHEMA.numeric} if source == "baseline rows" else \
        {name: fresh[name].to_numpy() for name in SCHEMA.numeric}
    sent["churn_probability"] = churn_probability(base.iloc[:10_000] if source == "baseline rows" else fresh)
    for name, values in sent.items():
        exact = D.numeric_drift(name, columns[name], values, POLICY, ALPHA)
        written = D.numeric_drift(name, columns[name], WRITERS[writer](values), POLICY, ALPHA)
        if written.drifted != exact.drifted:
            changed.append(f"{name}: drifted {exact.drifted} -> {written.drifted}")
        for check in CHECKS:
            a, b = getattr(exact, check), getattr(written, check)
            if not (math.isnan(a) and math.isnan(b)) and not abs(a - b) <= 1e-4 + 1e-3 * abs(a):
                changed.append(f"{name} {check}: {a:.6g} -> {b:.6g}")
    assert not changed, changed


def test_the_issue_case_log_ratios_of_small_counts_keep_their_psi():
    """``log((f90 + 1) / (before + 1))``: a handful of values shared by thousands of rows."""
    rng = np.random.default_rng(3)
    base = np.log((rng.poisson(1.5, 50_000) + 1.0) / (rng.poisson(1.5, 50_000) + 1.0))
    sent = base[:10_000]
    exact = D.numeric_drift("trend", base, sent, POLICY, ALPHA)
    for writer, write in WRITERS.items():
        row = D.numeric_drift("trend", base, write(sent), POLICY, ALPHA)
        assert not row.drifted and row.psi == pytest.approx(exact.psi, abs=1e-9), (writer, row.psi, exact.psi)


def test_a_value_a_float_sum_left_next_to_zero_counts_as_zero():
    """1 - 0.9 - 0.1 is -2.8e-17, not 0: a share or trend computed that way is still "none"."""
    rng = np.random.default_rng(4)
    base = np.where(rng.random(20_000) < 0.3, 0.0, rng.gamma(2.0, 0.2, 20_000).clip(0, 1))
    current = base[:10_000].copy()
    zeros = current == 0.0
    current[zeros] = np.where(rng.random(int(zeros.sum())) < 0.5, 1.0 - 0.9 - 0.1, 1e-17)
    exact = D.numeric_drift("share", base, base[:10_000], POLICY, ALPHA)
    noisy = D.numeric_drift("share", base, current, POLICY, ALPHA)
    assert noisy.zero_share == pytest.approx(exact.zero_share, abs=1e-12)
    assert noisy.rank_shift == pytest.approx(exact.rank_shift, abs=1e-9)
    assert not noisy.drifted


def test_edges_sit_between_distinct_baseline_values_not_on_them():
    values = np.array([0.0] * 500 + [0.5] * 300 + [1.0] * 200)
    edges = D.quantile_edges(values, 20)
    assert not np.isin(edges, values).any()
    for value in (0.0, 0.5, 1.0):
        for written in (value * (1 + 1e-6), value * (1 - 1e-6), float(np.float32(value))):
            assert np.searchsorted(edges, written) == np.searchsorted(edges, value), (value, written)


def test_categories_written_as_other_numbers_or_with_spaces_are_the_same_category():
    base = pd.Series(["1", "2", "3"] * 3000)
    written = pd.Series(["1.0", " 2", "3.0000001"] * 1000)
    row = D.categorical_drift("tier", base, written, POLICY, ALPHA)
    assert row.l_infinity == pytest.approx(0.0, abs=1e-12) and not row.drifted and not row.note
    unseen = D.categorical_drift("tier", base, pd.Series(["1", "2", "4"] * 1000), POLICY, ALPHA)
    assert unseen.drifted and "4" in unseen.note, "a different value is still a different value"
