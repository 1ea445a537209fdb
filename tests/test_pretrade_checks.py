"""Pre-trade checks (issue 5): one test per check and reason code, reservations, kill-switch journal.

Expected figures are computed independently of the checker: margin from a fresh
Account built with the same positions, limits from equity x max utilization here.
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest

from actors.kill_switch import KillSwitches, KillSwitchJournalError
from actors.messages import FillMsg, OrderMsg, Stamps
from actors.position_shard import PositionShard
from actors.pretrade import PreTradeChecker, ReasonCode
from actors.pretrade_config import PretradeLimits, PretradeSettings
from actors.pretrade_messages import CheckRequest, Decision, KillSwitchCommand, decode, encode
from risk.account import Account
from risk.model import RiskModel
from risk.params import MarginProfile
from risk.tiers import Tier

CASH = 1e6


class FakeClock:
    """Monotonic seconds under the test's control."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def model(book_parts) -> RiskModel:
    return RiskModel(*book_parts)


def make(model: RiskModel, settings: PretradeSettings = PretradeSettings(), *, cash: float = CASH,
         profile: MarginProfile | None = None, switches: KillSwitches | None = None, market_age=None,
         clock: FakeClock | None = None) -> tuple[PositionShard, PreTradeChecker, FakeClock]:
    shard = PositionShard(0, 1, model)
    shard.add_account("A", profile or model.params.profiles["span"], cash)
    clock = clock or FakeClock()
    checker = PreTradeChecker(shard, settings, switches or KillSwitches(), clock=clock, market_age=market_age)
    return shard, checker, clock


def req(order_id: str, instrument: str = "ES", side: int = 1, qty: float = 1.0, price: float | None = None,
        model: RiskModel | None = None, **kw) -> CheckRequest:
    if price is None:
        price = float(model.valuation.mark[model.table.index[instrument]]) if model is not None else 100.0
    return CheckRequest(order_id, kw.pop("account", "A"), instrument, side, qty, price, **kw)


def fill(shard: PositionShard, exec_id: str, symbol: str, qty: float, seq: int = 1) -> None:
    price = float(shard.model.valuation.mark[shard.model.table.index[symbol]])
    shard.on_fill(FillMsg(exec_id, "trade", "A", symbol, qty, price, "O" + exec_id, "C" + exec_id, "", seq, Stamps()))


def order_event(order_id: str, status: str, symbol: str, side: int, leaves: float, price: float,
                seq: int = 1) -> OrderMsg:
    return OrderMsg("E" + order_id + status, status, "A", symbol, side, leaves, leaves, 0.0, price, order_id,
                    "C" + order_id, "", seq, Stamps())


def im_of(model: RiskModel, positions: dict[str, float], orders: dict[str, float] | None = None,
          profile: MarginProfile | None = None) -> float:
    """IM with orders of a fresh account holding ``positions`` and reserving ``orders`` (by instrument)."""
    acct = Account("X", profile or model.params.profiles["span"], model, CASH)
    for sym, q in positions.items():
        acct.apply_fill(model.table.index[sym], q, float(model.valuation.mark[model.table.index[sym]]))
    for k, (sym, q) in enumerate((orders or {}).items()):
        acct.reserve(f"o{k}", model.table.index[sym], q, 1.0)
    return acct.initial_margin_with_orders()


# ----- accepted ------------------------------------------------------------------------
def test_accepted_order_carries_margin_and_reserves_it(model) -> None:
    shard, checker, _ = make(model)
    d = checker.check(req("O1", qty=3, model=model))
    assert (d.accepted, d.reason, d.message) == (True, ReasonCode.ACCEPTED, "")
    want = im_of(model, {}, {"ES": 3.0})
    assert d.im_before == 0.0
    assert d.im_after == pytest.approx(want, rel=1e-12)
    assert d.marginal_im == pytest.approx(want, rel=1e-12)
    assert d.equity == pytest.approx(CASH) and d.limit == pytest.approx(CASH * 1.0)
    assert d.binding_scenario in model.blocks[0].scenarios.labels and d.tier == "normal"
    assert d.decided_ns >= d.received_ns > 0
    # Reserved on its worst side, as if filled.
    order = shard.accounts["A"].orders["O1"]
    assert (order.row, order.quantity) == (model.table.index["ES"], 3.0)
    assert shard.accounts["A"].initial_margin_with_orders() == pytest.approx(want, rel=1e-12)
    assert checker.counters[ReasonCode.ACCEPTED] == 1


