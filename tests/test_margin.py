"""Account margin: hedges, scaling, what-if vs full recomputation, reservations, fills."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk.account import Account
from risk.model import RiskModel
from risk.params import MarginProfile


def _account(model: RiskModel, positions: dict[str, float], profile: str = "span", cash: float = 1e7) -> Account:
    acct = Account("A", model.params.profiles[profile], model, cash)
    for iid, qty in positions.items():
        row = model.table.index[iid]
        acct.apply_fill(row, qty, float(model.valuation.mark[row]))
    return acct


def _direct_im(model: RiskModel, positions: dict[str, float], profile: MarginProfile) -> float:
    """IM recomputed from the blocks with matrix products, no incremental state."""
    q = np.zeros(len(model.table))
    for iid, qty in positions.items():
        q[model.table.index[iid]] += qty
    total = 0.0
    for u, block in enumerate(model.blocks):
        pnl = q[block.rows] @ block.arrays
        short = sum(max(-q[r], 0.0) * model.option_notional[r] for r in block.rows)
        total += max(max(-pnl.min(), 0.0), profile.short_option_minimum * short)
    return total


@pytest.fixture
def model(book_parts) -> RiskModel:
    return RiskModel(*book_parts)


def test_long_future_hedged_with_short_calls_needs_less_than_its_legs(model: RiskModel) -> None:
    row_c = model.table.index["C7000"]
    row_f = model.table.index["ES"]
    # Delta-equivalent: futures delta per contract x 50 against call delta x 100.
    call_delta = model.valuation.dollar_delta[row_c]
    fut_delta = model.valuation.dollar_delta[row_f]
    calls = -round(4 * fut_delta / call_delta)
    hedged = _account(model, {"ES": 4, "C7000": calls}).initial_margin()
    alone = _account(model, {"ES": 4}).initial_margin() + _account(model, {"C7000": calls}).initial_margin()
    assert calls < 0
    assert hedged < alone
    assert hedged < 0.5 * alone  # a delta hedge removes most of the directional scan risk


def test_butterfly_needs_less_than_its_legs(model: RiskModel) -> None:
    legs = {"C6800": 10, "C7000": -20, "C7200": 10}
    fly = _account(model, legs).initial_margin()
    separate = sum(_account(model, {k: v}).initial_margin() for k, v in legs.items())
    assert 0 < fly < separate


@pytest.mark.parametrize("factor", [2.0, 3.0, 10.0])
def test_scenario_margin_scales_with_quantity(model: RiskModel, factor: float) -> None:
    base = {"ES": 3, "C7000": -7, "P6400": 5, "NQC": -4, "NQP": 6}
    scaled = {k: v * factor for k, v in base.items()}
    im1 = _account(model, base).initial_margin()
    imk = _account(model, scaled).initial_margin()
    assert imk == pytest.approx(factor * im1, rel=1e-12)


def test_incremental_margin_equals_direct_recomputation(model: RiskModel) -> None:
    positions = {"ES": -2, "C6800": 3, "C7000": -9, "P6400": -4, "NQ": 1, "NQC": -5, "NQP": -2}
    for name in ("span", "som"):
        profile = model.params.profiles[name]
        acct = _account(model, positions, name)
        assert acct.initial_margin() == pytest.approx(_direct_im(model, positions, profile), rel=1e-12)


ROWS = ["ES", "C6800", "C7000", "C7200", "P6400", "NQ", "NQC", "NQP", "NDXSPOT"]


def _worst_subset_im(model: RiskModel, held: dict[str, float], orders: list[tuple[str, float]],
                     profile: MarginProfile) -> float:
    """Brute force: the largest IM over every subset of the open orders filling."""
    worst = 0.0
    for mask in range(1 << len(orders)):
        pos = dict(held)
        for i, (iid, qty) in enumerate(orders):
            if mask >> i & 1:
                pos[iid] = pos.get(iid, 0) + qty
        worst = max(worst, _direct_im(model, pos, profile))
    return worst


# book_parts is immutable reference data; the model and account are rebuilt per example.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    held=st.dictionaries(st.sampled_from(ROWS), st.integers(-30, 30).filter(bool), max_size=6),
    orders=st.lists(st.tuples(st.sampled_from(ROWS), st.integers(-15, 15).filter(bool)), max_size=4),
    probe=st.tuples(st.sampled_from(ROWS), st.integers(-25, 25).filter(bool)),
    profile=st.sampled_from(["span", "som"]),
)
def test_what_if_is_the_worst_case_over_every_subset_of_orders(book_parts, held, orders, probe, profile) -> None:
    model = RiskModel(*book_parts)
    acct = _account(model, held, profile)
    for i, (iid, qty) in enumerate(orders):
        acct.reserve(f"o{i}", model.table.index[iid], qty, 1.0)
    row, qty = model.table.index[probe[0]], float(probe[1])
    result = acct.what_if(row, qty)
    brute = _worst_subset_im(model, held, orders + [probe], model.params.profiles[profile])
    if profile == "span":
        assert result.initial_margin_after == pytest.approx(brute, rel=1e-9, abs=1e-6)
    else:
        # The short-option floor counts every open option sell as a new short: never less.
        assert result.initial_margin_after >= brute * (1 - 1e-9) - 1e-6
    acct.reserve("probe", row, qty, 1.0)
    assert acct.initial_margin_with_orders() == pytest.approx(result.initial_margin_after, rel=1e-9, abs=1e-6)
    acct.release("probe")
    assert acct.initial_margin_with_orders() == pytest.approx(result.initial_margin_before, rel=1e-9, abs=1e-6)


def test_reservation_counts_until_released_then_fill_moves_it_to_positions(model: RiskModel) -> None:
    acct = _account(model, {"C7000": -10})
    base = acct.initial_margin_with_orders()
    row = model.table.index["C7000"]
    acct.reserve("o1", row, -10, 150.0)
    reserved = acct.initial_margin_with_orders()
    assert reserved == pytest.approx(_direct_im(model, {"C7000": -20}, acct.profile), rel=1e-12)
    assert acct.initial_margin() == pytest.approx(base)  # positions alone unchanged
    acct.apply_fill(row, -4, 150.0, order_id="o1")  # partial fill: 6 still reserved
    assert acct.orders["o1"].quantity == -6
    assert acct.initial_margin() == pytest.approx(_direct_im(model, {"C7000": -14}, acct.profile), rel=1e-12)
    assert acct.initial_margin_with_orders() == pytest.approx(reserved, rel=1e-12)
    assert acct.release("o1")
    assert acct.initial_margin_with_orders() == pytest.approx(acct.initial_margin(), rel=1e-12)
    assert not acct.release("o1")


def test_orders_on_both_sides_and_underlyings_get_no_hedge_credit(model: RiskModel) -> None:
    acct = _account(model, {"ES": 2})
    es, nq, put = (model.table.index[i] for i in ("ES", "NQ", "P6400"))
    acct.reserve("buy", es, 5, 6900.0)
    acct.reserve("sell", es, -3, 6900.0)
    acct.reserve("nq", nq, -10, 24000.0)
    acct.reserve("put", put, 40, 100.0)
    orders = [("ES", 5), ("ES", -3), ("NQ", -10), ("P6400", 40)]
    expected = _worst_subset_im(model, {"ES": 2}, orders, acct.profile)
    assert acct.initial_margin_with_orders() == pytest.approx(expected, rel=1e-12)
    # Buying puts would hedge the ES buy, but the puts may never fill: no credit.
    assert expected > _direct_im(model, {"ES": 7, "P6400": 40, "NQ": -10}, acct.profile)


def test_fill_that_contradicts_its_order_is_refused(model: RiskModel) -> None:
    acct = _account(model, {})
    es, nq = model.table.index["ES"], model.table.index["NQ"]
    acct.reserve("o1", es, 10, 6900.0)
    before = acct.initial_margin_with_orders()
    with pytest.raises(ValueError, match="does not match open order"):
        acct.apply_fill(nq, 4, 24000.0, order_id="o1")
    with pytest.raises(ValueError, match="does not match open order"):
        acct.apply_fill(es, -4, 6900.0, order_id="o1")
    assert acct.positions == {} and acct.initial_margin_with_orders() == before


def test_many_fills_that_close_out_leave_exactly_zero(model: RiskModel) -> None:
    rng = np.random.default_rng(8)
    acct = _account(model, {})
    rows = [model.table.index[i] for i in ROWS]
    held = np.zeros(len(model.table))
    for _ in range(3000):
        row = int(rng.choice(rows))
        qty = float(rng.integers(-5, 6) or 1) * 0.1
        acct.apply_fill(row, qty, float(model.valuation.mark[row]))
        held[row] += qty
    for row in np.flatnonzero(np.abs(held) > 1e-12):
        acct.apply_fill(int(row), -float(acct.quantities()[row]), float(model.valuation.mark[row]))
    assert acct.positions == {}
    assert acct.initial_margin() == 0.0
    assert acct.margin().binding_scenario == ""


def test_equity_and_realized_pnl_follow_average_cost(model: RiskModel) -> None:
    acct = Account("A", model.params.profiles["span"], model, cash=1000.0)
    row = model.table.index["ES"]
    mark = float(model.valuation.mark[row])
    acct.apply_fill(row, 2, mark - 10.0)
    acct.apply_fill(row, 2, mark - 20.0)  # average: mark - 15
    equity, upl = acct.equity()
    assert upl == pytest.approx(4 * 15.0 * 50)
    acct.apply_fill(row, -3, mark)  # realizes 3 x 15 x 50
    assert acct.cash == pytest.approx(1000.0 + 3 * 15.0 * 50)
    assert acct.equity()[0] == pytest.approx(equity)  # closing at the mark leaves equity unchanged
    acct.apply_fill(row, -3, mark + 5.0)  # flips to short 2 at mark + 5
    assert acct.positions[row].quantity == -2
    assert acct.positions[row].average_price == pytest.approx(mark + 5.0)


def test_margin_report_names_binding_scenario_and_contributors(model: RiskModel) -> None:
    acct = _account(model, {"NQ": -3, "NQP": -10, "NQC": 2, "C7000": -1})
    report = acct.margin()
    assert report.initial_margin == pytest.approx(acct.initial_margin())
    assert report.maintenance_margin == pytest.approx(0.8 * report.initial_margin)
    assert report.margin_ratio == pytest.approx(report.maintenance_margin / report.equity)
    worst = max(report.underlyings, key=lambda u: u.requirement)
    assert report.binding_underlying == worst.underlying == "NDX"
    # The contributors' P&L in the binding scenario sums to minus the scan risk.
    assert sum(c.scenario_pnl for c in report.top_contributors) == pytest.approx(-worst.scan_risk, rel=1e-12)
    assert [c.scenario_pnl for c in report.top_contributors] == sorted(c.scenario_pnl for c in report.top_contributors)


def test_short_option_minimum_floors_a_far_otm_short(model: RiskModel) -> None:
    acct = _account(model, {"P6400": -1}, profile="som")
    notional = model.option_notional[model.table.index["P6400"]]
    assert acct.initial_margin() >= 0.01 * notional
    assert acct.initial_margin() == pytest.approx(_direct_im(model, {"P6400": -1}, acct.profile), rel=1e-12)


def test_var_profile_uses_history(book_parts) -> None:
    table, market, params = book_parts
    rng = np.random.default_rng(1)
    returns = rng.multivariate_normal([0, 0], [[1e-4, 8e-5], [8e-5, 2e-4]], size=300)
    model = RiskModel(table, market, params, returns)
    profile = MarginProfile(methods=("scenario", "parametric_var", "historical_var"))
    acct = Account("A", profile, model, 1e7)
    row = table.index["ES"]
    acct.apply_fill(row, 10, float(model.valuation.mark[row]))
    report = acct.margin()
    # A futures-only book: delta-gamma VaR = delta-normal VaR = z sigma |dollar delta|.
    dd = 10 * model.valuation.dollar_delta[row]
    sigma = math.sqrt(model.covariance[0, 0])
    assert report.methods.parametric_var == pytest.approx(2.3263478740408408 * sigma * dd, rel=1e-9)
    pnl = np.sort(returns[:, 0] * dd)
    k = math.ceil(0.01 * len(pnl))
    assert report.methods.historical_var == pytest.approx(-pnl[k - 1], rel=1e-9)
    assert report.initial_margin == pytest.approx(max(report.methods.scenario, report.methods.parametric_var,
                                                      report.methods.historical_var))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fills=st.lists(st.tuples(st.sampled_from(ROWS), st.integers(-20, 20).filter(bool),
                             st.floats(0.5, 1.5)), min_size=1, max_size=25),
    orders=st.lists(st.tuples(st.sampled_from(ROWS), st.integers(-10, 10).filter(bool)), max_size=3),
    profile=st.sampled_from(["span", "som"]),
    spot_move=st.floats(0.9, 1.1),
)
def test_per_fill_summary_equals_the_full_report_and_a_cash_flow_ledger(book_parts, fills, orders, profile,
                                                                           spot_move) -> None:
    """The light per-fill figures (incremental cost basis, no loop over positions) equal
    the full report, and equity equals cash + sum of q x (mark - fill price) x multiplier,
    computed from the fills alone, before and after the model is re-marked."""
    table, market, params = book_parts
    model = RiskModel(table, market, params)
    acct = Account("A", params.profiles[profile], model, 1e6)
    for iid, qty, px_factor in fills:
        row = table.index[iid]
        acct.apply_fill(row, float(qty), float(model.valuation.mark[row]) * px_factor)
    for i, (iid, qty) in enumerate(orders):
        acct.reserve(f"o{i}", table.index[iid], float(qty), 1.0)
    moved = msgspec.structs.replace(market, underlyings={
        uid: msgspec.structs.replace(q, price=q.price * spot_move) for uid, q in market.underlyings.items()})
    for current in (model, RiskModel(table, moved, params)):
        if current is not model:  # first on the fill-by-fill sums, then after a rebuild
            acct.rebind(current)
        ledger = 1e6 + math.fsum(qty * (float(current.valuation.mark[table.index[iid]]) -
                                        float(model.valuation.mark[table.index[iid]]) * px)
                                 * float(table.multiplier[table.index[iid]]) for iid, qty, px in fills)
        summary, report = acct.summary(), acct.margin()
        assert summary.equity == pytest.approx(ledger, rel=1e-10, abs=1e-6)
        assert summary.equity == pytest.approx(report.equity, rel=1e-10, abs=1e-6)
        assert summary.initial_margin == pytest.approx(report.initial_margin, rel=1e-12, abs=1e-9)
        assert summary.maintenance_margin == pytest.approx(report.maintenance_margin, rel=1e-12, abs=1e-9)
        assert summary.initial_margin_with_orders == pytest.approx(report.initial_margin_with_orders, rel=1e-12,
                                                                   abs=1e-9)
        assert summary.margin_ratio == pytest.approx(report.margin_ratio, rel=1e-9, abs=1e-12)
        assert (summary.binding_underlying, summary.binding_scenario) == (report.binding_underlying,
                                                                          report.binding_scenario)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.tuples(st.sampled_from(["fill", "reserve", "release", "fill_order", "what_if", "rebind"]),
                             st.sampled_from(ROWS), st.integers(-8, 8).filter(bool), st.integers(0, 3)),
                   min_size=1, max_size=20),
)
def test_var_profile_caches_never_outlive_a_change(book_parts, steps) -> None:
    """A VaR profile keeps its IM with orders and its last order VaR cached between
    changes: after any fill, reservation, release or rebind, the figures equal those of
    a fresh account holding the same positions and orders (nothing cached there)."""
    table, market, params = book_parts
    rng = np.random.default_rng(5)
    returns = rng.multivariate_normal([0, 0], [[1e-4, 8e-5], [8e-5, 2e-4]], size=260)
    models = [RiskModel(table, market, params, returns)]
    profile = MarginProfile(methods=("scenario", "parametric_var", "historical_var"))
    acct = Account("A", profile, models[0], 1e7)

    def fresh() -> Account:
        other = Account("B", profile, acct.model, 1e7)
        for row, pos in acct.positions.items():
            other.apply_fill(row, pos.quantity, pos.average_price)
        for order in acct.orders.values():
            other.reserve(order.order_id, order.row, order.quantity, order.limit_price)
        return other

    for n, (op, iid, qty, k) in enumerate(steps):
        row = table.index[iid]
        order_id = f"o{k}"
        if op == "fill":
            acct.apply_fill(row, float(qty), float(acct.model.valuation.mark[row]))
        elif op == "reserve":
            acct.reserve(order_id, row, float(qty), 1.0)
        elif op == "release":
            acct.release(order_id)
        elif op == "fill_order" and order_id in acct.orders:
            order = acct.orders[order_id]
            acct.apply_fill(order.row, order.quantity / 2, 1.0, order_id=order_id)
        elif op == "what_if":
            acct.what_if(row, float(qty))
        elif op == "rebind":
            moved = msgspec.structs.replace(market, underlyings={
                uid: msgspec.structs.replace(q, price=q.price * (1.0 + 0.01 * qty))
                for uid, q in market.underlyings.items()})
            acct.rebind(RiskModel(table, moved, params, returns))
        reference = fresh()
        assert acct.initial_margin() == pytest.approx(reference.initial_margin(), rel=1e-9, abs=1e-6), (n, op)
        assert acct.initial_margin_with_orders() == pytest.approx(reference.initial_margin_with_orders(),
                                                                  rel=1e-9, abs=1e-6), (n, op)
        assert acct.margin().methods == reference.margin().methods or all(
            a == pytest.approx(b, rel=1e-9, abs=1e-6) for a, b in zip(
                msgspec.structs.astuple(acct.margin().methods), msgspec.structs.astuple(reference.margin().methods)))
        probe = acct.what_if(row, float(qty))
        expected = reference.what_if(row, float(qty))
        assert probe.initial_margin_after == pytest.approx(expected.initial_margin_after, rel=1e-9, abs=1e-6)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(st.tuples(st.sampled_from(["fill", "reserve", "release", "fill_order", "rebind"]),
                             st.sampled_from(ROWS), st.sampled_from([-8.0, -2.5, -1.0, -0.1, 0.1, 0.3, 1.0, 4.0, 8.0]),
                             st.integers(0, 3)),
                   min_size=1, max_size=24),
)
def test_order_sums_and_margin_terms_equal_a_recomputation(book_parts, steps) -> None:
    """The per-row open-order sums (position limits read them) and the cached margin
    terms (a reservation recomputes only the with-orders term) equal, after any change,
    the sums over the open orders and a fresh scenario-only account's figures."""
    table, market, params = book_parts
    profile = MarginProfile(methods=("scenario",))
    acct = Account("A", profile, RiskModel(table, market, params), 1e7)
    for n, (op, iid, qty, k) in enumerate(steps):
        row = table.index[iid]
        order_id = f"o{k}"
        if op == "fill":
            acct.apply_fill(row, qty, float(acct.model.valuation.mark[row]))
        elif op == "reserve":
            acct.reserve(order_id, row, qty, 1.0)
        elif op == "release":
            acct.release(order_id)
        elif op == "fill_order" and order_id in acct.orders:
            order = acct.orders[order_id]
            acct.apply_fill(order.row, order.quantity / 2, 1.0, order_id=order_id)
        elif op == "rebind":
            moved = msgspec.structs.replace(market, underlyings={
                uid: msgspec.structs.replace(q, price=q.price * (1.0 + 0.01 * qty))
                for uid, q in market.underlyings.items()})
            acct.rebind(RiskModel(table, moved, params))
        sums: dict[int, list[float]] = {}
        for order in acct.orders.values():
            entry = sums.setdefault(order.row, [0.0, 0.0])
            entry[0 if order.quantity > 0 else 1] += order.quantity
        assert set(acct.open_by_row) == {r for r, v in sums.items() if v != [0.0, 0.0]}, (n, op)
        for r, (buys, sells) in sums.items():
            assert acct.open_sides(r) == (pytest.approx(buys, abs=1e-9), pytest.approx(sells, abs=1e-9)), (n, op)
        reference = Account("B", profile, acct.model, 1e7)
        for r, pos in acct.positions.items():
            reference.apply_fill(r, pos.quantity, pos.average_price)
        for order in acct.orders.values():
            reference.reserve(order.order_id, order.row, order.quantity, order.limit_price)
        assert acct.initial_margin() == pytest.approx(reference.initial_margin(), rel=1e-12, abs=1e-6), (n, op)
        assert acct.initial_margin_with_orders() == pytest.approx(reference.initial_margin_with_orders(),
                                                                  rel=1e-12, abs=1e-6), (n, op)
        probe, expected = acct.what_if(row, qty), reference.what_if(row, qty)
        assert probe.initial_margin_after == pytest.approx(expected.initial_margin_after, rel=1e-12, abs=1e-6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(iid=st.sampled_from(ROWS), qty=st.sampled_from([-50.0, -3.0, -1.0, -0.25, 0.25, 1.0, 7.0, 120.0]))
def test_order_var_scales_one_contract_exactly_as_a_direct_computation(book_parts, iid, qty) -> None:
    """An order's stand-alone VaR is |q| x one contract's on its side (cached per model):
    equal to the delta-gamma VaR of the order's own exposures computed directly."""
    from risk.exposure import order_var, parametric_var

    table, market, params = book_parts
    rng = np.random.default_rng(5)
    returns = rng.multivariate_normal([0, 0], [[1e-4, 8e-5], [8e-5, 2e-4]], size=260)
    model = RiskModel(table, market, params, returns)
    acct = Account("A", MarginProfile(methods=("scenario", "parametric_var")), model, 1e7)
    row = table.index[iid]
    dd, dg = np.zeros(model.n_underlyings), np.zeros(model.n_underlyings)
    u = model.block_of[row]
    dd[u] = qty * model.valuation.dollar_delta[row]
    dg[u] = qty * model.valuation.dollar_gamma[row]
    direct = parametric_var(model, dd, dg)
    assert order_var(model, row, qty) == pytest.approx(direct, rel=1e-12, abs=1e-9)
    assert order_var(model, row, -qty) == pytest.approx(parametric_var(model, -dd, -dg), rel=1e-12, abs=1e-9)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(held=st.lists(st.tuples(st.sampled_from(ROWS), st.integers(-12, 12).filter(bool)), min_size=0, max_size=9),
       profile=st.sampled_from([("scenario",), ("scenario", "parametric_var"), ("scenario", "historical_var")]),
       som=st.sampled_from([0.0, 0.02, 0.5]))
def test_top_driver_equals_the_full_report(book_parts, held, profile, som) -> None:
    """The per-fill top driver is the full margin report's first contributor."""
    table, market, params = book_parts
    rng = np.random.default_rng(5)
    returns = rng.multivariate_normal([0, 0], [[1e-4, 8e-5], [8e-5, 2e-4]], size=260)
    model = RiskModel(table, market, params, returns)
    acct = Account("A", MarginProfile(methods=profile, short_option_minimum=som), model, 1e7)
    for iid, qty in held:
        row = table.index[iid]
        acct.apply_fill(row, float(qty), float(model.valuation.mark[row]))
    report = acct.margin(top=1)
    assert acct.top_driver() == (report.top_contributors[0].instrument if report.top_contributors else "")
