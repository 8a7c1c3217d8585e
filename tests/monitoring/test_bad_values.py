"""Unreadable numbers and header-only logs: never a retrain on data the check should refuse, never an abort."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.drift_check import DECISION_FILE, EXIT_BAD_INPUT, EXIT_OK, SUMMARY_FILE, main
from tests.monitoring.conftest import DriftFiles
from tests.monitoring.synthetic import generate, prediction_log

ROOT = Path(__file__).resolve().parents[2]


def _args(files: DriftFiles, current: Path, out: Path, *extra: str) -> list[str]:
    return ["--baseline", str(files.baseline), "--current", str(current), "--output-dir", str(out),
            "--baseline-predictions", str(files.baseline_scores), "--date", "2026-07-01",
            "--models-dir", str(files.root / "no-models"), "--no-tfdv", *extra]


def _log(tmp_path: Path, column: str, bad: list[str], share: float, seed: int = 11) -> Path:
    """A 4,000-row log of the baseline's distribution with ``share`` of ``column`` replaced by ``bad`` texts."""
    frame = prediction_log(generate(4000, seed=seed))
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(frame), size=int(share * len(frame)), replace=False)
    frame[column] = frame[column].astype(object)
    frame.loc[rows, column] = [bad[i % len(bad)] for i in range(rows.size)]
    path = tmp_path / "v1_outputs.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(("column", "bad"), [
    ("monetary_total", ["abc"]),
    ("recency_days", ["inf", "-inf"]),
    ("frequency", ["nan", "NaN"]),
    ("churn_probability", ["abc", "inf"]),
])
def test_ten_percent_unreadable_values_are_bad_input_naming_column_count_and_fix(
        drift_files: DriftFiles, tmp_path: Path, capsys: pytest.CaptureFixture, column: str, bad: list[str]):
    log = _log(tmp_path, column, bad, 0.10)
    code = main(_args(drift_files, log, tmp_path / "out"))
    decision = json.loads((tmp_path / "out" / DECISION_FILE).read_text())
    assert code == EXIT_BAD_INPUT, decision["reason"]
    assert decision["status"] == "bad_input" and decision["retrain"] is False
    reason = decision["reason"]
    assert column in reason and "400 of 4,000" in reason and "Fix" in reason, reason
    assert repr(bad[0]) in reason
    assert "does not match the feature schema" in capsys.readouterr().err


def test_a_few_unreadable_values_are_left_out_not_counted_as_missing_or_drift(drift_files: DriftFiles,
                                                                               tmp_path: Path):
    """0.5% ``inf`` in a column that is never missing: a warning, the rest compared, no drift from them."""
    log = _log(tmp_path, "recency_days", ["inf"], 0.005)
    assert main(_args(drift_files, log, tmp_path / "out")) == EXIT_OK
    decision = json.loads((tmp_path / "out" / DECISION_FILE).read_text())
    assert decision["status"] == "no_drift", decision["reason"]
    anomalies = json.loads((tmp_path / "out" / "schema_anomalies_2026-07-01.json").read_text())
    found = {(a["kind"], a["column"], a["severity"]) for a in anomalies}
    assert ("non_finite", "recency_days", "warning") in found
    assert not any(a["kind"] == "unexpected_nulls" and a["column"] == "recency_days" for a in anomalies)
    row = pd.read_csv(tmp_path / "out" / SUMMARY_FILE).set_index("feature").loc["recency_days"]
    assert row["n_current"] == 4000 - 20, "the 20 unreadable values are left out of the comparison"


def test_unreadable_reference_scores_are_refused(drift_files: DriftFiles, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture):
    scores = pd.read_csv(drift_files.baseline_scores)
    scores["churn_probability"] = scores["churn_probability"].astype(object)
    scores.loc[:2000, "churn_probability"] = "inf"
    path = tmp_path / "scores.csv"
    scores.to_csv(path, index=False)
    args = _args(drift_files, drift_files.same, tmp_path / "out")
    args[args.index("--baseline-predictions") + 1] = str(path)
    assert main(args) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "scores.csv" in err and "churn_probability" in err and "not finite" in err


@pytest.mark.parametrize("ending", ["\n", "", "\r\n", "\n\n  \n"])
def test_a_header_only_log_says_no_data_rows_and_exits_2(drift_files: DriftFiles, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture, ending: str):
    header = drift_files.same.read_text().splitlines()[0]
    log = tmp_path / "v1_outputs.csv"
    log.write_text(header + ending)
    assert main(_args(drift_files, log, tmp_path / "out")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "header but no data rows" in err and str(log) in err


@pytest.mark.slow
def test_a_header_only_log_exits_cleanly_every_time_in_a_real_process(drift_files: DriftFiles, tmp_path: Path):
    """Eight real runs of the script, TFDV on (the default): exit 2 and the message, never an abort (rc 134)."""
    header = drift_files.same.read_text().splitlines()[0]
    log = tmp_path / "v1_outputs.csv"
    log.write_text(header + "\n")
    args = [a for a in _args(drift_files, log, tmp_path / "out") if a != "--no-tfdv"]
    for run in range(8):
        proc = subprocess.run([sys.executable, str(ROOT / "monitoring" / "drift_check.py"), *args],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
        assert proc.returncode == EXIT_BAD_INPUT, (run, proc.returncode, proc.stderr[-2000:])
        assert "header but no data rows" in proc.stderr and "terminate called" not in proc.stderr, proc.stderr
        assert json.loads((tmp_path / "out" / DECISION_FILE).read_text())["status"] == "bad_input"
