"""The supervisor: keeps the set of running model replicas equal to the desired set.

The Endpoint controller computes the desired replicas of every Endpoint and calls
:meth:`Supervisor.ensure` with all of them; the supervisor starts what is missing, retires
what is gone or changed (a changed spec is a replacement), and reports every status change
through ``on_change``. All supervision is asyncio tasks on the caller's loop, one per replica.

State on disk, under ``state_dir``: ``logs/<replica>.log`` (server output and supervisor
notes) and ``runtimes/<replica>.json`` (orphan records, see :mod:`corral.runtimes.orphans`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from corral.runtimes import logs
from corral.runtimes.orphans import kill_orphans
from corral.runtimes.probe import Prober
from corral.runtimes.providers import RuntimeProvider, registered_providers
from corral.runtimes.replica import Replica, ReplicaContext
from corral.runtimes.settings import SupervisorSettings
from corral.runtimes.spec import ReplicaSpec, ReplicaStatus, replica_name_problem

_log = logging.getLogger(__name__)


class Supervisor:
    """Runs model replicas as supervised child processes (or watches external upstreams).

    ``on_change`` receives each new status of any replica. It is called from the event loop
    (scheduled with ``call_soon``, never inside the supervisor's own bookkeeping), so it may
    call back into the supervisor; it should stay cheap (requeue a key, not do I/O).
    ``providers`` replaces the registered runtime providers, mainly for tests.
    """

    def __init__(
        self,
        state_dir: Path,
        on_change: Callable[[ReplicaStatus], None] | None = None,
        *,
        providers: Mapping[str, RuntimeProvider] | None = None,
        settings: SupervisorSettings | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.settings = settings or SupervisorSettings()
        self._on_change = on_change
        self._providers = dict(providers) if providers is not None else None
        self._prober = Prober()
        self._logs_dir = self.state_dir / "logs"
        self._records_dir = self.state_dir / "runtimes"
        self._context = ReplicaContext(
            settings=self.settings,
            providers=self._current_providers,
            prober=self._prober,
            logs_dir=self._logs_dir,
            records_dir=self._records_dir,
            notify=self._schedule_notify,
        )
        self._replicas: dict[str, Replica] = {}
        self._retiring: set[Replica] = set()
        self._lock = asyncio.Lock()
        self._started = False

    async def start(self) -> list[int]:
        """Prepare the state directory and kill servers a previous supervisor left running.

        Idempotent; the first :meth:`ensure` calls it. Returns the pids of orphans killed.
        """
        async with self._lock:
            return await self._start_locked()

    async def ensure(self, desired: Mapping[str, ReplicaSpec]) -> None:
        """Converge on ``desired`` (replica name → spec) without waiting for it to happen.

        Replica problems never raise: they become the replica's status. Raises ValueError only
        when a key differs from its spec's name.
        """
        for name, spec in desired.items():
            if name != spec.name:
                raise ValueError(
                    f"desired replica key {name!r} differs from spec.name {spec.name!r}"
                )
        async with self._lock:
            await self._start_locked()
            for name, replica in list(self._replicas.items()):
                if desired.get(name) != replica.spec:
                    del self._replicas[name]
                    self._retire(replica, drain=True)
            for name, spec in desired.items():
                if name not in self._replicas:
                    self._replicas[name] = Replica(spec, self._context, self._latest_retiring(name))

    def statuses(self) -> list[ReplicaStatus]:
        """Every desired replica's status, plus removed ones still draining, by name."""
        current = {name: replica.status for name, replica in self._replicas.items()}
        for replica in self._retiring:
            if replica.spec.name not in current:
                current[replica.spec.name] = replica.status
        return [current[name] for name in sorted(current)]

    async def stop_all(self) -> None:
        """Stop every replica now (no drain grace) and wait until all processes are gone.

        The supervisor stays usable: a later :meth:`ensure` starts replicas again.
        """
        async with self._lock:
            for replica in self._replicas.values():
                self._retire(replica, drain=False)
            self._replicas.clear()
            for replica in self._retiring:
                replica.retire(drain=False)
            tasks = [replica.task for replica in self._retiring]
            if tasks:
                await asyncio.wait(tasks)
            await self._prober.aclose()

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.stop_all()

    def log_path(self, replica_name: str) -> Path:
        problem = replica_name_problem(replica_name)
        if problem:
            raise ValueError(problem)
        return self._logs_dir / f"{replica_name}.log"

    def tail_logs(self, replica_name: str, lines: int = 50) -> list[str]:
        """The last ``lines`` lines of a replica's log ([] when it has none yet)."""
        return logs.tail(self.log_path(replica_name), lines)

    async def _start_locked(self) -> list[int]:
        if self._started:
            return []
        self._logs_dir.mkdir(parents=True, exist_ok=True)
        self._records_dir.mkdir(parents=True, exist_ok=True)
        killed = await kill_orphans(self._records_dir, self.settings.stop_timeout)
        self._started = True
        return killed

    def _retire(self, replica: Replica, *, drain: bool) -> None:
        replica.retire(drain=drain)
        self._retiring.add(replica)
        replica.task.add_done_callback(lambda _task: self._retiring.discard(replica))

    def _latest_retiring(self, name: str) -> Replica | None:
        # A replacement waits for the newest retired instance, which itself waited for any
        # older one, so instances of one name never overlap.
        candidates = [r for r in self._retiring if r.spec.name == name and not r.task.done()]
        return max(candidates, key=lambda r: r.generation, default=None)

    def _current_providers(self) -> Mapping[str, RuntimeProvider]:
        return self._providers if self._providers is not None else registered_providers()

    def _schedule_notify(self, status: ReplicaStatus) -> None:
        if self._on_change is not None:
            asyncio.get_running_loop().call_soon(self._deliver, status)

    def _deliver(self, status: ReplicaStatus) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(status)
        except Exception:
            _log.exception("replica %s: on_change callback failed", status.name)
