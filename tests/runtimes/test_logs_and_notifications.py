"""Replica logs are kept, tailed and rotated; status changes reach ``on_change`` safely."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import httpx
import pytest

from corral.runtimes import ReplicaStatus, Supervisor
from corral.runtimes.logs import tail

from .helpers import QUICK, fake_providers, replica_spec, wait_for


async def test_log_holds_supervisor_notes_and_server_output(
    supervisor: Supervisor, model_file: Path
) -> None:
    spec = replica_spec(model_file)
    await supervisor.ensure({spec.name: spec})
    await wait_for(supervisor, spec.name, lambda s: s.ready)

    lines = supervisor.tail_logs(spec.name, 100)

    assert supervisor.log_path(spec.name) == supervisor.state_dir / "logs" / f"{spec.name}.log"
    assert "] starting: " in lines[0]
    assert "--model_alias fake-model" in lines[0]
    assert any("fake server for fake-model listening" in line for line in lines)
    assert supervisor.tail_logs(spec.name, 1) == lines[-1:]


def test_tail_of_a_replica_without_a_log_is_empty(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "state")

    assert supervisor.tail_logs("default.chat.none.0") == []
    with pytest.raises(ValueError, match=r"replica name '\.\./x'"):
        supervisor.log_path("../x")


def test_tail_reads_only_what_was_written_since_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    log.write_text("old 1\nold 2\n")
    offset = log.stat().st_size
    with log.open("a") as handle:
        handle.writelines(f"new {i}\n" for i in range(5000))

    assert tail(log, 2, since=offset) == ["new 4998", "new 4999"]
    assert tail(log, 10_000, since=offset)[0] == "new 0"
    # An offset past the end means the log was rotated since: all of it counts.
    assert tail(log, 1, since=10**9) == ["new 4999"]
    assert tail(log, 0) == []


async def test_large_log_is_rotated_while_the_server_keeps_writing(
    tmp_path: Path, model_file: Path
) -> None:
    settings = dataclasses.replace(QUICK, log_max_bytes=4096)
    async with Supervisor(tmp_path / "state", providers=fake_providers(), settings=settings) as sup:
        spec = replica_spec(model_file)
        await sup.ensure({spec.name: spec})
        status = await wait_for(sup, spec.name, lambda s: s.ready)
        rotated = sup.log_path(spec.name).with_name(f"{spec.name}.log.1")
        async with httpx.AsyncClient(trust_env=False) as client:
            for _ in range(100):
                await client.get(f"{status.address}/v1/models?fill")
            await wait_for(sup, spec.name, lambda _s: rotated.exists())
            await client.get(f"{status.address}/v1/models?after-rotation")

            await wait_for(
                sup,
                spec.name,
                lambda _s: "after-rotation" in " ".join(sup.tail_logs(spec.name, 5)),
            )

        assert sup.log_path(spec.name).stat().st_size < 4096 * 2
        assert "fill" in rotated.read_text()


async def test_failing_on_change_does_not_stop_supervision(
    tmp_path: Path, model_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[ReplicaStatus] = []

    def fragile(status: ReplicaStatus) -> None:
        seen.append(status)
        raise RuntimeError("controller hiccup")

    async with Supervisor(
        tmp_path / "state", fragile, providers=fake_providers(), settings=QUICK
    ) as sup:
        spec = replica_spec(model_file)
        with caplog.at_level(logging.ERROR, logger="corral.runtimes.supervisor"):
            await sup.ensure({spec.name: spec})
            await wait_for(sup, spec.name, lambda s: s.ready)

    assert [status.state.value for status in seen][:3] == ["Pending", "Starting", "Ready"]
    assert "on_change callback failed" in caplog.text


async def test_on_change_may_call_back_into_the_supervisor(
    tmp_path: Path, model_file: Path
) -> None:
    observed: list[list[str]] = []

    def reentrant(_status: ReplicaStatus) -> None:
        observed.append([status.state.value for status in sup.statuses()])

    sup = Supervisor(tmp_path / "state", reentrant, providers=fake_providers(), settings=QUICK)
    async with sup:
        spec = replica_spec(model_file)
        await sup.ensure({spec.name: spec})
        await wait_for(sup, spec.name, lambda s: s.ready)

    assert ["Ready"] in observed
    assert sup.statuses() == []


def test_status_as_endpoint_status_entry() -> None:
    status = ReplicaStatus(
        name="default.chat.m.0", namespace="default", endpoint="chat", model="m", restarts=2
    )

    assert status.to_dict() == {
        "name": "default.chat.m.0",
        "model": "m",
        "state": "Pending",
        "ready": False,
        "address": "",
        "restarts": 2,
        "pid": None,
        "lastExitCode": None,
        "message": "",
        "lastLogLines": [],
    }
