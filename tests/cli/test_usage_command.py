"""``corral usage`` without a server: bad time bounds and groupings are usage errors (exit 2)
that say what is wrong before any connection; an unreachable server is a one-line error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .helpers import Cli, clean_env


@pytest.fixture
def offline(tmp_path: Path) -> Cli:
    return Cli(clean_env(CORRAL_STATE_DIR=str(tmp_path / "state")), tmp_path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "Invalid value for --since: 'yesterday' is neither a duration"),
        (("--since", "24"), "Invalid value for --since: '24' is neither a duration"),
        (("--until", "2026-01-31T12:00:00"), "'2026-01-31T12:00:00' has no time zone: add Z"),
        (("--by", "colour"), "Invalid value for '--by': 'colour' is not one of 'team', 'key'"),
        (("-o", "yaml"), "'yaml' is not one of 'table', 'json'"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(
    offline: Cli, args: tuple[str, ...], message: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = offline("usage", *args, "--server", url)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_an_unreachable_server_is_one_line_saying_where(offline: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = offline("usage", "--by", "team", "--since", "7d", "--server", url, "--token", "t")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach corral at {url}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_names_the_groupings_and_time_formats(offline: Cli) -> None:
    shown = offline.ok("usage", "--help")
    assert "[team|key|model|endpoint]" in shown
    assert "--since" in shown
    assert "--until" in shown
