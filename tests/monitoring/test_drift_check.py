"""The drift-check command end to end: TFDV statistics, the offline report, outputs, bad inputs, gs://, labels."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitoring.drift_check import (
    DECISION_FILE,
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_TRIGGER_FAILED,
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
    main,
)
from tests.monitoring.conftest import N_ROWS, DriftFiles
from tests.monitoring.synthetic import churn_probability, generate, prediction_log
from tests.monitoring.test_report import assert_offline_report

ROOT = Path(__file__).resolve().parents[2]


def _args(files: DriftFiles, current: Path, out: Path, *extra: str) -> list[str]:
    return ["--baseline", str(files.baseline), "--current", str(current), "--output-dir", str(out),
            "--baseline-predictions", str(files.baseline_scores), "--date", "2026-07-01",
            "--models-dir", str(files.root / "no-models"), *extra]  # never this checkout's models/


def _decision(out: Path) -> dict:
    return json.loads((out / DECISION_FILE).read_text())


# --------------------------------------------------------------------------------------------------
# The full command with TFDV (the slow part: TensorFlow is imported once for the session)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def same_run(drift_files: DriftFiles, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("same")
    return main(_args(drift_files, drift_files.same, out)), out


@pytest.mark.slow
def test_same_distribution_run_exits_0_and_writes_every_output(same_run: tuple[int, Path]):
    code, out = same_run
    assert code == EXIT_OK
    decision = _decision(out)
    assert decision["status"] == "no_drift" and decision["retrain"] is False
    assert decision["rows"] == {"baseline": N_ROWS, "current": N_ROWS}
    summary = pd.read_csv(out / SUMMARY_FILE)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert len(summary) == 27, "26 features and churn_probability"
    assert set(summary["drifted"]) == {False}
    assert "churn_probability" in set(summary["feature"]) and summary["value"].notna().all()
    assert summary["tfdv_value"].notna().sum() >= 26, "TFDV's own comparator value sits beside ours"
    stats = json.loads((out / "input_stats_2026-07-01.json").read_text())
    features = {f["path"]["step"][0] for f in stats["datasets"][0]["features"]}
    assert {"monetary_total", "plan", "churn_probability"} <= features
    assert int(stats["datasets"][0]["numExamples"]) == N_ROWS
    report = (out / "drift_report_2026-07-01.html").read_text()
    assert "monetary_total" in report and "no drift" in report
    assert assert_offline_report(report) == ["churn_probability"], "no drift: only the prediction is plotted"
    assert 'href="input_stats_2026-07-01.json"' in report


@pytest.mark.slow
def test_injected_drift_is_flagged_end_to_end_and_retraining_starts(
        drift_files: DriftFiles, same_run: tuple[int, Path], tmp_path: Path, project: Path,
        fake_pipeline_python: Path):
    out = tmp_path / "out"
    code = main(_args(drift_files, drift_files.drifted, out, "--trigger", "local",
                      "--pipeline-python", str(fake_pipeline_python)))
    assert code == EXIT_OK
    decision = _decision(out)
    assert decision["retrain"] is True and decision["status"] == "drift"
    assert {"monetary_avg", "plan"} <= set(decision["drifted_features"])
    assert "monetary_avg" in decision["reason"]
    summary = pd.read_csv(out / SUMMARY_FILE).set_index("feature")
    assert summary.loc["monetary_avg", "drifted"] and summary.loc["plan", "drifted"]
    assert summary.loc["plan", "metric"] == "l_infinity"
    assert summary["drifted"].sum() <= 3, summary[summary["drifted"]]
    # the trigger ran `pipeline.py run` on the newest raw folder, from the project folder, and was recorded
    record = json.loads((out / "retrain_trigger_2026-07-01.json").read_text())
    assert record["succeeded"] and record["exit_status"] == 0
    assert record["command"][1:4] == [str(ROOT / "pipeline.py"), "run", "--raw-dir"]  # this checkout's pipeline
    assert record["command"][4].endswith("data/raw/2026-07-01")
    assert set(record["features"]) == set(decision["drifted_features"]) and record["reason"] == decision["reason"]
    args = (tmp_path / "fake-args.txt").read_text().splitlines()
    assert args[:2] == [str(ROOT / "pipeline.py"), "run"] and Path(args[-1]) == project
    assert "training pipeline output" in Path(record["log"]).read_text()
    assert decision["trigger"]["succeeded"] is True
    report = (out / "drift_report_2026-07-01.html").read_text()
    plotted = assert_offline_report(report)
    expected = [*decision["drifted_features"]]
    expected += [] if "churn_probability" in expected else ["churn_probability"]
    assert plotted == expected, "one plot per drifted feature, most drifted first, and the prediction"


def test_help_explains_metrics_outputs_and_exit_codes():
    proc = subprocess.run([sys.executable, str(ROOT / "monitoring" / "drift_check.py"), "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for words in ("PSI", "L-infinity", "rank shift", "drift_summary.csv", "exit status", "gs://", "--min-rows"):
        assert words in proc.stdout, words


# --------------------------------------------------------------------------------------------------
# Decisions and outputs without TFDV (fast)
# --------------------------------------------------------------------------------------------------

def test_summary_keeps_earlier_dates_and_a_rerun_replaces_its_own(drift_files: DriftFiles, tmp_path: Path):
    base = _args(drift_files, drift_files.same, tmp_path, "--no-tfdv")
    assert main(base) == EXIT_OK
    assert main([*base, "--date", "2026-07-02"]) == EXIT_OK
    assert main([*base, "--date", "2026-07-02"]) == EXIT_OK
    summary = pd.read_csv(tmp_path / SUMMARY_FILE, dtype={"date": str})
    assert summary.groupby("date").size().to_dict() == {"2026-07-01": 27, "2026-07-02": 27}


def test_too_few_rows_is_insufficient_data_not_an_alarm(drift_files: DriftFiles, tmp_path: Path):
    small = tmp_path / "small_outputs.csv"
    prediction_log(generate(400, seed=9)).to_csv(small, index=False)
    assert main(_args(drift_files, small, tmp_path / "out", "--no-tfdv")) == EXIT_OK
    decision = _decision(tmp_path / "out")
    assert decision["status"] == "insufficient_data" and not decision["retrain"]
    assert "400 current rows" in decision["reason"]


def test_fail_on_drift_exits_1(drift_files: DriftFiles, tmp_path: Path):
    assert main(_args(drift_files, drift_files.drifted, tmp_path, "--no-tfdv", "--fail-on-drift")) == 1


def test_failed_trigger_exits_3_and_is_recorded(drift_files: DriftFiles, tmp_path: Path, project: Path,
                                                fake_pipeline_python: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_EXIT", "1")
    code = main(_args(drift_files, drift_files.drifted, tmp_path / "out", "--no-tfdv", "--trigger", "local",
                      "--pipeline-python", str(fake_pipeline_python)))
    assert code == EXIT_TRIGGER_FAILED
    record = json.loads((tmp_path / "out" / "retrain_trigger_2026-07-01.json").read_text())
    assert record["started"] and not record["succeeded"] and record["exit_status"] == 1


def test_prediction_drift_is_checked_against_the_baseline_scores(drift_files: DriftFiles, tmp_path: Path):
    log = prediction_log(generate(N_ROWS, seed=404))
    log["churn_probability"] = np.clip(log["churn_probability"] + 0.04, 0, 1)
    path = tmp_path / "v2_outputs.csv"
    log.to_csv(path, index=False)
    assert main(_args(drift_files, path, tmp_path / "out", "--no-tfdv")) == EXIT_OK
    decision = _decision(tmp_path / "out")
    assert decision["prediction_drift"] and decision["drifted_features"] == ["churn_probability"]


def test_without_reference_scores_prediction_drift_is_skipped_and_says_how_to_fix(drift_files: DriftFiles,
                                                                                  tmp_path: Path):
    args = list(_args(drift_files, drift_files.same, tmp_path, "--no-tfdv"))
    i = args.index("--baseline-predictions")
    del args[i:i + 2]
    assert main(args) == EXIT_OK
    row = pd.read_csv(tmp_path / SUMMARY_FILE).set_index("feature").loc["churn_probability"]
    assert np.isnan(row["value"]) and "--baseline-predictions" in row["note"]


def test_labels_show_performance_decay(drift_files: DriftFiles, tmp_path: Path):
    current = pd.read_csv(drift_files.same, dtype={"customer_id": str})
    rng = np.random.default_rng(5)
    honest = (rng.random(len(current)) < current["churn_probability"]).astype(int)
    metrics = tmp_path / "run_summary.json"
    metrics.write_text(json.dumps({"metrics": {"roc_auc": 0.72, "f1": 0.5}}))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"customer_id": current["customer_id"], "churned": honest}).to_csv(labels, index=False)
    extra = ("--no-tfdv", "--labels", str(labels), "--validation-metrics", str(metrics))
    assert main(_args(drift_files, drift_files.same, tmp_path / "ok", *extra)) == EXIT_OK
    assert _decision(tmp_path / "ok")["performance"]["decayed"] is False

    shuffled = rng.permutation(honest)  # outcomes unrelated to the scores: ROC AUC ~0.5
    pd.DataFrame({"customer_id": current["customer_id"], "churned": shuffled}).to_csv(labels, index=False)
    assert main(_args(drift_files, drift_files.same, tmp_path / "bad", *extra)) == EXIT_OK
    decision = _decision(tmp_path / "bad")
    assert decision["retrain"] and decision["performance_decay"] and "ROC AUC" in decision["reason"]
    perf = pd.read_csv(tmp_path / "bad" / SUMMARY_FILE).set_index("feature").loc["model_performance"]
    assert perf["metric"] == "roc_auc_drop" and perf["drifted"] and perf["value"] > 0.05


# --------------------------------------------------------------------------------------------------
# Schema anomalies: reported, never a crash
# --------------------------------------------------------------------------------------------------

def _log_with(tmp_path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    frame = prediction_log(generate(3000, seed=11))
    path = tmp_path / "edited_outputs.csv"
    edit(frame).to_csv(path, index=False)
    return path


def test_new_column_unseen_category_and_a_few_bad_numbers_are_warnings(drift_files: DriftFiles, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.assign(coupon_code="X1")
        frame.loc[:30, "plan"] = "platinum"
        frame["age"] = frame["age"].astype(object)
        frame.loc[:4, "age"] = "forty"
        return frame

    code = main(_args(drift_files, _log_with(tmp_path, edit), tmp_path / "out", "--no-tfdv"))
    assert code == EXIT_OK
    anomalies = json.loads((tmp_path / "out" / "schema_anomalies_2026-07-01.json").read_text())
    kinds = {(a["kind"], a["column"], a["severity"]) for a in anomalies}
    assert ("new_column", "coupon_code", "warning") in kinds
    assert ("unseen_category", "plan", "warning") in kinds
    assert ("type_change", "age", "warning") in kinds
    assert "'platinum' (31)" in capsys.readouterr().out


def test_missing_column_and_changed_type_are_errors_but_still_reported(drift_files: DriftFiles, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture):
    def edit(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.drop(columns=["region"]).assign(monetary_total="unknown")

    code = main(_args(drift_files, _log_with(tmp_path, edit), tmp_path / "out", "--no-tfdv"))
    assert code == EXIT_BAD_INPUT
    decision = _decision(tmp_path / "out")
    assert decision["status"] == "bad_input" and not decision["retrain"]
    assert "region" in decision["reason"] and "monetary_total" in decision["reason"]
    summary = pd.read_csv(tmp_path / "out" / SUMMARY_FILE).set_index("feature")
    assert "missing from the current" in summary.loc["region", "note"]
    assert not summary.loc["tenure_days", "drifted"], "the other features were still checked"
    assert "does not match the feature schema" in capsys.readouterr().err


def test_a_feature_gone_empty_is_an_error_not_a_reason_to_retrain(drift_files: DriftFiles, tmp_path: Path):
    code = main(_args(drift_files, _log_with(tmp_path, lambda f: f.assign(frequency=np.nan)), tmp_path / "out",
                      "--no-tfdv"))
    assert code == EXIT_BAD_INPUT
    decision = _decision(tmp_path / "out")
    assert not decision["retrain"] and "frequency" in decision["reason"]


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("customer_id,tenure_days\n", "no data rows"),
    ("customer_id,tenure_days\n1,2\n3,4,5\n6,7\n", "line 3"),
])
def test_bad_current_file_gives_a_clear_message_and_exit_2(drift_files: DriftFiles, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture, content: str, message: str):
    bad = tmp_path / "bad_outputs.csv"
    bad.write_text(content)
    assert main(_args(drift_files, bad, tmp_path / "out", "--no-tfdv")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(bad) in err and message in err and "Fix" in err
    assert _decision(tmp_path / "out")["status"] == "bad_input"


def test_missing_files_and_schema_name_the_fix(drift_files: DriftFiles, tmp_path: Path,
                                               capsys: pytest.CaptureFixture):
    assert main(_args(drift_files, tmp_path / "nope.csv", tmp_path / "out", "--no-tfdv")) == EXIT_BAD_INPUT
    assert "nope.csv: file not found" in capsys.readouterr().err
    lonely = tmp_path / "lonely" / "train.csv"
    lonely.parent.mkdir()
    lonely.write_text(drift_files.baseline.read_text())
    args = _args(drift_files, drift_files.same, tmp_path / "out", "--no-tfdv")
    args[args.index("--baseline") + 1] = str(lonely)
    assert main(args) == EXIT_BAD_INPUT
    assert "feature schema not found" in capsys.readouterr().err


def test_default_current_is_the_newest_prediction_log(drift_files: DriftFiles, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert main(["--baseline", str(drift_files.baseline), "--no-tfdv"]) == EXIT_BAD_INPUT  # no logs yet
    predictions = tmp_path / "data" / "predictions"
    predictions.mkdir(parents=True)
    old, new = predictions / "v1_outputs.csv", predictions / "v2_outputs.csv"
    old.write_text(drift_files.drifted.read_text())
    new.write_text(drift_files.same.read_text())
    import os

    os.utime(old, (1_700_000_000, 1_700_000_000))
    assert main(["--baseline", str(drift_files.baseline), "--no-tfdv", "--date", "2026-07-01"]) == EXIT_OK
    decision = json.loads((tmp_path / "data" / "monitoring" / DECISION_FILE).read_text())
    assert decision["inputs"]["current"].endswith("v2_outputs.csv")


# --------------------------------------------------------------------------------------------------
# gs:// inputs and outputs (gcp-storage-emulator, reached by google-cloud-storage itself)
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_gcs_uris_for_inputs_and_outputs(drift_files: DriftFiles, gcs_bucket: Any):
    for path in (drift_files.baseline, drift_files.schema, drift_files.baseline_scores):
        gcs_bucket.blob(f"processed/{path.name}").upload_from_filename(str(path))
    gcs_bucket.blob("predictions/v1_outputs.csv").upload_from_filename(str(drift_files.same))
    gcs_bucket.blob("monitoring/drift_summary.csv").upload_from_string(b"")  # an earlier (empty) summary is extended
    b = f"gs://{gcs_bucket.name}"
    code = main(["--baseline", f"{b}/processed/train.csv", "--current", f"{b}/predictions/v1_outputs.csv",
                 "--baseline-predictions", f"{b}/processed/train_scores.csv", "--output-dir", f"{b}/monitoring",
                 "--date", "2026-07-01", "--no-tfdv"])
    assert code == EXIT_OK
    decision = json.loads(gcs_bucket.blob("monitoring/drift_decision.json").download_as_bytes())
    assert decision["status"] == "no_drift"
    assert decision["outputs"]["summary"] == f"{b}/monitoring/drift_summary.csv"
    assert gcs_bucket.blob("monitoring/drift_summary.csv").download_as_bytes().count(b"\n") == 28
    assert main(["--baseline", f"{b}/processed/train.csv", "--current", f"{b}/predictions/missing.csv",
                 "--output-dir", f"{b}/monitoring", "--no-tfdv"]) == EXIT_BAD_INPUT


@pytest.mark.slow
def test_cli_runs_as_a_script_in_a_subprocess(drift_files: DriftFiles, tmp_path: Path):
    """`python monitoring/drift_check.py` (what make drift and the image run), without TFDV to stay quick."""
    proc = subprocess.run([sys.executable, str(ROOT / "monitoring" / "drift_check.py"),
                           *_args(drift_files, drift_files.same, tmp_path, "--no-tfdv")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "decision: no drift" in proc.stdout


def test_probabilities_in_fixture_are_a_real_spread():
    frame = generate(2000, seed=1)
    p = churn_probability(frame)
    assert 0.05 < p.mean() < 0.6 and p.std() > 0.05
