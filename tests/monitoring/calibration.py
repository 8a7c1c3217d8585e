"""Seeded drift scenarios for the calibration tests, and the report behind the numbers in docs/drift.md.

Scenarios (on :mod:`tests.monitoring.synthetic` tables):

* **10% mean shift of one numeric feature**, two ways (:func:`mean_shift`): *scale*, every
  value 10% larger (zeros stay zero: the harder reading for zero-inflated features, where a third of the
  rows cannot move), and *location*, the same amount added to every value (zeros move: the harder reading
  for rare counts such as refunds). Integer counts stay integers, shares stay in [0, 1], nulls stay null;
  the signed trend features (mean near zero, so 10% of it is no shift) are scaled either way.
* **5-percentage-point change of one category's share**: randomly chosen rows move into the category
  (+5 pp) or out of it to the others in proportion to their shares (-5 pp).
* **Fresh same-distribution sample**: baseline and current drawn with different seeds.

``bench/calibrate_drift.py`` (monitoring environment) prints the measured detection and false-alarm rates
as a Markdown table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from monitoring.drift import DriftPolicy, categorical_drift, compare, decide, numeric_drift, per_check_alpha
from tests.monitoring.synthetic import feature_schema, generate

SCHEMA = feature_schema()
CATEGORIES = {f.name: f.categories for f in SCHEMA.features if f.kind == "categorical"}
N_CHECKS = len(SCHEMA.names) + 1  # every feature and the prediction, as in a real run


def mean_shift(values: np.ndarray, change: float, *, mode: str = "scale",
               rng: np.random.Generator | None = None) -> np.ndarray:
    """``values`` with their mean ``change`` (e.g. 0.10 = 10%) higher, keeping the feature's kind.

    Args:
        values: A numeric feature (NaN = null).
        change: Relative change of the mean.
        mode: ``scale``: every value ``1 + change`` times larger (zeros stay zero); ``location``: the same
            amount added to every value (zeros move too). Signed features (mean near zero, where 10% of the
            mean is no shift at all: the trend log-ratios) are always scaled.
        rng: Randomness for rounding integer features (default: seeded).

    Returns:
        The shifted values: integers stay integers (rounded up with probability equal to the fraction, so the
        mean is exact), values in [0, 1] stay in [0, 1] (the factor or amount is solved so the mean still
        rises by ``change``), nulls stay null.
    """
    x = np.asarray(values, dtype=float)
    finite = np.isfinite(x)
    v = x[finite]
    if v.size == 0 or v.mean() == 0:
        return x.copy()
    rng = rng if rng is not None else np.random.default_rng(0)
    target = (1.0 + change) * v.mean()
    integer = bool(np.all(np.mod(v, 1.0) == 0.0))
    if v.min() < 0.0:
        mode = "scale"
    if not integer and v.min() >= 0.0 and v.max() <= 1.0:
        if mode == "scale":
            make, lo, hi = (lambda c: np.minimum(1.0, c * x)), 1.0, 1.0 / max(float(v[v > 0].min()), 1e-9)
        else:
            make, lo, hi = (lambda c: np.minimum(1.0, x + c)), 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if np.nanmean(make(mid)) < target else (lo, mid)
        return make(0.5 * (lo + hi))
    y = (1.0 + change) * x if mode == "scale" else x + change * v.mean()
    if integer:
        low = np.floor(y)
        y = np.where(finite, low + (rng.random(x.size) < (y - low)), np.nan)
    return y


def shift_feature(frame: pd.DataFrame, name: str, rng: np.random.Generator, *, mode: str = "scale",
                  change: float = 0.10) -> pd.DataFrame:
    """``frame`` with the mean of feature ``name`` ``change`` higher (:func:`mean_shift`)."""
    return frame.assign(**{name: mean_shift(frame[name].to_numpy(dtype=float), change, mode=mode, rng=rng)})


def scale_feature(frame: pd.DataFrame, name: str, rng: np.random.Generator, factor: float = 1.1) -> pd.DataFrame:
    """``frame`` with every value of feature ``name`` ``factor`` times larger, keeping its kind."""
    return shift_feature(frame, name, rng, mode="scale", change=factor - 1.0)


def shift_category(frame: pd.DataFrame, name: str, category: str, delta: float,
                   rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` with ``category``'s share of ``name`` moved by ``delta`` (e.g. +0.05 or -0.05)."""
    values = frame[name].to_numpy(dtype=object).copy()
    count = round(abs(delta) * values.size)
    inside = np.flatnonzero(values == category)
    outside = np.flatnonzero(values != category)
    if delta > 0:
        values[rng.choice(outside, size=count, replace=False)] = category
    else:
        moved = rng.choice(inside, size=count, replace=False)
        others, counts = np.unique(values[outside].astype(str), return_counts=True)
        values[moved] = rng.choice(others, size=count, p=counts / counts.sum())
    return frame.assign(**{name: values})


def check_ratio(row) -> float:
    """A numeric row's strongest check over its threshold (> 1: flagged)."""
    pairs = ((row.psi, row.psi_threshold), (row.rank_shift, row.rank_shift_threshold),
             (row.rank_shift_all, row.rank_shift_all_threshold), (row.zero_share, row.zero_share_threshold),
             (row.mean_shift, row.mean_shift_threshold))
    return max((abs(v) / t for v, t in pairs if not np.isnan(v) and t > 0), default=0.0)


