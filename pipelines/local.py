"""``pipeline.py run``: the training pipeline run locally with kfp.local, then published and summarized.

The tasks run in this Python environment (kfp.local's SubprocessRunner: no Docker, no cloud) under
the project's run lock; what they print goes to a task log, the console shows their progress.
"""

import argparse
import contextlib
import io
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from pipelines.publish import PublishError, artifact_path, promote_published, publish
from pipelines.training import DEFAULT_IMAGE, build_pipeline

logger = logging.getLogger("pipeline")  # the CLI's logger: its name prefixes the messages users see


def run_command(args: argparse.Namespace) -> int:
    """``pipeline.py run``: runs, publishes and prints the summary; returns the exit code.

    Exit codes: 0 done, 1 a task or the publishing failed, 2 no raw data, 3 another run holds the lock.
    """
    from churn.runguard import RunLockedError

    params = {"churn_window_days": args.churn_window_days, "seed": args.seed,
              "validation_fraction": args.validation_fraction, "gate_metric": args.gate_metric,
              "gate_margin": args.gate_margin, "model_name": args.model_name, "cutoff": args.cutoff}
    try:
        summary = run_local(args.raw_dir, pipeline_root=args.pipeline_root, tracking_uri=args.tracking_uri,
                            registry_uri=args.registry_uri, verbose=args.verbose, **params)
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return 2
    except RunLockedError as exc:
        logger.error("not started: %s", exc)
        return 3
    except PublishError as exc:
        logger.error("%s", exc)
        return 1
    except RuntimeError as exc:
        logger.error("pipeline failed: %s (the failing task's log is above)", exc)
        return 1
    print_summary(summary)
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"summary JSON: {args.summary_json}")
    return 0


def summarize(outputs: dict[str, Any], published: dict[str, str], tracking_uri: str, seconds: float) -> dict:
    """The run summary: rows per input, validation metrics, registered model, artifact paths."""
    interim_meta = json.loads((artifact_path(outputs["interim"]) / "prep_metadata.json").read_text())
    metrics = {k: v for k, v in outputs["metrics"].metadata.items() if isinstance(v, (int, float))}
    reg = json.loads((Path(published["model"]) / "registration.json").read_text())  # as applied after publishing
    from churn.features import describe_features
    from churn.schema import FeatureSchema

    features = describe_features(FeatureSchema.load(artifact_path(outputs["features"])))
    trained_on = {k: int(outputs[f"{k}_data"].metadata.get("rows", -1)) for k in ("train", "validation")}  # KFP: floats
    return {
        "rows": interim_meta["rows"],
        "excluded_from_training": interim_meta["excluded_from_training"],
        "features": {**features, "trained_on": trained_on},
        "labels": {"cutoff": interim_meta["cutoff"], "source": interim_meta["label_source"],
                   "churn_rate": interim_meta["churn_rate"], **interim_meta["labelled"]},
        "metrics": metrics,
        "model": {"name": reg["model_name"], "version": reg["version"], "alias": reg["alias"],
                  "promoted": reg["promoted"], "reason": reg["decision"]["reason"],
                  "type": outputs["model"].metadata.get("model_type"), "source": reg["source"]},
        "artifacts": {**published, "pipeline_outputs": {k: str(artifact_path(v)) for k, v in outputs.items()}},
        "tracking_uri": tracking_uri,
        "seconds": round(seconds, 1),
    }


def print_summary(summary: dict) -> None:
    """Prints the run summary for people."""
    out = sys.stdout
    print("\n=== churn pipeline: run summary ===", file=out)
    print("rows (raw = kept + rejected):", file=out)
    for name, acc in summary["rows"].items():
        reasons = "; ".join(f"{k}: {v}" for k, v in acc["reasons"].items()) or "none"
        print(f"  {name:<18} {acc['raw']:>9} = {acc['kept']:>9} + {acc['rejected']:>7}   rejected: {reasons}", file=out)
    excl = ", ".join(f"{k}: {v}" for k, v in summary["excluded_from_training"].items() if v) or "none"
    lab = summary["labels"]
    print(f"labels: {lab['source']}, cutoff {lab['cutoff']}, churn rate {lab['churn_rate']:.1%}; "
          f"kept but not trained on: {excl}", file=out)
    feats = summary["features"]
    origin = (f"transaction features: {feats['transaction_note']}" if feats["transaction_note"]
              else f"{feats['transaction']} from transactions")
    print(f"features: {feats['total']} ({feats['customer']} from customers.csv; {origin}); trained on "
          f"{feats['trained_on']['train']} train + {feats['trained_on']['validation']} validation customers", file=out)
    for column, why in feats["left_out"].items():
        print(f"  left out of the features: {column} ({why})", file=out)
    m = summary["metrics"]
    print("validation: " + ", ".join(f"{k} {m[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier", "f1",
                                                              "lift_top_decile") if k in m), file=out)
    mod = summary["model"]
    print(f"model: {mod['name']} v{mod['version']} ({mod['type']}) → alias '{mod['alias']}': {mod['reason']}", file=out)
    print("artifacts:", file=out)
    for key, value in summary["artifacts"].items():
        if key != "pipeline_outputs":
            print(f"  {key:<23} {value}", file=out)
    tracking = summary["tracking_uri"]
    print(f"tracking: {tracking}  (browse with `make mlflow-ui`)" if tracking else "tracking: off", file=out)
    print(f"finished in {summary['seconds']:.0f}s", file=out)


