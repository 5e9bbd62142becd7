"""Exit codes (0 ok, 1 error, 2 usage), messages instead of tracebacks, and ``--help``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .helpers import Cli, clean_env

COMMANDS = [
    "up", "serve", "apply", "diff", "delete", "get", "describe", "history", "rollback", "logs",
    "chat",
]  # fmt: skip


@pytest.fixture
def offline(tmp_path: Path) -> Cli:
    """The CLI with a state dir that names no server."""
    return Cli(clean_env(CORRAL_STATE_DIR=str(tmp_path / "state")), tmp_path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_server_says_where_and_what_to_do(offline: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = offline("get", "models", "--server", url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach corral at {url}: is `corral up` running?")


def test_no_server_json_says_how_to_start_one(offline: Cli, tmp_path: Path) -> None:
    result = offline("get", "models")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: no running corral found: {tmp_path / 'state' / 'server.json'} does not exist. "
        "Start one with `corral up`, or pass --server / set CORRAL_URL"
    )


def test_chat_and_logs_find_the_server_like_every_command(offline: Cli, tmp_path: Path) -> None:
    for args in (["chat", "-m", "hi"], ["chat"], ["logs", "endpoint/chat"]):
        result = offline(*args)
        assert result.returncode == 1
        assert result.stderr.startswith(
            f"error: no running corral found: {tmp_path / 'state' / 'server.json'} does not exist"
        )


def test_wrong_token_is_refused(cli: Cli) -> None:
    result = cli("get", "models", "--token", "not-the-token")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: invalid bearer token"


def test_missing_manifest_file_is_an_error_not_a_usage_error(offline: Cli) -> None:
    result = offline("apply", "-f", "nope.yaml")
    assert result.returncode == 1
    assert "nope.yaml does not exist" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get"], "Missing argument 'KIND'"),
        (["apply"], "Missing option '-f'"),
        (["get", "models", "-o", "table"], "Invalid value for '-o'"),
        (["get", "model", "x", "-A"], "NAME and -A/--all-namespaces do not go together"),
        (["serve", "--role", "frontend"], "unknown role(s) frontend"),
        (["up", "--port", "70000"], "Invalid value for '--port'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["logs", "model/smol"], "Model objects have no logs: only endpoint objects have logs"),
        (["logs", "widget/x"], "unknown kind 'widget': only endpoint objects have logs"),
        (["logs", "chat"], "name what to read as KIND/NAME, e.g. endpoint/chat (got 'chat')"),
        (["chat", "--temperature", "3"], "Invalid value for '--temperature'"),
        (["chat", "--max-tokens", "0"], "Invalid value for '--max-tokens'"),
        (["chat", "-m", " "], "the message is empty"),
        (["up", "--wait-timeout", "0"], "Invalid value for '--wait-timeout'"),
    ],
)
def test_usage_errors_exit_2(offline: Cli, args: list[str], message: str) -> None:
    result = offline(*args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(offline: Cli, command: str) -> None:
    text = offline.ok(command, "--help")
    assert text.startswith(f"Usage: corral {command} ")
    assert "--help" in text


def test_top_level_help_lists_every_command(offline: Cli) -> None:
    text = offline.ok("--help")
    for command in COMMANDS:
        assert f"  {command} " in text


def test_store_passwords_are_never_printed(offline: Cli, tmp_path: Path) -> None:
    store = f"postgresql://corral:s3cret-pw@127.0.0.1:{free_port()}/corral"
    result = offline(
        "serve", "--role", "apiserver", "--store", store, "--port", "0",
        "--state-dir", str(tmp_path / "state"), "--log-level", "debug",
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: cannot open the store postgresql://corral:***@127.0.0.1:" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
