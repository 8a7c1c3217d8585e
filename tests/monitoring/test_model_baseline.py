"""The log's model version picks the baseline: that model's training split and validation scores (contract C).

Model folders are written here the way ``pipeline.py run`` publishes them: ``models/<name>/v<N>/`` with
``baseline/train.csv`` + ``baseline/feature_schema.json`` and ``evaluation/validation_predictions.csv``.
``data/processed/train.csv`` holds the *last* run's data (v2's), as after a retrain.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.drift_check import (
    DECISION_FILE,
    EXIT_BAD_INPUT,
    EXIT_OK,
    REFERENCE_PREDICTIONS,
    SUMMARY_FILE,
    choose_baseline,
    main,
)
from tests.monitoring.conftest import DriftFiles


def _publish(models: Path, version: str, train: Path, schema: Path, scores: Path | None,
             with_baseline: bool = True) -> Path:
    folder = models / "churn-model" / version
    (folder / "evaluation").mkdir(parents=True)
    if with_baseline:
        (folder / "baseline").mkdir()
        shutil.copy(train, folder / "baseline" / "train.csv")
        shutil.copy(schema, folder / "baseline" / "feature_schema.json")
    if scores is not None:
        shutil.copy(scores, folder / "evaluation" / REFERENCE_PREDICTIONS)
    (folder / "evaluation" / "metrics.json").write_text(json.dumps({"roc_auc": 0.8}))
    return folder


@pytest.fixture()
def layout(drift_files: DriftFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """v1 trained on the baseline, v2 on the drifted data; data/processed holds v2's (the last run)."""
    root = tmp_path / "project"
    (root / "data" / "processed").mkdir(parents=True)
    v2_train = drift_files.drifted  # a prediction log is a fine training table: the features are all there
    v2_scores = root / "v2_scores.csv"
    pd.read_csv(v2_train, usecols=["churn_probability"]).to_csv(v2_scores, index=False)
    _publish(root / "models", "v1", drift_files.baseline, drift_files.schema, drift_files.baseline_scores)
    _publish(root / "models", "v2", v2_train, drift_files.schema, v2_scores)
    pd.read_csv(v2_train, dtype={"customer_id": str}).drop(columns=["churn_probability"]).to_csv(
        root / "data" / "processed" / "train.csv", index=False)  # a training table carries no scores
    shutil.copy(drift_files.schema, root / "data" / "processed" / "feature_schema.json")
    monkeypatch.chdir(root)
    return root


