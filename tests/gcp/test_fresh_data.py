"""Retraining sees new data: a run on changed raw objects never shares data_prep's cache key with an old one.

Two defences, both checked on the wire (real SDK → fake Vertex AI; real storage client → gcp-storage-emulator):
data_prep is compiled with caching off, and every submit carries ``raw_digest`` (the raw objects' names,
generations, sizes and hashes), a pipeline parameter data_prep takes, so even ``--caching`` (which turns
every task's cache on) cannot give a run on new files the old outputs. Scheduled requests are static: they
cannot compute a digest when they fire, so there the compiled ``caching off`` is what protects data_prep.
"""

import base64
import json
import logging
import os

import pytest

import pipeline
from churn import vertex_jobs
from pipelines.training import compile_pipeline
from tests.gcp.conftest import PROJECT, RAW_FILES, REGION, put_raw

IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/pipeline:0123abc"
SERVING_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/churn/serving:0123abc"
SA = f"churn-pipeline@{PROJECT}.iam.gserviceaccount.com"


def _submit(vertex, gcs: str, raw: str, job_id: str, *extra: str) -> dict:
    code = pipeline.main(["submit", "--project", PROJECT, "--region", REGION, "--api-endpoint", vertex.url,
                          "--pipeline-root", f"gs://{gcs}/root", "--image", IMAGE, "--serving-image", SERVING_IMAGE,
                          "--raw-dir", raw, "--job-id", job_id, *extra])
    assert code == 0
    return vertex.calls("POST", r"/pipelineJobs$")[-1].body


def _caching(spec: dict) -> dict[str, bool]:
    return {name: bool(task.get("cachingOptions", {}).get("enableCache")) for name, task in
            spec["root"]["dag"]["tasks"].items()}


def test_changed_raw_objects_change_the_digest_and_data_prep_never_caches(vertex, gcs, resource_manager_lookup
                                                                          ) -> None:
    raw = put_raw(gcs, "raw", RAW_FILES)
    first = _submit(vertex, gcs, raw, "run-1")
    again = _submit(vertex, gcs, raw, "run-2")  # nothing changed under raw/
    put_raw(gcs, "raw", {"transactions.json": RAW_FILES["transactions.json"].replace("9.5", "7.5")})
    changed = _submit(vertex, gcs, raw, "run-3")  # same size, new contents: a new generation and hash
    put_raw(gcs, "raw", {"transactions_2026-12.json": "[]\n"})
    added = _submit(vertex, gcs, raw, "run-4")

    digests = [b["runtimeConfig"]["parameterValues"]["raw_digest"] for b in (first, again, changed, added)]
    assert digests[0] == digests[1]  # unchanged contents: the same key, so the cache may serve them
    assert digests[3] == vertex_jobs.raw_digest(raw)  # what the bucket holds now
    assert len({digests[1], digests[2], digests[3]}) == 3 and all(d.startswith("sha256:") for d in digests)

    for body in (first, changed):
        spec = body["pipelineSpec"]
        # the digest reaches data_prep as an input, so it is part of the task's cache key
        assert spec["root"]["dag"]["tasks"]["data-prep"]["inputs"]["parameters"]["raw_digest"] == \
            {"componentInputParameter": "raw_digest"}
        assert _caching(spec) == {"data-prep": False, "feature-engineering": True, "train": True,
                                  "evaluate": True, "register-model": True}


def test_forced_caching_still_separates_runs_on_new_data(vertex, gcs, resource_manager_lookup) -> None:
    """``--caching`` turns every task's cache on, data_prep's too: only the digest tells the runs apart."""
    raw = put_raw(gcs, "raw", RAW_FILES)
    before = _submit(vertex, gcs, raw, "run-a", "--caching")
    put_raw(gcs, "raw", {"customers.csv": RAW_FILES["customers.csv"] + "C2,2025-02-01\n"})
    after = _submit(vertex, gcs, raw, "run-b", "--caching")
    assert all(_caching(before["pipelineSpec"]).values())  # the SDK's override, as documented
    assert before["runtimeConfig"]["parameterValues"]["raw_digest"] != \
        after["runtimeConfig"]["parameterValues"]["raw_digest"]