def numeric_detection(n: int, trials: int, names: Sequence[str] = tuple(SCHEMA.numeric),
                      policy: DriftPolicy = DriftPolicy(), seed: int = 0, modes: Sequence[str] = ("scale",),
                      baseline_rows: int | None = None) -> dict[tuple[str, str], list[float]]:
    """Per (mode, feature) and trial, the feature's strongest check over its threshold (> 1: flagged) after
    its mean was moved 10% up (:func:`shift_feature` with each of ``modes``).

    Each trial draws a fresh baseline of ``baseline_rows`` rows (default ``n``) and a fresh current sample
    of ``n`` rows, then shifts one feature at a time in the current one; every feature is checked with the
    share of the false-alarm budget it gets in a full run (26 features and the prediction).
    """
    alpha = per_check_alpha(policy, N_CHECKS)
    ratios: dict[tuple[str, str], list[float]] = {(mode, name): [] for mode in modes for name in names}
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial])
        base = generate(baseline_rows or n, seed=int(rng.integers(2**31)))
        cur = generate(n, seed=int(rng.integers(2**31)))
        for mode in modes:
            for name in names:
                shifted = shift_feature(cur, name, rng, mode=mode)
                row = numeric_drift(name, base[name].to_numpy(), shifted[name].to_numpy(), policy, alpha)
                ratios[mode, name].append(check_ratio(row))
    return ratios


def categorical_detection(n: int, trials: int, policy: DriftPolicy = DriftPolicy(),
                          seed: int = 0) -> dict[tuple[str, str, float], list[float]]:
    """Per (feature, category, +/-5 pp) and trial, L-infinity over its threshold after moving that share."""
    alpha = per_check_alpha(policy, N_CHECKS)
    ratios: dict[tuple[str, str, float], list[float]] = {}
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial, 1])
        base = generate(n, seed=int(rng.integers(2**31)))
        cur = generate(n, seed=int(rng.integers(2**31)))
        for name, categories in CATEGORIES.items():
            for category in categories:
                for delta in (0.05, -0.05):
                    shifted = shift_category(cur, name, category, delta, rng)
                    row = categorical_drift(name, base[name], shifted[name], policy, alpha, categories=categories)
                    ratios.setdefault((name, category, delta), []).append(row.value / row.threshold)
    return ratios


def false_alarms(n: int, trials: int, policy: DriftPolicy = DriftPolicy(), seed: int = 0,
                 baseline_rows: int | None = None) -> list[list[str]]:
    """Per trial on same-distribution samples (``baseline_rows`` baseline rows, default ``n``; ``n`` current
    rows), the features a full run flagged (with the prediction check)."""
    from tests.monitoring.synthetic import churn_probability

    out = []
    for trial in range(trials):
        base = generate(baseline_rows or n, seed=1_000_003 * (seed + 1) + 2 * trial)
        cur = generate(n, seed=1_000_003 * (seed + 1) + 2 * trial + 1)
        rows = compare(base, cur, numeric=SCHEMA.numeric, categorical=CATEGORIES, policy=policy,
                       prediction=(churn_probability(base), churn_probability(cur)))
        decision = decide(rows, n, policy)
        out.append(decision.drifted_features)
    return out


def to_json_values(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with ``columns`` as a pandas client sends them: ``to_json`` (10 decimals), parsed exactly."""
    import json

    records = json.loads(frame[list(columns)].to_json(orient="records"))
    written = pd.DataFrame.from_records(records, columns=list(columns)).astype(float)
    return frame.assign(**{c: written[c].to_numpy() for c in columns})


def float32_values(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with ``columns`` stored as float32 and read back (a feature store's precision)."""
    return frame.assign(**{c: frame[c].to_numpy(dtype=np.float32).astype(float) for c in columns})


WRITERS = {
    "float32": float32_values,
    "to_json": to_json_values,
    "float32 then to_json": lambda frame, columns: to_json_values(float32_values(frame, columns), columns),
}


def control_runs(n: int, trials: int, policy: DriftPolicy = DriftPolicy(), seed: int = 0,
                 baseline_rows: int | None = None) -> list[dict[str, list[str]]]:
    """Per trial on same-distribution samples, the features a full run flagged with the current rows exact
    and after each of :data:`WRITERS` (numeric features and the prediction rewritten; categories as they are).

    The tables carry the three discrete columns of :func:`tests.monitoring.synthetic.tied_features` beside the
    pipeline's features: their ties are where rounding used to cross bucket edges."""
    from tests.monitoring.synthetic import TIED, churn_probability, tied_features

    out = []
    numeric = [*SCHEMA.numeric, *TIED]
    columns = [*numeric, "churn_probability"]
    for trial in range(trials):
        seeds = (2_000_003 * (seed + 1) + 2 * trial, 2_000_003 * (seed + 1) + 2 * trial + 1)
        base = pd.concat([generate(baseline_rows or n, seed=seeds[0]), tied_features(baseline_rows or n, seeds[0])],
                         axis=1)
        cur = pd.concat([generate(n, seed=seeds[1]), tied_features(n, seeds[1])], axis=1)
        cur = cur.assign(churn_probability=churn_probability(cur))
        runs = {}
        for name, write in {"exact": lambda f, c: f, **WRITERS}.items():
            sent = write(cur, columns)
            rows = compare(base, sent, numeric=numeric, categorical=CATEGORIES, policy=policy,
                           prediction=(churn_probability(base), sent["churn_probability"].to_numpy()))
            runs[name] = decide(rows, n, policy).drifted_features
        out.append(runs)
    return out
