"""Stage 3 — train: a scikit-learn pipeline (preprocessing + estimator), best of a few candidates.

Candidates are fitted on ``train``, scored on ``validation`` (ROC AUC) and the best one is kept. The
decision threshold is the one maximising F1 on out-of-fold predictions over ``train``, so the
validation set stays untouched by every choice but the candidate pick. Parameters, scores and the
model folder are logged to the tracking backend.

The model folder holds ``model.joblib``, ``feature_schema.json`` and ``model_card.json``, plus the
serving artifact: ``model.onnx`` (float64, no pickle) and ``manifest.json`` (see ``components/export.py``).

Run alone: ``python components/train.py --processed-dir data/processed --model-dir models/latest``.
"""


import argparse
import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.model_io import CARD_FILE, MODEL_FILE, model_input
from churn.schema import LABEL_COLUMN, FeatureSchema

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import PythonComponent
    from sklearn.pipeline import Pipeline

logger = logging.getLogger(__name__)

DEFAULT_CANDIDATES = ("logistic_regression", "hist_gradient_boosting")
SINGLE_THREAD_ROWS = 100_000


def _estimator(name: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    factories: dict[str, Callable[[], object]] = {
        "logistic_regression": lambda: LogisticRegression(C=1.0, max_iter=2000),
        "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
            learning_rate=0.06, max_iter=300, max_leaf_nodes=31, l2_regularization=1.0,
            early_stopping=True, validation_fraction=0.1, n_iter_no_change=20, random_state=seed),
    }
    if name not in factories:
        raise ValueError(f"unknown candidate {name!r}; choose from {sorted(factories)}")
    return factories[name]()


