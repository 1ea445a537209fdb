"""Shared fixtures: a small two-underlying book priced at one snapshot."""

from __future__ import annotations

import datetime as dt

import pytest

from risk.instruments import InstrumentTable, MarketSnapshot, UnderlyingQuote
from risk.params import (InstrumentSpec, MarginParams, MarginProfile, PortfolioGrid, SpanGrid, TierThresholds,
                         UnderlyingSpec)

AS_OF = dt.datetime(2026, 11, 20, 21, 0, tzinfo=dt.timezone.utc)
DEC = dt.date(2026, 12, 18)
MAR = dt.date(2027, 3, 19)


def _option(iid: str, und: str, right: str, strike: float, expiry: dt.date, mult: float = 100.0,
            on_future: str | None = None) -> InstrumentSpec:
    return InstrumentSpec(id=iid, kind="option", underlying=und, right=right, strike=strike, expiry=expiry,
                          multiplier=mult, on_future=on_future)


@pytest.fixture
def book_parts() -> tuple[InstrumentTable, MarketSnapshot, MarginParams]:
    underlyings = [UnderlyingSpec(id="SPX", grid="span", sector="broad"),
                   UnderlyingSpec(id="NDX", grid="pm", sector="tech")]
    instruments = [
        InstrumentSpec(id="ES", kind="future", underlying="SPX", multiplier=50.0, expiry=DEC),
        _option("C6800", "SPX", "call", 6800.0, DEC),
        _option("C7000", "SPX", "call", 7000.0, DEC),
        _option("C7200", "SPX", "call", 7200.0, DEC),
        _option("P6400", "SPX", "put", 6400.0, MAR),
        InstrumentSpec(id="NQ", kind="future", underlying="NDX", multiplier=20.0, expiry=DEC),
        _option("NQC", "NDX", "call", 25000.0, DEC, 20.0, on_future="NQ"),
        _option("NQP", "NDX", "put", 23500.0, DEC, 20.0, on_future="NQ"),
        InstrumentSpec(id="NDXSPOT", kind="spot", underlying="NDX", multiplier=1.0),
    ]
    table = InstrumentTable(underlyings, instruments)
    market = MarketSnapshot(
        as_of=AS_OF,
        underlyings={"SPX": UnderlyingQuote(price=6900.0, rate=0.04, dividend_yield=0.013, vol=0.17),
                     "NDX": UnderlyingQuote(price=24500.0, rate=0.04, dividend_yield=0.007, vol=0.22)},
        future_prices={"NQ": 24570.0},
        option_vols={"C7000": 0.158, "P6400": 0.215},
    )
    params = MarginParams(
        grids={"span": SpanGrid(price_scan_range=0.08, vol_scan_range=0.04, lookahead_days=1.0),
               "pm": PortfolioGrid()},
        profiles={"span": MarginProfile(), "som": MarginProfile(short_option_minimum=0.01)},
        tiers=TierThresholds(),
    )
    return table, market, params
