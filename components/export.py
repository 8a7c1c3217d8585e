"""Build time: the fitted pipeline as an ONNX graph in double precision, and its manifest.

Training keeps ``model.joblib`` (a pickle: trusted, training-side only). Serving loads ``model.onnx``, a
data-only format that loads without executing code, run by onnxruntime without scikit-learn; what serving
needs of it at run time is in ``churn/onnx_model.py``.

Why the graph is hand-built from the fitted transformers rather than taken whole from ``skl2onnx``:

* skl2onnx cannot convert the categorical ``SimpleImputer(missing_values=nan)`` and its numeric
  ``Imputer``/``Scaler`` ops compute in float32;
* its HistGradientBoosting converter writes split thresholds as float32 attributes (ai.onnx.ml v1), and
  onnxruntime's ``TreeEnsembleClassifier`` only outputs float32.

In float32, an input within float32 rounding of a split threshold takes the other branch. Here every
input, imputation, scaling, one-hot slot, split threshold and leaf value is float64: numeric inputs go
through ``Where(IsNaN)``/``Sub``/``Div`` in double, categoricals through ``LabelEncoder`` + ``Equal``,
trees through ``TreeEnsembleRegressor`` with ``*_as_tensor`` double attributes (ai.onnx.ml v3) summing
the raw score, then ``Sigmoid`` in double. Logistic regression is ``MatMul`` + ``Add`` + ``Sigmoid``.

The export is parity-checked against scikit-learn on synthetic probe rows, and ``manifest.json`` records
the files, schema, library versions, metrics, threshold, parity and a small probe the server replays.

Run alone: ``python -m components.export {export,verify,parity} --model-dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from churn.model_io import model_input
from churn.onnx_model import (
    CATEGORICAL_INPUT,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MISSING_CATEGORY,
    NUMERIC_INPUT,
    ONNX_FILE,
    PARITY_TOLERANCE,
    PROBABILITY_OUTPUT,
    file_sha256,
    onnx_proba,
    read_manifest,
    session,
    verify_manifest,
)
from churn.schema import FeatureSchema

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import pandas as pd
    from sklearn.pipeline import Pipeline

PROBE_ROWS = 2000
MANIFEST_PROBE_ROWS = 16
OPSET = 17
ML_OPSET = 3
_UNSEEN = "\x00unseen-category\x00"


class ExportError(RuntimeError):
    """The fitted pipeline cannot be exported faithfully (unsupported step or parity failure)."""


# --------------------------------------------------------------------------------------------------
# ONNX graph
# --------------------------------------------------------------------------------------------------

@dataclass
class _Graph:
    """Nodes and initializers collected while lowering the pipeline."""

    nodes: list
    initializers: list
    counter: int = 0

    def name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def const(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, domain: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = self.name(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op), domain=domain, **attrs))
        return out


def _steps(transformer: Any) -> list[Any]:
    """The steps of a transformer that may be a Pipeline."""
    return [step for _, step in transformer.steps] if hasattr(transformer, "steps") else [transformer]


def _impute(g: _Graph, x: str, imputer: Any, columns: list[str]) -> str:
    """A numeric SimpleImputer: NaN → its fitted statistic, per column."""
    stats = np.asarray(imputer.statistics_, dtype=np.float64)
    if not (isinstance(imputer.missing_values, float) and math.isnan(imputer.missing_values)):
        raise ExportError(f"numeric SimpleImputer with missing_values={imputer.missing_values!r}: "
                          "only NaN is supported")
    if np.isnan(stats).any():
        empty = [c for c, s in zip(columns, stats, strict=True) if math.isnan(s)]
        raise ExportError(f"numeric column(s) {empty} were empty in training (the imputer drops them); "
                          "drop them from the feature schema")
    is_nan = g.node("IsNaN", [x], "isnan")
    return g.node("Where", [is_nan, g.const("medians", stats.reshape(1, -1)), x], "imputed")


def _lower_numeric(g: _Graph, x: str, steps: list[Any], columns: list[str]) -> str:
    """SimpleImputer / StandardScaler steps on a double ``[N, k]`` tensor, in float64."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    for step in steps:
        if isinstance(step, SimpleImputer):
            x = _impute(g, x, step, columns)
        elif isinstance(step, StandardScaler):
            if step.with_mean:
                mean = np.asarray(step.mean_, dtype=np.float64).reshape(1, -1)
                x = g.node("Sub", [x, g.const("mean", mean)], "centred")
            if step.with_std:
                scale = np.asarray(step.scale_, dtype=np.float64).reshape(1, -1)
                x = g.node("Div", [x, g.const("scale", scale)], "scaled")
        else:
            raise ExportError(f"numeric step {type(step).__name__} is not supported by the ONNX export")
    return x