def test_a_given_digest_is_kept_and_an_empty_raw_folder_is_refused(vertex, gcs, resource_manager_lookup,
                                                                    capsys) -> None:
    raw = put_raw(gcs, "raw", RAW_FILES)
    body = _submit(vertex, gcs, raw, "run-x", "--param", "raw_digest=pinned-by-hand")
    assert body["runtimeConfig"]["parameterValues"]["raw_digest"] == "pinned-by-hand"

    before = len(vertex.calls("POST", r"/pipelineJobs$"))
    code = pipeline.main(["submit", "--project", PROJECT, "--region", REGION, "--api-endpoint", vertex.url,
                          "--pipeline-root", f"gs://{gcs}/root", "--image", IMAGE, "--serving-image", SERVING_IMAGE,
                          "--raw-dir", f"gs://{gcs}/nothing-here"])
    err = capsys.readouterr().err
    assert code == 2 and f"gs://{gcs}/nothing-here: no raw objects found" in err and "Traceback" not in err
    assert len(vertex.calls("POST", r"/pipelineJobs$")) == before


def test_a_template_older_than_the_digest_is_submitted_with_a_warning(vertex, gcs, tmp_path, caplog) -> None:
    from kfp import compiler, dsl

    @dsl.component(base_image=IMAGE)
    def prep(raw_dir: str) -> str:
        return raw_dir

    @dsl.pipeline(name="churn-training")
    def old_training(raw_dir: str):
        prep(raw_dir=raw_dir)

    template = tmp_path / "old.yaml"
    compiler.Compiler().compile(old_training, package_path=str(template))
    raw = put_raw(gcs, "raw", RAW_FILES)
    with caplog.at_level(logging.WARNING, logger="churn.vertex_jobs"):
        params = vertex_jobs.with_raw_digest(template, {"raw_dir": raw})
    assert params == {"raw_dir": raw}
    assert "recompile the template" in caplog.text


def test_a_local_raw_folder_digest_follows_size_and_mtime(tmp_path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, text in RAW_FILES.items():
        (raw / name).write_text(text)
    first = vertex_jobs.raw_digest(str(raw))
    assert vertex_jobs.raw_digest(str(raw)) == first
    path = raw / "customers.csv"
    stat = path.stat()
    path.write_text(RAW_FILES["customers.csv"].replace("C1", "C9"))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert vertex_jobs.raw_digest(str(raw)) != first


def test_scheduled_requests_carry_no_digest_but_data_prep_stays_uncached(vertex, tmp_path) -> None:
    """A Vertex schedule or a Cloud Scheduler job of the training template fires a fixed request."""
    template = compile_pipeline(tmp_path / "churn_pipeline.yaml", IMAGE)
    params = {"raw_dir": "gs://acme-churn/raw"}
    vertex_jobs.schedule_pipeline(template, project=PROJECT, region=REGION, pipeline_root="gs://acme-churn/root",
                         cron="0 3 * * 1", display_name="churn-training-weekly", parameter_values=params,
                         service_account=SA, api_endpoint=vertex.url)
    job = vertex.calls("POST", r"/schedules$")[-1].body["createPipelineJobRequest"]["pipelineJob"]
    vertex_jobs.schedule_with_cloud_scheduler(template, project=PROJECT, region=REGION, pipeline_root="gs://acme-churn/root",
                                     cron="0 3 * * 1", job_name="churn-training-weekly", parameter_values=params,
                                     service_account=SA, api_endpoint=vertex.url, scheduler_endpoint=vertex.url)
    posted = json.loads(base64.b64decode(vertex.calls("POST", r"/jobs$")[-1].body["httpTarget"]["body"]))
    for request in (job, posted):
        assert "raw_digest" not in request["runtimeConfig"]["parameterValues"]
        assert _caching(request["pipelineSpec"])["data-prep"] is False
        assert _caching(request["pipelineSpec"])["train"] is True


def test_submit_help_says_what_caching_does_to_data_prep(capsys) -> None:
    with pytest.raises(SystemExit):
        pipeline.main(["submit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: as compiled: on, except data_prep)" in out and "raw_digest" in out
