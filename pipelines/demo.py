"""``make demo``: the closed loop, offline, on one machine, with the real pieces.

1. generate a first batch of raw data (``data/raw/<end date>``);
2. train and promote v1 (``pipeline.py run``: kfp.local, MLflow tracking and registry);
3. start the prediction server (``python -m serving``), which serves the registry's champion and polls it;
4. a second batch arrives from a changed world (``churn.sample_data.DRIFTED``: prices +30%, more basic
   plans, a competitor in the south, churners who leave abruptly); its customers' features, built by
   ``components.feature_engineering`` with the served model's feature schema, are sent to the server as
   production traffic, which the server logs to ``data/predictions/v1_outputs.csv``;
5. the nightly drift check (``monitoring/drift_check.py`` in ``.venv-monitoring``) compares that log with
   v1's training data and the prediction with v1's validation scores, decides to retrain, and its local
   trigger runs ``pipeline.py run`` on the newest raw folder;
6. the promotion gate compares the retrained model with the champion on the new validation data;
7. the running server notices the champion alias moved and answers with the new version; requests keep
   flowing during the switch and none may fail.

Every step prints what happened; logs and outputs stay in the work folder (``demo/`` by default, wiped and
re-created on each run: only a folder this command made is ever wiped).

Run: ``python -m pipelines.demo --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # the checkout: pipeline.py, monitoring/, .venv-monitoring
MARKER = ".churn-demo"
FIRST_END = dt.date(2026, 6, 30)
SECOND_END = dt.date(2026, 9, 30)
MODEL_NAME = "churn-model"
BATCH = 500  # instances per request


class DemoError(RuntimeError):
    """A step failed; the message says which, why and where its log is."""


@dataclass
class Clock:
    """Elapsed time for the step lines."""

    started: float = field(default_factory=time.monotonic)

    def __str__(self) -> str:
        return self.at(time.monotonic())

    def at(self, moment: float) -> str:
        """``mm:ss`` of a ``time.monotonic()`` moment since the start."""
        seconds = int(moment - self.started)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"


def say(clock: Clock, message: str) -> None:
    print(f"[{clock}] {message}", flush=True)


def detail(message: str) -> None:
    print(f"        {message}", flush=True)


# --------------------------------------------------------------------------- work folder


def prepare_workdir(workdir: Path) -> Path:
    """Creates (or re-creates) the demo's work folder; refuses to wipe a folder it did not make."""
    if workdir.exists():
        if any(workdir.iterdir()) and not (workdir / MARKER).is_file():
            raise DemoError(f"{workdir} exists and was not made by the demo (no {MARKER} file): pass another "
                            f"--workdir or empty it")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("made by python -m pipelines.demo; wiped on the next run\n")
    (workdir / "logs").mkdir()
    return workdir.resolve()


