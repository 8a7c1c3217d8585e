"""The Vertex AI guide's commands (docs/vertex.md), run as written against the stand-ins.

bash expands each block exactly as a user's shell would (the variables block first, ``TAG=$(git rev-parse
…)`` included); ``python`` and ``gcloud`` are shell functions that hand the expanded words back, and the
test runs ``pipeline.py`` with them in this process (so the one allowed patch, the Resource Manager lookup,
applies), adding only ``--api-endpoint`` / ``--scheduler-endpoint`` to reach the fake Vertex AI / Cloud
Scheduler server. ``gcloud scheduler jobs run`` becomes the Cloud Scheduler ``:run`` call it makes.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

import pipeline
from churn import vertex_jobs, vertexai
from pipelines.drift import DRIFT_PIPELINE_NAME
from pipelines.training import compile_pipeline
from tests.gcp.conftest import RAW_FILES, put_raw

ROOT = Path(__file__).resolve().parents[2]
_CAPTURE = r"""
python() { printf '%s\0' python "$@"; printf '\n\0'; }
gcloud() { printf '%s\0' gcloud "$@" "--project=$PROJECT"; printf '\n\0'; }
"""


GUIDE = ROOT / "docs" / "vertex.md"  # the README's "Run on Vertex AI" links here


def readme_section() -> str:
    """The whole Vertex AI guide: every bash block a user copies from it."""
    return GUIDE.read_text()


def bash_blocks(section: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def variables_block() -> str:
    return next(b for b in bash_blocks(readme_section()) if b.startswith("PROJECT="))


def block_with(*needles: str) -> str:
    found = [b for b in bash_blocks(readme_section()) if all(n in b for n in needles)]
    assert len(found) == 1, f"{GUIDE.name}: {len(found)} bash blocks hold {needles}"
    return found[0]


def expand(block: str) -> list[list[str]]:
    """The commands of ``block`` as bash expands them after the variables block: one argv per command."""
    script = f"set -eu\n{_CAPTURE}\n{variables_block()}\n{block}"
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    commands, current = [], []
    for word in out.decode().split("\0")[:-1]:
        if word == "\n":
            commands.append(current)
            current = []
        else:
            current.append(word)
    return commands


def shell_value(name: str) -> str:
    script = f"set -eu\n{variables_block()}\nprintf %s \"${name}\""
    return subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, check=True, text=True,
                          timeout=60).stdout


def run_readme(commands: list[list[str]], fake_url: str) -> list[int]:
    """Runs expanded README commands against the fake: ``pipeline.py`` in-process, ``gcloud scheduler jobs run``
    as its REST call. Returns the exit codes."""
    codes = []
    for argv in commands:
        if argv[:2] == ["python", "pipeline.py"]:
            extra = ["--api-endpoint", fake_url] + (["--scheduler-endpoint", fake_url] if argv[2] == "schedule"
                                                     else [])
            codes.append(pipeline.main([*argv[2:], *extra]))
        elif argv[:4] == ["gcloud", "scheduler", "jobs", "run"]:
            location = argv[argv.index("--location") + 1]
            project = argv[-1].removeprefix("--project=")
            url = f"{fake_url}/v1/projects/{project}/locations/{location}/jobs/{argv[4]}:run"
            request = urllib.request.Request(url, data=b"{}", method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as answer:
                codes.append(0 if answer.status == 200 else 1)
        else:
            pytest.fail(f"{GUIDE.name} command the test cannot run: {argv}")
    return codes


def resolved_args(request: dict, executor: str, params: dict | None = None) -> list[str]:
    """A container step's args with the run's parameter values filled in, as Vertex AI runs them (an
    INTEGER parameter as an integer: JSON carries every number as a double)."""
    types = request["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    values = {k: int(v) if types[k]["parameterType"] == "NUMBER_INTEGER" else v
              for k, v in {**request["runtimeConfig"]["parameterValues"], **(params or {})}.items()}
    args = request["pipelineSpec"]["deploymentSpec"]["executors"][executor]["container"]["args"]
    return [re.sub(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}", lambda m: str(values[m.group(1)]), a) for a in args]


def test_the_readme_schedule_command_runs_as_written(vertex, capsys) -> None:
    commands = expand(block_with("pipeline.py schedule", "gcloud scheduler jobs run"))
    assert [c[:3] for c in commands] == [["python", "pipeline.py", "schedule"], ["gcloud", "scheduler", "jobs"]]
    assert "--baseline" not in commands[0]  # the drift check finds the served model's baseline
    assert run_readme(commands, vertex.url) == [0, 0], capsys.readouterr().err

    bucket, project, region = shell_value("BUCKET"), shell_value("PROJECT"), shell_value("REGION")
    assert len(vertex.scheduler_runs) == 1  # "run it now" started one drift pipeline run on Vertex AI
    job = vertex.pipeline_jobs[vertex.scheduler_runs[0]]
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == DRIFT_PIPELINE_NAME
    params = job["runtimeConfig"]["parameterValues"]
    assert {k: params[k] for k in ("baseline", "current", "output_dir")} == {
        "baseline": "", "current": f"gs://{bucket}/predictions/", "output_dir": f"gs://{bucket}/monitoring/"}
    args = resolved_args(job, "exec-drift-check")
    assert args[:6] == ["--baseline", "", "--current", f"gs://{bucket}/predictions/",  # "" = find it
                        "--window-days", "2"]  # a run after midnight sees all of yesterday
    retrain = params["retrain"]
    assert (retrain["project"], retrain["region"]) == (project, region)
    target = vertexai.parse_vertex_uri(retrain["parameter_values"]["registry_uri"])
    # the retrained model logs where this schedule reads
    assert target.prediction_log == f"gs://{bucket}/predictions"
    assert target.staging == f"gs://{bucket}/pipeline-root/models"


def test_the_readme_train_and_scoring_commands_run_as_written(vertex, gcs_emulator, monkeypatch,
                                                              resource_manager_lookup, tmp_path, capsys) -> None:
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    bucket, tag, repo = shell_value("BUCKET"), shell_value("TAG"), shell_value("REPO")
    client = storage.Client(project=shell_value("PROJECT"))
    if not client.bucket(bucket).exists():
        client.create_bucket(bucket)
    for blob in client.list_blobs(bucket):
        blob.delete()
    put_raw(bucket, "raw", RAW_FILES)  # gcloud storage cp data/raw/… gs://$BUCKET/raw/
    template = compile_pipeline(tmp_path / "churn_pipeline.yaml", f"{repo}/pipeline:{tag}")  # Cloud Build
    client.bucket(bucket).blob(f"templates/churn_pipeline-{tag}.yaml").upload_from_filename(template)

    train = expand(block_with("pipeline.py submit", "--template"))
    scoring = expand(block_with("submit --pipeline scoring"))
    assert run_readme(train + scoring, vertex.url) == [0, 0, 0], capsys.readouterr().err

    trained, scored = (c.body for c in vertex.calls("POST", r"/pipelineJobs$"))
    params = trained["runtimeConfig"]["parameterValues"]
    assert params["raw_dir"] == f"gs://{bucket}/raw" and params["raw_digest"] == vertex_jobs.raw_digest(f"gs://{bucket}/raw")
    registry = vertexai.parse_vertex_uri(params["registry_uri"])
    assert registry.prediction_log == f"gs://{bucket}/predictions"  # SERVING_PREDICTION_LOG_URI of the versions
    assert scored["pipelineSpec"]["pipelineInfo"]["name"] == "churn-scoring"
    assert scored["runtimeConfig"]["parameterValues"]["top"] == 500
    weekly = next(iter(vertex.scheduler_jobs.values()))
    assert weekly["name"].endswith("/jobs/churn-scoring-weekly") and weekly["schedule"] == "0 4 * * 1"
    assert weekly["timeZone"] == "Europe/Amsterdam"
