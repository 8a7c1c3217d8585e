"""Shared fixtures: small generated raw data and helpers to write hand-made raw inputs."""

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from churn.sample_data import generate, write_raw

# tests/monitoring needs TFDV, which lives only in .venv-monitoring (make test runs it there); a plain
# `pytest` in the main environment skips the folder instead of failing to import it.
collect_ignore = [] if importlib.util.find_spec("tensorflow_data_validation") else ["monitoring"]


# Folders whose session fixtures are costly (trained models, the Cloud Storage emulator and the fake Vertex
# server): under pytest-xdist's ``--dist loadgroup`` each runs on one worker, so they are built once, not per worker.
_XDIST_GROUPS = ("gcp", "serving")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Puts the tests of each folder in ``_XDIST_GROUPS`` in one xdist group (no effect without pytest-xdist)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    tests = Path(__file__).resolve().parent
    for item in items:
        folder = item.path.relative_to(tests).parts[0] if item.path.is_relative_to(tests) else ""
        if folder in _XDIST_GROUPS:
            item.add_marker(pytest.mark.xdist_group(folder))


@pytest.fixture(scope="session")
def sample_raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw folder with 1,500 generated customers (JSON Lines transactions)."""
    raw = tmp_path_factory.mktemp("raw")
    write_raw(generate(1500, seed=7), raw)
    return raw


def write_customers(raw_dir: Path, text: str) -> Path:
    """Writes customers.csv from literal CSV text."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    path = raw_dir / "customers.csv"
    path.write_text(text.strip() + "\n")
    return path


def write_transactions(raw_dir: Path, records: list, *, fmt: str = "jsonl") -> Path:
    """Writes transactions.json; a str record is written verbatim (for malformed lines)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    path = raw_dir / "transactions.json"
    if fmt == "array":
        path.write_text(json.dumps(records))
    else:
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A real 1 MiB tmpfs, for full-disk tests (root only; skipped where mounting is not allowed), unmounted after."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30, check=False)
