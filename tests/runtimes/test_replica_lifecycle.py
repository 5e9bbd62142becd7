"""A replica starts, becomes Ready, serves, and drains and stops when removed or replaced."""

from __future__ import annotations

from pathlib import Path

import httpx

from corral.runtimes import ReplicaState, Supervisor
from corral.runtimes.process import process_start_time

from .helpers import Recorder, replica_spec, wait_for, wait_for_event, wait_gone


async def test_replica_becomes_ready_and_serves(supervisor: Supervisor, model_file: Path) -> None:
    spec = replica_spec(model_file)
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, lambda s: s.ready)

    assert status.state is ReplicaState.READY
    assert status.address.startswith("http://127.0.0.1:")
    assert status.pid is not None
    assert process_start_time(status.pid) is not None
    assert status.restarts == 0
    async with httpx.AsyncClient(trust_env=False) as client:
        models = await client.get(f"{status.address}/v1/models")
        reply = await client.post(
            f"{status.address}/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        )
    # The provider names the model as clients know it (--model_alias).
    assert models.json()["data"] == [{"id": "fake-model"}]
    assert reply.json()["choices"][0]["content"] == "echo: hi"


async def test_slow_server_is_starting_until_its_probe_passes(
    supervisor: Supervisor, model_file: Path, recorder: Recorder
) -> None:
    spec = replica_spec(model_file, options={"fake_ready_after": 0.5})
    await supervisor.ensure({spec.name: spec})

    await wait_for(supervisor, spec.name, lambda s: s.ready)
    # on_change is called soon after, not within, the change the status already shows.
    await wait_for_event(recorder, spec.name, ReplicaState.READY)

    assert recorder.states(spec.name) == ["Pending", "Starting", "Ready"]
    probes = [line for line in supervisor.tail_logs(spec.name, 500) if "GET /v1/models" in line]
    assert '" 503 ' in probes[0]
    assert '" 200 ' in probes[-1]


async def test_removed_replica_drains_then_stops_its_process(
    supervisor: Supervisor, model_file: Path, recorder: Recorder
) -> None:
    spec = replica_spec(model_file)
    await supervisor.ensure({spec.name: spec})
    ready = await wait_for(supervisor, spec.name, lambda s: s.ready)
    assert ready.pid is not None

    await supervisor.ensure({})

    draining = await wait_for(supervisor, spec.name, lambda s: s.state is ReplicaState.DRAINING)
    assert not draining.ready
    # Draining keeps the process up for the grace period so in-flight requests finish.
    assert process_start_time(ready.pid) is not None
    await wait_gone(ready.pid)
    await wait_for_event(recorder, spec.name, ReplicaState.STOPPED)
    assert supervisor.statuses() == []
    assert not (supervisor.state_dir / "runtimes" / f"{spec.name}.json").exists()


async def test_changed_spec_replaces_the_replica(
    supervisor: Supervisor, model_file: Path, recorder: Recorder
) -> None:
    spec = replica_spec(model_file)
    await supervisor.ensure({spec.name: spec})
    first = await wait_for(supervisor, spec.name, lambda s: s.ready)

    changed = replica_spec(model_file, options={"n_ctx": 1024})
    await supervisor.ensure({changed.name: changed})
    second = await wait_for(supervisor, spec.name, lambda s: s.ready and s.pid != first.pid)

    assert first.pid is not None
    assert process_start_time(first.pid) is None
    assert second.restarts == 0
    assert "--n_ctx 1024" in " ".join(supervisor.tail_logs(spec.name, 200))
    # The old instance drained and stopped before the new one started.
    states = recorder.states(spec.name)
    last_starting = max(i for i, state in enumerate(states) if state == "Starting")
    assert states.index("Stopped") < last_starting


async def test_unchanged_spec_leaves_the_replica_alone(
    supervisor: Supervisor, model_file: Path
) -> None:
    spec = replica_spec(model_file)
    await supervisor.ensure({spec.name: spec})
    first = await wait_for(supervisor, spec.name, lambda s: s.ready)

    await supervisor.ensure({spec.name: replica_spec(model_file)})

    assert supervisor.statuses() == [first]


async def test_stop_all_leaves_no_process_and_no_record(
    supervisor: Supervisor, model_file: Path
) -> None:
    specs = [replica_spec(model_file, name=f"default.chat.fake.{i}") for i in range(2)]
    await supervisor.ensure({spec.name: spec for spec in specs})
    pids = [(await wait_for(supervisor, spec.name, lambda s: s.ready)).pid for spec in specs]

    await supervisor.stop_all()

    assert all(pid is not None and process_start_time(pid) is None for pid in pids)
    assert supervisor.statuses() == []
    assert list((supervisor.state_dir / "runtimes").iterdir()) == []
