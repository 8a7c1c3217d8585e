"""Stage 4 — evaluate: validation metrics, curves and a report with plots.

Metrics: ROC AUC, PR AUC, log loss, Brier score, precision/recall/F1 at the model's threshold and
lift in the top decile. The KFP component also emits the ROC curve and confusion matrix as a
``ClassificationMetrics`` artifact (drawn by the Vertex / Kubeflow UI) and an HTML report with ROC,
precision-recall, calibration and score-distribution plots.

Run alone: ``python components/evaluate.py --model-dir models/latest --processed-dir data/processed``.
"""


import argparse
import base64
import html
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from churn.metrics import compute_metrics
from churn.schema import ID_COLUMN, LABEL_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import PythonComponent

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
# The model's scores on its validation split: the drift check's reference for prediction drift.
PREDICTIONS_FILE = "validation_predictions.csv"
CURVE_POINTS = 200


def roc_points(y_true: np.ndarray, scores: np.ndarray, max_points: int = CURVE_POINTS) -> dict[str, list[float]]:
    """ROC curve thinned to at most ``max_points`` points, thresholds finite (for KFP's JSON)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y_true, scores)
    thr = np.where(np.isfinite(thr), thr, 1.0)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


def confusion(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> list[list[int]]:
    """Confusion matrix rows = actual (retained, churned), columns = predicted."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(y_true).astype(int), (np.asarray(scores) >= threshold).astype(int),
                            labels=[0, 1]).tolist()


def _png(fig) -> str:  # fig: a matplotlib figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plot_figures(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, str]:
    """ROC, precision-recall, calibration and score-distribution plots as base64 PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    y_true = np.asarray(y_true).astype(int)
    figs = {}
    fig, ax = plt.subplots(figsize=(4.5, 4))
    fpr, tpr, _ = roc_curve(y_true, scores)
    ax.plot(fpr, tpr, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.legend(loc="lower right")
    figs["ROC curve"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    precision, recall, _ = precision_recall_curve(y_true, scores)
    ax.plot(recall, precision)
    ax.axhline(y_true.mean(), ls="--", color="grey", label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    ax.legend()
    figs["Precision-recall curve"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    frac_pos, mean_pred = calibration_curve(y_true, scores, n_bins=10, strategy="quantile")
    ax.plot(mean_pred, frac_pos, "o-", label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", title="Calibration (deciles)")
    ax.legend()
    figs["Calibration"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4))
    bins = np.linspace(0, 1, 41).tolist()
    ax.hist(scores[y_true == 0], bins=bins, alpha=0.6, label="retained", density=True)
    ax.hist(scores[y_true == 1], bins=bins, alpha=0.6, label="churned", density=True)
    ax.axvline(threshold, color="black", ls=":", label=f"threshold {threshold:.2f}")
    ax.set(xlabel="churn probability", ylabel="density", title="Scores by actual outcome")
    ax.legend()
    figs["Score distribution"] = _png(fig)
    plt.close(fig)
    return figs


def render_report(metrics: dict[str, float], matrix: list[list[int]], figures: dict[str, str],
                  card: dict) -> str:
    """A self-contained HTML report (plots embedded)."""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" if isinstance(v, float)
                   else f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in metrics.items())
    (tn, fp), (fn, tp) = matrix
    imgs = "".join(f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}"><figcaption>'
                   f"{html.escape(t)}</figcaption></figure>" for t, b in figures.items())
    candidates = "".join(f"<li>{html.escape(k)}: {v:.4f}</li>" for k, v in
                         card.get("candidate_validation_roc_auc", {}).items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Churn model evaluation</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px}}figure{{display:inline-block;margin:8px}}</style></head><body>
<h1>Churn model evaluation</h1>
<p>Model <b>{html.escape(str(card.get("model_type", "?")))}</b>, feature schema v{card.get("schema_version", "?")},
decision threshold {metrics["threshold"]:.4f}, validation rows {metrics["n"]} \
(churn rate {metrics["base_rate"]:.1%}).</p>
<h2>Metrics (validation)</h2><table>{rows}</table>
<h2>Confusion matrix at the threshold</h2>
<table><tr><th></th><th>predicted retained</th><th>predicted churned</th></tr>
<tr><th>actual retained</th><td>{tn}</td><td>{fp}</td></tr>\
<tr><th>actual churned</th><td>{fn}</td><td>{tp}</td></tr></table>
<h2>Plots</h2>{imgs}
<h2>Candidates (validation ROC AUC)</h2><ul>{candidates}</ul>
</body></html>
"""


