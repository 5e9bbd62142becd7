"""``InvalidToken``: the one error a refused platform JWT raises."""

from __future__ import annotations

from typing import Literal

from corral.api import Unauthorized

Problem = Literal[
    "malformed",
    "algorithm",
    "unknown-key",
    "signature",
    "issuer",
    "audience",
    "expired",
    "not-yet-valid",
    "claims",
    "replayed",
    "replay-cache-full",
]


class InvalidToken(Unauthorized):
    """A token was refused; ``problem`` says which check failed (for metrics and audit)."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(f"invalid token: {message}")
        self.problem: Problem = problem
