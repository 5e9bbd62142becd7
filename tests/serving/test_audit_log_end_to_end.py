"""The audit log end to end: a real ``corral up`` (SQLite store), the official ``openai``
client, the real ``corral`` CLI, and then an attacker editing the audit file directly.

Allowed and denied requests become records naming the deciding policy; a ``corral apply``
becomes a record with actor ``admin``; Secret values appear nowhere in the log. ``corral audit
verify`` (over the API, and offline with ``--db``) passes on the untouched log and fails with
exit 1 naming the seq after each tampering: an edited decision, a deleted record, two records
swapped.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from .fake_upstream import fake_upstream
from .helpers import CONVERGE_TIMEOUT_S, CORRAL, HELLO, Corral, endpoint, is_ready

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "sk-audited-upstream-9c2e"
ADMIN_POLICY = "corral-system/admin-invokes-everything"
SEARCH_MAY_INVOKE = """@id("search-invokes")
permit (principal in Team::"default/search", action == Action::"invoke", resource is Endpoint);
"""
NO_BIG_REQUESTS = """@id("no-big-requests")
forbid (principal, action == Action::"invoke", resource)
when { context.estimated_tokens > 1000 };
"""
POLICY_MANIFEST = """apiVersion: corral.dev/v1alpha1
kind: Policy
metadata:
  name: {name}
