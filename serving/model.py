"""The served model: load a model folder, verify it, score requests with onnxruntime.

Loading never unpickles anything: the folder is checked against ``manifest.json`` (sha256 and size of
every listed file, the feature schema), ``model.onnx`` is opened by onnxruntime, its inputs are checked
against the schema, and the probe stored in the manifest (instances and the probabilities training
computed for them) is replayed through the same validation and scoring path requests take, and through
the detailed (pydantic) validation path too: both must give training's probabilities. Only then is the
model served.

Requests are validated by a fast path (:mod:`serving.columns`: msgspec structs generated from the schema)
that only ever accepts; any request it does not accept goes through the pydantic models, which give the
errors per instance and field.

Where the model comes from (:class:`StorageSource`, :class:`RegistrySource`):

* ``AIP_STORAGE_URI`` set — a ``gs://`` folder (copied to a local cache) or a local folder; loaded once.
* otherwise — the registry's alias (``champion``): polled every ``poll_seconds``; when it moves, the new
  version is downloaded, verified and swapped in while the old one keeps answering.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from churn.logformat import Layout
from churn.onnx_model import (
    CATEGORICAL_INPUT,
    NUMERIC_INPUT,
    ONNX_FILE,
    PARITY_TOLERANCE,
    PROBABILITY_OUTPUT,
    ManifestError,
    verify_manifest,
    version_label,
)
from churn.schema import FeatureSchema
from serving.columns import ColumnParser, Columns, columns_from_instances
from serving.schemas import ARRAY_TAG, OBJECT_TAG, RequestModels, request_models

logger = logging.getLogger(__name__)

class RequestError(Exception):
    """A request the model cannot score; carries the HTTP status and an error body."""

    def __init__(self, status: int, detail: list[dict[str, Any]] | str) -> None:
        super().__init__(detail if isinstance(detail, str) else f"{len(detail)} error(s)")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request.

    Attributes:
        columns: The instances as model input arrays (what is scored, answered and logged).
        threshold: Decision threshold override from ``parameters``, if any.
        records: The instances as validated: dicts (detailed path), msgspec structs or tuples (fast path).
        as_dict: Turns a fast-path struct or tuple into its dict.
    """

    columns: Columns
    threshold: float | None = None
    records: list[Any] = field(default_factory=list)
    as_dict: Any = None

    @property
    def instances(self) -> list[dict[str, Any]]:
        """Customer records as dicts with the schema's keys (optional ones absent or ``None``)."""
        return [r if isinstance(r, dict) else self.as_dict(r) for r in self.records]


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, str) or len(value) <= 200 else value[:200] + "…"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return None  # objects and lists: the location says enough, and echoing them could be large


def _errors(exc: ValidationError, names: tuple[str, ...] = (), max_errors: int = 100) -> list[dict[str, Any]]:
    """Validation errors as ``loc``/``msg``/``type``/``input``; see :func:`_instance_error` for instances."""
    out, arrays_told = [], set()
    for err in exc.errors(include_url=False, include_context=False):
        loc = ["body", *err["loc"]]
        msg, kind, value = err["msg"], err["type"], _json_safe(err.get("input"))
        if len(loc) >= 4 and loc[1] == "instances" and loc[3] in (OBJECT_TAG, ARRAY_TAG):
            found = _instance_error(loc, msg, kind, err.get("input"), names)
            if found is None:
                continue
            loc, msg, kind = found
            if kind == "array_length":
                if loc[2] in arrays_told:  # one error per array of the wrong length, not one per position
                    continue
                arrays_told.add(loc[2])
                value = None
        out.append({"loc": loc, "msg": msg, "type": kind, "input": value})
        if len(out) >= max_errors:
            break
    return out


