"""The composition root: wires the store, the API server and the controllers into a process.

``corral up`` runs every role (``apiserver``, ``controllers``, ``gateway``, ``agents``) in one
process on one port; ``corral serve --role ...`` runs some, against a shared PostgreSQL store.
Nothing below this package knows how it is composed.
"""

from corral.server.config import (
    AGENTS,
    APISERVER,
    CONTROLLERS,
    GATEWAY,
    ROLES,
    ServerConfig,
    parse_roles,
    redact_url,
)
from corral.server.serve import ServerError, ServerInfo, run, serve

__all__ = [
    "AGENTS",
    "APISERVER",
    "CONTROLLERS",
    "GATEWAY",
    "ROLES",
    "ServerConfig",
    "ServerError",
    "ServerInfo",
    "parse_roles",
    "redact_url",
    "run",
    "serve",
]
