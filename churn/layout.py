"""The project's data layout (raw → interim → processed → features) and small shared helpers."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataLayout:
    """Where each stage reads and writes when run on the ``data/`` layout.

    Attributes:
        root: The project folder holding ``data/``, ``models/`` and ``mlruns/``.
    """

    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def interim(self) -> Path:
        return self.root / "data" / "interim"

    @property
    def processed(self) -> Path:
        return self.root / "data" / "processed"

    @property
    def features(self) -> Path:
        return self.root / "data" / "features"

    @property
    def predictions(self) -> Path:
        return self.root / "data" / "predictions"

    @property
    def monitoring(self) -> Path:
        return self.root / "data" / "monitoring"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"

    def tracking_uri(self) -> str:
        """The local MLflow store: a SQLite database under ``mlruns/`` (what ``mlflow ui`` reads)."""
        return f"sqlite:///{(self.mlruns / 'mlflow.db').resolve()}"


def write_json(path: Path, data: Any) -> Path:
    """Writes ``data`` as indented JSON (creating parent folders) and returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def read_json(path: Path) -> Any:
    """Reads a JSON file."""
    return json.loads(Path(path).read_text())


def setup_cli_logging(verbose: bool = False) -> None:
    """Configures logging for a command-line entry point (never at import time).

    Every stage's component starts with this call, so it is also where a process started by a local
    ``pipeline.py run`` ties its life to that run (``churn.runguard.bind_to_run_owner``): killing the run
    stops its components too.
    """
    from churn.runguard import bind_to_run_owner

    bind_to_run_owner()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
