"""Stage 5 — register_model: the promotion gate, then the registry.

The new model becomes the champion only if it beats the current champion, both scored on the *same*
validation data, by more than ``margin`` on the gate metric (ROC AUC by default). Otherwise it is
registered as the challenger. Aliases and the seed's ``--stage`` names:

=============  ===========  ==================================================================
``--stage``    alias        meaning
=============  ===========  ==================================================================
Production     champion     through the gate (``--force`` skips it); serves traffic
Staging        challenger   registered without the gate; the newest model that is not champion
Archived       archived     the champion most recently replaced (all former ones: tag stage=archived)
=============  ===========  ==================================================================

Run alone: ``python components/register_model.py --stage Production``.
"""


import argparse
import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from churn.onnx_model import REGISTRATION_FILE
from churn.registry import ARCHIVED, CHALLENGER, CHAMPION, STAGE_TO_ALIAS, ModelRegistry, download_to_temp
from churn.schema import LABEL_COLUMN, FeatureSchema

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from kfp.dsl import PythonComponent

    from churn.model_io import LoadedModel

logger = logging.getLogger(__name__)

BASELINE_DIR = "baseline"  # in a registered folder: the model's training split and schema (its drift baseline)
EVALUATION_DIR = "evaluation"  # in a registered folder: metrics.json, validation_predictions.csv (reference scores)
BASELINE_FILES = ("train.csv", "feature_schema.json")
EVALUATION_FILES = ("metrics.json", "validation_predictions.csv")
# The version's "stage" tag while its alias waits for its files to be published (register(defer_promotion=True)).
PENDING_STAGE = "pending"
_STAGE_TAG = {CHAMPION: "production", CHALLENGER: "staging", ARCHIVED: "archived"}
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "f1": True, "lift_top_decile": True,
                    "log_loss": False, "brier": False}


@dataclass(frozen=True)
class GateDecision:
    """Whether the new model is promoted, and why.

    Attributes:
        promote: True → champion, False → challenger.
        reason: Human-readable explanation.
        metric: Gate metric.
        new_score: New model's score on the validation data.
        champion_score: Current champion's score on the same data (None without a usable champion).
        champion_version: Current champion's version, if any.
        margin: Required improvement.
    """

    promote: bool
    reason: str
    metric: str
    new_score: float
    champion_score: float | None = None
    champion_version: str | None = None
    margin: float = 0.0


