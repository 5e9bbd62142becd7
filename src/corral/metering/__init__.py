"""Metering: what requests cost and the budgets they spend, never overspent.

The gateway prices a request's worst case (:func:`worst_case_cost`), reserves it against the
budgets that apply (:meth:`BudgetLedger.reserve`), calls the model, then settles the real cost
(:meth:`BudgetLedger.settle`) or releases the hold. Counters live in a :class:`CounterBackend`
from ``corral.store.budget_ledger`` (PostgreSQL, Redis or SQLite). Imports only ``corral.api``.
"""

from corral.metering.budgets import BudgetRule, BudgetSet, Subject
from corral.metering.estimate import estimate_prompt_tokens, worst_case_cost
from corral.metering.ledger import (
    Alert,
    BudgetLedger,
    CounterBackend,
    Refusal,
    Reservation,
    Settlement,
    UnknownReservation,
)
from corral.metering.periods import period_window
from corral.metering.pricing import DEFAULT_PRICES, PRICES_AS_OF, Amount, Price, price_for

__all__ = [
    "DEFAULT_PRICES",
    "PRICES_AS_OF",
    "Alert",
    "Amount",
    "BudgetLedger",
    "BudgetRule",
    "BudgetSet",
    "CounterBackend",
    "Price",
    "Refusal",
    "Reservation",
    "Settlement",
    "Subject",
    "UnknownReservation",
    "estimate_prompt_tokens",
    "period_window",
    "price_for",
    "worst_case_cost",
]
