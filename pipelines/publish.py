"""Publishing a local run: its task outputs copied into the project layout, then the deferred promotion.

Each folder is written aside under a hidden name and renamed into place, so a full disk or a kill
never leaves a half-written model or data folder, and the registry's champion moves only once its
model folder is published.
"""

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger("pipeline")  # the CLI's logger: its name prefixes the messages users see


def artifact_path(artifact: Any) -> Path:
    """The local file or folder of a kfp.local output artifact."""
    return Path(artifact.path)


class PublishError(RuntimeError):
    """The run's outputs could not be published (nothing was, and the champion did not move)."""


def _staging(final: Path) -> Path:
    """Where ``final`` is written before it is renamed into place: a hidden sibling (same file system)."""
    return final.parent / f".{final.name}.publishing-{os.getpid()}"


def _clear_leftovers(parent: Path) -> None:
    """Removes staging and replaced folders a killed publish left in ``parent`` (run under the project lock)."""
    if parent.is_dir():
        for left in parent.glob(".*.publishing-*"):
            shutil.rmtree(left, ignore_errors=True)
        for left in parent.glob(".*.replaced-*"):
            shutil.rmtree(left, ignore_errors=True)


def _swap_in(staged: Path, final: Path) -> None:
    """Renames ``staged`` to ``final``; an existing ``final`` is renamed aside first, then removed."""
    old = final.parent / f".{final.name}.replaced-{os.getpid()}"
    if final.is_symlink() or final.is_file():
        final.unlink()
    elif final.exists():
        os.rename(final, old)
    os.rename(staged, final)
    shutil.rmtree(old, ignore_errors=True)


def _size_mb(paths: list[Path]) -> float:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()) / 1e6


def _publish_error(exc: OSError, final: Path, root: Path, needed_mb: float) -> PublishError:
    import errno

    first = exc.args[0][0] if isinstance(exc, shutil.Error) and exc.args and exc.args[0] else None
    detail = f"{first[2]} (writing {first[1]})" if first else f"{exc.strerror or exc} ({exc.filename or final})"
    full = "No space left" in detail or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    fix = (f"free space on the disk holding {root} (this run publishes about {needed_mb:.1f} MB there)" if full
           else "fix the cause above")
    return PublishError(f"could not publish {final}: {detail}. Nothing was published: data/ and models/ are as "
                        f"they were and the registry's champion did not move. To fix: {fix}, then run "
                        f"`pipeline.py run` again.")


def publish(outputs: dict[str, Any], root: Path) -> dict[str, str]:
    """Publishes the run's artifacts to the project layout, each folder atomically (written aside, then renamed).

    ``models/<name>/v<N>/`` gets the model files, ``evaluation/`` (metrics.json, report.html,
    validation_predictions.csv: the drift check's reference scores), ``baseline/`` (the model's training
    split and feature schema: its drift baseline) and ``registration.json``; ``data/interim``,
    ``data/processed`` and ``data/features`` are replaced by this run's. Every folder is fully written
    under a hidden name before any is renamed into place, so a full disk or a kill leaves no folder
    half-written. When the gate decided to promote, the copy that becomes ``models/latest`` is written
    too, and left aside for :func:`promote_published` to rename once the registry says champion.

    Args:
        outputs: Pipeline outputs from a local run (objects with ``.path``).
        root: Project folder.

    Returns:
        Published paths by name.

    Raises:
        PublishError: A folder could not be written (e.g. the disk is full); nothing was published.
    """
    from churn.layout import DataLayout

    layout = DataLayout(root)
    reg_dir = artifact_path(outputs["registration"])
    reg = json.loads((reg_dir / "registration.json").read_text())
    model_home = layout.models / reg["model_name"] / f"v{reg['version']}"
    train_dir, validation_dir = artifact_path(outputs["train_data"]), artifact_path(outputs["validation_data"])
    features_dir = artifact_path(outputs["features"])
    plan: dict[Path, list[tuple[Path, str]]] = {  # final folder → (source file or folder, name inside it)
        model_home: [(artifact_path(outputs["model"]), "."), (artifact_path(outputs["evaluation"]), "evaluation"),
                     (train_dir / "train.csv", "baseline/train.csv"),
                     (features_dir / "feature_schema.json", "baseline/feature_schema.json"),
                     (reg_dir / "registration.json", "registration.json")],
        layout.interim: [(artifact_path(outputs["interim"]), ".")],
        layout.processed: [(train_dir, "."), (validation_dir, ".")],
        layout.features: [(features_dir, ".")],
    }
    latest = layout.models / "latest"
    if reg.get("deferred") and reg.get("alias") == "champion":
        plan[latest] = plan[model_home]
    needed_mb = _size_mb([src for sources in plan.values() for src, _ in sources])
    for parent in {final.parent for final in plan}:
        _clear_leftovers(parent)
    staged: list[tuple[Path, Path]] = []
    final = model_home
    try:
        for final, sources in plan.items():
            final.parent.mkdir(parents=True, exist_ok=True)
            stage = _staging(final)
            staged.append((stage, final))
            stage.mkdir()
            for src, name in sources:
                if src.is_dir():
                    shutil.copytree(src, stage / name, dirs_exist_ok=True)
                else:
                    (stage / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, stage / name)
    except OSError as exc:
        for stage, _ in staged:
            shutil.rmtree(stage, ignore_errors=True)
        raise _publish_error(exc, final, root, needed_mb) from None
    for stage, final in staged:  # renames only: nothing left to run out of space
        if final != latest:
            _swap_in(stage, final)
    return {
        "interim": str(layout.interim),
        "rejected": str(layout.interim / "rejected_*.csv"),
        "processed_train": str(layout.processed / "train.csv"),
        "processed_validation": str(layout.processed / "validation.csv"),
        "features": str(next(layout.features.glob("customer_features_v*.csv"))),
        "feature_schema": str(layout.features / "feature_schema.json"),
        "model": str(model_home),
        "baseline": str(model_home / "baseline" / "train.csv"),
        "report": str(model_home / "evaluation" / "report.html"),
        "validation_predictions": str(model_home / "evaluation" / "validation_predictions.csv"),
    }


