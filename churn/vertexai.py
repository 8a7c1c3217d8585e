"""Vertex AI basics shared by every Vertex module: the ``vertex://`` URI, labels, model IDs, the SDK session.

Every call goes through the google-cloud-aiplatform SDK over its REST transport (``api_transport="rest"``,
plain HTTPS + JSON, which also works through HTTP proxies). ``api_endpoint`` is an ordinary option: ``None``
means the regional endpoint ``REGION-aiplatform.googleapis.com``; a Private Service Connect host or any other
endpoint can be passed instead. The registry and the tracker are selected by URI (:func:`parse_vertex_uri`)::

    vertex://PROJECT/REGION?serving_image=IMAGE&staging=gs://BUCKET/models&experiment=churn&api_endpoint=URL
        &prediction_log=gs://BUCKET/predictions

Nothing happens at import: the SDK is imported inside the functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

SCHEME = "vertex"
TRANSPORT = "rest"
_MODEL_ID = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_BAD = re.compile(r"[^a-z0-9_-]")


@dataclass(frozen=True)
class VertexTarget:
    """Where and how to reach Vertex AI, parsed from a ``vertex://`` URI.

    Attributes:
        project: Google Cloud project ID.
        region: Vertex AI region, e.g. ``europe-west4``.
        api_endpoint: Endpoint override (regional or private); None for the default regional one.
        experiment: Vertex Experiments experiment name (tracking).
        serving_image: Serving container image URI, required to register models.
        staging: ``gs://`` prefix receiving registered model folders (and tracked artifacts).
        prediction_log: ``gs://`` prefix the registered versions' serving containers log predictions to
            (their ``SERVING_PREDICTION_LOG_URI``; the nightly drift check's ``--current``); empty: not set.
    """

    project: str
    region: str
    api_endpoint: str | None = None
    experiment: str = "churn"
    serving_image: str = ""
    staging: str = ""
    prediction_log: str = ""

    def uri(self) -> str:
        """The ``vertex://`` URI naming this target (inverse of :func:`parse_vertex_uri`)."""
        query = {k: v for k, v in (("serving_image", self.serving_image), ("staging", self.staging),
                                   ("experiment", self.experiment if self.experiment != "churn" else ""),
                                   ("api_endpoint", self.api_endpoint or ""),
                                   ("prediction_log", self.prediction_log)) if v}
        return f"{SCHEME}://{self.project}/{self.region}" + (f"?{urlencode(query)}" if query else "")


def is_vertex_uri(uri: str) -> bool:
    """Whether ``uri`` selects the Vertex AI backend (``vertex://…``)."""
    return str(uri).startswith(f"{SCHEME}://")


def parse_vertex_uri(uri: str) -> VertexTarget:
    """Parses ``vertex://PROJECT/REGION[?serving_image=…&staging=gs://…&experiment=…&api_endpoint=…]``.

    Raises:
        ValueError: Not a ``vertex://`` URI, no project or region, or an unknown query key.
    """
    parts = urlsplit(uri)
    region = parts.path.strip("/")
    if parts.scheme != SCHEME or not parts.netloc or not region or "/" in region:
        raise ValueError(f"{uri!r} is not a Vertex URI; write vertex://PROJECT/REGION, e.g. "
                         f"vertex://my-project/europe-west4?serving_image=…&staging=gs://my-bucket/models")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    known = {"serving_image", "staging", "experiment", "api_endpoint", "prediction_log"}
    if set(query) - known:
        raise ValueError(f"{uri!r}: unknown keys {sorted(set(query) - known)}; the query may hold {sorted(known)}")
    return VertexTarget(project=parts.netloc, region=region, api_endpoint=query.get("api_endpoint") or None,
                        experiment=query.get("experiment") or "churn", serving_image=query.get("serving_image", ""),
                        staging=query.get("staging", "").rstrip("/"),
                        prediction_log=query.get("prediction_log", "").rstrip("/"))


def label_value(value: object) -> str:
    """A Vertex label value: lowercase, ``[a-z0-9_-]`` (others become ``_``), at most 63 characters."""
    return _LABEL_BAD.sub("_", str(value).lower())[:63]


def labels_from_tags(tags: Mapping[str, object]) -> dict[str, str]:
    """Version tags as Vertex labels; keys must start with a letter (others get a ``t_`` prefix)."""
    out = {}
    for key, value in tags.items():
        k = label_value(key)
        out[k if k[:1].isalpha() else f"t_{k}"[:63]] = label_value(value)
    return out


def model_id(name: str) -> str:
    """The Vertex model ID for a registered model name (the name itself, validated).

    Raises:
        ValueError: The name is not a valid Vertex model ID.
    """
    if not _MODEL_ID.fullmatch(name):
        raise ValueError(f"model name {name!r} cannot be a Vertex model ID: use up to 63 characters of "
                         f"[a-z0-9_-] starting with a letter, e.g. 'churn-model'")
    return name


def init_sdk(project: str, region: str, api_endpoint: str | None = None, **kwargs: Any) -> None:
    """Points the aiplatform SDK at ``project``/``region`` over REST (``api_endpoint`` overrides the host).

    Args:
        project: Google Cloud project ID.
        region: Vertex AI region.
        api_endpoint: Regional/private endpoint override; None keeps ``REGION-aiplatform.googleapis.com``.
        **kwargs: More ``aiplatform.init`` settings (e.g. ``experiment``, ``staging_bucket``).
    """
    from google.cloud import aiplatform

    aiplatform.init(project=project, location=region, api_endpoint=api_endpoint, api_transport=TRANSPORT, **kwargs)


def console_url(resource_name: str) -> str:
    """The Cloud console page of a pipeline job, model or endpoint resource name."""
    m = re.match(r"projects/([^/]+)/locations/([^/]+)/(\w+)/([^/@]+)", resource_name)
    if not m:
        return ""
    project, region, kind, rid = m.groups()
    page = {"pipelineJobs": f"pipelines/runs/{rid}", "models": f"models/{rid}",
            "endpoints": f"endpoints/{rid}", "schedules": f"pipelines/schedules/{rid}",
            "batchPredictionJobs": f"batch-predictions/{rid}"}.get(kind, "")
    return f"https://console.cloud.google.com/vertex-ai/locations/{region}/{page}?project={project}" if page else ""



def model_resource(project: str, region: str, name: str) -> str:
    """The resource name of a registered model: ``projects/P/locations/R/models/<model ID>``."""
    return f"projects/{project}/locations/{region}/models/{model_id(name)}"


def vertex_base_url(region: str, api_endpoint: str | None = None) -> str:
    """The Vertex AI REST base URL: ``https://REGION-aiplatform.googleapis.com`` or the endpoint override."""
    host = (api_endpoint or f"{region}-aiplatform.googleapis.com").rstrip("/")
    return host if "://" in host else f"https://{host}"
