"""Accelerator placement: which node (and which GPUs on it) each task goes to.

The pure core under the scheduler controller and the ``corral`` CLI. It imports nothing of
corral's and needs only numpy (matplotlib, optionally, for plots):

- :class:`Fleet` holds every node's capacity and free CPU, memory and per-GPU milli as arrays;
  :class:`Task` is one request; :class:`Placement` is a decision;
- policies are registered by name (``random``, ``bestfit``, ``fgd``, ``default``) with
  :func:`register_policy` and built per run by :func:`make_policy`;
- :func:`simulate` / :func:`simulate_many` replay a trace the way the FGD paper evaluates
  policies, and :func:`plot_allocation_curves` draws the result;
- :func:`load_openb_nodes` / :func:`load_openb_pods` read the Alibaba openb CSV files.
"""

from corral.scheduler import catalog as _catalog  # registers the built-in policies
from corral.scheduler.fleet import GPU_MILLI, Fleet, Placement, Task
from corral.scheduler.openb import TraceError, load_openb_nodes, load_openb_pods
from corral.scheduler.plot import plot_allocation_curves
from corral.scheduler.policy import (
    Policy,
    PolicyContext,
    PolicyFactory,
    make_policy,
    policy_names,
    register_policy,
)
from corral.scheduler.simulate import (
    DEFAULT_INFLATION,
    PolicySummary,
    SimResult,
    simulate,
    simulate_many,
)

del _catalog

__all__ = [
    "DEFAULT_INFLATION",
    "GPU_MILLI",
    "Fleet",
    "Placement",
    "Policy",
    "PolicyContext",
    "PolicyFactory",
    "PolicySummary",
    "SimResult",
    "Task",
    "TraceError",
    "load_openb_nodes",
    "load_openb_pods",
    "make_policy",
    "plot_allocation_curves",
    "policy_names",
    "register_policy",
    "simulate",
    "simulate_many",
]
