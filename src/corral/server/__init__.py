"""The composition root: wires the store, the API server and the controllers into a process.

``corral up`` runs every role in one process; ``corral serve --role ...`` runs some, against a
shared PostgreSQL store. Nothing below this package knows how it is composed.
"""

from corral.server.config import (
    APISERVER,
    CONTROLLERS,
    ROLES,
    ServerConfig,
    parse_roles,
    redact_url,
)
from corral.server.serve import ServerError, ServerInfo, run, serve

__all__ = [
    "APISERVER",
    "CONTROLLERS",
    "ROLES",
    "ServerConfig",
    "ServerError",
    "ServerInfo",
    "parse_roles",
    "redact_url",
    "run",
    "serve",
]
