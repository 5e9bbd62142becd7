"""The built-in policies, registered by name when the package is imported."""

from __future__ import annotations

from corral.scheduler.baselines import bestfit_policy, random_policy
from corral.scheduler.fgd import fgd_policy
from corral.scheduler.lookahead import lookahead_policy
from corral.scheduler.policy import register_policy

register_policy("random", random_policy)
register_policy("bestfit", bestfit_policy)
register_policy("fgd", fgd_policy)
register_policy("default", lookahead_policy)
