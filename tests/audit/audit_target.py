"""The audit suite's test target (one database, either backend) and a sample event maker."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from corral.audit import AuditEvent, AuditLog, SigningKey
from corral.store.audit_storage import open_audit_storage


@dataclass
class AuditTarget:
    backend: str
    url: str
    key: SigningKey = field(default_factory=SigningKey.generate)
    opened: list[Any] = field(default_factory=list)

    async def storage(self) -> Any:
        storage = await open_audit_storage(self.url)
        self.opened.append(storage)
        return storage

    async def log(self, **options: Any) -> AuditLog:
        log = await AuditLog.open(await self.storage(), self.key, **options)
        self.opened.insert(0, log)  # logs close before the storage under them
        return log

    async def tamper(self, *statements: str) -> None:
        """Run ``statements`` after dropping the append-only triggers, as an attacker would."""
        tables = ("audit_records", "audit_checkpoints")
        if self.backend == "sqlite":
            guards = [
                f"DROP TRIGGER {table}_no_{operation}"
                for table in tables
                for operation in ("update", "delete")
            ]
        else:
            guards = [f"DROP TRIGGER {table}_append_only ON {table}" for table in tables]
        await self.run_sql(*guards, *statements)

    async def run_sql(self, *statements: str) -> None:
        """Run ``statements`` in one transaction straight against the database."""
        if self.backend == "sqlite":
            connection = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                with connection:
                    for statement in statements:
                        connection.execute(statement)
            finally:
                connection.close()
            return
        pg = await asyncpg.connect(self.url, timeout=5)
        try:
            async with pg.transaction():
                for statement in statements:
                    await pg.execute(statement)
        finally:
            await pg.close()

    def blob(self, data: bytes) -> str:
        """``data`` as a SQL literal of the backend's bytes type."""
        return f"X'{data.hex()}'" if self.backend == "sqlite" else f"decode('{data.hex()}', 'hex')"

    async def close_all(self) -> None:
        for opened in self.opened:
            await opened.close()


def event(number: int, **fields: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "actor": f"spiffe://corral/ns/default/agent/a{number % 3}",
        "action": "invoke",
        "resource": "default/Endpoint/chat",
        "decision": "allow",
        "policies": ["allow-team"],
        "cost": 0.25 * number,
        "details": {"n": number, "tokens": {"in": number, "out": 2 * number}},
    }
    base.update(fields)
    return AuditEvent(**base)
