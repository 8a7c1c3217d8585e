"""Drift metrics, sample-size-aware thresholds and the retrain decision: numpy and SciPy, no TFDV.

Numeric features are binned at the baseline's quantiles and scored by up to four checks (PSI over those
buckets, a normal-scores rank shift of the non-zero values, the share of zeros, Welch's mean shift);
categorical ones by the L-infinity distance of category shares. Each check's threshold is the larger of
its sampling noise under a run-level false-alarm budget (Bonferroni over features and checks) and half the
effect of a 10% rise of that feature's mean, so small tables flag what the data can show and large ones
ignore differences nobody acts on. TFDV's fixed Jensen-Shannon threshold cannot separate drift from noise
across feature shapes, hence this module. The method, its trade-offs and the calibration are in
docs/drift.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

DriftKind = Literal["numeric", "categorical", "prediction"]
Status = Literal["no_drift", "drift", "insufficient_data", "bad_input"]
UNSEEN = "<unseen>"
NULL = "<null>"
SMOOTHING = 0.5  # pseudo-count per bucket, so an empty bucket never gives log(0)
# Representation noise: clients round (pandas to_json keeps 10 decimals, float32 stores ~7 digits). Values
# closer than REL_TOL (relative) count as one value when bucket edges are placed, and values within ZERO_TOL
# of a feature's largest magnitude count as zero, so a relative change of 1e-6 never changes a decision.
REL_TOL = 1e-5
ZERO_TOL = 1e-9


@dataclass(frozen=True)
class DriftPolicy:
    """How sensitive the drift check is, and when it asks for retraining.

    Attributes:
        n_bins: Buckets per numeric feature (baseline quantiles). 20 keeps ~5% of the baseline per bucket.
        false_alarm_rate: Chance that a run on same-distribution data flags anything (split over all checks;
            0.001: looser budgets broke the bar of 1 alarm in 100 runs, see docs/drift.md).
        psi_share: The PSI's share of a numeric feature's false-alarm probability (0.1); the directional
            checks (rank shift, zero share, mean shift) split the rest evenly (:func:`check_shares`).
        min_rows: Fewest current rows to judge drift at all; fewer gives ``insufficient_data``.
        min_effect: The smallest drift worth retraining for, as a relative change of a feature's mean (0.10).
            Each numeric feature's thresholds never go below ``effect_fraction`` of the PSI and rank shift of
            the gentlest such change of *that* feature's baseline (:func:`effect_floors`): a skewed amount
            and a rare count get different floors, each the same in meaning. This is what keeps a million
            rows from alarming on differences nobody would retrain for.
        effect_fraction: The share of the ``min_effect`` drift used as the floor (0.5: half of it).
        psi_floor: Absolute smallest PSI threshold, for features where ``min_effect`` moves nothing (all zero).
        rank_shift_floor: Absolute smallest rank-shift threshold (0.001 normal-score units, about a
            thousandth of a standard deviation on the normalised scale); both rank shifts.
        mean_shift_floor: Absolute smallest mean-shift threshold, in baseline standard deviations (0.01). It
            decides only for features whose mean is near zero (the signed trends), where 10% of the mean is
            no change at all.
        zero_share_floor: Smallest zero-share threshold (0.001: a tenth of a percentage point).
        l_infinity_floor: Smallest L-infinity threshold (categorical features): 0.01 = one percentage point.
        overrides: Fixed thresholds, ``{feature: {metric: threshold}}`` with metric ``psi``, ``rank_shift``,
            ``zero_share``, ``mean_shift`` or ``l_infinity``; they replace the computed threshold of that one
            check.
        max_auc_drop: Retrain when ROC AUC on labelled predictions is this much below validation.
        min_labelled_rows: Fewest labelled predictions (with both classes) to judge performance.
    """

    n_bins: int = 20
    false_alarm_rate: float = 0.001
    psi_share: float = 0.1
    min_rows: int = 1000
    min_effect: float = 0.10
    effect_fraction: float = 0.5
    psi_floor: float = 0.0005
    rank_shift_floor: float = 0.001
    mean_shift_floor: float = 0.01
    zero_share_floor: float = 0.001
    l_infinity_floor: float = 0.01
    overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    max_auc_drop: float = 0.05
    min_labelled_rows: int = 200

    def __post_init__(self) -> None:
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {self.n_bins}")
        if not 0.0 < self.false_alarm_rate < 1.0:
            raise ValueError(f"false_alarm_rate must be in (0, 1), got {self.false_alarm_rate}")
        if self.min_rows < 1:
            raise ValueError(f"min_rows must be >= 1, got {self.min_rows}")
        if not 0.0 < self.psi_share < 1.0:
            raise ValueError(f"psi_share must be in (0, 1), got {self.psi_share}")
        if self.min_effect <= 0 or not 0 < self.effect_fraction <= 1:
            raise ValueError(f"min_effect must be > 0 and effect_fraction in (0, 1], got {self.min_effect}, "
                             f"{self.effect_fraction}")

    def to_dict(self) -> dict:
        """JSON-ready settings."""
        data = asdict(self)
        data["overrides"] = {k: dict(v) for k, v in self.overrides.items()}
        return data


# ---------------------------------------------------------------------------------------------------
# Buckets
# ---------------------------------------------------------------------------------------------------

def quantile_edges(baseline: np.ndarray, n_bins: int) -> np.ndarray:
    """Bucket edges at the baseline's quantiles, each cut *between* distinct baseline values.

    Bucket ``i`` is ``(edges[i-1], edges[i]]``. The quantiles are baseline values (``inverted_cdf``), so a
    value repeated by many rows gets a bucket of its own; the edge above it is then moved off the value,
    into the widest gap before the next baseline value beyond :data:`REL_TOL` (:func:`_cuts_above`), so that
    the same value written with a little less precision (float32, ten digits) stays in its bucket. Buckets
    holding less than half an average bucket are merged into their smaller neighbour. Nulls are ignored
    here (they get their own bucket in :func:`numeric_counts`).

    Args:
        baseline: Baseline values (NaN allowed).
        n_bins: Wanted number of buckets before merging.

    Returns:
        Sorted unique edges; ``len(edges) + 1`` value buckets. Empty when the baseline has no values.
    """
    return _edges_of_sorted(_sorted_finite(baseline), n_bins)


def _sorted_finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.sort(values[np.isfinite(values)])


def zero_tolerance(ordered: np.ndarray) -> float:
    """How close to 0 a value of this feature counts as zero: :data:`ZERO_TOL` of its largest magnitude.

    A share written as ``1e-17`` by a float sum, or ``0.0`` by a client that kept ten decimals, is the same
    "none" as an exact 0; relative to the feature's own scale so that a small unit is not mistaken for zero.
    """
    if ordered.size == 0:
        return 0.0
    return ZERO_TOL * max(abs(float(ordered[0])), abs(float(ordered[-1])))


def _distinct(ordered: np.ndarray) -> np.ndarray:
    """Distinct values of a sorted array (one pass, no second sort)."""
    if ordered.size == 0:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _cuts_above(distinct: np.ndarray, index: np.ndarray, atol: float) -> np.ndarray:
    """A cut point above each ``distinct[index]`` that no value within :data:`REL_TOL` of it reaches.

    The cut lies in the widest gap between ``distinct[k]`` and the first distinct value more than
    ``REL_TOL * |v| + atol`` above it (values closer than that are one value written two ways and share
    the bucket), at the gap's midpoint; above the maximum it is the maximum plus twice that tolerance.
    So a relative change of up to ``REL_TOL / (2 * gaps in the window)`` (~1e-6 or more for the tied values
    that matter) never moves a baseline value across a cut.
    """
    index = np.asarray(index, dtype=np.int64)
    if distinct.size == 0 or index.size == 0:
        return np.empty(0)
    low = distinct[index]
    limit = low + REL_TOL * np.abs(low) + atol
    end = np.searchsorted(distinct, limit, side="right")  # first distinct value beyond the tolerance
    cuts = np.empty(index.size)
    top = end >= distinct.size
    top_value = float(distinct[-1])
    cuts[top] = top_value + 2.0 * (REL_TOL * abs(top_value) + atol)
    simple = ~top & (end == index + 1)  # the next value is already far: the midpoint
    cuts[simple] = 0.5 * (low[simple] + distinct[np.minimum(end[simple], distinct.size - 1)])
    for i in np.flatnonzero(~top & ~simple):  # several values within the tolerance: the widest gap
        window = distinct[index[i]:end[i] + 1]
        j = int(np.argmax(np.diff(window)))
        cuts[i] = 0.5 * (window[j] + window[j + 1])
    return cuts


def _counts_of_sorted(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows of a sorted array per bucket ``(edges[i-1], edges[i]]``: binary searches of the edges only."""
    return np.diff(np.concatenate(([0], np.searchsorted(ordered, edges, side="right"), [ordered.size])))


