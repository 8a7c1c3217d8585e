"""A small fake of the Vertex AI REST surface this project uses, for wire-level tests.

It speaks the JSON/HTTP protocol of ``https://REGION-aiplatform.googleapis.com/v1`` closely enough for
the real google-cloud-aiplatform SDK (``api_transport="rest"``) to run unchanged against it, and records
every request so tests can assert on the bodies the SDK actually sent. It also answers the OAuth token
exchange of a service-account key whose ``token_uri`` points here.

Covered: pipelineJobs create/get; models upload (a long-running operation that is polled once), get by
version or alias, listVersions, mergeVersionAliases, patch; endpoints create/get/list/patch/deployModel;
schedules create/list/get/patch; batchPredictionJobs create/get (each get moves the job one state on:
pending, running, then ``batch_outcome``); the metadata store (experiments: contexts, executions, artifacts) and
operations. Anything else answers 404 with the route in the message, so a new SDK call shows up as a
clear test failure rather than silently passing.

The same server also stands in for Cloud Scheduler v1 (``https://cloudscheduler.googleapis.com/v1``), for
google-cloud-scheduler with ``transport="rest"`` and ``client_options={"api_endpoint": url}``: jobs
get/create/patch and ``:run`` (what ``gcloud scheduler jobs run`` calls: the job's HTTP target is
called at once, here only a ``pipelineJobs`` create on this server, and its answer recorded). Like the
real service it validates the job (five-field cron, time zone, http(s) target, a body only with
POST/PUT/PATCH, one kind of token, attempt deadline 15 s-30 min, at most 5 retries),
answers 409 for a job that exists, needs an update mask to patch, fills in the retry defaults it
documents and adds its own ``User-Agent: Google-Cloud-Scheduler`` header to the stored target.

Model-registry semantics follow the Vertex documentation: the first version of a model always gets the
``default`` alias; an alias is unique within a model, so applying it to a version removes it from any
other version; ``-alias`` in mergeVersionAliases removes it; ``default`` can be moved but not removed.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

TIME = "2026-01-01T00:00:00Z"
PREFIX = "type.googleapis.com/google.cloud.aiplatform.v1."
LOCATION = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"


@dataclass
class Recorded:
    """One request as it arrived on the wire."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]  # lowercased names


