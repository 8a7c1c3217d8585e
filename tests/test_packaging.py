"""pyproject.toml declares what the package needs, in step with the pinned requirement files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _names(lines: list[str]) -> dict[str, str]:
    """Requirement name (normalised) → the whole requirement, for requirement lines (no options, no comments)."""
    found = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
            found[re.sub(r"[-_.]+", "-", name).lower()] = line
    return found


def test_pyproject_declares_the_runtime_requirements() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"])
    assert declared == _names((ROOT / "requirements.in").read_text().splitlines())


def test_the_monitoring_extra_matches_the_monitoring_environment() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names((ROOT / "monitoring" / "requirements.in").read_text().splitlines())
    wanted.pop("pytest")  # the monitoring tests run in that environment; the package does not need pytest
    assert _names(project["optional-dependencies"]["monitoring"]) == wanted
