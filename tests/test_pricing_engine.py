"""Pricing engine: coalesced repricing of ticked underlyings, full revaluation, fast-path error."""

from __future__ import annotations

import datetime as dt

import numpy as np

from actors.market_data import MarketState, Tick
from actors.pricing_engine import PricingEngine
from risk.model import RiskModel
from tests.conftest import AS_OF


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _engine(book_parts, clock: FakeClock) -> PricingEngine:
    table, market, params = book_parts
    state = MarketState(table, market.underlyings)
    for uid, quote in market.underlyings.items():
        state.apply(Tick(underlying=uid, price=quote.price, rate=quote.rate, dividend_yield=quote.dividend_yield,
                         atm_vol=quote.vol, future_prices=tuple(market.future_prices.items())
                         if uid == "NDX" else (), option_vols=tuple((k, v) for k, v in market.option_vols.items()
                                                                    if table.specs[table.index[k]].underlying == uid),
                         event_time_ns=1, seq=1))
    return PricingEngine(table, params, state, full_interval_s=1.0, clock=clock)


def test_a_burst_of_ticks_costs_one_revaluation_of_that_underlying_only(book_parts) -> None:
    clock = FakeClock()
    engine = _engine(book_parts, clock)
    first = engine.reprice(AS_OF)
    assert first is not None and engine.version == 1
    clock.t = 0.1
    assert engine.reprice(AS_OF) is None  # nothing ticked, full interval not due
    for i in range(50):
        assert engine.on_tick(Tick(underlying="NDX", price=24500.0 + i, event_time_ns=10 + i, seq=2 + i)) is None
    second = engine.reprice(AS_OF)
    assert engine.version == 2
    spx, ndx = (engine.table.underlying_index[u] for u in ("SPX", "NDX"))
    assert second.blocks[spx] is first.blocks[spx]  # untouched: reused
    table, market, params = book_parts
    exact = RiskModel(table, engine.state.snapshot(AS_OF), params)
    np.testing.assert_array_equal(second.blocks[ndx].arrays, exact.blocks[ndx].arrays)
    np.testing.assert_array_equal(second.valuation.mark, exact.valuation.mark)


def test_full_revaluation_measures_the_fast_path_error(book_parts) -> None:
    clock = FakeClock()
    engine = _engine(book_parts, clock)
    engine.reprice(AS_OF)
    engine.on_tick(Tick(underlying="SPX", price=6900.0 * 1.002, event_time_ns=50, seq=5))
    clock.t = 1.5
    engine.reprice(AS_OF + dt.timedelta(seconds=1))
    small = engine.fast_path_error.last_max_abs
    assert engine.fast_path_error.checks == 1 and small >= 0.0
    engine.on_tick(Tick(underlying="SPX", price=6900.0 * 1.08, event_time_ns=60, seq=6))
    clock.t = 3.0
    engine.reprice(AS_OF + dt.timedelta(seconds=2))
    # Delta-gamma error grows with the size of the move (third-order terms).
    assert engine.fast_path_error.last_max_abs > 10 * max(small, 1e-9)
    assert engine.fast_path_error.checks == 2


def test_malformed_tick_is_reported_and_dropped(book_parts) -> None:
    engine = _engine(book_parts, FakeClock())
    error = engine.on_tick(Tick(underlying="SPX", price=float("nan"), event_time_ns=5, seq=9))
    assert error is not None and "price" in error
    assert engine.malformed == 1 and not engine.dirty