def _edges_of_sorted(values: np.ndarray, n_bins: int) -> np.ndarray:
    """:func:`quantile_edges` of already sorted finite values."""
    if values.size == 0:
        return np.empty(0)
    probs = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    quantiles = np.unique(values[np.ceil(probs * values.size).astype(np.int64) - 1])  # numpy's "inverted_cdf"
    distinct = _distinct(values)
    edges = np.unique(_cuts_above(distinct, np.searchsorted(distinct, quantiles), zero_tolerance(values)))
    counts = _counts_of_sorted(values, edges)
    min_count = 0.5 * values.size / n_bins
    # Merge the smallest bucket into its smaller neighbour until every bucket is big enough. An empty
    # top bucket (above the maximum) stays: it catches values above the baseline's range.
    while edges.size > 1:
        live = counts[:-1] if counts[-1] == 0 else counts
        i = int(np.argmin(live))
        if live[i] >= min_count:
            break
        left = counts[i - 1] if i > 0 else np.inf
        right = counts[i + 1] if i + 1 < live.size else np.inf
        j = i - 1 if left <= right else i  # drop the edge between bucket j and j + 1
        counts[j] += counts[j + 1]
        counts = np.delete(counts, j + 1)
        edges = np.delete(edges, j)
    return edges


def numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Rows per bucket: ``len(edges) + 1`` value buckets, then one for nulls (NaN)."""
    values = np.asarray(values, dtype=float)
    null = ~np.isfinite(values)
    idx = np.searchsorted(edges, values[~null], side="left")
    counts = np.bincount(idx, minlength=edges.size + 1).astype(float)
    return np.append(counts, float(null.sum()))


def categorical_counts(values: Sequence | np.ndarray | pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Rows per category: one per ``categories``, then unseen values, then nulls."""
    return _category_vector(_value_counts(values), categories)


def _value_counts(values: Sequence | np.ndarray | pd.Series) -> dict[str | None, float]:
    """Rows per value as text (``None`` = null), in one pass."""
    counts = pd.Series(values, copy=False).value_counts(dropna=False, sort=False)
    out: dict[str | None, float] = {}
    key: Any  # any scalar (pandas types the index labels as Hashable, which isna does not take)
    for key, n in counts.items():
        text: str | None = None if pd.isna(key) else str(key)
        out[text] = out.get(text, 0.0) + float(n)
    return out


def _as_known(counts: Mapping[str | None, float], known: Sequence[str]) -> dict[str | None, float]:
    """Counts with each value that is a known category written another way counted as that category.

    Another way means surrounding spaces, or the same number within :data:`REL_TOL` (``"1.0"`` for ``"1"``,
    ``"0.5000001"`` for ``"0.5"``: codes that went through a float column); anything else stays unseen.
    """
    known_set = set(known)
    numbers: list[tuple[float, str]] = []
    for category in known:
        number = _finite_number(category)
        if number is not None:
            numbers.append((number, category))
    out: dict[str | None, float] = {}
    for key, n in counts.items():
        target = key
        if key is not None and key not in known_set:
            stripped = key.strip()
            number = _finite_number(stripped)
            if stripped in known_set:
                target = stripped
            elif number is not None:
                close = [c for v, c in numbers if abs(v - number) <= REL_TOL * max(abs(v), abs(number))]
                target = close[0] if len(close) == 1 else key
        out[target] = out.get(target, 0.0) + n
    return out


def _finite_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _category_vector(counts: Mapping[str | None, float], categories: Sequence[str]) -> np.ndarray:
    known = [counts.get(c, 0.0) for c in categories]
    null = counts.get(None, 0.0)
    return np.array([*known, sum(counts.values()) - sum(known) - null, null])


def _proportions(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=float)
    return (counts + SMOOTHING) / (counts.sum() + SMOOTHING * counts.size)


# ---------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------

