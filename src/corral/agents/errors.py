"""Errors the runtime raises to its callers (the sessions API maps them to HTTP statuses:
unknown → 404, state → 409, bad request → 400)."""

from __future__ import annotations


class AgentsError(Exception):
    """Base of the runtime's errors."""


class UnknownAgent(AgentsError):
    def __init__(self, namespace: str, name: str) -> None:
        super().__init__(f"agent {namespace}/{name} not found")


class UnknownSession(AgentsError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} not found")
        self.session_id = session_id


class SessionStateError(AgentsError):
    """The session is not in a state that allows the request (e.g. a message to a session that
    waits for an approval, or an approval of a step that asks none)."""


class SessionExists(AgentsError):
    """A create with a chosen session id whose session exists already (an idempotent create
    retried: the caller goes on with that session)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id} exists")
        self.session_id = session_id
