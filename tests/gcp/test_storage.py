"""churn/storage.py and the stages' gs:// input against gcp-storage-emulator (real google-cloud-storage client).

On Vertex AI, KFP hands a step its artifacts as ``/gcs/BUCKET/…`` paths (Cloud Storage FUSE), so artifact
IO is local-path IO there; the only ``gs://`` URIs a stage sees as such are parameters: the raw data
folder (data_prep, through ``churn.storage.local_input_dir``) and the registry's model folders
(``VertexRegistry``, tested in test_vertex.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from churn import storage
from tests.gcp.conftest import PROJECT


def _client():
    from google.cloud import storage as gcs_storage

    return gcs_storage.Client(project=PROJECT)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    src = tmp_path / "model"
    (src / "evaluation").mkdir(parents=True)
    (src / "model.joblib").write_bytes(bytes(range(256)) * 40)
    (src / "feature_schema.json").write_text(json.dumps({"version": 1}))
    (src / "evaluation" / "report.html").write_text("<html>ok</html>")
    return src


def test_upload_then_download_round_trips_a_folder(gcs: str, folder: Path, tmp_path: Path) -> None:
    uris = storage.upload_dir(folder, f"gs://{gcs}/models/churn/v1/")
    assert uris == [f"gs://{gcs}/models/churn/v1/evaluation/report.html",
                    f"gs://{gcs}/models/churn/v1/feature_schema.json", f"gs://{gcs}/models/churn/v1/model.joblib"]
    assert sorted(b.name for b in _client().list_blobs(gcs)) == [u.removeprefix(f"gs://{gcs}/") for u in uris]

    written = storage.download_prefix(f"gs://{gcs}/models/churn/v1", tmp_path / "copy")
    assert sorted(p.relative_to(tmp_path / "copy").as_posix() for p in written) == \
        ["evaluation/report.html", "feature_schema.json", "model.joblib"]
    for path in written:
        assert path.read_bytes() == (folder / path.relative_to(tmp_path / "copy")).read_bytes()


def test_download_takes_only_the_prefix_folder(gcs: str, folder: Path, tmp_path: Path) -> None:
    storage.upload_dir(folder, f"gs://{gcs}/models/churn/v1")
    storage.upload_dir(folder, f"gs://{gcs}/models/churn/v10")  # shares the text prefix "v1"
    written = storage.download_prefix(f"gs://{gcs}/models/churn/v1", tmp_path / "copy")
    assert len(written) == 3


def test_local_input_dir_stages_gcs_in_a_temporary_folder(gcs: str, folder: Path) -> None:
    storage.upload_dir(folder, f"gs://{gcs}/raw")
    with storage.local_input_dir(f"gs://{gcs}/raw") as local:
        assert (local / "feature_schema.json").read_text() == '{"version": 1}'
    assert not local.exists()  # cleaned up
    with storage.local_input_dir(folder) as same:
        assert same == folder


def test_missing_prefix_names_the_uri(gcs: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"gs://{gcs}/nothing/here: no objects"):
        storage.download_prefix(f"gs://{gcs}/nothing/here", tmp_path)
    with pytest.raises(ValueError, match="not a gs:// URI"):
        storage.split_gcs("/local/path")


def test_data_prep_component_reads_raw_data_from_gcs(gcs: str, tmp_path: Path) -> None:
    from kfp.dsl import Dataset

    from churn.sample_data import generate, write_raw
    from churn.vertex_jobs import raw_digest
    from components import data_prep

    write_raw(generate(300, seed=3), tmp_path / "raw")
    storage.upload_dir(tmp_path / "raw", f"gs://{gcs}/raw")
    interim = Dataset(name="interim", uri=str(tmp_path / "interim"), metadata={})
    digest = raw_digest(f"gs://{gcs}/raw")
    data_prep.component("unused:image").python_func(raw_dir=f"gs://{gcs}/raw", churn_window_days=90,
                                                    validation_fraction=0.2, seed=1, interim=interim,
                                                    raw_digest=digest)
    meta = json.loads((tmp_path / "interim" / data_prep.METADATA_FILE).read_text())
    assert meta["rows"]["customers.csv"]["raw"] == 300
    assert interim.metadata["rows"] == meta["rows"]
    # which raw objects this interim data came from, as submitted (pipeline.py submit / the drift retraining)
    assert (interim.metadata["raw_dir"], interim.metadata["raw_digest"]) == (f"gs://{gcs}/raw", digest)


def test_vertex_hands_artifacts_to_steps_as_local_fuse_paths() -> None:
    """Why artifact IO needs no gs:// code: on Vertex a step's artifact path is the /gcs/ FUSE mount."""
    from kfp.dsl import Model

    model = Model(uri="gs://acme-churn/pipeline-root/123/train/model")
    assert model.path == "/gcs/acme-churn/pipeline-root/123/train/model"
