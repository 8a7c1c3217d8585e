"""Calibration: the drift check sees a 10% mean shift and a 5-point category shift, and stays quiet otherwise.

Seeded trials on generated feature tables (``tests/monitoring/calibration.py`` defines the scenarios;
``python -m tests.monitoring.calibration`` prints the rates quoted in the README). Each trial draws a fresh
baseline and a fresh current sample. Detection is asserted in at least 19 of 20 trials per feature.

Two features groups need more than 10k rows, for a statistical reason, not a tuning one (see the README):
scaling every value by 1.1 moves the widest features (log-scale spread 1.4-1.7) by ~0.06 standard deviations,
and adding 10% of the mean to a rare count (0.3 refunds per customer) changes 2% of the rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.drift import DriftPolicy
from tests.monitoring.calibration import (CATEGORIES, SCHEMA, WIDE_FEATURES, categorical_detection, false_alarms,
                                          numeric_detection)

TRIALS = 20
MIN_HITS = 19
RARE_COUNTS = ("refund_count",)

SCENARIOS = [
    ("scale", 10_000, tuple(n for n in SCHEMA.numeric if n not in WIDE_FEATURES)),
    ("scale", 30_000, WIDE_FEATURES),
    ("location", 10_000, tuple(n for n in SCHEMA.numeric if n not in RARE_COUNTS)),
    ("location", 40_000, RARE_COUNTS),
]


@pytest.mark.parametrize(("mode", "n", "names"), SCENARIOS, ids=[f"{m}-{n}" for m, n, _ in SCENARIOS])
def test_a_10_percent_mean_shift_of_any_numeric_feature_is_flagged(mode: str, n: int, names: tuple[str, ...]):
    ratios = numeric_detection(n, TRIALS, names=names, mode=mode, seed=1)
    missed = {name: int(np.sum(np.array(r) <= 1.0)) for name, r in ratios.items()}
    assert all(TRIALS - m >= MIN_HITS for m in missed.values()), \
        {name: f"flagged {TRIALS - m}/{TRIALS}" for name, m in missed.items() if TRIALS - m < MIN_HITS}


def test_every_numeric_feature_is_covered_by_a_scenario():
    for mode in ("scale", "location"):
        covered = [name for m, _, names in SCENARIOS if m == mode for name in names]
        assert sorted(covered) == sorted(SCHEMA.numeric), mode


def test_a_5_point_change_of_any_category_share_is_flagged_at_10k():
    ratios = categorical_detection(10_000, TRIALS, seed=1)
    assert {name for name, _, _ in ratios} == set(CATEGORIES)
    weak = {key: int(np.sum(np.array(r) > 1.0)) for key, r in ratios.items() if np.sum(np.array(r) > 1.0) < MIN_HITS}
    assert not weak, weak


@pytest.mark.parametrize("n", [10_000, 1_000])
def test_same_distribution_raises_no_alarm_in_99_of_100_runs(n: int):
    runs = false_alarms(n, 100, seed=1)
    alarms = [features for features in runs if features]
    assert len(alarms) <= 1, alarms


def test_a_full_run_flags_exactly_the_shifted_feature():
    """Through compare + decide (every feature and the prediction checked, the budget split 27 ways)."""
    from monitoring.drift import compare, decide
    from tests.monitoring.calibration import shift_category, shift_feature
    from tests.monitoring.synthetic import generate

    rng = np.random.default_rng(11)
    base, cur = generate(10_000, seed=21), generate(10_000, seed=22)
    cur = shift_category(shift_feature(cur, "monetary_avg", rng), "region", "north", -0.05, rng)
    decision = decide(compare(base, cur, numeric=SCHEMA.numeric, categorical=CATEGORIES, policy=DriftPolicy()),
                      10_000, DriftPolicy())
    assert decision.retrain and set(decision.drifted_features) == {"monetary_avg", "region"}