def _onehot_slots(encoder: Any, j: int, n_features: int) -> tuple[dict[str, int], int, int]:
    """How the fitted encoder maps feature ``j``'s values to its output block, found by transforming
    each known category (public API only): ``(slot per category, slot for unseen values, block width)``."""
    cats = [str(c) for c in encoder.categories_[j]]
    infrequent = getattr(encoder, "infrequent_categories_", [None] * n_features)[j]
    width = len(cats) - (len(infrequent) if infrequent is not None else 0) + (1 if infrequent is not None else 0)
    offset = sum(
        len(encoder.categories_[k]) - (len(inf) if inf is not None else 0) + (1 if inf is not None else 0)
        for k, inf in enumerate(getattr(encoder, "infrequent_categories_", [None] * n_features)[:j])
    )
    probe = np.array([[str(encoder.categories_[k][0]) for k in range(n_features)]] * (len(cats) + 1), dtype=object)
    probe[:len(cats), j] = cats
    probe[len(cats), j] = _UNSEEN
    out = encoder.transform(probe)
    out = out.toarray() if hasattr(out, "toarray") else np.asarray(out)
    block = out[:, offset:offset + width]
    if not np.all(np.isin(block, (0.0, 1.0))) or (block.sum(axis=1) > 1).any():
        raise ExportError(f"one-hot block of feature {j} is not 0/1 with at most one hot slot")
    slots = [int(np.argmax(r)) if r.any() else -1 for r in block]
    return dict(zip(cats, slots[:-1], strict=True)), slots[-1], width


