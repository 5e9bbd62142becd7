"""Timings and limits of supervision; the defaults suit real servers, tests shrink them."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class SupervisorSettings:
    backoff_initial: float = 1.0
    """Delay before the first restart after a crash; doubles per crash up to ``backoff_max``."""
    backoff_max: float = 60.0
    stable_after: float = 30.0
    """A replica Ready this long before crashing restarts from ``backoff_initial`` again."""
    drain_grace: float = 2.0
    """How long a removed Ready replica stays Draining (routers stop sending) before SIGTERM."""
    stop_timeout: float = 10.0
    """How long SIGTERM gets before SIGKILL."""
    probe_interval: float = 0.25
    """Pause between readiness probes while a process starts."""
    probe_timeout: float = 5.0
    upstream_interval: float = 10.0
    """Pause between health checks of a Ready ``openai`` upstream."""
    upstream_failures: int = 3
    """Consecutive failed checks before a Ready upstream is reported not ready."""
    failed_recheck: float = 60.0
    """How often a Failed replica checks again (the runtime may have been installed since)."""
    port_clash_retries: int = 3
    """Immediate restarts on a new port when a child lost its port to another process."""
    log_max_bytes: int = 4 * 1024 * 1024
    log_tail_lines: int = 20
    housekeeping_interval: float = 5.0
    """How often a running replica's log is checked for rotation."""

    def __post_init__(self) -> None:
        for spec_field in fields(self):
            value = getattr(self, spec_field.name)
            if spec_field.name in ("log_tail_lines", "port_clash_retries"):
                if value < 0:
                    raise ValueError(f"SupervisorSettings.{spec_field.name} must be 0 or more")
            elif not value > 0:
                raise ValueError(f"SupervisorSettings.{spec_field.name} must be above 0")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("SupervisorSettings.backoff_max must be at least backoff_initial")
