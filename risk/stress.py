"""Named stress tests: joint price and vol shocks, with correlation scaling.

A stress names moves for some underlyings (directly or by sector). The others
move by their expected value given the shocked ones, under the model's
covariance with correlations scaled by the stress's ``correlation_factor`` (so
"tech -20 %, correlations +50 %" also drags the broad index down by its stressed
beta to tech). The conditioning is done on log-returns, so implied moves stay
above -100 %. Every instrument is then fully revalued at the shocked prices and
vols (floored at its grid's vol floor): no Greeks approximation.
"""

from __future__ import annotations

import msgspec
import numpy as np

from risk.model import RiskModel
from risk.params import StressScenario
from risk.valuation import shocked_pnl
from risk.covariance import conditional_moves, scale_correlations


class StressMoves(msgspec.Struct, frozen=True):
    """The joint move of one stress: per underlying, in ``RiskModel`` underlying order.

    ``price_moves``: relative (fractions). ``vol_shifts``: absolute vol change.
    ``implied``: True where the move was inferred from correlation, not given.
    """

    name: str
    price_moves: np.ndarray
    vol_shifts: np.ndarray
    implied: np.ndarray
    correlation_repaired: bool


class StressResult(msgspec.Struct, frozen=True):
    """An account's P&L under one stress (currency; negative = loss)."""

    name: str
    pnl: float
    moves: dict[str, float]


def stress_moves(model: RiskModel, stress: StressScenario) -> StressMoves:
    """Resolve a stress's per-underlying price moves and vol shifts."""
    specs = model.table.underlying_specs
    n = len(specs)
    moves = np.zeros(n)
    shocked = np.zeros(n, dtype=bool)
    vol = np.full(n, stress.vol_shift)
    for u, spec in enumerate(specs):
        if spec.id in stress.underlying_moves:
            moves[u], shocked[u] = stress.underlying_moves[spec.id], True
        elif spec.sector and spec.sector in stress.sector_moves:
            moves[u], shocked[u] = stress.sector_moves[spec.sector], True
        if spec.sector in stress.sector_vol_shifts:
            vol[u] = stress.sector_vol_shifts[spec.sector]
    implied = np.zeros(n, dtype=bool)
    repaired = False
    if model.covariance is not None and shocked.any() and not shocked.all():
        scaled = scale_correlations(model.covariance, stress.correlation_factor)
        repaired = scaled.repaired
        index = np.flatnonzero(shocked)
        # Condition in log-returns so an implied move can never reach -100 %
        # (a high beta to a large shock would otherwise price at a negative level).
        implied_log = np.asarray(conditional_moves(scaled.matrix, index, np.log1p(moves[index])), dtype=float)
        given = moves[index].copy()
        moves = np.expm1(implied_log)
        moves[index] = given
        implied = ~shocked
    return StressMoves(stress.name, moves, vol, implied, repaired)


def stress_pnl_per_contract(model: RiskModel, moves: StressMoves) -> np.ndarray:
    """P&L of one contract of every instrument under the stress (currency), shape (n,)."""
    return shocked_pnl(model.table, model.inputs, moves.price_moves, moves.vol_shifts, model.vol_floors())


def stress_account(model: RiskModel, moves: StressMoves, per_contract: np.ndarray,
                   quantity: np.ndarray) -> StressResult:
    """An account's stress P&L from its signed quantities per table row."""
    ids = model.table.underlying_ids
    return StressResult(moves.name, float(quantity @ per_contract),
                        {ids[u]: float(moves.price_moves[u]) for u in range(len(ids))})
