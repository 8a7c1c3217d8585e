"""The nightly drift pipeline: the drift check, then retraining when it says so.

Its two steps are the component shells of ``components/drift.py``; ``python pipeline.py schedule``
compiles it and starts it on a cron (Cloud Scheduler or a Vertex AI Pipelines schedule).
"""

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.training import DEFAULT_IMAGE

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import Pipeline

DRIFT_PIPELINE_NAME = "churn-drift"
# Days of the serving log a nightly drift check reads (ending today, UTC): a run shortly after midnight
# sees all of yesterday, not just the hour since.
NIGHTLY_WINDOW_DAYS = 2


def build_drift_pipeline(monitoring_image: str, image: str = DEFAULT_IMAGE) -> "Pipeline":
    """Builds the nightly drift pipeline: the drift check, then retraining when it says so.

    1. ``drift_check`` runs ``DRIFT_COMMAND --baseline … --current … --output-dir … --trigger none`` on the
       monitoring image and writes ``drift_decision.json`` to ``output_dir``. An empty ``baseline`` (the
       default) means "find it": the drift check takes the baseline of the model that served the log from
       the log's ``model.json`` (see docs/drift.md, "Which baseline"). It reads the log's parts of the last
       ``window_days`` days (default :data:`NIGHTLY_WINDOW_DAYS`).
    2. ``retrain_on_drift`` runs on the project's image: when the decision says retrain, it submits the
       training pipeline described by ``retrain`` (template, project, region, pipeline root, parameters).
       An empty ``retrain`` never retrains.

    Args:
        monitoring_image: The monitoring image (``images/monitoring/Dockerfile``).
        image: The project's component image (``images/pipeline/Dockerfile``).

    Returns:
        The KFP pipeline (compilable).
    """
    from kfp import dsl

    from components.drift import drift_check_component, retrain_on_drift_component

    drift_check = drift_check_component(monitoring_image)
    retrain_on_drift = retrain_on_drift_component(image)

    @dsl.pipeline(name=DRIFT_PIPELINE_NAME,
                  description="Nightly drift check of logged predictions against training data; retrains on drift")
    def drift_pipeline(current: str, output_dir: str, baseline: str = "", window_days: int = NIGHTLY_WINDOW_DAYS,
                       retrain: dict = {}):  # noqa: B006 - KFP default
        # Never cached: every night has the same parameters but new data behind them.
        check = drift_check(baseline=baseline, current=current, output_dir=output_dir, window_days=window_days)
        check.set_display_name("drift_check").set_caching_options(False)
        retrain_task = retrain_on_drift(output_dir=output_dir, retrain=retrain)
        retrain_task.set_display_name("retrain_on_drift").set_caching_options(False).after(check)

    return drift_pipeline


def compile_drift_pipeline(output: Path, monitoring_image: str, image: str = DEFAULT_IMAGE) -> Path:
    """Compiles the drift pipeline (see :func:`build_drift_pipeline`) to a KFP YAML file."""
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_drift_pipeline(monitoring_image, image), package_path=str(output))
    return output
