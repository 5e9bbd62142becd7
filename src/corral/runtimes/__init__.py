"""Model runtimes: model servers run as supervised child processes, or external upstreams.

The Endpoint controller turns Endpoints into :class:`ReplicaSpec` values and hands the
desired set to a :class:`Supervisor`, which starts, probes, restarts, drains and stops the
servers and reports :class:`ReplicaStatus` changes. A runtime type (``llamacpp``, ``vllm``,
``openai``) is a :class:`RuntimeProvider` registered with :func:`register_provider`; plugins
add runtimes through the same hook.
"""

from corral.runtimes.llamacpp import LlamaCppProvider
from corral.runtimes.providers import (
    LaunchError,
    ProcessPlan,
    RuntimeProvider,
    UpstreamPlan,
    register_provider,
    registered_providers,
)
from corral.runtimes.settings import SupervisorSettings
from corral.runtimes.spec import ReplicaSpec, ReplicaState, ReplicaStatus, RuntimeOption
from corral.runtimes.supervisor import Supervisor
from corral.runtimes.upstream import OpenAIUpstreamProvider
from corral.runtimes.vllm import VllmProvider

for _builtin in (LlamaCppProvider(), VllmProvider(), OpenAIUpstreamProvider()):
    if _builtin.type not in registered_providers():
        register_provider(_builtin)

__all__ = [
    "LaunchError",
    "LlamaCppProvider",
    "OpenAIUpstreamProvider",
    "ProcessPlan",
    "ReplicaSpec",
    "ReplicaState",
    "ReplicaStatus",
    "RuntimeOption",
    "RuntimeProvider",
    "Supervisor",
    "SupervisorSettings",
    "UpstreamPlan",
    "VllmProvider",
    "register_provider",
    "registered_providers",
]