spec:
  cedar: |
{cedar}"""


@dataclass
class Audited:
    server: Corral
    root: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [CORRAL, *args, "--server", self.server.url, "--token", self.server.token]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def records(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        start: int | None = 0
        while start is not None:
            page = self.server.api().get("/corral/v1/audit/records", params={"from": start})
            assert page.status_code == 200, page.text
            items.extend(page.json()["items"])
            start = page.json()["next"]
        return items

    def checkpoints(self) -> list[dict[str, Any]]:
        answer = self.server.api().get("/corral/v1/audit/checkpoints")
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    root = tmp_path_factory.mktemp("corral-audited")
    with pytest.MonkeyPatch.context() as env:
        # Checkpoints often, so the test can wait for one covering everything before tampering.
        env.setenv("CORRAL_AUDIT_CHECKPOINT_INTERVAL", "0.2")
        server = Corral(root / "state", root / "logs").start()
    try:
        with fake_upstream(UPSTREAM_KEY) as upstream:
            server.wait_ready()
            chat = endpoint(
                "audited-chat",
                {"up-model": 100},
                runtime={"type": "openai", "baseURL": upstream.base_url, "secretRef": "up-key"},
            )
            secret = {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Secret",
                "metadata": {"name": "up-key"},
                "spec": {"type": "api-key", "data": {"apiKey": UPSTREAM_KEY}},
            }
            server.apply(secret, chat)
            server.wait_for("endpoints", "audited-chat", is_ready)
            yield Audited(server, root)
    finally:
        code = server.stop()
    assert code == 0, server.stderr


def ask(client: openai.OpenAI, **extra: Any) -> str:
    answer = client.chat.completions.create(model="audited-chat", messages=HELLO, **extra)
    return str(answer.choices[0].message.content)


def until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def invokes(audited: Audited, actor_prefix: str) -> list[dict[str, Any]]:
    return [
        record
        for record in audited.records()
        if record["action"] == "invoke" and record["actor"].startswith(actor_prefix)
    ]


def apply_policy(audited: Audited, name: str, cedar: str) -> None:
    manifest = audited.root / f"{name}.yaml"
    indented = "".join(f"    {line}\n" for line in cedar.strip().splitlines())
    manifest.write_text(POLICY_MANIFEST.format(name=name, cedar=indented))
    applied = audited.cli("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr


def verify(audited: Audited, *extra: str) -> subprocess.CompletedProcess[str]:
    return audited.cli("audit", "verify", *extra)


def test_decisions_and_writes_are_recorded_and_verify(audited: Audited) -> None:
    with audited.server.openai() as admin:
        assert ask(admin) == "upstream says: Say hello."
    (allowed,) = until(lambda: invokes(audited, "user:admin"), "the admin call was not recorded")
    assert allowed["decision"] == "allow"
    assert allowed["policies"] == [ADMIN_POLICY]
    assert allowed["resource"] == "Endpoint/default/audited-chat"
    assert allowed["details"]["status"] == 200
    assert allowed["details"]["model"] == "audited-chat"
    assert allowed["details"]["outputTokens"] > 0

    created = audited.cli("keys", "create", "--team", "search", "--create-team")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    with audited.server.openai(api_key=key) as client:
        with pytest.raises(openai.PermissionDeniedError):
            ask(client)  # no policy permits the team yet: denied by default
        apply_policy(audited, "search-invokes", SEARCH_MAY_INVOKE)
        apply_policy(audited, "no-big-requests", NO_BIG_REQUESTS)

        def forbidden() -> bool:
            try:
                ask(client, max_tokens=5000)
            except openai.PermissionDeniedError as error:
                return "no-big-requests" in error.message
            return False

        until(forbidden, "the forbid policy never took effect")
        assert ask(client, max_tokens=20) == "upstream says: Say hello."

    team_calls = until(
        lambda: [r for r in invokes(audited, "team-key:") if r["details"]["status"] == 200],
        "the team's allowed call was not recorded",
    )
    everything = invokes(audited, "team-key:")
    assert all(record["details"]["team"] == "search" for record in everything)
    default_denied = [r for r in everything if r["decision"] == "deny" and not r["policies"]]
    assert default_denied, everything
    assert default_denied[0]["details"]["status"] == 403
    forbids = [r for r in everything if r["decision"] == "deny" and r["policies"]]
    assert forbids, everything
    assert forbids[-1]["policies"] == ["default/no-big-requests"]
    assert team_calls[-1]["decision"] == "allow"
    assert team_calls[-1]["policies"] == ["default/search-invokes"]

    records = audited.records()
    applied = [r for r in records if r["resource"] == "Policy/default/search-invokes"]
    assert applied[0]["actor"] == "admin"
    assert applied[0]["action"] == "apply:created"
    assert applied[0]["decision"] == "written"
    assert any(r["resource"] == "Secret/default/up-key" and r["actor"] == "admin" for r in records)
    assert UPSTREAM_KEY not in json.dumps(records)
    assert [r["seq"] for r in records] == list(range(len(records)))

    checked = verify(audited)
    assert checked.returncode == 0, checked.stderr
    assert f"records checked: {len(records)}" in checked.stdout
    assert "ok: the audit log is intact" in checked.stdout

    tail = audited.cli("audit", "tail", "-n", "3", "-o", "json")
    assert tail.returncode == 0, tail.stderr
    assert [r["seq"] for r in json.loads(tail.stdout)["items"]][-1] >= records[-1]["seq"]


def test_tampering_with_the_audit_file_is_detected(audited: Audited) -> None:
    with audited.server.openai() as admin:
        for _ in range(3):
            ask(admin)
    size = until(
        lambda: len(audited.records()) >= 6 and len(audited.records()),
        "records missing",
    )
    # Wait until a checkpoint covers every record, so the log writes nothing while we tamper.
    until(
        lambda: (cps := audited.checkpoints()) and cps[-1]["size"] == len(audited.records()),
        "no checkpoint covering the whole log",
    )
    assert size >= 6
    keys = audited.cli("audit", "keys")
    assert keys.returncode == 0, keys.stderr
    public_key = audited.root / "audit.pub"
    public_key.write_text("\n".join(line for line in keys.stdout.splitlines() if line[:1] != "#"))
    database = audited.server.state_dir / "audit.db"
    offline = ["--db", str(database), "--public-key", str(public_key)]
    assert verify(audited, *offline).returncode == 0
    assert verify(audited, "--public-key", str(public_key)).returncode == 0

    victim = size - 3
    with Tamper(database) as tamper:
        original = tamper.row(victim)
        tamper.run("UPDATE audit_records SET decision = 'deny' WHERE seq = ?", victim)
        for args in ((), offline):
            failed = verify(audited, *args)
            assert failed.returncode == 1, failed.stdout
            assert f"first bad seq {victim}" in failed.stderr
            assert f"record seq {victim}: its fields do not hash" in failed.stderr
        tamper.run("DELETE FROM audit_records WHERE seq = ?", victim)
        tamper.insert(original)
        assert verify(audited).returncode == 0

        tamper.run("UPDATE audit_records SET details = 'not json' WHERE seq = ?", victim)
        for args in ((), offline):
            failed = verify(audited, *args)
            assert failed.returncode == 1, failed.stdout
            assert f"first bad seq {victim}" in failed.stderr
            assert "unreadable" in failed.stderr
            assert f"records checked: {victim}" in failed.stdout
        tamper.run("DELETE FROM audit_records WHERE seq = ?", victim)
        tamper.insert(original)

        tamper.run("DELETE FROM audit_records WHERE seq = ?", victim)
        for args in ((), offline):
            failed = verify(audited, *args)
            assert failed.returncode == 1, failed.stdout
            assert f"first bad seq {victim}" in failed.stderr
            assert f"record seq {victim} is missing" in failed.stderr
        tamper.insert(original)
        assert verify(audited).returncode == 0

        tamper.run("UPDATE audit_records SET seq = -1 WHERE seq = ?", victim)
        tamper.run("UPDATE audit_records SET seq = ? WHERE seq = ?", victim, victim + 1)
        tamper.run("UPDATE audit_records SET seq = ? WHERE seq = -1", victim + 1)
        for args in ((), offline):
            failed = verify(audited, *args)
            assert failed.returncode == 1, failed.stdout
            assert f"first bad seq {victim}" in failed.stderr

        tamper.run("DELETE FROM audit_records WHERE seq >= ?", victim)
        failed = verify(audited)
        assert failed.returncode == 1
        assert f"first bad seq {victim}" in failed.stderr
        assert "truncated" in failed.stderr


class Tamper:
    """Direct SQL on the audit file, as an attacker with file access would (triggers dropped)."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=30)

    def __enter__(self) -> Tamper:
        for operation in ("update", "delete"):
            self.connection.execute(f"DROP TRIGGER audit_records_no_{operation}")
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()

    def run(self, sql: str, *args: Any) -> None:
        self.connection.execute(sql, args)

    def row(self, seq: int) -> tuple[Any, ...]:
        found = self.connection.execute("SELECT * FROM audit_records WHERE seq = ?", (seq,))
        row = found.fetchone()
        assert row is not None
        return tuple(row)

    def insert(self, row: tuple[Any, ...]) -> None:
        marks = ",".join("?" * len(row))
        self.connection.execute(f"INSERT INTO audit_records VALUES ({marks})", row)


def test_the_audit_routes_need_the_admin_token_check_input_and_report_metrics(
    audited: Audited,
) -> None:
    import httpx

    url = audited.server.url
    assert httpx.get(f"{url}/corral/v1/audit/records", timeout=10).status_code == 401
    bad = audited.server.api().get("/corral/v1/audit/records", params={"limit": "lots"})
    assert bad.status_code == 400
    assert "limit='lots'" in bad.json()["message"]
    metrics = audited.server.api().get("/metrics").text
    assert "corral_audit_lost_events_total 0.0" in metrics
    assert "corral_audit_queued_events" in metrics
