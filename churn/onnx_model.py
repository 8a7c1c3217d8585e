"""The served model's files at run time: the ONNX graph's inputs and outputs, and the verified manifest.

``model.onnx`` takes ``numeric`` (double, ``[N, len(schema.numeric)]``, NaN = missing) and ``categorical``
(string, ``[N, len(schema.categorical)]``, ``""`` = missing), columns in schema order, and returns
``churn_probability`` (double, ``[N, 1]``). ``manifest.json`` lists every file of the model folder with its
sha256 and size, the feature schema and a probe the server replays; it protects against corrupt, partial or
edited copies (it is not a signature). Written at build time by ``components/export.py``.

Only the standard library and numpy are imported at the top, so the serving image (no scikit-learn, no
onnx) imports this module and nothing of the exporter.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from churn.schema import SCHEMA_FILE, FeatureSchema

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    import pandas as pd

ONNX_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "churn-model-manifest/1"
REGISTRATION_FILE = "registration.json"  # in a registered folder: the registry's version (register_model)
NUMERIC_INPUT = "numeric"
CATEGORICAL_INPUT = "categorical"
PROBABILITY_OUTPUT = "churn_probability"
MISSING_CATEGORY = ""  # what the graph treats as a missing categorical value (like an empty CSV cell)
PARITY_TOLERANCE = 1e-4
_CHUNK = 1 << 20


class ManifestError(RuntimeError):
    """A model folder does not match its manifest (missing, altered or unexpected content)."""


def feed_from_frame(frame: pd.DataFrame, schema: FeatureSchema) -> dict[str, np.ndarray]:
    """The graph's inputs for a DataFrame with the schema's columns (NaN/None/"" = missing).

    Args:
        frame: Rows to score.
        schema: Feature schema.

    Returns:
        ``{"numeric": float64 [N, k], "categorical": object [N, m]}`` (no ``categorical`` when m = 0).
    """
    import pandas as pd

    feed = {NUMERIC_INPUT: frame[schema.numeric].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)}
    if schema.categorical:
        cats = frame[schema.categorical].astype(object)
        feed[CATEGORICAL_INPUT] = cats.where(cats.notna(), MISSING_CATEGORY).astype(str).to_numpy(dtype=object)
    return feed


def session(model: onnx.ModelProto | bytes | Path) -> Any:
    """A single-threaded onnxruntime session for a model proto, its bytes or a file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = model if isinstance(model, (bytes, str)) else str(model) if isinstance(model, Path) \
        else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnx_proba(sess: Any, frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """Churn probabilities from an onnxruntime session for a DataFrame."""
    return sess.run([PROBABILITY_OUTPUT], feed_from_frame(frame, schema))[0][:, 0]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> dict:
    """Reads ``manifest.json`` of a model folder.

    Raises:
        ManifestError: Missing or not a manifest.
    """
    path = Path(model_dir) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest; re-export the model (python -m components.export export "
                            f"--model-dir {model_dir})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: unknown manifest format (expected {MANIFEST_FORMAT})")
    return manifest


def verify_manifest(model_dir: Path) -> dict:
    """Checks every file listed in the manifest (sha256 and size) and the schema it records.

    Args:
        model_dir: The model folder.

    Returns:
        The manifest.

    Raises:
        ManifestError: A listed file is missing or differs, the ONNX file is not listed, or
            ``feature_schema.json`` differs from the schema in the manifest.
    """
    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    files = manifest.get("files") or {}
    for needed in (ONNX_FILE, SCHEMA_FILE):
        if needed not in files:
            raise ManifestError(f"{model_dir / MANIFEST_FILE}: {needed} is not listed")
    for name, facts in files.items():
        path = model_dir / name
        if Path(name).name != name:
            raise ManifestError(f"{model_dir / MANIFEST_FILE}: file entry {name!r} is not a plain file name")
        if not path.is_file():
            raise ManifestError(f"{path}: listed in the manifest but missing")
        if path.stat().st_size != facts.get("bytes") or file_sha256(path) != facts.get("sha256"):
            raise ManifestError(f"{path}: sha256/size differ from the manifest (corrupt or altered copy)")
    if json.loads(json.dumps(FeatureSchema.load(model_dir).to_dict())) != manifest.get("feature_schema"):
        raise ManifestError(f"{model_dir / SCHEMA_FILE}: differs from the schema recorded in the manifest")
    return manifest


def version_label(folder: Path, manifest: dict, *, override: str = "", registry_version: str = "") -> str:
    """The version reported with predictions: the override, the registry version, ``registration.json``'s
    version, the manifest's, or ``sha-<first 12 hex of model.onnx>``."""
    if override:
        return override
    if registry_version:
        return f"v{registry_version}"
    registration = folder / REGISTRATION_FILE
    if registration.is_file():
        try:
            found = json.loads(registration.read_text()).get("version")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            found = None
        if found:
            return f"v{found}"
    if manifest.get("model_version"):
        return str(manifest["model_version"])
    return "sha-" + str(manifest["files"][ONNX_FILE]["sha256"])[:12]