def gate(new_score: float, champion_score: float | None, *, metric: str = "roc_auc", margin: float = 0.0,
         champion_version: str | None = None) -> GateDecision:
    """Decides promotion: the new model must beat the champion by more than ``margin``.

    Args:
        new_score: New model's score.
        champion_score: Champion's score on the same data, or None when there is no champion.
        metric: Metric name (decides whether higher or lower is better).
        margin: Required improvement (≥ 0).
        champion_version: For the explanation.

    Returns:
        The decision. Ties never promote; a non-finite new score never promotes.
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown gate metric {metric!r}; choose from {sorted(HIGHER_IS_BETTER)}")
    if margin < 0:
        raise ValueError(f"gate margin must be >= 0, got {margin}")
    common: dict[str, Any] = {"metric": metric, "new_score": new_score, "champion_score": champion_score,
                              "champion_version": champion_version, "margin": margin}
    if not math.isfinite(new_score):
        return GateDecision(promote=False, reason=f"new {metric} is not finite ({new_score})", **common)
    if champion_score is None:
        return GateDecision(promote=True, reason="no champion yet", **common)
    higher = HIGHER_IS_BETTER[metric]
    gain = new_score - champion_score if higher else champion_score - new_score
    verdict = "beats" if gain > margin else "does not beat"
    reason = (f"new {metric} {new_score:.4f} {verdict} champion v{champion_version} {champion_score:.4f} "
              f"by more than {margin:g} (difference {gain:+.4f})")
    return GateDecision(promote=gain > margin, reason=reason, **common)


def score(model_dir: Path, validation_dir: Path, metric: str) -> float:
    """Scores a model folder on ``validation.csv`` with ``metric``.

    Raises:
        KeyError: The validation data lacks a feature the model needs.
    """
    from churn.features import read_split
    from churn.model_io import load_model

    model = load_model(model_dir)
    return _metric(model, read_split(validation_dir / "validation.csv", model.schema), metric)


def _metric(model: "LoadedModel", validation: "pd.DataFrame", metric: str) -> float:
    from churn.metrics import compute_metrics

    y_true = validation[LABEL_COLUMN].to_numpy().astype(int)
    return compute_metrics(y_true, model.predict_proba(validation), model.threshold)[metric]


def _computed_alike(a: "FeatureSchema", b: "FeatureSchema") -> bool:
    """Whether both schemas compute the same feature columns (then one's features serve the other)."""
    return ([(f.name, f.kind) for f in a.features] == [(f.name, f.kind) for f in b.features]
            and a.mix_columns == b.mix_columns)


def score_with_own_features(model_dir: Path, validation_dir: Path, interim_dir: Path | None, metric: str,
                            features_of: "FeatureSchema | None" = None) -> float:
    """Scores a model on the validation customers with features computed by ITS OWN schema.

    ``validation.csv`` holds the features of the schema ``features_of`` (the new model's). When the
    model's schema computes other columns (say, a retrain swapped one of the top-8 categories), its
    features are computed from the interim data (cleaned customers, filtered sales, labels) of the
    same validation customers with :func:`churn.features.split_features`.

    Args:
        model_dir: Model folder (its ``feature_schema.json`` is the model's frozen schema).
        validation_dir: Folder with ``validation.csv``.
        interim_dir: data_prep's output the validation split came from, or None (then only
            ``validation.csv`` is used, and a model needing other columns cannot be scored).
        metric: Metric name.
        features_of: Schema of the features in ``validation.csv``; None means the model's own.

    Raises:
        KeyError: Without interim data, ``validation.csv`` lacks a feature the model needs.
        churn.features.FeatureInputError: The interim data cannot give the model's
            features (a customer attribute it needs is gone; it needs transactions and there are none).
    """
    from churn.features import MIX_FIELDS, TRANSACTION_COLUMNS, split_features
    from churn.interim import read_interim
    from churn.model_io import load_model

    model = load_model(model_dir)
    if interim_dir is None or features_of is None or _computed_alike(model.schema, features_of):
        return score(model_dir, validation_dir, metric)
    interim = read_interim(interim_dir, TRANSACTION_COLUMNS, MIX_FIELDS)
    validation = split_features(model.schema, interim, "validation")
    logger.info("scored %s on %d validation customers with its own schema's features (mix: %s)", model_dir,
                len(validation), model.schema.mix_columns or "none")
    return _metric(model, validation, metric)


def champion_score(registry: ModelRegistry, model_name: str, validation_dir: Path, metric: str,
                   interim_dir: Path | None = None, features_of: "FeatureSchema | None" = None
                   ) -> tuple[float | None, str | None, str]:
    """Scores the current champion on this validation data, with features of the champion's own schema.

    Args:
        registry: Registry backend.
        model_name: Registered model name.
        validation_dir: Folder with ``validation.csv``.
        metric: Metric name.
        interim_dir: The interim data of the validation split (see :func:`score_with_own_features`).
        features_of: Schema of the features in ``validation.csv`` (the new model's).

    Returns:
        ``(score, version, note)``; score is None when there is no champion or it cannot score the
        data (then ``note`` says why).
    """
    champion = registry.get_by_alias(model_name, CHAMPION)
    if champion is None:
        return None, None, ""
    tmp, folder = download_to_temp(registry, champion)
    with tmp:
        try:
            return (score_with_own_features(folder, validation_dir, interim_dir, metric, features_of),
                    champion.version, "")
        except (KeyError, FileNotFoundError, ValueError) as exc:
            return None, champion.version, f"champion v{champion.version} cannot score this validation data ({exc})"


def assemble_registered_folder(model_dir: Path, dest: Path, *, train_dir: Path | None = None,
                               evaluation_dir: Path | None = None) -> Path:
    """Writes the folder a registry stores: the model files, plus its drift baseline and reference scores.

    ``dest`` gets the files of ``model_dir``, ``baseline/train.csv`` and ``baseline/feature_schema.json``
    (the model's training split and schema, from ``train_dir``) and the files of ``evaluation_dir`` under
    ``evaluation/`` (``metrics.json``, ``validation_predictions.csv``, the report). So the registered
    folder (on Vertex the model's gs:// artifact URI, where nothing is published locally) is all the
    nightly drift check needs. A folder left out is left out (the model files alone, as before).

    Args:
        model_dir: The trained model folder.
        dest: The folder to write (created; must not exist yet).
        train_dir: Folder with ``train.csv`` and ``feature_schema.json`` (feature_engineering's train split).
        evaluation_dir: evaluate's folder with ``metrics.json`` and ``validation_predictions.csv``.

    Returns:
        ``dest``.

    Raises:
        FileNotFoundError: ``train_dir`` or ``evaluation_dir`` lacks a file the contract needs.
    """
    import shutil

    for folder, names, made_by in ((train_dir, BASELINE_FILES, "feature_engineering's train split"),
                                   (evaluation_dir, EVALUATION_FILES, "evaluate")):
        missing = [n for n in names if folder is not None and not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder}: no {', '.join(missing)}; the registered model folder needs them "
                                    f"({made_by} writes them). Pass the folder {made_by} wrote.")
    shutil.copytree(model_dir, dest)
    if train_dir is not None:
        (dest / BASELINE_DIR).mkdir(exist_ok=True)
        for name in BASELINE_FILES:
            shutil.copy2(train_dir / name, dest / BASELINE_DIR / name)
    if evaluation_dir is not None:
        shutil.copytree(evaluation_dir, dest / EVALUATION_DIR, dirs_exist_ok=True)
    return dest


