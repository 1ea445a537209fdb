"""The optimized planner cuts exactly what the previous one cut (tests/liquidation_reference.py).

risk.liquidation_greedy re-evaluates only the underlying that moved and caches
each candidate's next lot; the reference re-evaluates every candidate at every
step. Random books (hypothesis) on the shared two-underlying test book (grids of
different widths, futures, spot and options, short-option minimum profiles, one
of them binding) and
on the bench's universe (hundreds of options on two underlyings), random lot
sizes, costs, breach depths and targets: the same lots per position, the same
``reached`` (the search's), the plan's figures equal the cuts' own evaluation, and its cuts
(quantities, expected costs, marks, order) those the previous code made of them.
"""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk.account import Account
from risk.liquidation import CostParams, PlannerParams, book_from_account, plan_reduction
from risk.liquidation_greedy import Greedy
from risk.model import RiskModel
from risk.params import MarginProfile
from tests.liquidation_reference import reference_cuts, reference_lots

_SLOW = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _account(model: RiskModel, profile: str, positions: dict[str, float], ratio: float) -> Account | None:
    account = Account("A", model.params.profiles[profile], model, 0.0)
    for symbol, qty in positions.items():
        row = model.table.index[symbol]
        account.apply_fill(row, qty, float(model.valuation.mark[row]))
    mm = account.summary().maintenance_margin
    if not mm > 0.0:
        return None
    account.cash = mm / ratio
    return account


def _search(book, target: float) -> tuple[np.ndarray, bool]:
    """(lots, reached) of the optimized search, as plan_reduction runs it."""
    greedy = Greedy(book, target)
    reached = greedy.run(~book.is_option) or greedy.run(np.ones(len(book.rows), dtype=bool))
    if reached:
        greedy.prune()
    return greedy.lots, reached


def _check_same(account: Account, params: PlannerParams, target: float) -> None:
    rows, lots, reached = reference_lots(account, params, target)
    book = book_from_account(account, params)
    plan = plan_reduction(book, target)
    expected = {int(r): int(k) for r, k in zip(rows, lots) if k}
    assert {c.row: c.lots for c in plan.cuts} == expected
    new_lots, new_reached = _search(book, target)
    assert new_reached == reached and (new_lots == lots).all()
    # The figures are the cuts' own exact evaluation (not the search's running totals).
    cut_lots = np.array([expected.get(int(r), 0) for r in book.rows], dtype=np.int64)
    mm, equity, ratio = book.evaluate(cut_lots)
    assert (plan.maintenance_after, plan.equity_after, plan.ratio_after) == (mm, equity, ratio)
    assert plan.cuts == reference_cuts(book, cut_lots)  # every field, to the last bit


_costs = st.builds(CostParams, future_half_spread=st.sampled_from([0.0, 0.0001, 0.0005]),
                   spot_half_spread=st.sampled_from([0.0005, 0.002]),
                   option_half_spread=st.sampled_from([0.0, 0.01, 0.03, 0.1]),
                   impact=st.sampled_from([0.0, 0.00002, 0.0005]),
                   min_cost_per_contract=st.sampled_from([0.0, 0.5, 2.0]))


@_SLOW
@given(data=st.data(), costs=_costs, ratio=st.floats(0.7, 3.0), target=st.sampled_from([0.2, 0.4, 0.6, 0.8, 0.95]),
       lot=st.sampled_from([1.0, 2.0, 3.0]), profile=st.sampled_from(["span", "som", "big_som"]))
def test_small_books_cut_the_same(book_parts, data, costs, ratio, target, lot, profile) -> None:
    table, market, params = book_parts
    # big_som: a short-option minimum that binds (it caps the relief of cutting short options)
    params = msgspec.structs.replace(params, profiles={
        **params.profiles, "big_som": MarginProfile(short_option_minimum=0.25)})
    model = RiskModel(table, market, params)
    symbols = data.draw(st.lists(st.sampled_from(sorted(table.index)), min_size=1, max_size=8, unique=True))
    # up to 150 contracts: runs longer than MAX_CURVE lots are priced over several steps
    positions = {s: float(data.draw(st.one_of(st.integers(-12, 12), st.integers(-150, 150)).filter(bool)))
                 for s in symbols}
    account = _account(model, profile, positions, ratio)
    if account is None:
        return
    lot_sizes = {s: data.draw(st.sampled_from([1.0, 2.0, 5.0])) for s in symbols[:2]}
    _check_same(account, PlannerParams(target_ratio=target, lot_size=lot, lot_sizes=lot_sizes, costs=costs), target)


@pytest.fixture(scope="module")
def universe_model():
    from daemon.bench_universe import build_universe
    from risk.instruments import InstrumentTable

    universe = build_universe(1, 125, var_every=0)
    config = universe.config
    return RiskModel(InstrumentTable(config.underlyings, config.instruments), universe.market, config.margin)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.sampled_from([5, 20, 50, 120]), ratio=st.floats(0.9, 2.5),
       target=st.sampled_from([0.3, 0.6, 0.85]), lot=st.sampled_from([1.0, 2.0]))
def test_bench_universe_books_cut_the_same(universe_model, seed, n, ratio, target, lot) -> None:
    model = universe_model
    rng = random.Random(seed)
    symbols = rng.sample(model.table.ids, n)
    positions = {s: float(rng.choice([-1, 1]) * rng.randint(1, 10)) for s in symbols}
    account = _account(model, "span", positions, ratio)
    if account is not None:
        _check_same(account, PlannerParams(target_ratio=target, lot_size=lot), target)
