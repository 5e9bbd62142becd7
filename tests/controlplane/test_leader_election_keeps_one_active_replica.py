"""Leader election: one replica runs the controllers; a dead or deposed leader is replaced."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from corral.api.objects import ObjectKey
from corral.controlplane import Controller, Manager, Result
from corral.store import Store, open_store

from .helpers import eventually, model, running, sample

REPLICA_SCRIPT = Path(__file__).with_name("leader_process.py")
LEASE = ("Lease", "corral-system", "corral-controllers")


async def lease_holder(store: Store) -> str:
    try:
        lease = await store.get(*LEASE)
    except Exception:
        return ""
    return str(lease["spec"].get("holderIdentity") or "")


def replica(store: Store, identity: str, calls: list[str], registry: CollectorRegistry) -> Manager:
    async def reconcile(_key: ObjectKey) -> Result:
        calls.append(identity)
        return Result(requeue_after=0.05)

    manager = Manager(store, identity=identity, leader_election=True, registry=registry)
    manager.add(Controller("ticker", for_kind="Model", reconciler=reconcile))
    return manager


@pytest.mark.postgres
async def test_two_managers_on_one_database_elect_exactly_one_leader(
    postgres_dsn: str,
) -> None:
    stores = [await open_store(postgres_dsn), await open_store(postgres_dsn)]
    try:
        await stores[0].create(model("llama"))
        calls: list[str] = []
        registries = [CollectorRegistry(), CollectorRegistry()]
        first = replica(stores[0], "first", calls, registries[0])
        second = replica(stores[1], "second", calls, registries[1])
        async with running(first), running(second):
            await eventually(lambda: first.ready or second.ready, what="a leader")
            leader, follower = (first, second) if first.ready else (second, first)
            await eventually(lambda: len(calls) >= 3, what="the leader to reconcile")
            assert not follower.ready
            assert not follower.is_leader
            assert set(calls) == {leader.identity}
            assert await lease_holder(stores[0]) == leader.identity
            leading = [
                sample(
                    r, "corral_leader_election_leading", lease="corral-system/corral-controllers"
                )
                for r in registries
            ]
            assert sorted(leading) == [0.0, 1.0]
        # Both stopped; the leader released the lease on its way out.
        assert await lease_holder(stores[0]) == ""
    finally:
        for store in stores:
            await store.close()


async def test_a_leader_that_sees_another_holder_stops_its_controllers_at_once(
    store: Store, registry: CollectorRegistry
) -> None:
    await store.create(model("llama"))
    started: list[float] = []
    cancelled: list[float] = []

    async def reconcile(_key: ObjectKey) -> Result:
        started.append(time.monotonic())
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(time.monotonic())
            raise
        return Result()

    stops: list[int] = []

    async def on_stop() -> None:
        stops.append(len(cancelled))

    manager = Manager(
        store,
        identity="deposed",
        leader_election=True,
        registry=registry,
        graceful_shutdown_timeout=0.5,  # the reconcile never ends by itself
    )
    manager.add(Controller("slow", for_kind="Model", reconciler=reconcile, on_stop=on_stop))
    async with running(manager):
        await eventually(lambda: started, what="the leader to start reconciling")
        lease = await store.get(*LEASE)
        lease["spec"]["holderIdentity"] = "usurper"
        await store.update(lease)
        await eventually(lambda: cancelled, what="the in-flight reconcile to be cancelled")
        await eventually(lambda: stops == [1], what="the controller's on_stop hook")
        assert not manager.ready
        assert not manager.is_leader
        # The usurper never renews: after the lease runs out the manager leads again and the
        # restarted controller reconciles the world from its cache.
        await eventually(lambda: len(started) == 2, what="leadership regained", limit_s=30)
        assert manager.ready
    assert stops == [1, 2], "on_stop runs on every stop: lost leadership, then shutdown"


@contextlib.asynccontextmanager
async def replicas(
    count: int, store_url: str, log: Path, tmp_path: Path
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    processes: list[asyncio.subprocess.Process] = []
    outputs = []
    try:
        for index in range(count):
            output = (tmp_path / f"replica-{index}.out").open("wb")
            outputs.append(output)
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(REPLICA_SCRIPT),
                    store_url,
                    str(log),
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                )
            )
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
        for output in outputs:
            output.close()


def log_pids(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [int(line.split()[0]) for line in log.read_text().splitlines() if line]


@pytest.mark.postgres
@pytest.mark.slow
async def test_a_killed_leader_is_replaced_and_reconciles_never_overlap(
    postgres_dsn: str, tmp_path: Path
) -> None:
    store = await open_store(postgres_dsn)
    log = tmp_path / "reconciles.log"
    try:
        await store.create(model("llama"))
        async with replicas(2, postgres_dsn, log, tmp_path) as processes:
            by_pid = {process.pid: process for process in processes}
            holder = await eventually(
                lambda: lease_holder(store), what="a replica to take the lease", limit_s=60
            )
            leader = by_pid[int(holder.removeprefix("replica-"))]
            follower = next(p for p in processes if p is not leader)
            await eventually(
                lambda: log_pids(log).count(leader.pid) >= 10, what="the leader to reconcile"
            )
            assert set(log_pids(log)) == {leader.pid}
            assert follower.returncode is None

            leader.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await leader.wait()
            await eventually(
                lambda: follower.pid in log_pids(log), what="the follower to take over", limit_s=40
            )
            takeover_s = time.monotonic() - killed_at
            assert await lease_holder(store) == f"replica-{follower.pid}"
            print(f"takeover after SIGKILL of the leader: {takeover_s:.1f} s")

            follower.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(follower.wait(), 30) == 0

        pids = log_pids(log)
        switch = pids.index(follower.pid)
        assert set(pids[:switch]) == {leader.pid}
        assert set(pids[switch:]) == {follower.pid}, "the two replicas' reconciles interleaved"
        lines = log.read_text().splitlines()
        follower_lines = [line.split()[1] for line in lines if int(line.split()[0]) == follower.pid]
        assert follower_lines[::2] == ["start"] * len(follower_lines[::2])
        assert follower_lines[1::2] == ["end"] * len(follower_lines[1::2])
        assert await lease_holder(store) == "", "a cleanly stopped leader releases the lease"
    finally:
        await store.close()
