"""Runtime providers: how a ``ReplicaSpec`` of one runtime type becomes something to run.

A provider is pure: it renders a plan and checks that the plan can work (the binary exists,
the model file exists, no option fights the supervisor), raising :class:`LaunchError` with a
message for the replica's status when it cannot. The supervisor does every side effect.

Built-in providers register through :func:`register_provider`, the same hook a plugin uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from corral.runtimes.spec import ReplicaSpec


class LaunchError(Exception):
    """The replica cannot start as specified; the message becomes its ``Failed`` status."""


@dataclass(frozen=True)
class ProcessPlan:
    """A child process the supervisor runs, listening on the loopback port it was given.

    ``env`` is merged over the supervisor's environment. Readiness is an HTTP GET of
    ``health_path`` answering 200.
    """

    argv: tuple[str, ...]
    health_path: str
    env: Mapping[str, str] = field(default_factory=dict)
    health_headers: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class UpstreamPlan:
    """An external OpenAI-compatible server: nothing to run, only a health check to repeat."""

    base_url: str
    health_url: str
    health_headers: Mapping[str, str] = field(default_factory=dict, repr=False)


class RuntimeProvider(Protocol):
    """Turns a replica spec into a plan; ``type`` is the Endpoint's ``spec.runtime.type``."""

    @property
    def type(self) -> str: ...

    def plan(self, spec: ReplicaSpec, port: int, /) -> ProcessPlan | UpstreamPlan:
        """The plan for ``spec`` listening on ``port``; raises :class:`LaunchError`."""
        ...


_providers: dict[str, RuntimeProvider] = {}


def register_provider(provider: RuntimeProvider, *, replace: bool = False) -> RuntimeProvider:
    """Make ``provider`` serve its runtime type; a second one for a type needs ``replace``."""
    if not provider.type:
        raise ValueError("a runtime provider needs a non-empty type")
    if provider.type in _providers and not replace:
        raise ValueError(
            f"runtime type {provider.type!r} already has a provider; pass replace=True to swap it"
        )
    _providers[provider.type] = provider
    return provider


def registered_providers() -> Mapping[str, RuntimeProvider]:
    """Every registered provider by runtime type (a snapshot)."""
    return dict(_providers)


def render_options(
    options: Mapping[str, object],
    *,
    reserved: frozenset[str],
    spelling: Literal["snake_case", "kebab-case"],
    booleans: Literal["value", "flag"],
) -> list[str]:
    """``--key value`` arguments for ``options``, refusing keys the supervisor owns.

    Runtimes disagree on spelling: llama.cpp's parser knows only ``--n_ctx`` and wants
    ``--verbose true``; vLLM's knows ``--max-model-len`` and wants a bare ``--enforce-eager``
    or ``--no-enforce-eager``. Keys are respelled either way so users need not care.
    ``reserved`` holds option names in snake_case.
    """
    argv: list[str] = []
    for key, value in options.items():
        if key.replace("-", "_") in reserved:
            raise LaunchError(f"option {key!r} is set by corral and cannot be overridden")
        flag = key.replace("-", "_") if spelling == "snake_case" else key.replace("_", "-")
        if isinstance(value, bool) and booleans == "flag":
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        elif isinstance(value, bool):
            argv.extend([f"--{flag}", "true" if value else "false"])
        else:
            argv.extend([f"--{flag}", str(value)])
    return argv
