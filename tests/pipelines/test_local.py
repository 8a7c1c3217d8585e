"""pipelines.local: the task log and the console's progress lines (the whole run: tests/test_pipeline.py)."""

from pathlib import Path

import pytest

from pipelines.local import _task_output


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