def _contents(source: str, folder: Path) -> dict[str, str]:
    """Where the registered folder's baseline and reference scores are (URIs under ``source``)."""
    root = str(source).rstrip("/")
    found = {"baseline": f"{BASELINE_DIR}/train.csv", "feature_schema": f"{BASELINE_DIR}/feature_schema.json",
             "reference_scores": f"{EVALUATION_DIR}/validation_predictions.csv",
             "metrics": f"{EVALUATION_DIR}/metrics.json"}
    return {key: f"{root}/{rel}" for key, rel in found.items() if (folder / rel).is_file()}


def _stamp_version(source: str, record: dict) -> None:
    """Adds ``registration.json`` (the version number) to a registered ``gs://`` folder once the registry has
    numbered it, so a server started from that folder (Vertex AI's ``AIP_STORAGE_URI``) reports and logs
    ``v<N>`` like every other consumer; other registries' folders are published with it locally."""
    from churn.storage import is_gcs, split_gcs

    if not is_gcs(source):
        return
    from google.cloud import storage

    bucket, prefix = split_gcs(str(source).rstrip("/"))
    storage.Client().bucket(bucket).blob(f"{prefix}/{REGISTRATION_FILE}").upload_from_string(
        json.dumps(record, indent=2, default=_json_default) + "\n", content_type="application/json")


