"""The churn training pipeline: wiring and command line.

    data_prep → feature_engineering → train → evaluate → register_model

One ``@dsl.pipeline`` wires the five stage components by typed artifacts. The same definition runs
locally (kfp.local, no Docker, no cloud) and compiles to the KFP YAML that Vertex AI Pipelines and
Kubeflow accept. The component image is a compile-time setting.

    python pipeline.py run --raw-dir data/raw --summary-json data/run_summary.json
    python pipeline.py compile --image REGION-docker.pkg.dev/PROJECT/churn/pipeline:TAG --output churn_pipeline.yaml
"""


import argparse
import json
import logging
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import Pipeline

logger = logging.getLogger("pipeline")

PIPELINE_NAME = "churn-training"
DEFAULT_IMAGE = "churn-pipeline:local"
STAGES = ("data-prep", "feature-engineering", "train", "evaluate", "register-model")


def build_pipeline(image: str = DEFAULT_IMAGE) -> "Pipeline":
    """Builds the pipeline with every component on ``image``.

    Args:
        image: The project's component image (``images/pipeline/Dockerfile``), e.g.
            ``europe-west4-docker.pkg.dev/my-project/churn/pipeline:<commit>``.

    Returns:
        The KFP pipeline (callable locally, compilable).
    """
    from typing import NamedTuple

    from kfp import dsl
    from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Metrics, Model

    from components import data_prep, evaluate, feature_engineering, register_model, train

    prep_op = data_prep.component(image)
    features_op = feature_engineering.component(image)
    train_op = train.component(image)
    evaluate_op = evaluate.component(image)
    register_op = register_model.component(image)

    outputs = NamedTuple("Outputs", interim=Dataset, features=Dataset, train_data=Dataset, validation_data=Dataset,
                         model=Model, metrics=Metrics, classification=ClassificationMetrics, report=HTML,
                         registration=Artifact)

    @dsl.pipeline(name=PIPELINE_NAME, description="Customer churn: clean → features → train → evaluate → gate + register")
    def churn_pipeline(raw_dir: str, churn_window_days: int = 90, seed: int = 42, validation_fraction: float = 0.2,
                       gate_metric: str = "roc_auc", gate_margin: float = 0.0, model_name: str = "churn-model",
                       tracking_uri: str = "", registry_uri: str = "") -> outputs:
        prep = prep_op(raw_dir=raw_dir, churn_window_days=churn_window_days, validation_fraction=validation_fraction,
                       seed=seed).set_display_name("data_prep")
        feats = features_op(interim=prep.outputs["interim"]).set_display_name("feature_engineering")
        trained = train_op(train_data=feats.outputs["train_data"], validation_data=feats.outputs["validation_data"],
                           seed=seed, tracking_uri=tracking_uri).set_display_name("train")
        evaluated = evaluate_op(model=trained.outputs["model"], validation_data=feats.outputs["validation_data"],
                                tracking_uri=tracking_uri).set_display_name("evaluate")
        registered = register_op(model=trained.outputs["model"], validation_data=feats.outputs["validation_data"],
                                 registry_uri=registry_uri, model_name=model_name, gate_metric=gate_metric,
                                 gate_margin=gate_margin).set_display_name("register_model")
        registered.after(evaluated)
        return outputs(interim=prep.outputs["interim"], features=feats.outputs["features"],
                       train_data=feats.outputs["train_data"], validation_data=feats.outputs["validation_data"],
                       model=trained.outputs["model"], metrics=evaluated.outputs["metrics"],
                       classification=evaluated.outputs["classification"], report=evaluated.outputs["report"],
                       registration=registered.outputs["registration"])

    return churn_pipeline


def compile_pipeline(output: Path, image: str = DEFAULT_IMAGE) -> Path:
    """Compiles the pipeline to a KFP YAML file for Vertex AI Pipelines / Kubeflow."""
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image), package_path=str(output))
    return output


def _artifact_path(artifact: Any) -> Path:
    return Path(artifact.path)


