"""An Endpoint's replicas are started for Ready models, replaced when killed, drained on delete."""

import asyncio
import os
import signal

import httpx

from corral.api import NotFound

from .helpers import QUICKSTART_DIGEST, Plane, condition, endpoint, model


def replicas(obj):
    return (obj.get("status") or {}).get("replicas") or []


def ready_count(obj):
    return (obj.get("status") or {}).get("readyReplicas")


async def test_endpoint_serves_then_recovers_from_kill_then_drains_on_delete(plane: Plane):
    await plane.apply(model("small", digest=QUICKSTART_DIGEST), endpoint("chat", ("small", 100)))
    chat = await plane.wait_for("Endpoint", "chat", lambda e: condition(e, "Ready") == "True")
    assert condition(chat, "Available") == "True"
    assert "corral.dev/replicas" in chat["metadata"]["finalizers"]
    (replica,) = replicas(chat)
    assert replica["state"] == "Ready"
    assert replica["apiBase"] == f"{replica['address']}/v1"  # where the gateway sends requests
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{replica['apiBase']}/models", timeout=10)
    assert answer.status_code == 200

    os.kill(replica["pid"], signal.SIGKILL)
    back = await plane.wait_for(
        "Endpoint",
        "chat",
        lambda e: bool(replicas(e)) and replicas(e)[0]["restarts"] >= 1 and replicas(e)[0]["ready"],
    )
    assert replicas(back)[0]["pid"] != replica["pid"]

    await plane.store.delete("Endpoint", "default", "chat")
    await _wait_deleted(plane)
    assert all(status.endpoint != "chat" for status in plane.supervisor.statuses())
    try:
        os.kill(replicas(back)[0]["pid"], 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError("the replica process outlived its deleted Endpoint")


async def _wait_deleted(plane: Plane) -> None:
    for _ in range(200):
        try:
            await plane.store.get("Endpoint", "default", "chat")
        except NotFound:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("Endpoint with finalizer was never released")


async def test_scaling_changes_replica_count(plane: Plane):
    await plane.apply(model("small"), endpoint("chat", ("small", 100), replicas=2))
    chat = await plane.wait_for("Endpoint", "chat", lambda e: ready_count(e) == 2)
    assert len({r["address"] for r in replicas(chat)}) == 2
    await plane.apply(model("small"), endpoint("chat", ("small", 100), replicas=1))
    scaled = await plane.wait_for(
        "Endpoint",
        "chat",
        lambda e: len(replicas(e)) == 1 and ready_count(e) == 1,
    )
    assert condition(scaled, "Available") == "True"


async def test_endpoint_waits_for_its_model(plane: Plane):
    await plane.apply(endpoint("chat", ("later", 100)))
    waiting = await plane.wait_for(
        "Endpoint", "chat", lambda e: condition(e, "ModelsReady") == "False"
    )
    assert condition(waiting, "Ready") == "False"
    assert "later does not exist" in str(waiting["status"]["conditions"])
    await plane.apply(model("later"), endpoint("chat", ("later", 100)))
    await plane.wait_for("Endpoint", "chat", lambda e: condition(e, "Ready") == "True")
