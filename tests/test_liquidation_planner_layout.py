"""The planner's data layout, against the account and the model it was built from.

risk.liquidation builds, per book: the scenario P&L padded with a 0 after each
underlying (``pnl_padded``), the candidates grouped per underlying (``groups``,
``group_of``, ``slot``: risk arrays scenario-major and candidate-major), and the
prune pass (risk.liquidation_prune) works on groups of the cut candidates only
(``Group.subset``). Each is checked here against an independent recomputation
from the account's exposure and the model's blocks; ``_evaluate``'s per-candidate
position changes and costs against the book's scalar ``cost`` per candidate.
"""

from __future__ import annotations

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from risk.account import Account
from risk.liquidation import PlannerParams, book_from_account
from risk.liquidation_greedy import Greedy
from risk.liquidation_groups import Group
from risk.model import RiskModel
from risk.params import MarginProfile

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _model(book_parts) -> RiskModel:
    table, market, params = book_parts
    params = msgspec.structs.replace(params, profiles={
        **params.profiles, "big_som": MarginProfile(short_option_minimum=0.25)})
    return RiskModel(table, market, params)


def _account(model: RiskModel, profile: str, positions: dict[str, float]) -> Account:
    account = Account("A", model.params.profiles[profile], model, 1e6)
    for symbol, qty in positions.items():
        row = model.table.index[symbol]
        account.apply_fill(row, qty, float(model.valuation.mark[row]))
    return account


_positions = st.dictionaries(st.sampled_from(["ES", "C6800", "C7000", "C7200", "P6400", "NQ", "NQC"]),
                             st.integers(-20, 20).filter(bool).map(float), min_size=1)


@_SETTINGS
@given(positions=_positions, profile=st.sampled_from(["span", "big_som"]))
def test_groups_and_padded_pnl_are_the_accounts(book_parts, positions, profile) -> None:
    model = _model(book_parts)
    account = _account(model, profile, positions)
    book = book_from_account(account, PlannerParams())
    scenario = account._exposure.scenario
    # the scenario P&L, underlying after underlying, each followed by a 0
    for u, segment in enumerate(model.segments):
        own = book.pnl_padded[book.padded_slices[u]]
        assert own[:-1].tolist() == scenario[segment].tolist() and own[-1] == 0.0
        assert book.pnl0[book.column_slices[u]].tolist() == scenario[segment].tolist()
    assert book.pnl_padded.size == book.pnl0.size + len(model.segments)
    # every candidate in exactly one group, at its slot, with its own risk array
    seen = []
    for g, (u, idx, rows, block) in enumerate(book.groups):
        assert idx.tolist() == sorted(idx.tolist()) and (rows[-1] == 0.0).all()
        for slot, i in enumerate(idx.tolist()):
            seen.append(i)
            assert (book.group_of[i], book.slot[i]) == (g, slot)
            row = int(book.rows[i])
            assert model.block_of[row] == u
            own = np.asarray(model.blocks[u].arrays)[model.position_in_block[row]]
            assert rows[:-1, slot].tolist() == own.tolist() == block[slot].tolist()
            assert book.arrays[i, book.column_slices[u]].tolist() == own.tolist()
    assert sorted(seen) == list(range(len(book.rows)))


@_SETTINGS
@given(data=st.data(), positions=_positions, profile=st.sampled_from(["span", "big_som"]))
def test_a_subset_group_prices_its_candidates_as_the_whole_group(book_parts, data, positions, profile) -> None:
    model = _model(book_parts)
    book = book_from_account(_account(model, profile, positions), PlannerParams())
    for u, idx, rows, block in book.groups:
        group = Group(u, idx, rows, block)
        n = len(group.ids)
        slots = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1)))
        sub = group.subset(slots, [group.ids[s] for s in slots])
        assert sub.ids == [group.ids[s] for s in slots] and sub.u == u
        change = np.array(data.draw(st.lists(st.floats(-30, 30), min_size=n, max_size=n)))
        move = rows * change
        move[-1] = [-np.inf if data.draw(st.booleans()) else 0.0 for _ in range(n)]
        extra = np.array(data.draw(st.lists(st.floats(-1e5, 1e5), min_size=n, max_size=n)))
        pnl = np.append(book.pnl0[book.column_slices[u]], 0.0)[:, None]
        term, short = data.draw(st.floats(0, 1e6)), data.draw(st.floats(0, 1e7))
        whole = group.relief_of(move, extra, pnl, term, short, book.mm_factor, book.som)
        part = sub.relief_of(move[:, slots], extra[slots], pnl, term, short, book.mm_factor, book.som)
        assert part == [whole[s] for s in slots]
        # the relief itself, recomputed: mm_factor x min(term + min(worst, 0), term - som x (short + extra))
        for s in slots:
            worst = min(float((pnl[:, 0] + move[:, s]).min()), 0.0)
            expected = min(term + worst, term - book.som * (short + extra[s])) if book.som else term + worst
            assert whole[s] == expected * book.mm_factor or (worst == -np.inf and whole[s] == -np.inf)


@_SETTINGS
@given(data=st.data(), positions=_positions, lot=st.sampled_from([1.0, 2.0, 3.0]))
def test_evaluate_parts_are_each_cuts_own(book_parts, data, positions, lot) -> None:
    model = _model(book_parts)
    book = book_from_account(_account(model, "span", positions), PlannerParams(lot_size=lot))
    lots = np.array([data.draw(st.integers(0, int(k))) for k in book.max_lots], dtype=np.int64)
    mm, equity, ratio, delta, costs = book._evaluate(lots)
    assert (mm, equity, ratio) == book.evaluate(lots)
    for i, k in enumerate(lots.tolist()):
        contracts = book.contracts(i, k)
        assert delta[i] == book.sign[i] * contracts
        assert costs[i] == book.cost(i, contracts) or (contracts == 0.0 and costs[i] == 0.0)


@_SETTINGS
@given(positions=_positions, ratio=st.floats(0.7, 3.0), target=st.sampled_from([0.3, 0.6, 0.9]))
def test_prune_leaves_no_lot_that_can_go(book_parts, positions, ratio, target) -> None:
    """After the prune pass (on the cut candidates' groups), no single lot can be given
    back with the target still met: checked with the book's exact evaluation (the
    search keeps running totals: a relative 1e-9 for their rounding)."""
    model = _model(book_parts)
    account = _account(model, "big_som", positions)
    mm = account.summary().maintenance_margin
    if not mm > 0.0:
        return
    account.cash = mm / ratio
    book = book_from_account(account, PlannerParams(target_ratio=target))
    greedy = Greedy(book, target)
    if not (greedy.run(~book.is_option) or greedy.run(np.ones(len(book.rows), dtype=bool))):
        return
    greedy.prune()
    lots = greedy.lots
    assert book.evaluate(lots)[2] <= target * (1 + 1e-9)
    for i in np.flatnonzero(lots):
        fewer = lots.copy()
        fewer[i] -= 1
        assert book.evaluate(fewer)[2] > target * (1 - 1e-9)
