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


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadgroup`` with the folders of ``_XDIST_GROUPS`` as groups (every other test on its own).

    The groups are given to the scheduler by folder, not as ``xdist_group`` marks: xdist 3.8 carries a mark to
    the scheduler by rewriting the node id, which pytest 9.2 no longer lets it do (pytest-xdist issue 1386),
    so marked tests were spread over both workers and each built the session fixtures again.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class FolderGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            parts = nodeid.split("::", 1)[0].split("/")
            if len(parts) > 2 and parts[0] == "tests" and parts[1] in _XDIST_GROUPS:
                return parts[1]
            return super()._split_scope(nodeid)

    return FolderGroups(config, log)  # type: ignore[arg-type]


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