def _categorical_steps(steps: list[Any], n_columns: int) -> tuple[list[str | None], Any]:
    """The imputer's fill value per column (``None``: no imputer) and the OneHotEncoder of a categorical pipeline."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    fill: list[str | None] = [None] * n_columns
    encoder = None
    for step in steps:
        if isinstance(step, SimpleImputer) and encoder is None:
            fill = [str(s) for s in step.statistics_]
        elif isinstance(step, OneHotEncoder) and encoder is None:
            encoder = step
        else:
            raise ExportError(f"categorical step {type(step).__name__} is not supported by the ONNX export")
    if encoder is None:
        raise ExportError("categorical columns need a OneHotEncoder")
    if encoder.drop is not None:
        raise ExportError("OneHotEncoder(drop=...) is not supported by the ONNX export")
    return fill, encoder


def _category_slots(g: _Graph, x: str, steps: list[Any], columns: list[str]) -> list[tuple[str, int]]:
    """Per column of the string ``[N, k]`` tensor: its one-hot slot (``[N, 1]`` int64; -1 = no slot is hot,
    as for unseen values) and the width of its one-hot block."""
    fill, encoder = _categorical_steps(steps, len(columns))
    out = []
    for j, _ in enumerate(columns):
        slots, unseen, width = _onehot_slots(encoder, j, len(columns))
        filled = fill[j]
        missing_slot = slots.get(filled, unseen) if filled is not None else unseen
        keys = list(slots) + ([MISSING_CATEGORY] if MISSING_CATEGORY not in slots else [])
        values = [slots[k] for k in slots] + ([missing_slot] if MISSING_CATEGORY not in slots else [])
        column = g.node("Slice", [x, g.const("start", np.array([j])), g.const("end", np.array([j + 1])),
                                  g.const("axis", np.array([1]))], "column")
        slot = g.node("LabelEncoder", [column], "slot", domain="ai.onnx.ml", keys_strings=keys,
                      values_int64s=values, default_int64=unseen)
        out.append((slot, width))
    return out


def _lower_categorical(g: _Graph, x: str, steps: list[Any], columns: list[str]) -> str:
    """SimpleImputer (strings) + OneHotEncoder on a string ``[N, k]`` tensor → double one-hot columns."""
    outputs = []
    for slot, width in _category_slots(g, x, steps, columns):
        hot = g.node("Equal", [slot, g.const("slots", np.arange(width, dtype=np.int64).reshape(1, -1))], "hot")
        outputs.append(g.node("Cast", [hot], "onehot", to=11))  # 11 = DOUBLE
    return outputs[0] if len(outputs) == 1 else g.node("Concat", outputs, "onehots", axis=1)


def _columns(g: _Graph, source: str, idx: list[int], width: int, name: str) -> str:
    """Columns ``idx`` of the ``[N, width]`` input; the input itself when that is all of it in order (a
    Gather copies every value, which for the string input cost ~0.3 ms per 1000 rows)."""
    if idx == list(range(width)):
        return source
    return g.node("Gather", [source, g.const("idx", np.array(idx, dtype=np.int64))], f"{name}_in", axis=1)


def _blocks(g: _Graph, pre: Any, schema: FeatureSchema) -> Iterator[tuple[str, list[str], list[Any], str]]:
    """The ColumnTransformer's live transformers as ``(kind, columns, steps, input tensor)``, in output order.

    Raises:
        ExportError: Not a ColumnTransformer, passthrough columns, or numeric and categorical columns mixed.
    """
    from sklearn.compose import ColumnTransformer

    if not isinstance(pre, ColumnTransformer):
        raise ExportError(f"expected a ColumnTransformer first, got {type(pre).__name__}")
    for name, transformer, selected in pre.transformers_:
        if transformer == "drop" or (isinstance(selected, (list, tuple, np.ndarray)) and len(selected) == 0):
            continue
        if transformer == "passthrough":
            raise ExportError("passthrough columns are not supported by the ONNX export")
        columns = [str(c) for c in selected]
        kinds = {schema.get(c).kind for c in columns}
        if kinds == {"numeric"}:
            x = _columns(g, NUMERIC_INPUT, [schema.numeric.index(c) for c in columns], len(schema.numeric), name)
        elif kinds == {"categorical"}:
            x = _columns(g, CATEGORICAL_INPUT, [schema.categorical.index(c) for c in columns],
                         len(schema.categorical), name)
        else:
            raise ExportError(f"transformer {name!r} mixes numeric and categorical columns {columns}")
        yield kinds.pop(), columns, _steps(transformer), x


def _lower_preprocess(g: _Graph, pre: Any, schema: FeatureSchema) -> str:
    """The ColumnTransformer as double ops; returns the name of the ``[N, n_out]`` feature tensor."""
    parts = [(_lower_numeric if kind == "numeric" else _lower_categorical)(g, x, steps, columns)
             for kind, columns, steps, x in _blocks(g, pre, schema)]
    return parts[0] if len(parts) == 1 else g.node("Concat", parts, "features", axis=1)


def _lower_linear(g: _Graph, pre: Any, est: Any, schema: FeatureSchema) -> str | None:
    """Logistic regression folded into its preprocessing, or ``None`` when the pipeline is not the usual
    shape (then :func:`_lower_preprocess` + :func:`_lower_logistic` lower it step by step; what neither can
    lower raises :class:`ExportError` from :func:`_blocks`).

    The logit is linear in the transformed columns, so the scaler goes into the coefficients
    (``w · (x - mean) / scale = x · (w / scale) - mean · (w / scale)``) and a one-hot block times its
    coefficients is the coefficient of the hot slot: a Gather from the block by the slot, 0 when none is
    hot. No scaled or one-hot matrix is built: onnxruntime took 0.51-0.68 ms per 1000 rows against 0.64-0.88
    ms step by step (and 1.2 ms when the inputs also went through a Gather), with the same probabilities as
    scikit-learn to 6e-16; the parity check at export compares them as before.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    coef = np.asarray(est.coef_, dtype=np.float64)
    if coef.shape[0] != 1:
        return None
    coef = coef[0]
    bias = float(np.asarray(est.intercept_, dtype=np.float64).ravel()[0])
    terms: list[str] = []
    offset = 0
    for kind, columns, steps, block_input in _blocks(g, pre, schema):
        x = block_input
        if kind == "numeric":
            step_types = [type(step) for step in steps]
            if step_types not in ([SimpleImputer, StandardScaler], [StandardScaler], [SimpleImputer], []):
                return None
            weights = coef[offset:offset + len(columns)].copy()
            offset += len(columns)
            for step in steps:
                if isinstance(step, SimpleImputer):
                    x = _impute(g, x, step, columns)
                else:
                    if step.with_std:
                        weights = weights / np.asarray(step.scale_, dtype=np.float64)
                    if step.with_mean:
                        bias -= float(np.dot(weights, np.asarray(step.mean_, dtype=np.float64)))
            terms.append(g.node("MatMul", [x, g.const("weights", weights.reshape(-1, 1))], "numeric_logit"))
        else:
            for slot, width in _category_slots(g, x, steps, columns):
                block = np.append(coef[offset:offset + width], 0.0)  # slot -1 (nothing hot) reads the 0
                offset += width
                terms.append(g.node("Gather", [g.const("slot_weights", block), slot], "category_logit", axis=0))
    if offset != coef.size or not terms:
        return None
    return g.node("Sum", [*terms, g.const("intercept", np.array([[bias]], dtype=np.float64))], "logit")