def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))`` of two bucket-count vectors (smoothed)."""
    e, a = _proportions(expected), _proportions(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(expected: np.ndarray, actual: np.ndarray) -> float:
    """Jensen-Shannon divergence (log base 2, so in [0, 1]) of two bucket-count vectors (smoothed)."""
    e, a = _proportions(expected), _proportions(actual)
    m = 0.5 * (e + a)
    return float(0.5 * np.sum(e * np.log2(e / m)) + 0.5 * np.sum(a * np.log2(a / m)))


def l_infinity(expected: np.ndarray, actual: np.ndarray) -> float:
    """Largest absolute difference of bucket shares (no smoothing)."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.sum() == 0 or a.sum() == 0:
        return float("nan")
    return float(np.max(np.abs(a / a.sum() - e / e.sum())))


# ---------------------------------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------------------------------

def psi_noise_threshold(n_baseline: int, n_current: int, n_buckets: int, alpha: float) -> float:
    """The PSI that same-distribution samples exceed with probability ``alpha``.

    Args:
        n_baseline: Baseline rows.
        n_current: Current rows.
        n_buckets: Buckets holding baseline rows (degrees of freedom + 1).
        alpha: Tail probability for this one check.

    Returns:
        ``(1/n_baseline + 1/n_current)`` times the chi-square quantile with ``n_buckets - 1`` degrees of freedom
        whose upper tail is ``alpha`` (``scipy.stats.chi2.isf``).
    """
    from scipy.stats import chi2

    if n_baseline < 1 or n_current < 1:
        return float("inf")
    return (1.0 / n_baseline + 1.0 / n_current) * float(chi2.isf(alpha, max(1, n_buckets - 1)))


def l_infinity_noise_threshold(expected: np.ndarray, n_current: int, alpha: float) -> float:
    """The L-infinity distance that same-distribution samples exceed with probability about ``alpha``.

    Each share difference has standard error ``sqrt(p (1 - p) (1/n_b + 1/n_c))``; the widest one (the share
    nearest 50%) sets the bound, at the normal quantile of ``alpha`` split over the buckets, both sides.
    """
    from scipy.stats import norm

    e = np.asarray(expected, dtype=float)
    n_baseline = e.sum()
    if n_baseline < 1 or n_current < 1:
        return float("inf")
    p = e / n_baseline
    live = max(2, int(np.count_nonzero(e)))
    z = float(norm.isf(alpha / (2.0 * live)))
    return float(z * math.sqrt(np.max(p * (1.0 - p)) * (1.0 / n_baseline + 1.0 / n_current)))


def rank_shift(baseline: np.ndarray, current: np.ndarray, grid: int = 2000, *,
               drop_zeros: bool = True) -> tuple[float, float]:
    """How far the current values sit above the baseline's, and its standard error under no drift.

    A rank test with normal scores (van der Waerden): baseline and current values are ranked together,
    each rank ``r`` of ``N`` becomes the normal quantile ``Phi^-1(r / (N + 1))``, and the shift is the
    current rows' mean score minus the baseline rows'. It is 0 when neither side tends to be larger, and
    about the shift in standard deviations on the scale that makes the feature normal (0.05: the current
    values sit where a 0.05-SD shift of a normal variable would put them). Being rank-based it sees a shift
    or a scaling of a heavy-tailed feature that moves every bucket only a little, and one huge value cannot
    move it. Normal scores weigh the tails more than the Mann-Whitney (Wilcoxon) ranks, so a 10% scaling of
    this project's features gives a larger z (measured in docs/drift.md), and the permutation variance
    below is exact under no drift whatever the shape. With ``drop_zeros`` (the
    ``rank_shift`` check) nulls and zeros are left out, which sees a scaling of a zero-inflated amount (zeros
    stay zero) at full strength; without it (the ``rank_shift_all`` value) zeros count. Values tied with each
    other share their mean rank. Computed on a grid of baseline quantiles (``grid`` cells; values in one cell
    share its mean rank), so it costs two binary searches instead of a full rank: exact when every distinct
    value falls on a grid point (counts with few values), otherwise a rank coarsened to 1/``grid`` of the
    baseline, which loses next to nothing.

    Args:
        baseline: Baseline values (NaN = null).
        current: Current values (NaN = null).
        grid: Number of quantile cells.
        drop_zeros: Leave zeros out (see above).

    Returns:
        ``(shift, standard_error)``; NaN when a side has no (non-zero) values or all values are tied.
    """
    return _rank_shift_of_sorted(_sorted_finite(baseline), _sorted_finite(current), grid, drop_zeros=drop_zeros)


def _without_zeros(ordered: np.ndarray, atol: float = 0.0) -> np.ndarray:
    lo, hi = np.searchsorted(ordered, -atol, side="left"), np.searchsorted(ordered, atol, side="right")
    return ordered if lo == hi else np.concatenate((ordered[:lo], ordered[hi:]))


def _rank_shift_of_sorted(b: np.ndarray, c: np.ndarray, grid: int = 2000, *,
                          drop_zeros: bool = True) -> tuple[float, float]:
    """:func:`rank_shift` of sorted finite values."""
    atol = zero_tolerance(b)
    if drop_zeros:
        b, c = _without_zeros(b, atol), _without_zeros(c, atol)
    if b.size == 0 or c.size == 0:
        return float("nan"), float("nan")
    distinct = _distinct(b)
    grid_values = np.unique(b[np.linspace(0, b.size - 1, min(grid, b.size)).astype(np.int64)])
    edges = np.unique(_cuts_above(distinct, np.searchsorted(distinct, grid_values), atol))  # off tied values
    kb = _counts_of_sorted(b, edges).astype(float)
    kc = _counts_of_sorted(c, edges).astype(float)
    n_b, n_c = float(b.size), float(c.size)
    cells = kb + kc
    total = n_b + n_c
    mid_rank = np.cumsum(cells) - 0.5 * (cells - 1.0)  # 1-based mean rank of each cell's tied values
    scores = normal_scores(mid_rank, total)
    shift = float(np.dot(kc, scores) / n_c - np.dot(kb, scores) / n_b)
    mean = float(np.dot(cells, scores)) / total
    spread = float(np.dot(cells, (scores - mean) ** 2)) / max(total - 1.0, 1.0)  # permutation variance
    if not spread > 0.0:
        return float("nan"), float("nan")
    return shift, math.sqrt(spread * (1.0 / n_b + 1.0 / n_c))


