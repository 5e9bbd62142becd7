"""The controller runtime: informers, workqueues, reconcile loops, leader election, GC.

Controllers declare what they reconcile; the :class:`Manager` runs them (DESIGN.md §2, §7)::

    manager = Manager(store, identity="host-1234", leader_election=True)
    manager.add(Controller("endpoints", for_kind="Endpoint", reconciler=reconcile, owns=("Model",)))
    manager.add(GarbageCollector(manager))
    await manager.run(stop_event)
"""

from corral.controlplane.channel import KeyChannel
from corral.controlplane.conditions import get_condition, is_true, set_condition
from corral.controlplane.controller import Controller, Watch, owner_keys
from corral.controlplane.gc import GarbageCollector
from corral.controlplane.informer import EventHandler, Informer, InformerEvent
from corral.controlplane.leader import LeaderElector
from corral.controlplane.manager import Manager
from corral.controlplane.result import Reconciler, Result, TerminalError
from corral.controlplane.runnable import Runnable
from corral.controlplane.workqueue import WorkQueue

__all__ = [
    "Controller",
    "EventHandler",
    "GarbageCollector",
    "Informer",
    "InformerEvent",
    "KeyChannel",
    "LeaderElector",
    "Manager",
    "Reconciler",
    "Result",
    "Runnable",
    "TerminalError",
    "Watch",
    "WorkQueue",
    "get_condition",
    "is_true",
    "owner_keys",
    "set_condition",
]