def _lower_logistic(g: _Graph, z: str, est: Any) -> str:
    coef = np.asarray(est.coef_, dtype=np.float64)
    if coef.shape[0] != 1:
        raise ExportError("only binary logistic regression is supported")
    score = g.node("MatMul", [z, g.const("coef", coef.T)], "score")
    score = g.node("Add", [score, g.const("intercept", np.asarray(est.intercept_, dtype=np.float64).reshape(1, 1))],
                   "logit")
    return score


def _lower_hist_gradient_boosting(g: _Graph, z: str, est: Any) -> str:
    """Trees as TreeEnsembleRegressor with float64 thresholds and leaf values (sums the raw score).

    HistGradientBoosting exposes no public tree API; its fitted predictors (``_predictors``) are the
    same structure skl2onnx reads. Parity against ``predict_proba`` guards every export.
    """
    from onnx import numpy_helper

    if getattr(est, "n_trees_per_iteration_", 1) != 1:
        raise ExportError("only binary HistGradientBoostingClassifier is supported")
    nodes: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "featureids", "modes", "values", "true", "false",
                                              "missing")}
    leaves: dict[str, list] = {k: [] for k in ("treeids", "nodeids", "weights")}
    for tree_id, (predictor,) in enumerate(est._predictors):  # a private attribute: see docstring
        for node_id, node in enumerate(predictor.nodes):
            nodes["treeids"].append(tree_id)
            nodes["nodeids"].append(node_id)
            if node["is_leaf"]:
                nodes["featureids"].append(0)
                nodes["modes"].append("LEAF")
                nodes["values"].append(0.0)
                nodes["true"].append(0)
                nodes["false"].append(0)
                nodes["missing"].append(0)
                leaves["treeids"].append(tree_id)
                leaves["nodeids"].append(node_id)
                leaves["weights"].append(float(node["value"]))
            else:
                if "is_categorical" in node.dtype.names and node["is_categorical"]:
                    raise ExportError("categorical splits in HistGradientBoosting are not supported")
                nodes["featureids"].append(int(node["feature_idx"]))
                nodes["modes"].append("BRANCH_LEQ")
                nodes["values"].append(float(node["num_threshold"]))
                nodes["true"].append(int(node["left"]))
                nodes["false"].append(int(node["right"]))
                nodes["missing"].append(int(node["missing_go_to_left"]))
    baseline = np.asarray(est._baseline_prediction, dtype=np.float64).ravel()  # private, as above
    raw = g.node(
        "TreeEnsembleRegressor", [z], "raw_score", domain="ai.onnx.ml",
        n_targets=1, aggregate_function="SUM", post_transform="NONE",
        nodes_treeids=nodes["treeids"], nodes_nodeids=nodes["nodeids"], nodes_featureids=nodes["featureids"],
        nodes_modes=nodes["modes"], nodes_truenodeids=nodes["true"], nodes_falsenodeids=nodes["false"],
        nodes_missing_value_tracks_true=nodes["missing"],
        nodes_values_as_tensor=numpy_helper.from_array(np.array(nodes["values"], dtype=np.float64)),
        target_treeids=leaves["treeids"], target_nodeids=leaves["nodeids"], target_ids=[0] * len(leaves["nodeids"]),
        target_weights_as_tensor=numpy_helper.from_array(np.array(leaves["weights"], dtype=np.float64)),
        base_values_as_tensor=numpy_helper.from_array(baseline),
    )
    # onnxruntime sums in double and hands the score out as float32 (|error| <= |score| * 6e-8), which moves
    # the probability by < 1e-7; the sigmoid runs in double.
    return g.node("Cast", [raw], "raw_score_double", to=11)


