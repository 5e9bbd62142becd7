"""Crashed replicas restart with backoff; what they said last is kept on their status."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

from corral.runtimes import ReplicaState, Supervisor
from corral.runtimes.process import process_start_time

from .helpers import (
    QUICK,
    Recorder,
    fake_providers,
    replica_spec,
    wait_for,
    wait_for_event,
    wait_gone,
)


async def test_server_that_exits_at_start_is_in_crash_loop_back_off(
    supervisor: Supervisor, model_file: Path
) -> None:
    spec = replica_spec(model_file, options={"fake_crash_at_start": 7})
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, lambda s: s.restarts >= 2)
    status = await wait_for(
        supervisor, spec.name, lambda s: s.state is ReplicaState.CRASH_LOOP_BACK_OFF
    )

    assert not status.ready
    assert status.pid is None
    assert status.last_exit_code == 7
    assert "exited with code 7; restarting in" in status.message
    assert status.last_log_lines[-1] == f"fatal: cannot load {model_file}"
    # Only this start's output: earlier attempts and supervisor notes are not repeated.
    assert status.last_log_lines == ("loading model ...", f"fatal: cannot load {model_file}")


async def test_backoff_doubles_up_to_its_ceiling(
    supervisor: Supervisor, model_file: Path, recorder: Recorder
) -> None:
    spec = replica_spec(model_file, options={"fake_crash_at_start": 1})
    await supervisor.ensure({spec.name: spec})

    await wait_for(supervisor, spec.name, lambda s: s.restarts >= 4)

    delays = [
        event.message.rsplit(" ", 1)[-1]
        for event in recorder.events
        if event.state is ReplicaState.CRASH_LOOP_BACK_OFF and "restarting in" in event.message
    ]
    # QUICK settings: 0.1 s doubling, capped at 0.4 s.
    assert delays[:4] == ["0.1s", "0.2s", "0.4s", "0.4s"]


async def test_killed_server_is_restarted_and_ready_again(
    supervisor: Supervisor, model_file: Path
) -> None:
    spec = replica_spec(model_file)
    await supervisor.ensure({spec.name: spec})
    first = await wait_for(supervisor, spec.name, lambda s: s.ready)
    assert first.pid is not None

    os.kill(first.pid, signal.SIGKILL)

    again = await wait_for(supervisor, spec.name, lambda s: s.ready and s.restarts == 1)
    assert again.pid != first.pid
    assert again.last_exit_code == -signal.SIGKILL
    assert again.address != ""


async def test_server_crashing_while_ready_is_restarted(
    supervisor: Supervisor, model_file: Path, recorder: Recorder
) -> None:
    spec = replica_spec(model_file, options={"fake_crash_after": 0.3})
    await supervisor.ensure({spec.name: spec})

    await wait_for(supervisor, spec.name, lambda s: s.restarts >= 1 and s.ready)

    crashed = next(e for e in recorder.events if e.state is ReplicaState.CRASH_LOOP_BACK_OFF)
    assert crashed.last_exit_code == 3
    assert "fatal: simulated crash" in crashed.last_log_lines


async def test_server_never_ready_is_killed_after_its_readiness_timeout(
    supervisor: Supervisor, model_file: Path, recorder: Recorder
) -> None:
    spec = replica_spec(model_file, options={"fake_ready_after": 600}, readiness_timeout=0.5)
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(
        supervisor, spec.name, lambda s: s.state is ReplicaState.CRASH_LOOP_BACK_OFF
    )

    assert status.message.startswith("not ready within 0.5s (last probe: GET http://127.0.0.1:")
    assert "answered 503" in status.message
    starting = next(e for e in recorder.events if e.state is ReplicaState.STARTING)
    assert starting.pid is not None
    await wait_gone(starting.pid)


async def test_server_ignoring_sigterm_is_killed_on_removal(
    supervisor: Supervisor, model_file: Path, recorder: Recorder
) -> None:
    spec = replica_spec(model_file, options={"fake_ignore_sigterm": True})
    await supervisor.ensure({spec.name: spec})
    ready = await wait_for(supervisor, spec.name, lambda s: s.ready)
    assert ready.pid is not None

    await supervisor.ensure({})
    await wait_for_event(recorder, spec.name, ReplicaState.STOPPED)

    assert process_start_time(ready.pid) is None
    assert "ignoring SIGTERM" in supervisor.tail_logs(spec.name, 20)
    assert supervisor.tail_logs(spec.name, 1)[0].endswith("killed by SIGKILL")
    stopped = recorder.events[-1]
    assert stopped.state is ReplicaState.STOPPED
    assert stopped.last_exit_code == -signal.SIGKILL


async def test_lost_port_race_retries_on_a_new_port_without_counting_a_restart(
    supervisor: Supervisor, model_file: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "clashed"
    spec = replica_spec(model_file, options={"fake_clash_once": str(marker)})
    await supervisor.ensure({spec.name: spec})

    status = await wait_for(supervisor, spec.name, lambda s: s.ready)

    assert marker.exists()
    assert status.restarts == 0
    assert "Address already in use" in " ".join(supervisor.tail_logs(spec.name, 50))


async def test_backoff_starts_over_after_a_replica_stayed_ready(
    tmp_path: Path, model_file: Path, recorder: Recorder
) -> None:
    settings = dataclasses.replace(QUICK, stable_after=0.2)
    async with Supervisor(
        tmp_path / "state", recorder, providers=fake_providers(), settings=settings
    ) as supervisor:
        spec = replica_spec(model_file, options={"fake_crash_after": 0.4})
        await supervisor.ensure({spec.name: spec})

        await wait_for(supervisor, spec.name, lambda s: s.restarts >= 3)

    delays = {
        event.message.rsplit(" ", 1)[-1]
        for event in recorder.events
        if event.state is ReplicaState.CRASH_LOOP_BACK_OFF
    }
    assert delays == {"0.1s"}