def publish(outputs: dict[str, Any], root: Path) -> dict[str, str]:
    """Copies the run's artifacts into the project layout (data/interim, data/processed, data/features, models/).

    Args:
        outputs: Pipeline outputs from a local run.
        root: Project folder.

    Returns:
        Published paths by name.
    """
    from churn.layout import DataLayout

    layout = DataLayout(root)
    reg = outputs["registration"].metadata
    model_home = layout.models / reg["model_name"] / f"v{reg['version']}"
    copies = {
        "interim": (_artifact_path(outputs["interim"]), layout.interim),
        "features": (_artifact_path(outputs["features"]), layout.features),
        "train": (_artifact_path(outputs["train_data"]), layout.processed),
        "validation": (_artifact_path(outputs["validation_data"]), layout.processed),
        "model": (_artifact_path(outputs["model"]), model_home),
    }
    for src, dest in copies.values():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, dirs_exist_ok=True)
    (model_home / "evaluation").mkdir(exist_ok=True)
    shutil.copy(_artifact_path(outputs["report"]), model_home / "evaluation" / "report.html")
    shutil.copy(_artifact_path(outputs["registration"]) / "registration.json", model_home / "registration.json")
    latest = layout.models / "latest"
    shutil.rmtree(latest, ignore_errors=True)
    shutil.copytree(model_home, latest)
    return {
        "interim": str(layout.interim),
        "rejected": str(layout.interim / "rejected_*.csv"),
        "processed_train": str(layout.processed / "train.csv"),
        "processed_validation": str(layout.processed / "validation.csv"),
        "features": str(next(layout.features.glob("customer_features_v*.csv"))),
        "feature_schema": str(layout.features / "feature_schema.json"),
        "model": str(model_home),
        "report": str(model_home / "evaluation" / "report.html"),
    }


def summarize(outputs: dict[str, Any], published: dict[str, str], tracking_uri: str, seconds: float) -> dict:
    """The run summary: rows per input, validation metrics, registered model, artifact paths."""
    interim_meta = json.loads((_artifact_path(outputs["interim"]) / "prep_metadata.json").read_text())
    metrics = {k: v for k, v in outputs["metrics"].metadata.items() if isinstance(v, (int, float))}
    reg = json.loads((_artifact_path(outputs["registration"]) / "registration.json").read_text())
    return {
        "rows": interim_meta["rows"],
        "excluded_from_training": interim_meta["excluded_from_training"],
        "labels": {"cutoff": interim_meta["cutoff"], "source": interim_meta["label_source"],
                   "churn_rate": interim_meta["churn_rate"], **interim_meta["labelled"]},
        "metrics": metrics,
        "model": {"name": reg["model_name"], "version": reg["version"], "alias": reg["alias"],
                  "promoted": reg["promoted"], "reason": reg["decision"]["reason"],
                  "type": outputs["model"].metadata.get("model_type"), "source": reg["source"]},
        "artifacts": {**published, "pipeline_outputs": {k: str(_artifact_path(v)) for k, v in outputs.items()}},
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
    m = summary["metrics"]
    print("validation: " + ", ".join(f"{k} {m[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier", "f1",
                                                              "lift_top_decile") if k in m), file=out)
    mod = summary["model"]
    print(f"model: {mod['name']} v{mod['version']} ({mod['type']}) → alias '{mod['alias']}': {mod['reason']}", file=out)
    print("artifacts:", file=out)
    for key, value in summary["artifacts"].items():
        if key != "pipeline_outputs":
            print(f"  {key:<21} {value}", file=out)
    print(f"tracking: {summary['tracking_uri'] or 'off'}  (browse with `make mlflow-ui`)", file=out)
    print(f"finished in {summary['seconds']:.0f}s", file=out)


