"""uvicorn's HTTP protocol with a deadline for each request's head (request line and headers).

uvicorn times out idle keep-alive connections but not a request arriving slowly: a client sending its
headers a byte a second, or connecting and sending nothing, holds the connection (and its memory) for
as long as it likes. :class:`HeadTimeoutProtocol` gives the head ``SERVING_HEADER_TIMEOUT_SECONDS`` from
the connection opening, or from the first byte of the next request on a keep-alive connection, then
answers 408 and closes. The body has its own deadline in the app (:class:`serving.app.BodyGuard`).

Used by ``python -m serving`` (:func:`serving.__main__.serve`); it relies only on the protocol's
``cycle`` (the request being handled, replaced when a new request's headers are complete), ``loop`` and
``transport``, which both of uvicorn's HTTP implementations (httptools and h11) keep.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

logger = logging.getLogger("uvicorn.error")

_BODY = b'{"detail":"the request headers did not arrive in time"}'
REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: "
                   + str(len(_BODY)).encode() + b"\r\nconnection: close\r\n\r\n" + _BODY)


class HeadTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]  # uvicorn picks the class at import
    """uvicorn's HTTP protocol (httptools or h11, whichever uvicorn picks) with a request head deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from serving.settings import get_settings

        super().__init__(*args, **kwargs)
        self._head_seconds = get_settings().header_timeout_seconds
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_cycle: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._start_head_timer()  # the first byte of the next request on a keep-alive connection
        super().data_received(data)
        if self._head_timer is not None and self.cycle is not self._head_cycle:
            self._head_timer.cancel()  # the head is complete: the request has started
            self._head_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._head_cycle = self.cycle
        self._head_timer = self.loop.call_later(self._head_seconds, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is not self._head_cycle or self.transport.is_closing():
            return
        client = getattr(self, "client", None)
        logger.info("%s: request headers not complete after %g s; answered 408 and closed",
                    f"{client[0]}:{client[1]}" if client else "client", self._head_seconds)
        self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
