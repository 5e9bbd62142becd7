"""Secret values never reach the database, the watch log or the history in plain text."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from corral.api.validation import validate_object
from corral.store import open_store
from corral.store.encryption import EncryptingStore, SecretKeyError, load_or_create_key

PLAIN = "sk-very-secret-value-1234567890"


def secret(value: str = PLAIN) -> dict[str, Any]:
    return validate_object(
        {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Secret",
            "metadata": {"name": "upstream"},
            "spec": {"type": "api-key", "data": {"apiKey": value}},
        }
    )


async def open_encrypted(path: Path, key: bytes) -> EncryptingStore:
    return EncryptingStore(await open_store(f"sqlite:///{path}"), key)


def database_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_values_round_trip_but_are_ciphertext_on_disk(tmp_path: Path):
    db = tmp_path / "corral.db"
    store = await open_encrypted(db, Fernet.generate_key())
    try:
        created = await store.create(secret(), actor="admin")
        assert created["spec"]["data"] == {"apiKey": PLAIN}
        read = await store.get("Secret", "default", "upstream")
        assert read["spec"]["data"] == {"apiKey": PLAIN}
        listed = await store.list("Secret", "default")
        assert listed.items[0]["spec"]["data"] == {"apiKey": PLAIN}
        history = await store.history("Secret", "default", "upstream")
        assert PLAIN not in repr(history)
    finally:
        await store.close()
    assert PLAIN.encode() not in database_bytes(db)


async def test_watch_events_are_decrypted(tmp_path: Path):
    store = await open_encrypted(tmp_path / "corral.db", Fernet.generate_key())
    try:
        start = await store.current_resource_version()
        await store.create(secret())
        events = store.watch("Secret", resource_version=start)
        event = await asyncio.wait_for(anext(events), 5)
        await events.aclose()
        assert event.object["spec"]["data"]["apiKey"] == PLAIN
    finally:
        await store.close()


async def test_reapplying_the_same_values_changes_nothing(tmp_path: Path):
    store = await open_encrypted(tmp_path / "corral.db", Fernet.generate_key())
    try:
        (first,) = await store.apply([secret()])
        (again,) = await store.apply([secret()])
        (changed,) = await store.apply([secret("another")])
        actions = (first.action, again.action, changed.action)
        assert actions == ("created", "unchanged", "configured")
        assert (await store.get("Secret", "default", "upstream"))["spec"]["data"] == {
            "apiKey": "another"
        }
    finally:
        await store.close()


async def test_wrong_key_is_a_clear_error(tmp_path: Path):
    db = tmp_path / "corral.db"
    store = await open_encrypted(db, Fernet.generate_key())
    await store.create(secret())
    await store.close()
    other = await open_encrypted(db, Fernet.generate_key())
    try:
        with pytest.raises(SecretKeyError, match="different secret key"):
            await other.get("Secret", "default", "upstream")
    finally:
        await other.close()


def test_key_file_is_created_private_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CORRAL_SECRET_KEY", raising=False)
    path = tmp_path / "secret.key"
    key = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key
    os.chmod(path, 0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        load_or_create_key(path)


def test_key_from_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    key = Fernet.generate_key()
    monkeypatch.setenv("CORRAL_SECRET_KEY", key.decode())
    assert load_or_create_key(tmp_path / "secret.key") == key
    assert not (tmp_path / "secret.key").exists()
