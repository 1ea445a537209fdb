"""Tier transitions and soft margin calls as plain records, with the figures behind them.

Pure: the caller passes the clock (``now_s``, seconds since the epoch) and the
margin report; nothing here logs or sends. Money in the account currency;
ratios are MM / equity fractions.
"""

from __future__ import annotations

import math

import msgspec

from risk.account import AccountMargin
from risk.stress import StressResult


class TierTransition(msgspec.Struct, frozen=True, kw_only=True):
    """An account changed tier; the AccountRisk figures that made it (currency, fraction).

    ``at_s``: wall-clock seconds since the epoch when the liquidation engine saw it.
    """

    account: str
    previous: str
    tier: str
    margin_ratio: float
    equity: float
    maintenance_margin: float
    initial_margin: float
    binding_underlying: str
    binding_scenario: str
    top_driver: str
    last_seq: int
    model_version: int
    at_s: float


class Driver(msgspec.Struct, frozen=True, kw_only=True):
    """A position's P&L in the binding scenario (currency; negative adds to the loss)."""

    instrument: str
    quantity: float
    scenario_pnl: float


class StressFigure(msgspec.Struct, frozen=True, kw_only=True):
    """A named stress on the account: its P&L (currency), equity after it, and the
    margin ratio if it happened with margin unchanged (fraction; inf if equity <= 0)."""

    name: str
    pnl: float
    equity_after: float
    ratio_after: float
    moves: dict[str, float]


class MarginCall(msgspec.Struct, frozen=True, kw_only=True):
    """A soft margin call: deposit ``amount_needed`` (currency) by ``deadline_s`` (epoch s)
    to bring MM / equity down to ``target_ratio``, or positions will be reduced."""

    account: str
    issued_at_s: float
    deadline_s: float
    amount_needed: float
    margin_ratio: float
    target_ratio: float
    equity: float
    maintenance_margin: float
    binding_underlying: str
    binding_scenario: str
    drivers: tuple[Driver, ...]
    stress: tuple[StressFigure, ...]


def amount_needed(maintenance_margin: float, equity: float, target_ratio: float) -> float:
    """Cash (currency) that brings MM / equity to ``target_ratio``: MM / target - equity, >= 0.

    A margin that is not a number needs an unknown amount: +inf (fail closed).
    """
    if not (math.isfinite(maintenance_margin) and math.isfinite(equity)):
        return math.inf
    return max(0.0, maintenance_margin / target_ratio - equity)


def stress_figure(result: StressResult, equity: float, maintenance_margin: float) -> StressFigure:
    after = equity + result.pnl
    ratio = maintenance_margin / after if after > 0.0 else (math.inf if maintenance_margin > 0.0 else 0.0)
    return StressFigure(name=result.name, pnl=result.pnl, equity_after=after, ratio_after=ratio, moves=result.moves)


def margin_call(margin: AccountMargin, stress: list[StressResult] | tuple[StressResult, ...], *, target_ratio: float,
                now_s: float, deadline_s: float) -> MarginCall:
    """The margin call of an account from its full margin report and its stress results.

    ``deadline_s``: seconds after ``now_s`` the account has to cure the call.
    """
    mm, equity = margin.maintenance_margin, margin.equity
    return MarginCall(
        account=margin.account, issued_at_s=now_s, deadline_s=now_s + deadline_s,
        amount_needed=amount_needed(mm, equity, target_ratio), margin_ratio=margin.margin_ratio,
        target_ratio=target_ratio, equity=equity, maintenance_margin=mm,
        binding_underlying=margin.binding_underlying, binding_scenario=margin.binding_scenario,
        drivers=tuple(Driver(instrument=c.instrument, quantity=c.quantity, scenario_pnl=c.scenario_pnl)
                      for c in margin.top_contributors),
        stress=tuple(stress_figure(r, equity, mm) for r in stress))
