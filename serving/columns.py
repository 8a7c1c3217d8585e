"""Requests as columns: the validation fast path and the model's input arrays.

msgspec decodes a request body straight into typed structs generated from the feature schema, checking
everything the pydantic models in :mod:`serving.schemas` check, as it parses (one pass in C): unknown and
missing fields, strict types (numbers for numeric features, ``int`` accepted and ``bool`` refused; text
for categorical features and ``customer_id``), the ±1e12 range of numbers, text lengths, ``null`` only
where a feature is nullable, 1 to ``max_instances`` instances, the ``parameters``. An instance is an object
or an array of the feature values in schema order (a typed fixed-length tuple: length and each position's
type checked by msgspec); unknown object fields are refused, or skipped with ``extra_fields="ignore"``.
Then each object instance becomes one tuple ``(customer_id, *features)`` (``msgspec.structs.astuple``, in
C; the struct's fields are in the order requests usually list them, which msgspec matches fastest); the
tuples (arrays are such tuples already, without the id) fill one object array, from which numpy takes (and
casts) whole columns.

It only ever decides "valid": any body it does not accept (malformed, invalid, or merely unusual, such as
a duplicated key) makes :meth:`ColumnParser.parse` return ``None``, and the
request goes through the pydantic models, which accept it or give the errors per instance and field. What
it accepts, pydantic accepts too, with the same values (``tests/serving/test_columns.py`` checks both on
valid, invalid and edge-case bodies).

The result, :class:`Columns`, holds the ONNX inputs (numeric float64 with NaN for missing, categorical
text with ``""`` for missing, columns in schema order) and the ``customer_id``\\ s; the response and the
prediction log are built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Annotated, Any

import msgspec
import numpy as np

from churn.onnx_model import CATEGORICAL_INPUT, MISSING_CATEGORY, NUMERIC_INPUT
from churn.schema import ID_COLUMN, FeatureSchema
from serving.schemas import MAX_TEXT, NUMBER_LIMIT

_NUMBER = Annotated[float, msgspec.Meta(ge=-NUMBER_LIMIT, le=NUMBER_LIMIT)]  # JSON ints accepted, bools not
_TEXT = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
_THRESHOLD = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
_ID_ATTR = "id_"
_astuple = msgspec.structs.astuple


@dataclass(frozen=True)
class Columns:
    """Validated instances as arrays.

    Attributes:
        numeric: float64 ``[n, len(schema.numeric)]``, NaN = missing.
        categorical: text (object) ``[n, len(schema.categorical)]``, ``""`` = missing; ``None`` when the
            schema has no categorical feature.
        ids: Each instance's ``customer_id`` (``None`` when not given).
    """

    numeric: np.ndarray
    categorical: np.ndarray | None
    ids: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def concat(cls, parts: list[Columns]) -> Columns:
        """The instances of ``parts``, in order."""
        return cls(numeric=np.concatenate([c.numeric for c in parts]),
                   categorical=None if parts[0].categorical is None else np.concatenate([c.categorical for c in parts]),
                   ids=[i for c in parts for i in c.ids])

    def feed(self) -> dict[str, np.ndarray]:
        """The onnxruntime inputs."""
        feed = {NUMERIC_INPUT: self.numeric}
        if self.categorical is not None:
            feed[CATEGORICAL_INPUT] = self.categorical
        return feed


def columns_from_instances(schema: FeatureSchema, instances: list[dict[str, Any]]) -> Columns:
    """The arrays for instances already validated (by pydantic): missing numeric → NaN, missing
    categorical → ``""``, columns in schema order."""
    numeric, categorical = schema.numeric, schema.categorical
    n = len(instances)
    num = np.array([tuple(map(inst.get, numeric)) for inst in instances], dtype=np.float64).reshape(n, len(numeric))
    cat = None
    if categorical:
        cat = np.array([tuple(inst.get(name) or MISSING_CATEGORY for name in categorical) for inst in instances],
                       dtype=object).reshape(n, len(categorical))
    return Columns(numeric=num, categorical=cat, ids=[inst.get(ID_COLUMN) for inst in instances])


class ColumnParser:
    """The fast path for one feature schema (see the module docstring).

    Args:
        schema: The model's feature schema.
        max_instances: Most instances per request (more: left to the pydantic path, which answers 413).
        extra_fields: ``forbid`` or ``ignore`` unknown fields of object instances (as the pydantic models).
    """

    def __init__(self, schema: FeatureSchema, max_instances: int, extra_fields: str = "forbid") -> None:
        # Attributes are f0, f1, … (feature names need not be identifiers), renamed to the JSON keys;
        # customer_id first, as requests (and components.export.request_instances) put it.
        attr = {spec.name: f"f{i}" for i, spec in enumerate(schema.features)}
        fields: list[tuple] = [(_ID_ATTR, _TEXT | None, None)]
        positions: list[Any] = []
        for spec in schema.features:
            kind = _NUMBER if spec.kind == "numeric" else _TEXT
            fields.append((attr[spec.name], kind | None, None) if spec.nullable else (attr[spec.name], kind))
            positions.append(kind | None if spec.nullable else kind)
        rename = {a: name for name, a in attr.items()} | {_ID_ATTR: ID_COLUMN}
        instance = msgspec.defstruct("CustomerInstance", fields, kw_only=True, rename=rename, gc=False,
                                     forbid_unknown_fields=extra_fields != "ignore")
        array: Any = tuple[tuple(positions)]  # type: ignore[misc]  # positions known at run time
        parameters = msgspec.defstruct("PredictParameters", [("threshold", _THRESHOLD | None, None)],
                                       forbid_unknown_fields=True, gc=False)
        batch = msgspec.defstruct(
            "PredictRequest",
            [("instances", Annotated[list[instance | array],  # type: ignore[valid-type]  # a run-time struct
                                     msgspec.Meta(min_length=1, max_length=max_instances)]),
             ("parameters", parameters | None, None)],
            kw_only=True, forbid_unknown_fields=True, gc=False)
        self._batch = msgspec.json.Decoder(batch)
        self._single = msgspec.json.Decoder(instance)
        position = {name: 1 + i for i, name in enumerate(schema.names)}  # in the row tuple; 0 is customer_id
        self._numeric_positions = [position[name] for name in schema.numeric]
        self._categorical_positions = [position[name] for name in schema.categorical]
        self._nullable_categorical = any(schema.get(name).nullable for name in schema.categorical)
        self._row_width = 1 + len(schema.names)
        self._rename = rename
        self._names = tuple(schema.names)

    def parse(self, body: bytes) -> tuple[list[Any], float | None, Columns] | None:
        """``(instances, threshold, columns)`` when the body is certainly valid, else ``None``.

        The instances are msgspec structs; :meth:`as_dict` turns one into the instance dict.
        """
        try:
            if b'"instances"' in body:
                request: Any = self._batch.decode(body)  # a struct type built at run time
                instances = request.instances
                threshold = None if request.parameters is None else request.parameters.threshold
            else:  # one customer object
                instances, threshold = [self._single.decode(body)], None
        except (msgspec.DecodeError, ValueError):  # ValueError: invalid UTF-8
            return None
        return instances, threshold, self.columns(instances)

    def columns(self, instances: list[Any]) -> Columns:
        """The arrays for decoded (valid) instances.

        All values go into one object array ``[n, 1 + features]`` (``msgspec.structs.astuple`` per object
        instance, flattened by ``np.fromiter``), from which numpy takes whole columns: the numeric ones cast
        to float64 in one call (``None``, null or absent, → NaN), the categorical ones as they are. A request
        of arrays only is flattened as it is (``[n, features]``, no id column); only a request mixing both
        forms runs Python code per instance.
        """
        n = len(instances)
        kinds = set(map(type, instances))
        shift = 0
        if tuple not in kinds:  # objects only
            flat = chain.from_iterable(map(_astuple, instances))
        elif len(kinds) == 1:  # arrays only: no id column
            flat, shift = chain.from_iterable(instances), 1
        else:
            flat = chain.from_iterable([(None, *x) if type(x) is tuple else _astuple(x) for x in instances])
        width = self._row_width - shift
        table = np.fromiter(flat, dtype=object, count=n * width).reshape(n, width)
        num = table[:, [p - shift for p in self._numeric_positions]].astype(np.float64)
        cat = None
        if self._categorical_positions:
            cat = table[:, [p - shift for p in self._categorical_positions]]
            if self._nullable_categorical:
                cat[np.equal(cat, None)] = MISSING_CATEGORY  # type: ignore[call-overload]  # stubs omit None
        ids = [None] * n if shift else table[:, 0].tolist()
        return Columns(numeric=num, categorical=cat, ids=ids)

    def as_dict(self, instance: Any) -> dict[str, Any]:
        """A decoded instance as the instance dict (absent optional fields as ``None``; an array instance has
        no ``customer_id``)."""
        if type(instance) is tuple:
            return {ID_COLUMN: None, **dict(zip(self._names, instance, strict=True))}
        return {self._rename[k]: v for k, v in msgspec.structs.asdict(instance).items()}
