"""HTTP health checks for replicas, sharing pooled clients across all of a supervisor's replicas.

Loopback probes ignore proxy settings from the environment (a proxy cannot reach our
127.0.0.1); upstream probes honour them, as the gateway's own upstream calls will.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx


class Prober:
    def __init__(self) -> None:
        self._loopback: httpx.AsyncClient | None = None
        self._upstream: httpx.AsyncClient | None = None

    async def problem(
        self, url: str, headers: Mapping[str, str], time_limit: float, *, loopback: bool
    ) -> str | None:
        """Why ``GET url`` is not healthy (not a 200 in time), or None when it is."""
        client = self._client(loopback=loopback)
        try:
            response = await client.get(url, headers=dict(headers), timeout=time_limit)
        except httpx.HTTPError as error:
            return f"GET {url} failed: {type(error).__name__} {error}".rstrip()
        if response.status_code != 200:
            return f"GET {url} answered {response.status_code}"
        return None

    def _client(self, *, loopback: bool) -> httpx.AsyncClient:
        if loopback:
            if self._loopback is None:
                self._loopback = httpx.AsyncClient(trust_env=False)
            return self._loopback
        if self._upstream is None:
            self._upstream = httpx.AsyncClient()
        return self._upstream

    async def aclose(self) -> None:
        for client in (self._loopback, self._upstream):
            if client is not None:
                await client.aclose()
        self._loopback = self._upstream = None
