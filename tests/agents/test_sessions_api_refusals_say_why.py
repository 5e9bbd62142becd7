"""The sessions API refuses a bad bearer credential as the gateway does: 401, the OpenAI error
shape (``{"error": {"message", "type", "param", "code"}}``), ``WWW-Authenticate: Bearer``, and a
message that says what was wrong: no header, a garbled JWT, an expired one, one minted for
another audience. A good workload token gets through. The A2A endpoint and ``/v1/discovery``
refuse in the same shape.

The authentication is the agents extension's own (``bearer_authenticator``) over the real
access feed and workload-token verifier; the runtime is the real one on a scripted model.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from agents.conftest import RecordingTools, ScriptedModel, agent, reply
from corral.agents.runtime import AgentRuntime
from corral.identity import KeyRing, TokenIssuer, Verifier, workload_id
from corral.server.access_feed import AccessFeed
from corral.server.agents_api import SessionsApi
from corral.server.agents_extension import AgentsExtension, bearer_authenticator
from corral.server.config import AGENTS
from corral.server.extensions import ServerContext
from corral.store.protocol import Store

ISSUER = "corral:test"
GATEWAY = "corral-gateway"
CALLER = workload_id("corral.local", "default", "caller")
BASE = "/v1/agents/default/helper/sessions"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def issuer(clock: Clock) -> TokenIssuer:
    return TokenIssuer(
        KeyRing.generate("EdDSA", max_token_ttl=600, clock=clock), ISSUER, clock=clock
    )


@pytest.fixture
async def api(make_runtime: Any, issuer: TokenIssuer, clock: Clock) -> SessionsApi:
    runtime: AgentRuntime = await make_runtime(
        [agent()], ScriptedModel(lambda _messages: reply("hi")), RecordingTools()
    )
    access = AccessFeed(cast(Store, None), lambda token: token == "admin-token")
    access.verifier = Verifier(issuer.keys.jwks(), issuer=ISSUER, audience=GATEWAY, clock=clock)
    return SessionsApi(lambda: runtime, bearer_authenticator(lambda: access), lambda *_: None)


async def create(api: SessionsApi, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://corral") as client:
        return await client.post(BASE, json={}, headers=headers)


def refusal(answer: httpx.Response) -> str:
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["www-authenticate"] == "Bearer"
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (
        "authentication_error",
        "invalid_api_key",
        None,
    )
    message: str = error["message"]
    return message


async def test_a_missing_header_asks_for_one(api: SessionsApi) -> None:
    message = refusal(await create(api, {}))
    assert message == "missing API key: send the header 'Authorization: Bearer <token>'"


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("not.a.jwt", "invalid workload token (malformed)"),
        ("eyJhbGciOiJFZERTQSJ9.%%%.@@@", "invalid workload token"),
        ("crl_no_such_key", "invalid API key in the Authorization header"),
    ],
)
async def test_a_garbled_credential_is_named_as_such(
    api: SessionsApi, token: str, says: str
) -> None:
    assert says in refusal(await create(api, {"authorization": f"Bearer {token}"}))


async def test_an_expired_token_says_it_expired(
    api: SessionsApi, issuer: TokenIssuer, clock: Clock
) -> None:
    token = issuer.mint(CALLER, GATEWAY, 60)
    clock.now += 3600
    message = refusal(await create(api, {"authorization": f"Bearer {token}"}))
    assert message.startswith("invalid workload token (expired): expired at ")


async def test_a_token_for_another_audience_names_the_audience(
    api: SessionsApi, issuer: TokenIssuer
) -> None:
    token = issuer.mint(CALLER, "spiffe://corral.local/ns/default/tool/weather", 60)
    message = refusal(await create(api, {"authorization": f"Bearer {token}"}))
    assert message.startswith("invalid workload token (audience): ")
    assert "'corral-gateway'" in message


async def test_a_good_token_gets_through(api: SessionsApi, issuer: TokenIssuer) -> None:
    token = issuer.mint(CALLER, GATEWAY, 60)
    answer = await create(api, {"authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text


@pytest.fixture
def extension(issuer: TokenIssuer, clock: Clock) -> AgentsExtension:
    """The agents extension's HTTP surface, before its runtime starts: only its refusals."""
    workload = SimpleNamespace(
        verifier=lambda audience: Verifier(
            issuer.keys.jwks(), issuer=ISSUER, audience=audience, clock=clock
        )
    )
    context = SimpleNamespace(config=SimpleNamespace(roles=frozenset({AGENTS})), workload=workload)
    agents = AgentsExtension(cast(ServerContext, context))
    access = AccessFeed(cast(Store, None), lambda token: token == "admin-token")
    access.verifier = Verifier(issuer.keys.jwks(), issuer=ISSUER, audience=GATEWAY, clock=clock)
    agents._access = access
    return agents


async def surface(agents: AgentsExtension, method: str, path: str, token: str | None) -> Any:
    ((_prefix, app), *_rest) = agents.surface_apps()
    headers = {"authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://corral") as client:
        return await client.request(method, path, headers=headers, json={})


async def test_a2a_and_discovery_refuse_in_the_same_shape(
    extension: AgentsExtension, issuer: TokenIssuer, clock: Clock
) -> None:
    a2a = "/v1/agents/default/helper/a2a"
    missing = refusal(await surface(extension, "POST", a2a, None))
    assert missing.startswith("missing workload token")
    for_the_gateway = issuer.mint(CALLER, GATEWAY, 60)
    wrong = refusal(await surface(extension, "POST", a2a, for_the_gateway))
    assert wrong.startswith("invalid workload token (audience): ")
    expiring = issuer.mint(CALLER, "spiffe://corral.local/ns/default/agent/helper", 60)
    clock.now += 3600
    assert refusal(await surface(extension, "POST", a2a, expiring)).startswith(
        "invalid workload token (expired): "
    )
    garbled = refusal(await surface(extension, "GET", "/v1/discovery", "not.a.jwt"))
    assert garbled.startswith("invalid workload token (malformed): ")
    starting = await surface(extension, "GET", "/v1/discovery", "admin-token")
    assert starting.status_code == 503
    assert starting.json()["error"]["code"] == "not_ready"