def _run(current: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = main(["--current", str(current), "--output-dir", str(out), "--models-dir", "models", "--date",
                 "2026-07-01", "--no-tfdv", *extra])
    return code, json.loads((out / DECISION_FILE).read_text())


def test_a_v1_log_is_compared_with_v1s_baseline_not_the_last_runs(drift_files: DriftFiles, layout: Path,
                                                                   capsys: pytest.CaptureFixture):
    log = layout / "today_outputs.csv"  # the name says nothing: the model_version column decides
    shutil.copy(drift_files.same, log)
    code, decision = _run(log, layout / "out")
    assert code == EXIT_OK and decision["status"] == "no_drift", decision["reason"]
    assert decision["inputs"]["model_version"] == "v1"
    assert decision["inputs"]["baseline"] == str(Path("models/churn-model/v1/baseline/train.csv"))
    assert decision["inputs"]["baseline_predictions"] == str(
        Path("models/churn-model/v1/evaluation") / REFERENCE_PREDICTIONS)
    assert "model v1's own training split" in capsys.readouterr().out
    row = pd.read_csv(layout / "out" / SUMMARY_FILE).set_index("feature").loc["churn_probability"]
    assert np.isfinite(row["value"]), "the prediction was compared with v1's validation scores"


def test_a_v2_log_is_compared_with_v2s_baseline(drift_files: DriftFiles, layout: Path):
    frame = pd.read_csv(drift_files.drifted, dtype={"customer_id": str}).assign(model_version="v2")
    log = layout / "v2_outputs.csv"
    frame.to_csv(log, index=False)
    code, decision = _run(log, layout / "out")
    assert code == EXIT_OK and decision["status"] == "no_drift", decision["reason"]
    assert decision["inputs"]["baseline"].endswith(str(Path("v2") / "baseline" / "train.csv"))


def test_a_log_with_several_model_versions_is_refused(drift_files: DriftFiles, layout: Path,
                                                      capsys: pytest.CaptureFixture):
    frame = pd.read_csv(drift_files.same, dtype={"customer_id": str})
    frame.loc[: len(frame) // 3, "model_version"] = "v2"
    log = layout / "v1_outputs.csv"
    frame.to_csv(log, index=False)
    code, decision = _run(log, layout / "out")
    assert code == EXIT_BAD_INPUT and decision["status"] == "bad_input" and not decision["retrain"]
    err = capsys.readouterr().err
    assert "2 model versions" in err and "v1 (" in err and "v2 (4,001 rows)" in err and "Fix" in err
    code, _ = _run(log, layout / "out2", "--baseline", str(drift_files.baseline))
    assert code == EXIT_BAD_INPUT, "an explicit baseline does not make a mixed log one model's traffic"


def test_an_unknown_model_is_refused_not_compared_with_another_models_baseline(drift_files: DriftFiles,
                                                                               layout: Path,
                                                                               capsys: pytest.CaptureFixture):
    frame = pd.read_csv(drift_files.same, dtype={"customer_id": str}).assign(model_version="v9")
    log = layout / "v9_outputs.csv"
    frame.to_csv(log, index=False)
    code, decision = _run(log, layout / "out")
    assert code == EXIT_BAD_INPUT and decision["status"] == "bad_input"
    err = capsys.readouterr().err
    assert "model v9" in err and "churn-model/v1" in err and "--models-dir" in err


def test_with_an_explicit_baseline_an_unknown_model_is_reported_not_silently_skipped(drift_files: DriftFiles,
                                                                                     layout: Path):
    frame = pd.read_csv(drift_files.same, dtype={"customer_id": str}).assign(model_version="v9")
    log = layout / "v9_outputs.csv"
    frame.to_csv(log, index=False)
    code, decision = _run(log, layout / "out", "--baseline", str(drift_files.baseline))
    assert code == EXIT_OK and decision["inputs"]["baseline_source"] == "given with --baseline"
    anomalies = json.loads((layout / "out" / "schema_anomalies_2026-07-01.json").read_text())
    assert any(a["kind"] == "unknown_model" and "v9" in a["detail"] for a in anomalies), anomalies
    row = pd.read_csv(layout / "out" / SUMMARY_FILE).set_index("feature").loc["churn_probability"]
    assert "v9" in row["note"] and "--baseline-predictions" in row["note"]


def test_an_older_model_folder_without_baseline_falls_back_to_processed_and_says_so(
        drift_files: DriftFiles, layout: Path, capsys: pytest.CaptureFixture):
    _publish(layout / "models", "v3", drift_files.baseline, drift_files.schema, None, with_baseline=False)
    frame = pd.read_csv(drift_files.drifted, dtype={"customer_id": str}).assign(model_version="v3")
    log = layout / "v3_outputs.csv"
    frame.to_csv(log, index=False)
    code, decision = _run(log, layout / "out")
    assert code == EXIT_OK
    assert decision["inputs"]["baseline"] == "data/processed/train.csv"
    assert "older layout" in decision["inputs"]["baseline_source"] and "older layout" in capsys.readouterr().out
    row = pd.read_csv(layout / "out" / SUMMARY_FILE).set_index("feature").loc["churn_probability"]
    assert REFERENCE_PREDICTIONS in row["note"], "the missing validation scores are named"


def test_choose_baseline_rules(tmp_path: Path):
    models = tmp_path / "models"
    (models / "churn-model" / "v1" / "baseline").mkdir(parents=True)
    (models / "churn-model" / "v1" / "baseline" / "train.csv").write_text("x\n1\n")
    (models / "latest" / "v1").mkdir(parents=True)  # the copy of the newest model is not a second candidate
    choice = choose_baseline("logs/v1_outputs.csv", {}, baseline=None, models_dir=str(models))
    assert choice.baseline == str(models / "churn-model" / "v1" / "baseline" / "train.csv")
    assert choice.model_version == "v1" and not choice.warning
    no_models = choose_baseline("logs/v1_outputs.csv", {"v1": 10}, baseline=None, models_dir=str(tmp_path / "x"))
    assert no_models.baseline == "data/processed/train.csv" and no_models.warning
    unnamed = choose_baseline("logs/today.csv", {}, baseline=None, models_dir=str(models))
    assert unnamed.baseline == "data/processed/train.csv" and "no model version" in unnamed.source
    (models / "other-model" / "v1").mkdir(parents=True)
    from monitoring.drift_check import InputError

    with pytest.raises(InputError, match="2 folders"):
        choose_baseline("logs/v1_outputs.csv", {}, baseline=None, models_dir=str(models))
