"""``python -m serving``: uvicorn on ``$AIP_HTTP_PORT`` with one worker process per available CPU.

This is the serving image's command (and ``make serve``). ``SERVING_WORKERS`` overrides the worker count;
each worker loads its own copy of the model and runs onnxruntime on one thread. uvicorn picks uvloop (event
loop) and httptools (HTTP parser) when installed, as both locks install them; access logging is off.

On Linux each worker listens on its own ``SO_REUSEPORT`` socket, so the kernel spreads connections
evenly (see :func:`serve`). Workers exit when the parent dies, even by ``SIGKILL``
(:func:`_exit_with_parent`), so none keeps holding the port unsupervised. Each request's head and body have
deadlines (:mod:`serving.connection`, ``SERVING_BODY_TIMEOUT_SECONDS``). glibc is told to keep freed memory
(:func:`keep_freed_memory`), so large requests do not fault in fresh pages each time (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import logging
import os
import re
import socket
import sys
from dataclasses import dataclass

# glibc malloc tunables (environment variables read when a process starts; mallopt parameter numbers).
# Blocks up to 16 MiB come from the heap rather than fresh mmaps, and up to 128 MiB of free heap is kept.
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": (-3, 16 << 20), "MALLOC_TRIM_THRESHOLD_": (-1, 128 << 20),
                 "MALLOC_TOP_PAD_": (-2, 16 << 20)}


def keep_freed_memory() -> None:
    """Makes glibc keep freed memory for reuse, in this process and in the worker processes it spawns.

    Sets the ``MALLOC_*_`` variables (unless already set: they are the way to change the values), which
    spawned workers read as they start, and applies them here with ``mallopt``. Resident memory then
    stays at its peak instead of shrinking between requests. No effect without glibc.
    """
    for name, (_, default) in MALLOC_TUNING.items():
        os.environ.setdefault(name, str(default))
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    for name, (param, _) in MALLOC_TUNING.items():
        value = os.environ[name]
        if value.isdigit():
            mallopt(param, int(value))


def _can_balance_by_port() -> bool:
    """True where ``SO_REUSEPORT`` spreads connections across sockets bound to one port (Linux; elsewhere the
    option exists on some systems but hands each connection to one socket, or is missing)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _tcp_socket(family: int, *, reuse_port: bool) -> socket.socket:
    """A TCP socket with ``SO_REUSEADDR`` (restart while old connections are in TIME_WAIT), ``TCP_NODELAY``
    (inherited by accepted connections on Linux, see :func:`serve`) and optionally ``SO_REUSEPORT``."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _reserve_port(host: str, port: int) -> socket.socket:
    """Binds, without listening, the ``SO_REUSEPORT`` socket that holds the port for the workers' own sockets.

    A plain bind first makes a port already in use fail here, whoever holds it: a ``SO_REUSEPORT`` bind alone
    would silently join another of our servers (same user) already listening on that port, splitting its
    traffic. A socket that never listens receives no connections.

    Raises:
        OSError: The port is taken or the address is not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with _tcp_socket(family, reuse_port=False) as probe:
        probe.bind((host, port))
        port = probe.getsockname()[1]  # the one chosen for port 0
    sock = _tcp_socket(family, reuse_port=True)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _exit_with_parent(parent: int) -> None:
    """In a worker: asks the kernel for ``SIGTERM`` when the parent (uvicorn's supervisor) dies.

    Without it a ``SIGKILL``-ed parent leaves its workers serving on the port with nobody to stop or
    restart them, and a new server cannot bind it. ``SIGTERM`` makes uvicorn shut the worker down
    gracefully (listening socket closed at once, requests in flight finished, prediction log flushed).
    The signal is tied to the parent thread that started the worker: uvicorn's ``Multiprocess`` starts and
    restarts workers from its main thread. A parent already gone before the request is caught by comparing
    ``getppid()``. Linux only (elsewhere a no-op).
    """
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return
    if prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        logging.getLogger("uvicorn.error").warning("Worker [%d] cannot follow its parent: %s", os.getpid(),
                                                   os.strerror(ctypes.get_errno()))
        return
    if os.getppid() != parent:
        sys.exit(0)


def _bind_worker_socket(family: int, address: tuple, parent: int | None = None) -> socket.socket:
    """In a worker: its own ``SO_REUSEPORT`` socket on the reserved address (uvicorn listens on it once the
    app has started, with ``config.backlog``). Exits with uvicorn's startup-failure code if the bind fails,
    so the supervisor stops instead of restarting the worker forever. With ``parent``, the worker exits
    when that process dies (:func:`_exit_with_parent`)."""
    from uvicorn.config import STARTUP_FAILURE

    if parent is not None:
        _exit_with_parent(parent)
    sock = _tcp_socket(family, reuse_port=True)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        logging.getLogger("uvicorn.error").error("Worker [%d] cannot bind %s: %s", os.getpid(), address, exc)
        sys.exit(STARTUP_FAILURE)
    return sock


@dataclass(frozen=True)
class _OwnSocket:
    """Stands in for the listening socket in the list uvicorn's ``Multiprocess`` pickles into every worker
    it starts (also restarts and ``SIGTTIN`` additions); unpickled there, it is that worker's own socket on
    the reserved address (:func:`_bind_worker_socket`)."""

    family: int
    address: tuple
    parent: int  # the supervisor's pid: the worker exits when it dies

    def __reduce__(self) -> tuple:
        # Named through the package: under ``python -m serving`` this module is ``__main__``, which spawned
        # workers do not import (multiprocessing skips a package's ``__main__``).
        from serving.__main__ import _bind_worker_socket

        return _bind_worker_socket, (self.family, self.address, self.parent)