def register(model_dir: Path, validation_dir: Path, *, registry: ModelRegistry, model_name: str = "churn-model",
             stage: str = "Production", metric: str = "roc_auc", margin: float = 0.0, force: bool = False,
             run_id: str | None = None, tags: dict[str, str] | None = None, interim_dir: Path | None = None,
             defer_promotion: bool = False, train_dir: Path | None = None,
             evaluation_dir: Path | None = None) -> dict:
    """Gates and registers a model folder.

    Args:
        model_dir: The new model folder.
        validation_dir: Folder with ``validation.csv`` (the data both models are scored on).
        registry: Registry backend.
        model_name: Registered model name.
        stage: Production (gate → champion or challenger), Staging (challenger), Archived.
        metric: Gate metric.
        margin: Required improvement over the champion.
        force: With Production, promote without the gate.
        run_id: Tracking run to attach the version to.
        tags: Extra version tags (e.g. pipeline run).
        interim_dir: data_prep's output the validation split came from: the champion is scored on
            features its own schema computes from it (so a changed schema does not stop the gate).
        defer_promotion: Register and record the decision, but move no alias: the caller publishes the
            model's files first, then calls :func:`apply_decision` (a local run; never a champion whose
            folder is not there yet).
        train_dir: The model's training split (``train.csv``, ``feature_schema.json``): registered with it
            under ``baseline/`` (see :func:`assemble_registered_folder`).
        evaluation_dir: evaluate's folder: registered with the model under ``evaluation/``.

    Returns:
        The registration record (also what the component writes as JSON); ``deferred`` says whether the
        aliases still have to be set; ``source`` is the registered folder and ``contents`` the URIs of its
        baseline and reference scores.
    """
    if stage not in STAGE_TO_ALIAS:
        raise ValueError(f"unknown stage {stage!r}; choose from {sorted(STAGE_TO_ALIAS)}")
    new_score = score(model_dir, validation_dir, metric)
    champ_score, champ_version, note = champion_score(registry, model_name, validation_dir, metric, interim_dir,
                                                      FeatureSchema.load(model_dir))
    if stage != "Production":
        decision = GateDecision(promote=False, reason=f"registered as {stage} without the gate", metric=metric,
                                new_score=new_score, champion_score=champ_score, champion_version=champ_version,
                                margin=margin)
    elif force:
        decision = GateDecision(promote=True, reason="promotion forced (--force): gate skipped", metric=metric,
                                new_score=new_score, champion_score=champ_score, champion_version=champ_version,
                                margin=margin)
    elif note:
        decision = GateDecision(promote=False, reason=f"{note}; registered as challenger, promote with --force",
                                metric=metric, new_score=new_score, champion_version=champ_version, margin=margin)
    else:
        decision = gate(new_score, champ_score, metric=metric, margin=margin, champion_version=champ_version)
    alias = CHAMPION if decision.promote else (ARCHIVED if stage == "Archived" else CHALLENGER)
    version_tags = {f"validation_{metric}": f"{new_score:.6f}", "gate_reason": decision.reason[:4000],
                    "stage": PENDING_STAGE if defer_promotion else _STAGE_TAG[alias], **(tags or {})}
    with tempfile.TemporaryDirectory(prefix="churn-register-") as tmp:
        folder = assemble_registered_folder(model_dir, Path(tmp) / "model", train_dir=train_dir,
                                            evaluation_dir=evaluation_dir)
        mv = registry.register(model_name, folder, run_id=run_id, tags=version_tags, description=decision.reason)
        contents = _contents(mv.source, folder)
    record = {"model_name": model_name, "version": mv.version, "alias": alias, "promoted": decision.promote,
              "previous_champion": champ_version, "source": mv.source, "contents": contents,
              "decision": asdict(decision), "deferred": defer_promotion}
    _stamp_version(mv.source, record)
    if defer_promotion:
        logger.info("%s v%s registered; alias '%s' deferred until its files are published: %s", model_name,
                    mv.version, alias, decision.reason)
        return record
    return apply_decision(registry, record)


def apply_decision(registry: ModelRegistry, record: dict) -> dict:
    """Sets the aliases a registration decided (at once, or after a deferred registration was published).

    A promotion happens only if the champion is still the one the gate compared against; when it moved
    in between, the version becomes challenger and the reason says so.

    Args:
        registry: Registry backend.
        record: A record from :func:`register`.

    Returns:
        The record as applied (``deferred`` False).
    """
    name, version, alias = record["model_name"], record["version"], record["alias"]
    was_deferred = record.get("deferred", False)
    record = {**record, "deferred": False}
    if alias == CHAMPION:
        current = registry.get_by_alias(name, CHAMPION)
        current_version = current.version if current is not None else None
        if current_version != record["previous_champion"]:
            alias = CHALLENGER
            reason = (f"not promoted: the champion moved from v{record['previous_champion']} to v{current_version} "
                      f"after the gate ran ({record['decision']['reason']})")
            record = {**record, "alias": alias, "promoted": False,
                      "decision": {**record["decision"], "promote": False, "reason": reason}}
        elif current_version is not None:
            registry.set_alias(name, ARCHIVED, current_version)
            registry.set_tag(name, current_version, "stage", "archived")
    registry.set_alias(name, alias, version)
    if was_deferred:  # registered with stage "pending"
        registry.set_tag(name, version, "stage", _STAGE_TAG[alias])
    logger.info("%s v%s → %s: %s", name, version, alias, record["decision"]["reason"])
    return record