# ----- request sanity ----------------------------------------------------------------------
@pytest.mark.parametrize("change, fragment", [
    ({"side": 0}, "side must be +1"), ({"quantity": 0.0}, "quantity must be > 0"),
    ({"quantity": math.nan}, "quantity"), ({"limit_price": math.nan}, "limit_price"),
    ({"limit_price": 0.0}, "limit_price"), ({"order_id": ""}, "order_id is empty"),
])
def test_bad_request(model, change, fragment) -> None:
    _, checker, _ = make(model)
    d = checker.check(msgspec.structs.replace(req("O1", model=model), **change))
    assert (d.accepted, d.reason) == (False, ReasonCode.BAD_REQUEST) and fragment in d.message
    assert checker.counters[ReasonCode.BAD_REQUEST] == 1


def test_bad_request_for_an_order_id_already_open(model) -> None:
    _, checker, _ = make(model)
    assert checker.check(req("O1", model=model)).accepted
    d = checker.check(req("O1", model=model))
    assert d.reason == ReasonCode.BAD_REQUEST and "already open" in d.message


def test_unknown_account_and_instrument(model) -> None:
    _, checker, _ = make(model)
    d = checker.check(req("O1", model=model, account="NOPE"))
    assert (d.accepted, d.reason, d.tier) == (False, ReasonCode.UNKNOWN_ACCOUNT, "") and "NOPE" in d.message
    d = checker.check(req("O2", instrument="XYZ"))
    assert (d.accepted, d.reason) == (False, ReasonCode.UNKNOWN_INSTRUMENT) and "XYZ" in d.message


# ----- 1. kill switches ------------------------------------------------------------------
@pytest.mark.parametrize("scope, key, reason", [
    ("global", "", ReasonCode.KILL_SWITCH_GLOBAL),
    ("account", "A", ReasonCode.KILL_SWITCH_ACCOUNT),
    ("underlying", "SPX", ReasonCode.KILL_SWITCH_UNDERLYING),
])
def test_kill_switch(model, scope, key, reason) -> None:
    switches = KillSwitches()
    _, checker, _ = make(model, switches=switches)
    assert switches.apply(KillSwitchCommand(scope, key, True, "fat finger", "ops"))
    d = checker.check(req("O1", model=model))
    assert (d.accepted, d.reason) == (False, reason)
    assert "ops" in d.message and "fat finger" in d.message
    if scope == "underlying":  # only that underlying's instruments
        assert checker.check(req("O2", instrument="NQ", model=model)).accepted
    assert switches.apply(KillSwitchCommand(scope, key, False, "", "ops"))
    assert checker.check(req("O3", model=model)).accepted


def test_kill_switch_journal_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "run" / "killswitch.jsonl"
    switches = KillSwitches(path, wall_clock=lambda: 1234.5)
    switches.apply(KillSwitchCommand("global", "ignored", True, "drill", "alice"))
    switches.apply(KillSwitchCommand("account", "A", True, "margin call", "bob"))
    switches.apply(KillSwitchCommand("underlying", "NDX", True, "halt", "carol"))
    switches.apply(KillSwitchCommand("global", "", False, "", "alice"))
    again = KillSwitches(path)
    assert again.engaged_global() is None
    assert again.engaged_account("A").by == "bob" and again.engaged_account("A").since == 1234.5
    assert again.engaged_underlying("NDX").reason == "halt"
    assert again.state() == {"global": None,
                             "accounts": {"A": {"scope": "account", "key": "A", "reason": "margin call", "by": "bob",
                                                "since": 1234.5}},
                             "underlyings": {"NDX": {"scope": "underlying", "key": "NDX", "reason": "halt",
                                                     "by": "carol", "since": 1234.5}}}
    assert len(path.read_text().splitlines()) == 4