def _instance_error(loc: list[Any], msg: str, kind: str, value: Any,
                    names: tuple[str, ...]) -> tuple[list[Any], str, str] | None:
    """One error of ``instances[i]``, its union tag (``object``/``array``) taken out of the location.

    In array form the location is ``["body", "instances", i, position]`` and the message names the feature
    at that position; an array of the wrong length is one ``array_length`` error saying how many values the
    model takes. An instance that is neither an object nor an array says both forms are accepted.
    """
    tag, rest = loc[3], loc[4:]
    base = loc[:3]
    if tag == OBJECT_TAG:
        if not rest and kind == "dict_type":
            return base, (f"Input should be an object (a feature record) or an array of the {len(names)} feature "
                          "values in the order of feature_schema.features (GET /schema)"), "instance_type"
        return base + rest, msg, kind
    if (kind == "too_long" and not rest) or (kind == "missing" and len(rest) == 1):
        count = f"{len(value)} values" if isinstance(value, (list, tuple)) else "the wrong number of values"
        return base, (f"the array has {count}; the model takes {len(names)}, one per feature in the order of "
                      f"feature_schema.features (GET /schema): {', '.join(names)}"), "array_length"
    if rest and isinstance(rest[0], int) and 0 <= rest[0] < len(names):
        return base + rest, f"{names[rest[0]]} (position {rest[0]}): {msg}", kind
    return base + rest, msg, kind


