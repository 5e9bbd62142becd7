"""/apis and /openapi need the admin bearer token; health, readiness and metrics do not; the
token file is created once, private, and refused when others can read it."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from corral.apiserver import TokenFileError, create_app, load_or_create_admin_token
from corral.store import Store, open_store

from .helpers import API, TOKEN, model, models_path


@pytest.fixture
async def anonymous(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://corral.test"
    ) as http:
        yield http


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "authentication required"),
        ("Basic dXNlcjpwYXNz", "malformed Authorization header"),
        ("Bearer", "malformed Authorization header"),
        ("Bearer   ", "malformed Authorization header"),
        ("Bearer wrong-token", "invalid bearer token"),
        (f"Bearer {TOKEN}x", "invalid bearer token"),
    ],
)
async def test_requests_without_the_admin_token_get_401(
    anonymous: httpx.AsyncClient, header: str | None, message: str
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    for method, path in (
        ("GET", models_path()),
        ("POST", models_path()),
        ("GET", "/openapi/v3"),
    ):
        answer = await anonymous.request(method, path, headers=headers, json=model("x"))
        assert answer.status_code == 401, (method, path)
        assert answer.json()["reason"] == "Unauthorized"
        assert message in answer.json()["message"]
        assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_the_scheme_is_case_insensitive(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.get(API, headers={"Authorization": f"bearer {TOKEN}"})
    assert answer.status_code == 200


async def test_health_readiness_and_metrics_need_no_token(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/healthz")).text == "ok"
    assert (await anonymous.get("/readyz")).text == "ok"
    assert (await anonymous.get("/metrics")).status_code == 200


async def test_readiness_fails_when_the_store_is_gone(tmp_path: Path) -> None:
    store: Store = await open_store(f"sqlite:///{tmp_path / 'gone.db'}")
    app = create_app(store, admin_token=TOKEN)
    await store.close()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://corral.test"
    ) as anonymous:
        answer = await anonymous.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["reason"] == "ServiceUnavailable"
    assert "store is not reachable" in answer.json()["message"]


def test_empty_admin_token_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="admin_token"):
        create_app(store, admin_token="")


def test_token_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token, created = load_or_create_admin_token(state)
    assert created
    assert len(token) >= 32
    path = state / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_admin_token(state) == (token, False)
    assert load_or_create_admin_token(tmp_path / "other")[0] != token


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_admin_token(tmp_path)
    path = tmp_path / "admin.token"
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match=r"chmod 600 .*admin\.token"):
        load_or_create_admin_token(tmp_path)


def test_empty_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(TokenFileError, match="is empty"):
        load_or_create_admin_token(tmp_path)
