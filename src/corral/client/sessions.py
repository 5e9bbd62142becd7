"""The sessions API from the client side: ``{URL}/v1/agents/{ns}/{agent}/sessions…``.

``corral agent run`` and ``corral sessions …`` use :class:`SessionsClient`: it creates sessions,
posts messages and approvals and yields the turn's server-sent events as
:class:`SessionEvent` (``step_started``, ``model_delta``, ``tool_call``, ``approval_needed``,
``tool_result``, ``final``, ``error``, ``state``) as they arrive. Refusals surface as
:class:`~corral.client.errors.CompletionError` with the server's message, like the gateway's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from corral.client.chat import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, error_of_response
from corral.client.errors import IncompleteStream, ServerUnreachable
from corral.client.sse import iter_sse


@dataclass(frozen=True)
class SessionEvent:
    type: str
    data: dict[str, Any]


class SessionsClient:
    """One agent's sessions on one server; close it (or use ``with``)."""

    def __init__(
        self,
        server_url: str,
        namespace: str,
        agent: str,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base = (
            f"{server_url.rstrip('/')}/v1/agents/{quote(namespace, safe='')}"
            f"/{quote(agent, safe='')}/sessions"
        )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            transport=transport,
        )

    def __enter__(self) -> SessionsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def create(self) -> str:
        """A new session waiting for its first message; its id."""
        return str(self._json("POST", self.base, {})["id"])

    def list(
        self, *, limit: int = 50, after: str | None = None, state: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        params: dict[str, str | int] = {"limit": limit}
        if after:
            params["after"] = after
        if state:
            params["state"] = state
        body = self._json("GET", self.base, params=params)
        return list(body["items"]), body.get("next")

    def show(self, session_id: str) -> dict[str, Any]:
        return self._json("GET", self._session(session_id))

    def terminate(self, session_id: str) -> str:
        return str(self._json("DELETE", self._session(session_id))["state"])

    def send(self, session_id: str, message: str) -> Iterator[SessionEvent]:
        """Post a message; the turn's events until the session waits or ends."""
        return self._stream(self._session(session_id) + "/messages", {"message": message})

    def decide(
        self, session_id: str, step: int, approve: bool, reason: str = ""
    ) -> Iterator[SessionEvent]:
        """Approve or deny the tool call of ``step``; the resumed turn's events."""
        url = f"{self._session(session_id)}/approvals/{step}"
        return self._stream(url, {"approve": approve, "reason": reason})

    def _session(self, session_id: str) -> str:
        return f"{self.base}/{quote(session_id, safe='')}"

    def _json(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str | int] | None = None,
    ) -> dict[str, Any]:
        try:
            response = self._http.request(
                method, url, json=body, params=params, timeout=CONNECT_TIMEOUT_S
            )
        except httpx.HTTPError as error:
            raise _unreachable(url, error) from None
        if response.status_code >= 400:
            raise error_of_response(response.status_code, response.content, response.reason_phrase)
        found: dict[str, Any] = response.json()
        return found

    def _stream(self, url: str, body: dict[str, Any]) -> Iterator[SessionEvent]:
        try:
            with self._http.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of_response(
                        response.status_code, response.content, response.reason_phrase
                    )
                ended = False
                for event in iter_sse(response.iter_lines()):
                    data = orjson.loads(event.data)
                    yield SessionEvent(event.event, data)
                    if event.event == "state" and data.get("state") != "active":
                        ended = True
                if not ended:
                    raise IncompleteStream(
                        "the server closed the session's event stream before the turn ended",
                        status=response.status_code,
                    )
        except httpx.HTTPError as error:
            raise _unreachable(url, error) from None


def _unreachable(url: str, error: httpx.HTTPError) -> ServerUnreachable:
    if isinstance(error, httpx.TimeoutException):
        return ServerUnreachable(f"the sessions API at {url} did not answer in time ({error})")
    return ServerUnreachable(f"cannot reach the sessions API at {url}: is `corral up` running?")
