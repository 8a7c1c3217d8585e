"""churn.runguard and the abandoned-run clean-up, with real processes and signals."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from churn.runguard import OWNER_ENV, RunLock, RunLockedError, is_alive, process_start, this_process

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_line(proc: subprocess.Popen, expected: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if expected in line:
            return
        assert line or proc.poll() is None, f"process ended before printing {expected!r}"
    raise AssertionError(f"no {expected!r} within {timeout}s")


def _gone(pid: int, start: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_start(pid) or process_start(pid) != start or _zombie(pid):
            return True
        time.sleep(0.1)
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def test_lock_refuses_a_second_holder_and_frees_itself_when_the_holder_is_killed(tmp_path: Path) -> None:
    holder = _python(f"from churn.runguard import RunLock\nRunLock({str(tmp_path)!r}).acquire()\n"
                     "print('locked', flush=True)\nimport time\ntime.sleep(120)")
    try:
        _wait_line(holder, "locked")
        started = time.monotonic()
        with pytest.raises(RunLockedError) as refused:
            RunLock(tmp_path).acquire()
        assert time.monotonic() - started < 1  # refused at once, not after a wait
        message = str(refused.value)
        assert str(tmp_path / ".pipeline.lock") in message and f"pid {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # the holder died without releasing: the lock is free, and the new holder learns who died holding it
    with RunLock(tmp_path) as lock:
        assert lock.previous is not None and lock.previous["pid"] == holder.pid
    # a clean release leaves nothing to report
    with RunLock(tmp_path) as lock:
        assert lock.previous is None


def test_a_process_of_a_run_dies_with_the_run(tmp_path: Path) -> None:
    owner = _python("import time\nprint('up', flush=True)\ntime.sleep(120)")
    worker = None
    try:
        _wait_line(owner, "up")
        env = {OWNER_ENV: f"{owner.pid}:{process_start(owner.pid)}:{this_process().host}"}
        worker = _python("from churn.layout import setup_cli_logging\nsetup_cli_logging()\n"
                         "print('bound', flush=True)\nimport time\ntime.sleep(120)", env)
        _wait_line(worker, "bound")
        start = process_start(worker.pid)
        time.sleep(0.5)
        assert worker.poll() is None  # alive while its run is
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        assert _gone(worker.pid, start, timeout=10), "the run's process outlived the run"
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        for proc in (owner, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_a_process_started_after_its_run_died_stops_at_once() -> None:
    dead = _python("pass")
    dead.wait(timeout=30)
    env = {OWNER_ENV: f"{dead.pid}:{'1' * 5}:{this_process().host}"}
    late = _python("from churn.layout import setup_cli_logging\nsetup_cli_logging()\nprint('still running')", env)
    out, _ = late.communicate(timeout=60)
    assert late.returncode == -signal.SIGKILL and "still running" not in out


def test_is_alive_tells_a_reused_pid_from_its_owner() -> None:
    me = this_process()
    assert is_alive(me)
    assert not is_alive(type(me)(me.pid, str(int(me.start) + 1), me.host))


@pytest.mark.slow
def test_runs_left_running_by_a_killed_process_are_ended_with_a_note(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from churn.tracking.mlflow import MLflowTracker, end_abandoned_runs

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (f"from churn.tracking.mlflow import MLflowTracker\n"
            f"with MLflowTracker({uri!r}).run('{{name}}') as run_id:\n"
            f"    print('running', run_id, flush=True)\n    import time\n    time.sleep(120)\n")
    killed = _python(code.replace("{name}", "train-killed"))
    try:
        _wait_line(killed, "running", timeout=120)
    finally:
        killed.kill()
        killed.wait(timeout=10)
    with MLflowTracker(uri).run("live-one") as live_id:  # this process is alive: its run is left alone
        ended = end_abandoned_runs(uri)
        client = MlflowClient(tracking_uri=uri)
        assert client.get_run(live_id).info.status == "RUNNING"
    assert len(ended) == 1
    run = client.get_run(ended[0])
    assert run.info.run_name == "train-killed" and run.info.status == "KILLED"
    assert f"pid {killed.pid}" in run.data.tags["mlflow.note.content"]
    assert end_abandoned_runs(uri) == []  # nothing left to end
    assert end_abandoned_runs(f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}") == []  # never creates a store
    assert not (tmp_path / "none").exists()
