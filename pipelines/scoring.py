"""The batch scoring pipeline: score every kept customer with a registered model.

One component (``components/score.py``) reads the raw folder (a local path or ``gs://``), fetches the
model from the registry (alias or version), computes its features with the model's own schema and scores
them with the model's ONNX graph. Its typed outputs: a Dataset of predictions (the serving log's columns
plus ``rank`` and ``decile``), a Dataset of the riskiest customers and Metrics (rows scored, score
quantiles); the Datasets carry ``rows``, ``model_version``, ``as_of`` and the file name as metadata.

    python pipeline.py compile --pipeline scoring --image IMAGE --output churn_scoring.yaml
"""

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from kfp.dsl import Pipeline

PIPELINE_NAME = "churn-scoring"


def build_scoring_pipeline(image: str) -> "Pipeline":
    """Builds the scoring pipeline with its component on ``image`` (the project's image).

    Args:
        image: The project's component image (``images/pipeline/Dockerfile``).

    Returns:
        The KFP pipeline (callable locally with kfp.local, compilable).
    """
    from typing import NamedTuple

    from kfp import dsl
    from kfp.dsl import Dataset, Metrics

    from components import score

    score_op = score.component(image)
    class Outputs(NamedTuple):
        predictions: Dataset
        top_risk: Dataset
        summary: Metrics

    @dsl.pipeline(name=PIPELINE_NAME, description="Customer churn: score every kept customer with a registered model")
    def churn_scoring(raw_dir: str, registry_uri: str, model_name: str = "churn-model", model: str = "champion",
                      as_of: str = "", top: int = 1000) -> Outputs:
        scored = score_op(raw_dir=raw_dir, registry_uri=registry_uri, model_name=model_name, model=model,
                          as_of=as_of, top=top).set_display_name("score")
        scored.set_caching_options(False)  # new raw files or a moved alias under the same names: always rescore
        return Outputs(predictions=scored.outputs["predictions"], top_risk=scored.outputs["top_risk"],
                       summary=scored.outputs["summary"])

    return churn_scoring


def compile_scoring_pipeline(output: Path, image: str) -> Path:
    """Compiles the scoring pipeline to KFP IR YAML (Vertex AI Pipelines / Kubeflow)."""
    from kfp import compiler

    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_scoring_pipeline(image), package_path=str(output))
    return output
