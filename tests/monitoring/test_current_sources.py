"""``--current`` as a file, a local folder or a gs:// prefix of the server's log parts, and the baseline found
from the served model's ``model.json`` (contract 13: 2 and 3).

The gs:// tests write with google-cloud-storage into gcp-storage-emulator exactly the layout the server
writes (``<prefix>/<model_version>/date=YYYY-MM-DD/part-<worker>-<seq>.csv``, each part with the header, and
``<prefix>/<model_version>/model.json``), and the model folder the way register_model does
(``baseline/train.csv`` + ``feature_schema.json``, ``evaluation/validation_predictions.csv``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitoring.drift_check import DECISION_FILE, EXIT_BAD_INPUT, EXIT_OK, REFERENCE_PREDICTIONS, main
from tests.monitoring.conftest import N_ROWS, DriftFiles

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-07-01"
Put = Callable[[str, bytes], None]


def _gcs_put(bucket: Any) -> Put:
    return lambda name, data: bucket.blob(name).upload_from_string(data, content_type="text/csv")


def _local_put(root: Path) -> Put:
    def put(name: str, data: bytes) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return put


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def _write_parts(put: Put, prefix: str, version: str, day: str, frame: pd.DataFrame, n: int,
                 worker: str = "host-1-abc123") -> dict[str, int]:
    """``frame`` as ``n`` parts (each with the header) the way the server names them; returns rows per name."""
    rows = {}
    for seq, chunk in enumerate(np.array_split(np.arange(len(frame)), n)):
        name = f"{prefix}/{version}/date={day}/part-{worker}-{seq:06d}.csv"
        put(name, _csv(frame.iloc[chunk].assign(model_version=version)))
        rows[name] = len(chunk)
    return rows


def _publish_model(put: Put, folder: str, files: DriftFiles) -> None:
    """A registered model folder (contract 1): its training split, schema and validation scores."""
    put(f"{folder}/baseline/train.csv", files.baseline.read_bytes())
    put(f"{folder}/baseline/feature_schema.json", files.schema.read_bytes())
    put(f"{folder}/evaluation/{REFERENCE_PREDICTIONS}", files.baseline_scores.read_bytes())
    put(f"{folder}/evaluation/metrics.json", b'{"roc_auc": 0.8}')


def _model_json(put: Put, prefix: str, version: str, model_uri: str) -> None:
    put(f"{prefix}/{version}/model.json", json.dumps({
        "model_version": version, "model_name": "churn-model", "model_uri": model_uri, "schema_version": "1",
        "written": "2026-06-20T00:00:00+00:00"}).encode())


def _run(tmp_path: Path, current: str, out: str, *extra: str) -> int:
    return main(["--current", current, "--output-dir", out, "--date", DAY, "--no-tfdv",
                 "--models-dir", str(tmp_path / "no-models"), *extra])


@pytest.fixture()
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd without data/processed or models/ (as in the monitoring image): nothing to fall back on."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture(scope="module")
def frames(drift_files: DriftFiles) -> dict[str, pd.DataFrame]:
    read = {"dtype": {"customer_id": str}}
    return {"same": pd.read_csv(drift_files.same, **read), "drifted": pd.read_csv(drift_files.drifted, **read)}


def _decision_gcs(bucket: Any, prefix: str = "monitoring") -> dict:
    return json.loads(bucket.blob(f"{prefix}/{DECISION_FILE}").download_as_bytes())


# --------------------------------------------------------------------------------------------------
# gs:// prefix
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_gcs_prefix_reads_the_window_of_the_version_serving_last_against_its_published_baseline(
        drift_files: DriftFiles, frames: dict[str, pd.DataFrame], gcs_bucket: Any, elsewhere: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture):
    put, b = _gcs_put(gcs_bucket), f"gs://{gcs_bucket.name}"
    model_uri = f"{b}/vertex-models/churn-model/7"  # the folder the server loaded (AIP_STORAGE_URI)
    _publish_model(put, "vertex-models/churn-model/7", drift_files)
    # v0 served earlier today (rolled out, then replaced by v1), and drifted traffic of v1 yesterday
    _write_parts(put, "predictions", "v0", DAY, frames["drifted"].head(3000), 2, worker="old-1-aaaaaa")
    yesterday = _write_parts(put, "predictions", "v1", "2026-06-30", frames["drifted"], 4)
    today = _write_parts(put, "predictions", "v1", DAY, frames["same"], 7)
    put(f"predictions/v1/date={DAY}/part-host-2-def456-000000.csv", _csv(frames["same"].head(0)))  # header only
    _model_json(put, "predictions", "v1", model_uri)

    code = _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring")
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    decision = _decision_gcs(gcs_bucket)
    assert decision["status"] == "no_drift", decision["reason"]
    assert decision["rows"]["current"] == N_ROWS == sum(today.values())
    inputs = decision["inputs"]
    assert inputs["baseline"] == f"{model_uri}/baseline/train.csv"
    assert inputs["baseline_predictions"] == f"{model_uri}/evaluation/{REFERENCE_PREDICTIONS}"
    assert inputs["model_json"] == f"{b}/predictions/v1/model.json" and inputs["model_uri"] == model_uri
    assert "own training split" in inputs["baseline_source"]
    assert inputs["model_version"] == "v1" and inputs["current_layout"] == "parts"
    assert inputs["window"] == [DAY, DAY] and list(inputs["left_out"]) == ["v0"]
    parts = {p["uri"]: p["rows"] for p in decision["current_parts"]}
    assert parts == {**{f"{b}/{name}": n for name, n in today.items()},
                     f"{b}/predictions/v1/date={DAY}/part-host-2-def456-000000.csv": 0}
    assert "left out: v0" in out and "12,000 rows from 8 part(s) of v1" in out

    code = _run(tmp_path, f"{b}/predictions", f"{b}/monitoring", "--window-days", "2", "--baseline", "")
    assert code == EXIT_OK  # no trailing slash, and an empty --baseline means "find it" (the drift pipeline)
    decision = _decision_gcs(gcs_bucket)
    assert decision["rows"]["current"] == N_ROWS + sum(yesterday.values())
    assert decision["inputs"]["window"] == ["2026-06-30", DAY] and len(decision["current_parts"]) == 12

    code = main(["--current", f"{b}/predictions/", "--output-dir", f"{b}/monitoring", "--date", "2026-06-30",
                 "--no-tfdv", "--models-dir", str(tmp_path / "no-models")])
    assert code == EXIT_OK
    decision = _decision_gcs(gcs_bucket)
    assert decision["status"] == "drift" and {"monetary_avg", "plan"} <= set(decision["drifted_features"])
    assert decision["inputs"]["left_out"] == {} and decision["rows"]["current"] == sum(yesterday.values())

    code = _run(tmp_path, f"{b}/predictions/v0/", f"{b}/monitoring", "--baseline", str(drift_files.baseline))
    assert code == EXIT_OK  # a version left out is checked by naming its folder
    decision = _decision_gcs(gcs_bucket)
    assert decision["inputs"]["current"] == f"{b}/predictions/v0" and decision["inputs"]["model_version"] == "v0"
    assert decision["rows"]["current"] == 3000 and decision["status"] == "drift"


def test_without_model_json_or_local_models_the_error_names_the_flag(
        frames: dict[str, pd.DataFrame], gcs_bucket: Any, elsewhere: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture):
    put, b = _gcs_put(gcs_bucket), f"gs://{gcs_bucket.name}"
    _write_parts(put, "predictions", "v3", DAY, frames["same"].head(2000), 2)
    assert _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no baseline found" in err and "--baseline FILE" in err and "Traceback" not in err
    assert _decision_gcs(gcs_bucket)["status"] == "bad_input"


def test_model_json_without_a_baseline_falls_back_to_the_local_model_folder(
        drift_files: DriftFiles, frames: dict[str, pd.DataFrame], gcs_bucket: Any, elsewhere: Path,
        tmp_path: Path, capsys: pytest.CaptureFixture):
    put, b = _gcs_put(gcs_bucket), f"gs://{gcs_bucket.name}"
    _write_parts(put, "predictions", "v1", DAY, frames["same"], 3)
    _model_json(put, "predictions", "v1", f"{b}/old-models/1")  # registered before models carried baseline/
    _publish_model(_local_put(elsewhere), "models/churn-model/v1", drift_files)
    assert main(["--current", f"{b}/predictions/", "--output-dir", str(tmp_path / "out"), "--date", DAY,
                 "--no-tfdv"]) == EXIT_OK
    inputs = json.loads((tmp_path / "out" / DECISION_FILE).read_text())["inputs"]
    assert inputs["baseline"] == str(Path("models/churn-model/v1/baseline/train.csv"))
    assert "has no baseline/train.csv" in inputs["baseline_source"]
    assert inputs["baseline_predictions"] == str(Path("models/churn-model/v1/evaluation") / REFERENCE_PREDICTIONS)


@pytest.mark.parametrize(("name", "data", "message"), [
    ("part-host-1-abc123-000009.csv", b"", "the part is empty"),
    ("part-host-1-abc123-000009.csv", None, "unreadable row(s) with the wrong number of fields"),
    ("part-host-9-zzz999-000000.csv", "columns", "its columns differ"),
])
def test_an_unreadable_part_is_bad_input_named(drift_files: DriftFiles, frames: dict[str, pd.DataFrame],
                                               gcs_bucket: Any, elsewhere: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture, name: str, data: bytes | str | None,
                                               message: str):
    put, b = _gcs_put(gcs_bucket), f"gs://{gcs_bucket.name}"
    good = frames["same"].head(3000)
    _write_parts(put, "predictions", "v1", DAY, good, 3)
    if data is None:  # a row with a field too many, among good rows
        text = _csv(good.head(50).assign(model_version="v1")).decode().splitlines()
        text[20] += ",surplus"
        data = ("\n".join(text) + "\n").encode()
    elif data == "columns":
        data = _csv(good.head(50).assign(model_version="v1").drop(columns=["plan"]))
    put(f"predictions/v1/date={DAY}/{name}", data)
    code = _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring", "--baseline", str(drift_files.baseline))
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    assert f"{b}/predictions/v1/date={DAY}/{name}" in err and message in err and "Fix" in err
    assert "Traceback" not in err


def test_parts_holding_another_versions_rows_are_refused(drift_files: DriftFiles, frames: dict[str, pd.DataFrame],
                                                         gcs_bucket: Any, elsewhere: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture):
    put, b = _gcs_put(gcs_bucket), f"gs://{gcs_bucket.name}"
    _write_parts(put, "predictions", "v1", DAY, frames["same"], 3)
    put(f"predictions/v1/date={DAY}/part-odd-1-aaaaaa-000000.csv",
        _csv(frames["same"].head(500).assign(model_version="v2")))
    assert _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring", "--baseline", str(drift_files.baseline)) \
        == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "2 model versions" in err and "v2 (500 rows)" in err


def test_no_parts_in_the_window_names_the_newest_and_the_fix(drift_files: DriftFiles,
                                                             frames: dict[str, pd.DataFrame], gcs_bucket: Any,
                                                             elsewhere: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture):
    put, b = _gcs_put(gcs_bucket), f"gs://{gcs_bucket.name}"
    _write_parts(put, "predictions", "v1", "2026-06-20", frames["same"].head(100), 1)
    assert _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring", "--window-days", "3") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no prediction-log parts dated 2026-06-29..2026-07-01" in err and "v1/date=2026-06-20" in err
    assert "--window-days" in err and "--date" in err
    assert _run(tmp_path, f"{b}/nothing-here/", f"{b}/monitoring") == EXIT_BAD_INPUT
    assert "no prediction log" in capsys.readouterr().err
    assert _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring", "--window-days", "0") == EXIT_BAD_INPUT
    assert "--window-days 0" in capsys.readouterr().err
    assert _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring", "--window-days", "99999999",
                "--min-rows", "10", "--baseline", str(drift_files.baseline)) == EXIT_OK  # back to year 1: all of it
    assert _run(tmp_path, "gs://no-such-bucket/predictions/", f"{b}/monitoring") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "gs://no-such-bucket/predictions/: not found in Cloud Storage" in err and "Traceback" not in err


def test_a_gcs_prefix_of_outputs_files_takes_the_newest(drift_files: DriftFiles, frames: dict[str, pd.DataFrame],
                                                        gcs_bucket: Any, elsewhere: Path, tmp_path: Path):
    put, b = _gcs_put(gcs_bucket), f"gs://{gcs_bucket.name}"
    put("predictions/v1_outputs.csv", _csv(frames["drifted"]))
    put("predictions/v2_outputs.csv", _csv(frames["same"].assign(model_version="v2")))  # written last
    assert _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring", "--baseline", str(drift_files.baseline)) == EXIT_OK
    inputs = _decision_gcs(gcs_bucket)["inputs"]
    assert inputs["current"] == f"{b}/predictions/v2_outputs.csv" and inputs["left_out"] == {
        "v1": "v1_outputs.csv, written before v2_outputs.csv"}


@pytest.mark.slow
def test_hundreds_of_parts_are_all_read_and_counted(drift_files: DriftFiles, frames: dict[str, pd.DataFrame],
                                                    gcs_bucket: Any, elsewhere: Path, tmp_path: Path):
    put, b = _gcs_put(gcs_bucket), f"gs://{gcs_bucket.name}"
    written = _write_parts(put, "predictions", "v1", DAY, frames["same"], 300)
    assert _run(tmp_path, f"{b}/predictions/", f"{b}/monitoring", "--baseline", str(drift_files.baseline),
                "--baseline-predictions", str(drift_files.baseline_scores)) == EXIT_OK
    decision = _decision_gcs(gcs_bucket)
    assert {p["uri"]: p["rows"] for p in decision["current_parts"]} == {f"{b}/{n}": r for n, r in written.items()}
    assert decision["rows"]["current"] == N_ROWS and decision["status"] == "no_drift"


# --------------------------------------------------------------------------------------------------
# Local folders
# --------------------------------------------------------------------------------------------------

def test_a_local_folder_of_parts_with_a_local_model_json(drift_files: DriftFiles, frames: dict[str, pd.DataFrame],
                                                         elsewhere: Path, tmp_path: Path):
    put = _local_put(tmp_path)
    _publish_model(put, "registry/churn-model/3", drift_files)
    rows = _write_parts(put, "logs", "v3", DAY, frames["same"], 5)
    _model_json(put, "logs", "v3", str(tmp_path / "registry" / "churn-model" / "3"))
    assert _run(tmp_path, str(tmp_path / "logs"), str(tmp_path / "out"), "--baseline", "") == EXIT_OK
    decision = json.loads((tmp_path / "out" / DECISION_FILE).read_text())
    assert decision["inputs"]["baseline"] == str(tmp_path / "registry" / "churn-model" / "3" / "baseline" / "train.csv")
    assert decision["rows"]["current"] == N_ROWS
    assert {p["uri"]: p["rows"] for p in decision["current_parts"]} == {str(tmp_path / n): r for n, r in rows.items()}


def test_a_local_folder_of_outputs_files_takes_the_newest_and_names_the_others(
        drift_files: DriftFiles, frames: dict[str, pd.DataFrame], elsewhere: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture):
    folder = tmp_path / "predictions"
    folder.mkdir()
    old, new = folder / "v1_outputs.csv", folder / "v2_outputs.csv"
    old.write_bytes(_csv(frames["drifted"].assign(model_version="v1")))
    new.write_bytes(_csv(frames["same"].assign(model_version="v2")))
    (folder / "v2_batch_2026-07-01.csv").write_text("not a serving log\n")  # batch scoring output: not picked
    os.utime(old, (1_700_000_000, 1_700_000_000))
    assert _run(tmp_path, str(folder), str(tmp_path / "out"), "--baseline", str(drift_files.baseline)) == EXIT_OK
    decision = json.loads((tmp_path / "out" / DECISION_FILE).read_text())
    assert decision["inputs"]["current"] == str(new) and decision["inputs"]["current_layout"] == "outputs"
    assert decision["inputs"]["model_version"] == "v2" and list(decision["inputs"]["left_out"]) == ["v1"]
    assert "left out: v1" in capsys.readouterr().out


def test_bad_dates_are_bad_input(drift_files: DriftFiles, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["--current", str(drift_files.same), "--baseline", str(drift_files.baseline), "--date", "07/01/2026",
                 "--output-dir", str(tmp_path), "--no-tfdv"]) == EXIT_BAD_INPUT
    assert "--date '07/01/2026': not a date" in capsys.readouterr().err


def test_help_describes_folders_prefixes_and_the_window():
    proc = subprocess.run([sys.executable, str(ROOT / "monitoring" / "drift_check.py"), "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for words in ("--window-days", "date=YYYY-MM-DD/part-", "model.json", "left out", '--baseline ""'):
        assert words in proc.stdout, words


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not JSON"),
    ('{"model_version": "v3"}', "no 'model_uri'"),
    ('{"model_version": "v4", "model_uri": "models/x"}', "model_version 'v4', but the log is model v3's"),
])
def test_a_bad_model_json_is_bad_input_naming_it(frames: dict[str, pd.DataFrame], elsewhere: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture, text: str, message: str):
    put = _local_put(tmp_path)
    _write_parts(put, "logs", "v3", DAY, frames["same"].head(1000), 2)
    put("logs/v3/model.json", text.encode())
    assert _run(tmp_path, str(tmp_path / "logs"), str(tmp_path / "out")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(tmp_path / "logs" / "v3" / "model.json") in err and message in err and "Fix" in err
