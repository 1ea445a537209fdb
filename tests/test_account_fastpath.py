"""The pre-trade fast paths of risk.account are bit-identical to the implementation
they replaced (tests/reference_account_v0.py, a frozen copy): after any sequence of
fills, what-ifs, reservations (right after the what-if of the same order, so the
fast path reuses its arrays, or not), releases, partial fills of orders and rebinds,
every figure a decision carries and every cached margin figure is the same float.

Also the caches on their own: equity against a direct recomputation, the exact sum
of the orders' VaRs against math.fsum, the historical VaR against risk.var.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk.account import Account
from risk.account_whatif import ExactSum, _historical_var, model_lists
from risk.model import RiskModel
from risk.params import MarginProfile
from risk.var import var_es_from_pnl
from tests.reference_account_v0 import Account as ReferenceAccount

ROWS = ["ES", "C6800", "C7000", "C7200", "P6400", "NQ", "NQC", "NQP", "NDXSPOT"]
PROFILES = {
    "scenario": MarginProfile(methods=("scenario",)),
    "scenario_som": MarginProfile(methods=("scenario",), short_option_minimum=0.02),
    "all": MarginProfile(methods=("scenario", "parametric_var", "historical_var"), short_option_minimum=0.01),
    "pvar": MarginProfile(methods=("parametric_var",), short_option_minimum=0.05),
    "hvar": MarginProfile(methods=("scenario", "historical_var"), short_option_minimum=0.004),
    "hvar_only": MarginProfile(methods=("historical_var",)),
    "pvar_hvar": MarginProfile(methods=("parametric_var", "historical_var")),
    # A short-option minimum that binds: the what-if's short notional decides the term.
    "var_som": MarginProfile(methods=("scenario", "parametric_var", "historical_var"), short_option_minimum=0.3),
}
QTYS = [-8.0, -2.5, -1.0, -0.1, 0.1, 0.3, 1.0, 4.0, 8.0, 37.0]


def _returns() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.multivariate_normal([0, 0], [[1e-4, 8e-5], [8e-5, 2e-4]], size=260)


def _same(a: float, b: float) -> bool:
    """Bit-identical floats (NaN equal to NaN)."""
    return math.copysign(1.0, a) == math.copysign(1.0, b) and (a == b or (a != a and b != b))


def _assert_same_state(acct: Account, ref: ReferenceAccount, where: object) -> None:
    assert _same(acct.initial_margin(), ref.initial_margin()), where
    assert _same(acct.initial_margin_with_orders(), ref.initial_margin_with_orders()), where
    assert acct.equity() == ref.equity(), where
    assert acct._terms_all == ref._terms_all and acct._short_all == ref._short_all, where
    assert np.array_equal(acct._combined, ref._combined), where
    assert _same(acct._reserve.var, ref._reserve.var), where
    assert list(acct._reserve.short_notional) == ref._reserve.short_notional.tolist(), where
    assert np.array_equal(acct._reserve.scenario, ref._reserve.scenario), where
    assert np.array_equal(acct._reserve.historical, ref._reserve.historical), where
    assert msgspec.structs.astuple(acct.summary()) == msgspec.structs.astuple(ref.summary()), where
    assert msgspec.to_builtins(acct.margin()) == msgspec.to_builtins(ref.margin()), where


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    profile=st.sampled_from(sorted(PROFILES)),
    steps=st.lists(st.tuples(st.sampled_from(["fill", "check", "check", "check", "what_if", "reserve", "release",
                                              "fill_order", "rebind", "other"]),
                             st.sampled_from(ROWS), st.sampled_from(QTYS), st.integers(0, 4)),
                   min_size=1, max_size=30),
)
def test_fast_paths_are_bit_identical_to_the_previous_implementation(book_parts, profile, steps) -> None:
    table, market, params = book_parts
    returns = _returns()
    model = RiskModel(table, market, params, returns)
    acct = Account("A", PROFILES[profile], model, 1e6)
    ref = ReferenceAccount("A", PROFILES[profile], model, 1e6)
    for n, (op, iid, qty, k) in enumerate(steps):
        row = table.index[iid]
        order_id = f"o{k}"
        where = (n, op, iid, qty, k)
        if op == "fill":
            price = float(acct.model.valuation.mark[row]) * (1.0 + 0.001 * k)
            acct.apply_fill(row, qty, price)
            ref.apply_fill(row, qty, price)
        elif op in ("check", "what_if", "other"):
            # "check": what-if then reserve of the same order (the pre-trade hook's
            # accepted order, the fast path); "what_if": a what-if left alone; "other":
            # a what-if, then a reservation of another quantity (no reuse allowed).
            probe, expected = acct.what_if(row, qty), ref.what_if(row, qty)
            assert msgspec.structs.astuple(probe) == msgspec.structs.astuple(expected) or all(
                _same(a, b) for a, b in zip(msgspec.structs.astuple(probe), msgspec.structs.astuple(expected))), where
            if op == "check":
                acct.reserve(order_id, row, qty, 1.0)
                ref.reserve(order_id, row, qty, 1.0)
            elif op == "other":
                acct.reserve(order_id, row, 2.0 * qty, 1.0)
                ref.reserve(order_id, row, 2.0 * qty, 1.0)
        elif op == "reserve":
            acct.reserve(order_id, row, qty, 1.0)
            ref.reserve(order_id, row, qty, 1.0)
        elif op == "release":
            assert acct.release(order_id) == ref.release(order_id), where
        elif op == "fill_order" and order_id in acct.orders:
            order = acct.orders[order_id]
            acct.apply_fill(order.row, order.quantity / 3, 1.0, order_id=order_id)
            ref.apply_fill(order.row, order.quantity / 3, 1.0, order_id=order_id)
        elif op == "rebind":
            moved = msgspec.structs.replace(market, underlyings={
                uid: msgspec.structs.replace(q, price=q.price * (1.0 + 0.01 * qty / 8))
                for uid, q in market.underlyings.items()})
            new = RiskModel(table, moved, params, returns)
            acct.rebind(new)
            ref.rebind(new)
        assert {k: msgspec.structs.astuple(v) for k, v in acct.orders.items()} == {
            k: msgspec.structs.astuple(v) for k, v in ref.orders.items()}, where
        _assert_same_state(acct, ref, where)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(ROWS), st.sampled_from(QTYS), st.booleans(), st.floats(-1e6, 1e6)),
                      min_size=1, max_size=20))
def test_cached_equity_equals_a_direct_recomputation(book_parts, steps) -> None:
    """Equity is cached between fills: after each fill, cash change or rebind it equals
    cash + sum of quantity x (mark - average price) x multiplier, computed afresh."""
    table, market, params = book_parts
    acct = Account("A", PROFILES["scenario"], RiskModel(table, market, params), 1e6)
    for iid, qty, rebind, cash in steps:
        row = table.index[iid]
        acct.equity()  # fill the cache before each change: a stale one must not survive it
        acct.apply_fill(row, qty, float(acct.model.valuation.mark[row]) * 1.01)
        acct.equity()
        acct.cash = cash
        if rebind:
            moved = msgspec.structs.replace(market, underlyings={
                uid: msgspec.structs.replace(q, price=q.price * (1.0 + qty / 400))
                for uid, q in market.underlyings.items()})
            acct.rebind(RiskModel(table, moved, params))
        m = acct.model
        upl = math.fsum(p.quantity * (float(m.valuation.mark[r]) - p.average_price) * float(m.table.multiplier[r])
                        for r, p in acct.positions.items())
        equity, got_upl = acct.equity()
        assert got_upl == pytest.approx(upl, rel=1e-12, abs=1e-6)
        assert equity == pytest.approx(cash + upl, rel=1e-12, abs=1e-6)


@given(ops=st.lists(st.tuples(st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)
                              | st.sampled_from([5e-324, 1e-300, 0.1, 1e308, math.inf]), st.booleans()),
                    max_size=40), extra=st.floats(0.0, 1e9))
def test_exact_sum_equals_fsum_of_what_is_in_it(ops, extra) -> None:
    """Adds and removes in any order: value() is math.fsum of the values left in it
    (plus ``extra``), and a non-finite value is reported, never summed."""
    total, held = ExactSum(), []
    for value, remove in ops:
        if remove and held:
            gone = held.pop(len(held) // 2)
            total.add(gone, -1)
        else:
            held.append(value)
            total.add(value)
        assert total.exact == all(math.isfinite(v) for v in held)
        if total.exact:
            assert _outcome(total.value) == _outcome(math.fsum, held)
            assert _outcome(total.value, extra) == _outcome(math.fsum, held + [extra])


def _outcome(f, *args) -> object:
    """f(*args) as (bits of the float) or the exception type it raised (fsum and the
    exact sum both raise OverflowError past the largest double)."""
    try:
        value = f(*args)
    except OverflowError as exc:
        return type(exc)
    return (value, math.copysign(1.0, value))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pnl=st.lists(st.floats(-1e7, 1e7) | st.just(0.0) | st.just(-0.0), min_size=1, max_size=300),
       confidence=st.sampled_from([0.9, 0.95, 0.975, 0.99, 0.999]))
def test_historical_var_equals_var_es_from_pnl(book_parts, pnl, confidence) -> None:
    """The what-if's historical VaR (on the negated P&L, k from the model) is
    risk.var.var_es_from_pnl's VaR, bit for bit."""
    table, market, params = book_parts
    params = msgspec.structs.replace(params, var=msgspec.structs.replace(params.var, confidence=confidence))
    rng = np.random.default_rng(1)
    model = RiskModel(table, market, params, rng.normal(0.0, 0.01, size=(len(pnl), 2)))
    losses = -np.array(pnl)
    got = _historical_var(model, losses, model_lists(model).tail_k)
    assert _same(got, var_es_from_pnl(np.array(pnl), confidence)[0])
    bad = losses.copy()
    bad[0] = math.nan
    with pytest.raises(ValueError):
        _historical_var(model, bad, model_lists(model).tail_k)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(held=st.sampled_from([0.0, 3.0, -4.0, 7.5]),
       orders=st.lists(st.sampled_from([-6.0, -2.0, -0.5, 1.0, 2.5, 5.0]), max_size=5),
       quantity=st.sampled_from([-9.0, -3.0, -1.0, 1.0, 2.0, 8.0]), limit=st.sampled_from([4.0, 6.0, 9.0, 15.0]))
