"""Encryption at rest for ``Secret`` objects: a wrapper around any :class:`Store`.

Every Secret's ``spec.data`` is replaced by one Fernet token (AES-128-CBC + HMAC-SHA256) before
the inner store sees it, so the database, the watch log and the history hold ciphertext only;
reads and watch events are decrypted on the way out. Other kinds pass through untouched.

The key lives in a file (``STATE_DIR/secret.key``, mode 0600) or in ``CORRAL_SECRET_KEY``; every
process sharing one database must use the same key.
"""

from __future__ import annotations

import builtins
import copy
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from corral.api.errors import ApiError
from corral.api.objects import Object
from corral.store.protocol import ApplyOutcome, HistoryEntry, ListResult, Store, WatchEvent

SECRET_KIND = "Secret"
_CIPHERTEXT_FIELD = "encryptedData"


class SecretKeyError(ApiError):
    reason = "InternalError"
    code = 500


def load_or_create_key(path: Path) -> bytes:
    """The Fernet key from ``CORRAL_SECRET_KEY`` or ``path``; a new key is written 0600 once."""
    from_env = os.environ.get("CORRAL_SECRET_KEY")
    if from_env:
        return from_env.encode()
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise SecretKeyError(f"{path} is readable by group or others; run: chmod 600 {path}")
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


class EncryptingStore:
    """A :class:`Store` that encrypts Secret data on the way in and decrypts it on the way out."""

    def __init__(self, inner: Store, key: bytes) -> None:
        self._inner = inner
        self._fernet = Fernet(key)

    # -- transforms -------------------------------------------------------------------------

    def _seal(self, obj: Object) -> Object:
        if obj.get("kind") != SECRET_KIND:
            return obj
        sealed = copy.copy(obj)
        spec = dict(obj.get("spec") or {})
        data = spec.pop("data", {}) or {}
        spec[_CIPHERTEXT_FIELD] = self._fernet.encrypt(orjson.dumps(data)).decode()
        sealed["spec"] = spec
        return sealed

    def _open(self, obj: Object) -> Object:
        if obj.get("kind") != SECRET_KIND:
            return obj
        spec = dict(obj.get("spec") or {})
        token = spec.pop(_CIPHERTEXT_FIELD, None)
        if token is None:
            return obj
        try:
            data: Any = orjson.loads(self._fernet.decrypt(str(token).encode()))
        except InvalidToken:
            raise SecretKeyError(
                "cannot decrypt Secret data: this process uses a different secret key than "
                "the one the data was written with (CORRAL_SECRET_KEY / STATE_DIR/secret.key)"
            ) from None
        spec["data"] = data
        opened = copy.copy(obj)
        opened["spec"] = spec
        return opened

    async def _seal_for_apply(self, obj: Object) -> Object:
        # Fernet tokens are randomised: re-encrypting unchanged data would look like a change
        # on every apply, so reuse the stored token when the plain text is the same.
        if obj.get("kind") != SECRET_KIND:
            return obj
        meta = obj.get("metadata") or {}
        try:
            stored = await self._inner.get(SECRET_KIND, meta.get("namespace", ""), meta["name"])
        except ApiError:
            return self._seal(obj)
        if self._open(stored).get("spec", {}).get("data") == (obj.get("spec") or {}).get("data"):
            sealed = copy.copy(obj)
            spec = {k: v for k, v in (obj.get("spec") or {}).items() if k != "data"}
            spec[_CIPHERTEXT_FIELD] = stored["spec"][_CIPHERTEXT_FIELD]
            sealed["spec"] = spec
            return sealed
        return self._seal(obj)

    # -- the Store protocol -------------------------------------------------------------------

    async def get(self, kind: str, namespace: str, name: str) -> Object:
        return self._open(await self._inner.get(kind, namespace, name))

    async def list(
        self,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        result = await self._inner.list(
            kind,
            namespace,
            label_selector=label_selector,
            limit=limit,
            continue_token=continue_token,
        )
        if kind != SECRET_KIND:
            return result
        return ListResult(
            [self._open(item) for item in result.items],
            result.resource_version,
            result.continue_token,
        )

    async def create(self, obj: Object, *, actor: str = "") -> Object:
        return self._open(await self._inner.create(self._seal(obj), actor=actor))

    async def update(self, obj: Object, *, actor: str = "") -> Object:
        return self._open(await self._inner.update(self._seal(obj), actor=actor))

    async def update_status(self, obj: Object) -> Object:
        return self._open(await self._inner.update_status(self._seal(obj)))

    async def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        actor: str = "",
        resource_version: str | None = None,
    ) -> Object:
        deleted = await self._inner.delete(
            kind, namespace, name, actor=actor, resource_version=resource_version
        )
        return self._open(deleted)

    async def apply(
        self,
        objects: builtins.list[Object],
        *,
        actor: str = "",
        dry_run: bool = False,
        prune_selector: str | None = None,
        prune_kinds: builtins.list[str] | None = None,
    ) -> builtins.list[ApplyOutcome]:
        sealed = [await self._seal_for_apply(obj) for obj in objects]
        outcomes = await self._inner.apply(
            sealed,
            actor=actor,
            dry_run=dry_run,
            prune_selector=prune_selector,
            prune_kinds=prune_kinds,
        )
        return [
            ApplyOutcome(o.kind, o.namespace, o.name, o.action, self._open(o.object), o.diff)
            for o in outcomes
        ]

    async def watch(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        *,
        resource_version: int | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[WatchEvent]:
        events = self._inner.watch(
            kind, namespace, resource_version=resource_version, label_selector=label_selector
        )
        async for event in events:
            if event.object.get("kind") == SECRET_KIND:
                event = WatchEvent(event.type, self._open(event.object), event.resource_version)
            yield event

    async def history(self, kind: str, namespace: str, name: str) -> builtins.list[HistoryEntry]:
        # History keeps the ciphertext: who changed a Secret and when, never its values.
        return await self._inner.history(kind, namespace, name)

    async def current_resource_version(self) -> int:
        return await self._inner.current_resource_version()

    async def close(self) -> None:
        await self._inner.close()
