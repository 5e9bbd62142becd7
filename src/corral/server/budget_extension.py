"""The budgets extension: hard and soft Budgets: reserve the worst case, settle the real cost.

Being built; until then the extension takes part in nothing.
"""

from __future__ import annotations

from corral.server.extensions import Extension


class BudgetExtension(Extension):
    name = "budgets"