@dataclass(frozen=True)
class ServedModel:
    """A verified model ready to score.

    Attributes:
        name: Registered model name.
        version: Version label reported with each prediction and used to name the prediction log.
        source: Where the folder came from (URI or path).
        folder: Local model folder.
        schema: Feature schema.
        threshold: Decision threshold chosen at training.
        manifest: The verified manifest.
        session: onnxruntime session (single-threaded; one per worker process).
        requests: Request validators built from the schema (docs, and the detailed error path).
        fast: The validation fast path for the schema (:mod:`serving.columns`).
        log_layout: Where the prediction log finds each feature in :class:`Columns`.
        loaded_at: Unix time the model was verified.
    """

    name: str
    version: str
    source: str
    folder: Path
    schema: FeatureSchema
    threshold: float
    manifest: dict
    session: Any
    requests: RequestModels
    fast: ColumnParser
    log_layout: Layout
    loaded_at: float = field(default_factory=time.time)

    @property
    def model_type(self) -> str:
        return str(self.manifest.get("model_type", ""))

    def parse(self, body: bytes) -> ParsedRequest:
        """Validates a request body: ``{"instances": [...], "parameters": {...}}`` or one customer object.

        Raises:
            RequestError: 400 for malformed JSON, 413 for too many instances, 422 with per-instance,
                per-field errors otherwise.
        """
        fast = self.fast.parse(body)
        if fast is not None:
            records, threshold, columns = fast
            return ParsedRequest(columns=columns, threshold=threshold, records=records, as_dict=self.fast.as_dict)
        return self.parse_detailed(body)

    def parse_detailed(self, body: bytes) -> ParsedRequest:
        """:meth:`parse` through the pydantic models only (the path of every request the fast path does
        not accept, and of its errors)."""
        try:
            batch = self.requests.batch.validate_json(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            if any(e["type"] == "json_invalid" for e in errors):
                raise RequestError(400, [{"loc": ["body"], "msg": errors[0]["msg"], "type": "json_invalid",
                                          "input": None}]) from None
            if any(e["type"] == "too_long" and tuple(e["loc"]) == ("instances",) for e in errors):
                raise RequestError(413, "too many instances in one request; split it (limit: see maxItems in "
                                        "the OpenAPI document)") from None
            names = tuple(self.schema.names)
            if not any(e["type"] == "missing" and tuple(e["loc"]) == ("instances",) for e in errors):
                raise RequestError(422, _errors(exc, names)) from None
            try:  # no "instances": a single customer object
                instances = [self.requests.single.validate_json(body)]
            except ValidationError as single_exc:
                raise RequestError(422, _errors(single_exc, names)) from None
            return ParsedRequest(columns=columns_from_instances(self.schema, instances), records=instances)
        params = batch.get("parameters")
        instances = [dict(zip(self.schema.names, x, strict=True)) if isinstance(x, tuple) else x
                     for x in batch["instances"]]
        return ParsedRequest(columns=columns_from_instances(self.schema, instances),
                             threshold=params.threshold if params else None, records=instances)

    def feed(self, instances: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        """The ONNX inputs for validated instances: numeric float64 (missing → NaN), categorical text
        (missing → ``""``), columns in schema order."""
        return columns_from_instances(self.schema, instances).feed()

    def predict_proba(self, instances: list[dict[str, Any]]) -> np.ndarray:
        """Churn probabilities for validated instances (see :meth:`score`)."""
        return self.score(columns_from_instances(self.schema, instances))

    def score(self, columns: Columns) -> np.ndarray:
        """Churn probabilities for validated instances as arrays.

        Raises:
            RequestError: 422 naming the instances whose probability is not finite.
        """
        proba = self.session.run([PROBABILITY_OUTPUT], columns.feed())[0].reshape(-1)
        if not np.isfinite(proba).all():
            bad = np.flatnonzero(~np.isfinite(proba))[:100].tolist()
            raise RequestError(422, [{"loc": ["body", "instances", int(i)], "type": "value_error", "input": None,
                                      "msg": "the model gives no finite probability for this instance"} for i in bad])
        return proba


def _check_session(sess: Any, schema: FeatureSchema, folder: Path) -> None:
    inputs = {i.name: i for i in sess.get_inputs()}
    expected = {NUMERIC_INPUT: ("tensor(double)", len(schema.numeric))}
    if schema.categorical:
        expected[CATEGORICAL_INPUT] = ("tensor(string)", len(schema.categorical))
    if set(inputs) != set(expected):
        raise ManifestError(f"{folder / ONNX_FILE}: inputs {sorted(inputs)} do not match the schema's "
                            f"{sorted(expected)}")
    for name, (dtype, width) in expected.items():
        if inputs[name].type != dtype or inputs[name].shape[-1] != width:
            raise ManifestError(f"{folder / ONNX_FILE}: input {name} is {inputs[name].type}{inputs[name].shape}, "
                                f"the schema needs {dtype}[N, {width}]")
    if [o.name for o in sess.get_outputs()] != [PROBABILITY_OUTPUT]:
        raise ManifestError(f"{folder / ONNX_FILE}: expected the single output {PROBABILITY_OUTPUT}")


def _replay_probe(model: ServedModel) -> float:
    probe = model.manifest.get("probe") or {}
    instances, expected = probe.get("instances"), probe.get("churn_probability")
    if not instances or not expected or len(instances) != len(expected):
        raise ManifestError(f"{model.folder}: the manifest has no probe to verify the model with")
    # One at a time through the request path, so any SERVING_MAX_INSTANCES admits the probe; then through
    # the detailed validation path, which requests the fast path does not accept take.
    # Then in array form (feature values in schema order), which must score exactly as the objects do.
    bodies = [json.dumps(instance).encode() for instance in instances]
    arrays = [json.dumps({"instances": [[instance.get(name) for name in model.schema.names]]}).encode()
              for instance in instances]
    declined = sum(model.fast.parse(body) is None for body in bodies + arrays)
    if declined:
        logger.warning("%d of %d probe bodies (objects and arrays) are not accepted by the validation fast path "
                       "(they are validated by the slower detailed path)", declined, 2 * len(bodies))
    diff = 0.0
    scored = {}
    for path, parse, sent in (("request", model.parse, bodies), ("detailed validation", model.parse_detailed, bodies),
                              ("array form", model.parse, arrays),
                              ("array form detailed", model.parse_detailed, arrays)):
        got = scored[path] = model.score(Columns.concat([parse(body).columns for body in sent]))
        diff = max(diff, float(np.max(np.abs(got - np.asarray(expected, dtype=np.float64)))))
        if not diff <= PARITY_TOLERANCE:
            raise ManifestError(f"{model.folder}: the probe scores differ from training's by {diff:.3g} "
                                f"(> {PARITY_TOLERANCE}) through the {path} path")
    if not np.array_equal(scored["request"], scored["array form"]):
        raise ManifestError(f"{model.folder}: the probe scores differently in array form than as objects")
    return diff


def load_model(folder: Path, *, name: str, source: str, max_instances: int, version_override: str = "",
               registry_version: str = "", extra_fields: str = "forbid") -> ServedModel:
    """Verifies a model folder and opens it for serving.

    Args:
        folder: Local model folder (``model.onnx``, ``feature_schema.json``, ``manifest.json``, …).
        name: Registered model name.
        source: Where it came from (for health and logs).
        max_instances: Request limit (part of the request schema).
        version_override: Version label to use instead of the one found.
        registry_version: The registry's version number, when loaded from the registry.
        extra_fields: ``forbid`` or ``ignore`` object fields the model does not take.

    Returns:
        The model, probe replayed.

    Raises:
        ManifestError: The folder does not match its manifest, the graph does not match the schema, or the
            probe scores differ.
    """
    import onnxruntime as ort

    manifest = verify_manifest(folder)
    schema = FeatureSchema.from_dict(manifest["feature_schema"])
    threshold = float(manifest.get("threshold", float("nan")))
    if not 0.0 <= threshold <= 1.0:
        raise ManifestError(f"{folder}: threshold {threshold} in the manifest is not in [0, 1]")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one per worker process; the workers use the cores
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        sess = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
        raise ManifestError(f"{folder / ONNX_FILE}: onnxruntime cannot load it ({exc})") from exc
    _check_session(sess, schema, folder)
    model = ServedModel(name=name, source=source, folder=folder, schema=schema, threshold=threshold,
                        manifest=manifest, session=sess, requests=request_models(schema, max_instances, extra_fields),
                        fast=ColumnParser(schema, max_instances, extra_fields), log_layout=Layout.for_schema(schema),
                        version=version_label(folder, manifest, override=version_override,
                                              registry_version=registry_version))
    diff = _replay_probe(model)
    logger.info("loaded %s %s (%s) from %s: manifest verified, probe max |diff| %.2g",
                name, model.version, model.model_type, source, diff)
    return model


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------

class ModelSource(Protocol):
    """Where models come from."""

    follows: bool  # True: keep checking for a new version

    def fetch(self, current: ServedModel | None) -> ServedModel | None:
        """A newly loaded model, or None when ``current`` is still the one to serve."""


@dataclass
class StorageSource:
    """``AIP_STORAGE_URI``: one folder, ``gs://`` (copied to the cache) or local (used in place)."""

    uri: str
    name: str
    max_instances: int
    cache_dir: Path
    version_override: str = ""
    extra_fields: str = "forbid"
    follows: bool = False

    def fetch(self, current: ServedModel | None) -> ServedModel | None:
        if current is not None:
            return None
        from churn.storage import download_prefix, is_gcs

        if is_gcs(self.uri):
            folder = Path(tempfile.mkdtemp(prefix="model-", dir=self.cache_dir))
            download_prefix(self.uri, folder)
        else:
            folder = Path(self.uri)
        return load_model(folder, name=self.name, source=self.uri, max_instances=self.max_instances,
                          version_override=self.version_override, extra_fields=self.extra_fields)


@dataclass
class RegistrySource:
    """A registry alias (default ``champion``), re-read on every call."""

    uri: str
    name: str
    alias: str
    max_instances: int
    cache_dir: Path
    version_override: str = ""
    extra_fields: str = "forbid"
    follows: bool = True
    _registry: Any = None

    def fetch(self, current: ServedModel | None) -> ServedModel | None:
        if self._registry is None:
            from churn.registry import get_registry

            self._registry = get_registry(self.uri)
        version = self._registry.get_by_alias(self.name, self.alias)
        if version is None:
            if current is None:
                raise LookupError(f"no {self.name!r} version has the alias {self.alias!r} in {self.uri} yet "
                                  "(register one: python components/register_model.py --stage Production)")
            return None
        if current is not None and current.source == f"{self.uri}#{self.name}/{version.version}":
            return None
        dest = self.cache_dir / f"{self.name}-v{version.version}-{time.time_ns()}"
        folder = self._registry.download(version, dest)
        try:
            return load_model(folder, name=self.name, source=f"{self.uri}#{self.name}/{version.version}",
                              max_instances=self.max_instances, version_override=self.version_override,
                              registry_version=version.version, extra_fields=self.extra_fields)
        except Exception:
            shutil.rmtree(dest, ignore_errors=True)
            raise

