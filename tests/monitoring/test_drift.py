"""The pure drift functions: buckets, metrics, thresholds, performance and the decision."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from monitoring import drift as D

# --------------------------------------------------------------------------------------------------
# Buckets
# --------------------------------------------------------------------------------------------------

def test_quantile_edges_give_a_point_mass_its_own_bucket():
    rng = np.random.default_rng(0)
    values = np.where(rng.random(10_000) < 0.4, 0.0, rng.gamma(2.0, 10.0, 10_000))  # 40% zeros
    edges = D.quantile_edges(values, 20)
    counts = D.numeric_counts(values, edges)
    assert 0.0 < edges[0] < values[values > 0].min(), "the first edge lies between 0 and the next value"
    assert counts[0] == np.sum(values == 0.0)
    assert counts[-1] == 0, "no nulls"
    assert np.all(counts[1:-2] >= 0.5 * values.size / 20), "no bucket under half an average bucket"


def test_quantile_edges_on_a_count_with_few_values_merge_the_thin_tail():
    values = np.array([0] * 800 + [1] * 150 + [2] * 40 + [3] * 8 + [7] * 2, dtype=float)
    edges = D.quantile_edges(values, 20)
    counts = D.numeric_counts(values, edges)[:-1]
    assert counts.sum() == values.size
    assert counts[counts > 0].min() >= 25, counts  # 3s and 7s joined the 2s


def test_constant_baseline_keeps_a_bucket_above_it():
    edges = D.quantile_edges(np.full(1000, 5.0), 20)
    assert edges.size == 1 and 5.0 * (1 + 1e-6) < edges[0] < 5.001, "the edge sits just above the value"
    assert list(D.numeric_counts(np.array([5.0, 6.0, np.nan]), edges)) == [1, 1, 1]


def test_categorical_counts_keep_unseen_values_and_nulls_apart():
    counts = D.categorical_counts(pd.Series(["a", "b", "a", "zz", None]), ["a", "b"])
    assert list(counts) == [2, 1, 1, 1]


# --------------------------------------------------------------------------------------------------
# Metrics and thresholds
# --------------------------------------------------------------------------------------------------

def test_metrics_are_zero_for_identical_and_grow_with_difference():
    e = np.array([100.0, 100.0, 100.0, 100.0])
    assert D.psi(e, e) == 0.0 and D.jensen_shannon(e, e) == 0.0 and D.l_infinity(e, e) == 0.0
    small, large = np.array([110.0, 90.0, 100.0, 100.0]), np.array([200.0, 10.0, 100.0, 90.0])
    assert 0 < D.psi(e, small) < D.psi(e, large)
    assert 0 < D.jensen_shannon(e, small) < D.jensen_shannon(e, large) <= 1.0
    assert D.l_infinity(e, large) == pytest.approx(0.25)
    assert D.psi(e, large) == pytest.approx(D.psi(large, e))  # PSI is symmetric


def test_disjoint_distributions_reach_the_js_maximum():
    assert D.jensen_shannon(np.array([1e6, 0.0]), np.array([0.0, 1e6])) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(("alpha", "buckets", "quantile"), [
    (0.05, 2, 3.8415), (0.001, 2, 10.828), (0.05, 3, 5.9915), (0.01, 11, 23.209), (0.001, 20, 43.820),
    (1e-4, 4, 21.108),  # chi-square tables (upper tail alpha, buckets - 1 degrees of freedom)
])
def test_psi_noise_threshold_is_the_chi_square_quantile(alpha: float, buckets: int, quantile: float):
    assert D.psi_noise_threshold(1, 1, buckets, alpha) == pytest.approx(2 * quantile, abs=2e-3)


@pytest.mark.parametrize("alpha", [1e-3, 1e-4, 3.6e-6, 1e-8])
def test_psi_noise_threshold_is_exact_at_three_degrees_of_freedom(alpha: float):
    """Chi-square(3) has a closed-form tail, ``2 (1 - Phi(sqrt x)) + sqrt(2 x / pi) exp(-x / 2)``: the threshold's
    quantile has exactly ``alpha`` above it (the Wilson-Hilferty approximation put it 2-7% too high here)."""
    from statistics import NormalDist

    x = D.psi_noise_threshold(1, 1, 4, alpha) / 2.0
    tail = 2.0 * (1.0 - NormalDist().cdf(math.sqrt(x))) + math.sqrt(2.0 * x / math.pi) * math.exp(-x / 2.0)
    assert tail == pytest.approx(alpha, rel=1e-6)


def test_noise_thresholds_shrink_with_sample_size():
    small = D.psi_noise_threshold(1_000, 1_000, 20, 1e-4)
    big = D.psi_noise_threshold(100_000, 100_000, 20, 1e-4)
    assert big == pytest.approx(small / 100)
    e = np.array([500.0, 300.0, 200.0])
    assert D.l_infinity_noise_threshold(e * 100, 100_000, 1e-4) < D.l_infinity_noise_threshold(e, 1_000, 1e-4)


def test_floor_and_override_set_the_threshold():
    rng = np.random.default_rng(1)
    base, cur = rng.gamma(2.0, 1.0, 1_000_000), rng.gamma(2.0, 1.0, 1_000_000)
    row = D.numeric_drift("x", base, cur, D.DriftPolicy(), 1e-4)
    noise = D.psi_noise_threshold(base.size, cur.size, 20, 5e-5)
    assert row.threshold_source == "effect" and row.psi_threshold > 10 * noise, \
        "a million rows: half a 10% shift of this feature, not the noise, decides"
    assert not row.drifted
    shifted = D.numeric_drift("x", base, cur * 1.1, D.DriftPolicy(), 1e-4)
    assert shifted.drifted and shifted.value / shifted.threshold > 1.8, "a 10% shift sits at ~2x the floor or more"
    pinned = D.numeric_drift("x", base, cur, D.DriftPolicy(overrides={"x": {"psi": 1e-9}}), 1e-4)
    assert pinned.psi_threshold == 1e-9 and pinned.drifted and pinned.threshold_source == "override"


def test_tilting_raises_the_mean_by_exactly_the_change_on_the_baseline_values():
    rng = np.random.default_rng(5)
    for values in (rng.poisson(0.3, 50_000).astype(float), rng.gamma(0.5, 100.0, 50_000),
                   rng.normal(-0.2, 1.0, 50_000)):
        w = D.tilted_weights(values, 0.10)
        assert w is not None and w.sum() == pytest.approx(1.0)
        assert float(np.dot(w, values)) == pytest.approx(1.1 * values.mean(), rel=1e-4)
    assert D.tilted_weights(np.zeros(100), 0.1) is None
    assert D.tilted_weights(np.ones(100), 0.1) is None


def test_effect_floor_is_below_what_any_10_percent_shift_causes():
    rng = np.random.default_rng(6)
    base = np.where(rng.random(100_000) < 0.3, 0.0, rng.gamma(1.5, 40.0, 100_000))
    edges = D.quantile_edges(base, 20)
    floors = D.effect_floors(base, edges, 0.10, 0.5)
    expected = D.numeric_counts(base, edges)
    for moved in (base * 1.1, base + 0.1 * base.mean(), np.where(base > 80, base * 1.3, base)):
        assert moved.mean() >= 1.09 * base.mean()
        assert D.psi(expected, D.numeric_counts(moved, edges)) > 1.8 * floors.psi
        assert abs(D.mean_shift(base, moved)[0]) > 1.8 * floors.mean_shift
    assert floors.mean_shift == pytest.approx(0.05 * base.mean() / base.std(ddof=1))


def test_mean_shift_is_welchs_standardized_difference():
    rng = np.random.default_rng(8)
    base, cur = rng.normal(10.0, 2.0, 40_000), rng.normal(10.2, 4.0, 10_000)
    d, se = D.mean_shift(base, np.append(cur, np.nan))
    assert d == pytest.approx((cur.mean() - base.mean()) / base.std(ddof=1))
    assert se == pytest.approx(np.sqrt(base.var(ddof=1) / base.size + cur.var(ddof=1) / cur.size) / base.std(ddof=1))
    assert d / se > 4
    assert all(math.isnan(v) for v in D.mean_shift(np.ones(100), cur))


def test_rank_shift_with_zeros_sees_a_rare_count_moving_off_zero():
    """A few more customers with one refund: the non-zero ranks barely move, the ranks with zeros do."""
    rng = np.random.default_rng(9)
    base, cur = rng.poisson(0.3, 100_000).astype(float), rng.poisson(0.3, 10_000).astype(float)
    moved = cur + (rng.random(cur.size) < 0.03)
    nonzero, nonzero_se = D.rank_shift(base, moved)
    with_zeros, with_zeros_se = D.rank_shift(base, moved, drop_zeros=False)
    assert with_zeros / with_zeros_se > 5 > abs(nonzero / nonzero_se)
    row = D.numeric_drift("refund_count", base, moved, D.DriftPolicy(), 1e-4)
    assert row.drifted and abs(row.zero_share) > row.zero_share_threshold
    assert math.isnan(row.rank_shift_all_threshold)  # informative since the zero share decides


def test_a_million_rows_do_not_alarm_on_a_2_percent_scaling_but_do_on_10_percent():
    """The trade-off of the effect floors: at 1M rows noise is tiny, so half of a 10% mean shift decides."""
    rng = np.random.default_rng(10)
    base, cur = rng.gamma(2.0, 30.0, 1_000_000), rng.gamma(2.0, 30.0, 1_000_000)
    small = D.numeric_drift("amount", base, cur * 1.02, D.DriftPolicy(), 1e-4)
    assert not small.drifted and small.threshold_source == "effect", small
    assert D.numeric_drift("amount", base, cur * 1.10, D.DriftPolicy(), 1e-4).drifted


def _van_der_waerden(base: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """The normal-scores statistic by a full ranking (ties get their mean rank), for comparison."""
    from statistics import NormalDist

    pooled = np.concatenate((base, cur))
    order = np.argsort(pooled, kind="stable")
    ranks = np.empty(pooled.size)
    ranks[order] = np.arange(1, pooled.size + 1)
    for value in np.unique(pooled):  # ties: mean rank
        tied = pooled == value
        ranks[tied] = ranks[tied].mean()
    scores = np.array([NormalDist().inv_cdf(r / (pooled.size + 1)) for r in ranks])
    shift = scores[base.size:].mean() - scores[:base.size].mean()
    return shift, math.sqrt(scores.var(ddof=1) * (1 / base.size + 1 / cur.size))


def test_rank_shift_is_the_normal_scores_statistic_with_its_permutation_standard_error():
    """Exact on features with fewer distinct values than the grid (counts), ties included."""
    rng = np.random.default_rng(4)
    base = rng.negative_binomial(2, 0.3, 2_000).astype(float)  # <= grid rows: every value is a cell edge
    cur = rng.negative_binomial(2, 0.27, 1_000).astype(float)
    cur = cur[np.isin(cur, base)]  # values the baseline lacks share a cell with their neighbour (approximate)
    expected = _van_der_waerden(base, cur)
    assert D.rank_shift(base, cur, drop_zeros=False) == pytest.approx(expected, rel=1e-9)
    nonzero = _van_der_waerden(base[base != 0], cur[cur != 0])
    assert D.rank_shift(base, cur) == pytest.approx(nonzero, rel=1e-9)
    assert expected[0] / expected[1] > 3  # the shifted sample sits higher
    assert all(math.isnan(v) for v in D.rank_shift(np.ones(50), np.ones(20), drop_zeros=False))  # all tied


def test_rank_shift_is_standard_normal_on_unchanged_data():
    """Under no drift z = shift / se is ~N(0, 1) (the thresholds are its quantiles): 400 seeded pairs."""
    rng = np.random.default_rng(5)
    z = []
    for _ in range(400):
        base, cur = rng.lognormal(3.0, 1.2, 5_000), rng.lognormal(3.0, 1.2, 1_000)
        shift, se = D.rank_shift(base, cur)
        z.append(shift / se)
    z = np.array(z)
    assert abs(z.mean()) < 0.15 and 0.85 < z.std() < 1.15
    assert np.mean(np.abs(z) > 1.96) < 0.09


def test_normal_scores_are_the_exact_normal_quantiles_of_the_ranks():
    from statistics import NormalDist

    total = 1_000_000.0
    rank = np.concatenate((np.linspace(1.0, total, 20_001), [1.5, 24_250.0, 500_000.5, 975_750.0]))
    expected = np.array([NormalDist().inv_cdf(r / (total + 1.0)) for r in rank])
    assert np.max(np.abs(D.normal_scores(rank, total) - expected)) < 1e-12


def test_rank_shift_sees_a_scaling_and_ignores_zeros():
    rng = np.random.default_rng(2)
    base = np.where(rng.random(20_000) < 0.5, 0.0, rng.lognormal(3.0, 1.0, 20_000))
    same = np.where(rng.random(20_000) < 0.5, 0.0, rng.lognormal(3.0, 1.0, 20_000))
    scaled = 1.2 * same
    s0, se = D.rank_shift(base, same)
    s1, _ = D.rank_shift(base, scaled)
    assert abs(s0) < 4 * se
    assert s1 > 8 * se
    # all-zero or null current values: nothing to rank
    assert math.isnan(D.rank_shift(base, np.zeros(10))[0])
    assert not math.isnan(D.rank_shift(base, np.zeros(10), drop_zeros=False)[0])


def test_js_of_a_30_percent_shift_is_far_below_vertex_default_but_the_calibrated_check_sees_it():
    """The issue's finding: JS of a 30% larger gamma amount is a few hundredths, bucketed either way, so the
    fixed 0.3 never fires; a threshold from the sample size does, and stays quiet on unchanged data."""
    rng = np.random.default_rng(3)
    base = rng.gamma(2.0, 50.0, 200_000)
    same = rng.gamma(2.0, 50.0, 200_000)
    shifted = rng.gamma(2.0, 50.0, 200_000) * 1.3
    width_edges = np.linspace(min(base.min(), shifted.min()), max(base.max(), shifted.max()), 11)[1:-1]
    equal_width_js = D.jensen_shannon(D.numeric_counts(base, width_edges), D.numeric_counts(shifted, width_edges))
    row = D.numeric_drift("amount", base, shifted, D.DriftPolicy(), 1e-4)
    assert equal_width_js < 0.05 and row.js < 0.05, "Vertex's default threshold 0.3 would never fire"
    assert row.drifted and row.psi > 10 * row.psi_threshold
    assert not D.numeric_drift("amount", base, same, D.DriftPolicy(), 1e-4).drifted


def test_categorical_drift_names_unseen_categories():
    base = pd.Series(["a"] * 600 + ["b"] * 400)
    cur = pd.Series(["a"] * 500 + ["b"] * 400 + ["c"] * 100)
    row = D.categorical_drift("plan", base, cur, D.DriftPolicy(), 1e-3, categories=("a", "b"))
    assert row.drifted and row.metric == "l_infinity"
    assert row.value == pytest.approx(0.1)
    assert "c" in row.note


def test_compare_skips_missing_columns_and_adds_the_prediction():
    base = pd.DataFrame({"x": np.arange(2000.0), "k": ["a", "b"] * 1000})
    cur = pd.DataFrame({"k": ["a", "b"] * 1000})
    rows = D.compare(base, cur, numeric=["x"], categorical=["k"], policy=D.DriftPolicy(),
                     prediction=(np.linspace(0, 1, 2000), np.linspace(0, 1, 2000) ** 0.5))
    by_name = {r.feature: r for r in rows}
    assert math.isnan(by_name["x"].value) and "missing from the current" in by_name["x"].note
    assert not by_name["k"].drifted
    assert by_name["churn_probability"].kind == "prediction" and by_name["churn_probability"].drifted


# --------------------------------------------------------------------------------------------------
# Performance
# --------------------------------------------------------------------------------------------------

def test_roc_auc_and_average_precision_match_known_values():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    metrics = D.classification_metrics(y, s)
    assert metrics["roc_auc"] == pytest.approx(0.75)  # scikit-learn's doc example
    assert metrics["pr_auc"] == pytest.approx(0.8333333)  # ditto
    assert D.classification_metrics(y, np.array([0.5, 0.5, 0.5, 0.5]))["roc_auc"] == 0.5
    one_class = D.classification_metrics(np.array([1, 1]), np.array([0.2, 0.3]))
    assert math.isnan(one_class["roc_auc"]) and one_class["pr_auc"] == 1.0
    assert math.isnan(D.classification_metrics(np.array([0, 0]), np.array([0.2, 0.3]))["pr_auc"])


def test_performance_decay_needs_enough_labels_and_a_real_drop():
    rng = np.random.default_rng(4)
    p = rng.random(5_000)
    y = (rng.random(5_000) < p).astype(int)
    policy = D.DriftPolicy()
    good = D.performance_check(y, p, (p > 0.5).astype(int), {"roc_auc": 0.84}, policy)
    assert not good.decayed and good.current["roc_auc"] == pytest.approx(0.83, abs=0.02)
    assert 0 < good.current["f1"] < 1
    bad = D.performance_check(rng.permutation(y), p, None, {"roc_auc": 0.84}, policy)
    assert bad.decayed and bad.auc_drop > 0.25
    few = D.performance_check(y[:50], p[:50], None, {"roc_auc": 0.99}, policy)
    assert not few.decayed and "only 50" in few.note


# --------------------------------------------------------------------------------------------------
# Decision
# --------------------------------------------------------------------------------------------------

def _row(name: str, drifted: bool, kind: str = "numeric") -> D.FeatureDrift:
    return D.FeatureDrift(feature=name, kind=kind, metric="psi", value=0.5 if drifted else 0.001, threshold=0.01,
                          drifted=drifted, n_baseline=5000, n_current=5000)


def test_decide_retrains_on_drift_and_explains_why():
    d = D.decide([_row("a", False), _row("b", True), _row("churn_probability", True, "prediction")], 5000,
                 D.DriftPolicy())
    assert d.retrain and d.status == "drift" and d.prediction_drift
    assert d.drifted_features == ["b", "churn_probability"]
    assert "1 of 2 features drifted: b (psi 0.5 > 0.01)" in d.reason and "the prediction drifted" in d.reason


def test_decide_no_drift_and_insufficient_data():
    assert D.decide([_row("a", False)], 5000, D.DriftPolicy()).status == "no_drift"
    small = D.decide([_row("a", True)], 999, D.DriftPolicy())
    assert small.status == "insufficient_data" and not small.retrain and "999 current rows" in small.reason


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="false_alarm_rate"):
        D.DriftPolicy(false_alarm_rate=1.5)
    with pytest.raises(ValueError, match="n_bins"):
        D.DriftPolicy(n_bins=1)


def test_zero_share_is_the_two_proportion_test_and_runs_only_with_zeros():
    rng = np.random.default_rng(12)
    base = np.where(rng.random(50_000) < 0.4, 0.0, rng.gamma(2.0, 10.0, 50_000))
    cur = np.where(rng.random(10_000) < 0.37, 0.0, rng.gamma(2.0, 10.0, 10_000))
    shift, se = D.zero_share(base, np.append(cur, np.nan))
    p_b, p_c = np.mean(base == 0), np.mean(cur == 0)
    pooled = (np.sum(base == 0) + np.sum(cur == 0)) / (base.size + cur.size)
    assert shift == pytest.approx(p_c - p_b)
    assert se == pytest.approx(np.sqrt(pooled * (1 - pooled) * (1 / base.size + 1 / cur.size)))
    assert shift / se < -5
    assert math.isnan(D.zero_share(base + 1.0, cur)[0])  # no zeros in the baseline: no share to move


def test_check_shares_give_psi_its_share_and_split_the_rest_over_the_checks_that_run():
    policy = D.DriftPolicy()
    with_zeros = D.check_shares(np.sort(np.r_[np.zeros(10), np.arange(1.0, 91.0)]), policy)
    without = D.check_shares(np.arange(1.0, 101.0), policy)
    for shares in (with_zeros, without):
        assert sum(shares.values()) == pytest.approx(1.0) and shares["psi"] == policy.psi_share
    assert set(with_zeros) == {"psi", "rank_shift", "zero_share", "mean_shift"}
    assert set(without) == {"psi", "rank_shift", "mean_shift"}
