"""Starting a retraining run when the drift check says so, and recording that it did.

A :class:`Trigger` turns a :class:`RetrainRequest` (why, which features) into a :class:`TriggerRecord`
(what was started, when, how it ended), which :func:`write_record` keeps as JSON beside the drift reports.

* :class:`LocalPipelineTrigger` runs the training pipeline on this machine:
  ``.venv/bin/python <checkout>/pipeline.py run --raw-dir <newest raw folder>`` in the project folder, waits for it
  and keeps its output in a log file. The main environment runs it (kfp cannot live in the monitoring
  environment), so this is a subprocess, never an import.
* :class:`DryRunTrigger` records what would have started (``--trigger none``).
* :class:`VertexPipelineTrigger` submits the training pipeline as a Vertex AI PipelineJob, as the nightly
  drift pipeline's ``retrain_on_drift`` step does, for a drift check run outside Vertex.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

RAW_FILES = ("customers.csv", "transactions.json")
PIPELINE_SCRIPT = Path(__file__).resolve().parents[1] / "pipeline.py"  # this checkout's training pipeline
RECORD_PREFIX = "retrain_trigger_"


@dataclass(frozen=True)
class RetrainRequest:
    """Why a retraining run is wanted.

    Attributes:
        reason: The drift check's one-sentence reason.
        features: Drifted features (and ``churn_probability`` when the prediction drifted).
        date: The drift check's date (``YYYY-MM-DD``).
        decision_file: Where the full decision is.
    """

    reason: str
    features: list[str]
    date: str
    decision_file: str = ""


@dataclass(frozen=True)
class TriggerRecord:
    """What a trigger did; written as JSON by :func:`write_record`.

    Attributes:
        trigger: ``local``, ``vertex`` or ``none``.
        reason: The request's reason.
        features: The request's features.
        date: The drift check's date.
        requested_at: When the trigger was asked to start (UTC, ISO).
        finished_at: When it returned (UTC, ISO).
        started: Whether a training run was started.
        succeeded: Whether it ended well (for a local run: exit status 0).
        command: The command run, if any.
        exit_status: The command's exit status, if it ran.
        seconds: Time taken.
        log: File holding the run's output, if any.
        detail: Anything else (the raw folder used, the Vertex job name, the error).
    """

    trigger: str
    reason: str
    features: list[str]
    date: str
    requested_at: str
    finished_at: str
    started: bool
    succeeded: bool
    command: list[str] = field(default_factory=list)
    exit_status: int | None = None
    seconds: float = 0.0
    log: str = ""
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


class Trigger(Protocol):
    """Starts retraining. Implementations never raise for a failed start: they return a record saying so."""

    @property
    def name(self) -> str:
        """``local``, ``vertex`` or ``none`` (read-only, so frozen dataclasses implement it)."""
        ...

    def fire(self, request: RetrainRequest, log_dir: Path) -> TriggerRecord:
        """Starts a training run for ``request``; ``log_dir`` receives any log file."""
        ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def newest_raw_dir(raw_root: Path) -> Path:
    """The most recently written raw folder under ``raw_root`` (``raw_root`` itself or a sub-folder).

    A raw folder holds ``customers.csv`` and ``transactions.json``; the newest is the one whose newer file
    was modified last, so dropping ``data/raw/2026-07-01/`` next to older folders picks it.

    Args:
        raw_root: ``data/raw`` or any folder of raw folders.

    Returns:
        The folder.

    Raises:
        FileNotFoundError: No folder under ``raw_root`` holds both files.
    """
    candidates = [raw_root, *(p for p in sorted(raw_root.rglob("*")) if p.is_dir())] if raw_root.is_dir() else []
    found = [(max((d / f).stat().st_mtime for f in RAW_FILES), d) for d in candidates
             if all((d / f).is_file() for f in RAW_FILES)]
    if not found:
        raise FileNotFoundError(
            f"{raw_root}: no raw folder with {' and '.join(RAW_FILES)} found here or below; put the new "
            f"data there (see README, 'Raw data contract') or pass --raw-dir")
    return max(found, key=lambda item: (item[0], str(item[1])))[1]


@dataclass(frozen=True)
class LocalPipelineTrigger:
    """Runs the training pipeline locally, in the main environment, and waits for it.

    Attributes:
        project_root: The data folder of the project (``data/``, ``models/``, ``mlruns/``): the run's working
            folder, where ``pipeline.py run`` publishes.
        python: The main environment's interpreter (kfp, scikit-learn), relative to ``project_root`` or absolute.
        script: The training pipeline's ``pipeline.py`` (default: this checkout's, so a project folder other
            than the checkout works too, as ``make demo``'s does).
        raw_dir: The raw folder to train on; ``None`` picks :func:`newest_raw_dir` of ``raw_root``.
        raw_root: Where to look for the newest raw folder.
        extra_args: More ``pipeline.py run`` arguments (``--summary-json`` …).
        timeout_s: Give up after this many seconds.
    """

    project_root: Path = Path(".")
    python: str = ".venv/bin/python"
    script: str = str(PIPELINE_SCRIPT)
    raw_dir: Path | None = None
    raw_root: Path = Path("data/raw")
    extra_args: tuple[str, ...] = ()
    timeout_s: float = 6 * 3600
    name: str = "local"

    def command(self, raw_dir: Path) -> list[str]:
        """The command line that starts the run."""
        return [self.python, self.script, "run", "--raw-dir", str(raw_dir), *self.extra_args]

    def fire(self, request: RetrainRequest, log_dir: Path) -> TriggerRecord:
        """Runs ``pipeline.py run`` on the newest raw data; its output goes to ``retrain_<date>.log``."""
        requested = _now()
        started = time.monotonic()
        root = self.project_root.resolve()
        common: dict[str, Any] = {"trigger": self.name, "reason": request.reason, "features": list(request.features),
                                  "date": request.date, "requested_at": requested}
        try:
            raw = self.raw_dir or newest_raw_dir(self.raw_root if self.raw_root.is_absolute() else root / self.raw_root)
        except FileNotFoundError as err:
            return TriggerRecord(**common, finished_at=_now(), started=False, succeeded=False,
                                 detail={"error": str(err)})
        python = self.python if Path(self.python).is_absolute() else str(root / self.python)
        command = self.command(raw)
        if not Path(python).is_file():
            return TriggerRecord(**common, finished_at=_now(), started=False, succeeded=False, command=command,
                                 detail={"error": f"{python} not found: the training pipeline runs in the main "
                                                  f"environment; create it with `make setup`"})
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"retrain_{request.date}.log"
        detail: dict = {"raw_dir": str(raw), "cwd": str(root)}
        with log.open("w") as out:
            try:
                proc = subprocess.run([python, *command[1:]], cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=self.timeout_s, check=False)
                status: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                status = None
                detail["error"] = f"timed out after {self.timeout_s:.0f}s"
            except OSError as err:
                status = None
                detail["error"] = f"could not start {python}: {err}"
        return TriggerRecord(**common, finished_at=_now(), started=status is not None, succeeded=status == 0,
                             command=command, exit_status=status, seconds=round(time.monotonic() - started, 1),
                             log=str(log), detail=detail)


@dataclass(frozen=True)
class DryRunTrigger:
    """Records that retraining was wanted without starting anything (``--trigger none``)."""

    name: str = "none"

    def fire(self, request: RetrainRequest, log_dir: Path) -> TriggerRecord:
        """Returns a record with ``started=False``."""
        now = _now()
        return TriggerRecord(trigger=self.name, reason=request.reason, features=list(request.features),
                             date=request.date, requested_at=now, finished_at=now, started=False, succeeded=True,
                             detail={"note": "dry run: no training run started (--trigger none)"})


@dataclass(frozen=True)
class VertexPipelineTrigger:
    """Submits the training pipeline as a Vertex AI PipelineJob (``churn.vertex_jobs.submit_retraining``).

    The same submission as the nightly drift pipeline's ``retrain_on_drift`` step, for a drift check run
    outside Vertex (a VM, a cron job). It returns once Vertex accepted the job: the record says which job and
    where to follow it; the run itself goes on in Vertex AI Pipelines.

    Attributes:
        spec: The training run: ``template`` (compiled pipeline YAML, local, ``gs://`` or Artifact Registry),
            ``project``, ``region``, ``pipeline_root`` (``gs://``) and optionally ``parameter_values`` (at least
            ``raw_dir``; registry and tracking URIs as ``pipeline.py submit`` builds them), ``service_account``,
            ``experiment``, ``api_endpoint`` -- the JSON of the drift pipeline's ``retrain`` parameter.
    """

    spec: dict = field(default_factory=dict)
    name: str = "vertex"

    def fire(self, request: RetrainRequest, log_dir: Path) -> TriggerRecord:
        """Submits the job; a spec that lacks keys or a refused submission is a failed record, never a raise."""
        requested = _now()
        started = time.monotonic()
        common: dict[str, Any] = {"trigger": self.name, "reason": request.reason, "features": list(request.features),
                                  "date": request.date, "requested_at": requested}
        where = {k: self.spec.get(k) for k in ("project", "region", "template", "pipeline_root")}
        try:
            from churn.vertex_jobs import submit_retraining
            from churn.vertexai import console_url

            job = submit_retraining(self.spec, date=request.date)
        except Exception as err:  # noqa: BLE001 - any refusal (spec, credentials, API) is recorded, not raised
            return TriggerRecord(**common, finished_at=_now(), started=False, succeeded=False,
                                 seconds=round(time.monotonic() - started, 1),
                                 detail={**where, "error": f"{type(err).__name__}: {err}"})
        return TriggerRecord(**common, finished_at=_now(), started=True, succeeded=True,
                             seconds=round(time.monotonic() - started, 1),
                             detail={**where, "pipeline_job": job, "console": console_url(job),
                                     "note": "submitted; the run continues in Vertex AI Pipelines"})


def write_record(record: TriggerRecord, out_dir: Path) -> Path:
    """Writes ``retrain_trigger_<date>.json`` in ``out_dir`` and returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{RECORD_PREFIX}{record.date}.json"
    path.write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    return path