def run_logged(command: Sequence[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None,
               timeout: float = 900, echo: bool = False) -> int:
    """Runs a command with its output in ``log`` (and on screen, indented, with ``echo``); returns the status."""
    with log.open("w") as out:
        proc = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        watchdog = threading.Timer(timeout, proc.kill)  # also when the command hangs without printing
        watchdog.start()
        try:
            for line in proc.stdout:
                out.write(line)
                if echo:
                    detail(line.rstrip())
            status = proc.wait()
        finally:
            watchdog.cancel()
        if status == -signal.SIGKILL:
            raise DemoError(f"{' '.join(command)} took over {timeout:.0f}s and was stopped; see {log}")
        return status


# --------------------------------------------------------------------------- steps


def generate(raw_dir: Path, *, customers: int, seed: int, end: dt.date, shift: str) -> dict[str, Any]:
    """Writes one batch of raw data; returns its size and churn rate."""
    from churn.sample_data import SHIFTS, write_raw
    from churn.sample_data import generate as draw

    data = draw(customers, seed, end_date=end, shift=SHIFTS[shift])
    write_raw(data, raw_dir)
    return {"customers": len(data.customers), "transactions": len(data.transactions),
            "churn_rate": float(data.labels.mean())}


def train(workdir: Path, raw_dir: Path, label: str) -> dict[str, Any]:
    """``pipeline.py run`` on ``raw_dir`` in the work folder; returns its summary."""
    summary_path = workdir / "data" / "run_summary.json"
    summary_path.unlink(missing_ok=True)
    log = workdir / "logs" / f"train_{label}.log"
    status = run_logged([sys.executable, str(ROOT / "pipeline.py"), "run", "--raw-dir", str(raw_dir),
                         "--summary-json", str(summary_path)], cwd=workdir, log=log)
    if status != 0 or not summary_path.is_file():
        raise DemoError(f"the training pipeline failed (exit {status}); see {log}")
    return json.loads(summary_path.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """The prediction server as a child process (``python -m serving``) in the work folder."""

    workdir: Path
    port: int
    poll_seconds: float
    proc: subprocess.Popen | None = None
    # loopback only: never through a proxy the environment may name; built once, reused by every request
    _opener: urllib.request.OpenerDirector = field(
        default_factory=lambda: urllib.request.build_opener(urllib.request.ProxyHandler({})))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> dict:
        env = {**os.environ, "AIP_HTTP_PORT": str(self.port), "SERVING_HOST": "127.0.0.1", "SERVING_WORKERS": "1",
               "SERVING_POLL_SECONDS": str(self.poll_seconds), "SERVING_LOG_FLUSH_SECONDS": "0.5",
               "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        log = (self.workdir / "logs" / "server.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "serving"], cwd=self.workdir, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DemoError(f"the server exited with {self.proc.returncode}; see {log.name}")
            try:
                status, body = self.get("/health")
                if status == 200:
                    return body
            except OSError:
                pass
            time.sleep(0.3)
        raise DemoError(f"the server did not report healthy within {timeout:.0f}s; see {log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # graceful: the prediction log is flushed on shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def _open(self, request: urllib.request.Request) -> tuple[int, dict]:
        try:
            with self._opener.open(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def get(self, route: str) -> tuple[int, dict]:
        return self._open(urllib.request.Request(self.url + route))

    def predict(self, instances: list[dict]) -> tuple[int, dict]:
        body = json.dumps({"instances": instances}).encode()
        return self._open(urllib.request.Request(self.url + "/predict", data=body,
                                                 headers={"Content-Type": "application/json"}))


def production_instances(raw_dir: Path, schema_path: Path) -> tuple[list[dict], Any]:
    """The new batch's customers as the served model's input records, built by feature_engineering.

    Returns:
        The records (``customer_id`` and the features; missing values as null) and the cutoff.
    """
    import pandas as pd

    from churn.features import features_for
    from churn.schema import ID_COLUMN, FeatureSchema
    from components.data_prep import prepare

    schema = FeatureSchema.load(schema_path)
    prepared = prepare(raw_dir)
    cutoff = prepared.labels.cutoff
    customers = prepared.customers.kept
    eligible = customers[customers["signup_date"] <= cutoff].reset_index(drop=True)
    features = features_for(schema, eligible, prepared.transactions.kept, cutoff)
    frame = features[[ID_COLUMN, *schema.names]].astype(object)
    frame = frame.where(pd.notna(frame), None)
    return frame.to_dict("records"), cutoff


def send_traffic(server: Server, instances: list[dict]) -> dict[str, Any]:
    """Posts the instances in batches; returns counts, versions seen and the mean churn probability."""
    versions: dict[str, int] = {}
    total, failed, probability = 0, 0, 0.0
    for start in range(0, len(instances), BATCH):
        status, body = server.predict(instances[start:start + BATCH])
        if status != 200:
            failed += 1
            continue
        for p in body["predictions"]:
            versions[p["model_version"]] = versions.get(p["model_version"], 0) + 1
            probability += p["churn_probability"]
            total += 1
    return {"predictions": total, "failed_requests": failed, "versions": versions,
            "mean_churn_probability": probability / total if total else float("nan")}


def wait_for_log(path: Path, rows: int, timeout: float = 30) -> int:
    """Waits until the prediction log holds ``rows`` data rows (it is written off the request path)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        if path.is_file():
            with path.open("rb") as fh:
                seen = sum(1 for _ in fh) - 1
            if seen >= rows:
                return seen
        time.sleep(0.25)
    raise DemoError(f"{path} holds {seen} of the {rows} predictions sent after {timeout:.0f}s")


def drift_check(workdir: Path, current: Path, raw_dir: Path, python_monitoring: Path) -> tuple[int, dict]:
    """The nightly drift check with the local retraining trigger; returns its exit status and decision."""
    if not python_monitoring.is_file():
        raise DemoError(f"{python_monitoring} not found: the drift check runs in its own environment; create it "
                        f"with `make setup-monitoring`")
    # No --baseline: the log's model_version picks that model's own published training split (models/).
    command = [str(python_monitoring), str(ROOT / "monitoring" / "drift_check.py"),
               "--current", str(current.relative_to(workdir)),
               "--output-dir", "data/monitoring", "--trigger", "local", "--raw-dir", str(raw_dir),
               "--pipeline-python", sys.executable]
    status = run_logged(command, cwd=workdir, log=workdir / "logs" / "drift_check.log", echo=True, timeout=1200)
    decision_path = workdir / "data" / "monitoring" / "drift_decision.json"
    if not decision_path.is_file():
        raise DemoError(f"the drift check wrote no decision (exit {status}); see logs/drift_check.log")
    return status, json.loads(decision_path.read_text())


class Traffic:
    """Steady production traffic in the background (two clients, one customer a request), counting which
    version answered each request and how many failed, until stopped."""

    def __init__(self, server: Server, probe: list[dict], clients: int = 2, pause: float = 0.1) -> None:
        self.server, self.probe, self.pause = server, probe, pause
        self.counts: dict[str, int] = {"requests": 0, "failed": 0}
        self.first_seen: dict[str, float] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = self.server.predict(self.probe)
                version = body["predictions"][0]["model_version"] if status == 200 else None
                error = "" if status == 200 else f"HTTP {status}: {body}"
            except (OSError, KeyError, IndexError, ValueError) as err:
                version, error = None, repr(err)
            with self._lock:
                self.counts["requests"] += 1
                if version is None:
                    self.counts["failed"] += 1
                    self.errors.append(error)
                else:
                    self.counts[version] = self.counts.get(version, 0) + 1
                    self.first_seen.setdefault(version, time.monotonic())
            self._stop.wait(self.pause)

    def start(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def wait_for(self, version: str, timeout: float) -> float | None:
        """Waits until ``version`` answered a request; returns when it first did (monotonic), or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if version in self.first_seen:
                    return self.first_seen[version]
            time.sleep(0.1)
        return None

    def stop(self) -> dict[str, int]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=35)
        with self._lock:
            return dict(self.counts)


# --------------------------------------------------------------------------- the loop


def run_demo(workdir: Path, *, customers: int, seed: int, poll_seconds: float,
             python_monitoring: Path) -> dict[str, Any]:
    """Runs the closed loop (see the module docstring) and returns what happened at each step."""
    clock = Clock()
    workdir = prepare_workdir(workdir)
    say(clock, f"work folder {workdir} (logs in logs/)")
    result: dict[str, Any] = {"workdir": str(workdir)}

    raw1 = workdir / "data" / "raw" / FIRST_END.isoformat()
    say(clock, f"1/7 generate the first batch: {customers} customers, history up to {FIRST_END}")
    batch = generate(raw1, customers=customers, seed=seed, end=FIRST_END, shift="none")
    detail(f"{batch['transactions']:,} transactions, churn rate {batch['churn_rate']:.1%} "
           f"→ {raw1.relative_to(workdir)}")

    say(clock, "2/7 train v1: pipeline.py run (data_prep → feature_engineering → train → evaluate → register_model)")
    first = train(workdir, raw1, "v1")
    model = first["model"]
    detail(f"{model['name']} v{model['version']} ({model['type']}), validation ROC AUC "
           f"{first['metrics']['roc_auc']:.4f} → alias '{model['alias']}': {model['reason']}")
    if model["alias"] != "champion":
        raise DemoError(f"v{model['version']} was not promoted ({model['reason']}); see logs/train_v1.log")
    v1 = f"v{model['version']}"
    result["v1"] = {"version": v1, "roc_auc": first["metrics"]["roc_auc"], "alias": model["alias"]}

    server = Server(workdir, free_port(), poll_seconds)
    traffic_during: Traffic | None = None
    say(clock, f"3/7 start the prediction server on {server.url} (registry champion, polled every {poll_seconds:g}s)")
    try:
        health = server.start()
        detail(f"healthy: {health['model_name']} {health['model_version']} from {health['source']}")
        if health["model_version"] != v1:
            raise DemoError(f"the server loaded {health['model_version']}, expected {v1}")

        raw2 = workdir / "data" / "raw" / SECOND_END.isoformat()
        say(clock, f"4/7 production traffic from a changed world (history up to {SECOND_END}): prices +30%, "
                   "more basic plans, a competitor in the south, abrupt churn")
        batch = generate(raw2, customers=customers, seed=seed + 1, end=SECOND_END, shift="drifted")
        detail(f"{batch['transactions']:,} transactions, churn rate {batch['churn_rate']:.1%} → "
               f"{raw2.relative_to(workdir)}")
        instances, cutoff = production_instances(raw2, workdir / "data" / "features" / "feature_schema.json")
        traffic = send_traffic(server, instances)
        log = workdir / "data" / "predictions" / f"{v1}_outputs.csv"
        logged = wait_for_log(log, traffic["predictions"])
        detail(f"sent {len(instances):,} customers' features at cutoff {cutoff.date()} in "
               f"{-(-len(instances) // BATCH)} requests: {traffic['predictions']:,} predictions by "
               f"{traffic['versions']}, {traffic['failed_requests']} failed, mean churn probability "
               f"{traffic['mean_churn_probability']:.3f}")
        detail(f"prediction log: {log.relative_to(workdir)} ({logged:,} rows)")
        if traffic["failed_requests"] or set(traffic["versions"]) != {v1}:
            raise DemoError(f"traffic to {v1} went wrong: {traffic}; see logs/server.log")
        result["traffic"] = traffic

        # The nightly job checks the log as it was at midnight: a copy, so that the traffic below can go on
        # being logged meanwhile.
        nightly = workdir / "data" / "predictions" / "nightly" / log.name
        nightly.parent.mkdir(parents=True)
        shutil.copy(log, nightly)
        traffic_during = Traffic(server, instances[:1]).start()
        say(clock, "5/7 nightly drift check (.venv-monitoring) of the log against v1's training data, while "
                   "production traffic goes on; it retrains on drift")
        status, decision = drift_check(workdir, nightly, raw2, python_monitoring)
        drifted = decision.get("drifted_features", [])
        detail(f"exit {status}; decision: {'RETRAIN' if decision.get('retrain') else decision.get('status')} — "
               f"{len(drifted)} drifted: {', '.join(drifted)}")
        result["drift"] = {"exit_status": status, "retrain": decision.get("retrain"), "drifted_features": drifted}
        if not decision.get("retrain"):
            raise DemoError(f"the drift check did not ask for retraining: {decision.get('reason')}")
        if status != 0:
            raise DemoError(f"the retraining trigger failed (exit {status}); see data/monitoring/retrain_*.log")

        say(clock, "6/7 promotion gate: the retrained model against the champion, on the new validation data")
        second = json.loads((workdir / "data" / "run_summary.json").read_text())
        model = second["model"]
        v2 = f"v{model['version']}"
        detail(f"{model['name']} {v2} ({model['type']}), validation ROC AUC {second['metrics']['roc_auc']:.4f} "
               f"→ alias '{model['alias']}': {model['reason']}")
        result["v2"] = {"version": v2, "roc_auc": second["metrics"]["roc_auc"], "alias": model["alias"],
                        "reason": model["reason"]}
        if model["alias"] != "champion":
            raise DemoError(f"{v2} was not promoted: {model['reason']}")

        say(clock, f"7/7 the running server moves to {v2} without failing a request")
        wait = max(30.0, 10 * poll_seconds)
        seen = traffic_during.wait_for(v2, wait)
        time.sleep(1.0)  # a few more requests after the switch
        counts = traffic_during.stop()
        result["switch"] = {**counts, "v2_first_answered_at": None if seen is None else clock.at(seen)}
        if seen is None:
            raise DemoError(f"the server still answers with {v1} {wait:.0f}s after {v2} was promoted; see "
                            f"logs/server.log")
        detail(f"first answer by {v2} at [{clock.at(seen)}]; since the drift "
               f"check started: {counts['requests']} requests, {counts.get(v1, 0)} answered by {v1}, "
               f"{counts.get(v2, 0)} by {v2}, {counts['failed']} failed")
        if counts["failed"]:
            raise DemoError(f"{counts['failed']} requests failed during retraining and the switch (first: "
                            f"{traffic_during.errors[0]}); see logs/server.log")
        _, health = server.get("/health")
        detail(f"health: {health['model_name']} {health['model_version']} from {health['source']}")
    finally:
        if traffic_during is not None:
            traffic_during.stop()
        server.stop()

    result["seconds"] = round(time.monotonic() - clock.started, 1)
    say(clock, f"closed loop done in {result['seconds']:.0f}s: {v1} served → drift flagged → retrained → "
               f"{v2} promoted and served")
    detail(f"drift report: data/monitoring/drift_report_*.html; runs and models: "
           f"mlflow ui --backend-store-uri sqlite:///{workdir}/mlruns/mlflow.db")
    (workdir / "demo_result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1].split("Every step")[0].strip(),
        epilog="Example: python -m pipelines.demo --customers 5000   (make demo)\n"
               "Needs both environments (make setup setup-monitoring); no network, no GCP, no Docker.")
    parser.add_argument("--workdir", type=Path, default=Path("demo"),
                        help="work folder, wiped and re-created (only if the demo made it) (default: %(default)s)")
    parser.add_argument("--customers", type=int, default=5000, help="customers per batch (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the first batch; the second uses seed + 1 "
                                                             "(default: %(default)s)")
    parser.add_argument("--poll-seconds", type=float, default=2.0,
                        help="how often the server checks the registry's champion (default: %(default)s)")
    parser.add_argument("--monitoring-python", type=Path, default=ROOT / ".venv-monitoring" / "bin" / "python",
                        help="the drift check's interpreter (default: .venv-monitoring/bin/python)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.customers < 2000:
        build_parser().error("--customers must be at least 2000 (the drift check judges from 1000 logged rows)")
    try:
        run_demo(args.workdir, customers=args.customers, seed=args.seed, poll_seconds=args.poll_seconds,
                 python_monitoring=args.monitoring_python)
    except DemoError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
