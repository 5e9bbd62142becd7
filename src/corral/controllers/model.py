"""The Model controller: resolve the artifact, verify its digest, read its metadata.

For each Model it runs :func:`corral.models.inspect_model` (in a thread: hashing reads the whole
file) and reports what it found in status:

- ``Resolved``: the source names a readable file of the declared format;
- ``Verified``: the file's sha256 matches ``spec.digest`` (``Unknown`` when none is pinned,
  ``False`` on a mismatch — such a model is never served);
- ``Ready``: resolved, and not known to be the wrong file. Endpoints serve only Ready models.

While a file is being hashed, ``status.verification = {bytesDone, bytesTotal}`` shows how far
it got (updated at most every ``progress_interval`` seconds, removed when done; see
``corral.controllers.progress``).

Files can change under a Model, so a Ready model is looked at again every ``resync_seconds``;
the digest cache (keyed by path, size, mtime and inode) keeps that cheap.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.api.errors import Conflict, NotFound
from corral.api.kinds.model import MODEL, ModelSpec
from corral.api.objects import ObjectKey
from corral.controllers.progress import FIELD as PROGRESS_FIELD
from corral.controllers.progress import VerificationProgress
from corral.controlplane import Controller, Result, set_condition
from corral.models import ArtifactError, ArtifactReport, DigestMismatch, inspect_model
from corral.store.protocol import Store

logger = logging.getLogger(__name__)

Inspect = Callable[..., ArtifactReport]
"""``inspect_model``'s shape; a seam for tests that need a slow disk."""


class ModelReconciler:
    def __init__(
        self,
        store: Store,
        *,
        digest_cache_dir: Path | None,
        resync_seconds: float = 300.0,
        progress_interval: float = 0.5,
        inspect: Inspect = inspect_model,
    ) -> None:
        self._store = store
        self._digest_cache_dir = digest_cache_dir
        self._resync_seconds = resync_seconds
        self._progress_interval = progress_interval
        self._inspect = inspect

    async def __call__(self, key: ObjectKey) -> Result:
        try:
            model = await self._store.get(MODEL.kind, key.namespace, key.name)
        except NotFound:
            return Result()
        metadata = model["metadata"]
        if metadata.get("deletionTimestamp"):
            return Result()
        spec: ModelSpec = MODEL.parse_spec(model)
        generation = int(metadata.get("generation") or 0)
        status: dict[str, Any] = copy.deepcopy(model.get("status") or {})
        status.pop(PROGRESS_FIELD, None)
        progress = VerificationProgress(self._store, model, interval=self._progress_interval)
        try:
            report = await asyncio.to_thread(
                self._inspect,
                spec.source,
                spec.digest,
                spec.format,
                digest_cache_dir=self._digest_cache_dir,
                progress=progress.report,
            )
        except asyncio.CancelledError:
            progress.abandon()
            raise
        except DigestMismatch as error:
            _clear_artifact_fields(status)
            set_condition(status, "Resolved", True, "Found", "", generation)
            set_condition(status, "Verified", False, error.reason, str(error), generation)
            set_condition(status, "Ready", False, error.reason, "digest mismatch", generation)
        except ArtifactError as error:
            _clear_artifact_fields(status)
            set_condition(status, "Resolved", False, error.reason, str(error), generation)
            set_condition(status, "Verified", "Unknown", "NotResolved", "", generation)
            set_condition(status, "Ready", False, error.reason, str(error), generation)
        else:
            status.update(report.status_fields())
            set_condition(status, "Resolved", True, "Found", str(report.path), generation)
            if report.verified:
                set_condition(status, "Verified", True, "DigestMatches", report.digest, generation)
            else:
                set_condition(
                    status,
                    "Verified",
                    "Unknown",
                    "NoDigestPinned",
                    f"pin spec.digest: {report.digest} to refuse any other file",
                    generation,
                )
            set_condition(status, "Ready", True, "ArtifactReady", "", generation)
        status["observedGeneration"] = generation
        # Progress writes moved the Model on; the final write builds on the last of them.
        model = await progress.close()
        if status != (model.get("status") or {}):
            try:
                await self._store.update_status({**model, "status": status})
            except Conflict:
                # The object changed while we looked: its own event requeues us.
                return Result()
        return Result(requeue_after=self._resync_seconds)


def _clear_artifact_fields(status: dict[str, Any]) -> None:
    for field in ("path", "sizeBytes", "digest", "metadata"):
        status.pop(field, None)


def model_controller(
    store: Store,
    *,
    digest_cache_dir: Path | None,
    resync_seconds: float = 300.0,
    progress_interval: float = 0.5,
    inspect: Inspect = inspect_model,
) -> Controller:
    reconciler = ModelReconciler(
        store,
        digest_cache_dir=digest_cache_dir,
        resync_seconds=resync_seconds,
        progress_interval=progress_interval,
        inspect=inspect,
    )
    return Controller(
        "models", for_kind=MODEL.kind, reconciler=reconciler, max_concurrent_reconciles=2
    )
