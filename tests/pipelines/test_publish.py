"""pipelines.publish: contract C's model folders, written aside then renamed, and a full disk (a real tmpfs)."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipelines.publish import PublishError, promote_published, publish

MB = 1_000_000


def _outputs(tmp: Path, model_bytes: int = 300_000, interim_bytes: int = 200_000, alias: str = "champion") -> dict:
    """Task output folders shaped like a local run's, with incompressible files of the given sizes."""
    files = {
        "model/model.joblib": os.urandom(model_bytes), "model/model_card.json": b"{}",
        "model/feature_schema.json": b'{"v": 1}',
        "evaluation/metrics.json": b'{"roc_auc": 0.8}', "evaluation/report.html": b"<html></html>",
        "evaluation/validation_predictions.csv": b"customer_id,churn_probability,churned\n007,0.3,0\n",
        "train_data/train.csv": b"customer_id,f,churned\n001,1.5,0\n", "validation_data/validation.csv": b"x\n",
        "features/customer_features_v1.csv": b"customer_id,f\n001,1.5\n", "features/feature_schema.json": b'{"v": 1}',
        "interim/filtered_sales.csv": os.urandom(interim_bytes), "interim/prep_metadata.json": b"{}",
        "registration/registration.json": json.dumps({"model_name": "m", "version": "1", "alias": alias,
                                                       "deferred": True}).encode(),
    }
    for rel, data in files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    names = {"model": "model", "evaluation": "evaluation", "train_data": "train_data", "interim": "interim",
             "validation_data": "validation_data", "features": "features", "registration": "registration"}
    return {key: SimpleNamespace(path=str(tmp / folder), metadata={}) for key, folder in names.items()}


def _hidden(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name != ".pipeline.lock"]


def test_publish_writes_the_model_folder_with_its_baseline(tmp_path: Path) -> None:
    outputs = _outputs(tmp_path / "run", alias="challenger")
    root = tmp_path / "project"
    (root / "data" / "processed").mkdir(parents=True)
    (root / "data" / "processed" / "stale.csv").write_text("from an older run\n")
    published = publish(outputs, root)
    home = root / "models" / "m" / "v1"
    assert published["model"] == str(home)
    for rel in ("model.joblib", "evaluation/metrics.json", "evaluation/validation_predictions.csv",
                "registration.json", "baseline/train.csv", "baseline/feature_schema.json"):
        assert (home / rel).is_file(), rel
    assert (home / "baseline/train.csv").read_bytes() == (tmp_path / "run/train_data/train.csv").read_bytes()
    assert {p.name for p in (root / "data/processed").iterdir()} == {"train.csv", "validation.csv"}
    assert _hidden(root) == []  # nothing left aside
    assert not (root / "models" / "latest").exists()  # a challenger never becomes models/latest


def test_a_promoting_run_writes_latest_aside_until_the_registry_says_champion(tmp_path: Path) -> None:
    publish(_outputs(tmp_path / "run"), tmp_path / "project")
    models = tmp_path / "project" / "models"
    assert not (models / "latest").exists()
    [staged] = _hidden(tmp_path / "project")
    assert staged.parent == models and staged.name.startswith(".latest.publishing-")
    assert (staged / "baseline" / "train.csv").is_file()




def _fill(disk: Path, leave: int) -> None:
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "ballast").write_bytes(b"\0" * max(free - leave, 0))


@pytest.mark.parametrize("leave", [100_000, 420_000], ids=["full-in-model-folder", "full-after-model-folder"])
def test_a_full_disk_publishes_nothing_and_says_what_to_do(small_disk: Path, tmp_path: Path, leave: int) -> None:
    outputs = _outputs(tmp_path / "run")
    root = small_disk / "project"
    (root / "data" / "processed").mkdir(parents=True)
    (root / "data" / "processed" / "train.csv").write_text("the previous run's\n")
    _fill(small_disk, leave)
    with pytest.raises(PublishError) as failed:
        publish(outputs, root)
    message = str(failed.value)
    assert "could not publish" in message and str(root) in message
    assert "No space left" in message and "free space on the disk" in message
    assert "then run `pipeline.py run` again" in message
    assert not (root / "models" / "m" / "v1").exists()  # no half-copied model folder
    assert (root / "data/processed/train.csv").read_text() == "the previous run's\n"  # the old data untouched
    assert [p for p in root.rglob("*") if p.is_file() and p.stat().st_size == 0] == []
    assert _hidden(root) == []
    # with room again, the same outputs publish
    (small_disk / "ballast").unlink()
    publish(outputs, root)
    assert (root / "models/m/v1/model.joblib").stat().st_size == 300_000


@pytest.mark.slow
def test_latest_is_brought_back_to_the_champion(tmp_path: Path) -> None:
    """A run killed between its promotion and the rename of models/latest: the next run puts it right."""
    from churn.registry import get_registry

    outputs = _outputs(tmp_path / "run", alias="challenger")
    root = tmp_path / "project"
    home = Path(publish(outputs, root)["model"])
    (home / "registration.json").write_text('{"model_name": "m", "version": "1", "alias": "challenger"}')
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = get_registry(uri)
    registry.register("m", home)
    registry.set_alias("m", "champion", "1")
    (root / "models" / "latest").mkdir()
    (root / "models" / "latest" / "registration.json").write_text('{"model_name": "m", "version": "0"}')
    promote_published(root, uri, home)
    assert (root / "models/latest/model.joblib").read_bytes() == (home / "model.joblib").read_bytes()
    assert json.loads((root / "models/latest/registration.json").read_text())["version"] == "1"
    assert _hidden(root) == []
