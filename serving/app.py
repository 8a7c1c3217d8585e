"""The FastAPI app on Vertex AI's custom-container contract.

Routes (paths from the environment, used exactly as given):

* ``POST $AIP_PREDICT_ROUTE`` (``/predict``) — ``{"instances": [...], "parameters": {...}}`` or one
  customer object → ``{"predictions": [...]}``;
* ``GET $AIP_HEALTH_ROUTE`` (``/health``) — 200 once the model is loaded and verified, else 503;
* ``GET /schema`` — the served model's feature schema and instance JSON schema; ``/docs`` and
  ``/openapi.json`` describe the request built from that schema.

The model is loaded in the ``lifespan`` by a background task, so the server answers health checks (503)
while it loads. With ``AIP_STORAGE_URI`` it loads that folder once; otherwise it follows the registry's
``champion`` alias, polling every ``SERVING_POLL_SECONDS`` and swapping a newly verified version in
between two requests (in-flight requests finish on the model they started with).

``uvicorn serving.app:app`` works: ``app`` is built on first access (PEP 562), never at import. The
predict route is the hot path: no FastAPI dependencies (sync ones cost thread hops), validation by
:mod:`serving.columns` with the pydantic models as fallback, and an orjson response.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from serving.model import ModelSource, RegistrySource, RequestError, ServedModel, StorageSource
from serving.model_record import record_in_background
from serving.prediction_log import GcsPredictionLog, PredictionLog
from serving.schemas import ErrorResponse, HealthResponse, PredictResponse
from serving.settings import Settings, get_settings

logger = logging.getLogger(__name__)

SCHEMA_ROUTE = "/schema"
API_VERSION = "1"


@dataclass
class ServingState:
    """What the running app holds.

    Attributes:
        model: The model being served (replaced whole when a new version is verified).
        error: Why no (new) model could be loaded, if so.
        log: The prediction log, when enabled.
    """

    model: ServedModel | None = None
    error: str = ""
    log: PredictionLog | None = None


def model_source(settings: Settings, cache_dir: Path) -> ModelSource:
    """The source the settings name: ``AIP_STORAGE_URI`` if set, else the registry alias."""
    if settings.storage_uri:
        return StorageSource(uri=settings.storage_uri, name=settings.model_name, max_instances=settings.max_instances,
                             cache_dir=cache_dir, version_override=settings.model_version,
                             extra_fields=settings.extra_fields)
    return RegistrySource(uri=settings.resolved_registry_uri(), name=settings.model_name, alias=settings.model_alias,
                          max_instances=settings.max_instances, cache_dir=cache_dir,
                          version_override=settings.model_version, extra_fields=settings.extra_fields)


def open_prediction_log(settings: Settings) -> PredictionLog | None:
    """The prediction log the settings ask for: ``gs://`` parts, a local file, or none."""
    if not settings.prediction_log:
        return None
    flush = settings.resolved_log_flush_seconds()
    if settings.prediction_log_uri:
        return GcsPredictionLog(settings.prediction_log_uri, flush_seconds=flush,
                                max_pending_rows=settings.log_max_pending_rows)
    if settings.storage_uri:  # a fixed deployment, as on Vertex AI
        logger.warning("the prediction log goes to the local folder %s; in a container (Vertex AI) it is lost "
                       "with it and out of the nightly drift check's reach: set "
                       "SERVING_PREDICTION_LOG_URI=gs://BUCKET/PREFIX",
                       settings.prediction_log_dir)
    return PredictionLog(settings.prediction_log_dir, flush_seconds=flush,
                         max_pending_rows=settings.log_max_pending_rows)


async def keep_model_current(app: FastAPI, source: ModelSource, poll_seconds: float) -> None:
    """Loads the model, then (for a registry alias) swaps in each new version once verified.

    A failed load leaves the current model serving (or the app unhealthy if there is none) and is retried
    on the next poll.
    """
    state: ServingState = app.state.serving
    while True:
        try:
            new = await asyncio.to_thread(source.fetch, state.model)
        except Exception as exc:  # noqa: BLE001 - any failure must leave the server up; /health reports it
            state.error = f"{type(exc).__name__}: {exc}"
            logger.error("model not (re)loaded: %s", state.error)
        else:
            if new is not None:
                old, state.model, state.error = state.model, new, ""
                app.openapi_schema = None
                if isinstance(state.log, GcsPredictionLog):  # model.json: where this version's model came from
                    record_in_background(state.log.uri, new)
                if old is not None:
                    logger.info("switched %s → %s", old.version, new.version)
                    _discard(old, app.state.cache_dir)
        if state.model is not None and not source.follows:
            return
        await asyncio.sleep(poll_seconds)


