"""``python -m serving``: uvicorn on ``$AIP_HTTP_PORT`` with one worker process per available CPU.

This is the serving image's command (and ``make serve``). ``SERVING_WORKERS`` overrides the worker count;
each worker loads its own copy of the model and runs onnxruntime on one thread. uvicorn picks uvloop (event
loop) and httptools (HTTP parser) when installed, as both locks install them; access logging is off.

glibc's allocator is told to keep the memory a request frees (:func:`keep_freed_memory`): by default it
hands large freed blocks back to the kernel and faults fresh zeroed pages in for the next request, which
for a 1000-instance request (an 800 kB body, read and copied a few times) cost more CPU than reading it.
"""

from __future__ import annotations

import copy
import ctypes
import os
import socket

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
    for name, (_, value) in MALLOC_TUNING.items():
        os.environ.setdefault(name, str(value))
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    for name, (param, _) in MALLOC_TUNING.items():
        value = os.environ[name]
        if value.isdigit():
            mallopt(param, int(value))


def serve(app: str, *, host: str, port: int, workers: int, factory: bool = False, log_level: str = "info") -> None:
    """Runs an ASGI app under uvicorn, with Nagle's algorithm off in every worker and glibc keeping freed
    memory (:func:`keep_freed_memory`).

    With several workers uvicorn binds the socket itself (``socket.socket()``, whose ``proto`` is 0), and
    asyncio only sets ``TCP_NODELAY`` on sockets whose ``proto`` is TCP; responses then wait for the
    client's delayed ACK (~40 ms each, measured here). Setting it on the listening socket fixes that:
    on Linux accepted connections inherit it.

    Args:
        app: Import string, e.g. ``serving.app:app``.
        host: Interface to bind.
        port: Port.
        workers: Worker processes.
        factory: ``app`` names a factory to call.
        log_level: uvicorn's log level.
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG
    from uvicorn.supervisors import Multiprocess

    keep_freed_memory()
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["serving"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config = uvicorn.Config(app, host=host, port=port, workers=workers, factory=factory, access_log=False,
                            log_config=log_config, log_level=log_level, timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    if workers <= 1:
        server.run()
        return
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()  # as uvicorn.run does for workers > 1


def main() -> None:
    """Starts the server with the environment's settings."""
    from serving.settings import get_settings

    settings = get_settings()
    serve("serving.app:app", host=settings.host, port=settings.http_port, workers=settings.resolved_workers())


if __name__ == "__main__":
    main()
