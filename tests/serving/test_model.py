"""serving.model in process: request parsing, feature arrays, version labels, probe replay."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from churn.onnx_model import MANIFEST_FILE, ManifestError, version_label
from serving.model import RequestError, load_model
from tests.serving.conftest import Trained


@pytest.fixture(scope="module")
def served(models: dict[str, Trained]):
    model = models["hist_gradient_boosting"]
    return load_model(model.folder, name="churn-model", source=str(model.folder), max_instances=10), model


def test_parse_batch_single_and_errors(served):
    model, trained = served
    instances = trained.instances(2)
    batch = model.parse(json.dumps({"instances": instances, "parameters": {"threshold": 0.3}}).encode())
    assert batch.instances == instances and batch.threshold == 0.3
    assert model.parse(json.dumps(instances[0]).encode()).instances == [instances[0]]
    with pytest.raises(RequestError) as err:
        model.parse(json.dumps({**instances[0], "bogus": 1}).encode())
    assert err.value.status == 422 and err.value.detail[0]["loc"] == ["body", "bogus"]
    with pytest.raises(RequestError) as err:
        model.parse(json.dumps({"instances": instances * 6}).encode())
    assert err.value.status == 413
    with pytest.raises(RequestError) as err:
        model.parse(b"{")
    assert err.value.status == 400


def test_feed_maps_missing_values_and_keeps_schema_order(served):
    model, trained = served
    inst = trained.instances(1)[0]
    nullable = [f.name for f in trained.schema.features if f.nullable]
    for name in nullable:
        inst.pop(name, None)
    inst[trained.schema.categorical[0]] = ""
    feed = model.feed([inst])
    assert feed["numeric"].shape == (1, len(trained.schema.numeric)) and feed["numeric"].dtype == np.float64
    assert feed["categorical"].shape == (1, len(trained.schema.categorical))
    for name in nullable:
        if name in trained.schema.numeric:
            assert np.isnan(feed["numeric"][0, trained.schema.numeric.index(name)])
    assert feed["categorical"][0, 0] == ""


def test_version_label_precedence(tmp_path: Path):
    manifest = {"model_version": "", "files": {"model.onnx": {"sha256": "ab" * 32}}}
    assert version_label(tmp_path, manifest) == "sha-" + ("ab" * 6)
    assert version_label(tmp_path, {**manifest, "model_version": "v9"}) == "v9"
    (tmp_path / "registration.json").write_text(json.dumps({"version": "4"}))
    assert version_label(tmp_path, manifest) == "v4"
    assert version_label(tmp_path, manifest, registry_version="5") == "v5"
    assert version_label(tmp_path, manifest, override="blue", registry_version="5") == "blue"


def test_probe_mismatch_is_refused(models: dict[str, Trained], tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(models["logistic_regression"].folder, folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["probe"]["churn_probability"][0] += 0.01
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="probe scores differ"):
        load_model(folder, name="churn-model", source=str(folder), max_instances=10)