def test_kill_switch_journal_torn_line_dropped_corrupt_line_refused(tmp_path: Path) -> None:
    path = tmp_path / "ks.jsonl"
    KillSwitches(path).apply(KillSwitchCommand("account", "A", True, "r", "me"))
    with open(path, "a") as f:
        f.write('{"scope":"acc')  # a crash mid-write
    switches = KillSwitches(path)
    assert switches.engaged_account("A") is not None
    switches.apply(KillSwitchCommand("account", "B", True, "r", "me"))
    assert set(KillSwitches(path).accounts) == {"A", "B"}
    path.write_text('not json\n' + path.read_text())
    with pytest.raises(KillSwitchJournalError, match="line 1"):
        KillSwitches(path)


def test_kill_switch_command_validation() -> None:
    with pytest.raises(ValueError, match="key: required"):
        KillSwitches().apply(KillSwitchCommand("account", "", True, "", ""))


# ----- 2. account tier ---------------------------------------------------------------------
def test_reduce_only_rejects_a_flip(model) -> None:
    shard, checker, _ = make(model)
    fill(shard, "F1", "ES", 2)
    shard.accounts["A"].tier = Tier.REDUCE_ONLY
    # The margin alone would not stop it (a 3-lot sell of a 2-lot long adds no IM on this grid):
    assert shard.accounts["A"].what_if(model.table.index["ES"], -3.0).marginal_im <= 0.01
    d = checker.check(req("O1", side=-1, qty=3, model=model))
    assert (d.accepted, d.reason, d.tier) == (False, ReasonCode.REDUCE_ONLY, "reduce_only")
    assert "flips ES from +2 to -1" in d.message and "by 1" in d.message
    # Two sells, each within the position, flip it together: the second is rejected.
    assert checker.check(req("O2", side=-1, qty=2, model=model)).accepted
    d = checker.check(req("O3", side=-1, qty=1, model=model))
    assert d.reason == ReasonCode.REDUCE_ONLY and "open orders -2" in d.message


def test_reduce_only_rejects_a_leg_reduction_that_adds_risk(model) -> None:
    shard, checker, _ = make(model)
    fill(shard, "F1", "C6800", 10)
    fill(shard, "F2", "C7000", -10, seq=2)  # long a call spread
    shard.accounts["A"].tier = Tier.REDUCE_ONLY
    # Buying back 5 of the short leg reduces that leg's quantity but leaves more long calls:
    # more vega and more downside than the spread, so IM rises in some scenario.
    d = checker.check(req("O1", instrument="C7000", side=1, qty=5, model=model))
    assert (d.accepted, d.reason) == (False, ReasonCode.REDUCE_ONLY)
    before = im_of(model, {"C6800": 10, "C7000": -10})
    after = im_of(model, {"C6800": 10, "C7000": -10}, {"C7000": 5.0})
    assert after > before
    assert d.marginal_im == pytest.approx(after - before, rel=1e-9)
    assert "increases risk" in d.message and f"{after - before:,.2f}" in d.message
    assert "O1" not in shard.accounts["A"].orders


def test_reduce_only_accepts_a_genuine_reduction(model) -> None:
    shard, checker, _ = make(model)
    fill(shard, "F1", "ES", 4)
    shard.accounts["A"].tier = Tier.REDUCE_ONLY
    d = checker.check(req("O1", side=-1, qty=2, model=model))
    assert d.accepted and d.marginal_im == pytest.approx(0.0, abs=1e-6)
    # A new order adding risk is not a reduction.
    d = checker.check(req("O2", instrument="NQ", qty=1, model=model))
    assert d.reason == ReasonCode.REDUCE_ONLY


@pytest.mark.parametrize("tier", [Tier.PARTIAL_LIQUIDATION, Tier.FULL_LIQUIDATION])
def test_liquidation_tiers_accept_only_liquidation_orders(model, tier) -> None:
    shard, checker, _ = make(model)
    fill(shard, "F1", "ES", 4)
    shard.accounts["A"].tier = tier
    d = checker.check(req("O1", side=-1, qty=2, model=model))
    assert (d.accepted, d.reason) == (False, ReasonCode.LIQUIDATION_ONLY)
    assert tier.name.lower() in d.message
    assert checker.check(req("O2", side=-1, qty=2, model=model, liquidation=True)).accepted


