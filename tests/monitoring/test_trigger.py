"""Retraining triggers: which raw folder, what command, what gets recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitoring.trigger import (
    PIPELINE_SCRIPT,
    DryRunTrigger,
    LocalPipelineTrigger,
    RetrainRequest,
    VertexPipelineTrigger,
    newest_raw_dir,
    write_record,
)

REQUEST = RetrainRequest(reason="retrain: 1 of 26 features drifted: plan", features=["plan"], date="2026-07-01")


def test_newest_raw_dir_picks_the_last_written_folder(project: Path):
    assert newest_raw_dir(project / "data" / "raw") == project / "data" / "raw" / "2026-07-01"


def test_newest_raw_dir_names_the_fix_when_there_is_none(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"customers\.csv and transactions\.json"):
        newest_raw_dir(tmp_path)


def test_local_trigger_runs_the_pipeline_in_the_project_and_records_it(project: Path, fake_pipeline_python: Path,
                                                                       tmp_path: Path):
    trigger = LocalPipelineTrigger(python=str(fake_pipeline_python))
    record = trigger.fire(REQUEST, tmp_path / "out")
    assert record.started and record.succeeded and record.exit_status == 0
    assert PIPELINE_SCRIPT.is_file() and PIPELINE_SCRIPT.name == "pipeline.py"
    assert record.command == [str(fake_pipeline_python), str(PIPELINE_SCRIPT), "run", "--raw-dir",
                              str(project / "data" / "raw" / "2026-07-01")]
    assert record.reason == REQUEST.reason and record.features == ["plan"]
    assert record.requested_at <= record.finished_at
    args = (tmp_path / "fake-args.txt").read_text().splitlines()
    assert Path(args[-1]) == project, "runs from the project folder (pipeline.py writes data/ and models/ there)"
    path = write_record(record, tmp_path / "out")
    saved = json.loads(path.read_text())
    assert path.name == "retrain_trigger_2026-07-01.json"
    assert {"reason", "features", "requested_at", "command", "exit_status", "log"} <= set(saved)


def test_local_trigger_reports_a_failed_run(project: Path, fake_pipeline_python: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FAKE_EXIT", "2")
    record = LocalPipelineTrigger(python=str(fake_pipeline_python), raw_dir=Path("data/raw")).fire(REQUEST, tmp_path)
    assert record.started and not record.succeeded and record.exit_status == 2
    assert record.command[-1] == "data/raw"


def test_local_trigger_without_main_environment_says_how_to_fix(project: Path, tmp_path: Path):
    record = LocalPipelineTrigger().fire(REQUEST, tmp_path)
    assert not record.started and not record.succeeded
    assert "make setup" in record.detail["error"]


def test_dry_run_records_without_starting(tmp_path: Path):
    dry = DryRunTrigger().fire(REQUEST, tmp_path)
    assert not dry.started and dry.succeeded and "dry run" in dry.detail["note"]


def test_vertex_trigger_with_an_incomplete_spec_is_a_failed_record_naming_the_keys(tmp_path: Path):
    # (a submission against a stand-in Vertex AI is tested in tests/gcp/test_retrain_trigger.py)
    record = VertexPipelineTrigger(spec={"project": "p", "region": "europe-west4"}).fire(REQUEST, tmp_path)
    assert not record.started and not record.succeeded
    assert "template" in record.detail["error"] and "pipeline_root" in record.detail["error"]


def test_vertex_trigger_is_built_from_the_retrain_spec_file(tmp_path: Path):
    from monitoring.drift_check import InputError, _trigger, build_parser

    spec = {"template": "gs://b/t.yaml", "project": "p", "region": "r", "pipeline_root": "gs://b/root",
            "parameter_values": {"raw_dir": "gs://b/raw"}}
    (tmp_path / "retrain.json").write_text(json.dumps(spec))
    trigger = _trigger(build_parser().parse_args(["--trigger", "vertex", "--retrain-spec",
                                                  str(tmp_path / "retrain.json")]))
    assert isinstance(trigger, VertexPipelineTrigger) and trigger.spec == spec
    with pytest.raises(InputError, match="--retrain-spec"):
        _trigger(build_parser().parse_args(["--trigger", "vertex"]))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        _trigger(build_parser().parse_args(["--trigger", "vertex", "--retrain-spec", str(tmp_path / "bad.json")]))
