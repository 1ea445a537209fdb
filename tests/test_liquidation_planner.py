"""The partial-liquidation planner against a brute-force optimum on small books.

The reference never uses the planner's arithmetic: each candidate set of cuts is
booked on a copy of the account (risk.account.Account.apply_fill at the mark, so
no P&L is realized), its expected cost (recomputed here from the documented
formula) is taken out of cash, and the ratio is the account's own summary().
The brute force enumerates every lot vector; the optimum is the cheapest one
that meets the target, using futures only when futures alone can.
"""

from __future__ import annotations

import itertools
import math
import random

import msgspec
import numpy as np
import pytest

from risk.account import Account
from risk.liquidation import CostParams, PlannerParams, book_from_account, plan_full, plan_reduction
from risk.model import RiskModel
from risk.params import MarginProfile

COSTS = CostParams(future_half_spread=0.0002, spot_half_spread=0.0005, option_half_spread=0.03, impact=0.0001,
                   min_cost_per_contract=1.0)


def account_with(model: RiskModel, positions: dict[str, float], cash: float, profile: str = "span") -> Account:
    account = Account("A1", model.params.profiles[profile], model, cash)
    for symbol, qty in positions.items():
        row = model.table.index[symbol]
        account.apply_fill(row, qty, float(model.valuation.mark[row]))
    return account


def reference_cost(model: RiskModel, symbol: str, contracts: float) -> float:
    row = model.table.index[symbol]
    unit = abs(float(model.valuation.mark[row])) * float(model.table.multiplier[row])
    hs = {0: COSTS.spot_half_spread, 1: COSTS.future_half_spread, 2: COSTS.option_half_spread}[int(model.table.kind[row])]
    raw = unit * (hs * contracts + COSTS.impact * contracts ** 2 / 2)
    return max(raw, COSTS.min_cost_per_contract * contracts) if contracts > 0 else 0.0


def reference_after(model: RiskModel, positions: dict[str, float], cash: float, cuts: dict[str, float],
                    profile: str = "span") -> tuple[float, float]:
    """(ratio, expected cost) after ``cuts`` (signed contracts per symbol), on a fresh account."""
    account = account_with(model, positions, cash, profile)
    cost = 0.0
    for symbol, q in cuts.items():
        if q:
            row = model.table.index[symbol]
            account.apply_fill(row, q, float(model.valuation.mark[row]))
            cost += reference_cost(model, symbol, abs(q))
    account.cash -= cost
    return account.summary().margin_ratio, cost


def brute_force(model: RiskModel, positions: dict[str, float], cash: float, lot: float, target: float,
                profile: str = "span") -> tuple[float, dict[str, float] | None]:
    """(cost, cuts) of the optimum (see the module docstring); (inf, None) if nothing reaches the target."""
    symbols = sorted(positions)
    ranges = [range(math.ceil(abs(positions[s]) / lot - 1e-9) + 1) for s in symbols]
    best: dict[bool, tuple[float, dict[str, float] | None]] = {True: (math.inf, None), False: (math.inf, None)}
    for lots in itertools.product(*ranges):
        cuts = {s: -math.copysign(min(k * lot, abs(positions[s])), positions[s]) for s, k in zip(symbols, lots) if k}
        ratio, cost = reference_after(model, positions, cash, cuts, profile)
        if ratio <= target:
            linear_only = all(model.table.kind[model.table.index[s]] != 2 for s in cuts)
            if cost < best[linear_only][0]:
                best[linear_only] = (cost, cuts)
            if cost < best[False][0]:
                best[False] = (cost, cuts)
    return best[True] if best[True][1] is not None else best[False]


def plan_for(model: RiskModel, positions: dict[str, float], cash: float, target: float, lot: float = 1.0,
             profile: str = "span"):
    params = PlannerParams(target_ratio=target, lot_size=lot, costs=COSTS)
    account = account_with(model, positions, cash, profile)
    return account, plan_reduction(book_from_account(account, params), target)


def cash_for_ratio(model: RiskModel, positions: dict[str, float], ratio: float, profile: str = "span") -> float:
    account = account_with(model, positions, 0.0, profile)
    return account.summary().maintenance_margin / ratio


BOOK = {"ES": 6.0, "NQ": 3.0, "C7000": -4.0, "C7200": 4.0, "NQP": -3.0}


@pytest.fixture
def model(book_parts) -> RiskModel:
    table, market, params = book_parts
    return RiskModel(table, market, params)


def assert_minimal(model, positions, cash, plan, target, profile="span") -> None:
    """No single lot (1 contract here) of the plan can be given back with the target still met."""
    cuts = {c.instrument: c.quantity for c in plan.cuts}
    for symbol, q in cuts.items():
        fewer = dict(cuts)
        fewer[symbol] = q - math.copysign(1.0, q)
        ratio, _ = reference_after(model, positions, cash, fewer, profile)
        assert ratio > target, f"plan cuts more {symbol} than needed: {cuts}"


