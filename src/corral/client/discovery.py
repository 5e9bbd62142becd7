"""Finding the server: where ``corral up`` says it listens, and the admin token it made.

``corral up`` writes ``STATE_DIR/server.json`` (``{"url", "pid"}``) once it serves and removes
it on exit; the admin token lives in ``STATE_DIR/admin.token``. The CLI resolves its connection
here: explicit flags first, then ``CORRAL_URL`` / ``CORRAL_TOKEN``, then the state dir
(``--state-dir``, ``CORRAL_STATE_DIR`` or ``./.corral``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from corral.client.errors import NoServerFound

DEFAULT_STATE_DIR = ".corral"
SERVER_INFO_FILE = "server.json"
TOKEN_FILE = "admin.token"


@dataclass(frozen=True)
class Connection:
    url: str
    token: str | None


def state_dir_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """The state dir: the argument, else ``CORRAL_STATE_DIR``, else ``./.corral``."""
    chosen = state_dir or os.environ.get("CORRAL_STATE_DIR") or DEFAULT_STATE_DIR
    return Path(chosen)


def resolve_connection(
    server: str | None = None,
    token: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> Connection:
    """Where to talk to and with which token; raise :class:`NoServerFound` when unknown."""
    directory = state_dir_path(state_dir)
    url = server or os.environ.get("CORRAL_URL") or _url_from_state_dir(directory)
    chosen_token = token or os.environ.get("CORRAL_TOKEN") or read_token(directory)
    return Connection(url.rstrip("/"), chosen_token)


def read_token(state_dir: Path) -> str | None:
    try:
        return (state_dir / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def read_server_info(state_dir: Path) -> dict[str, object] | None:
    """The contents of ``server.json``, or None when absent or unreadable."""
    try:
        info = json.loads((state_dir / SERVER_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def write_server_info(state_dir: Path, url: str, pid: int) -> Path:
    """Publish where this server listens; written atomically so readers never see half."""
    path = state_dir / SERVER_INFO_FILE
    partial = path.with_suffix(f".{pid}.tmp")
    partial.write_text(json.dumps({"url": url, "pid": pid}) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def remove_server_info(state_dir: Path, pid: int) -> None:
    """Remove ``server.json`` if it is still this process's (another may have replaced it)."""
    info = read_server_info(state_dir)
    if info is not None and info.get("pid") == pid:
        (state_dir / SERVER_INFO_FILE).unlink(missing_ok=True)


def _url_from_state_dir(state_dir: Path) -> str:
    info = read_server_info(state_dir)
    url = info.get("url") if info else None
    if not isinstance(url, str) or not url:
        raise NoServerFound(
            f"no running corral found: {state_dir / SERVER_INFO_FILE} does not exist. "
            "Start one with `corral up`, or pass --server / set CORRAL_URL"
        )
    return url
