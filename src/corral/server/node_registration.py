"""This machine as a ``Node``: a process with the controllers role registers it and keeps it
fresh, so the scheduler knows what the local runtimes can use.

The Node is named ``CORRAL_NODE_NAME`` (default: the host name) and describes the CPU, memory
and NVIDIA GPUs ``nvidia-smi`` lists (``corral.devices.inventory``). ``CORRAL_NODE_REGISTER=0``
turns registration off (a controllers replica on a machine that serves no models). A store that
refuses the write is logged and retried; it never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from corral.api.objects import Object
from corral.api.validation import validate_object
from corral.devices.inventory import keep_node_registered, node_name
from corral.store.protocol import Store

_log = logging.getLogger("corral.nodes")

NODE_NAME_ENV = "CORRAL_NODE_NAME"
NODE_REGISTER_ENV = "CORRAL_NODE_REGISTER"
HEARTBEAT_S = 30.0
RETRY_S = 10.0


def registration_enabled() -> bool:
    value = os.environ.get(NODE_REGISTER_ENV, "").strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{NODE_REGISTER_ENV}={value!r}: expected 1/true/yes/on or 0/false/no/off")


def this_node_name() -> str:
    """The Node this process registers (and binds local replicas' claims on)."""
    return node_name(os.environ.get(NODE_NAME_ENV, "").strip() or None)


async def keep_this_node_registered(store: Store, stop: asyncio.Event) -> None:
    """Register and heartbeat this machine's Node until ``stop``; never raises for the store."""
    name = this_node_name()

    async def apply(obj: Object) -> Object:
        (outcome,) = await store.apply([validate_object(obj)], actor="system:node")
        return outcome.object

    async def read(node_name: str) -> Object:
        return await store.get("Node", "", node_name)

    while not stop.is_set():
        try:
            await keep_node_registered(
                apply, store.update_status, read, stop, interval=HEARTBEAT_S, name=name
            )
            return
        except Exception as error:  # the store may be away; the server carries on
            _log.warning("this machine's Node is not registered (retrying): %s", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RETRY_S)
