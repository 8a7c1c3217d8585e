"""`pipeline.py run` interrupted or run side by side: real processes, SIGKILL, a real full disk (tmpfs).

Whatever happens, the registry and the published files never disagree: a champion always has its complete
``models/<name>/v<N>/`` folder, ``models/latest`` follows the champion, nothing of a killed run keeps running,
and its MLflow runs do not stay RUNNING.
"""

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from churn.runguard import OWNER_ENV, process_start
from churn.sample_data import generate, write_raw

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


class Run:
    """``pipeline.py run`` as a real child process whose output is read line by line as it comes."""

    def __init__(self, cwd: Path, raw: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "pipeline.py"), "run", "--raw-dir", str(raw), *args], cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.output):
            assert self.proc.poll() is None or self._reader.is_alive(), \
                f"run ended (rc {self.proc.returncode}) before {pattern!r}:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout}s:\n{self.output[-3000:]}"
            time.sleep(0.05)

    def finish(self, timeout: float) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    def stop(self) -> None:
        """Test clean-up: whatever is left of the run's process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def _stat(pid: str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _descendants(pid: int) -> dict[int, str]:
    """The live processes below ``pid``: pid → start time."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        if fields:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = process_start(child)
            todo.append(child)
    return found


def _alive(pid: int, start: str) -> bool:
    fields = _stat(str(pid))
    return bool(fields) and fields[0] != "Z" and process_start(pid) == start


def _marked(owner_pid: int) -> dict[int, str]:
    """Live processes started for the run of ``owner_pid`` (they carry its CHURN_RUN_OWNER)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            env = (entry / "environ").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if f"{OWNER_ENV}={owner_pid}:".encode() in env and _alive(int(entry.name), process_start(int(entry.name))):
            found[int(entry.name)] = process_start(int(entry.name))
    return found


def _kill_and_check_nothing_survives(run: Run) -> dict[int, str]:
    """SIGKILLs the run's own process only; returns the processes it had started that are still alive 15 s on."""
    children = _descendants(run.pid)
    assert children, "the run had no component process running when it was killed"
    os.kill(run.pid, signal.SIGKILL)
    run.finish(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        left = {pid: start for pid, start in {**children, **_marked(run.pid)}.items() if _alive(pid, start)}
        if not left:
            return {}
        time.sleep(0.2)
    return left


def _runs(db: Path) -> list[tuple[str, str, str]]:
    """(run name, status, note) of every MLflow run, read from the store as any SQLite client would."""
    for _ in range(50):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                return con.execute(
                    "SELECT r.name, r.status, COALESCE((SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid "
                    "AND t.key = 'mlflow.note.content'), '') FROM runs r").fetchall()
        except sqlite3.OperationalError:  # the store does not exist yet, or is being written
            time.sleep(0.2)
    return []


def _registry(db: Path, name: str = "churn-model") -> tuple[str | None, dict[str, dict]]:
    """(champion version, {version: tags}) through MLflow's own client."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=f"sqlite:///{db}", registry_uri=f"sqlite:///{db}")
    try:
        champion = client.get_model_version_by_alias(name, "champion").version
    except MlflowException:
        champion = None
    versions = {str(mv.version): dict(mv.tags) for mv in client.search_model_versions(f"name = '{name}'")}
    return champion, versions


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_raw(generate(600, seed=11), folder)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project folder that the tests below take through a race and two kills, in order."""
    return tmp_path_factory.mktemp("project")


def test_two_runs_at_once_one_is_refused_and_a_killed_run_stops_its_components(project: Path, raw: Path) -> None:
    first, second = Run(project, raw), Run(project, raw)
    try:
        deadline = time.monotonic() + 60
        while first.proc.poll() is None and second.proc.poll() is None:
            assert time.monotonic() < deadline, "neither run was refused:\n" + first.output[-2000:]
            time.sleep(0.1)
        refused, winner = (first, second) if first.proc.poll() is not None else (second, first)
        assert refused.finish(timeout=30) == 3, refused.output[-3000:]
        assert str(project / ".pipeline.lock") in refused.output and f"pid {winner.pid}" in refused.output
        assert "Traceback" not in refused.output

        # the winner reaches train; its MLflow run is RUNNING when the run is killed
        winner.wait_for(r"Executing task .*'train'", timeout=240)
        db = project / "mlruns" / "mlflow.db"
        deadline = time.monotonic() + 120
        while not any(status == "RUNNING" for _, status, _ in _runs(db)):
            assert time.monotonic() < deadline and winner.proc.poll() is None, winner.output[-3000:]
            time.sleep(0.2)
        assert _kill_and_check_nothing_survives(winner) == {}, "component processes outlived the killed run"
    finally:
        first.stop()
        second.stop()
    assert [status for _, status, _ in _runs(db)] == ["RUNNING"]  # left behind: the next run ends it


def test_a_run_killed_in_register_model_promotes_nothing_and_ends_what_the_last_one_left(project: Path,
                                                                                       raw: Path) -> None:
    db = project / "mlruns" / "mlflow.db"
    assert [status for _, status, _ in _runs(db)] == ["RUNNING"], "needs the killed run of the test above"
    run = Run(project, raw)  # the killed run's lock is free again
    try:
        # kill the moment the new version is in the registry, before anything is published
        run.wait_for(r"churn-model v\d+ (registered|→)", timeout=600)
        assert _kill_and_check_nothing_survives(run) == {}, "component processes outlived the killed run"
    finally:
        run.stop()
    assert "ended without releasing it" in run.output  # the lock told who had died holding it
    champion, versions = _registry(db)
    assert list(versions) == ["1"]  # it did register ...
    assert champion is None, "a champion whose model folder was never published"  # ... and promoted nothing
    assert versions["1"]["stage"] == "pending"
    assert not (project / "models" / "latest").exists()  # agrees with "no champion"
    assert not list((project / "models").glob("churn-model/v*"))
    # the run killed in train (test above) was ended at this run's start, with a note saying why
    runs = _runs(db)
    killed = [(status, note) for name, status, note in runs if status != "FINISHED"]
    assert len(killed) == 1 and killed[0][0] == "KILLED", runs
    assert "exited without ending it" in killed[0][1]




def test_a_full_disk_at_publish_is_a_clear_error_and_no_champion(small_disk: Path, tmp_path: Path,
                                                                  raw: Path) -> None:
    root = small_disk / "project"
    root.mkdir()
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "ballast").write_bytes(b"\0" * (free - 64_000))  # room for the lock file, not for a model
    db = tmp_path / "mlruns" / "mlflow.db"
    run = Run(root, raw, "--pipeline-root", str(tmp_path / "outputs"), "--tracking-uri", f"sqlite:///{db}")
    try:
        rc = run.finish(timeout=600)
    finally:
        run.stop()
    out = run.output
    assert rc == 1, out[-3000:]
    assert f"could not publish {root / 'models' / 'churn-model' / 'v1'}" in out and "No space left" in out
    assert "free space on the disk holding" in out and "Traceback" not in out
    assert not (root / "models" / "churn-model" / "v1").exists() and not (root / "models" / "latest").exists()
    assert [p.name for p in root.rglob(".*")] == [".pipeline.lock"]  # nothing half-written left aside
    assert (root / ".pipeline.lock").read_text() == ""  # released: emptied, and the flock gone with the process
    assert [p for p in root.rglob("*") if p.is_file() and p.stat().st_size == 0] == [root / ".pipeline.lock"]
    champion, versions = _registry(db)
    assert champion is None and versions["1"]["stage"] == "pending"
