"""The nightly drift pipeline's two component shells (``pipelines/drift.py`` wires them).

``drift_check`` is a container component: the check runs in the monitoring image (TFDV needs
protobuf < 6, so no kfp there). ``retrain_on_drift`` is a lightweight component on the project's image
that submits the training pipeline when the check's decision says retrain.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import ContainerComponent, PythonComponent

# The drift check's command line in the monitoring image (images/monitoring/Dockerfile).
DRIFT_COMMAND = ("python", "-m", "monitoring.drift_check")


def drift_check_component(monitoring_image: str) -> "ContainerComponent":
    """The drift check (``monitoring/drift_check.py``) as a container component on ``monitoring_image``.

    It writes ``drift_decision.json`` to ``output_dir`` and never triggers retraining itself
    (``--trigger none``): the next step reads the decision.
    """
    from kfp import dsl

    @dsl.container_component
    def drift_check(baseline: str, current: str, output_dir: str, window_days: int):
        return dsl.ContainerSpec(image=monitoring_image, command=list(DRIFT_COMMAND),
                                 args=["--baseline", baseline, "--current", current, "--window-days", window_days,
                                       "--output-dir", output_dir, "--trigger", "none"])

    return drift_check


def retrain_on_drift_component(image: str) -> "PythonComponent":
    """The drift pipeline's retraining step (``churn.vertex_jobs.retrain_on_drift``), built for ``image``."""
    from kfp import dsl

    @dsl.component(base_image=image, install_kfp_package=False)
    def retrain_on_drift(output_dir: str, retrain: dict) -> str:
        """Submits the training pipeline when drift_decision.json says retrain; returns the job or ''."""
        from churn.layout import setup_cli_logging
        from churn.vertex_jobs import retrain_on_drift

        setup_cli_logging()
        return retrain_on_drift(output_dir.rstrip("/") + "/drift_decision.json", retrain) or ""

    return retrain_on_drift
