"""The ``vllm`` runtime: ``vllm serve`` as a child process.

Rendered as ``vllm serve MODEL --host 127.0.0.1 --port PORT --served-model-name NAME
[--option value ...]`` with vLLM's spelling (dashes; booleans as ``--flag``/``--no-flag``);
ready when ``GET /health`` answers 200.
"""

from __future__ import annotations

import os
import shutil

from corral.runtimes.providers import LaunchError, ProcessPlan, render_options
from corral.runtimes.spec import ReplicaSpec

_RESERVED = frozenset({"model", "host", "port"})


class VllmProvider:
    """Runs ``executable`` found on the replica's PATH (``vllm`` unless told otherwise)."""

    type = "vllm"

    def __init__(self, executable: str = "vllm") -> None:
        if not executable:
            raise ValueError("the vllm executable name must not be empty")
        self.executable = executable

    def plan(self, spec: ReplicaSpec, port: int, /) -> ProcessPlan:
        search_path = spec.env.get("PATH", os.environ.get("PATH", os.defpath))
        resolved = shutil.which(self.executable, path=search_path)
        if resolved is None:
            raise LaunchError(
                f"vLLM is not installed: {self.executable!r} not found on PATH "
                "(install vllm on a machine with a supported GPU)"
            )
        if not spec.model_path:
            raise LaunchError("no model: the vllm runtime needs a model directory or hub id")
        # A hub id ("org/name") is vLLM's to resolve; only something that looks like a local
        # path can be checked here.
        looks_local = spec.model_path.startswith(("/", "./", "../", "~"))
        local_path = os.path.expanduser(spec.model_path)
        if looks_local and not os.path.exists(local_path):
            raise LaunchError(f"model path not found: {spec.model_path}")
        options = dict(spec.options)
        argv = [
            resolved,
            "serve",
            local_path if looks_local else spec.model_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if not {"served_model_name", "served-model-name"} & options.keys():
            argv.extend(["--served-model-name", spec.model])
        argv.extend(
            render_options(options, reserved=_RESERVED, spelling="kebab-case", booleans="flag")
        )
        # vLLM's --api-key guards /v1 only, so /health needs no credentials.
        return ProcessPlan(
            argv=tuple(argv), health_path="/health", env={"PYTHONUNBUFFERED": "1", **spec.env}
        )