def to_onnx(pipeline: Pipeline, schema: FeatureSchema) -> onnx.ModelProto:
    """Lowers the fitted churn pipeline (see :func:`components.train.build_pipeline`) to ONNX, in float64.

    Args:
        pipeline: Fitted ``Pipeline([("preprocess", ColumnTransformer), ("model", estimator)])``.
        schema: The feature schema the pipeline was trained on.

    Returns:
        A checked ONNX model with inputs ``numeric`` / ``categorical`` and output ``churn_probability``.

    Raises:
        ExportError: A step or estimator the exporter does not support.
    """
    import onnx
    from onnx import TensorProto, helper
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    pre, est = pipeline.steps[0][1], pipeline.steps[-1][1]
    if list(getattr(est, "classes_", [])) != [0, 1]:
        raise ExportError(f"expected classes [0, 1], got {list(getattr(est, 'classes_', []))}")
    if not isinstance(est, (LogisticRegression, HistGradientBoostingClassifier)):
        raise ExportError(f"estimator {type(est).__name__} is not supported by the ONNX export")
    g = _Graph(nodes=[], initializers=[])
    logit = _lower_linear(g, pre, est, schema) if isinstance(est, LogisticRegression) else None
    if logit is None:
        g = _Graph(nodes=[], initializers=[])
        z = _lower_preprocess(g, pre, schema)
        if isinstance(est, LogisticRegression):
            logit = _lower_logistic(g, z, est)
        else:
            logit = _lower_hist_gradient_boosting(g, z, est)
    g.nodes.append(helper.make_node("Sigmoid", [logit], [PROBABILITY_OUTPUT], name="probability"))
    inputs = [helper.make_tensor_value_info(NUMERIC_INPUT, TensorProto.DOUBLE, ["N", len(schema.numeric)],
                                            doc_string="columns: " + ",".join(schema.numeric))]
    if schema.categorical:
        inputs.append(helper.make_tensor_value_info(CATEGORICAL_INPUT, TensorProto.STRING,
                                                    ["N", len(schema.categorical)],
                                                    doc_string="columns: " + ",".join(schema.categorical)))
    graph = helper.make_graph(g.nodes, "churn", inputs,
                              [helper.make_tensor_value_info(PROBABILITY_OUTPUT, TensorProto.DOUBLE, ["N", 1])],
                              initializer=g.initializers)
    # producer "churn.export": the name every exported model has carried (the file stays byte-identical)
    model = helper.make_model(graph, producer_name="churn.export", producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET),
                                             helper.make_opsetid("ai.onnx.ml", ML_OPSET)])
    model.ir_version = 8
    helper.set_model_props(model, {"numeric_features": json.dumps(schema.numeric),
                                   "categorical_features": json.dumps(schema.categorical),
                                   "schema_version": str(schema.version)})
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------------------------------
# Checking parity
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parity:
    """ONNX vs scikit-learn on the same rows.

    Attributes:
        rows: Rows compared.
        max_abs_diff: Largest absolute probability difference.
        decisions_differ: Rows whose decision at ``threshold`` differs.
    """

    rows: int
    max_abs_diff: float
    decisions_differ: int

    def ok(self, tolerance: float = PARITY_TOLERANCE) -> bool:
        """Whether every probability is within ``tolerance``."""
        return self.max_abs_diff <= tolerance


def check_parity(pipeline: Pipeline, sess: Any, frame: pd.DataFrame, schema: FeatureSchema,
                 threshold: float = 0.5) -> Parity:
    """Compares ``predict_proba`` of the scikit-learn pipeline with the ONNX session on ``frame``.

    Args:
        pipeline: Fitted pipeline.
        sess: onnxruntime session of its export.
        frame: Rows with the schema's columns (validation data, or :func:`probe_frame`).
        schema: Feature schema.
        threshold: Decision threshold, to count flipped decisions.

    Returns:
        The comparison.
    """
    expected = pipeline.predict_proba(model_input(frame, schema))[:, 1]
    got = onnx_proba(sess, frame, schema)
    diff = np.abs(expected - got)
    return Parity(rows=len(frame), max_abs_diff=float(diff.max()) if len(diff) else 0.0,
                  decisions_differ=int(((expected >= threshold) != (got >= threshold)).sum()))


