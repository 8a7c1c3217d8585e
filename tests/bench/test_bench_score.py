"""bench_score's verdicts and report: ratios against the targets, the ONNX floor named."""

import json

import pytest

from tests.bench.conftest import load_bench

bench = load_bench("bench_score")


def _step(ours: float, reference: float, onnx: float) -> dict:
    return {"times_s": {"ours": [ours] * 3, "reference": [reference] * 3, "onnx_only": [onnx] * 3}}


def test_verdicts_compare_ratios_with_the_targets():
    checks = bench.verdicts(prep_s=10.0, score_s=12.0, step=_step(0.5, 6.0, 0.2), score_rss_gb=2.0)
    assert [c[2] for c in checks] == ["PASS", "PASS", "PASS"]
    assert "12.0x" in checks[0][1] and "at most 30.0x" in checks[0][1]
    assert "1.20x" in checks[1][1]
    slow = bench.verdicts(prep_s=10.0, score_s=14.0, step=_step(1.0, 6.0, 0.9), score_rss_gb=6.5)
    assert [c[2] for c in slow] == ["FAIL", "FAIL", "FAIL"]


def test_report_lists_every_run_and_skips_what_was_not_measured():
    runs = {"prep": [{"status": "ok", "wall_s": 10.0, "cpu_s": 12.0, "peak_rss_bytes": 10**9,
                      "steps": {"data_prep": 6.0, "feature_engineering": 4.0}}],
            "score": [{"status": "crashed", "error": "child exit code 1"}],
            "step": [{"status": "ok", "wall_s": 3.0, "cpu_s": 3.0, "peak_rss_bytes": 10**9, **_step(0.5, 2.0, 0.3)}]}
    checks = bench.verdicts(prep_s=10.0, score_s=None, step=runs["step"][0], score_rss_gb=None)
    text = bench.format_report("header", runs, checks)
    assert "score    failed: child exit code 1" in text
    assert "[SKIPPED] score command" in text and "[FAIL] scoring step" in text
    json.dumps(runs)


@pytest.mark.slow
def test_reference_step_writes_the_same_columns_as_ours(tmp_path, sample_raw_dir):
    """The reference writes what ours writes (so the race is fair): same header, same rows."""
    import pandas as pd

    from churn.model_io import load_model
    from components import data_prep, feature_engineering, score, train

    data_prep.run(sample_raw_dir, tmp_path / "interim")
    feature_engineering.run(tmp_path / "interim", tmp_path / "f", tmp_path / "p", tmp_path / "p")
    train.run(tmp_path / "p", tmp_path / "p", tmp_path / "model", candidates=("logistic_regression",))
    model = score.open_model(tmp_path / "model")
    data = score.load_raw(sample_raw_dir)
    features = score.compute_features(model, data)
    score.write_scores(features, model, data.as_of, tmp_path / "ours.csv", tmp_path / "ours_top.csv")
    bench.reference_step(features, load_model(tmp_path / "model"), model.version, tmp_path / "ref.csv",
                         tmp_path / "ref_top.csv", score.DEFAULT_TOP)
    ours, ref = (pd.read_csv(tmp_path / f"{n}.csv", dtype={"customer_id": str}) for n in ("ours", "ref"))
    assert list(ours.columns) == list(ref.columns)
    pd.testing.assert_frame_equal(ours.drop(columns=["timestamp", "churn_probability"]),
                                  ref.drop(columns=["timestamp", "churn_probability"]), check_dtype=False)
    assert (ours["churn_probability"] - ref["churn_probability"]).abs().max() < 1e-4
