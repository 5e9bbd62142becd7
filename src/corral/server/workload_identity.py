"""The workload-identity extension: platform-signed workload JWTs, their keys and the JWKS.

Every process of a deployment signs and verifies with one key ring, kept in the store as the
Secret ``corral-system/workload-signing-keys`` (the store encrypts Secrets at rest, so the
private keys never reach disk, the event log or history in clear). The first process to start
creates it, with one EdDSA key and the deployment's issuer ``corral:<random id>``; every process
follows it with an informer, so a rotation made anywhere is in force everywhere within the
watch's latency.

- ``GET /.well-known/jwks.json`` (every listening process, no auth): the public keys, the
  current one and the retired ones whose tokens may still be live. Never private material.
- ``POST /corral/v1/tokens`` (API server, admin token): mint a token for a workload
  ``{"subject": "ns/name", "audience"?, "ttlSeconds"?, "singleUse"?, "team"?}``
  → ``{"token", "expiresAt", ...}``. The subject becomes the SPIFFE id
  ``spiffe://corral.local/ns/<ns>/agent/<name>``: to policies the caller is
  ``Agent::"spiffe://corral.local/ns/<ns>/agent/<name>"``, in ``Namespace::"<ns>"`` and, with a
  team, in ``Team::"<ns>/<team>"``.
- ``POST /corral/v1/signing-keys/rotate`` (API server, admin token): a fresh current key; the
  old one stays published until every token it signed has expired.

Issuing a token is an audit event (``token:issue``: subject, ``jti``, key, audience, expiry;
never the token); creating and rotating the keys are store writes, audited as such.

In a gateway process the extension hands the access feed a :class:`~corral.identity.Verifier`
(rebuilt on every key change; the ``jti`` replay cache outlives the rebuilds). Replay
protection of single-use tokens is per process: with several gateways behind a balancer a
single-use token can be presented once to each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from corral.api import Object
from corral.api.errors import AlreadyExists, ApiError, BadRequest, Conflict, NotFound
from corral.apiserver.wire import status_response
from corral.audit import AuditEvent
from corral.controlplane import Informer, InformerEvent
from corral.identity import KeyRing, ReplayCache, TokenIssuer, Verifier, workload_id
from corral.identity.jose import b64url_decode
from corral.identity.keyfiles import decode_keys, encode_keys
from corral.server.extensions import Extension, ServerContext

SYSTEM_NAMESPACE = "corral-system"
SIGNING_KEYS_SECRET = "workload-signing-keys"
KEYS_FIELD, ISSUER_FIELD = "keys.json", "issuer"
GATEWAY_AUDIENCE = "corral-gateway"
"""The audience the gateway accepts; a token minted for another audience is refused there."""
TRUST_DOMAIN = "corral.local"
DEFAULT_TOKEN_TTL = 900
MAX_TOKEN_TTL = 3600
JWKS_PATH = "/.well-known/jwks.json"
TOKENS_PATH = "/corral/v1/tokens"
ROTATE_PATH = "/corral/v1/signing-keys/rotate"
JWKS_MAX_AGE_S = 60
"""How long a client may cache the JWKS. Verifiers outside corral that cache it longer may
refuse tokens signed by a freshly rotated key until they refetch."""

_MAX_REQUEST_BYTES = 16 * 1024
_ROTATE_ATTEMPTS = 5
_log = logging.getLogger(__name__)


class WorkloadIdentity(Extension):
    name = "workload-identity"

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self._ring: KeyRing | None = None
        self._issuer: TokenIssuer | None = None
        self._jwks_body = b""
        self._jwks_etag = ""
        self._secret_version: str | None = None
        self.replay_cache = ReplayCache()
        self._follower: asyncio.Task[None] | None = None
        self._verifiers: dict[str, Verifier] = {}
        context.workload = self

    @property
    def ring(self) -> KeyRing:
        if self._ring is None:
            raise RuntimeError("the workload-identity extension has not started")
        return self._ring

    @property
    def issuer(self) -> TokenIssuer:
        if self._issuer is None:
            raise RuntimeError("the workload-identity extension has not started")
        return self._issuer

    @property
    def ready(self) -> bool:
        return self._ring is not None

    def verifier(self, audience: str) -> Verifier:
        """A verifier of this deployment's tokens for ``audience`` (an agent's A2A endpoint,
        a tool), rebuilt when the keys change."""
        found = self._verifiers.get(audience)
        if found is None:
            ring, issuer = self.ring, self.issuer
            found = Verifier(
                ring.jwks(), issuer=issuer.issuer, audience=audience, replay_cache=self.replay_cache
            )
            if len(self._verifiers) >= 1024:
                self._verifiers.clear()
            self._verifiers[audience] = found
        return found

    async def start(self) -> None:
        self._adopt(await self._load_or_create())
        informer = Informer(self.context.store, "Secret", namespace=SYSTEM_NAMESPACE)
        informer.add_handler(self._on_secret)
        self._follower = asyncio.create_task(informer.start(self.context.stop))

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower

    def public_routes(self) -> Sequence[BaseRoute]:
        return [Route(JWKS_PATH, self._jwks, methods=["GET"])]

    def api_routes(self) -> Sequence[BaseRoute]:
        return [
            Route(TOKENS_PATH, self._mint, methods=["POST"]),
            Route(ROTATE_PATH, self._rotate, methods=["POST"]),
        ]

    # -- the key ring in the store ----------------------------------------------------------

    async def _load_or_create(self) -> Object:
        store = self.context.store
        try:
            return await store.get("Secret", SYSTEM_NAMESPACE, SIGNING_KEYS_SECRET)
        except NotFound:
            pass
        ring = KeyRing.generate("EdDSA", max_token_ttl=MAX_TOKEN_TTL)
        issuer = f"corral:{secrets.token_hex(8)}"
        try:
            return await store.create(_secret(issuer, encode_keys(ring.keys)))
        except AlreadyExists:
            # Another process of this deployment created it first: use theirs.
            return await store.get("Secret", SYSTEM_NAMESPACE, SIGNING_KEYS_SECRET)

    def _on_secret(self, event: InformerEvent) -> None:
        metadata = event.object.get("metadata") or {}
        if metadata.get("name") != SIGNING_KEYS_SECRET or event.type == "DELETED":
            return
        if metadata.get("resourceVersion") == self._secret_version:
            return
        try:
            self._adopt(event.object)
        except ValueError as error:
            _log.error("signing keys not reloaded, the previous ones stay in force: %s", error)

    def _adopt(self, secret: Object) -> None:
        """Make the ring in ``secret`` the one this process signs, publishes and verifies with."""
        data = (secret.get("spec") or {}).get("data") or {}
        where = f"Secret {SYSTEM_NAMESPACE}/{SIGNING_KEYS_SECRET}"
        issuer_name = data.get(ISSUER_FIELD)
        if not isinstance(issuer_name, str) or not issuer_name:
            raise ValueError(f"{where}: data.{ISSUER_FIELD} is missing")
        keys = decode_keys(str(data.get(KEYS_FIELD, "")), f"{where} data.{KEYS_FIELD}")
        ring = KeyRing(keys, max_token_ttl=MAX_TOKEN_TTL)
        jwks = ring.jwks()
        verifier = Verifier(
            jwks, issuer=issuer_name, audience=GATEWAY_AUDIENCE, replay_cache=self.replay_cache
        )
        self._jwks_body = orjson.dumps(jwks)
        self._jwks_etag = '"' + hashlib.sha256(self._jwks_body).hexdigest()[:32] + '"'
        self._ring, self._issuer = ring, TokenIssuer(ring, issuer_name)
        self._verifiers = {}
        self._secret_version = (secret.get("metadata") or {}).get("resourceVersion")
        if self.context.access is not None:
            self.context.access.verifier = verifier

    # -- routes -------------------------------------------------------------------------------

    async def _jwks(self, request: Request) -> Response:
        headers = {
            "cache-control": f"public, max-age={JWKS_MAX_AGE_S}",
            "etag": self._jwks_etag,
        }
        if request.headers.get("if-none-match") == self._jwks_etag:
            return Response(status_code=304, headers=headers)
        return Response(self._jwks_body, media_type="application/jwk-set+json", headers=headers)

    async def _mint(self, request: Request) -> Response:
        try:
            fields = _token_request(await _json_object(request))
            subject, audience, ttl, single_use, team = fields
            token = self.issuer.mint(
                subject,
                audience,
                ttl,
                extra={"team": team} if team else None,
                single_use=single_use,
            )
        except ApiError as error:
            return status_response(error)
        except ValueError as error:
            return status_response(BadRequest(str(error)))
        header, claims = (orjson.loads(b64url_decode(part)) for part in token.split(".")[:2])
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        if self.context.audit is not None:
            # What was issued, never the token itself.
            self.context.audit.record(
                AuditEvent(
                    actor="admin",
                    action="token:issue",
                    resource=subject,
                    decision="allow",
                    details={
                        "jti": claims["jti"],
                        "kid": header["kid"],
                        "audience": audience,
                        "exp": claims["exp"],
                        "singleUse": single_use,
                        "team": team,
                    },
                )
            )
        body = {
            "token": token,
            "expiresAt": expires_at.isoformat().replace("+00:00", "Z"),
            "subject": subject,
            "audience": audience,
            "issuer": self.issuer.issuer,
            "kid": header["kid"],
            "singleUse": single_use,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def _rotate(self, _request: Request) -> Response:
        store = self.context.store
        for _ in range(_ROTATE_ATTEMPTS):
            try:
                secret = await store.get("Secret", SYSTEM_NAMESPACE, SIGNING_KEYS_SECRET)
                data = dict((secret.get("spec") or {}).get("data") or {})
                where = f"Secret {SYSTEM_NAMESPACE}/{SIGNING_KEYS_SECRET} data.{KEYS_FIELD}"
                ring = KeyRing(
                    decode_keys(str(data.get(KEYS_FIELD, "")), where), max_token_ttl=MAX_TOKEN_TTL
                )
                fresh = ring.rotate()
                data[KEYS_FIELD] = encode_keys(ring.keys)
                secret["spec"] = {**(secret.get("spec") or {}), "data": data}
                stored = await store.update(secret, actor="workload-identity")
            except Conflict:
                continue  # rotated elsewhere meanwhile: rotate what is there now
            except ApiError as error:
                return status_response(error)
            self._adopt(stored)
            body = {
                "kid": fresh.kid,
                "alg": fresh.alg,
                "published": [key.kid for key in ring.published()],
            }
            return Response(orjson.dumps(body), media_type="application/json")
        return status_response(
            Conflict(f"the signing keys changed {_ROTATE_ATTEMPTS} times during rotation; retry")
        )


def _secret(issuer: str, keys: str) -> Object:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {
            "name": SIGNING_KEYS_SECRET,
            "namespace": SYSTEM_NAMESPACE,
            "labels": {"corral.dev/purpose": "workload-signing-keys"},
        },
        "spec": {"type": "signing-keys", "data": {ISSUER_FIELD: issuer, KEYS_FIELD: keys}},
    }


async def _json_object(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_REQUEST_BYTES:
            raise BadRequest(f"request body is larger than {_MAX_REQUEST_BYTES} bytes")
    try:
        payload = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(payload).__name__}")
    return payload


_TOKEN_FIELDS = frozenset({"subject", "audience", "ttlSeconds", "singleUse", "team"})


def _token_request(payload: dict[str, Any]) -> tuple[str, str, int, bool, str | None]:
    """``(subject as a SPIFFE id, audience, ttl, single use, team)``; BadRequest saying which
    field is wrong."""
    unknown = sorted(set(payload) - _TOKEN_FIELDS)
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(_TOKEN_FIELDS))}"
        )
    subject = payload.get("subject")
    if not isinstance(subject, str) or not subject:
        raise BadRequest("subject: required, 'namespace/name' of the workload or its SPIFFE id")
    audience = payload.get("audience", GATEWAY_AUDIENCE)
    if not isinstance(audience, str) or not audience:
        raise BadRequest(f"audience: must be a non-empty string (default {GATEWAY_AUDIENCE!r})")
    ttl = payload.get("ttlSeconds", DEFAULT_TOKEN_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TOKEN_TTL:
        raise BadRequest(f"ttlSeconds: must be a whole number from 1 to {MAX_TOKEN_TTL}")
    single_use = payload.get("singleUse", False)
    if not isinstance(single_use, bool):
        raise BadRequest("singleUse: must be true or false")
    team = payload.get("team")
    if team is not None and (not isinstance(team, str) or not team):
        raise BadRequest("team: must be a non-empty string naming a Team in the namespace")
    return workload_subject(subject), audience, ttl, single_use, team


def workload_subject(subject: str) -> str:
    """The SPIFFE id for ``namespace/name`` (or a SPIFFE id of this trust domain, unchanged)."""
    prefix = f"spiffe://{TRUST_DOMAIN}/"
    if subject.startswith("spiffe://"):
        if not subject.startswith(prefix):
            raise BadRequest(f"subject: a workload id must be in the trust domain {TRUST_DOMAIN}")
        parts = subject[len(prefix) :].split("/")
        if len(parts) != 4 or parts[0] != "ns":
            raise BadRequest(f"subject: {subject!r} is not {prefix}ns/<namespace>/<type>/<name>")
        namespace, kind, name = parts[1], parts[2], parts[3]
    else:
        namespace, slash, name = subject.partition("/")
        if not slash:
            raise BadRequest(f"subject: {subject!r} is not 'namespace/name'")
        kind = "agent"
    try:
        return workload_id(TRUST_DOMAIN, namespace, name, type=kind)
    except ValueError as error:
        raise BadRequest(f"subject: {error}") from None
