"""evaluate: metric values, curves for KFP, the HTML report with plots."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churn.metrics import compute_metrics
from components import evaluate, train


def test_metrics_on_known_scores() -> None:
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.6, 0.7, 0.9])
    m = compute_metrics(y, s, threshold=0.5)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0 and m["f1"] == pytest.approx(0.8)
    assert m["lift_top_decile"] == pytest.approx(1 / 0.2)  # the top 10% (one row) is a churner, base rate 20%
    assert m["brier"] == pytest.approx(np.mean((s - y) ** 2))
    assert m["log_loss"] == pytest.approx(-np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)))
    assert m["n"] == 10 and m["base_rate"] == 0.2


def test_metrics_of_a_useless_model() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    m = compute_metrics(y, rng.random(5000), threshold=0.5)
    assert abs(m["roc_auc"] - 0.5) < 0.03 and abs(m["lift_top_decile"] - 1) < 0.15


def test_roc_points_are_thin_and_finite() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    roc = evaluate.roc_points(y, rng.random(3000))
    assert len(roc["fpr"]) <= evaluate.CURVE_POINTS
    assert all(math.isfinite(t) for t in roc["thresholds"])
    assert roc["fpr"][0] == 0.0 and roc["fpr"][-1] == 1.0


def test_confusion_matrix_layout() -> None:
    assert evaluate.confusion(np.array([0, 0, 1, 1]), np.array([0.1, 0.9, 0.2, 0.8]), 0.5) == [[1, 1], [1, 1]]
    assert evaluate.confusion(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.8]), 0.5) == [[1, 0], [1, 1]]


def test_run_writes_metrics_and_report(processed, tmp_path: Path) -> None:
    trained = train.train_model(processed.split("train"), processed.split("validation"), processed.schema,
                                candidates=("logistic_regression",))
    train.save_model(trained, processed.schema, tmp_path / "model")
    result = evaluate.run(tmp_path / "model", processed.folder, tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["metrics"] == result["metrics"]
    assert saved["metrics"]["roc_auc"] == pytest.approx(trained.scores["logistic_regression"])
    for key in ("roc_auc", "pr_auc", "log_loss", "brier", "f1", "lift_top_decile"):
        assert math.isfinite(saved["metrics"][key])
    scores = pd.read_csv(tmp_path / "eval" / evaluate.PREDICTIONS_FILE, dtype={"customer_id": str})
    validation = processed.split("validation")
    assert list(scores.columns) == ["customer_id", "churn_probability", "churned"]
    assert list(scores["customer_id"]) == list(validation["customer_id"])  # ids as text, leading zeros kept
    assert (scores["churned"].to_numpy() == validation["churned"].to_numpy()).all()
    assert roc_auc_score(scores["churned"], scores["churn_probability"]) == pytest.approx(saved["metrics"]["roc_auc"])
    html = (tmp_path / "eval" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    for title in ("ROC curve", "Precision-recall curve", "Calibration", "Score distribution"):
        assert title in html
