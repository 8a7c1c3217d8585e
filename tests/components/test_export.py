"""The ONNX export (components.export) matches scikit-learn; the manifest (churn.onnx_model) catches altered folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from churn import onnx_model
from components import export
from tests.serving.conftest import models, serving_processed  # noqa: F401 - shared session fixtures

MODEL_TYPES = ("logistic_regression", "hist_gradient_boosting")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_onnx_matches_scikit_learn_on_validation_and_probe_rows(models, model_type):  # noqa: F811
    model = models[model_type]
    sess = onnx_model.session(model.folder / onnx_model.ONNX_FILE)
    on_validation = export.check_parity(model.trained.pipeline, sess, model.validation, model.schema,
                                        model.trained.threshold)
    probe = export.probe_frame(model.trained.pipeline, model.schema, rows=3000, seed=5)
    on_probe = export.check_parity(model.trained.pipeline, sess, probe, model.schema, model.trained.threshold)
    print(f"\n{model_type}: max |p_onnx - p_sklearn| validation {on_validation.max_abs_diff:.3g} "
          f"({on_validation.rows} rows), probe {on_probe.max_abs_diff:.3g} ({on_probe.rows} rows)")
    for parity in (on_validation, on_probe):
        assert parity.ok() and parity.decisions_differ == 0
    if model_type == "logistic_regression":
        assert on_validation.max_abs_diff < 1e-12  # same float64 arithmetic


def test_graph_is_float64_with_two_inputs_and_one_output(models):  # noqa: F811
    import onnx

    graph = onnx.load(str(models["hist_gradient_boosting"].folder / onnx_model.ONNX_FILE)).graph
    inputs = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    assert inputs == {onnx_model.NUMERIC_INPUT: onnx.TensorProto.DOUBLE,
                      onnx_model.CATEGORICAL_INPUT: onnx.TensorProto.STRING}
    assert [o.name for o in graph.output] == [onnx_model.PROBABILITY_OUTPUT]
    trees = [n for n in graph.node if n.op_type == "TreeEnsembleRegressor"]
    assert len(trees) == 1
    assert {a.name for a in trees[0].attribute} >= {"nodes_values_as_tensor", "target_weights_as_tensor"}


def test_save_model_writes_onnx_and_a_manifest_covering_every_file(models):  # noqa: F811
    model = models["hist_gradient_boosting"]
    manifest = onnx_model.verify_manifest(model.folder)
    assert set(manifest["files"]) == {"model.joblib", "model.onnx", "feature_schema.json", "model_card.json"}
    assert manifest["threshold"] == model.trained.threshold
    assert manifest["model_type"] == "hist_gradient_boosting"
    assert manifest["metrics"]["validation_roc_auc"] == model.trained.scores["hist_gradient_boosting"]
    assert manifest["parity"]["max_abs_diff"] <= onnx_model.PARITY_TOLERANCE
    assert {"scikit-learn", "onnxruntime", "numpy", "python"} <= set(manifest["libraries"])
    assert len(manifest["probe"]["instances"]) == len(manifest["probe"]["churn_probability"]) > 0
    assert manifest["feature_schema"] == json.loads((model.folder / "feature_schema.json").read_text())


@pytest.mark.parametrize("change", ["flip a byte of model.onnx", "edit feature_schema.json", "delete model.joblib",
                                    "drop model.onnx from the manifest", "not a manifest"])
def test_verify_manifest_refuses_altered_folders(models, tmp_path: Path, change: str):  # noqa: F811
    folder = tmp_path / "model"
    shutil.copytree(models["logistic_regression"].folder, folder)
    manifest_path = folder / onnx_model.MANIFEST_FILE
    if change.startswith("flip"):
        data = bytearray((folder / "model.onnx").read_bytes())
        data[-1] ^= 0xFF
        (folder / "model.onnx").write_bytes(bytes(data))
    elif change.startswith("edit"):
        path = folder / "feature_schema.json"
        path.write_text(path.read_text().replace("days", "weeks", 1))
    elif change.startswith("delete"):
        (folder / "model.joblib").unlink()
    elif change.startswith("drop"):
        manifest = json.loads(manifest_path.read_text())
        del manifest["files"]["model.onnx"]
        manifest_path.write_text(json.dumps(manifest))
    else:
        manifest_path.write_text("[1, 2]")
    with pytest.raises(onnx_model.ManifestError):
        onnx_model.verify_manifest(folder)


def test_export_refuses_what_it_cannot_convert_faithfully(models):  # noqa: F811
    from sklearn.base import clone
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

    from churn.model_io import model_input

    model = models["logistic_regression"]
    frame = model.validation
    pipe = Pipeline([("preprocess", clone(model.trained.pipeline.steps[0][1])),
                     ("model", RandomForestClassifier(n_estimators=3, random_state=0))])
    pipe.fit(model_input(frame, model.schema), frame["churned"])
    with pytest.raises(export.ExportError, match="RandomForestClassifier"):
        export.to_onnx(pipe, model.schema)


def test_logistic_regression_is_folded_into_its_preprocessing(models):  # noqa: F811
    """No scaled or one-hot matrix: the scaler sits in the coefficients, a category is a Gather of its weight."""
    import onnx

    graph = onnx.load(str(models["logistic_regression"].folder / onnx_model.ONNX_FILE)).graph
    ops = {n.op_type for n in graph.node}
    assert ops <= {"IsNaN", "Where", "MatMul", "Slice", "LabelEncoder", "Gather", "Sum", "Sigmoid"}, ops
    assert {"Equal", "Concat", "Sub", "Div"}.isdisjoint(ops)


def test_a_pipeline_of_another_shape_is_lowered_step_by_step(models):  # noqa: F811
    """Scaling before imputing cannot be folded as written; the step-by-step graph still matches."""
    from sklearn.base import clone
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from churn.model_io import model_input

    model = models["logistic_regression"]
    pipe = clone(model.trained.pipeline)
    pre = pipe.steps[0][1]
    pre.transformers = [(name, Pipeline([("scale", StandardScaler()), ("impute", SimpleImputer(strategy="median"))])
                         if name == pre.transformers[0][0] else transformer, columns)
                        for name, transformer, columns in pre.transformers]
    frame = model.validation
    pipe.fit(model_input(frame, model.schema), frame["churned"])
    graph = export.to_onnx(pipe, model.schema)
    assert "Div" in {n.op_type for n in graph.graph.node}  # the scaler as its own step
    parity = export.check_parity(pipe, onnx_model.session(graph), frame, model.schema)
    assert parity.ok() and parity.max_abs_diff < 1e-12


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_missing_values_follow_the_imputers(models, model_type):  # noqa: F811
    model = models[model_type]
    frame = model.validation.head(6).copy()
    for name in model.schema.numeric[:3]:
        frame[name] = np.nan
    for name in model.schema.categorical:
        frame[name] = [None, "", "missing", "never-seen", None, None]
    sess = onnx_model.session(model.folder / onnx_model.ONNX_FILE)
    parity = export.check_parity(model.trained.pipeline, sess, frame.replace({"": None}), model.schema)
    assert parity.ok()