def evaluate(model_dir: Path, validation_dir: Path) -> dict:
    """Scores the validation split with the model folder's model.

    Returns:
        ``metrics``, ``roc`` points, confusion ``matrix``, ``figures``, model ``card`` and ``predictions``
        (``customer_id``, ``churn_probability``, ``churned`` per validation row).
    """
    import pandas as pd

    from churn.features import read_split
    from churn.model_io import load_model

    model = load_model(model_dir)
    validation = read_split(validation_dir / "validation.csv", model.schema)
    y_true = validation[LABEL_COLUMN].to_numpy().astype(int)
    scores = model.predict_proba(validation)
    return {
        "metrics": compute_metrics(y_true, scores, model.threshold),
        "roc": roc_points(y_true, scores),
        "matrix": confusion(y_true, scores, model.threshold),
        "figures": plot_figures(y_true, scores, model.threshold),
        "card": model.card,
        "predictions": pd.DataFrame({ID_COLUMN: validation[ID_COLUMN].to_numpy(), "churn_probability": scores,
                                     LABEL_COLUMN: y_true}),
    }


def run(model_dir: Path, validation_dir: Path, out_dir: Path, *, tracking_uri: str = "") -> dict:
    """Runs the stage: writes ``metrics.json``, ``report.html`` and ``validation_predictions.csv`` (the reference
    for the drift check's prediction drift) and logs the metrics to the model's tracking run.

    Returns:
        The evaluation (see :func:`evaluate`).
    """
    from churn.tracking import get_tracker

    result = evaluate(model_dir, validation_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).write_text(json.dumps(
        {"metrics": result["metrics"], "confusion_matrix": result["matrix"], "roc_curve": result["roc"]},
        indent=2) + "\n")
    (out_dir / REPORT_FILE).write_text(render_report(result["metrics"], result["matrix"], result["figures"],
                                                     result["card"]))
    result["predictions"].to_csv(out_dir / PREDICTIONS_FILE, index=False, float_format="%.17g")
    run_id = result["card"].get("tracking_run_id") or None
    if tracking_uri and run_id:
        tracker = get_tracker(tracking_uri)
        with tracker.run(run_name="evaluate", run_id=run_id):
            tracker.log_metrics({f"validation_{k}": v for k, v in result["metrics"].items() if k != "n"})
            tracker.log_artifacts(out_dir, artifact_path="evaluation")
    m = result["metrics"]
    logger.info("validation: ROC AUC %.4f, PR AUC %.4f, log loss %.4f, Brier %.4f, F1 %.4f, lift@10%% %.2f",
                m["roc_auc"], m["pr_auc"], m["log_loss"], m["brier"], m["f1"], m["lift_top_decile"])
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python components/evaluate.py --help``."""
    from churn.layout import DataLayout, setup_cli_logging

    layout = DataLayout()
    parser = argparse.ArgumentParser(
        prog="evaluate",
        description="Score data/processed/validation.csv with a model folder; write metrics.json, an HTML "
                    "report (ROC, precision-recall, calibration, score distribution) and validation_predictions.csv "
                    "(the drift check's reference scores), and log the metrics to the model's tracking run.",
    )
    parser.add_argument("--model-dir", type=Path, default=layout.models / "latest", help="default: %(default)s")
    parser.add_argument("--processed-dir", type=Path, default=layout.processed, help="default: %(default)s")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: <model-dir>/evaluation")
    parser.add_argument("--tracking-uri", default=layout.tracking_uri(), help="MLflow URI, '' to disable")
    args = parser.parse_args(argv)
    setup_cli_logging()
    out_dir = args.out_dir or args.model_dir / "evaluation"
    result = run(args.model_dir, args.processed_dir, out_dir, tracking_uri=args.tracking_uri)
    print(json.dumps(result["metrics"], indent=2))
    print(f"report: {out_dir / REPORT_FILE}")
    return 0


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def evaluate(model: Input[Model], validation_data: Input[Dataset], tracking_uri: str,
                 metrics: Output[Metrics], classification: Output[ClassificationMetrics], report: Output[HTML],
                 evaluation: Output[Artifact]):
        """Validation metrics, ROC curve, confusion matrix, an HTML report with plots, and a folder with
        metrics.json, report.html and validation_predictions.csv (the drift check's reference scores)."""
        import shutil
        from pathlib import Path

        from churn.layout import setup_cli_logging
        from components.evaluate import REPORT_FILE, run

        setup_cli_logging()
        folder = Path(evaluation.path)
        result = run(Path(model.path), Path(validation_data.path), folder, tracking_uri=tracking_uri)
        shutil.copy(folder / REPORT_FILE, report.path)
        for key, value in result["metrics"].items():
            metrics.log_metric(key, value)
        roc = result["roc"]
        classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
        classification.log_confusion_matrix(["retained", "churned"], result["matrix"])

    return evaluate


if __name__ == "__main__":
    raise SystemExit(main())
