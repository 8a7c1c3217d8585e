"""pipelines.local: the task log and the console's progress lines (the whole run: tests/test_pipeline.py)."""

from pathlib import Path

import pytest

from pipelines.local import _task_output, print_summary


def test_task_output_shows_progress_and_on_failure_the_log_tail(tmp_path: Path, capsys) -> None:
    """What kfp.local prints goes to the run log; the console keeps progress lines, and a failure shows the tail."""
    with pytest.raises(RuntimeError, match="boom"), _task_output(tmp_path / "logs", verbose=False) as log:
        print("\x1b[32m15:00:00.000 - INFO - Executing task 'train'\x1b[0m")
        print('    "executor_input": {"inputs": {}}')
        print("12:00:00 INFO components.train: chose logistic_regression")
        print("partial line without newline", end="")
        raise RuntimeError("boom")
    out, err = capsys.readouterr()
    assert "Executing task 'train'" in out and "components.train: chose" in out
    assert "executor_input" not in out and "\x1b[" not in out
    assert "executor_input" in log.read_text() and "partial line without newline" in log.read_text()
    assert "last lines of the task log" in err and "executor_input" in err


@pytest.mark.parametrize(("tracking_uri", "line"), [
    ("sqlite:///mlruns/mlflow.db", "tracking: sqlite:///mlruns/mlflow.db  (browse with `make mlflow-ui`)"),
    ("", "tracking: off"),
])
def test_summary_names_left_out_attributes_and_the_mlflow_ui_only_when_tracking(capsys, tracking_uri: str,
                                                                                line: str) -> None:
    summary = {
        "rows": {"customers.csv": {"raw": 3, "kept": 2, "rejected": 1, "reasons": {"missing customer_id": 1}}},
        "excluded_from_training": {}, "labels": {"source": "derived", "cutoff": "2026-01-01", "churn_rate": 0.25},
        "features": {"transaction_note": "", "transaction": 19, "total": 26, "customer": 7,
                     "trained_on": {"train": 2, "validation": 1}, "left_out": {"email": "an identifier"}},
        "metrics": {"roc_auc": 0.9},
        "model": {"name": "m", "version": 1, "type": "lr", "alias": "champion", "reason": "r"},
        "artifacts": {"model": "models/m/v1"}, "tracking_uri": tracking_uri, "seconds": 3.0,
    }
    print_summary(summary)
    lines = capsys.readouterr().out.splitlines()
    assert line in lines
    assert "customers.csv" in lines[3] and "missing customer_id: 1" in lines[3]
    assert "  left out of the features: email (an identifier)" in lines
