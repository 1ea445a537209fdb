"""Risk arrays against an independent scenario-by-scenario revaluation."""

from __future__ import annotations

import numpy as np
import pytest

from risk import pricing
from risk.instruments import pricing_inputs
from risk.model import RiskModel
from risk.params import PortfolioGrid, SpanGrid
from risk.scenarios import scenario_set


def _span_scenarios(grid: SpanGrid) -> list[tuple[float, float, float]]:
    """(move, absolute vol shift, weight), written out from SPAN's definition."""
    out = []
    for thirds in (0, 1, -1, 2, -2, 3, -3):
        for vol in (grid.vol_scan_range, -grid.vol_scan_range):
            out.append((thirds / 3 * grid.price_scan_range, vol, 1.0))
    out.append((grid.extreme_multiple * grid.price_scan_range, 0.0, grid.extreme_fraction))
    out.append((-grid.extreme_multiple * grid.price_scan_range, 0.0, grid.extreme_fraction))
    return out


def test_span_grid_has_sixteen_scenarios_as_specified() -> None:
    grid = SpanGrid(price_scan_range=0.06, vol_scan_range=0.03, extreme_multiple=2.5, extreme_fraction=0.3)
    sset = scenario_set(grid)
    expected = _span_scenarios(grid)
    assert len(sset) == 16
    np.testing.assert_allclose(sset.moves, [m for m, _, _ in expected])
    np.testing.assert_allclose(sset.vol_dir, [np.sign(v) for _, v, _ in expected])
    np.testing.assert_allclose(sset.weight, [w for _, _, w in expected])


def test_portfolio_grid_is_nine_moves_by_three_vols_plus_extended() -> None:
    grid = PortfolioGrid()
    sset = scenario_set(grid)
    assert len(sset) == 27 + len(grid.extended_moves)
    core = sorted(set(np.round(sset.moves[:27], 12)))
    np.testing.assert_allclose(core, np.linspace(-0.16, 0.16, 9))
    np.testing.assert_allclose(sset.weight[27:], grid.extended_dampener)
    np.testing.assert_allclose(sset.moves[27:], grid.extended_moves)


def _reference_arrays(table, market, params, underlying: str) -> np.ndarray:
    """Every instrument of ``underlying`` revalued scenario by scenario with risk.pricing.price."""
    inputs = pricing_inputs(table, market)
    u = table.underlying_index[underlying]
    grid = params.grids[table.underlying_specs[u].grid]
    rows = np.flatnonzero(table.underlying == u)
    if isinstance(grid, SpanGrid):
        scen = _span_scenarios(grid)
        lookahead = grid.lookahead_days / 365.0
    else:
        scen = []
        for k in range(-grid.buckets_per_side, grid.buckets_per_side + 1):
            for direction in (1, 0, -1):
                scen.append((k / grid.buckets_per_side * grid.max_move, direction, 1.0))
        scen += [(m, 0, grid.extended_dampener) for m in grid.extended_moves]
        lookahead = 0.0
    out = np.zeros((len(rows), len(scen)))
    for i, row in enumerate(rows):
        s, t, vol = inputs.s[row], inputs.t[row], inputs.vol[row]
        args = (table.is_call[row], table.strike[row], inputs.r[row], inputs.q[row])
        for j, (move, vshift, weight) in enumerate(scen):
            if not table.is_option[row]:
                pnl = s * move
            else:
                if isinstance(grid, SpanGrid):
                    vol_s = max(vol + vshift, grid.vol_floor)
                else:
                    dte = max(t * 365.0, grid.min_dte_days)
                    power = grid.short_dated_power if dte < grid.dte_reference_days else grid.long_dated_power
                    shock = {1: grid.vol_up, 0: 0.0, -1: -grid.vol_down}[vshift]
                    vol_s = max(vol * (1 + shock * (grid.dte_reference_days / dte) ** power), grid.vol_floor)
                c, k, r, q = args
                v0 = pricing.price(c, s, k, r, q, t, vol, table.black76[row])
                v1 = pricing.price(c, s * (1 + move), k, r, q, max(t - lookahead, 0.0), vol_s, table.black76[row])
                pnl = float(v1 - v0)
            out[i, j] = pnl * weight * table.multiplier[row]
    return out


@pytest.mark.parametrize("underlying", ["SPX", "NDX"])
def test_risk_arrays_equal_scenario_by_scenario_revaluation(book_parts, underlying: str) -> None:
    table, market, params = book_parts
    model = RiskModel(table, market, params)
    block = model.blocks[table.underlying_index[underlying]]
    expected = _reference_arrays(table, market, params, underlying)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(block.arrays, expected, rtol=1e-9, atol=1e-9 * scale)


def test_scenario_prices_match_price_for_calls_puts_and_black76() -> None:
    rng = np.random.default_rng(5)
    n, moves = 400, np.array([-0.3, -0.05, 0.0, 0.07, 0.5])
    is_call = rng.random(n) < 0.5
    black76 = rng.random(n) < 0.3
    s = rng.uniform(50, 150, n)
    k = s * np.exp(rng.uniform(-0.6, 0.6, n))
    r, q = rng.uniform(-0.02, 0.08, n), rng.uniform(-0.02, 0.05, n)
    t = rng.uniform(1 / 365, 3.0, n)
    vol = rng.uniform(0.02, 2.0, (n, len(moves)))
    got = pricing.scenario_prices(is_call, s, k, r, q, t, vol, moves, black76)
    want = pricing.price(is_call[:, None], s[:, None] * (1 + moves), k[:, None], r[:, None], q[:, None],
                         t[:, None], vol, black76[:, None])
    # Puts come from parity: absolute error bounded by rounding of the forward.
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11 * s.max())


def test_expired_options_in_scenarios_are_worth_intrinsic() -> None:
    got = pricing.scenario_prices(np.array([True, False]), np.array([100.0, 100.0]), np.array([95.0, 95.0]),
                                  np.zeros(2), np.zeros(2), np.zeros(2), np.full((2, 3), 0.2),
                                  np.array([-0.1, 0.0, 0.1]))
    np.testing.assert_allclose(got, [[0.0, 5.0, 15.0], [5.0, 0.0, 0.0]], atol=1e-12)


def test_incremental_reprice_of_one_underlying_equals_a_full_rebuild(book_parts) -> None:
    import msgspec

    table, market, params = book_parts
    rng = np.random.default_rng(9)
    returns = rng.multivariate_normal([0, 0], [[1e-4, 6e-5], [6e-5, 2e-4]], size=260)
    before = RiskModel(table, market, params, returns)
    quotes = dict(market.underlyings)
    quotes["NDX"] = msgspec.structs.replace(quotes["NDX"], price=25100.0, vol=0.24)
    moved = msgspec.structs.replace(market, underlyings=quotes, future_prices={"NQ": 25170.0})
    ndx = table.underlying_index["NDX"]
    incremental = RiskModel(table, moved, params, returns, previous=before, changed={ndx})
    full = RiskModel(table, moved, params, returns)
    spx = table.underlying_index["SPX"]
    assert incremental.blocks[spx] is before.blocks[spx]  # untouched underlying reused, not recomputed
    for a, b in zip(incremental.blocks, full.blocks):
        np.testing.assert_array_equal(a.arrays, b.arrays)
    for a, b in zip(incremental.scenario_rows, full.scenario_rows):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(incremental.historical_rows, full.historical_rows, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(incremental.valuation.mark, full.valuation.mark)
    assert incremental.covariance_psd is before.covariance_psd
