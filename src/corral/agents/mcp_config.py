"""How to reach one Tool's MCP server: the launch command or URL, with its credentials resolved.

Where it sits: whoever holds the store (the Tool controller, the agents role's composition
root) reads a Tool and the Secrets it names and builds a :class:`ServerConfig` with
:func:`server_config`; :mod:`corral.agents.mcp_client` connects with it. The config is the only
place credential values live in memory: they are injected into the server's environment
(stdio) or request headers (http) and redacted from everything read back (stderr, errors,
results), so they never reach the model, the journal or a status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from corral.api.kinds.tool import ToolSpec

SecretLookup = Callable[[str], Mapping[str, str] | None]
"""``secret name -> its data`` (``None``: no such Secret), in the Tool's namespace."""


class CredentialError(LookupError):
    """A credential names a Secret or key that does not exist (reason ``SecretNotFound``)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything needed to connect; equal configs share one connection."""

    key: str
    """``namespace/name`` of the Tool."""
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout_seconds: float = 30.0
    secrets: frozenset[str] = field(default=frozenset(), repr=False)
    """The credential values, for redaction; never shown."""

    def __post_init__(self) -> None:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"tool {self.key}: set exactly one of command and url")
        if not self.timeout_seconds > 0:
            raise ValueError(f"tool {self.key}: timeoutSeconds must be > 0")

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "http"

    def __repr__(self) -> str:  # the env and headers may hold credentials
        return f"ServerConfig({self.key!r}, {self.transport})"

    def redact(self, text: str) -> str:
        """``text`` with every credential value replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


def server_config(namespace: str, name: str, spec: ToolSpec, secrets: SecretLookup) -> ServerConfig:
    """The config of Tool ``namespace/name``; :class:`CredentialError` names a missing Secret."""
    injected: dict[str, str] = {}
    values: set[str] = set()
    for index, credential in enumerate(spec.credentials):
        data = secrets(credential.secretRef)
        if data is None:
            raise CredentialError(
                f"credentials[{index}]: Secret {namespace}/{credential.secretRef} does not exist"
            )
        if credential.key not in data:
            raise CredentialError(
                f"credentials[{index}]: Secret {namespace}/{credential.secretRef} has no key "
                f"{credential.key!r}"
            )
        value = str(data[credential.key])
        injected[credential.env or credential.header or ""] = value
        if value:
            values.add(value)
    key = f"{namespace}/{name}"
    if spec.mcp.stdio is not None:
        stdio = spec.mcp.stdio
        return ServerConfig(
            key,
            command=stdio.command,
            args=tuple(stdio.args),
            env=tuple(sorted({**stdio.env, **injected}.items())),
            cwd=stdio.cwd,
            timeout_seconds=spec.timeoutSeconds,
            secrets=frozenset(values),
        )
    assert spec.mcp.http is not None  # the spec validator guarantees one transport
    return ServerConfig(
        key,
        url=spec.mcp.http.url,
        headers=tuple(sorted({**spec.mcp.http.headers, **injected}.items())),
        timeout_seconds=spec.timeoutSeconds,
        secrets=frozenset(values),
    )