def run_local(raw_dir: Path, *, root: Path = Path("."), pipeline_root: Path | None = None,
              image: str = DEFAULT_IMAGE, tracking_uri: str | None = None, registry_uri: str | None = None,
              **params: Any) -> dict:
    """Runs the whole pipeline with kfp.local's SubprocessRunner and publishes to the project layout.

    Args:
        raw_dir: Folder following the raw data contract (customers.csv + transactions.json).
        root: Project folder receiving data/, models/ and mlruns/.
        pipeline_root: Where kfp.local keeps task outputs (default ``<root>/local_outputs``).
        image: Component image recorded in the spec (not used to run locally).
        tracking_uri: MLflow URI (default: ``<root>/mlruns/mlflow.db``); ``""`` disables tracking.
        registry_uri: Registry URI (default: the tracking store).
        **params: Pipeline parameters (churn_window_days, seed, validation_fraction, gate_metric, gate_margin,
            model_name).

    Returns:
        The run summary.

    Raises:
        FileNotFoundError: ``raw_dir`` is missing or lacks an input file.
        RuntimeError: A task failed (its log is printed above).
    """
    from kfp import local

    from churn.layout import DataLayout
    from components.data_prep import CUSTOMERS_FILE, TRANSACTIONS_FILE

    layout = DataLayout(root.resolve())
    missing = [f for f in (CUSTOMERS_FILE, TRANSACTIONS_FILE) if not (raw_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{raw_dir}: missing {missing}. The raw folder needs {CUSTOMERS_FILE} and "
                                f"{TRANSACTIONS_FILE} (see README, 'Raw data contract'); `make data` generates a sample.")
    tracking_uri = layout.tracking_uri() if tracking_uri is None else tracking_uri
    registry_uri = registry_uri or tracking_uri or layout.tracking_uri()
    pipeline_root = (pipeline_root or layout.root / "local_outputs").resolve()
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")  # the image is only recorded locally
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    started = time.monotonic()
    task = build_pipeline(image)(raw_dir=str(raw_dir.resolve()), tracking_uri=tracking_uri,
                                 registry_uri=registry_uri, **params)
    outputs = dict(task.outputs)
    published = publish(outputs, layout.root)
    return summarize(outputs, published, tracking_uri, time.monotonic() - started)


def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run the whole pipeline locally (kfp.local, no Docker, no cloud)",
        description="Run data_prep → feature_engineering → train → evaluate → register_model locally with kfp.local's "
                    "SubprocessRunner in this Python environment. Task outputs go to --pipeline-root; the results are "
                    "then published to data/interim, data/processed, data/features and models/<name>/v<N>, and a "
                    "summary (rows kept/rejected per input, metrics, model version and alias, paths) is printed.",
        epilog="Example: python pipeline.py run --raw-dir data/raw --summary-json data/run_summary.json",
    )
    p.add_argument("--raw-dir", type=Path, required=True, help="folder with customers.csv and transactions.json")
    p.add_argument("--summary-json", type=Path, help="also write the summary as JSON here")
    p.add_argument("--churn-window-days", type=int, default=90, help="label window in days (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42, help="split and model seed (default: %(default)s)")
    p.add_argument("--validation-fraction", type=float, default=0.2, help="default: %(default)s")
    p.add_argument("--gate-metric", default="roc_auc", help="promotion gate metric (default: %(default)s)")
    p.add_argument("--gate-margin", type=float, default=0.0,
                   help="improvement over the champion needed to promote (default: %(default)s)")
    p.add_argument("--model-name", default="churn-model", help="registered model name (default: %(default)s)")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: mlruns/mlflow.db); '' disables")
    p.add_argument("--registry-uri", default=None, help="registry URI (default: the tracking store)")
    p.add_argument("--pipeline-root", type=Path, default=None, help="kfp.local outputs (default: local_outputs/)")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python pipeline.py --help``."""
    from churn.layout import setup_cli_logging

    parser = argparse.ArgumentParser(
        prog="pipeline.py",
        description="Customer-churn training pipeline on Kubeflow Pipelines v2: run it locally or compile it for "
                    "Vertex AI Pipelines / Kubeflow.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    c = sub.add_parser("compile", help="compile the pipeline to a KFP YAML file",
                       description="Compile the pipeline to KFP IR YAML. Every component runs on --image, the "
                                   "project's own image built from images/pipeline/Dockerfile.")
    c.add_argument("--output", type=Path, default=Path("churn_pipeline.yaml"), help="default: %(default)s")
    c.add_argument("--image", default=DEFAULT_IMAGE, help="component image URI (default: %(default)s)")
    _add_run_parser(sub)
    args = parser.parse_args(argv)
    setup_cli_logging()
    if args.command == "compile":
        path = compile_pipeline(args.output, args.image)
        print(f"compiled {PIPELINE_NAME} for image {args.image} → {path}")
        return 0
    params = {"churn_window_days": args.churn_window_days, "seed": args.seed,
              "validation_fraction": args.validation_fraction, "gate_metric": args.gate_metric,
              "gate_margin": args.gate_margin, "model_name": args.model_name}
    try:
        summary = run_local(args.raw_dir, pipeline_root=args.pipeline_root, tracking_uri=args.tracking_uri,
                            registry_uri=args.registry_uri, **params)
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return 2
    except RuntimeError as exc:
        logger.error("pipeline failed: %s (the failing task's log is above)", exc)
        return 1
    print_summary(summary)
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"summary JSON: {args.summary_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
