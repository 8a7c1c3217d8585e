"""Fixtures for the monitoring tests (monitoring environment only: ``make test`` runs them there).

Files are written from :mod:`tests.monitoring.synthetic` tables: a baseline ``train.csv`` with its
``feature_schema.json`` and the model's scores on it, a prediction log of the same distribution and one
with drift injected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.schema import FeatureSchema
from tests.monitoring.calibration import scale_feature, shift_category
from tests.monitoring.synthetic import churn_probability, feature_schema, generate, prediction_log

N_ROWS = 12_000


@dataclass(frozen=True)
class DriftFiles:
    """Paths of one baseline and two prediction logs."""

    root: Path
    baseline: Path
    schema: Path
    baseline_scores: Path
    same: Path
    drifted: Path


@pytest.fixture(scope="session")
def schema() -> FeatureSchema:
    return feature_schema()


@pytest.fixture(scope="session")
def drift_files(tmp_path_factory: pytest.TempPathFactory, schema: FeatureSchema) -> DriftFiles:
    """Baseline 12k rows; ``same``: a fresh 12k-row log; ``drifted``: ``monetary_avg`` 10% higher and the
    share of plan ``basic`` 5 points up."""
    root = tmp_path_factory.mktemp("drift")
    base = generate(N_ROWS, seed=101)
    base.to_csv(root / "train.csv", index=False)
    schema.save(root / "feature_schema.json")
    pd.DataFrame({"churn_probability": churn_probability(base)}).to_csv(root / "train_scores.csv", index=False)
    prediction_log(generate(N_ROWS, seed=202)).to_csv(root / "v1_outputs.csv", index=False)
    rng = np.random.default_rng(7)
    drifted = shift_category(scale_feature(generate(N_ROWS, seed=303), "monetary_avg", rng), "plan", "basic", 0.05, rng)
    prediction_log(drifted, model_version="v1").to_csv(root / "v1_drifted_outputs.csv", index=False)
    return DriftFiles(root=root, baseline=root / "train.csv", schema=root / "feature_schema.json",
                      baseline_scores=root / "train_scores.csv", same=root / "v1_outputs.csv",
                      drifted=root / "v1_drifted_outputs.csv")


@pytest.fixture()
def fake_pipeline_python(tmp_path: Path) -> Path:
    """A stand-in for ``.venv/bin/python``: records its arguments and working folder, exits with $FAKE_EXIT."""
    script = tmp_path / "fake-python"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_ARGS_FILE"\npwd >> "$FAKE_ARGS_FILE"\n'
                      'echo "training pipeline output"\nexit "${FAKE_EXIT:-0}"\n')
    script.chmod(0o755)
    return script


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with two raw folders (``data/raw`` and a newer ``data/raw/2026-07-01``) as cwd."""
    root = tmp_path / "project"
    for folder in (root / "data" / "raw", root / "data" / "raw" / "2026-07-01"):
        folder.mkdir(parents=True)
        (folder / "customers.csv").write_text("customer_id,signup_date\n")
        (folder / "transactions.json").write_text("")
    newer = root / "data" / "raw" / "2026-07-01" / "transactions.json"
    older = root / "data" / "raw" / "transactions.json"
    import os

    os.utime(older, (1_700_000_000, 1_700_000_000))
    os.utime(root / "data" / "raw" / "customers.csv", (1_700_000_000, 1_700_000_000))
    os.utime(newer, (1_800_000_000, 1_800_000_000))
    monkeypatch.chdir(root)
    monkeypatch.setenv("FAKE_ARGS_FILE", str(tmp_path / "fake-args.txt"))
    return root