def run_local(raw_dir: Path, *, root: Path = Path("."), pipeline_root: Path | None = None,
              image: str = DEFAULT_IMAGE, tracking_uri: str | None = None, registry_uri: str | None = None,
              verbose: bool = False, **params: Any) -> dict:
    """Runs the whole pipeline with kfp.local's SubprocessRunner and publishes to the project layout.

    Args:
        raw_dir: Folder following the raw data contract (customers.csv + transactions.json).
        root: Project folder receiving data/, models/ and mlruns/.
        pipeline_root: Where kfp.local keeps task outputs (default ``<root>/local_outputs``).
        image: Component image recorded in the spec (not used to run locally).
        tracking_uri: MLflow URI (default: ``<root>/mlruns/mlflow.db``); ``""`` disables tracking.
        registry_uri: Registry URI (default: the tracking store).
        verbose: Print every line the tasks write (executor JSON included), not only their progress; either
            way all of it goes to ``<pipeline_root>/logs/run-<time>.log``.
        **params: Pipeline parameters (churn_window_days, seed, validation_fraction, gate_metric, gate_margin,
            model_name).

    Returns:
        The run summary.

    Raises:
        FileNotFoundError: ``raw_dir`` is missing or lacks an input file.
        churn.runguard.RunLockedError: Another run holds the project's lock (``<root>/.pipeline.lock``).
        PublishError: The outputs could not be published (nothing was; the champion did not move).
        RuntimeError: A task failed (its log is printed above).
    """
    from kfp import local

    from churn.cleaning import CUSTOMERS_FILE, TRANSACTIONS_FILE
    from churn.layout import DataLayout

    layout = DataLayout(root.resolve())
    # transactions.json is optional with a churned column (data_prep checks)
    if not (raw_dir / CUSTOMERS_FILE).is_file():
        raise FileNotFoundError(f"{raw_dir}: missing {[CUSTOMERS_FILE]}. The raw folder needs {CUSTOMERS_FILE} and "
                                f"{TRANSACTIONS_FILE} (see README, 'Raw data contract'); `make data` generates a "
                                f"sample.")
    tracking_uri = layout.tracking_uri() if tracking_uri is None else tracking_uri
    registry_uri = registry_uri or tracking_uri or layout.tracking_uri()
    pipeline_root = (pipeline_root or layout.root / "local_outputs").resolve()
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")  # the image is only recorded locally
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    with _guarded_run(layout.root, tracking_uri):
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
                   raise_on_error=True)
        started = time.monotonic()
        # the component registers with promotion deferred: the alias moves only once the model is published
        with _task_output(pipeline_root / "logs", verbose=verbose):
            task = build_pipeline(image)(raw_dir=str(raw_dir.resolve()), tracking_uri=tracking_uri,
                                         registry_uri=registry_uri, defer_promotion=True, **params)
        outputs = dict(task.outputs)
        published = publish(outputs, layout.root)
        promote_published(layout.root, registry_uri, Path(published["model"]))
        return summarize(outputs, published, tracking_uri, time.monotonic() - started)


_PROGRESS = re.compile(r"Running pipeline|Executing task|finished with status|"
                       r" (?:INFO|WARNING|ERROR) (?:components|churn)\.|Traceback|Error")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _ProgressFilter(io.TextIOBase):
    """A stdout stand-in: every line goes to the run log; the console gets task progress and the stages' own
    log lines (kfp.local prints each task's executor input and output JSON, hundreds of lines a run)."""

    def __init__(self, log: TextIO, console: TextIO, verbose: bool) -> None:
        self.log, self.console, self.verbose, self._line = log, console, verbose, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.verbose:
            return self.console.write(text)
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            plain = _ANSI.sub("", line).strip()
            if _PROGRESS.search(plain):
                self.console.write(plain + "\n")
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()


@contextlib.contextmanager
def _task_output(folder: Path, *, verbose: bool) -> Iterator[Path]:
    """Sends what kfp.local prints to ``folder/run-<time>.log``, showing progress; on a failure, the log's tail."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"run-{time.strftime('%Y%m%dT%H%M%S')}.log"
    console = sys.stdout
    print(f"task logs: {path}", file=console, flush=True)
    with open(path, "w", encoding="utf-8", errors="replace") as log:
        stream = _ProgressFilter(log, console, verbose)
        try:
            with contextlib.redirect_stdout(stream):
                yield path
        except BaseException:
            stream.flush()
            if not verbose:
                tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-60:]
                print("\n".join(["--- last lines of the task log " + "-" * 40, *tail, "-" * 71]), file=sys.stderr)
            raise
        finally:
            stream.flush()


@contextlib.contextmanager
def _guarded_run(root: Path, tracking_uri: str) -> Iterator[None]:
    """Holds the project's run lock, makes the components die with this process, and ends the MLflow runs
    an earlier run left RUNNING when it was killed."""
    from churn.runguard import OWNER_ENV, RunLock, this_process
    from churn.tracking.mlflow import end_abandoned_runs

    lock = RunLock(root).acquire()
    inherited = os.environ.get(OWNER_ENV)
    os.environ[OWNER_ENV] = this_process().env_value()  # read by every component (churn.runguard)
    try:
        if lock.previous:
            logger.warning("%s: the previous run (pid %s, started %s) ended without releasing it (killed?)",
                           lock.path, lock.previous.get("pid"), lock.previous.get("started"))
        try:
            end_abandoned_runs(tracking_uri)
        except Exception as exc:  # noqa: BLE001 - a cleanup of old runs never stops a new one
            logger.warning("could not check %s for runs left RUNNING: %s", tracking_uri, exc)
        yield
    finally:
        if inherited is None:
            os.environ.pop(OWNER_ENV, None)
        else:
            os.environ[OWNER_ENV] = inherited
        lock.release()
