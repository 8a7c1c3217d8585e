"""The prediction-log CSV format, shared by the server's log and batch scoring's prediction files.

Columns: ``timestamp`` (UTC, ISO 8601), ``model_version``, ``customer_id``, the model's features in schema
order (empty = missing), ``churn_probability``, ``churned`` (0/1), ``threshold``; the drift check reads
both files as current data. Text is quoted as :mod:`csv` does (only values holding ``,`` or ``"``, quotes
doubled); control characters and lone surrogates, which some CSV readers split rows on or cannot decode,
are written as JSON-style ``\\uXXXX`` escapes, so one row is one line. Numbers are the shortest decimal
that reads back as the same double (orjson), NaN an empty cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import orjson

from churn.schema import ID_COLUMN, FeatureSchema

UNSAFE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # control characters and lone surrogates


def header(features: tuple[str, ...]) -> list[str]:
    """The CSV columns for a model's features."""
    return ["timestamp", "model_version", ID_COLUMN, *features, "churn_probability", "churned", "threshold"]


@dataclass(frozen=True)
class Layout:
    """Where each logged feature comes from.

    Attributes:
        features: Feature names, in CSV column order (the schema's).
        slots: Per feature, ``("n", j)`` (column ``j`` of the numeric array), ``("c", j)`` (of the categorical
            array) or ``("o", j)`` (the ``j``-th list of plain values).
    """

    features: tuple[str, ...]
    slots: tuple[tuple[str, int], ...]

    @classmethod
    def for_schema(cls, schema: FeatureSchema) -> Layout:
        """The layout of the ONNX inputs (numeric and categorical arrays, schema order) for ``schema``."""
        numeric, categorical = schema.numeric, schema.categorical
        slots = tuple(("n", numeric.index(f.name)) if f.kind == "numeric" else ("c", categorical.index(f.name))
                      for f in schema.features)
        return cls(tuple(schema.names), slots)

    @classmethod
    def plain(cls, features: tuple[str, ...]) -> Layout:
        """Every feature a list of plain values (``None`` = missing)."""
        return cls(tuple(features), tuple(("o", j) for j in range(len(features))))


def _escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def quote(text: str) -> str:
    """One text cell: unsafe characters escaped, quoted where CSV needs it."""
    if UNSAFE.search(text):
        text = UNSAFE.sub(_escape, text)
    if "," in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def number_rows(block: np.ndarray) -> list[bytes]:
    """Rows of a float or integer ``[n, k]`` block as ``b"a,b,…"`` (floats as float64, NaN → empty)."""
    block = np.ascontiguousarray(block, dtype=np.float64 if block.dtype.kind == "f" else None)
    if block.shape[1] == 1:  # orjson writes a flat array faster than n one-element rows
        text, sep = orjson.dumps(block.reshape(-1), option=orjson.OPT_SERIALIZE_NUMPY)[1:-1], b","  # b"[a,b]"
    else:
        text, sep = orjson.dumps(block, option=orjson.OPT_SERIALIZE_NUMPY)[2:-2], b"],["  # b"[[a,b],[c,d]]"
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        text = text.replace(b"null", b"")
    return text.split(sep)
