"""``make demo``: the closed loop with the real pieces (pipeline, server, drift check in .venv-monitoring)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipelines import demo

ROOT = Path(__file__).resolve().parents[1]
MONITORING_PYTHON = ROOT / ".venv-monitoring" / "bin" / "python"


def test_workdir_is_recreated_but_a_foreign_folder_is_never_wiped(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(demo.DemoError, match="was not made by the demo"):
        demo.prepare_workdir(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    made = demo.prepare_workdir(tmp_path / "demo")
    (made / "leftover.csv").write_text("old run")
    again = demo.prepare_workdir(tmp_path / "demo")
    assert again == made and not (made / "leftover.csv").exists() and (made / demo.MARKER).is_file()


def test_help_teaches(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        demo.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("--workdir", "--customers", "drift", "retrain", "make demo"):
        assert word in text


@pytest.mark.slow
@pytest.mark.skipif(not MONITORING_PYTHON.is_file(), reason="needs .venv-monitoring (make test creates it)")
def test_closed_loop(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "pipelines.demo", "--workdir", str(workdir), "--customers", "2000"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for step in range(1, 8):
        assert f"{step}/7" in proc.stdout
    result = json.loads((workdir / "demo_result.json").read_text())

    assert result["v1"] == {**result["v1"], "version": "v1", "alias": "champion"}
    assert result["traffic"]["failed_requests"] == 0 and set(result["traffic"]["versions"]) == {"v1"}
    assert result["drift"]["retrain"] is True and result["drift"]["exit_status"] == 0
    assert "plan" in result["drift"]["drifted_features"]  # the plan mix moved 12 points
    # the gate compared both on the new validation data and promoted the retrained model
    assert result["v2"]["version"] == "v2" and result["v2"]["alias"] == "champion"
    assert "beats champion v1" in result["v2"]["reason"]
    switch = result["switch"]
    assert switch["failed"] == 0 and switch["v1"] > 0 and switch["v2"] > 0
    assert switch["requests"] == switch["v1"] + switch["v2"]

    # what the loop left behind: the logs per served version, the drift reports, the retraining record
    logged = pd.read_csv(workdir / "data/predictions/v1_outputs.csv", dtype={"customer_id": str})
    assert len(logged) >= sum(result["traffic"]["versions"].values()) and set(logged["model_version"]) == {"v1"}
    assert set(pd.read_csv(workdir / "data/predictions/v2_outputs.csv")["model_version"]) == {"v2"}
    summary = pd.read_csv(workdir / "data/monitoring/drift_summary.csv").set_index("feature")
    assert pd.notna(summary.loc["churn_probability", "value"])  # v1's validation scores were the reference
    record = json.loads(next((workdir / "data/monitoring").glob("retrain_trigger_*.json")).read_text())
    assert record["trigger"] == "local" and record["started"] and record["succeeded"]
    assert record["detail"]["raw_dir"].endswith("2026-09-30")


def test_a_step_that_hangs_is_stopped_with_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    with pytest.raises(demo.DemoError, match="took over 1s and was stopped"):
        demo.run_logged([sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"],
                        cwd=tmp_path, log=log, timeout=1)
    assert "working" in log.read_text()
    assert demo.run_logged([sys.executable, "-c", "raise SystemExit(3)"], cwd=tmp_path, log=log) == 3
