"""The ``llamacpp`` runtime: llama-cpp-python's OpenAI-compatible server as a child process.

Rendered as ``python -m llama_cpp.server --model PATH --host 127.0.0.1 --port PORT
--model_alias MODEL --interrupt_requests false [--option value ...]``; ready when
``GET /v1/models`` answers 200.

``interrupt_requests`` defaults to false here (llama-cpp-python's own default is true): with it
on, a new request abandons the stream in flight, so concurrent clients get replies cut short
with no finish reason. Queueing is what a server behind a gateway should do; an Endpoint can
still set the option.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Sequence

from corral.runtimes.providers import LaunchError, ProcessPlan, render_options
from corral.runtimes.spec import ReplicaSpec

_DEFAULT_LAUNCHER = (sys.executable, "-m", "llama_cpp.server")
_RESERVED = frozenset({"model", "host", "port"})


class LlamaCppProvider:
    """Runs ``launcher`` (by default this interpreter's ``-m llama_cpp.server``).

    Tests and packagers swap ``launcher`` for another command that takes the same arguments.
    """

    type = "llamacpp"

    def __init__(self, launcher: Sequence[str] | None = None) -> None:
        self.launcher = tuple(launcher) if launcher is not None else _DEFAULT_LAUNCHER
        if not self.launcher:
            raise ValueError("the llamacpp launcher command must not be empty")

    def plan(self, spec: ReplicaSpec, port: int, /) -> ProcessPlan:
        self._check_launcher(spec)
        if not spec.model_path:
            raise LaunchError("no model file: the llamacpp runtime needs a local GGUF file")
        if not os.path.isfile(spec.model_path):
            raise LaunchError(f"model file not found: {spec.model_path}")
        options = dict(spec.options)
        argv = [
            *self.launcher,
            "--model",
            spec.model_path,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        # Name the model as clients know it, so /v1/models lists the Endpoint's model name.
        if "model_alias" not in options and "model-alias" not in options:
            argv.extend(["--model_alias", spec.model])
        if "interrupt_requests" not in options and "interrupt-requests" not in options:
            argv.extend(["--interrupt_requests", "false"])
        argv.extend(
            render_options(options, reserved=_RESERVED, spelling="snake_case", booleans="value")
        )
        headers = {}
        if isinstance(options.get("api_key"), str):
            headers["Authorization"] = f"Bearer {options['api_key']}"
        return ProcessPlan(
            argv=tuple(argv),
            health_path="/v1/models",
            # Unbuffered so a crash's last words reach the log file before the process dies.
            env={"PYTHONUNBUFFERED": "1", **spec.env},
            health_headers=headers,
        )

    def _check_launcher(self, spec: ReplicaSpec) -> None:
        if self.launcher == _DEFAULT_LAUNCHER:
            if importlib.util.find_spec("llama_cpp") is None:
                raise LaunchError(
                    f"the llama.cpp server is not installed for {sys.executable}: "
                    "install 'llama-cpp-python[server]'"
                )
            return
        search_path = spec.env.get("PATH", os.environ.get("PATH", os.defpath))
        if shutil.which(self.launcher[0], path=search_path) is None:
            raise LaunchError(f"llamacpp launcher not found: {self.launcher[0]!r} (PATH)")
