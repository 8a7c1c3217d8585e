"""Validation metrics of churn scores: what evaluate reports and the promotion gate compares."""

from __future__ import annotations

import numpy as np


def compute_metrics(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Scalar validation metrics.

    Args:
        y_true: 0/1 labels.
        scores: Churn probabilities.
        threshold: Decision threshold (churn when score >= threshold).

    Returns:
        ``roc_auc``, ``pr_auc``, ``log_loss``, ``brier``, ``f1``, ``precision``, ``recall``,
        ``accuracy``, ``lift_top_decile``, ``threshold``, ``base_rate``, ``n``.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true = np.asarray(y_true).astype(int)
    scores = np.clip(np.asarray(scores, dtype=float), 1e-15, 1 - 1e-15)
    pred = (scores >= threshold).astype(int)
    top = max(1, int(np.ceil(0.1 * len(scores))))
    order = np.argsort(-scores, kind="stable")[:top]
    base_rate = float(y_true.mean())
    return {
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "pr_auc": float(average_precision_score(y_true, scores)),
        "log_loss": float(log_loss(y_true, scores, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, scores)),
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "precision": float(precision_score(y_true, pred, zero_division=0)),
        "recall": float(recall_score(y_true, pred, zero_division=0)),
        "accuracy": float(accuracy_score(y_true, pred)),
        "lift_top_decile": float(y_true[order].mean() / base_rate) if base_rate > 0 else 0.0,
        "threshold": float(threshold),
        "base_rate": base_rate,
        "n": len(y_true),
    }
