"""The churn training pipeline: the five stage components wired by typed artifacts.

    data_prep → feature_engineering → train → evaluate → register_model

The same definition runs locally (kfp.local, ``pipelines/local.py``) and compiles to the KFP YAML that
Vertex AI Pipelines and Kubeflow accept. The component image is a compile-time setting.
"""

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import Pipeline

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

    class Outputs(NamedTuple):
        interim: Dataset
        features: Dataset
        train_data: Dataset
        validation_data: Dataset
        model: Model
        metrics: Metrics
        classification: ClassificationMetrics
        report: HTML
        evaluation: Artifact
        registration: Artifact

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Customer churn: clean → features → train → evaluate → gate + register")
    def churn_pipeline(raw_dir: str, churn_window_days: int = 90, seed: int = 42, validation_fraction: float = 0.2,
                       gate_metric: str = "roc_auc", gate_margin: float = 0.0, model_name: str = "churn-model",
                       tracking_uri: str = "", registry_uri: str = "", raw_digest: str = "",
                       defer_promotion: bool = False, cutoff: str = "") -> Outputs:
        prep = prep_op(raw_dir=raw_dir, churn_window_days=churn_window_days, validation_fraction=validation_fraction,
                       seed=seed, raw_digest=raw_digest, cutoff=cutoff).set_display_name("data_prep")
        prep.set_caching_options(False)  # new files under the same raw_dir: never reuse the old outputs
        feats = features_op(interim=prep.outputs["interim"]).set_display_name("feature_engineering")
        trained = train_op(train_data=feats.outputs["train_data"], validation_data=feats.outputs["validation_data"],
                           seed=seed, tracking_uri=tracking_uri).set_display_name("train")
        evaluated = evaluate_op(model=trained.outputs["model"], validation_data=feats.outputs["validation_data"],
                                tracking_uri=tracking_uri).set_display_name("evaluate")
        registered = register_op(model=trained.outputs["model"], validation_data=feats.outputs["validation_data"],
                                 interim=prep.outputs["interim"], train_data=feats.outputs["train_data"],
                                 evaluation=evaluated.outputs["evaluation"], registry_uri=registry_uri,
                                 model_name=model_name, gate_metric=gate_metric, gate_margin=gate_margin,
                                 pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, defer_promotion=defer_promotion
                                 ).set_display_name("register_model")
        return Outputs(interim=prep.outputs["interim"], features=feats.outputs["features"],
                       train_data=feats.outputs["train_data"], validation_data=feats.outputs["validation_data"],
                       model=trained.outputs["model"], metrics=evaluated.outputs["metrics"],
                       classification=evaluated.outputs["classification"], report=evaluated.outputs["report"],
                       evaluation=evaluated.outputs["evaluation"], registration=registered.outputs["registration"])

    return churn_pipeline


def compile_pipeline(output: Path, image: str = DEFAULT_IMAGE) -> Path:
    """Compiles the pipeline to a KFP YAML file for Vertex AI Pipelines / Kubeflow."""
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image), package_path=str(output))
    return output
