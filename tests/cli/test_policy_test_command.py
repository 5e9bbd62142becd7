"""``corral policy test``: policies and one request in, allow or deny out (exit 0 or 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Cli, clean_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
FORBID_NIGHTS = """\
apiVersion: corral.dev/v1alpha1
kind: Policy
metadata: {name: no-nights}
spec:
  cedar: |
    forbid (principal, action == Action::"invoke", resource) when { context.time.hour < 6 };
"""


def request(team: str, hour: int) -> str:
    return f"""\
principal: {{kind: team-key, id: default/ci-key, team: {team}, namespace: default}}
action: invoke
resource: {{kind: Endpoint, metadata: {{name: chat, namespace: default}}}}
context: {{model: chat, estimated_tokens: 900, time: "2026-01-05T{hour:02d}:00:00Z"}}
"""


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(clean_env(CORRAL_STATE_DIR=str(tmp_path / "state")), tmp_path)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_permitted_request_prints_allow_and_the_policy(cli: Cli, tmp_path: Path) -> None:
    asked = write(tmp_path, "admins.yaml", request("admins", 10))
    result = cli("policy", "test", "-f", str(EXAMPLES), "--request", asked)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "allow (permitted by default/admins-invoke-endpoints)"


def test_no_permit_is_a_deny_by_default_with_exit_1(cli: Cli, tmp_path: Path) -> None:
    asked = write(tmp_path, "search.yaml", request("search", 10))
    result = cli("policy", "test", "-f", str(EXAMPLES), "--request", asked)
    assert result.returncode == 1
    assert result.stdout.strip() == "deny (no policy permits it: denied by default)"


def test_a_forbid_overrides_the_permit_and_is_named(cli: Cli, tmp_path: Path) -> None:
    forbid = write(tmp_path, "forbid.yaml", FORBID_NIGHTS)
    asked = write(tmp_path, "night.yaml", request("admins", 3))
    result = cli("policy", "test", "-f", str(EXAMPLES), "-f", forbid, "--request", asked)
    assert result.returncode == 1
    assert result.stdout.strip() == "deny (forbidden by default/no-nights)"


def test_a_bad_request_names_the_file_and_field(cli: Cli, tmp_path: Path) -> None:
    asked = write(tmp_path, "bad.yaml", request("admins", 10).replace("invoke", "juggle"))
    result = cli("policy", "test", "-f", str(EXAMPLES), "--request", asked)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {asked}: invalid request")
    assert "action" in result.stderr
    assert "juggle" not in result.stdout


def test_help_documents_the_exit_codes(cli: Cli) -> None:
    text = cli("policy", "test", "--help").stdout
    assert "0 allow, 1 deny" in text
    keys_help = cli("keys", "--help").stdout
    assert all(verb in keys_help for verb in ("create", "list", "revoke"))


def test_a_bad_expiry_is_a_usage_error(cli: Cli) -> None:
    result = cli("keys", "create", "--team", "search", "--expires", "soon")
    assert result.returncode == 2
    assert "'soon' is not a duration" in result.stderr
