"""Imports point one way: the import-linter contract of pyproject.toml, and pipeline.py's own imports.

Layers, lowest first: ``churn`` (core) ← ``components`` (stages) ← ``pipelines`` and ``pipeline.py`` ←
``serving`` | ``monitoring``. import-linter takes packages only, so the top-level ``pipeline.py`` is
checked here from its source.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("churn", "components", "pipelines", "serving", "monitoring")


def _imported(path: Path) -> set[str]:
    """The project modules a file imports (absolute imports, anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in (*PACKAGES, "pipeline")}


def test_the_import_contract_is_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_pipeline_py_imports_only_the_pipelines_their_stages_and_the_core() -> None:
    imported = _imported(ROOT / "pipeline.py")
    above = sorted(name for name in imported if name.split(".")[0] in ("serving", "monitoring"))
    assert not above, f"pipeline.py imports an application ({above}); move that code to pipelines/"


def test_nothing_in_the_packages_imports_pipeline_py() -> None:
    importers = sorted(str(path.relative_to(ROOT)) for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                       if any(name == "pipeline" or name.startswith("pipeline.") for name in _imported(path)))
    assert not importers, f"{importers} import the entry point pipeline.py; import from pipelines/ instead"
