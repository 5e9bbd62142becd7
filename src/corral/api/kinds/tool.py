"""``Tool``: an MCP server an Agent may call, over stdio (spawned by corral) or streamable HTTP.

The Tool controller (``corral.controllers.tool``) connects with the official ``mcp`` SDK,
lists the server's tools and records them in ``status.tools`` (name, description, JSON input
schema) beside the ``Connected`` and ``Ready`` conditions. The agent runtime calls them through
``corral.agents.mcp_client``.

Credentials are Secret references, never values: corral reads the Secret when it connects and
injects the value as an environment variable (stdio) or a request header (http). They never
reach the model, the agent's journal or a tool result.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from corral.api.objects import DNS1123_SUBDOMAIN, ResourceStatus
from corral.api.registry import KindInfo, register_kind

Risk = Literal["read", "write", "destructive"]
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
MCP_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")


def _env_names(env: dict[str, str]) -> dict[str, str]:
    bad = sorted(name for name in env if not ENV_NAME.match(name))
    if bad:
        raise ValueError(f"environment variable name(s) {', '.join(map(repr, bad))} are not valid")
    return env


def _header_names(headers: dict[str, str]) -> dict[str, str]:
    bad = sorted(name for name in headers if not HEADER_NAME.match(name))
    if bad:
        raise ValueError(f"header name(s) {', '.join(map(repr, bad))} are not valid")
    return headers


class StdioServer(BaseModel):
    """A server corral spawns, supervises (restarts with backoff) and stops."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, description="executable, looked up on PATH")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict, description="extra environment (not secrets: use credentials)"
    )
    cwd: str | None = Field(default=None, min_length=1, description="working directory")

    _env = field_validator("env")(_env_names)


class HttpServer(BaseModel):
    """A streamable-HTTP MCP server someone else runs."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, description="the MCP endpoint, e.g. https://host/mcp")
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra request headers (not secrets: use credentials)"
    )

    _headers = field_validator("headers")(_header_names)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s?#]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value


class McpServer(BaseModel):
    """Exactly one of ``stdio`` and ``http``."""

    model_config = ConfigDict(extra="forbid")

    stdio: StdioServer | None = None
    http: HttpServer | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.stdio is None) == (self.http is None):
            raise ValueError("set exactly one of mcp.stdio and mcp.http")
        return self


class Credential(BaseModel):
    """One Secret value injected as an environment variable (stdio) or header (http)."""

    model_config = ConfigDict(extra="forbid")

    secretRef: str = Field(min_length=1, max_length=253, description="a Secret in this namespace")
    key: str = Field(min_length=1, description="the key in the Secret's data")
    env: str | None = Field(default=None, description="environment variable (stdio servers)")
    header: str | None = Field(default=None, description="request header (http servers)")

    @field_validator("secretRef")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if not DNS1123_SUBDOMAIN.match(value):
            raise ValueError(f"{value!r} is not a valid Secret name (DNS-1123)")
        return value

    @field_validator("env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid environment variable name")
        return value

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not HEADER_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid header name")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> Credential:
        if (self.env is None) == (self.header is None):
            raise ValueError(
                f"credential {self.secretRef}/{self.key}: set exactly one of env, header"
            )
        return self


class ToolSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mcp: McpServer
    risk: Risk = Field(default="read", description="risk of every tool the server offers")
    toolRisks: dict[str, Risk] = Field(
        default_factory=dict, description="per MCP tool name, overriding risk"
    )
    credentials: list[Credential] = Field(default_factory=list, max_length=32)
    timeoutSeconds: float = Field(default=30.0, gt=0, le=3600, description="per call")

    @field_validator("toolRisks")
    @classmethod
    def _tool_names(cls, value: dict[str, Risk]) -> dict[str, Risk]:
        bad = sorted(name for name in value if not MCP_TOOL_NAME.match(name))
        if bad:
            raise ValueError(f"tool name(s) {', '.join(map(repr, bad))} are not valid MCP names")
        return value

    @model_validator(mode="after")
    def _credentials_fit_transport(self) -> ToolSpec:
        seen: set[str] = set()
        for index, credential in enumerate(self.credentials):
            where = f"credentials[{index}]"
            if self.mcp.stdio is not None and credential.header is not None:
                raise ValueError(f"{where}: a stdio server takes credentials as env, not header")
            if self.mcp.http is not None and credential.env is not None:
                raise ValueError(f"{where}: an http server takes credentials as header, not env")
            target = (credential.env or credential.header or "").lower()
            if target in seen:
                raise ValueError(f"{where}: {target!r} is injected twice")
            seen.add(target)
        return self


class ListedTool(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    description: str = ""
    inputSchema: dict[str, object] = Field(default_factory=dict)


class ToolStatus(ResourceStatus):
    tools: list[ListedTool] = Field(default_factory=list)
    transport: str = ""


TOOL = register_kind(
    KindInfo(
        kind="Tool",
        plural="tools",
        spec_model=ToolSpec,
        status_model=ToolStatus,
        description="An MCP server (stdio or streamable HTTP) whose tools Agents may call.",
        printer_columns=(("RISK", "spec.risk"), ("TRANSPORT", "status.transport")),
    )
)