def test_position_limit_equals_a_brute_force_over_order_subsets(book_parts, held, orders, quantity, limit) -> None:
    """check_static's per-instrument limit (inline sums of the account's open orders):
    rejected exactly when the largest |position| some subset of the open orders plus
    this one can reach passes the limit and is larger than without this order."""
    from itertools import combinations

    from actors.pretrade_config import PretradeLimits
    from actors.pretrade_limits import check_static

    table, market, params = book_parts
    model = RiskModel(table, market, params)
    acct = Account("A", PROFILES["scenario"], model, 1e9)
    row = table.index["ES"]
    if held:
        acct.apply_fill(row, held, 100.0)
    for i, q in enumerate(orders):
        acct.reserve(f"o{i}", row, q, 100.0)

    def worst(qs: list[float]) -> float:
        return max(abs(held + sum(c)) for n in range(len(qs) + 1) for c in combinations(qs, n))

    before, after = worst(orders), worst(orders + [quantity])
    failure = check_static(PretradeLimits(max_position_instrument=limit), acct, row, quantity,
                           float(model.valuation.mark[row]), None, 0.0)
    assert (failure is not None) == (after > limit + 1e-9 and after > before + 1e-9)
    if failure is not None:
        assert failure[0] == "max_position_instrument" and f"reach {after:g} contracts" in failure[1]


@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.just(-0.0), min_size=1, max_size=40),
       nan_at=st.none() | st.integers(0, 39))
def test_scan_risk_is_the_worst_loss_and_refuses_nan(values, nan_at) -> None:
    """scan_risk (argmin and the value there) is max(0, -min), bit for bit, and a NaN
    anywhere raises RiskModelError."""
    from risk.errors import RiskModelError
    from risk.exposure import scan_risk

    pnl = np.array(values)
    if nan_at is not None:
        pnl[nan_at % len(values)] = math.nan
        with pytest.raises(RiskModelError):
            scan_risk(pnl)
        return
    worst = float(np.min(pnl))
    assert _same(scan_risk(pnl), -worst if worst < 0.0 else 0.0)