def _discard(model: ServedModel, cache_dir: Path) -> None:
    """Deletes a replaced model's downloaded folder (its session is already in memory)."""
    if model.folder.resolve().is_relative_to(cache_dir.resolve()):
        shutil.rmtree(model.folder, ignore_errors=True)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Starts the model loader and the prediction log; on shutdown stops them and flushes the log."""
    settings: Settings = app.state.settings
    tmp = None
    if settings.cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="churn-serving-")
        app.state.cache_dir = Path(tmp.name)
    else:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        app.state.cache_dir = settings.cache_dir
    state: ServingState = app.state.serving
    state.log = open_prediction_log(settings)
    if state.log is not None:
        state.log.start()
    loader = asyncio.create_task(keep_model_current(app, model_source(settings, app.state.cache_dir),
                                                    settings.poll_seconds))
    try:
        yield
    finally:
        loader.cancel()
        await asyncio.gather(loader, return_exceptions=True)
        if state.log is not None:
            await asyncio.to_thread(state.log.close)
        if tmp is not None:
            tmp.cleanup()


# ----------------------------------------------------------------------------------------------------
# Dependencies (async: FastAPI runs plain ``def`` dependencies in its thread pool)
# ----------------------------------------------------------------------------------------------------

async def get_state(request: Request) -> ServingState:
    """The app's serving state."""
    return request.app.state.serving


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return request.app.state.settings


def serving_model(state: ServingState) -> ServedModel:
    """The model being served.

    Raises:
        HTTPException: 503 while no verified model is loaded.
    """
    model = state.model
    if model is None:
        raise HTTPException(503, detail=state.error or "the model is loading")
    return model


async def current_model(state: Annotated[ServingState, Depends(get_state)]) -> ServedModel:
    """The model being served (dependency; see :func:`serving_model`)."""
    return serving_model(state)


