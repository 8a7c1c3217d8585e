"""A trained model folder read back: the scikit-learn pipeline, its schema and card (training side only).

``model.joblib`` is a pickle: trusted, project-made files only. Serving and scoring never load it; they run
``model.onnx`` (``churn/onnx_model.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.schema import FeatureSchema

if TYPE_CHECKING:  # pragma: no cover
    from sklearn.pipeline import Pipeline

MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"


def model_input(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The schema's columns of ``frame``, typed for the pipeline (missing categoricals as NaN).

    Raises:
        KeyError: A schema column is missing, named in the message.
    """
    missing = [c for c in schema.names if c not in frame.columns]
    if missing:
        raise KeyError(f"input lacks feature column(s) {missing} of schema v{schema.version}")
    out = frame[schema.names].copy()
    for name in schema.numeric:
        out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
    for name in schema.categorical:
        out[name] = out[name].astype(object).where(out[name].notna(), np.nan)
    return out


@dataclass(frozen=True)
class LoadedModel:
    """A model folder read back."""

    pipeline: Pipeline
    schema: FeatureSchema
    card: dict

    @property
    def threshold(self) -> float:
        return float(self.card["threshold"])

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Churn probability per row of ``frame`` (needs the schema's columns)."""
        return self.pipeline.predict_proba(model_input(frame, self.schema))[:, 1]


def load_model(model_dir: Path) -> LoadedModel:
    """Reads a model folder written by train (``components.train.save_model``; trusted, project-made files only)."""
    import joblib

    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model here; run train first (python components/train.py)")
    return LoadedModel(pipeline=joblib.load(path), schema=FeatureSchema.load(model_dir),
                       card=json.loads((model_dir / CARD_FILE).read_text()))
