"""The served model's own evaluation as the drift check's default reference (scores and metrics)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.drift_check import (
    DECISION_FILE,
    EXIT_OK,
    REFERENCE_PREDICTIONS,
    SUMMARY_FILE,
    main,
    model_evaluation_dir,
)
from tests.monitoring.conftest import DriftFiles


def _evaluation(models: Path, name: str, version: str) -> Path:
    folder = models / name / version / "evaluation"
    folder.mkdir(parents=True)
    return folder


def test_the_log_name_leads_to_the_models_evaluation(tmp_path: Path):
    models = tmp_path / "models"
    v3 = _evaluation(models, "churn-model", "v3")
    _evaluation(models, "latest", "v3")  # the copy of the newest model is not a second candidate
    assert model_evaluation_dir("data/predictions/v3_outputs.csv", str(models)) == v3
    assert model_evaluation_dir(str(tmp_path / "nightly" / "v3_outputs.csv"), str(models)) == v3
    assert model_evaluation_dir("data/predictions/v4_outputs.csv", str(models)) is None
    assert model_evaluation_dir("gs://bucket/predictions/v3_outputs.csv", str(models)) is None
    assert model_evaluation_dir("data/predictions/today.csv", str(models)) is None
    assert model_evaluation_dir("data/predictions/v3_outputs.csv", str(tmp_path / "missing")) is None
    _evaluation(models, "other-model", "v3")
    assert model_evaluation_dir("data/predictions/v3_outputs.csv", str(models)) is None  # ambiguous: not guessed


def test_prediction_drift_uses_the_served_versions_validation_scores(drift_files: DriftFiles, tmp_path: Path):
    models = tmp_path / "models"
    folder = _evaluation(models, "churn-model", "v1")
    shutil.copy(drift_files.baseline_scores, folder / REFERENCE_PREDICTIONS)
    (folder / "metrics.json").write_text(json.dumps({"metrics": {"roc_auc": 0.8}}))
    log = pd.read_csv(drift_files.same, dtype={"customer_id": str})
    log["churn_probability"] = np.clip(log["churn_probability"] + 0.04, 0, 1)  # the prediction drifted
    current = tmp_path / "v1_outputs.csv"
    log.to_csv(current, index=False)
    out = tmp_path / "out"
    code = main(["--baseline", str(drift_files.baseline), "--current", str(current), "--output-dir", str(out),
                 "--models-dir", str(models), "--date", "2026-07-01", "--no-tfdv"])
    assert code == EXIT_OK
    row = pd.read_csv(out / SUMMARY_FILE).set_index("feature").loc["churn_probability"]
    assert np.isfinite(row["value"]) and bool(row["drifted"])
    decision = json.loads((out / DECISION_FILE).read_text())
    assert "churn_probability" in decision["drifted_features"]
    assert decision["inputs"]["baseline_predictions"] == str(folder / REFERENCE_PREDICTIONS)
