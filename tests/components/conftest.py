"""Fixtures for stage tests: processed splits built once from generated data."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from churn.schema import FeatureSchema
from components import data_prep, feature_engineering


@dataclass(frozen=True)
class Processed:
    folder: Path
    schema: FeatureSchema

    def split(self, name: str):
        return feature_engineering.read_split(self.folder / f"{name}.csv", self.schema)


@pytest.fixture(scope="session")
def processed(sample_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Processed:
    """data_prep + feature_engineering on 1,500 generated customers."""
    root = tmp_path_factory.mktemp("stages")
    data_prep.run(sample_raw_dir, root / "interim", seed=11)
    feature_engineering.run(root / "interim", root / "features", root / "processed", root / "processed")
    return Processed(folder=root / "processed", schema=FeatureSchema.load(root / "processed"))
