"""Request and response models.

The customer instance is built from the model's feature schema (``feature_schema.json`` saved with the
model), so requests are validated against exactly the features the loaded model takes: numeric
features are finite JSON numbers within ±1e12, categorical features are strings (values unseen in
training are accepted and scored as unseen; ``""`` means missing), nullable features may be null or
left out, ``customer_id`` is optional and echoed back, and any other field is an error (or ignored, with
``extra_fields="ignore"``).

An instance is either that object or an array of the feature values in schema order (``feature_schema.
features``: what Vertex AI Batch Prediction sends for CSV and BigQuery sources); an array has exactly one
value per feature (``null`` only where the feature is nullable) and no ``customer_id``. One request may
mix both forms.

These pydantic models are the contract (the OpenAPI document, ``/schema`` and the detailed errors per
instance and field); the msgspec fast path of :mod:`serving.columns` accepts the same valid requests
sooner and hands everything else to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, Required

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, with_config
from typing_extensions import TypedDict

from churn.schema import ID_COLUMN, FeatureSchema

NUMBER_LIMIT = 1e12
MAX_TEXT = 1000
EXTRA_FIELDS = ("forbid", "ignore")
OBJECT_TAG, ARRAY_TAG = "object", "array"  # the two instance forms (pydantic union tags, in error locations)


class PredictParameters(BaseModel):
    """Optional ``parameters`` of a request."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(
        None, ge=0.0, le=1.0, allow_inf_nan=False, strict=True,  # a JSON number (int or float) or null, as documented
        description="Decision threshold for `churned` in this request (default: the model's, chosen at training).")


class Prediction(BaseModel):
    """One instance's prediction."""

    customer_id: str | None = Field(None, description="Echo of the instance's `customer_id`, if given.")
    churn_probability: float = Field(..., ge=0.0, le=1.0, description="Probability that the customer churns.")
    churned: bool = Field(..., description="`churn_probability >= threshold`.")
    threshold: float = Field(..., description="Decision threshold applied.")
    model_version: str = Field(..., description="Version of the model that scored the instance.")


class PredictResponse(BaseModel):
    """Vertex AI's prediction response: one prediction per instance, in order."""

    predictions: list[Prediction]


class FieldError(BaseModel):
    """One validation problem, located down to the instance and field."""

    loc: list[str | int] = Field(..., description='e.g. ["body", "instances", 3, "tenure_days"]')
    msg: str
    type: str
    input: Any = None


class ErrorResponse(BaseModel):
    """Error body for 400/413/422/503."""

    detail: list[FieldError] | str
    error_count: int | None = None


class PredictionLogHealth(BaseModel):
    """The prediction log of the worker that answered."""

    status: str = Field(..., description="`ok`, or `degraded` while writes fail or shortly after rows were lost")
    rows_written: int
    rows_lost: int = Field(..., description="Answered but not logged (write failed, or dropped from memory)")
    rows_pending: int = Field(..., description="Waiting in memory to be written")
    last_error: str | None = None


class HealthResponse(BaseModel):
    """Health: 200 with the model when loaded and verified, 503 otherwise."""

    status: str = Field(..., description="`ok`, `degraded` (served, but predictions are not all logged), "
                                         "`loading` or `unavailable`")
    model_name: str | None = None
    model_version: str | None = None
    model_type: str | None = None
    source: str | None = None
    error: str | None = None
    prediction_log: PredictionLogHealth | None = Field(None, description="null when the log is off")


def _numeric(description: str) -> Any:
    return Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-NUMBER_LIMIT, le=NUMBER_LIMIT,
                                  description=description or None)]


def _categorical(description: str, categories: tuple[str, ...]) -> Any:
    return Annotated[str, Field(strict=True, max_length=MAX_TEXT, description=description or None,
                                examples=list(categories[:10]) or None)]


@dataclass(frozen=True)
class RequestModels:
    """Validators and docs for one feature schema.

    Attributes:
        instance: The customer instance ``TypedDict``.
        batch: Adapter for ``{"instances": [...], "parameters": {...}}`` (each instance an object or an array).
        single: Adapter for one customer object.
        array: Adapter for one instance in array form (feature values in schema order).
    """

    instance: type
    batch: TypeAdapter
    single: TypeAdapter
    array: TypeAdapter

    def openapi_components(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(request body schema, component schemas)`` for the OpenAPI document."""
        ref = "#/components/schemas/{model}"
        batch = self.batch.json_schema(ref_template=ref)
        single = self.single.json_schema(ref_template=ref)
        defs = {**batch.pop("$defs", {}), **single.pop("$defs", {})}
        defs["PredictRequest"] = batch
        name = single.get("title", "CustomerInstance")
        if "$ref" not in single:
            defs[name] = single
        body = {"anyOf": [{"$ref": ref.format(model="PredictRequest")}, {"$ref": ref.format(model=name)}]}
        return body, defs


def _form(value: Any) -> str:
    """The union tag of one instance: arrays are the array form, anything else is checked as an object."""
    return ARRAY_TAG if isinstance(value, (list, tuple)) else OBJECT_TAG


def _typed_dict(name: str, fields: dict[str, Any], config: ConfigDict) -> Any:
    """A ``TypedDict`` whose fields are known only at run time, with its pydantic config."""
    return with_config(config)(TypedDict(name, fields))  # type: ignore[operator]  # fields known at run time only


def request_models(schema: FeatureSchema, max_instances: int, extra_fields: str = "forbid") -> RequestModels:
    """Builds the request validators for a feature schema.

    Args:
        schema: The model's feature schema.
        max_instances: Most instances per request (``maxItems``; more is answered with 413).
        extra_fields: ``forbid`` (an object instance with a field the model does not take is an error) or
            ``ignore`` (such fields are dropped: not scored, not logged).

    Returns:
        The validators.
    """
    if extra_fields not in EXTRA_FIELDS:
        raise ValueError(f"extra_fields must be one of {EXTRA_FIELDS}, not {extra_fields!r}")
    fields: dict[str, Any] = {
        ID_COLUMN: NotRequired[Annotated[str, Field(strict=True, max_length=MAX_TEXT,
                                                    description="Optional id, echoed back.")] | None]}
    positions: list[Any] = []
    for spec in schema.features:
        kind = _numeric(spec.description) if spec.kind == "numeric" else _categorical(spec.description, spec.categories)
        fields[spec.name] = NotRequired[kind | None] if spec.nullable else Required[kind]
        positions.append(kind | None if spec.nullable else kind)
    instance = _typed_dict("CustomerInstance", fields, ConfigDict(
        extra="forbid" if extra_fields == "forbid" else "ignore", title="CustomerInstance"))
    array: Any = Annotated[tuple[tuple(positions)], Field(  # type: ignore[misc]  # positions known at run time
        title="CustomerArray", description="The feature values in the order of feature_schema.features (GET /schema)")]
    either: Any = Annotated[Annotated[instance, Tag(OBJECT_TAG)] | Annotated[array, Tag(ARRAY_TAG)],
                            Discriminator(_form)]
    instances: Any = Annotated[list[either], Field(min_length=1, max_length=max_instances,
                                                   description="Customers to score: feature records (objects) or "
                                                               "arrays of feature values in schema order.")]
    batch = _typed_dict("PredictRequest", {"instances": Required[instances],
                                           "parameters": NotRequired[PredictParameters | None]},
                        ConfigDict(extra="forbid", title="PredictRequest"))
    return RequestModels(instance=instance, batch=TypeAdapter(batch), single=TypeAdapter(instance),
                         array=TypeAdapter(array))
