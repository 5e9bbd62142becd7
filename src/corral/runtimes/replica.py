"""One replica's life, as one asyncio task: plan → start → probe → serve → crash or drain → stop.

The supervisor creates a :class:`Replica` per desired spec and retires it when the spec goes
away or changes. Every failure becomes the replica's status (``Failed`` for what retrying
cannot fix, ``CrashLoopBackOff`` for what it might); nothing is raised to the supervisor.
A replacement waits for the instance it replaces to stop first, so two servers never hold
one replica's GPU, log file or orphan record at the same time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from corral.runtimes import logs
from corral.runtimes.orphans import remove_record, write_record
from corral.runtimes.probe import Prober
from corral.runtimes.process import Child, free_loopback_port
from corral.runtimes.providers import LaunchError, ProcessPlan, RuntimeProvider, UpstreamPlan
from corral.runtimes.settings import SupervisorSettings
from corral.runtimes.spec import ReplicaSpec, ReplicaState, ReplicaStatus

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaContext:
    """What every replica of one supervisor shares."""

    settings: SupervisorSettings
    providers: Callable[[], Mapping[str, RuntimeProvider]]
    prober: Prober
    logs_dir: Path
    records_dir: Path
    notify: Callable[[ReplicaStatus], None]


class _Wake(Enum):
    DONE = "done"
    STOP = "stop"
    TIMEOUT = "timeout"


_EXITED = "exited"
"""The reason ``_serve`` gives when the child exited; the exit code is known only later."""


class _Crash(NamedTuple):
    reason: str
    ready_for: float = 0.0
    exit_code: int | None = None
    log_lines: tuple[str, ...] = ()
    port_clash: bool = False


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Replica:
    _created = itertools.count()

    def __init__(
        self, spec: ReplicaSpec, context: ReplicaContext, predecessor: Replica | None = None
    ) -> None:
        self.spec = spec
        self.generation = next(Replica._created)
        self.status = ReplicaStatus(
            name=spec.name, namespace=spec.namespace, endpoint=spec.endpoint, model=spec.model
        )
        self.log_path = context.logs_dir / f"{spec.name}.log"
        self._context = context
        self._settings = context.settings
        self._predecessor = predecessor
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        context.notify(self.status)
        self.task: asyncio.Task[None] = asyncio.create_task(
            self._main(), name=f"corral replica {spec.name}"
        )

    def retire(self, *, drain: bool = True) -> None:
        """Ask the replica to stop: drain first when ``drain`` and it was serving."""
        if not drain:
            self._hurry.set()
        self._stop.set()

    async def _main(self) -> None:
        try:
            if self._predecessor is not None:
                self._set(message="waiting for the previous instance of this replica to stop")
                await asyncio.wait([self._predecessor.task])
                self._predecessor = None
            if not self._stop.is_set():
                await self._supervise()
        except Exception as error:
            # A bug here must not kill supervision silently or leave the replica looking fine.
            _log.exception("replica %s: supervision failed", self.spec.name)
            self._set(
                state=ReplicaState.FAILED,
                ready=False,
                pid=None,
                message=f"supervisor error: {error!r}",
            )
            await self._stop.wait()
        self._set(state=ReplicaState.STOPPED, ready=False, pid=None, message="stopped")

    async def _supervise(self) -> None:
        backoff = self._settings.backoff_initial
        port_clashes = 0
        while not self._stop.is_set():
            port = free_loopback_port()
            plan = self._plan(port)
            if plan is None:
                if await self._sleep(self._settings.failed_recheck):
                    return
                continue
            if isinstance(plan, UpstreamPlan):
                await self._watch_upstream(plan)
                return
            started = await self._spawn(plan)
            if started is None:
                if await self._sleep(self._settings.failed_recheck):
                    return
                continue
            crash = await self._run_child(*started, plan, port)
            if crash is None:
                return
            if crash.port_clash and port_clashes < self._settings.port_clash_retries:
                port_clashes += 1
                continue
            port_clashes = 0
            if crash.ready_for >= self._settings.stable_after:
                backoff = self._settings.backoff_initial
            self._set(
                state=ReplicaState.CRASH_LOOP_BACK_OFF,
                ready=False,
                pid=None,
                last_exit_code=crash.exit_code,
                last_log_lines=crash.log_lines,
                restarts=self.status.restarts + 1,
                message=f"{crash.reason}; restarting in {backoff:g}s",
            )
            if await self._sleep(backoff):
                return
            backoff = min(backoff * 2, self._settings.backoff_max)

    def _plan(self, port: int) -> ProcessPlan | UpstreamPlan | None:
        providers = self._context.providers()
        provider = providers.get(self.spec.runtime)
        if provider is None:
            known = ", ".join(sorted(providers)) or "none"
            self._fail(f"unknown runtime type {self.spec.runtime!r} (known: {known})")
            return None
        try:
            return provider.plan(self.spec, port)
        except LaunchError as error:
            self._fail(str(error))
        except Exception as error:
            _log.exception("replica %s: runtime provider %r failed", self.spec.name, provider.type)
            self._fail(f"runtime provider {provider.type!r} failed: {error!r}")
        return None

    async def _spawn(self, plan: ProcessPlan) -> tuple[Child, int] | None:
        """The started child and the log offset where its output begins; None when Failed."""
        logs.rotate_if_large(self.log_path, self._settings.log_max_bytes)
        logs.append_note(self.log_path, "starting: " + " ".join(plan.argv))
        output_starts_at = logs.log_size(self.log_path)
        try:
            child = await Child.spawn(plan.argv, {**os.environ, **plan.env}, self.log_path)
        except OSError as error:
            self._fail(f"cannot start {plan.argv[0]}: {error.strerror or error}")
            logs.append_note(self.log_path, f"cannot start: {error}")
            return None
        write_record(self._context.records_dir, self.spec.name, child)
        return child, output_starts_at

    async def _run_child(
        self, child: Child, output_starts_at: int, plan: ProcessPlan, port: int
    ) -> _Crash | None:
        """Probe and serve one child until it dies (a crash) or is stopped (None)."""
        try:
            outcome = await self._serve(child, plan, f"http://127.0.0.1:{port}")
        finally:
            code = await child.stop(self._settings.stop_timeout)
            remove_record(self._context.records_dir, self.spec.name)
        tail = tuple(
            logs.tail(self.log_path, self._settings.log_tail_lines, since=output_starts_at)
        )
        logs.append_note(self.log_path, describe_exit(code))
        if outcome is None:
            self._set(pid=None, last_exit_code=code, last_log_lines=tail)
            return None
        if outcome.reason != _EXITED:
            return outcome._replace(exit_code=code, log_lines=tail)
        # Binding to port 0 and passing the number on leaves a window for another process.
        clash = outcome.ready_for == 0.0 and any(
            "address already in use" in line.lower() for line in tail
        )
        return _Crash(describe_exit(code), outcome.ready_for, code, tail, port_clash=clash)

    async def _serve(self, child: Child, plan: ProcessPlan, address: str) -> _Crash | None:
        loop = asyncio.get_running_loop()
        health_url = address + plan.health_path
        self._set(
            state=ReplicaState.STARTING,
            ready=False,
            address=address,
            pid=child.pid,
            message=f"waiting for GET {plan.health_path} to answer 200",
        )
        deadline = loop.time() + self.spec.readiness_timeout
        while True:
            remaining = deadline - loop.time()
            timeout = max(min(self._settings.probe_timeout, remaining), 0.05)
            problem = await self._context.prober.problem(
                health_url, plan.health_headers, timeout, loopback=True
            )
            if problem is None:
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                limit = f"{self.spec.readiness_timeout:g}s"
                return _Crash(f"not ready within {limit} (last probe: {problem})")
            wake = await self._race(child.exited, min(self._settings.probe_interval, remaining))
            if wake is _Wake.STOP:
                await self._drain(child, was_ready=False)
                return None
            if wake is _Wake.DONE:
                return _Crash(_EXITED)
            logs.rotate_if_large(self.log_path, self._settings.log_max_bytes)
        ready_since = loop.time()
        self._set(state=ReplicaState.READY, ready=True, message="")
        while True:
            wake = await self._race(child.exited, self._settings.housekeeping_interval)
            if wake is _Wake.STOP:
                await self._drain(child, was_ready=True)
                return None
            if wake is _Wake.DONE:
                return _Crash(_EXITED, loop.time() - ready_since)
            logs.rotate_if_large(self.log_path, self._settings.log_max_bytes)

    async def _drain(self, child: Child | None, *, was_ready: bool) -> None:
        self._set(state=ReplicaState.DRAINING, ready=False, message="draining before stop")
        if was_ready and not self._hurry.is_set():
            # Only a Ready replica can have traffic to drain; routers watch for ready=False.
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._hurry.wait())]
            if child is not None:
                waits.append(asyncio.shield(child.exited))
            try:
                await asyncio.wait(waits, timeout=self._settings.drain_grace)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def _watch_upstream(self, plan: UpstreamPlan) -> None:
        settings = self._settings
        self._set(
            state=ReplicaState.PENDING,
            ready=False,
            pid=None,
            address=plan.base_url,
            message=f"waiting for GET {plan.health_url} to answer 200",
        )
        failures = 0
        retry_in = settings.backoff_initial
        while True:
            problem = await self._context.prober.problem(
                plan.health_url, plan.health_headers, settings.probe_timeout, loopback=False
            )
            if problem is None:
                failures, retry_in = 0, settings.backoff_initial
                self._set(state=ReplicaState.READY, ready=True, message="")
            else:
                failures += 1
                # One blip must not pull a Ready upstream out of rotation.
                if not self.status.ready or failures >= settings.upstream_failures:
                    self._set(state=ReplicaState.PENDING, ready=False, message=problem)
            if self.status.ready:
                pause = settings.upstream_interval
            else:
                pause, retry_in = retry_in, min(retry_in * 2, settings.upstream_interval)
            if await self._sleep(pause):
                break
        await self._drain(None, was_ready=self.status.ready)

    def _fail(self, message: str) -> None:
        self._set(state=ReplicaState.FAILED, ready=False, pid=None, message=message)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop first; True when asked to stop."""
        return await self._race(None, seconds) is _Wake.STOP

    async def _race(self, work: asyncio.Future[int] | None, at_most: float) -> _Wake:
        """Wait for ``work`` to finish, a stop request, or ``at_most`` seconds, what comes first."""
        if self._stop.is_set():
            return _Wake.STOP
        stop_waiter = asyncio.ensure_future(self._stop.wait())
        waits: list[asyncio.Future[Any]] = [stop_waiter]
        if work is not None:
            # Shielded: the child's exit task is shared and must never be cancelled here.
            waits.append(asyncio.shield(work))
        try:
            await asyncio.wait(waits, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
        if self._stop.is_set():
            return _Wake.STOP
        if work is not None and work.done():
            return _Wake.DONE
        return _Wake.TIMEOUT

    def _set(self, **changes: object) -> None:
        updated = dataclasses.replace(self.status, **changes)  # type: ignore[arg-type]
        if updated == self.status:
            return
        if updated.state is not self.status.state:
            _log.info("replica %s: %s %s", self.spec.name, updated.state.value, updated.message)
        self.status = updated
        self._context.notify(updated)
