"""Guards for local pipeline runs: one run per project at a time, and no process outliving its run.

* :class:`RunLock` — an exclusive ``flock`` on ``<root>/.pipeline.lock``. The kernel releases it when
  the holder exits in any way (even SIGKILL), so a lock is never stale; the file names the holder
  (pid, start, command) so a refused run can say who is running, and a holder that died without
  releasing is reported to the next one (see :attr:`RunLock.previous`).
* :func:`bind_to_run_owner` — a process started by a local run (``CHURN_RUN_OWNER`` in its
  environment) kills itself as soon as the run's process is gone: kfp.local starts each component
  through ``sh -c``, so a SIGKILL of ``pipeline.py`` would otherwise leave the component running.
* :func:`owner_identity` / :func:`is_alive` — who owns a process, and whether that owner still runs
  (pid plus start time, so a reused pid is not mistaken for the owner).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

OWNER_ENV = "CHURN_RUN_OWNER"
LOCK_FILE = ".pipeline.lock"


class RunLockedError(RuntimeError):
    """Another run holds the project's lock."""


@dataclass(frozen=True)
class Owner:
    """A process that owns a run: its pid, its start time (clock ticks since boot) and host."""

    pid: int
    start: str
    host: str

    def env_value(self) -> str:
        return f"{self.pid}:{self.start}:{self.host}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        pid, _, rest = text.partition(":")
        start, _, host = rest.partition(":")
        return cls(int(pid), start, host) if pid.isdigit() else None


def process_start(pid: int) -> str:
    """The process's start time from ``/proc`` ("" where there is no ``/proc`` or no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces and parentheses: fields after the last ')' are fixed
    return stat.rsplit(")", 1)[-1].split()[19]


def this_process() -> Owner:
    """This process as an owner."""
    return Owner(os.getpid(), process_start(os.getpid()), socket.gethostname())


def owner_identity() -> Owner:
    """The run this process belongs to: ``CHURN_RUN_OWNER`` when a local run started it, else itself."""
    return Owner.parse(os.environ.get(OWNER_ENV, "")) or this_process()


def is_alive(owner: Owner) -> bool:
    """Whether ``owner`` still runs (on another host: assumed alive, it cannot be checked from here)."""
    if owner.host and owner.host != socket.gethostname():
        return True
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    start = process_start(owner.pid)
    return not (owner.start and start and start != owner.start) and not _is_zombie(owner.pid)


def _is_zombie(pid: int) -> bool:
    """A process that has exited but not yet been reaped by its parent counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def bind_to_run_owner() -> None:
    """Makes this process die with the local run that started it (no-op outside one).

    A daemon thread waits on the owner's pidfd (Linux ≥ 5.3; polling elsewhere) and SIGKILLs this
    process when the owner exits, so nothing it does after its run was killed (registering, promoting,
    writing outputs) can happen.
    """
    owner = Owner.parse(os.environ.get(OWNER_ENV, ""))
    if owner is None or owner.pid == os.getpid():
        return
    if not is_alive(owner):
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch_owner, args=(owner,), name="run-owner-watch", daemon=True).start()


def _watch_owner(owner: Owner) -> None:
    try:
        fd = os.pidfd_open(owner.pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None and is_alive(owner):  # still the same process once the pidfd is open
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll()
    else:
        while is_alive(owner):
            time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGKILL)


class RunLock:
    """The project's run lock: ``with RunLock(root):`` or :meth:`acquire` / :meth:`release`.

    Attributes:
        path: The lock file.
        previous: What the last holder wrote, when it died without releasing (else None).
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / LOCK_FILE
        self.previous: dict | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Takes the lock at once or raises.

        Raises:
            RunLockedError: Another live run holds it (the message names the file and its pid).
        """
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = (f"pid {holder.get('pid')} ({' '.join(holder.get('command', []))[:200]}, started "
                   f"{holder.get('started')})") if holder else "a process that has not written its pid yet"
            raise RunLockedError(
                f"{self.path}: another pipeline run holds this project's lock: {who}. Wait for it to finish "
                f"(the lock is released when that process exits) or stop it, then run again."
            ) from None
        self.previous = _read_holder(fd) or None
        me = {"pid": os.getpid(), "start": process_start(os.getpid()), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Empties the file (a clean finish) and releases the lock."""
        import fcntl

        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 65536, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