# ----- 3. static limits --------------------------------------------------------------------
def limited(**kw) -> PretradeSettings:
    return PretradeSettings(limits=PretradeLimits(**kw))


def test_max_order_qty(model) -> None:
    _, checker, _ = make(model, limited(max_order_qty=10))
    d = checker.check(req("O1", qty=12, model=model))
    assert d.reason == ReasonCode.MAX_ORDER_QTY
    assert d.message == "max_order_qty: 12 contracts > limit 10 (by 2)"
    assert checker.check(req("O2", qty=10, model=model)).accepted


def test_max_order_notional(model) -> None:
    # 2 ES at 7000 x 50 = 700,000
    _, checker, _ = make(model, limited(max_order_notional=600_000))
    d = checker.check(req("O1", qty=2, price=7000.0))
    assert d.reason == ReasonCode.MAX_ORDER_NOTIONAL
    assert "700,000.00 > limit 600,000.00 (by 100,000.00)" in d.message
    assert checker.check(req("O2", qty=1, price=7000.0)).accepted


def test_price_collar(model) -> None:
    ref = float(model.valuation.mark[model.table.index["C7000"]])
    _, checker, _ = make(model, limited(price_collar=0.10))
    d = checker.check(req("O1", instrument="C7000", price=ref * 1.15))
    assert d.reason == ReasonCode.PRICE_COLLAR
    assert "15.00% above reference" in d.message and "collar 10.00% (by 5.00%)" in d.message
    d = checker.check(req("O2", instrument="C7000", price=ref * 0.8))
    assert d.reason == ReasonCode.PRICE_COLLAR and "below" in d.message
    assert checker.check(req("O3", instrument="C7000", price=ref * 1.05)).accepted


def test_max_position_instrument_counts_held_and_open_orders(model) -> None:
    shard, checker, _ = make(model, limited(max_position_instrument=5))
    fill(shard, "F1", "ES", 2)
    assert checker.check(req("O1", qty=2, model=model)).accepted  # 2 held + 2 open = 4
    d = checker.check(req("O2", qty=3, model=model))  # could reach 7
    assert d.reason == ReasonCode.MAX_POSITION_INSTRUMENT
    assert "could reach 7 contracts" in d.message and "limit 5 (by 2)" in d.message
    # Selling never breaches a long limit it does not cross.
    assert checker.check(req("O3", side=-1, qty=4, model=model)).accepted


def test_max_position_underlying_is_gross_contracts(model) -> None:
    shard, checker, _ = make(model, limited(max_position_underlying=10))
    fill(shard, "F1", "C6800", 4)
    fill(shard, "F2", "C7000", -4, seq=2)  # gross 8 on SPX, though net 0
    d = checker.check(req("O1", instrument="ES", side=-1, qty=3, model=model))
    assert d.reason == ReasonCode.MAX_POSITION_UNDERLYING
    assert "SPX gross position could reach 11 contracts" in d.message and "(by 1)" in d.message
    assert checker.check(req("O2", instrument="ES", side=-1, qty=2, model=model)).accepted
    assert checker.check(req("O3", instrument="NQ", qty=5, model=model)).accepted  # another underlying


def test_restricted_instrument(model) -> None:
    _, checker, _ = make(model, limited(restricted=("C7200",)))
    d = checker.check(req("O1", instrument="C7200", model=model))
    assert d.reason == ReasonCode.RESTRICTED_INSTRUMENT and "C7200" in d.message
    assert checker.check(req("O2", instrument="C7000", model=model)).accepted


def test_rate_throttle_sliding_second(model) -> None:
    _, checker, clock = make(model, limited(max_orders_per_s=3))
    for k in range(3):
        assert checker.check(req(f"O{k}", model=model)).accepted
        clock.t += 0.1
    d = checker.check(req("O3", model=model))
    assert d.reason == ReasonCode.RATE_THROTTLE
    assert d.message == "rate_throttle: 4 orders in 1 s > limit 3 per s (by 1)"
    clock.t += 0.75  # the first order left the window
    assert checker.check(req("O4", model=model)).accepted


