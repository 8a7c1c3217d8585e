"""The feature schema: the one description of the model's inputs.

Written by feature engineering next to the features, saved with every model, read by serving (to
validate requests) and by the drift check (to pick a metric per feature). Plain Python and JSON only,
so every environment (main, serving image, TFDV) can load it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

FeatureKind = Literal["numeric", "categorical"]
ID_COLUMN = "customer_id"
LABEL_COLUMN = "churned"
SCHEMA_FILE = "feature_schema.json"


@dataclass(frozen=True)
class FeatureSpec:
    """One model input.

    Attributes:
        name: Column name in feature files, processed splits and prediction requests.
        kind: ``numeric`` (float, may be null when ``nullable``) or ``categorical`` (text).
        source: ``transactions`` (derived) or ``customer`` (an attribute of customers.csv).
        description: What the value means, shown in the API docs.
        nullable: Whether null/missing is a legal value.
        categories: For categorical features, the values seen in training (others are allowed and
            treated as unseen).
    """

    name: str
    kind: FeatureKind
    source: str
    description: str = ""
    nullable: bool = False
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureSchema:
    """The versioned list of model inputs.

    Attributes:
        version: Feature-definition version (bumped when the definition changes).
        features: The inputs, in model column order.
        cutoff: ISO timestamp the features were computed at.
        churn_window_days: Label window used with this feature set.
        mix_columns: For category/channel mix features, the transaction field and the values
            that got their own share column (others fold into ``other``).
        left_out: Customer attributes that are not features, each with the reason (an identifier,
            say: a different value for nearly every customer).
    """

    version: int
    features: tuple[FeatureSpec, ...]
    cutoff: str = ""
    churn_window_days: int = 0
    mix_columns: dict[str, list[str]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Feature names in model column order."""
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        """Names of numeric features."""
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        """Names of categorical features."""
        return [f.name for f in self.features if f.kind == "categorical"]

    def get(self, name: str) -> FeatureSpec:
        """Returns the spec of feature ``name``.

        Raises:
            KeyError: No such feature.
        """
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def to_dict(self) -> dict:
        """Returns a JSON-ready dict."""
        data = asdict(self)
        for feat in data["features"]:
            feat["categories"] = list(feat["categories"])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSchema:
        """Builds a schema from :meth:`to_dict` output."""
        feats = tuple(
            FeatureSpec(**{**f, "categories": tuple(f.get("categories", ()))}) for f in data["features"]
        )
        return cls(
            version=int(data["version"]),
            features=feats,
            cutoff=data.get("cutoff", ""),
            churn_window_days=int(data.get("churn_window_days", 0)),
            mix_columns={k: list(v) for k, v in data.get("mix_columns", {}).items()},
            left_out={str(k): str(v) for k, v in data.get("left_out", {}).items()},
        )

    def save(self, path: Path | str) -> Path:
        """Writes the schema as JSON; ``path`` may be a folder (then ``feature_schema.json`` in it)."""
        path = Path(path)
        if path.is_dir():
            path = path / SCHEMA_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path | str) -> FeatureSchema:
        """Reads a schema written by :meth:`save`; ``path`` may be the folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / SCHEMA_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: feature schema not found; run feature_engineering first "
                f"(it writes {SCHEMA_FILE} next to the features)"
            ) from None
