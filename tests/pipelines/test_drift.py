"""pipelines.drift: the nightly drift pipeline compiled, its two steps on their own images."""

from pathlib import Path

import yaml

from components.drift import DRIFT_COMMAND
from pipelines.drift import DRIFT_PIPELINE_NAME, NIGHTLY_WINDOW_DAYS, compile_drift_pipeline

MONITORING_IMAGE = "europe-west4-docker.pkg.dev/acme/churn/monitoring:0123abc"
IMAGE = "europe-west4-docker.pkg.dev/acme/churn/pipeline:0123abc"


def test_the_check_runs_on_the_monitoring_image_and_retraining_after_it(tmp_path: Path) -> None:
    spec = yaml.safe_load(compile_drift_pipeline(tmp_path / "drift.yaml", MONITORING_IMAGE, IMAGE).read_text())
    assert spec["pipelineInfo"]["name"] == DRIFT_PIPELINE_NAME
    executors = spec["deploymentSpec"]["executors"]
    check, retrain = executors["exec-drift-check"]["container"], executors["exec-retrain-on-drift"]["container"]
    assert check["image"] == MONITORING_IMAGE and check["command"] == list(DRIFT_COMMAND)
    assert check["args"][-2:] == ["--trigger", "none"]  # the next step decides, from drift_decision.json
    assert retrain["image"] == IMAGE and "pip install" not in " ".join(retrain["command"])
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["retrain-on-drift"]["dependentTasks"] == ["drift-check"]
    assert all(task["cachingOptions"] == {} for task in tasks.values())  # every night reads new data
    window = spec["root"]["inputDefinitions"]["parameters"]["window_days"]
    assert window["defaultValue"] == NIGHTLY_WINDOW_DAYS