def test_per_account_limits_replace_the_defaults(model) -> None:
    settings = PretradeSettings(limits=PretradeLimits(max_order_qty=1),
                                accounts={"A": PretradeLimits(max_order_qty=50)})
    _, checker, _ = make(model, settings)
    assert checker.check(req("O1", qty=10, model=model)).accepted


# ----- 4. stale market data ----------------------------------------------------------------
def test_stale_market(model) -> None:
    ages = {"SPX": 5.0, "NDX": 0.5}
    _, checker, _ = make(model, PretradeSettings(stale_after_s=2.0), market_age=ages.get)
    d = checker.check(req("O1", model=model))
    assert d.reason == ReasonCode.STALE_MARKET
    assert d.message == "stale_market: SPX price/vol is 5 s old > limit 2 s (by 3 s)"
    assert checker.check(req("O2", instrument="NQ", model=model)).accepted
    del ages["SPX"]  # unknown age: stale
    assert checker.check(req("O3", model=model)).reason == ReasonCode.STALE_MARKET
    # No age source at all with the check on: every order is stale.
    _, blind, _ = make(model, PretradeSettings(stale_after_s=2.0))
    assert blind.check(req("O1", model=model)).reason == ReasonCode.STALE_MARKET
    # Off: no age needed.
    _, off, _ = make(model, PretradeSettings(stale_after_s=0.0))
    assert off.check(req("O1", model=model)).accepted


# ----- 5. margin ---------------------------------------------------------------------------
def test_margin_limit_is_equity_times_max_utilization(model) -> None:
    profile = MarginProfile(max_utilization=0.5)
    im_one = im_of(model, {}, {"ES": 1.0}, profile)
    cash = 4.5 * im_one / 0.5  # room for 4 ES, not 5
    shard, checker, _ = make(model, cash=cash, profile=profile)
    limit = cash * 0.5
    d = checker.check(req("O1", qty=5, model=model))
    want = im_of(model, {}, {"ES": 5.0}, profile)
    assert (d.accepted, d.reason) == (False, ReasonCode.MARGIN)
    assert d.im_after == pytest.approx(want, rel=1e-9) and d.limit == pytest.approx(limit, rel=1e-12)
    assert d.equity == pytest.approx(cash) and d.marginal_im == pytest.approx(want, rel=1e-9)
    assert d.binding_scenario and d.binding_scenario in model.blocks[0].scenarios.labels
    assert f"{want:,.2f} > limit {limit:,.2f}" in d.message and f"by {want - limit:,.2f}" in d.message
    assert "O1" not in shard.accounts["A"].orders
    assert checker.check(req("O2", qty=4, model=model)).accepted


def test_margin_lets_an_account_over_its_limit_reduce(model) -> None:
    # IM of 3 ES is over 20 % of equity, while MM / equity stays in the normal tier.
    profile = MarginProfile(max_utilization=0.2)
    cash = 2.0 * im_of(model, {"ES": 3.0}, profile=profile)
    shard, checker, _ = make(model, cash=cash, profile=profile)
    fill(shard, "F1", "ES", 3)
    assert shard.accounts["A"].tier == Tier.NORMAL
    d = checker.check(req("O1", side=-1, qty=1, model=model))
    assert d.accepted and d.im_after > d.limit and d.marginal_im <= 0.01
    assert checker.check(req("O2", qty=1, model=model)).reason == ReasonCode.MARGIN


def test_risk_unavailable_fails_closed(model) -> None:
    # Parametric VaR with no price history configured: no margin figure exists.
    shard, checker, _ = make(model, profile=MarginProfile(methods=("parametric_var",)))
    d = checker.check(req("O1", model=model))
    assert (d.accepted, d.reason) == (False, ReasonCode.RISK_UNAVAILABLE) and "history" in d.message
    assert shard.accounts["A"].orders == {}


