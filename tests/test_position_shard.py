"""Position shard: fills, duplicates, held events, order reservations, offline recomputation."""

from __future__ import annotations

import numpy as np
import pytest

from actors.messages import FillMsg, HeldEvent, OrderMsg, Stamps, decode, encode
from actors.position_shard import PositionShard, shard_of
from risk.account import Account
from risk.model import RiskModel


def _fill(exec_id: str, account: str, symbol: str, qty: float, px: float, seq: int = 1) -> FillMsg:
    return FillMsg(exec_id, "trade", account, symbol, qty, px, "O-" + exec_id, "C-" + exec_id, "", seq, Stamps())


def _order(order_id: str, account: str, symbol: str, side: int, leaves: float, status: str, px: float = 1.0,
           seq: int = 1) -> OrderMsg:
    return OrderMsg("E-" + order_id + status, status, account, symbol, side, leaves, leaves, 0.0, px, order_id,
                    "C-" + order_id, "", seq, Stamps())


def _shard_with(model: RiskModel, accounts: list[str]) -> PositionShard:
    shard = PositionShard(0, 1, model)
    for acct in accounts:
        shard.add_account(acct, model.params.profiles["span"], 1e6)
    return shard


def test_shard_of_is_stable_and_spreads() -> None:
    ids = [f"ACC{i}" for i in range(2000)]
    shards = [shard_of(a, 4) for a in ids]
    assert shards == [shard_of(a, 4) for a in ids]
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 400


def test_account_of_another_shard_is_refused(book_parts) -> None:
    model = RiskModel(*book_parts)
    other = next(a for a in (f"A{i}" for i in range(100)) if shard_of(a, 2) == 1)
    with pytest.raises(ValueError, match="belongs to shard 1"):
        PositionShard(0, 2, model).add_account(other, model.params.profiles["span"], 0.0)


def test_fills_equal_an_offline_recomputation(book_parts) -> None:
    model = RiskModel(*book_parts)
    shard = _shard_with(model, ["A", "B"])
    rng = np.random.default_rng(3)
    symbols = ["ES", "C7000", "P6400", "NQ", "NQC"]
    truth: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for i in range(400):
        acct = "A" if rng.random() < 0.5 else "B"
        sym = symbols[rng.integers(len(symbols))]
        qty = float(rng.integers(-5, 6) or 1)
        px = float(model.valuation.mark[model.table.index[sym]]) * (1 + rng.normal(0, 0.01))
        risk = shard.on_fill(_fill(f"X{i}", acct, sym, qty, px, i + 1))
        assert risk is not None and risk.account == acct and risk.last_seq == i + 1
        truth.setdefault((acct, sym), []).append((qty, px))
    for acct in ("A", "B"):
        offline = Account(acct, model.params.profiles["span"], model, 1e6)
        for (a, sym), fills in truth.items():
            if a == acct:
                for qty, px in fills:
                    offline.apply_fill(model.table.index[sym], qty, px)
        live = shard.accounts[acct]
        assert {r: p.quantity for r, p in live.positions.items()} == {r: p.quantity for r, p in offline.positions.items()}
        got, want = shard.risk(acct, Stamps()), offline.margin()
        assert got.initial_margin == pytest.approx(want.initial_margin, rel=1e-9)
        assert got.equity == pytest.approx(want.equity, rel=1e-12)


def test_duplicate_exec_id_is_applied_once(book_parts) -> None:
    shard = _shard_with(RiskModel(*book_parts), ["A"])
    assert shard.on_fill(_fill("X1", "A", "ES", 2, 6900.0)) is not None
    assert shard.on_fill(_fill("X1", "A", "ES", 2, 6900.0)) is None
    assert shard.duplicates == 1
    assert shard.accounts["A"].quantities()[shard.model.table.index["ES"]] == 2


def test_unknown_account_or_instrument_is_held_then_applied(book_parts) -> None:
    model = RiskModel(*book_parts)
    shard = _shard_with(model, ["A"])
    held = shard.on_fill(_fill("X1", "NEW", "ES", 3, 6900.0, 5))
    assert isinstance(held, HeldEvent) and held.reason == "unknown account" and held.seq == 5
    held2 = shard.on_fill(_fill("X2", "A", "GOLD", 1, 2000.0, 6))
    assert isinstance(held2, HeldEvent) and held2.reason == "unknown instrument"
    assert len(shard.held) == 2
    shard.add_account("NEW", model.params.profiles["span"], 1e6)
    results = shard.retry_held()
    assert results[0] is not None and results[0].account == "NEW"
    assert isinstance(results[1], HeldEvent)  # GOLD still unknown: still held, not dropped
    assert len(shard.held) == 1
    assert shard.accounts["NEW"].quantities()[model.table.index["ES"]] == 3


def test_open_order_reserves_its_leaves_until_terminal(book_parts) -> None:
    model = RiskModel(*book_parts)
    shard = _shard_with(model, ["A"])
    base = shard.risk("A", Stamps())
    new = shard.on_order(_order("O1", "A", "C7000", -1, 10, "new", 150.0))
    assert new.initial_margin_with_orders > base.initial_margin_with_orders
    shard.on_fill(_fill("F1", "A", "C7000", -4, 150.0))
    partial = shard.on_order(_order("O1", "A", "C7000", -1, 6, "partially_filled", 150.0))
    account = shard.accounts["A"]
    assert account.orders["O1"].quantity == -6
    assert partial.initial_margin_with_orders >= partial.initial_margin
    done = shard.on_order(_order("O1", "A", "C7000", -1, 6, "canceled", 150.0))
    assert "O1" not in account.orders
    assert done.initial_margin_with_orders == pytest.approx(done.initial_margin)


def test_messages_round_trip_through_msgpack(book_parts) -> None:
    msg = _fill("X9", "A", "ES", -2.5, 6901.25, 42)
    assert decode(encode(msg)) == msg
    order = _order("O9", "A", "ES", 1, 3, "new")
    assert decode(encode(order)) == order


def test_a_correction_applies_both_its_reversal_and_its_corrected_fill(book_parts) -> None:
    shard = _shard_with(RiskModel(*book_parts), ["A"])
    shard.on_fill(_fill("T1", "A", "ES", 5, 6900.0))
    reversal = FillMsg("G1", "correction_reversal", "A", "ES", -5, 6900.0, "o", "c", "T1", 2, Stamps())
    corrected = FillMsg("G1", "correction", "A", "ES", 3, 6905.0, "o", "c", "T1", 2, Stamps())
    assert shard.on_fill(reversal) is not None and shard.on_fill(corrected) is not None
    assert shard.on_fill(corrected) is None  # a repeat of the same event is still a duplicate
    assert shard.accounts["A"].quantities()[shard.model.table.index["ES"]] == 3


def test_account_risk_always_encodes_after_realized_pnl(book_parts) -> None:
    shard = _shard_with(RiskModel(*book_parts), ["A"])
    shard.on_fill(_fill("T1", "A", "ES", 3, 6900.0))
    risk = shard.on_fill(_fill("T2", "A", "ES", -2, 6950.0))  # realizes P&L into cash
    assert type(shard.accounts["A"].cash) is float
    assert decode(encode(risk)) == risk