def probe_frame(pipeline: Pipeline, schema: FeatureSchema, rows: int = PROBE_ROWS, seed: int = 0,
                *, serveable: bool = False) -> pd.DataFrame:
    """Synthetic rows spread like the training data, drawn from the fitted preprocessing statistics.

    Numeric values follow N(mean, std) of the scaler, a tenth of them exactly at a split-prone value
    (the imputer median); categoricals cycle through the categories seen in training plus an unseen
    value; missing values appear in every column (only nullable ones with ``serveable``, which yields rows
    the server's request schema accepts).

    Args:
        pipeline: Fitted pipeline.
        schema: Feature schema.
        rows: Number of rows.
        seed: Random seed.
        serveable: Keep to what a valid request may contain.

    Returns:
        A DataFrame with ``customer_id`` and the schema's columns.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    pre = pipeline.steps[0][1]
    stats: dict[str, tuple[float, float, float]] = {}
    categories: dict[str, list[str]] = {}
    for _, transformer, columns in pre.transformers_:
        if transformer == "drop":
            continue
        steps = _steps(transformer)
        for j, col in enumerate(columns):
            mean, std, median = 0.0, 1.0, 0.0
            for step in steps:
                if hasattr(step, "mean_") and step.mean_ is not None:
                    mean, std = float(step.mean_[j]), float(step.scale_[j])
                if hasattr(step, "statistics_") and schema.get(col).kind == "numeric":
                    median = float(step.statistics_[j])
                if hasattr(step, "categories_"):
                    categories[col] = [str(c) for c in step.categories_[j]]
            stats[col] = (mean, std, median)
    data: dict[str, Any] = {"customer_id": [f"probe-{i:05d}" for i in range(rows)]}
    for spec in schema.features:
        may_be_missing = spec.nullable or not serveable
        if spec.kind == "numeric":
            mean, std, median = stats.get(spec.name, (0.0, 1.0, 0.0))
            values = rng.normal(mean, std, rows)
            values[rng.random(rows) < 0.1] = median
            if may_be_missing:
                values[rng.random(rows) < 0.1] = np.nan
            data[spec.name] = values
        else:
            cats = [c for c in categories.get(spec.name, list(spec.categories)) if c != "missing"] or ["x"]
            pool = [*cats, "never-seen-in-training"]
            picked: list[str | None] = [pool[i] for i in rng.integers(0, len(pool), rows)]
            if may_be_missing:
                picked = [None if m else v for v, m in zip(picked, rng.random(rows) < 0.1, strict=True)]
            data[spec.name] = picked
    return pd.DataFrame(data)


# --------------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------------

def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for dist in ("numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def request_instances(frame: pd.DataFrame, schema: FeatureSchema) -> list[dict[str, Any]]:
    """Rows of a DataFrame as request instances (JSON types, null for missing values)."""
    out = []
    for row in frame[["customer_id", *schema.names]].to_dict(orient="records"):
        rec: dict[str, Any] = {}
        for column, value in row.items():
            key = str(column)  # a column name
            if value is None or (isinstance(value, float) and math.isnan(value)):
                rec[key] = None
            elif isinstance(value, (np.floating, float)):
                rec[key] = float(value)
            else:
                rec[key] = str(value)
        out.append(rec)
    return out


def write_manifest(model_dir: Path, *, schema: FeatureSchema, threshold: float, model_type: str,
                   metrics: dict[str, float] | None = None, parity: Parity | None = None,
                   probe: dict[str, list] | None = None, model_version: str = "",
                   libraries: dict[str, str] | None = None) -> Path:
    """Writes ``manifest.json`` over every file now in ``model_dir`` (sub-folders excluded).

    Args:
        model_dir: The model folder.
        schema: Feature schema (copied in full).
        threshold: Decision threshold.
        model_type: Estimator name.
        metrics: Metrics known when writing (e.g. validation ROC AUC at training).
        parity: Export parity measured on the probe rows.
        probe: ``{"instances": [...], "churn_probability": [...]}`` the server replays.
        model_version: Registry version when known (training does not know it; see README).
        libraries: Library versions (default: this environment's).

    Returns:
        The manifest path.
    """
    files = {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
             for p in sorted(model_dir.iterdir()) if p.is_file() and p.name != MANIFEST_FILE}
    manifest = {
        "format": MANIFEST_FORMAT,
        "model_type": model_type,
        "model_version": model_version,
        "threshold": float(threshold),
        "files": files,
        "feature_schema": json.loads(json.dumps(schema.to_dict())),
        "onnx": {"file": ONNX_FILE, "inputs": {NUMERIC_INPUT: schema.numeric, CATEGORICAL_INPUT: schema.categorical},
                 "output": PROBABILITY_OUTPUT, "missing_category": MISSING_CATEGORY,
                 "opset": {"": OPSET, "ai.onnx.ml": ML_OPSET}, "precision": "float64"},
        "libraries": libraries or _versions(),
        "metrics": metrics or {},
        "parity": ({"rows": parity.rows, "max_abs_diff": parity.max_abs_diff, "tolerance": PARITY_TOLERANCE,
                    "decisions_differ": parity.decisions_differ,
                    "rows_from": "synthetic probe drawn from the fitted preprocessing statistics"}
                   if parity else {}),
        "probe": probe or {},
    }
    path = model_dir / MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def export_model(pipeline: Pipeline, schema: FeatureSchema, model_dir: Path, *, threshold: float, model_type: str,
                 metrics: dict[str, float] | None = None, model_version: str = "") -> dict:
    """Writes ``model.onnx`` and ``manifest.json`` into a model folder, after checking parity.

    Parity is measured on :data:`PROBE_ROWS` synthetic rows (see :func:`probe_frame`); the export fails
    rather than ship a model that scores differently from the one that was evaluated.

    Args:
        pipeline: Fitted pipeline.
        schema: Feature schema.
        model_dir: The model folder (already holding the other files).
        threshold: Decision threshold.
        model_type: Estimator name.
        metrics: Metrics known now.
        model_version: Registry version, when known.

    Returns:
        The manifest written.

    Raises:
        ExportError: Unsupported pipeline, or probabilities differ by more than :data:`PARITY_TOLERANCE`.
    """
    model = to_onnx(pipeline, schema)
    sess = session(model)
    parity = check_parity(pipeline, sess, probe_frame(pipeline, schema), schema, threshold)
    if not parity.ok():
        raise ExportError(f"ONNX export differs from scikit-learn by {parity.max_abs_diff:.3g} "
                          f"(> {PARITY_TOLERANCE}) on {parity.rows} probe rows; not writing {ONNX_FILE}")
    served = probe_frame(pipeline, schema, MANIFEST_PROBE_ROWS, seed=1, serveable=True)
    probe = {"instances": request_instances(served, schema),
             "churn_probability": onnx_proba(sess, served, schema).tolist()}
    (model_dir / ONNX_FILE).write_bytes(model.SerializeToString())
    write_manifest(model_dir, schema=schema, threshold=threshold, model_type=model_type, metrics=metrics,
                   parity=parity, probe=probe, model_version=model_version)
    return read_manifest(model_dir)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m components.export --help``."""
    parser = argparse.ArgumentParser(
        prog="python -m components.export",
        description="Export a trained model folder to ONNX + manifest.json, verify a folder against its "
                    "manifest, or measure ONNX vs scikit-learn parity on a processed split.")
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="(re)write model.onnx and manifest.json from model.joblib")
    e.add_argument("--model-dir", type=Path, required=True)
    v = sub.add_parser("verify", help="check a folder against its manifest")
    v.add_argument("--model-dir", type=Path, required=True)
    p = sub.add_parser("parity", help="max |p_onnx - p_sklearn| on a split (default validation.csv)")
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--split", type=Path, default=Path("data/processed/validation.csv"))
    args = parser.parse_args(argv)
    if args.command == "verify":
        manifest = verify_manifest(args.model_dir)
        print(f"{args.model_dir}: {len(manifest['files'])} files match the manifest")
        return 0
    from churn.model_io import load_model

    loaded = load_model(args.model_dir)
    if args.command == "export":
        card = loaded.card
        export_model(loaded.pipeline, loaded.schema, args.model_dir, threshold=loaded.threshold,
                     model_type=card.get("model_type", ""),
                     metrics={"validation_roc_auc": card.get("candidate_validation_roc_auc", {}).get(
                         card.get("model_type", ""), float("nan"))})
        print(f"wrote {args.model_dir / ONNX_FILE} and {args.model_dir / MANIFEST_FILE}")
        return 0
    from churn.features import read_split

    frame = read_split(args.split, loaded.schema)
    result = check_parity(loaded.pipeline, session(args.model_dir / ONNX_FILE), frame, loaded.schema, loaded.threshold)
    print(json.dumps({"model_type": loaded.card.get("model_type"), "rows": result.rows,
                      "max_abs_diff": result.max_abs_diff, "decisions_differ": result.decisions_differ}))
    return 0 if result.ok() else 1


if __name__ == "__main__":
    raise SystemExit(main())
