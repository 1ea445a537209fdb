"""Scenario grids: the price moves, vol shocks and weights of each grid family.

A grid is expanded once into a :class:`ScenarioSet` (moves, vol direction, weight
and a label per scenario); the per-option vol shift is then computed by
:func:`shocked_vols`, because the portfolio family scales vol shocks by each
option's days to expiry.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from risk.params import PortfolioGrid, ScenarioGrid, SpanGrid
from risk.xp import array_module


class ScenarioSet(msgspec.Struct, frozen=True):
    """One grid expanded: arrays of length S.

    ``moves``: relative price move of the underlying (fraction). ``vol_dir``: -1
    (vol down), 0 (unchanged) or +1 (vol up). ``weight``: the fraction of the
    scenario's P&L that counts (1.0, or SPAN's 0.35 for extreme moves).
    ``lookahead_years``: time decay applied in every scenario.
    """

    moves: np.ndarray
    vol_dir: np.ndarray
    weight: np.ndarray
    labels: tuple[str, ...]
    lookahead_years: float = 0.0

    def __len__(self) -> int:
        return len(self.labels)


def _span_set(grid: SpanGrid) -> ScenarioSet:
    moves, dirs, weights, labels = [], [], [], []
    # SPAN's order: unchanged, +1/3, -1/3, +2/3, -2/3, +3/3, -3/3, each vol up then down.
    for frac, text in ((0, "0"), (1, "+1/3"), (-1, "-1/3"), (2, "+2/3"), (-2, "-2/3"), (3, "+3/3"), (-3, "-3/3")):
        for direction, vol_text in ((1, "vol up"), (-1, "vol down")):
            moves.append(frac / 3.0 * grid.price_scan_range)
            dirs.append(direction)
            weights.append(1.0)
            labels.append(f"price {text} range, {vol_text}")
    for sign, text in ((1, "+"), (-1, "-")):
        moves.append(sign * grid.extreme_multiple * grid.price_scan_range)
        dirs.append(0)
        weights.append(grid.extreme_fraction)
        labels.append(f"extreme {text}{grid.extreme_multiple:g}x range ({grid.extreme_fraction:.0%} counted)")
    return ScenarioSet(np.array(moves), np.array(dirs), np.array(weights), tuple(labels),
                       grid.lookahead_days / 365.0)


def _portfolio_set(grid: PortfolioGrid) -> ScenarioSet:
    moves, dirs, weights, labels = [], [], [], []
    steps = np.arange(-grid.buckets_per_side, grid.buckets_per_side + 1) / grid.buckets_per_side
    for step in steps:
        move = float(step * grid.max_move)
        for direction, vol_text in ((1, "vol up"), (0, "vol unchanged"), (-1, "vol down")):
            moves.append(move)
            dirs.append(direction)
            weights.append(1.0)
            labels.append(f"price {move:+.1%}, {vol_text}")
    for move in grid.extended_moves:
        moves.append(move)
        dirs.append(0)
        weights.append(grid.extended_dampener)
        labels.append(f"extended {move:+.0%} ({grid.extended_dampener:.0%} counted)")
    return ScenarioSet(np.array(moves), np.array(dirs), np.array(weights), tuple(labels), 0.0)


def scenario_set(grid: ScenarioGrid) -> ScenarioSet:
    """Expand a grid's parameters into its scenarios."""
    if isinstance(grid, SpanGrid):
        return _span_set(grid)
    return _portfolio_set(grid)


def shocked_vols(grid: ScenarioGrid, scenarios: ScenarioSet, vol: Any, years_to_expiry: Any) -> Any:
    """Vol of each option (rows) under each scenario (columns), floored at the grid's vol floor.

    ``vol`` and ``years_to_expiry`` are arrays of shape (n,); the result is (n, S).
    SPAN: vol +- vol_scan_range (absolute). Portfolio: vol x (1 +- shock x
    (reference DTE / DTE) ** power), the power by short- or long-dated.
    """
    xp = array_module(vol, years_to_expiry)
    vol = vol[:, None]
    direction = xp.asarray(scenarios.vol_dir)[None, :]
    if isinstance(grid, SpanGrid):
        shocked = vol + direction * grid.vol_scan_range
    else:
        dte = xp.maximum(xp.asarray(years_to_expiry) * 365.0, grid.min_dte_days)
        power = xp.where(dte < grid.dte_reference_days, grid.short_dated_power, grid.long_dated_power)
        scale = (grid.dte_reference_days / dte) ** power
        shock = xp.where(direction > 0, grid.vol_up, xp.where(direction < 0, grid.vol_down, 0.0))
        shocked = vol * (1.0 + direction * shock * scale[:, None])
    return xp.maximum(shocked, grid.vol_floor)
