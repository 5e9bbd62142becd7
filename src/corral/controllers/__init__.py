"""Controllers: one reconciler per kind, run by the controller runtime's Manager.

``add_model_serving`` wires the Model and Endpoint controllers and the runtime supervisor that
keeps model servers alive into a :class:`~corral.controlplane.Manager`.
"""

from __future__ import annotations

from pathlib import Path

from corral.controllers.endpoint import (
    FINALIZER,
    SECRET_API_KEY_FIELD,
    EndpointReconciler,
    api_base,
    endpoint_controller,
    replica_change_sender,
    secret_api_key,
)
from corral.controllers.endpoint_devices import ReplicaDevices
from corral.controllers.model import ModelReconciler, model_controller
from corral.controlplane import KeyChannel, Manager
from corral.runtimes import Supervisor, SupervisorSettings


def add_model_serving(
    manager: Manager,
    state_dir: Path,
    *,
    settings: SupervisorSettings | None = None,
    devices: ReplicaDevices | None = None,
) -> Supervisor:
    """Add the Model and Endpoint controllers; returns the supervisor of the model servers.

    With ``devices``, Endpoints that set ``spec.devices`` get ResourceClaims per replica and
    run with what the claims were allocated; without, such Endpoints are refused."""
    channel = KeyChannel()
    supervisor = Supervisor(state_dir, on_change=replica_change_sender(channel), settings=settings)
    manager.add(model_controller(manager.store, digest_cache_dir=state_dir / "digests"))
    manager.add(endpoint_controller(manager, supervisor, channel, devices))
    return supervisor


__all__ = [
    "FINALIZER",
    "SECRET_API_KEY_FIELD",
    "EndpointReconciler",
    "ModelReconciler",
    "ReplicaDevices",
    "add_model_serving",
    "api_base",
    "endpoint_controller",
    "model_controller",
    "replica_change_sender",
    "secret_api_key",
]
