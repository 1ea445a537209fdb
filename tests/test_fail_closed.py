"""Inputs that cannot give a trustworthy margin raise; they never read as "no risk"."""

from __future__ import annotations

import datetime as dt
import math

import msgspec
import numpy as np
import pytest

from risk.account import Account
from risk.errors import RiskModelError
from risk.exposure import scan_risk
from risk.instruments import MarketSnapshot
from risk.model import RiskModel
from risk.params import PortfolioGrid, SpanGrid, StressScenario
from risk.pricing import greeks
from risk.stress import stress_moves
from risk.tiers import Tier, next_tier, tier_for_ratio


def _with_quote(market: MarketSnapshot, und: str, **changes) -> MarketSnapshot:
    quotes = dict(market.underlyings)
    quotes[und] = msgspec.structs.replace(quotes[und], **changes)
    return msgspec.structs.replace(market, underlyings=quotes)


@pytest.mark.parametrize("field,value", [("price", math.nan), ("price", -1.0), ("vol", math.nan),
                                         ("rate", math.inf)])
def test_non_finite_market_data_is_refused(book_parts, field, value) -> None:
    table, market, params = book_parts
    with pytest.raises(RiskModelError, match=field):
        RiskModel(table, _with_quote(market, "SPX", **{field: value}), params)


def test_non_finite_option_vol_is_refused(book_parts) -> None:
    table, market, params = book_parts
    bad = msgspec.structs.replace(market, option_vols={**market.option_vols, "C7000": math.nan})
    with pytest.raises(RiskModelError, match="C7000"):
        RiskModel(table, bad, params)


def test_scan_risk_of_nan_raises() -> None:
    with pytest.raises(RiskModelError):
        scan_risk(np.array([-1e6, math.nan]))


@pytest.mark.parametrize("build", [
    lambda: SpanGrid(price_scan_range=0.34, vol_scan_range=0.04),  # extreme move -102 %
    lambda: SpanGrid(price_scan_range=1.2, vol_scan_range=0.04),
    lambda: PortfolioGrid(max_move=1.2),
    lambda: PortfolioGrid(extended_moves=(-1.0, 2.0)),
])
def test_grids_with_moves_of_minus_100_percent_are_refused(build) -> None:
    with pytest.raises(ValueError):
        build()


def test_nan_ratio_is_the_worst_tier(book_parts) -> None:
    _, _, params = book_parts
    assert tier_for_ratio(math.nan, params.tiers) == Tier.FULL_LIQUIDATION
    assert next_tier(Tier.FULL_LIQUIDATION, math.nan, params.tiers) == Tier.FULL_LIQUIDATION


def test_expired_instrument_is_refused_and_expiry_day_keeps_time_value(book_parts) -> None:
    table, market, params = book_parts
    expiry_day = dt.datetime(2026, 12, 18, 14, 0, tzinfo=dt.timezone.utc)  # 7 h before 21:00 UTC
    model = RiskModel(table, msgspec.structs.replace(market, as_of=expiry_day), params)
    row = table.index["C7000"]
    assert model.inputs.t[row] == pytest.approx(7 / (365 * 24))
    g = greeks(True, model.inputs.s[row], 7000.0, model.inputs.r[row], model.inputs.q[row],
               7 / (365 * 24), model.inputs.vol[row])
    assert model.valuation.mark[row] == pytest.approx(float(g.price)) and 0.0 < float(g.gamma)
    after = dt.datetime(2026, 12, 18, 21, 0, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(RiskModelError, match="expired"):
        RiskModel(table, msgspec.structs.replace(market, as_of=after), params)


def test_stress_moves_implied_by_correlation_stay_above_minus_100_percent(book_parts) -> None:
    table, market, params = book_parts
    rng = np.random.default_rng(4)
    base = rng.standard_normal(300) * 0.02
    returns = np.column_stack([base * 9.0 + rng.standard_normal(300) * 1e-4, base])  # SPX beta 9 to NDX
    model = RiskModel(table, market, params, returns)
    moves = stress_moves(model, StressScenario(name="tech", sector_moves={"tech": -0.2}, correlation_factor=1.0))
    spx = table.underlying_index["SPX"]
    assert -1.0 < moves.price_moves[spx] < -0.8
    assert moves.price_moves[table.underlying_index["NDX"]] == -0.2


def test_flat_account_with_open_orders_on_nan_free_data_is_not_zero(book_parts) -> None:
    table, market, params = book_parts
    model = RiskModel(table, market, params)
    acct = Account("A", params.profiles["span"], model, 1e6)
    acct.reserve("o", table.index["C7000"], -10, 150.0)
    assert acct.initial_margin() == 0.0
    assert acct.initial_margin_with_orders() > 0.0