# ----- reservations ------------------------------------------------------------------------
def test_second_order_rejected_until_the_drop_copy_cancels_the_first(model) -> None:
    im_two = im_of(model, {}, {"ES": 2.0})
    cash = 1.5 * im_two  # each 2-lot fits alone, both together (4 lots) do not
    shard, checker, _ = make(model, cash=cash)
    price = float(model.valuation.mark[model.table.index["ES"]])
    assert checker.check(req("O1", qty=2, price=price)).accepted
    d = checker.check(req("O2", qty=2, price=price))
    assert (d.accepted, d.reason) == (False, ReasonCode.MARGIN)
    assert d.im_after == pytest.approx(im_of(model, {}, {"ES": 4.0}), rel=1e-9)
    assert d.im_after > d.limit == pytest.approx(cash)
    shard.on_order(order_event("O1", "new", "ES", 1, 2.0, price))
    assert not checker.check(req("O2", qty=2, price=price)).accepted  # acknowledged: still reserved
    shard.on_order(order_event("O1", "canceled", "ES", 1, 0.0, price, seq=2))
    d = checker.check(req("O2", qty=2, price=price))
    assert d.accepted and d.im_before == pytest.approx(0.0, abs=1e-9)


def test_ttl_expiry_releases_an_unreported_reservation(model) -> None:
    cash = 1.5 * im_of(model, {}, {"ES": 2.0})
    shard, checker, clock = make(model, PretradeSettings(reservation_ttl_s=5.0), cash=cash)
    assert checker.check(req("O1", qty=2, model=model)).accepted
    assert not checker.check(req("O2", qty=2, model=model)).accepted
    clock.t += 4.9
    assert checker.expire() == []
    clock.t += 0.2
    assert checker.expire() == [("A", "O1")]
    assert "O1" not in shard.accounts["A"].orders and checker.pending == {}
    assert checker.check(req("O2", qty=2, model=model)).accepted


def test_ttl_never_releases_what_the_drop_copy_reported(model) -> None:
    shard, checker, clock = make(model, PretradeSettings(reservation_ttl_s=5.0))
    price = float(model.valuation.mark[model.table.index["ES"]])
    assert checker.check(req("O1", qty=2, price=price)).accepted
    assert checker.check(req("O2", qty=1, price=price)).accepted
    assert checker.check(req("O3", qty=1, price=price)).accepted
    # O1: acknowledged as reserved (the shard changes nothing), routed through the checker.
    checker.on_order(order_event("O1", "new", "ES", 1, 2.0, price))
    checker.drop_copy_seen("O2")
    # O3: partly filled, reported to the shard alone; it re-reserves the leaves (fallback).
    shard.on_order(order_event("O3", "partially_filled", "ES", 1, 0.5, price))
    clock.t += 10.0
    assert checker.expire() == []
    assert {k: o.quantity for k, o in shard.accounts["A"].orders.items()} == {"O1": 2.0, "O2": 1.0, "O3": 0.5}


def test_replace_adjusts_the_reservation(model) -> None:
    im_three = im_of(model, {}, {"ES": 3.0})
    shard, checker, clock = make(model, PretradeSettings(reservation_ttl_s=5.0), cash=im_three * 1.1)
    price = float(model.valuation.mark[model.table.index["ES"]])
    assert checker.check(req("O1", qty=2, price=price)).accepted
    # Replacing 2 by 3 fits (3 alone), though 2 + 3 would not.
    d = checker.check(req("O1", qty=3, price=price, replaces="O1"))
    assert d.accepted and d.im_after == pytest.approx(im_three, rel=1e-9)
    assert shard.accounts["A"].orders["O1"].quantity == 3.0
    # A rejected replace leaves the working order's reservation as it was.
    d = checker.check(req("O1", qty=5, price=price, replaces="O1"))
    assert d.reason == ReasonCode.MARGIN and shard.accounts["A"].orders["O1"].quantity == 3.0
    # A replace under a new id releases the old id's reservation.
    assert checker.check(req("O1b", qty=1, price=price, replaces="O1")).accepted
    assert {k: o.quantity for k, o in shard.accounts["A"].orders.items()} == {"O1b": 1.0}
    clock.t += 6.0
    assert checker.expire() == [("A", "O1b")] and shard.accounts["A"].orders == {}