def normal_scores(rank: np.ndarray, total: float) -> np.ndarray:
    """Van der Waerden scores ``Phi^-1(rank / (total + 1))`` of 1-based (mean) ranks (``scipy.special.ndtri``)."""
    from scipy.special import ndtri

    return ndtri(np.asarray(rank, dtype=float) / (total + 1.0))


def mean_shift(baseline: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """The standardized mean difference (Welch): how far the current mean moved, in baseline standard deviations.

    ``(mean_c - mean_b) / sd_b`` with standard error ``sqrt(var_b / n_b + var_c / n_c) / sd_b``; their ratio
    is Welch's z. It tests the quantity the retraining question is about (did the average customer change?)
    on the raw scale, where a 10% rise of the mean is a 10% rise whatever its shape: the most powerful of the
    four checks for light-tailed features (gamma- or exponential-like days and counts), the weakest for
    heavy-tailed amounts, where the rank checks take over. Nulls are left out.

    Args:
        baseline: Baseline values (NaN = null).
        current: Current values (NaN = null).

    Returns:
        ``(shift, standard_error)``; NaN when a side has fewer than 2 values or the baseline is constant.
    """
    return _mean_shift_of_finite(_sorted_finite(baseline), _sorted_finite(current))


def _mean_shift_of_finite(b: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    if b.size < 2 or c.size < 2:
        return float("nan"), float("nan")
    sd_b = float(b.std(ddof=1))
    if not sd_b > 0.0:
        return float("nan"), float("nan")
    se = math.sqrt(sd_b ** 2 / b.size + float(c.var(ddof=1)) / c.size) / sd_b
    return (float(c.mean()) - float(b.mean())) / sd_b, se


def zero_share(baseline: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """How much the share of zeros moved (current minus baseline), and its standard error under no drift.

    A zero-inflated feature (counts piled at 0, amounts and shares with a mass at 0) is two things: whether a
    customer has any of it, and how much when they do. ``rank_shift`` watches the second; this check
    watches the first, with the two-proportion z test (pooled share). It is the most powerful test of a rare
    count moving off zero: when a few customers get one event more (the refund rate rising by a little for
    everyone), the only thing that changes to first order is how many customers have none. Nulls are left
    out.

    Args:
        baseline: Baseline values (NaN = null).
        current: Current values (NaN = null).

    Returns:
        ``(shift, standard_error)``; NaN when a side has no values or the baseline is all zero or has no zero
        (then there is no share to move, or the rank shift already sees it).
    """
    return _zero_share_of_sorted(_sorted_finite(baseline), _sorted_finite(current))


def _zeros_of_sorted(ordered: np.ndarray, atol: float = 0.0) -> int:
    """Values within ``atol`` of zero (:func:`zero_tolerance`) in a sorted array."""
    return int(np.searchsorted(ordered, atol, side="right") - np.searchsorted(ordered, -atol, side="left"))


def _zero_share_of_sorted(b: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    if b.size == 0 or c.size == 0:
        return float("nan"), float("nan")
    atol = zero_tolerance(b)
    z_b, z_c = _zeros_of_sorted(b, atol), _zeros_of_sorted(c, atol)
    if not 0 < z_b < b.size:
        return float("nan"), float("nan")
    pooled = (z_b + z_c) / (b.size + c.size)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / b.size + 1.0 / c.size))
    return z_c / c.size - z_b / b.size, se


def tilted_weights(values: np.ndarray, change: float) -> np.ndarray | None:
    """Weights on ``values`` that raise their mean by ``change`` (relative) while changing them the least.

    Exponential tilting, ``w_i ∝ exp(t x_i)`` with ``t`` solved for the new mean: of all distributions on
    the baseline's own values with that mean, it is the closest to the baseline (smallest Kullback-Leibler
    divergence). Its PSI is therefore about the smallest PSI any ``change`` shift of the mean can cause,
    whatever its shape (more of the big spenders, everyone a little more, ...), and it never invents values
    the feature cannot take (a count stays a count, a share stays a share).

    Args:
        values: Finite values of a feature.
        change: Relative change of the mean (0.10 = 10%); the mean moves away from zero.

    Returns:
        Weights summing to 1, or ``None`` when the mean is 0 or the shift is impossible (constant values,
        or the new mean beyond the largest value).
    """
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    mean, sd = float(x.mean()), float(x.std())
    target = mean * (1.0 + change)
    if mean == 0.0 or sd == 0.0 or not x.min() < target < x.max():
        return None
    z = (x - mean) / sd

    def weights(t: float) -> np.ndarray:
        w = np.exp(t * z - np.max(t * z))
        return w / w.sum()

    goal = (target - mean) / sd
    t = 0.0
    for _ in range(100):  # Newton on the tilted mean: d mean / dt = tilted variance
        w = weights(t)
        m = float(np.dot(w, z))
        v = float(np.dot(w, z * z)) - m * m
        if abs(m - goal) < 1e-9 * max(1.0, abs(goal)) or v <= 1e-15:
            break
        t -= float(np.clip((m - goal) / v, -1.0, 1.0))
    return weights(t)


class EffectFloors(NamedTuple):
    """``fraction`` of each numeric check's value under the smallest drift worth retraining for."""

    psi: float
    rank_shift: float
    mean_shift: float
    zero_share: float


def effect_floors(baseline: np.ndarray, edges: np.ndarray, change: float, fraction: float,
                  max_rows: int = 100_000) -> EffectFloors:
    """``fraction`` of each check's value under the gentlest ``change`` rise of the feature's mean.

    For the PSI, the rank shift and the zero share the gentlest rise is the baseline tilted by :func:`tilted_weights`;
    any other distribution whose mean is ``change`` higher is at least as far from the baseline, so with
    ``fraction`` 0.5 a 10% shift of any shape sits at about twice the floor or more. For the mean shift it is
    exact: every ``change`` rise moves the mean by ``change * |mean| / sd`` baseline standard deviations.
    Computed on the baseline itself (at most ``max_rows`` rows, seeded), without sampling noise.

    Returns:
        The floors; zeros when the mean cannot move (all zero, constant, or a mean of zero).
    """
    b = np.asarray(baseline, dtype=float)
    ordered = _sorted_finite(b)
    return _effect_floors_of_sorted(ordered, b.size - ordered.size, edges, change, fraction, max_rows)


def _effect_floors_of_sorted(ordered: np.ndarray, n_null: int, edges: np.ndarray, change: float, fraction: float,
                             max_rows: int = 100_000) -> EffectFloors:
    """:func:`effect_floors` of sorted finite values and a count of nulls."""
    n = ordered.size + n_null
    atol = zero_tolerance(ordered)
    if n > max_rows:  # a seeded sample is plenty for a floor; sorted indices keep it sorted
        idx = np.sort(np.random.default_rng(0).integers(0, n, max_rows))
        n_null = int(np.count_nonzero(idx >= ordered.size))
        ordered = ordered[idx[idx < ordered.size]]
    weights = tilted_weights(ordered, change)
    if weights is None:
        return EffectFloors(0.0, 0.0, 0.0, 0.0)
    expected = np.append(_counts_of_sorted(ordered, edges), n_null).astype(float)
    tilted = np.bincount(np.searchsorted(edges, ordered, side="left"), weights=weights * ordered.size,
                         minlength=edges.size + 1)
    psi_floor = psi(expected, np.append(tilted, n_null))
    mean_floor = change * abs(float(ordered.mean())) / float(ordered.std(ddof=1))
    ordered_weights = weights

    def rank_floor(keep: np.ndarray) -> float:
        x = ordered[keep]
        if x.size == 0:
            return 0.0
        _, start, count = np.unique(x, return_index=True, return_counts=True)
        scores = normal_scores(start + 0.5 * (count + 1.0), float(x.size))  # tied values share their mean rank
        score = np.repeat(scores, count)
        w = ordered_weights[keep]
        return abs(float(np.dot(w, score)) / float(w.sum()) - float(np.mean(score)))

    zeros = np.abs(ordered) <= atol
    zero_floor = abs(float(weights[zeros].sum()) - float(np.count_nonzero(zeros)) / ordered.size)
    return EffectFloors(fraction * psi_floor, fraction * rank_floor(~zeros), fraction * mean_floor,
                        fraction * zero_floor)


# ---------------------------------------------------------------------------------------------------
# Per-feature results
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeatureDrift:
    """One row of ``drift_summary.csv``.

    Attributes:
        feature: Column name.
        kind: ``numeric``, ``categorical`` or ``prediction``.
        metric: The metric shown in ``value``/``threshold``: the check furthest past (or closest to) its
            threshold: one of :data:`NUMERIC_CHECKS` for numeric features, ``l_infinity`` for categorical ones.
        value: Its value (NaN when the check could not run).
        threshold: The threshold it is compared with (``value > threshold`` is drift).
        drifted: Whether any check of the feature fired.
        n_baseline: Baseline rows compared.
        n_current: Current rows compared.
        psi: PSI over the buckets (also for categorical features).
        psi_threshold: Threshold of the PSI check (numeric; NaN for categorical, where PSI is informative).
        rank_shift: Rank shift (numeric), signed: above 0 when current values tend to be larger.
        rank_shift_threshold: Threshold of ``abs(rank_shift)``.
        rank_shift_all: Rank shift of all values, zeros included (numeric), signed.
        rank_shift_all_threshold: NaN: the rank shift with zeros is informative, the zero share decides.
        mean_shift: Standardized mean difference, ``(mean_c - mean_b) / sd_b`` (numeric), signed.
        mean_shift_threshold: Threshold of ``abs(mean_shift)``.
        zero_share: Share of zeros, current minus baseline (numeric; NaN when the baseline has no zeros).
        zero_share_threshold: Threshold of ``abs(zero_share)``.
        js: Jensen-Shannon divergence over the same buckets, log base 2 (informative).
        l_infinity: Largest share difference over the buckets.
        threshold_source: Which rule set ``threshold``: ``noise`` (sample size), ``effect`` (half the gentlest
            10% mean shift of this feature), ``floor`` (absolute minimum) or ``override``.
        buckets: Buckets compared (value buckets + unseen/null).
        note: Why a check did not run, or what else was seen.
    """

    feature: str
    kind: DriftKind
    metric: str
    value: float
    threshold: float
    drifted: bool
    n_baseline: int
    n_current: int
    psi: float = float("nan")
    psi_threshold: float = float("nan")
    rank_shift: float = float("nan")
    rank_shift_threshold: float = float("nan")
    rank_shift_all: float = float("nan")
    rank_shift_all_threshold: float = float("nan")
    mean_shift: float = float("nan")
    mean_shift_threshold: float = float("nan")
    zero_share: float = float("nan")
    zero_share_threshold: float = float("nan")
    js: float = float("nan")
    l_infinity: float = float("nan")
    threshold_source: str = ""
    buckets: int = 0
    note: str = ""


def _threshold(name: str, metric: str, noise: float, floors: Sequence[tuple[float, str]],
               policy: DriftPolicy) -> tuple[float, str]:
    """The check's threshold and the rule that set it: an override, else the largest of noise and floors."""
    override = policy.overrides.get(name, {}).get(metric)
    if override is not None:
        return float(override), "override"
    return max([(noise, "noise"), *floors], key=lambda item: item[0])


def _ratio(value: float, threshold: float) -> float:
    if math.isnan(value) or not threshold or math.isnan(threshold):
        return float("-inf")
    return abs(value) / threshold


NUMERIC_CHECKS = ("psi", "rank_shift", "zero_share", "mean_shift")  # those that decide (rank_shift_all: reported)


def check_shares(baseline_sorted: np.ndarray, policy: DriftPolicy) -> dict[str, float]:
    """How a numeric feature's false-alarm probability is split over its checks (shares summing to 1).

    PSI, the omnibus check for any change of shape, gets ``policy.psi_share``; the directional checks,
    which carry the power against a shift of the mean, split the rest evenly. Only checks that can fire
    on their own under no drift are counted: when the baseline has no zeros (or only zeros), the zero share
    does not run and the rank shift with zeros is the rank shift itself (it shares that check's share).
    Decided from the baseline alone, so the thresholds do not depend on the data being judged.
    """
    zeros = _zeros_of_sorted(baseline_sorted, zero_tolerance(baseline_sorted))
    directional = ("rank_shift", "zero_share", "mean_shift") if 0 < zeros < baseline_sorted.size else (
        "rank_shift", "mean_shift")
    each = (1.0 - policy.psi_share) / len(directional)
    return {"psi": policy.psi_share, **dict.fromkeys(directional, each)}


def numeric_drift(name: str, baseline: np.ndarray, current: np.ndarray, policy: DriftPolicy, alpha: float,
                  *, kind: DriftKind = "numeric") -> FeatureDrift:
    """Compares one numeric column (or the prediction) with up to four checks, sharing ``alpha``.

    ``psi`` over baseline-quantile buckets (any change of shape), ``rank_shift`` of the non-zero values (a
    scaling of a zero-inflated amount), ``zero_share`` when the baseline has zeros (a count moving off zero)
    and ``mean_shift``, Welch's standardized mean difference (the mean itself, strongest on light tails).
    Each threshold is the largest of its noise bound at its share of ``alpha`` (:func:`check_shares`), its
    effect floor (:func:`effect_floors`) and its absolute floor, unless overridden; the feature drifted when
    any check exceeds its threshold. ``rank_shift_all`` (with zeros) is reported without a threshold.

    Args:
        name: Column name.
        baseline: Baseline values (NaN = null).
        current: Current values (NaN = null).
        policy: Sensitivity settings.
        alpha: False-alarm probability for this feature.
        kind: ``numeric`` or ``prediction`` (recorded in the row).

    Returns:
        The feature's row; ``metric``/``value``/``threshold`` are those of the check furthest past (or
        closest to) its threshold.
    """
    baseline = np.asarray(baseline, dtype=float)
    current = np.asarray(current, dtype=float)
    n_b, n_c = int(baseline.size), int(current.size)
    b_sorted, c_sorted = _sorted_finite(baseline), _sorted_finite(current)  # one sort each, then binary searches
    edges = _edges_of_sorted(b_sorted, policy.n_bins)
    expected = np.append(_counts_of_sorted(b_sorted, edges), n_b - b_sorted.size).astype(float)
    actual = np.append(_counts_of_sorted(c_sorted, edges), n_c - c_sorted.size).astype(float)
    live = int(np.count_nonzero(expected))
    shares = check_shares(b_sorted, policy)
    from scipy.stats import norm

    zs = {m: float(norm.isf(alpha * share / 2.0)) for m, share in shares.items() if m != "psi"}  # two-sided
    zs.setdefault("zero_share", float("inf"))  # no zeros in the baseline: the check does not run
    floors = _effect_floors_of_sorted(b_sorted, n_b - b_sorted.size, edges, policy.min_effect,
                                      policy.effect_fraction)

    def z_threshold(metric: str, se: float, effect: float, floor: float) -> tuple[float, str]:
        noise = zs[metric] * se if not math.isnan(se) else float("inf")  # two-sided
        return _threshold(name, metric, noise, [(effect, "effect"), (floor, "floor")], policy)

    values: dict[str, float] = {"psi": psi(expected, actual) if n_b and n_c else float("nan")}
    thresholds = {"psi": _threshold(name, "psi", psi_noise_threshold(n_b, n_c, live, alpha * shares["psi"]),
                                    [(floors.psi, "effect"), (policy.psi_floor, "floor")], policy)}
    shift, se = _rank_shift_of_sorted(b_sorted, c_sorted)
    values["rank_shift"] = shift
    thresholds["rank_shift"] = z_threshold("rank_shift", se, floors.rank_shift, policy.rank_shift_floor)
    shift_all, _ = _rank_shift_of_sorted(b_sorted, c_sorted, drop_zeros=False)
    values["rank_shift_all"] = shift_all
    thresholds["rank_shift_all"] = (float("nan"), "informative")  # reported, never decides (zero_share does)
    zero, se_zero = _zero_share_of_sorted(b_sorted, c_sorted)
    values["zero_share"] = zero
    thresholds["zero_share"] = z_threshold("zero_share", se_zero, floors.zero_share, policy.zero_share_floor)
    d, se_d = _mean_shift_of_finite(b_sorted, c_sorted)
    values["mean_shift"] = d
    thresholds["mean_shift"] = z_threshold("mean_shift", se_d, floors.mean_shift, policy.mean_shift_floor)
    fired = {m: bool(abs(values[m]) > thresholds[m][0]) for m in NUMERIC_CHECKS}  # NaN never fires
    top = max(NUMERIC_CHECKS, key=lambda m: _ratio(values[m], thresholds[m][0]))
    note = "" if edges.size else "baseline has no values"
    return FeatureDrift(
        feature=name, kind=kind, metric=top, value=abs(values[top]), threshold=thresholds[top][0],
        drifted=any(fired.values()), n_baseline=n_b, n_current=n_c, psi=values["psi"],
        psi_threshold=thresholds["psi"][0], rank_shift=shift, rank_shift_threshold=thresholds["rank_shift"][0],
        rank_shift_all=shift_all, rank_shift_all_threshold=thresholds["rank_shift_all"][0], mean_shift=d,
        mean_shift_threshold=thresholds["mean_shift"][0], zero_share=zero,
        zero_share_threshold=thresholds["zero_share"][0], js=jensen_shannon(expected, actual),
        l_infinity=l_infinity(expected, actual), threshold_source=thresholds[top][1],
        buckets=int(expected.size), note=note)


def categorical_drift(name: str, baseline: Sequence | np.ndarray | pd.Series,
                      current: Sequence | np.ndarray | pd.Series, policy: DriftPolicy, alpha: float,
                      *, categories: Sequence[str] = ()) -> FeatureDrift:
    """Compares one categorical column with the L-infinity distance of category shares.

    Args:
        name: Column name.
        baseline: Baseline values (None/NaN = null).
        current: Current values.
        policy: Sensitivity settings.
        alpha: False-alarm probability for this feature.
        categories: Known categories (the schema's); the baseline's own values are added.

    Returns:
        The feature's row; ``value`` is the L-infinity distance; ``note`` names unseen categories.
    """
    base_counts = _value_counts(baseline)
    known = sorted(set(categories) | {k for k in base_counts if k is not None})
    cur_counts = _as_known(_value_counts(current), known)
    expected = _category_vector(base_counts, known)
    actual = _category_vector(cur_counts, known)
    n_b, n_c = int(expected.sum()), int(actual.sum())
    threshold, source = _threshold(name, "l_infinity", l_infinity_noise_threshold(expected, n_c, alpha),
                                   [(policy.l_infinity_floor, "floor")], policy)
    value = l_infinity(expected, actual)
    unseen = sorted(k for k in cur_counts if k is not None and k not in set(known))
    note = f"unseen categories: {', '.join(unseen[:10])}{' …' if len(unseen) > 10 else ''}" if unseen else ""
    return FeatureDrift(
        feature=name, kind="categorical", metric="l_infinity", value=value, threshold=threshold,
        drifted=bool(value > threshold), n_baseline=n_b, n_current=n_c, psi=psi(expected, actual),
        js=jensen_shannon(expected, actual), l_infinity=value, threshold_source=source,
        buckets=int(expected.size), note=note)


def skipped(name: str, kind: DriftKind, metric: str, note: str, n_baseline: int = 0,
            n_current: int = 0) -> FeatureDrift:
    """A row for a check that could not run (missing column, no reference predictions)."""
    nan = float("nan")
    return FeatureDrift(feature=name, kind=kind, metric=metric, value=nan, threshold=nan, drifted=False,
                        n_baseline=n_baseline, n_current=n_current, note=note)


def per_check_alpha(policy: DriftPolicy, n_checks: int) -> float:
    """The run-level false-alarm budget split evenly over ``n_checks`` checks (Bonferroni)."""
    return policy.false_alarm_rate / max(1, n_checks)


def compare(baseline: pd.DataFrame, current: pd.DataFrame, *, numeric: Sequence[str],
            categorical: Mapping[str, Sequence[str]] | Sequence[str], policy: DriftPolicy,
            prediction: tuple[np.ndarray, np.ndarray] | None = None,
            prediction_name: str = "churn_probability",
            left_out: Mapping[str, tuple[np.ndarray | None, np.ndarray | None]] | None = None) -> list[FeatureDrift]:
    """Compares every feature present in both frames, and optionally the prediction.

    Args:
        baseline: Baseline rows (numeric columns as floats, categorical as text).
        current: Current rows.
        numeric: Numeric feature names.
        categorical: Categorical feature names, or a mapping name → known categories.
        policy: Sensitivity settings.
        prediction: ``(baseline_scores, current_scores)`` to compare as the prediction, if available.
        prediction_name: Name of the prediction row.
        left_out: Per numeric feature, ``(baseline_rows, current_rows)`` masks (or None) of rows to leave out
            of that feature's comparison: values that could not be read, which are neither data nor missing.

    Returns:
        One :class:`FeatureDrift` per feature (numeric first, in the given order) and one for the
        prediction when given; a feature missing from either frame gets a skipped row.
    """
    cats = categorical if isinstance(categorical, Mapping) else dict.fromkeys(categorical, ())
    alpha = per_check_alpha(policy, len(numeric) + len(cats) + (1 if prediction is not None else 0))
    def one_numeric(name: str) -> FeatureDrift:
        missing = [side for side, frame in (("baseline", baseline), ("current", current)) if name not in frame]
        if missing:
            return skipped(name, "numeric", "psi", f"column missing from the {' and '.join(missing)} data")
        b, c = baseline[name].to_numpy(dtype=float), current[name].to_numpy(dtype=float)
        skip_b, skip_c = (left_out or {}).get(name, (None, None))
        return numeric_drift(name, b if skip_b is None else b[~skip_b], c if skip_c is None else c[~skip_c],
                             policy, alpha)

    # numpy sorts and searches without the GIL: features in parallel threads use every core.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        rows: list[FeatureDrift] = list(pool.map(one_numeric, numeric))
    for name, known in cats.items():
        missing = [side for side, frame in (("baseline", baseline), ("current", current)) if name not in frame]
        if missing:
            rows.append(skipped(name, "categorical", "l_infinity",
                                f"column missing from the {' and '.join(missing)} data"))
            continue
        rows.append(categorical_drift(name, baseline[name], current[name], policy, alpha, categories=known))
    if prediction is not None:
        rows.append(numeric_drift(prediction_name, prediction[0], prediction[1], policy, alpha, kind="prediction"))
    return rows


# ---------------------------------------------------------------------------------------------------
# Distributions for the report
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Distribution:
    """Baseline and current rows per bucket of one feature, as the checks saw them (for the report's plots).

    Attributes:
        feature: Column name.
        labels: One label per bucket: ``≤ edge`` / ``> edge`` for numeric buckets, the category, ``<unseen>``
            or ``<null>``.
        baseline: Baseline rows per bucket.
        current: Current rows per bucket.
    """

    feature: str
    labels: list[str]
    baseline: list[float]
    current: list[float]


def numeric_distribution(name: str, baseline: np.ndarray, current: np.ndarray, n_bins: int) -> Distribution:
    """Rows per baseline-quantile bucket (the PSI's buckets), with nulls; buckets empty on both sides left out.

    Args:
        name: Column name.
        baseline: Baseline values (NaN = null).
        current: Current values (NaN = null).
        n_bins: Wanted number of buckets (``DriftPolicy.n_bins``).

    Returns:
        The distribution; the baseline holds about the same share in every value bucket by construction.
    """
    edges = quantile_edges(baseline, n_bins)
    labels = [f"≤ {e:.4g}" for e in edges] + ([f"> {edges[-1]:.4g}"] if edges.size else ["all"]) + [NULL]
    return _non_empty(name, labels, numeric_counts(baseline, edges), numeric_counts(current, edges))


def categorical_distribution(name: str, baseline: Sequence | np.ndarray | pd.Series,
                             current: Sequence | np.ndarray | pd.Series,
                             categories: Sequence[str] = ()) -> Distribution:
    """Rows per category (known categories as :func:`categorical_drift` counts them), unseen and null.

    Args:
        name: Column name.
        baseline: Baseline values (None/NaN = null).
        current: Current values.
        categories: Known categories (the schema's); the baseline's own values are added.

    Returns:
        The distribution; buckets empty on both sides left out.
    """
    base_counts = _value_counts(baseline)
    known = sorted(set(categories) | {k for k in base_counts if k is not None})
    return _non_empty(name, [*known, UNSEEN, NULL], _category_vector(base_counts, known),
                      _category_vector(_as_known(_value_counts(current), known), known))


def _non_empty(name: str, labels: Sequence[str], baseline: np.ndarray, current: np.ndarray) -> Distribution:
    keep = (np.asarray(baseline) > 0) | (np.asarray(current) > 0)
    return Distribution(feature=name, labels=[label for label, k in zip(labels, keep, strict=True) if k],
                        baseline=[float(v) for v in np.asarray(baseline)[keep]],
                        current=[float(v) for v in np.asarray(current)[keep]])


# ---------------------------------------------------------------------------------------------------
# Performance decay (labels joined to past predictions)
# ---------------------------------------------------------------------------------------------------

def classification_metrics(y_true: np.ndarray, scores: np.ndarray,
                           decisions: np.ndarray | None = None) -> dict[str, float]:
    """ROC AUC, PR AUC (scikit-learn), Brier score, log loss, and F1/precision/recall of the logged decisions.

    Args:
        y_true: Observed 0/1 outcomes.
        scores: Predicted churn probabilities.
        decisions: The 0/1 decisions that were served (omitted: no F1).

    Returns:
        Metrics named as in the training pipeline's ``metrics.json``, plus ``n``; ROC AUC is NaN without both
        classes, PR AUC without a positive.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(scores, dtype=float), 1e-15, 1 - 1e-15)
    n_pos = int(y.sum())
    out = {
        "roc_auc": float(roc_auc_score(y, p)) if 0 < n_pos < y.size else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if n_pos else float("nan"),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "base_rate": float(y.mean()) if y.size else float("nan"),
        "n": int(y.size),
    }
    if decisions is not None:
        d = np.asarray(decisions).astype(int)
        tp = int(np.sum((d == 1) & (y == 1)))
        precision = tp / max(1, int(d.sum()))
        recall = tp / max(1, int(y.sum()))
        out.update(precision=precision, recall=recall,
                   f1=0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return out


@dataclass(frozen=True)
class PerformanceCheck:
    """Model performance on predictions whose outcomes are now known, against validation.

    Attributes:
        current: Metrics on the labelled predictions.
        reference: The model's validation metrics.
        auc_drop: Validation ROC AUC minus current ROC AUC.
        threshold: The allowed drop.
        decayed: Whether the drop exceeds the threshold.
        note: Why the check did not judge (too few labels, one class only, no reference).
    """

    current: dict[str, float]
    reference: dict[str, float]
    auc_drop: float
    threshold: float
    decayed: bool
    note: str = ""


def performance_check(y_true: np.ndarray, scores: np.ndarray, decisions: np.ndarray | None,
                      reference: Mapping[str, float], policy: DriftPolicy) -> PerformanceCheck:
    """Judges performance decay from labelled predictions.

    Args:
        y_true: Observed 0/1 outcomes of past predictions.
        scores: Their logged churn probabilities.
        decisions: Their logged decisions (optional).
        reference: Validation metrics of the model (needs ``roc_auc``).
        policy: ``max_auc_drop`` and ``min_labelled_rows``.

    Returns:
        The check; ``decayed`` only when there were enough labels of both classes and a reference AUC.
    """
    current = classification_metrics(y_true, scores, decisions)
    ref = {k: float(v) for k, v in reference.items() if isinstance(v, (int, float))}
    ref_auc = ref.get("roc_auc", float("nan"))
    drop = ref_auc - current["roc_auc"]
    note = ""
    if current["n"] < policy.min_labelled_rows:
        note = f"only {current['n']} labelled predictions (need {policy.min_labelled_rows})"
    elif math.isnan(current["roc_auc"]):
        note = "the labelled predictions hold one class only"
    elif math.isnan(ref_auc):
        note = "no validation roc_auc to compare with"
    decayed = not note and drop > policy.max_auc_drop
    return PerformanceCheck(current=current, reference=ref, auc_drop=float(drop), threshold=policy.max_auc_drop,
                            decayed=bool(decayed), note=note)


# ---------------------------------------------------------------------------------------------------
# Decision
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """The run-level verdict.

    Attributes:
        status: ``drift``, ``no_drift``, ``insufficient_data``, or ``bad_input`` (set by the command when an
            input does not match the schema).
        retrain: Whether to start a training run.
        reason: One sentence a person can act on.
        drifted_features: Features (and ``churn_probability``) that drifted, most drifted first.
        prediction_drift: Whether the prediction drifted.
        performance_decay: Whether labelled predictions show decay.
    """

    status: Status
    retrain: bool
    reason: str
    drifted_features: list[str]
    prediction_drift: bool
    performance_decay: bool


def _describe(row: FeatureDrift) -> str:
    return f"{row.feature} ({row.metric} {row.value:.4g} > {row.threshold:.4g})"


def decide(rows: Sequence[FeatureDrift], n_current: int, policy: DriftPolicy,
           performance: PerformanceCheck | None = None) -> Decision:
    """Retrain when any feature or the prediction drifted, or performance decayed.

    Args:
        rows: Per-feature results.
        n_current: Current rows.
        policy: ``min_rows``.
        performance: The performance check, if labels were given.

    Returns:
        The decision; below ``min_rows`` current rows it is ``insufficient_data`` and never retrains
        (unless performance decayed, which is judged on its own sample).
    """
    decayed = bool(performance and performance.decayed)
    perf_reason = (f"ROC AUC on {performance.current['n']} labelled predictions is "
                   f"{performance.current['roc_auc']:.3f}, {performance.auc_drop:.3f} below validation "
                   f"(allowed {performance.threshold:.3f})") if decayed and performance else ""
    if n_current < policy.min_rows:
        reason = (f"only {n_current} current rows; drift is judged from {policy.min_rows} rows "
                  f"(--min-rows)")
        return Decision("insufficient_data", decayed, f"{perf_reason}; {reason}" if decayed else reason,
                        [], False, decayed)
    drifted = sorted((r for r in rows if r.drifted), key=lambda r: -(r.value / r.threshold if r.threshold else 0))
    prediction = any(r.kind == "prediction" for r in drifted)
    parts = []
    features = [r for r in drifted if r.kind != "prediction"]
    checked = sum(1 for r in rows if r.kind != "prediction" and not math.isnan(r.value))
    if features:
        parts.append(f"{len(features)} of {checked} features drifted: "
                     + ", ".join(_describe(r) for r in features[:5]) + (" …" if len(features) > 5 else ""))
    if prediction:
        parts.append("the prediction drifted: " + _describe(next(r for r in drifted if r.kind == "prediction")))
    if perf_reason:
        parts.append(perf_reason)
    if parts:
        return Decision("drift", True, "retrain: " + "; ".join(parts), [r.feature for r in drifted],
                        prediction, decayed)
    return Decision("no_drift", False, f"no drift in {checked} features"
                    + (" or the prediction" if any(r.kind == "prediction" and not math.isnan(r.value) for r in rows)
                       else ""), [], False, False)
