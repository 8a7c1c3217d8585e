"""pipelines.cli: the flags of ``pipeline.py`` as parsed (what the commands receive)."""

import pytest

from pipelines.cli import build_parser
from pipelines.drift import NIGHTLY_WINDOW_DAYS
from pipelines.training import DEFAULT_IMAGE

GCP = ["--project", "acme", "--region", "europe-west4"]


def test_the_help_lists_every_command_in_order() -> None:
    text = build_parser().format_help()
    commands = ["compile", "run", "score", "submit", "deploy", "batch-predict", "rollback", "schedule"]
    where = [text.index(f"\n    {name} ") if f"\n    {name} " in text else text.index(f"\n    {name}\n")
             for name in commands]
    assert where == sorted(where)


def test_param_and_label_values_are_read_as_json_when_they_parse() -> None:
    args = build_parser().parse_args(["submit", *GCP, "--pipeline-root", "gs://b/root", "--raw-dir", "gs://b/raw",
                                      "--param", "seed=7", "--param", "gate_margin=0.5", "--param", "model_name=m",
                                      "--param", "defer_promotion=true", "--label", "team=ml"])
    assert args.param == [("seed", 7), ("gate_margin", 0.5), ("model_name", "m"), ("defer_promotion", True)]
    assert args.label == [("team", "ml")] and args.pipeline == "training" and args.caching is None


def test_a_param_without_a_value_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["submit", *GCP, "--pipeline-root", "gs://b/root", "--raw-dir", "gs://b/raw",
                                   "--param", "seed"])
    assert exc.value.code == 2
    assert "'seed': write KEY=VALUE" in capsys.readouterr().err


def test_defaults_of_compile_schedule_and_batch_predict() -> None:
    parser = build_parser()
    assert parser.parse_args(["compile"]).image == DEFAULT_IMAGE
    schedule = parser.parse_args(["schedule", *GCP, "--pipeline-root", "gs://b/root", "--cron", "0 2 * * *"])
    assert (schedule.window_days, schedule.backend, schedule.pipeline) == (NIGHTLY_WINDOW_DAYS, "cloud-scheduler",
                                                                           "drift")
    batch = parser.parse_args(["batch-predict", *GCP, "--gcs-source", "gs://b/x.jsonl", "--gcs-destination",
                               "gs://b/out", "--included-fields", "customer_id, tenure_months,,plan"])
    assert batch.included_fields == ["customer_id", "tenure_months", "plan"]
    assert (batch.version, batch.instance_type, batch.sync) == ("champion", "object", False)


def test_a_bad_cutoff_is_refused_before_the_run(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "--raw-dir", "data/raw", "--cutoff", "soon"])
    assert exc.value.code == 2
    assert "cutoff 'soon': not an ISO date or instant" in capsys.readouterr().err