StateDep = Annotated[ServingState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ModelDep = Annotated[ServedModel, Depends(current_model)]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` bytes.

    Raises:
        RequestError: 413 (too large) or 400 (bad ``Content-Length``).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(400, "invalid Content-Length header")
        if int(declared) > limit:
            raise RequestError(413, f"request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class _Body:
    """Where one request's body stands, as :class:`BodyGuard` sees it."""

    pending: bool  # a body is expected and its last part has not arrived yet
    declared: int | None  # Content-Length
    continue_expected: bool  # ``Expect: 100-continue``: the client sends the body only once asked
    deadline: float
    received: int = 0
    asked: bool = False  # the app asked for the body (so a 100-continue client was told to send it)
    timed_out: bool = False
    answered_early: bool = False  # the response started before the whole body had arrived
    timer: asyncio.TimerHandle | None = None  # the body deadline, armed at the first read
    waiting: asyncio.Task | None = None  # the task reading the body, while it waits

    def take(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.pending = False
        else:  # http.disconnect
            self.pending = False
        if not self.pending and self.timer is not None:
            self.timer.cancel()

    def expire(self) -> None:
        """The deadline passed: a read in progress is cancelled (and answered 408)."""
        self.timed_out = True
        if self.waiting is not None:
            self.waiting.cancel()


class BodyGuard:
    """ASGI middleware that bounds how long and how much of a request body the server reads.

    * The body must arrive within ``body_timeout`` seconds after the headers; otherwise the app raises a
      408 :class:`RequestError` (a client sending a byte a second cannot hold a connection).
    * A response sent before the body has fully arrived (413 on ``Content-Length``, 413 mid-stream, 408,
      503) carries ``Connection: close``, and before the connection closes the rest of the body is read and
      discarded, at most ``max_drain_bytes`` and ``drain_seconds``. Closing a socket with unread data makes
      the kernel reset the connection, and a client that sends its whole body before reading (Python's
      urllib and requests) then sees ``Broken pipe`` or ``Connection reset`` instead of the answer. A body
      declared larger than the bound, a client waiting for ``100 Continue``, or a body that timed out is not
      read: the connection is closed at once.
    * A client that disconnects mid-body is logged in one line (Starlette's ``ClientDisconnect`` would
      otherwise end in a traceback).
    """

    def __init__(self, app: Any, *, body_timeout: float, max_drain_bytes: int, drain_seconds: float) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.max_drain_bytes = max_drain_bytes
        self.drain_seconds = drain_seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        declared = int(length) if length.isdigit() else None
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        loop = asyncio.get_running_loop()
        body = _Body(pending=chunked or bool(declared), declared=declared,
                     continue_expected=headers.get(b"expect", b"").lower() == b"100-continue",
                     deadline=loop.time() + self.body_timeout)

        async def guarded_receive() -> dict[str, Any]:
            if not body.pending:
                return await receive()
            body.asked = True
            if body.timer is None:  # one timer per request, not one per read: this is the hot path
                body.timer = loop.call_at(body.deadline, body.expire)
            task = asyncio.current_task()
            try:
                if body.timed_out:
                    raise asyncio.CancelledError
                body.waiting = task
                message = await receive()
            except asyncio.CancelledError:
                if not body.timed_out:
                    raise
                if task is not None and task.cancelling():
                    task.uncancel()
                raise RequestError(408, f"the request body did not arrive within {self.body_timeout:g} s "
                                        f"({body.received} bytes received)") from None
            finally:
                body.waiting = None
            body.take(message)
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and body.pending:
                body.answered_early = True
                message = {**message, "headers": [*[(k, v) for k, v in message.get("headers", [])
                                                    if k.lower() != b"connection"], (b"connection", b"close")]}
            elif (message["type"] == "http.response.body" and body.answered_early
                  and not message.get("more_body", False)):
                await send({**message, "more_body": True})
                await self._drain(body, receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except ClientDisconnect:
            logger.info("client %s disconnected after %d of %s body bytes; request dropped",
                        _client(scope), body.received, "?" if declared is None else declared)
        finally:
            if body.timer is not None:
                body.timer.cancel()

    async def _drain(self, body: _Body, receive: Any) -> None:
        """Reads and discards the rest of the body, within the bounds (see the class)."""
        if body.timed_out or (body.continue_expected and not body.asked) or (
                body.declared is not None and body.declared - body.received > self.max_drain_bytes):
            return
        limit = body.received + self.max_drain_bytes
        try:
            async with asyncio.timeout(self.drain_seconds):
                while body.pending and body.received <= limit:
                    body.take(await receive())
        except TimeoutError:
            pass


def _client(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


def render_predictions(version: str, ids: list[str | None], proba: np.ndarray, threshold: float) -> bytes:
    """The JSON response body (:class:`PredictResponse`; this is the hot path).

    Byte for byte what ``orjson.dumps`` writes for the response dict. For many predictions it is assembled
    from whole columns (a third faster at 1000): orjson writes all ids and all probabilities (the numpy
    array, as it writes a Python float) in one call each, and each prediction is joined from those pieces
    and constant text.
    """
    proba = np.asarray(proba, dtype=np.float64).reshape(-1)
    n = len(ids)
    id_text = orjson.dumps(ids) if n >= 16 else b""
    if n < 16 or id_text.count(b",") != n - 1:  # few, or an id holds a comma: the dict
        return orjson.dumps({"predictions": [
            {"customer_id": cid, "churn_probability": p, "churned": p >= threshold, "threshold": threshold,
             "model_version": version} for cid, p in zip(ids, proba.tolist(), strict=True)]})
    rest = b',"threshold":' + orjson.dumps(threshold) + b',"model_version":' + orjson.dumps(version) + b"}"
    decided = (b',"churned":false' + rest, b',"churned":true' + rest)
    predictions = map(b"".join, zip(repeat(b'{"customer_id":', n), id_text[1:-1].split(b","),
                                    repeat(b',"churn_probability":', n),
                                    orjson.dumps(proba, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].split(b","),
                                    map(decided.__getitem__, (proba >= threshold).tolist()), strict=True))
    return b'{"predictions":[' + b",".join(predictions) + b"]}"


# ----------------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------------

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed JSON or headers"},
    413: {"model": ErrorResponse, "description": "Body over the size limit or too many instances"},
    422: {"model": ErrorResponse, "description": "Invalid instances: errors per instance and field"},
    503: {"model": ErrorResponse, "description": "No verified model loaded yet"},
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the app for ``settings`` (default: from the environment).

    Args:
        settings: Routes, model source, limits and prediction log.

    Returns:
        The FastAPI app; the model loads when it starts (``lifespan``).
    """
    settings = settings or get_settings()
    app = FastAPI(title="Churn prediction", version=API_VERSION, lifespan=lifespan,
                  description="Customer-churn probability and decision, on Vertex AI's custom-container contract.")
    app.state.settings = settings
    app.state.serving = ServingState()
    app.state.cache_dir = Path(tempfile.gettempdir())
    app.add_middleware(BodyGuard, body_timeout=settings.body_timeout_seconds,
                       max_drain_bytes=settings.max_drain_bytes, drain_seconds=settings.drain_seconds)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.detail}
        if isinstance(exc.detail, list):
            body["error_count"] = len(exc.detail)
        return JSONResponse(body, status_code=exc.status)

    @app.post(settings.predict_route, response_model=PredictResponse, responses=ERROR_RESPONSES,
              summary="Churn probability and decision per customer", operation_id="predict")
    async def predict(request: Request) -> Response:
        """Scores ``{"instances": [customer, ...], "parameters": {"threshold": 0.4}}`` or one customer
        object. Each customer is a feature record of the served model (see ``GET /schema``)."""
        state: ServingState = request.app.state.serving
        model = serving_model(state)  # the whole request uses this model, even if a new one is swapped in
        body = await read_body(request, settings.max_body_bytes)
        parsed = model.parse(body)
        columns = parsed.columns
        proba = model.score(columns)
        threshold = model.threshold if parsed.threshold is None else parsed.threshold
        if state.log is not None:
            state.log.record_columns(model.version, model.log_layout, columns, proba, threshold)
        return Response(render_predictions(model.version, columns.ids, proba, threshold),
                        media_type="application/json")

    @app.get(settings.health_route, response_model=HealthResponse, responses={503: {"model": HealthResponse}},
             summary="200 when a verified model is loaded", operation_id="health")
    async def health(state: StateDep) -> JSONResponse:
        """Readiness: 200 with the model's name and version once loaded and verified; 503 before, or when
        loading failed (``error`` says why). ``prediction_log`` counts this worker's rows written and lost;
        while it is failing (or lost rows in the last minutes) the status is ``degraded``, still 200: the
        model answers correctly, and taking the server out of service would not log more."""
        model = state.model
        log = state.log.status() if state.log is not None else None
        if model is None:
            return JSONResponse({"status": "unavailable" if state.error else "loading", "error": state.error or None,
                                 "prediction_log": log}, status_code=503)
        status = "degraded" if log is not None and log["status"] != "ok" else "ok"
        return JSONResponse({"status": status, "model_name": model.name, "model_version": model.version,
                             "model_type": model.model_type, "source": model.source, "error": state.error or None,
                             "prediction_log": log})

    @app.get(SCHEMA_ROUTE, responses={503: {"model": ErrorResponse}}, summary="The served model's inputs",
             operation_id="schema")
    async def schema(model: ModelDep) -> dict[str, Any]:
        """The feature schema the served model was trained on, its threshold and the JSON schemas of one
        instance as an object and as an array (the feature values in ``feature_schema.features`` order)."""
        return {"model_name": model.name, "model_version": model.version, "threshold": model.threshold,
                "feature_schema": model.schema.to_dict(),
                "instance": model.requests.single.json_schema(),
                "instance_array": model.requests.array.json_schema()}

    def openapi() -> dict[str, Any]:
        model = app.state.serving.model
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        if model is not None:
            body, defs = model.requests.openapi_components()
            doc.setdefault("components", {}).setdefault("schemas", {}).update(defs)
        else:
            body = {"type": "object", "description": "loaded with the model: reload this document once healthy"}
        doc["paths"][settings.predict_route]["post"]["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": body}}}
        if model is not None:  # cache only the complete document (reset when the model changes)
            app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    return app


@lru_cache(maxsize=1)
def _default_app() -> FastAPI:
    return create_app(get_settings())


def __getattr__(name: str) -> FastAPI:
    """``serving.app.app``: the app for the environment's settings, built on first access."""
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
