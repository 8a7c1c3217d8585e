"""pipelines.cloud: a request that cannot be made is one logged line and exit code 2, before any network call.

The commands against an emulated Vertex AI are tested in tests/gcp/.
"""

import pipeline

GCP = ["--project", "acme", "--region", "europe-west4", "--pipeline-root", "gs://acme/root"]


def test_submit_without_a_template_or_an_image_says_what_to_give(capsys) -> None:
    assert pipeline.main(["submit", *GCP, "--raw-dir", "gs://acme/raw"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("submit: give --template (a compiled pipeline) or the image(s) to "
                                             "compile it for")


def test_schedule_refuses_an_empty_window_and_drift_flags_on_scoring(capsys) -> None:
    common = ["schedule", *GCP, "--cron", "0 2 * * *", "--template", "drift.yaml"]
    assert pipeline.main([*common, "--window-days", "0"]) == 2
    assert "schedule: --window-days 0: give 1 or more days of log parts to check" in capsys.readouterr().err
    scoring = [*common, "--pipeline", "scoring", "--raw-dir", "gs://acme/raw", "--current", "gs://acme/p/"]
    assert pipeline.main(scoring) == 2
    assert "--current: options of the drift pipeline, not of --pipeline scoring" in capsys.readouterr().err


def test_a_retraining_schedule_needs_the_raw_data_to_retrain_on(capsys) -> None:
    args = ["schedule", *GCP, "--cron", "0 2 * * *", "--template", "drift.yaml", "--retrain-template", "t.yaml"]
    assert pipeline.main(args) == 2
    assert "--retrain-template needs --raw-dir" in capsys.readouterr().err