def build_pipeline(schema: FeatureSchema, estimator_name: str, seed: int = 42) -> "Pipeline":
    """Preprocessing (impute + scale numeric, impute + one-hot categorical) and an estimator.

    Args:
        schema: The feature schema (column names and kinds).
        estimator_name: One of ``logistic_regression``, ``hist_gradient_boosting``.
        seed: Random seed for the estimator.

    Returns:
        An unfitted pipeline taking a DataFrame with the schema's columns.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
        ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=5, sparse_output=False)),
    ])
    transformers = [("num", numeric, schema.numeric)]
    if schema.categorical:
        transformers.append(("cat", categorical, schema.categorical))
    pre = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", pre), ("model", _estimator(estimator_name, seed))])


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 (predict churn when score >= threshold)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=(precision + recall) > 0)[:-1]
    return float(thresholds[int(np.argmax(f1))]) if len(thresholds) else 0.5


@dataclass(frozen=True)
class TrainedModel:
    """The chosen fitted pipeline and how it was chosen.

    Attributes:
        pipeline: Fitted scikit-learn pipeline.
        name: Candidate name.
        threshold: Decision threshold on the churn probability.
        scores: Validation ROC AUC per candidate.
        params: Hyper-parameters of the chosen estimator.
    """

    pipeline: "Pipeline"
    name: str
    threshold: float
    scores: dict[str, float]
    params: dict[str, object] = field(default_factory=dict)


def train_model(train: pd.DataFrame, validation: pd.DataFrame, schema: FeatureSchema, *, seed: int = 42,
                candidates: tuple[str, ...] = DEFAULT_CANDIDATES) -> TrainedModel:
    """Fits each candidate, keeps the best by validation ROC AUC and picks its threshold.

    Args:
        train: Processed train split (features + ``churned``).
        validation: Processed validation split.
        schema: Feature schema.
        seed: Random seed (estimators and cross-validation).
        candidates: Candidate estimator names.

    Returns:
        The chosen model.
    """
    from threadpoolctl import threadpool_limits

    # Below SINGLE_THREAD_ROWS one OpenMP thread is faster, far faster on busy cores (docs/benchmarks.md).
    with threadpool_limits(limits=1 if len(train) < SINGLE_THREAD_ROWS else None, user_api="openmp"):
        return _train_model(train, validation, schema, seed=seed, candidates=candidates)


def _train_model(train: pd.DataFrame, validation: pd.DataFrame, schema: FeatureSchema, *, seed: int,
                 candidates: tuple[str, ...]) -> TrainedModel:
    from sklearn.base import clone
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x_train, y_train = model_input(train, schema), train[LABEL_COLUMN].to_numpy()
    x_val, y_val = model_input(validation, schema), validation[LABEL_COLUMN].to_numpy()
    fitted, scores = {}, {}
    for name in candidates:
        started = time.monotonic()
        pipe = build_pipeline(schema, name, seed).fit(x_train, y_train)
        scores[name] = float(roc_auc_score(y_val, pipe.predict_proba(x_val)[:, 1]))
        fitted[name] = pipe
        logger.info("candidate %-24s validation ROC AUC %.4f (%.1fs)", name, scores[name], time.monotonic() - started)
    best = max(scores, key=lambda k: scores[k])
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
    oof = cross_val_predict(clone(build_pipeline(schema, best, seed)), x_train, y_train, cv=folds,
                            method="predict_proba")[:, 1]
    threshold = best_f1_threshold(y_train, oof)
    params: dict[str, object] = {k: v for k, v in fitted[best].named_steps["model"].get_params().items()
                                 if isinstance(v, (int, float, str, bool)) or v is None}
    logger.info("chose %s, threshold %.4f (max F1 on out-of-fold train predictions)", best, threshold)
    return TrainedModel(pipeline=fitted[best], name=best, threshold=threshold, scores=scores, params=params)


def library_versions() -> dict[str, str]:
    """Versions that matter to load and reproduce the model."""
    import sklearn

    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "pandas": pd.__version__, "numpy": np.__version__}


def save_model(trained: TrainedModel, schema: FeatureSchema, out_dir: Path, *, run_id: str = "",
               rows: dict[str, int] | None = None) -> Path:
    """Writes the model folder: pipeline, schema, a model card, and the ONNX export with its manifest.

    Args:
        trained: Output of :func:`train_model`.
        schema: Feature schema the model takes.
        out_dir: Target folder (created).
        run_id: Tracking run id, recorded in the card.
        rows: Row counts of the training data.

    Returns:
        ``out_dir``.
    """
    import joblib

    out_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(trained.pipeline, out_dir / MODEL_FILE)
    schema.save(out_dir)
    card = {
        "model_type": trained.name,
        "threshold": trained.threshold,
        "candidate_validation_roc_auc": trained.scores,
        "params": trained.params,
        "schema_version": schema.version,
        "features": schema.names,
        "tracking_run_id": run_id,
        "rows": rows or {},
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "libraries": library_versions(),
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2, default=str) + "\n")
    from components.export import export_model  # model.onnx + manifest.json, what serving loads (parity-checked)

    export_model(trained.pipeline, schema, out_dir, threshold=trained.threshold, model_type=trained.name,
                 metrics={"validation_roc_auc": trained.scores[trained.name]})
    return out_dir


def run(train_dir: Path, validation_dir: Path, model_dir: Path, *, seed: int = 42, tracking_uri: str = "",
        candidates: tuple[str, ...] = DEFAULT_CANDIDATES, run_tags: dict[str, str] | None = None) -> dict:
    """Runs the stage on folders and tracks it.

    Args:
        train_dir: Folder with ``train.csv`` and ``feature_schema.json``.
        validation_dir: Folder with ``validation.csv``.
        model_dir: Receives the model folder.
        seed: Random seed.
        tracking_uri: Tracking backend (``""`` = none).
        candidates: Candidate estimator names.
        run_tags: Tags for the tracking run (e.g. the pipeline run).

    Returns:
        Facts: chosen model, threshold, candidate scores, tracking run id.
    """
    from churn.features import read_split
    from churn.tracking import get_tracker

    schema = FeatureSchema.load(train_dir)
    train = read_split(train_dir / "train.csv", schema)
    validation = read_split(validation_dir / "validation.csv", schema)
    tracker = get_tracker(tracking_uri)
    with tracker.run(run_name="train", tags=run_tags) as run_id:
        trained = train_model(train, validation, schema, seed=seed, candidates=candidates)
        rows = {"train": len(train), "validation": len(validation)}
        save_model(trained, schema, model_dir, run_id=run_id, rows=rows)
        tracker.log_params({"model_type": trained.name, "seed": seed, "threshold": round(trained.threshold, 6),
                            "schema_version": schema.version, "n_features": len(schema.features),
                            "train_rows": rows["train"], "validation_rows": rows["validation"],
                            "candidates": ",".join(candidates),
                            **{f"model__{k}": v for k, v in trained.params.items()}})
        tracker.log_metrics({f"validation_roc_auc__{k}": v for k, v in trained.scores.items()})
        tracker.log_artifacts(model_dir, artifact_path="model")
    return {"model_type": trained.name, "threshold": trained.threshold, "scores": trained.scores,
            "run_id": run_id, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python components/train.py --help``."""
    from churn.layout import DataLayout, setup_cli_logging

    layout = DataLayout()
    parser = argparse.ArgumentParser(
        prog="train",
        description="Fit logistic regression and histogram gradient boosting on data/processed/train.csv, keep "
                    "the best by validation ROC AUC, choose the F1-optimal threshold out of fold, write the model "
                    "folder and log everything to MLflow (see it with `make mlflow-ui`).",
    )
    parser.add_argument("--processed-dir", type=Path, default=layout.processed, help="default: %(default)s")
    parser.add_argument("--model-dir", type=Path, default=layout.models / "latest", help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=42, help="default: %(default)s")
    parser.add_argument("--tracking-uri", default=layout.tracking_uri(),
                        help="MLflow tracking URI, '' to disable (default: the local store in mlruns/)")
    parser.add_argument("--candidates", default=",".join(DEFAULT_CANDIDATES),
                        help="comma-separated candidates (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_cli_logging()
    facts = run(args.processed_dir, args.processed_dir, args.model_dir, seed=args.seed,
                tracking_uri=args.tracking_uri, candidates=tuple(args.candidates.split(",")))
    print(f"model {facts['model_type']} (threshold {facts['threshold']:.3f}) → {args.model_dir}; "
          f"validation ROC AUC {facts['scores']}; tracking run {facts['run_id'] or '-'}")
    return 0


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import Dataset, Input, Model, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def train(train_data: Input[Dataset], validation_data: Input[Dataset], seed: int, tracking_uri: str,
              model: Output[Model]):
        """Fits the candidates, keeps the best, logs to the tracking backend."""
        from pathlib import Path

        from churn.layout import setup_cli_logging
        from components.train import run

        setup_cli_logging()
        facts = run(Path(train_data.path), Path(validation_data.path), Path(model.path), seed=seed,
                    tracking_uri=tracking_uri, run_tags={"pipeline_task": "train"})
        model.metadata.update({"framework": "scikit-learn", "model_type": facts["model_type"],
                               "threshold": facts["threshold"], "tracking_run_id": facts["run_id"]})

    return train


if __name__ == "__main__":
    raise SystemExit(main())
