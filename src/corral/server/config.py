"""What a corral server process runs and where: roles, address, state dir and store.

:class:`ServerConfig` is built by the CLI (``corral up`` is every role; ``corral serve --role``
picks some) and handed to :func:`corral.server.serve`. Store URLs may hold credentials, so
anything that prints one goes through :func:`redact_url`.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

APISERVER = "apiserver"
CONTROLLERS = "controllers"
GATEWAY = "gateway"
AGENTS = "agents"
ROLES = (APISERVER, CONTROLLERS, GATEWAY, AGENTS)
"""Roles one process can take; ``corral up`` takes them all."""

STORE_FILE = "corral.db"
_SECRET_QUERY_KEYS = {"password", "passfile", "sslpassword", "sslkey"}

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    """Every role of the process shares this one port; 0 picks a free one (in ``server.json``,
    and in the ``ServerInfo`` handed to ``on_ready``)."""
    state_dir: Path = Path(".corral")
    store_url: str | None = None
    """None: SQLite at ``STATE_DIR/corral.db``."""
    roles: frozenset[str] = field(default_factory=lambda: frozenset(ROLES))
    leader_election: bool | None = None
    """None: on for PostgreSQL (several processes may share it), off for SQLite."""
    identity: str | None = None
    """This process's name in leases; None: ``<hostname>-<pid>``."""

    def __post_init__(self) -> None:
        unknown = set(self.roles) - set(ROLES)
        if unknown or not self.roles:
            raise ValueError(f"roles must be some of {', '.join(ROLES)} (got {sorted(self.roles)})")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535 (got {self.port})")

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.state_dir / STORE_FILE).resolve()}"

    @property
    def uses_leader_election(self) -> bool:
        if self.leader_election is not None:
            return self.leader_election
        return is_postgres_url(self.resolved_store_url)

    @property
    def resolved_identity(self) -> str:
        return self.identity or f"{socket.gethostname()}-{os.getpid()}"


def parse_roles(text: str | Iterable[str]) -> frozenset[str]:
    """``"apiserver,gateway"`` (or repeated values) as a role set; ValueError when unknown."""
    parts = [text] if isinstance(text, str) else list(text)
    roles = {role.strip() for part in parts for role in part.split(",") if role.strip()}
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; choose from {', '.join(ROLES)}")
    if not roles:
        raise ValueError(f"name at least one role: {', '.join(ROLES)}")
    return frozenset(roles)


def is_postgres_url(url: str) -> bool:
    return urlsplit(url).scheme.split("+", 1)[0] in ("postgres", "postgresql")


def redact_url(url: str) -> str:
    """``url`` with any password (in the authority or the query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable store URL>"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_in_query = any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs)
    if password is None and not secret_in_query:
        return url  # untouched: urlunsplit would drop the empty authority of sqlite:////path
    netloc = parts.netloc
    if password is not None:
        user_info, _, host = netloc.rpartition("@")
        netloc = f"{user_info.split(':', 1)[0]}:***@{host}"
    query = urlencode(
        [(key, "***" if key.lower() in _SECRET_QUERY_KEYS else value) for key, value in pairs]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def prepare_state_dir(state_dir: Path) -> Path:
    """Create the state dir owner-only (0700); an existing one is kept as it is, with a warning
    when others may read it, since it holds the admin token and the SQLite database."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(state_dir.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        _log.warning(
            "state dir %s is accessible to group or others (mode %04o); it holds the admin "
            "token and the database: consider `chmod 700 %s`",
            state_dir,
            mode,
            state_dir,
        )
    return state_dir