def test_unreported_replace_of_a_working_order_restores_it_on_expiry(model) -> None:
    shard, checker, clock = make(model, PretradeSettings(reservation_ttl_s=5.0))
    price = float(model.valuation.mark[model.table.index["ES"]])
    shard.on_order(order_event("W1", "new", "ES", 1, 2.0, price))  # working, known from the drop copy
    assert checker.check(req("W1", qty=4, price=price, replaces="W1")).accepted
    assert shard.accounts["A"].orders["W1"].quantity == 4.0
    checker.on_order(order_event("W1", "pending_replace", "ES", 1, 2.0, price))  # says nothing of the outcome
    clock.t += 6.0
    assert checker.expire() == [("A", "W1")]
    assert shard.accounts["A"].orders["W1"].quantity == 2.0  # the replace never happened


# ----- order of checks, counters, messages, settings -----------------------------------------------
def test_first_failure_decides_in_the_issue_order(model) -> None:
    switches = KillSwitches()
    settings = PretradeSettings(limits=PretradeLimits(max_order_qty=1), stale_after_s=1.0)
    shard, checker, _ = make(model, settings, cash=1.0, switches=switches, market_age=lambda u: 99.0)
    fill(shard, "F1", "ES", 1)
    shard.accounts["A"].tier = Tier.FULL_LIQUIDATION
    switches.apply(KillSwitchCommand("global", "", True, "x", "y"))
    order = req("O1", qty=5, model=model)
    seen = []
    for undo in (lambda: switches.apply(KillSwitchCommand("global", "", False, "", "y")),
                 lambda: setattr(shard.accounts["A"], "tier", Tier.NORMAL),
                 lambda: setattr(checker, "settings", PretradeSettings(stale_after_s=1.0)),
                 lambda: setattr(checker, "_market_age", lambda u: 0.0)):
        seen.append(checker.check(order).reason)
        undo()
    seen.append(checker.check(order).reason)
    assert seen == [ReasonCode.KILL_SWITCH_GLOBAL, ReasonCode.LIQUIDATION_ONLY, ReasonCode.MAX_ORDER_QTY,
                    ReasonCode.STALE_MARKET, ReasonCode.MARGIN]
    assert {k: v for k, v in checker.counters.items() if v} == {r: 1 for r in seen}
    assert set(checker.counters) == set(ReasonCode.ALL)


def test_messages_round_trip() -> None:
    for message in (CheckRequest("O1", "A", "ES", -1, 2.0, 6900.5, "day", True, "O0", 123),
                    Decision("O1", False, "margin", "m", 1.0, 2.0, 1.0, 3.0, 3.0, "s", "normal", 1, 2),
                    KillSwitchCommand("underlying", "SPX", True, "r", "me")):
        assert decode(encode(message)) == message


@pytest.mark.parametrize("build, fragment", [
    (lambda: PretradeLimits(max_order_qty=-1.0), "max_order_qty: expected a finite number >= 0"),
    (lambda: PretradeLimits(price_collar=math.nan), "price_collar:"),
    (lambda: PretradeLimits(max_order_notional=math.inf), "max_order_notional:"),
    (lambda: PretradeLimits(restricted=("",)), "restricted:"),
    (lambda: PretradeSettings(timeout_us=0), "timeout_us:"),
    (lambda: PretradeSettings(stale_after_s=-1.0), "stale_after_s:"),
    (lambda: PretradeSettings(fail_open_accounts=("A", "A")), "fail_open_accounts: account 'A' is listed twice"),
])
def test_settings_validation(build, fragment) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        build()


def test_settings_decode_from_toml_shape(tmp_path: Path) -> None:
    raw = {"limits": {"max_order_qty": 100, "restricted": ["C7200"]}, "accounts": {"B": {"max_order_qty": 5}},
           "stale_after_s": 2, "reservation_ttl_s": 10}
    settings = msgspec.convert(raw, PretradeSettings)
    assert settings.limits_for("B").max_order_qty == 5 and settings.limits_for("A").restricted == ("C7200",)
    assert settings.journal_path(tmp_path) == tmp_path / "killswitch.jsonl"
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"limits": {"max_qty": 1}}, PretradeSettings)