def serve(app: str, *, host: str, port: int, workers: int, factory: bool = False, log_level: str = "info") -> None:
    """Runs an ASGI app under uvicorn, each worker on its own ``SO_REUSEPORT`` socket, with Nagle's algorithm
    off and glibc keeping freed memory (:func:`keep_freed_memory`).

    uvicorn's ``Multiprocess`` supervises the workers (health checks, restarts, signals, graceful shutdown),
    but one shared listening socket lets whichever worker wakes first take a whole burst, and keep-alive
    clients stay there. So the parent only reserves the port (:func:`_reserve_port`, failing early if it is
    taken) and each worker binds its own socket, which the kernel balances new connections over. Connections
    still queued at a worker that shuts down are reset. Without ``SO_REUSEPORT`` balancing (not Linux) the
    workers share one socket. ``TCP_NODELAY`` is set on the listening socket (accepted connections inherit
    it), since asyncio sets it only on sockets whose ``proto`` is TCP and responses would otherwise wait for
    the client's delayed ACK. Measurements: docs/serving.md ("Image").

    Args:
        app: Import string, e.g. ``serving.app:app``.
        host: Interface to bind.
        port: Port.
        workers: Worker processes.
        factory: ``app`` names a factory to call.
        log_level: uvicorn's log level.
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from serving.connection import HeadTimeoutProtocol

    keep_freed_memory()
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["serving"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config = uvicorn.Config(app, host=host, port=port, workers=workers, factory=factory, access_log=False,
                            log_config=log_config, log_level=log_level, timeout_graceful_shutdown=30,
                            http=HeadTimeoutProtocol)
    if workers <= 1:
        uvicorn.Server(config).run()
        return
    if not _can_balance_by_port():
        sock = config.bind_socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Multiprocess(config, sockets=[sock]).run()  # as uvicorn.run does for workers > 1
        return
    logger = logging.getLogger("uvicorn.error")
    try:
        reserved = _reserve_port(host, port)
    except OSError as exc:
        logger.error("Cannot serve on %s port %d: %s. Is another server using it? Choose another port "
                     "with AIP_HTTP_PORT.", host, port, exc)
        sys.exit(STARTUP_FAILURE)
    with reserved:
        address = reserved.getsockname()
        logger.info("Uvicorn running on http://%s:%d with %d workers, each on its own SO_REUSEPORT socket",
                    f"[{host}]" if ":" in host else host, address[1], workers)
        own = _OwnSocket(reserved.family, address, os.getpid())
        Multiprocess(config, sockets=[own]).run()  # type: ignore[list-item]  # a stand-in that unpickles as a socket


def _settings_help() -> str:
    """One line per setting: its environment variable, default and meaning (from :class:`Settings`)."""
    import inspect
    import textwrap

    from serving.settings import Settings

    doc = inspect.cleandoc(Settings.__doc__ or "").split("Attributes:", 1)[-1]
    meaning: dict[str, str] = {}
    for name, text in re.findall(r"^    (\w+): (.*?)(?=^    \w+: |\Z)", doc, flags=re.M | re.S):
        meaning[name] = re.sub(r":\w+:`([^`]+)`", r"\1", " ".join(text.split())).replace("``", "")
    lines = []
    for name, info in Settings.model_fields.items():
        aliases = getattr(info.validation_alias, "choices", None) or []
        variable = " or ".join(str(a) for a in aliases) or f"SERVING_{name.upper()}"
        default = info.default if info.default not in (None, "") else "-"
        lines.append(f"  {variable}  (default: {default})")
        lines.extend(textwrap.wrap(meaning.get(name, ""), 96, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line: no options but --help; every setting comes from the environment (Vertex AI's contract)."""
    return argparse.ArgumentParser(
        prog="python -m serving",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start the churn prediction server (FastAPI on uvicorn, Vertex AI custom-container contract): "
                    "POST the predict route with {\"instances\": [...]} and get churn probabilities; GET the health "
                    "route, /schema and /docs. Settings come from environment variables, so the same container runs "
                    "locally and on Vertex AI.",
        epilog="environment variables:\n" + _settings_help() + "\n\nexample:\n"
               "  SERVING_STORAGE_URI=models/latest SERVING_WORKERS=2 python -m serving\n"
               "  curl -s localhost:8080/health",
    )


def main(argv: list[str] | None = None) -> None:
    """Starts the server with the environment's settings; invalid settings are one line each on stderr and
    exit code 2 (no traceback). ``--help`` explains every setting and starts nothing."""
    from pydantic import ValidationError

    from serving.settings import get_settings

    build_parser().parse_args(argv)

    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            name = str(error["loc"][0]) if error["loc"] else "?"
            variable = name.upper() if name.upper().startswith("AIP_") else f"SERVING_{name.upper()}"
            print(f"python -m serving: {variable}={error.get('input')!r}: {error['msg']}", file=sys.stderr)
        sys.exit(2)
    serve("serving.app:app", host=settings.host, port=settings.http_port, workers=settings.resolved_workers())


if __name__ == "__main__":
    main()
