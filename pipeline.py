"""The project's entry point: ``python pipeline.py COMMAND`` (also the ``churn-pipeline`` console script).

    python pipeline.py run --raw-dir data/raw --summary-json data/run_summary.json
    python pipeline.py compile --image REGION-docker.pkg.dev/PROJECT/churn/pipeline:TAG --output churn_pipeline.yaml

It parses the command line (``pipelines/cli.py``) and hands each command to the module that does it:
``compile`` builds the training pipeline (``pipelines/training.py``) or the batch scoring pipeline
(``pipelines/scoring.py``); ``run`` runs the training pipeline locally with kfp.local and publishes it
(``pipelines/local.py``); ``score`` is batch scoring here (``components/score.py``); ``submit``,
``schedule`` (the nightly drift pipeline, ``pipelines/drift.py``), ``deploy``, ``rollback`` and
``batch-predict`` work on Vertex AI (``pipelines/cloud.py``; see docs/vertex.md).
"""

import argparse
from pathlib import Path

from pipelines import cloud, local, scoring, training
from pipelines.cli import build_parser


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python pipeline.py --help``. Returns the exit code."""
    from churn.layout import setup_cli_logging

    args = build_parser().parse_args(argv)
    setup_cli_logging()
    if args.command in cloud.COMMANDS:
        return cloud.run_cloud_command(args)
    if args.command == "compile":
        return _compile(args)
    if args.command == "score":
        from components.score import run_cli

        return run_cli(args)
    return local.run_command(args)


def _compile(args: argparse.Namespace) -> int:
    """``compile``: the training or the batch scoring pipeline, for ``--image``."""
    if args.pipeline == "scoring":
        name = scoring.PIPELINE_NAME
        path = scoring.compile_scoring_pipeline(args.output or Path("churn_scoring.yaml"), args.image)
    else:
        name = training.PIPELINE_NAME
        path = training.compile_pipeline(args.output or Path("churn_pipeline.yaml"), args.image)
    print(f"compiled {name} for image {args.image} → {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