def promote_published(root: Path, registry_uri: str, model_home: Path) -> dict:
    """Applies a deferred registration once its model folder is published, then replaces ``models/latest``.

    ``models/latest`` is a copy of the champion's folder (a copy, not a link: the stages run alone write
    to it), written aside by :func:`publish` and renamed into place right after the promotion; the
    folder's ``registration.json`` is rewritten with the decision as applied.

    Args:
        root: Project folder.
        registry_uri: The registry the run registered in.
        model_home: The published ``models/<name>/v<N>`` folder.

    Returns:
        The registration record as applied.
    """
    from churn.layout import DataLayout
    from churn.registry import CHAMPION, get_registry
    from components.register_model import REGISTRATION_FILE, apply_decision

    registry = get_registry(registry_uri)
    record = json.loads((model_home / REGISTRATION_FILE).read_text())
    if record.get("deferred"):
        record = apply_decision(registry, record)
        tmp = model_home / f".{REGISTRATION_FILE}.tmp"
        try:
            tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
            os.replace(tmp, model_home / REGISTRATION_FILE)
        except OSError as exc:
            logger.warning("%s: could not record the applied decision (%s); the registry holds it", model_home, exc)
    latest = DataLayout(root).models / "latest"
    staged = _staging(latest)
    if staged.is_dir():
        if record["alias"] == CHAMPION:
            with contextlib.suppress(OSError):  # the applied record, linked: no space needed
                (staged / f".{REGISTRATION_FILE}.tmp").unlink(missing_ok=True)
                os.link(model_home / REGISTRATION_FILE, staged / f".{REGISTRATION_FILE}.tmp")
                os.replace(staged / f".{REGISTRATION_FILE}.tmp", staged / REGISTRATION_FILE)
            _swap_in(staged, latest)
        else:
            shutil.rmtree(staged, ignore_errors=True)
    _follow_champion(latest, registry, record["model_name"])
    return record


def _follow_champion(latest: Path, registry: Any, model_name: str) -> None:
    """Re-copies the champion's published folder to ``models/latest`` when they disagree (e.g. an earlier
    run was killed between its promotion and the rename of ``latest``); a failed copy changes nothing."""
    from churn.registry import CHAMPION
    from components.register_model import REGISTRATION_FILE

    champion = registry.get_by_alias(model_name, CHAMPION)
    home = latest.parent / model_name / f"v{champion.version}" if champion is not None else None
    if home is None or not (home / REGISTRATION_FILE).is_file():
        return
    try:
        shown = json.loads((latest / REGISTRATION_FILE).read_text())
    except (OSError, ValueError):
        shown = {}
    if (shown.get("model_name"), str(shown.get("version"))) == (model_name, champion.version):
        return
    stage = _staging(latest)
    try:
        shutil.copytree(home, stage)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        logger.error("%s: could not copy the champion %s there (%s); free space and run again", latest, home, exc)
        return
    _swap_in(stage, latest)
    logger.warning("%s did not hold the champion (v%s); copied %s there", latest, champion.version, home)