def test_plan_matches_brute_force_optimum_on_a_small_book(model) -> None:
    cash = cash_for_ratio(model, BOOK, 1.05)
    account, plan = plan_for(model, BOOK, cash, 0.60)
    ratio, cost = reference_after(model, BOOK, cash, {c.instrument: c.quantity for c in plan.cuts})
    assert plan.reached and ratio <= 0.60
    assert plan.ratio_after == pytest.approx(ratio, rel=1e-9)
    assert plan.expected_cost == pytest.approx(cost, rel=1e-9)
    best_cost, best = brute_force(model, BOOK, cash, 1.0, 0.60)
    assert best is not None
    assert cost == pytest.approx(best_cost, rel=1e-9), (plan.cuts, best)
    assert_minimal(model, BOOK, cash, plan, 0.60)
    # Nothing is flipped or opened: every cut reduces a held position.
    for c in plan.cuts:
        assert c.quantity * BOOK[c.instrument] < 0 and abs(c.quantity) <= abs(BOOK[c.instrument])


def test_futures_first_when_they_suffice(model) -> None:
    # A mildly breached book: cutting the futures delta alone restores the target.
    positions = {"ES": 8.0, "C7000": -2.0, "C7200": 2.0}
    cash = cash_for_ratio(model, positions, 1.02)
    _, plan = plan_for(model, positions, cash, 0.9)
    assert plan.reached
    assert {c.instrument for c in plan.cuts} == {"ES"}
    best_cost, best = brute_force(model, positions, cash, 1.0, 0.9)
    assert set(best) == {"ES"} and plan.expected_cost == pytest.approx(best_cost, rel=1e-9)


def test_random_small_books_against_brute_force(model) -> None:
    """40 random 4-position books: always feasible when the optimum is, minimal, within 25 % of the
    optimum's cost, and exactly optimal on all but at most 4 (all but one when written)."""
    optimal = compared = 0
    for seed in range(40):
        rng = random.Random(seed)
        symbols = ["ES", "C6800", "C7000", "C7200", "P6400", "NQ", "NQC", "NQP"]
        positions = {s: float(rng.choice([-1, 1]) * rng.randint(1, 4)) for s in rng.sample(symbols, 4)}
        if account_with(model, positions, 0.0).summary().maintenance_margin <= 0:
            continue
        cash = cash_for_ratio(model, positions, rng.uniform(0.95, 1.3))
        target = rng.choice([0.5, 0.6, 0.8])
        _, plan = plan_for(model, positions, cash, target)
        best_cost, best = brute_force(model, positions, cash, 1.0, target)
        if best is None:
            assert not plan.reached
            continue
        assert plan.reached, seed
        ratio, cost = reference_after(model, positions, cash, {c.instrument: c.quantity for c in plan.cuts})
        assert ratio <= target, seed
        assert_minimal(model, positions, cash, plan, target)
        assert cost <= best_cost * 1.25 + 1e-9, (seed, plan.cuts, best, cost, best_cost)
        compared += 1
        optimal += cost <= best_cost * (1 + 1e-9)
    assert compared >= 35
    assert optimal >= compared - 4, (optimal, compared)


def test_lot_sizes_are_respected(model) -> None:
    positions = {"ES": 7.0, "NQ": 5.0}
    cash = cash_for_ratio(model, positions, 1.1)
    params = PlannerParams(target_ratio=0.6, lot_size=2.0, costs=COSTS)
    plan = plan_reduction(book_from_account(account_with(model, positions, cash), params), 0.6)
    for c in plan.cuts:
        # whole lots of 2, or the position's remainder when it is closed out
        assert abs(c.quantity) % 2.0 == 0.0 or abs(c.quantity) == abs(positions[c.instrument])
    best_cost, _ = brute_force(model, positions, cash, 2.0, 0.6)
    assert plan.expected_cost == pytest.approx(best_cost, rel=1e-9)


def test_unreachable_target_is_reported_and_full_plan_closes_everything(model) -> None:
    positions = {"ES": 3.0, "C7000": -3.0}
    cash = cash_for_ratio(model, positions, 1.0)
    _, plan = plan_for(model, positions, cash, 1e-6)
    assert not plan.reached
    account = account_with(model, positions, cash)
    full = plan_full(book_from_account(account, PlannerParams(costs=COSTS)))
    assert {c.instrument: c.quantity for c in full.cuts} == {"ES": -3.0, "C7000": 3.0}
    assert full.cuts[0].instrument == "ES"  # linear first
    assert full.maintenance_after == 0.0


def test_var_profile_plan_is_exact_too(book_parts) -> None:
    table, market, params = book_parts
    params = msgspec.structs.replace(params, profiles={
        **params.profiles, "var": MarginProfile(methods=("scenario", "parametric_var", "historical_var"))})
    returns = np.random.default_rng(3).normal(0, 0.02, size=(60, 2))
    model = RiskModel(table, market, params, returns)
    positions = {"ES": 4.0, "NQ": 3.0, "C7000": -2.0}
    cash = cash_for_ratio(model, positions, 1.1, "var")
    _, plan = plan_for(model, positions, cash, 0.7, profile="var")
    ratio, _ = reference_after(model, positions, cash, {c.instrument: c.quantity for c in plan.cuts}, "var")
    assert plan.reached and ratio <= 0.7 and plan.ratio_after == pytest.approx(ratio, rel=1e-9)
    assert_minimal(model, positions, cash, plan, 0.7, "var")