class FakeError(Exception):
    """Answered as a Google API error body."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Model:
    model_id: str
    versions: dict[str, dict] = field(default_factory=dict)  # version id -> Model JSON


class FakeVertex:
    """The fake server's state and routes; ``start()`` serves it on 127.0.0.1 in a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()
        self.routes = self._routes()

    def reset(self) -> None:
        """Forgets every resource and recorded request (the server keeps running)."""
        self.requests: list[Recorded] = []
        self.pipeline_jobs: dict[str, dict] = {}
        self.models: dict[str, _Model] = {}
        self.endpoints: dict[str, dict] = {}
        self.schedules: dict[str, dict] = {}
        self.batch_jobs: dict[str, dict] = {}
        self.batch_outcome: dict = {"state": "JOB_STATE_SUCCEEDED"}  # a test may set a failure + "error"
        self.scheduler_jobs: dict[str, dict] = {}  # Cloud Scheduler
        self.scheduler_runs: list[str] = []  # pipeline jobs created by jobs:run
        self.metadata: dict[str, dict] = {}
        self.operations: dict[str, dict] = {}  # name -> final operation JSON
        self._pending: set[str] = set()
        self._ids = itertools.count(1000)

    def _routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", r"^/token$", self._token),
            ("POST", rf"^/v1/{LOCATION}/pipelineJobs$", self._create_pipeline_job),
            ("GET", rf"^/v1/{LOCATION}/pipelineJobs/(?P<id>[^/:]+)$", self._get_pipeline_job),
            ("POST", rf"^/v1/{LOCATION}/models:upload$", self._upload_model),
            ("GET", rf"^/v1/{LOCATION}/models/(?P<id>[^/:@]+)(?:@(?P<ver>[^/:]+))?:listVersions$",
             self._list_versions),
            ("POST", rf"^/v1/{LOCATION}/models/(?P<id>[^/:@]+)(?:@(?P<ver>[^/:]+))?:mergeVersionAliases$",
             self._merge_aliases),
            ("GET", rf"^/v1/{LOCATION}/models/(?P<id>[^/:@]+)(?:@(?P<ver>[^/:]+))?$", self._get_model),
            ("PATCH", rf"^/v1/{LOCATION}/models/(?P<id>[^/:@]+)(?:@(?P<ver>[^/:]+))?$", self._patch_model),
            ("POST", rf"^/v1/{LOCATION}/endpoints$", self._create_endpoint),
            ("GET", rf"^/v1/{LOCATION}/endpoints$", self._list_endpoints),
            ("GET", rf"^/v1/{LOCATION}/endpoints/(?P<id>[^/:]+)$", self._get_endpoint),
            ("PATCH", rf"^/v1/{LOCATION}/endpoints/(?P<id>[^/:]+)$", self._patch_endpoint),
            ("POST", rf"^/v1/{LOCATION}/endpoints/(?P<id>[^/:]+):deployModel$", self._deploy_model),
            ("POST", rf"^/v1/{LOCATION}/batchPredictionJobs$", self._create_batch_job),
            ("GET", rf"^/v1/{LOCATION}/batchPredictionJobs/(?P<id>[^/:]+)$", self._get_batch_job),
            ("POST", rf"^/v1/{LOCATION}/schedules$", self._create_schedule),
            ("GET", rf"^/v1/{LOCATION}/schedules$", self._list_schedules),
            ("GET", rf"^/v1/{LOCATION}/schedules/(?P<id>[^/:]+)$", self._get_schedule),
            ("PATCH", rf"^/v1/{LOCATION}/schedules/(?P<id>[^/:]+)$", self._patch_schedule),
            ("POST", rf"^/v1/{LOCATION}/jobs$", self._create_scheduler_job),
            ("GET", rf"^/v1/{LOCATION}/jobs/(?P<id>[^/:]+)$", self._get_scheduler_job),
            ("PATCH", rf"^/v1/{LOCATION}/jobs/(?P<id>[^/:]+)$", self._patch_scheduler_job),
            ("POST", rf"^/v1/{LOCATION}/jobs/(?P<id>[^/:]+):run$", self._run_scheduler_job),
            ("GET", rf"^/v1/{LOCATION}/metadataStores/(?P<store>[^/:]+)$", self._get_store),
            ("POST", rf"^/v1/{LOCATION}/metadataStores$", self._create_store),
            ("POST", rf"^/v1/{LOCATION}/metadataStores/(?P<store>[^/]+)/(?P<kind>contexts|executions|artifacts)$",
             self._create_metadata),
            ("GET", rf"^/v1/{LOCATION}/metadataStores/(?P<store>[^/]+)/(?P<kind>contexts|executions|artifacts)$",
             self._list_metadata),
            ("GET", rf"^/v1/(?P<name>{LOCATION}/metadataStores/[^/]+/(?:contexts|executions|artifacts)/[^/:]+)$",
             self._get_metadata),
            ("PATCH", rf"^/v1/(?P<name>{LOCATION}/metadataStores/[^/]+/(?:contexts|executions|artifacts)/[^/:]+)$",
             self._patch_metadata),
            ("POST", rf"^/v1/(?P<name>{LOCATION}/metadataStores/[^/]+/(?:contexts|executions)/[^/:]+)"
                     rf":(?P<verb>addContextChildren|addContextArtifactsAndExecutions|addExecutionEvents)$",
             self._metadata_link),
            ("GET", rf"^/(?:v1|ui)/(?P<name>{LOCATION}/.*operations/[^/]+)$", self._get_operation),
        ]

    # --------------------------------------------------------------------------------------------
    # serving
    # --------------------------------------------------------------------------------------------

    def start(self) -> str:
        """Serves on 127.0.0.1 (a free port) in a daemon thread; returns the base URL."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
                return None

            def _handle(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        """Recorded requests with this method whose path matches ``pattern`` (a regex)."""
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        content_type = handler.headers.get("Content-Type", "")
        if "json" in content_type and raw:
            body: Any = json.loads(raw)
        elif "x-www-form-urlencoded" in content_type:
            body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        else:
            body = raw.decode() if raw else None
        with self._lock:
            headers = {k.lower(): v for k, v in handler.headers.items()}
            self.requests.append(Recorded(handler.command, path, query, body, headers))
            try:
                for method, pattern, func in self.routes:
                    match = re.match(pattern, path)
                    if method == handler.command and match:
                        status, answer = HTTPStatus.OK, func(match.groupdict(), query, body)
                        break
                else:
                    raise FakeError(HTTPStatus.NOT_FOUND, f"fake Vertex: no route for {handler.command} {path}")
            except FakeError as exc:
                status = exc.status
                answer = {"error": {"code": exc.status.value, "message": exc.message, "status": exc.status.name}}
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _operation(self, parent: str, response: dict, type_name: str, *, pending: bool = False) -> dict:
        name = f"{parent}/operations/{self._next_id()}"
        final = {"name": name, "done": True, "response": {"@type": PREFIX + type_name, **response}}
        self.operations[name] = final
        if pending:
            self._pending.add(name)
            return {"name": name, "done": False}
        return final

    def _get_operation(self, m: dict, q: dict, body: Any) -> dict:
        name = m["name"]
        if name not in self.operations:
            raise FakeError(HTTPStatus.NOT_FOUND, f"operation {name} not found")
        self._pending.discard(name)
        return self.operations[name]

    @staticmethod
    def _parent(m: dict) -> str:
        return f"projects/{m['project']}/locations/{m['location']}"

    def _token(self, m: dict, q: dict, body: Any) -> dict:
        if not isinstance(body, dict) or "assertion" not in body:
            raise FakeError(HTTPStatus.BAD_REQUEST, "token request without a JWT assertion")
        return {"access_token": "fake-access-token", "expires_in": 3600, "token_type": "Bearer"}

    # --------------------------------------------------------------------------------------------
    # pipeline jobs
    # --------------------------------------------------------------------------------------------

    def _create_pipeline_job(self, m: dict, q: dict, body: dict) -> dict:
        job_id = q.get("pipelineJobId", [f"job-{self._next_id()}"])[0]
        parent = self._parent(m)
        name = f"{parent}/pipelineJobs/{job_id}"
        if name in self.pipeline_jobs:
            raise FakeError(HTTPStatus.CONFLICT, f"pipeline job {name} already exists")
        job = {**body, "name": name, "state": "PIPELINE_STATE_PENDING", "createTime": TIME, "updateTime": TIME,
               "jobDetail": {"pipelineRunContext": {"name": f"{parent}/metadataStores/default/contexts/{job_id}"}}}
        self.pipeline_jobs[name] = job
        self.metadata[f"{parent}/metadataStores/default/contexts/{job_id}"] = {
            "name": f"{parent}/metadataStores/default/contexts/{job_id}", "displayName": job_id,
            "schemaTitle": "system.PipelineRun", "metadata": {}}
        return job

    def _get_pipeline_job(self, m: dict, q: dict, body: Any) -> dict:
        name = f"{self._parent(m)}/pipelineJobs/{m['id']}"
        if name not in self.pipeline_jobs:
            raise FakeError(HTTPStatus.NOT_FOUND, f"pipeline job {name} not found")
        return self.pipeline_jobs[name]

    # --------------------------------------------------------------------------------------------
    # models
    # --------------------------------------------------------------------------------------------

    def _resolve(self, m: dict) -> tuple[_Model, dict]:
        model = self.models.get(m["id"])
        if model is None:
            raise FakeError(HTTPStatus.NOT_FOUND, f"Model projects/{m['project']}/locations/{m['location']}/models/"
                                                  f"{m['id']} does not exist.")
        ver = m.get("ver") or "default"
        if ver in model.versions:
            return model, model.versions[ver]
        for version in model.versions.values():
            if ver in version["versionAliases"]:
                return model, version
        raise FakeError(HTTPStatus.NOT_FOUND, f"model {m['id']} has no version or alias {ver!r}")

    @staticmethod
    def _apply_aliases(model: _Model, version: dict, aliases: list[str]) -> None:
        for alias in aliases:
            if alias.startswith("-"):
                if alias[1:] == "default":
                    raise FakeError(HTTPStatus.BAD_REQUEST, "the default alias cannot be removed, only moved")
                version["versionAliases"] = [a for a in version["versionAliases"] if a != alias[1:]]
                continue
            if not re.fullmatch(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]", alias) or alias.isdigit():
                raise FakeError(HTTPStatus.BAD_REQUEST, f"invalid alias {alias!r}")
            for other in model.versions.values():
                if other is not version and alias in other["versionAliases"]:
                    other["versionAliases"] = [a for a in other["versionAliases"] if a != alias]
            if alias not in version["versionAliases"]:
                version["versionAliases"].append(alias)

    def _upload_model(self, m: dict, q: dict, body: dict) -> dict:
        parent = self._parent(m)
        spec = body["model"]
        if body.get("parentModel"):
            model_id = body["parentModel"].rsplit("/", 1)[-1]
            if model_id not in self.models:
                raise FakeError(HTTPStatus.NOT_FOUND, f"parent model {body['parentModel']} does not exist")
            model = self.models[model_id]
        else:
            model_id = body.get("modelId") or self._next_id()
            if model_id in self.models:
                raise FakeError(HTTPStatus.CONFLICT, f"model {model_id} already exists; upload with parent_model")
            model = self.models[model_id] = _Model(model_id)
        version_id = str(len(model.versions) + 1)
        version = {**copy.deepcopy(spec), "name": f"{parent}/models/{model_id}", "versionId": version_id,
                   "versionAliases": [], "createTime": TIME, "updateTime": TIME, "versionCreateTime": TIME,
                   "versionUpdateTime": TIME}
        if spec.get("containerSpec"):  # output only: a custom-container model deploys on dedicated machines
            version["supportedDeploymentResourcesTypes"] = ["DEDICATED_RESOURCES"]
        model.versions[version_id] = version
        aliases = list(spec.get("versionAliases", []))
        if version_id == "1" and "default" not in aliases:
            aliases.append("default")  # the first version always carries the default alias
        self._apply_aliases(model, version, aliases)
        return self._operation(parent, {"model": f"{parent}/models/{model_id}", "modelVersionId": version_id},
                               "UploadModelResponse", pending=True)

    def _get_model(self, m: dict, q: dict, body: Any) -> dict:
        return self._resolve(m)[1]

    def _list_versions(self, m: dict, q: dict, body: Any) -> dict:
        model, _ = self._resolve({**m, "ver": None})
        return {"models": list(model.versions.values())}

    def _merge_aliases(self, m: dict, q: dict, body: dict) -> dict:
        model, version = self._resolve(m)
        self._apply_aliases(model, version, body.get("versionAliases", []))
        return version

    def _patch_model(self, m: dict, q: dict, body: dict) -> dict:
        _, version = self._resolve(m)
        for path in q.get("updateMask", [""])[0].split(","):
            key = re.sub(r"_(\w)", lambda g: g.group(1).upper(), path.strip())
            if key:
                version[key] = body.get(key)
        return version

    # --------------------------------------------------------------------------------------------
    # endpoints
    # --------------------------------------------------------------------------------------------

    def _create_endpoint(self, m: dict, q: dict, body: dict) -> dict:
        parent = self._parent(m)
        endpoint_id = q.get("endpointId", [self._next_id()])[0]
        name = f"{parent}/endpoints/{endpoint_id}"
        self.endpoints[name] = {**body, "name": name, "deployedModels": [], "trafficSplit": {},
                                "createTime": TIME, "updateTime": TIME}
        return self._operation(parent, self.endpoints[name], "Endpoint")

    def _list_endpoints(self, m: dict, q: dict, body: Any) -> dict:
        wanted = re.search(r'display_name="([^"]*)"', q.get("filter", [""])[0])
        found = [e for e in self.endpoints.values() if not wanted or e.get("displayName") == wanted.group(1)]
        return {"endpoints": found}

    def _endpoint(self, m: dict) -> dict:
        name = f"{self._parent(m)}/endpoints/{m['id']}"
        if name not in self.endpoints:
            raise FakeError(HTTPStatus.NOT_FOUND, f"endpoint {name} not found")
        return self.endpoints[name]

    def _get_endpoint(self, m: dict, q: dict, body: Any) -> dict:
        return self._endpoint(m)

    def _patch_endpoint(self, m: dict, q: dict, body: dict) -> dict:
        endpoint = self._endpoint(m)
        for path in q.get("updateMask", [""])[0].split(","):
            key = re.sub(r"_(\w)", lambda g: g.group(1).upper(), path.strip())
            if key:
                endpoint[key] = body.get(key)
        return endpoint

    def _deploy_model(self, m: dict, q: dict, body: dict) -> dict:
        endpoint = self._endpoint(m)
        deployed = {**body["deployedModel"], "id": self._next_id(), "createTime": TIME}
        model_name = deployed["model"]
        model_id, _, ver = model_name.rsplit("/", 1)[-1].partition("@")
        _, version = self._resolve({**m, "id": model_id, "ver": ver or None})
        deployed["modelVersionId"] = version["versionId"]
        endpoint["deployedModels"].append(deployed)
        split = {("0" if k == "0" else k): v for k, v in (body.get("trafficSplit") or {}).items()}
        if "0" in split:
            split[deployed["id"]] = split.pop("0")
        endpoint["trafficSplit"] = split or {deployed["id"]: 100}
        return self._operation(self._parent(m), {"deployedModel": deployed}, "DeployModelResponse")

    # --------------------------------------------------------------------------------------------
    # batch prediction jobs
    # --------------------------------------------------------------------------------------------

    def _create_batch_job(self, m: dict, q: dict, body: dict) -> dict:
        """Validates what the real service refuses, then stores the job as pending."""
        parent = self._parent(m)
        for key in ("displayName", "model", "inputConfig", "outputConfig"):
            if not body.get(key):
                raise FakeError(HTTPStatus.BAD_REQUEST, f"batchPredictionJob.{key} is required")
        model_id, _, ver = body["model"].removeprefix(f"{parent}/models/").partition("@")
        if "/" in model_id:
            raise FakeError(HTTPStatus.BAD_REQUEST, f"model {body['model']} is not in {parent}")
        _, version = self._resolve({**m, "id": model_id, "ver": ver or None})
        source, dest = body["inputConfig"], body["outputConfig"]
        if ("gcsSource" in source) == ("bigquerySource" in source):
            raise FakeError(HTTPStatus.BAD_REQUEST, "inputConfig needs exactly one of gcsSource, bigquerySource")
        if ("gcsDestination" in dest) == ("bigqueryDestination" in dest):
            raise FakeError(HTTPStatus.BAD_REQUEST,
                            "outputConfig needs exactly one of gcsDestination, bigqueryDestination")
        if ("bigquerySource" in source) != (source.get("instancesFormat") == "bigquery"):
            raise FakeError(HTTPStatus.BAD_REQUEST, "instancesFormat must be 'bigquery' exactly for a BigQuery source")
        if "DEDICATED_RESOURCES" in version.get("supportedDeploymentResourcesTypes", []) and \
                not body.get("dedicatedResources", {}).get("machineSpec", {}).get("machineType"):
            raise FakeError(HTTPStatus.BAD_REQUEST, "this model needs dedicatedResources.machineSpec.machineType")
        config = body.get("instanceConfig", {})
        if config.get("instanceType", "object") not in ("object", "array"):
            raise FakeError(HTTPStatus.BAD_REQUEST, f"instanceType {config['instanceType']!r} is not object or array")
        if config.get("includedFields") and config.get("excludedFields"):
            raise FakeError(HTTPStatus.BAD_REQUEST, "includedFields and excludedFields cannot both be set")
        name = f"{parent}/batchPredictionJobs/{self._next_id()}"
        self.batch_jobs[name] = {**body, "name": name, "state": "JOB_STATE_PENDING", "createTime": TIME,
                                 "updateTime": TIME}
        return self.batch_jobs[name]

    @staticmethod
    def _bq_dataset(uri: str, job_id: str) -> str:
        """The dataset holding the output: the one given, or a new one when only the project is."""
        return uri if "." in uri else f"{uri}.prediction_{job_id}"

    def _get_batch_job(self, m: dict, q: dict, body: Any) -> dict:
        name = f"{self._parent(m)}/batchPredictionJobs/{m['id']}"
        if name not in self.batch_jobs:
            raise FakeError(HTTPStatus.NOT_FOUND, f"batch prediction job {name} not found")
        job = self.batch_jobs[name]
        if job["state"] == "JOB_STATE_PENDING":
            job["state"] = "JOB_STATE_RUNNING"
        elif job["state"] == "JOB_STATE_RUNNING":
            job.update(copy.deepcopy(self.batch_outcome))
            if job["state"] == "JOB_STATE_SUCCEEDED":
                out = job["outputConfig"]
                job["outputInfo"] = (
                    {"gcsOutputDirectory": f"{out['gcsDestination']['outputUriPrefix'].rstrip('/')}"
                                           f"/prediction-{m['id']}"} if "gcsDestination" in out else
                    {"bigqueryOutputDataset": self._bq_dataset(out["bigqueryDestination"]["outputUri"], m["id"]),
                     "bigqueryOutputTable": "predictions"})
        return job

    # --------------------------------------------------------------------------------------------
    # schedules
    # --------------------------------------------------------------------------------------------

    def _create_schedule(self, m: dict, q: dict, body: dict) -> dict:
        name = f"{self._parent(m)}/schedules/{self._next_id()}"
        self.schedules[name] = {**body, "name": name, "state": "ACTIVE", "createTime": TIME, "updateTime": TIME,
                                "nextRunTime": TIME}
        return self.schedules[name]

    def _list_schedules(self, m: dict, q: dict, body: Any) -> dict:
        wanted = re.search(r'display_name="([^"]*)"', q.get("filter", [""])[0])
        return {"schedules": [s for s in self.schedules.values()
                              if not wanted or s.get("displayName") == wanted.group(1)]}

    def _schedule(self, m: dict) -> dict:
        name = f"{self._parent(m)}/schedules/{m['id']}"
        if name not in self.schedules:
            raise FakeError(HTTPStatus.NOT_FOUND, f"schedule {name} not found")
        return self.schedules[name]

    def _get_schedule(self, m: dict, q: dict, body: Any) -> dict:
        return self._schedule(m)

    def _patch_schedule(self, m: dict, q: dict, body: dict) -> dict:
        schedule = self._schedule(m)
        mask = [p.strip() for p in q.get("updateMask", [""])[0].split(",") if p.strip()]
        if not mask:
            raise FakeError(HTTPStatus.BAD_REQUEST, "updateMask is required")
        for path in mask:
            key = re.sub(r"_(\w)", lambda g: g.group(1).upper(), path)
            schedule[key] = body.get(key)
        schedule["updateTime"] = TIME
        return schedule

    # --------------------------------------------------------------------------------------------
    # Cloud Scheduler jobs
    # --------------------------------------------------------------------------------------------

    _HTTP_METHODS = ("HTTP_METHOD_UNSPECIFIED", "POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS")
    _RETRY_DEFAULTS: ClassVar[dict[str, Any]] = {"retryCount": 0, "maxRetryDuration": "0s",
                                                 "minBackoffDuration": "5s", "maxBackoffDuration": "3600s",
                                                 "maxDoublings": 5}

    @staticmethod
    def _seconds(duration: str) -> float:
        if not re.fullmatch(r"\d+(\.\d+)?s", duration):
            raise FakeError(HTTPStatus.BAD_REQUEST, f"invalid duration {duration!r}")
        return float(duration[:-1])

    def _validated_job(self, job: dict) -> dict:
        """The job as Cloud Scheduler stores it, or a 400 for what the real service rejects."""
        job = copy.deepcopy(job)
        if len(str(job.get("schedule", "")).split()) != 5:
            raise FakeError(HTTPStatus.BAD_REQUEST, f"schedule {job.get('schedule')!r} is not a unix-cron expression")
        job.setdefault("timeZone", "Etc/UTC")
        target = job.get("httpTarget")
        if not target or not re.match(r"https?://", target.get("uri", "")):
            raise FakeError(HTTPStatus.BAD_REQUEST, "this fake supports HTTP targets with an http(s):// uri")
        method = target.setdefault("httpMethod", "POST")
        if isinstance(method, int):  # the REST clients ask for enum-encoding=int
            method = target["httpMethod"] = self._HTTP_METHODS[method]
        if target.get("body") and method not in ("POST", "PUT", "PATCH"):
            raise FakeError(HTTPStatus.BAD_REQUEST, f"a body is not allowed with {method}")
        if "oauthToken" in target and "oidcToken" in target:
            raise FakeError(HTTPStatus.BAD_REQUEST, "set either oauthToken or oidcToken, not both")
        target["headers"] = {**target.get("headers", {}), "User-Agent": "Google-Cloud-Scheduler"}
        job["retryConfig"] = {**self._RETRY_DEFAULTS, **job.get("retryConfig", {})}
        if not 0 <= int(job["retryConfig"]["retryCount"]) <= 5:
            raise FakeError(HTTPStatus.BAD_REQUEST, "retryCount must be 0-5")
        job.setdefault("attemptDeadline", "180s")
        if not 15 <= self._seconds(job["attemptDeadline"]) <= 1800:
            raise FakeError(HTTPStatus.BAD_REQUEST, "attemptDeadline must be 15s-30m for an HTTP target")
        return job

    def _create_scheduler_job(self, m: dict, q: dict, body: dict) -> dict:
        parent = self._parent(m)
        name = body.get("name") or f"{parent}/jobs/{self._next_id()}"
        if not name.startswith(f"{parent}/jobs/"):
            raise FakeError(HTTPStatus.BAD_REQUEST, f"job name {name} is not under {parent}")
        if name in self.scheduler_jobs:
            raise FakeError(HTTPStatus.CONFLICT, f"Job {name} already exists")
        job = self._validated_job(body)
        self.scheduler_jobs[name] = {**job, "name": name, "state": "ENABLED", "userUpdateTime": TIME,
                                     "scheduleTime": TIME}
        return self.scheduler_jobs[name]

    def _scheduler_job(self, m: dict) -> dict:
        name = f"{self._parent(m)}/jobs/{m['id']}"
        if name not in self.scheduler_jobs:
            raise FakeError(HTTPStatus.NOT_FOUND, f"Job not found: {name}")
        return self.scheduler_jobs[name]

    def _get_scheduler_job(self, m: dict, q: dict, body: Any) -> dict:
        return self._scheduler_job(m)

    def _patch_scheduler_job(self, m: dict, q: dict, body: dict) -> dict:
        job = self._scheduler_job(m)
        if body.get("name") not in (None, job["name"]):
            raise FakeError(HTTPStatus.BAD_REQUEST, f"job name {body['name']} does not match the URL")
        mask = [p.strip() for p in q.get("updateMask", [""])[0].split(",") if p.strip()]
        if not mask:
            raise FakeError(HTTPStatus.BAD_REQUEST, "this fake needs an updateMask")
        merged = dict(job)
        for path in mask:
            key = re.sub(r"_(\w)", lambda g: g.group(1).upper(), path)
            if key not in ("description", "httpTarget", "schedule", "timeZone", "retryConfig", "attemptDeadline"):
                raise FakeError(HTTPStatus.BAD_REQUEST, f"field {path!r} cannot be updated")
            merged[key] = body.get(key)
        self.scheduler_jobs[job["name"]] = {**self._validated_job(merged), "userUpdateTime": TIME}
        return self.scheduler_jobs[job["name"]]

    def _run_scheduler_job(self, m: dict, q: dict, body: Any) -> dict:
        """Fires the job now, as Cloud Scheduler would: its POST body to its URI (only this server's
        ``pipelineJobs`` create is reachable from here). The created job is in ``scheduler_runs``."""
        import base64

        job = self._scheduler_job(m)
        target = job["httpTarget"]
        found = re.match(rf"^{re.escape(self.url)}/v1/{LOCATION}/pipelineJobs$", target["uri"])
        if not found:
            raise FakeError(HTTPStatus.BAD_REQUEST, f"fake Cloud Scheduler: cannot call {target['uri']} (only "
                                                    f"{self.url}/v1/…/pipelineJobs)")
        created = self._create_pipeline_job(found.groupdict(), {}, json.loads(base64.b64decode(target["body"])))
        self.scheduler_runs.append(created["name"])
        job["lastAttemptTime"] = TIME
        return job

    # --------------------------------------------------------------------------------------------
    # metadata (Vertex Experiments)
    # --------------------------------------------------------------------------------------------

    def _get_store(self, m: dict, q: dict, body: Any) -> dict:
        return {"name": f"{self._parent(m)}/metadataStores/{m['store']}", "createTime": TIME}

    def _create_store(self, m: dict, q: dict, body: Any) -> dict:
        store = q.get("metadataStoreId", ["default"])[0]
        return self._operation(self._parent(m), {"name": f"{self._parent(m)}/metadataStores/{store}"},
                               "MetadataStore")

    def _create_metadata(self, m: dict, q: dict, body: dict) -> dict:
        kind = m["kind"]
        resource_id = q.get(f"{kind[:-1]}Id", [self._next_id()])[0]
        name = f"{self._parent(m)}/metadataStores/{m['store']}/{kind}/{resource_id}"
        if name in self.metadata:
            raise FakeError(HTTPStatus.CONFLICT, f"{name} already exists")
        self.metadata[name] = {**body, "name": name, "createTime": TIME, "updateTime": TIME, "etag": "1"}
        return self.metadata[name]

    def _list_metadata(self, m: dict, q: dict, body: Any) -> dict:
        prefix = f"{self._parent(m)}/metadataStores/{m['store']}/{m['kind']}/"
        found = [v for k, v in self.metadata.items() if k.startswith(prefix)]
        wanted = re.search(r'schema_title="([^"]*)"', q.get("filter", [""])[0])
        if wanted:
            found = [v for v in found if v.get("schemaTitle") == wanted.group(1)]
        return {m["kind"]: found}

    def _get_metadata(self, m: dict, q: dict, body: Any) -> dict:
        if m["name"] not in self.metadata:
            raise FakeError(HTTPStatus.NOT_FOUND, f"{m['name']} not found")
        return self.metadata[m["name"]]

    def _patch_metadata(self, m: dict, q: dict, body: dict) -> dict:
        resource = self._get_metadata(m, q, body)
        for key, value in body.items():
            if key == "metadata":
                resource.setdefault("metadata", {}).update(value or {})
            elif key not in ("name", "createTime", "updateTime"):
                resource[key] = value
        return resource

    def _metadata_link(self, m: dict, q: dict, body: dict) -> dict:
        if m["verb"] == "addContextChildren":
            parent = self._get_metadata(m, q, body)
            for child in body.get("childContexts", []):
                self.metadata.setdefault(child, {"name": child})["parentContexts"] = [parent["name"]]
        return {}
