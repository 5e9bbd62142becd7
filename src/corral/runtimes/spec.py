"""What one model replica should be (``ReplicaSpec``) and what it is (``ReplicaStatus``).

The Endpoint controller turns each Endpoint into replica specs and hands the whole desired set
to :class:`~corral.runtimes.supervisor.Supervisor`; statuses flow back through its ``on_change``
callback and ``statuses()``. Both types are plain frozen values so they can cross that boundary
(and be compared to detect a changed spec) without sharing any mutable state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

RuntimeOption = str | int | float | bool
"""One server option value, rendered on the runtime's command line as ``--key value``."""

# Replica names become file names (logs, orphan records), so no path separators and no "..".
_REPLICA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")
_OPTION_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def replica_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a replica, or None when it can."""
    if not _REPLICA_NAME.match(name) or ".." in name:
        return (
            f"replica name {name!r}: use letters, digits, '.', '_' and '-' "
            "(at most 253, no '..'), starting with a letter or digit"
        )
    return None


class ReplicaState(StrEnum):
    PENDING = "Pending"
    """Accepted but not started: waiting for a predecessor to stop, or for an upstream."""
    STARTING = "Starting"
    """The process runs and its readiness probe has not passed yet."""
    READY = "Ready"
    """Serving: routers may send requests to ``address``."""
    DRAINING = "Draining"
    """Being removed: routers must stop sending; stop follows after a short grace."""
    CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
    """The process exited or never became ready; it restarts after a growing delay."""
    FAILED = "Failed"
    """It cannot start as specified (missing runtime, missing model file, bad option)."""
    STOPPED = "Stopped"
    """Removed and its process is gone; the last status a removed replica reports."""


@dataclass(frozen=True)
class ReplicaSpec:
    """One replica the supervisor should keep running.

    ``name`` is unique per supervisor (the controller uses ``<ns>.<endpoint>.<model>.<index>``).
    Two specs that differ in any field mean "replace the replica". ``api_key`` is left out of
    ``repr`` so specs can be logged.
    """

    name: str
    namespace: str
    endpoint: str
    model: str
    runtime: str
    model_path: str | None = None
    options: Mapping[str, RuntimeOption] = field(default_factory=dict)
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    env: Mapping[str, str] = field(default_factory=dict)
    readiness_timeout: float = 120.0

    def __post_init__(self) -> None:
        problem = replica_name_problem(self.name)
        if problem:
            raise ValueError(problem)
        for label, value in (
            ("namespace", self.namespace),
            ("endpoint", self.endpoint),
            ("model", self.model),
            ("runtime", self.runtime),
        ):
            if not value:
                raise ValueError(f"replica {self.name}: {label} must not be empty")
        for key, option in self.options.items():
            if not _OPTION_KEY.match(key):
                raise ValueError(
                    f"replica {self.name}: option {key!r} must be letters, digits, '_' or '-'"
                )
            if not isinstance(option, str | int | float):  # bool is an int
                raise ValueError(
                    f"replica {self.name}: option {key!r} must be a string, number or boolean, "
                    f"not {type(option).__name__}"
                )
            if isinstance(option, float) and not math.isfinite(option):
                raise ValueError(f"replica {self.name}: option {key!r} must be a finite number")
        for key, env_value in self.env.items():
            if not _ENV_NAME.match(key) or not isinstance(env_value, str):
                raise ValueError(
                    f"replica {self.name}: env {key!r} must be a variable name with a string value"
                )
        if not (self.readiness_timeout > 0 and math.isfinite(self.readiness_timeout)):
            raise ValueError(f"replica {self.name}: readiness_timeout must be above 0 seconds")
        # Read-only copies: a caller mutating its dict afterwards must not change a running spec.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))


@dataclass(frozen=True)
class ReplicaStatus:
    """What the supervisor observed about one replica, at one moment.

    ``address`` is the server root (``http://127.0.0.1:PORT``) for process runtimes and the
    configured base URL for an ``openai`` upstream; it is ``""`` until a port is chosen.
    """

    name: str
    namespace: str
    endpoint: str
    model: str
    state: ReplicaState = ReplicaState.PENDING
    ready: bool = False
    address: str = ""
    restarts: int = 0
    pid: int | None = None
    last_exit_code: int | None = None
    message: str = ""
    last_log_lines: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape an Endpoint's ``status.replicas[]`` entry takes."""
        return {
            "name": self.name,
            "model": self.model,
            "state": self.state.value,
            "ready": self.ready,
            "address": self.address,
            "restarts": self.restarts,
            "pid": self.pid,
            "lastExitCode": self.last_exit_code,
            "message": self.message,
            "lastLogLines": list(self.last_log_lines),
        }