def run(model_dir: Path, validation_dir: Path, out_dir: Path, *, registry_uri: str, model_name: str = "churn-model",
        stage: str = "Production", metric: str = "roc_auc", margin: float = 0.0, force: bool = False,
        tags: dict[str, str] | None = None, interim_dir: Path | None = None, defer_promotion: bool = False,
        train_dir: Path | None = None, evaluation_dir: Path | None = None) -> dict:
    """Runs the stage on folders; writes ``registration.json`` to ``out_dir``."""
    from churn.model_io import CARD_FILE
    from churn.registry import get_registry

    card = json.loads((model_dir / CARD_FILE).read_text()) if (model_dir / CARD_FILE).is_file() else {}
    record = register(model_dir, validation_dir, registry=get_registry(registry_uri), model_name=model_name,
                      stage=stage, metric=metric, margin=margin, force=force,
                      run_id=card.get("tracking_run_id") or None, tags=tags, interim_dir=interim_dir,
                      defer_promotion=defer_promotion, train_dir=train_dir, evaluation_dir=evaluation_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REGISTRATION_FILE).write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    return record


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python components/register_model.py --help``."""
    from churn.layout import DataLayout, setup_cli_logging

    layout = DataLayout()
    parser = argparse.ArgumentParser(
        prog="register_model",
        description="Register a model folder. With --stage Production (default) it must beat the current champion "
                    "on the same validation data by more than --margin to take the 'champion' alias; otherwise it "
                    "becomes 'challenger'. Staging registers as challenger, Archived as archived.",
        epilog="Stages map to aliases: Production→champion, Staging→challenger, Archived→archived.",
    )
    parser.add_argument("--model-dir", type=Path, default=layout.models / "latest", help="default: %(default)s")
    parser.add_argument("--processed-dir", type=Path, default=layout.processed,
                        help="folder with validation.csv (default: %(default)s)")
    parser.add_argument("--stage", choices=sorted(STAGE_TO_ALIAS), default="Production", help="default: %(default)s")
    parser.add_argument("--model-name", default="churn-model", help="registered model name (default: %(default)s)")
    parser.add_argument("--metric", choices=sorted(HIGHER_IS_BETTER), default="roc_auc", help="gate metric")
    parser.add_argument("--margin", type=float, default=0.0, help="required improvement (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="with Production: promote without the gate")
    parser.add_argument("--interim-dir", type=Path, default=layout.interim,
                        help="data_prep output of the validation split: the champion's features are computed from it "
                             "with the champion's own schema when that differs (default: %(default)s, used when it "
                             "holds prep_metadata.json)")
    parser.add_argument("--registry-uri", default=layout.tracking_uri(), help="default: the local MLflow store")
    args = parser.parse_args(argv)
    setup_cli_logging()
    from churn.interim import METADATA_FILE

    interim_dir = args.interim_dir if (args.interim_dir / METADATA_FILE).is_file() else None
    record = run(args.model_dir, args.processed_dir, args.model_dir, registry_uri=args.registry_uri,
                 model_name=args.model_name, stage=args.stage, metric=args.metric, margin=args.margin, force=args.force,
                 interim_dir=interim_dir)
    print(f"{record['model_name']} v{record['version']} → {record['alias']}: {record['decision']['reason']}")
    return 0


def component(base_image: str) -> "PythonComponent":
    """The KFP component, built for the project's image (a compile-time setting)."""
    from kfp import dsl
    from kfp.dsl import Artifact, Dataset, Input, Model, Output

    @dsl.component(base_image=base_image, install_kfp_package=False)
    def register_model(model: Input[Model], validation_data: Input[Dataset], interim: Input[Dataset],
                       train_data: Input[Dataset], evaluation: Input[Artifact], registry_uri: str,
                       model_name: str, gate_metric: str, gate_margin: float, registration: Output[Artifact],
                       pipeline_run: str = "", defer_promotion: bool = False):
        """Promotion gate against the current champion (scored on features of its own schema, computed from
        ``interim`` when they differ), then registration with an alias (tagged with the run) of a folder
        holding the model, ``baseline/`` (``train_data``) and ``evaluation/``. With ``defer_promotion`` (a
        local run) no alias moves: pipeline.py sets it once the model is published."""
        from pathlib import Path

        from churn.layout import setup_cli_logging
        from components.register_model import run

        setup_cli_logging()
        record = run(Path(model.path), Path(validation_data.path), Path(registration.path),
                     registry_uri=registry_uri, model_name=model_name, metric=gate_metric, margin=gate_margin,
                     tags={"pipeline_run": pipeline_run} if pipeline_run else None, interim_dir=Path(interim.path),
                     defer_promotion=defer_promotion, train_dir=Path(train_data.path),
                     evaluation_dir=Path(evaluation.path))
        registration.metadata.update({"model_name": record["model_name"], "version": record["version"],
                                      "source": record["source"],
                                      "alias": record["alias"], "promoted": record["promoted"],
                                      "reason": record["decision"]["reason"], "deferred": record["deferred"]})

    return register_model


if __name__ == "__main__":
    raise SystemExit(main())
