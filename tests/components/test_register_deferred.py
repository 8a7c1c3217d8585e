"""register_model with promotion deferred: the gate decides, the alias moves only when told (after publishing)."""

from pathlib import Path

import pytest

from churn.registry import get_registry
from components import register_model as rm
from components import train


@pytest.fixture(scope="module")
def model_dir(processed, tmp_path_factory) -> Path:
    trained = train.train_model(processed.split("train"), processed.split("validation"), processed.schema,
                                candidates=("logistic_regression",))
    return train.save_model(trained, processed.schema, tmp_path_factory.mktemp("models") / "m")


@pytest.mark.slow
def test_deferred_registration_moves_no_alias_until_applied(processed, model_dir: Path, tmp_path: Path) -> None:
    registry = get_registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = rm.register(model_dir, processed.folder, registry=registry, model_name="m", defer_promotion=True)
    assert (first["version"], first["alias"], first["promoted"], first["deferred"]) == ("1", "champion", True, True)
    assert registry.get_by_alias("m", "champion") is None  # decided, not applied
    assert registry.list_versions("m")[0].tags["stage"] == rm.PENDING_STAGE

    applied = rm.apply_decision(registry, first)
    assert applied["deferred"] is False and applied["alias"] == "champion"
    assert registry.get_by_alias("m", "champion").version == "1"
    assert registry.list_versions("m")[0].tags["stage"] == "production"

    # the gate ran against v1; if the champion moves before the decision is applied, there is no promotion
    second = rm.register(model_dir, processed.folder, registry=registry, model_name="m", force=True,
                         defer_promotion=True)
    third = rm.register(model_dir, processed.folder, registry=registry, model_name="m", force=True)
    assert registry.get_by_alias("m", "champion").version == third["version"] == "3"
    late = rm.apply_decision(registry, second)
    assert (late["alias"], late["promoted"]) == ("challenger", False)
    assert "champion moved from v1 to v3" in late["decision"]["reason"]
    assert registry.get_by_alias("m", "champion").version == "3"
    assert registry.get_by_alias("m", "challenger").version == "2"
    assert registry.get_by_alias("m", "archived").version == "1"
