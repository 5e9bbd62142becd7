"""The seam between the gateway's request path and the network.

The forwarding stage (``corral.gateway.forward``) hands one upstream call to an
``UpstreamTransport`` and relays the ``UpstreamResponse`` it gets back, chunk by chunk. Tests swap
the network for a function by implementing ``send``; production uses the pooled HTTP/1.1 client in
``corral.gateway.http1``.

The error split carries the retry rule: ``UpstreamUnreachable`` means the upstream sent no
response byte (connect refused, reset, timeout before the headers), so the gateway may try another
replica; any other ``UpstreamError`` happens after the response began and is never retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

Headers = list[tuple[bytes, bytes]]
"""Header pairs as ASGI carries them: lower-case names, raw values."""


class UpstreamError(Exception):
    """The upstream failed after its response began; what the client got so far stands."""


class UpstreamUnreachable(UpstreamError):
    """The upstream failed before sending any response byte: safe to retry on another replica."""


class UpstreamResponse:
    """An upstream's status, headers and body; the body arrives as the upstream sends it.

    ``aclose`` must be awaited once the caller is done (also after a partial read): it returns a
    fully read connection to its pool, or drops one whose body was abandoned.
    """

    __slots__ = ("_closer", "chunks", "headers", "status")

    def __init__(
        self,
        status: int,
        headers: Headers,
        chunks: AsyncIterator[bytes],
        closer: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks
        self._closer = closer

    async def aclose(self) -> None:
        if self._closer is not None:
            await self._closer()
            return
        # An async generator left mid-iteration must be closed or its finally blocks never run.
        close = getattr(self.chunks, "aclose", None)
        if close is not None:
            await close()


class UpstreamTransport(Protocol):
    """Sends one request upstream; ``url`` is absolute (``http://host:port/v1/...``).

    The transport writes ``host`` and ``content-length`` itself; ``headers`` carries the rest.
    """

    async def send(self, method: str, url: str, headers: Headers, body: bytes) -> UpstreamResponse:
        """Return once the response headers arrived; raise ``UpstreamUnreachable`` before that."""
        ...

    async def aclose(self) -> None:
        """Close every connection the transport holds."""
        ...
