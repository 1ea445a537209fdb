"""The liquidation engine end to end in one process: a real position shard (the drop copy's
truth), the liquidation actor's body (loop, fetch thread, journal, execution FIX session) and a
real FIX execution venue on loopback whose fills come back as drop-copy fills to the shard.
"""

from __future__ import annotations

import threading

import msgspec
import pytest

from actors.liquidation_config import LiquidationSettings
from actors.liquidation_journal import LiquidationJournal, MarginCallRecord, OrderRecord, TransitionRecord
from actors.messages import FillMsg, Stamps, encode
from actors.position_shard import PositionShard
from actors.ray_liquidation import LiquidationActorImpl, LiquidationSpec
from daemon.liquidation_venue import ExecutionVenue, VenueOrder
from risk.instruments import MarketSnapshot, UnderlyingQuote
from risk.liquidation import CostParams, PlannerParams
from risk.model import RiskModel
from risk.params import StressScenario
from tests.fix_sim import wait_for

ACCOUNT = "ACC1"
POSITIONS = {"ES": 10.0, "NQ": 6.0}


class World:
    """Shard + actor + venue wired as the daemon wires them (drop copy -> shard -> AccountRisk -> actor)."""

    def __init__(self, book_parts, tmp_path, *, hold: bool = False, settle_timeout_s: float = 30.0) -> None:
        table, market, params = book_parts
        params = msgspec.structs.replace(params, stress=(StressScenario(
            name="tech crash", sector_moves={"tech": -0.20}, correlation_factor=1.5),))
        self.table, self.base, self.params = table, market, params
        self.lock = threading.RLock()
        self.model = RiskModel(table, market, params)
        self.shard = PositionShard(0, 1, self.model)
        self.version = 0
        self.seq = 0
        self.shard.add_account(ACCOUNT, params.profiles["span"], 0.0)
        for symbol, q in POSITIONS.items():
            self._drop_copy(symbol, q, float(self.model.valuation.mark[table.index[symbol]]), f"OPEN-{symbol}")
        mm = self.shard.accounts[ACCOUNT].summary().maintenance_margin
        self.shard.accounts[ACCOUNT].cash = mm / 0.5  # start at MM / equity = 0.5
        self.fills: list[tuple[str, float, float, str]] = []
        self.venue = ExecutionVenue(hold=hold, on_fill=self._venue_fill)
        self.tmp = tmp_path
        self.settings = LiquidationSettings(
            dry_run=False, cooldown_s=0.0, settle_timeout_s=settle_timeout_s,
            planner=PlannerParams(target_ratio=0.6, costs=CostParams(min_cost_per_contract=0.0)))
        self.actor: LiquidationActorImpl | None = None
        self.start_actor()

    def start_actor(self) -> LiquidationActorImpl:
        spec = LiquidationSpec(risk_endpoint=f"ipc://{self.tmp}/risk", settings=self.settings, params=self.params,
                               underlyings=self.table.underlying_specs, instruments=self.table.specs,
                               market=self.base, accounts={ACCOUNT: "span"},
                               execution=self.venue.client_settings(str(self.tmp / "fix")), state_dir=str(self.tmp))
        self.actor = LiquidationActorImpl(spec, fetch=self._fetch)
        # the actor's model follows the shard's market (as its market SUB would)
        self.actor.model, self.actor.model_version = self.model, self.version
        wait_for(lambda: self.actor.link.logged_on, 10.0, message="execution logon")
        return self.actor

    # ----- the drop copy and the shard -------------------------------------------------
    def _drop_copy(self, symbol: str, qty: float, price: float, exec_id: str) -> None:
        with self.lock:
            self.seq += 1
            self.shard.on_fill(FillMsg(exec_id, "trade", ACCOUNT, symbol, qty, price, "", "", "", self.seq,
                                       Stamps(), "20261120"))

    def _venue_fill(self, order: VenueOrder, exec_id: str) -> None:
        # The OMS's drop copy of the venue's fill, at the mark (the venue improves the IOC limit).
        mark = float(self.model.valuation.mark[self.table.index[order.symbol]])
        self.fills.append((order.symbol, order.side * order.quantity, mark, exec_id))
        self.deliver(order.symbol, order.side * order.quantity, mark, exec_id)

    def deliver(self, symbol: str, qty: float, price: float, exec_id: str) -> None:
        self._drop_copy(symbol, qty, price, exec_id)
        self.publish()

    def _fetch(self, account: str) -> dict:
        with self.lock:
            acct = self.shard.accounts[account]
            return {"cash": acct.cash, "last_seq": self.shard.last_seq.get(account, 0),
                    "positions": {s: [p.quantity, p.average_price] for s, p in acct.iter_positions()}}

    def publish(self) -> None:
        with self.lock:
            risk = self.shard.risk(ACCOUNT, Stamps())
        actor = self.actor
        actor._loop.call_soon(lambda: actor._on_risk(encode(risk)))

    def move(self, factor: float) -> None:
        """Both underlyings at ``factor`` x their start price: a new model on shard and actor."""
        market = MarketSnapshot(as_of=self.base.as_of, underlyings={
            u: msgspec.structs.replace(q, price=q.price * factor) for u, q in self.base.underlyings.items()},
            future_prices={k: v * factor for k, v in self.base.future_prices.items()},
            option_vols=self.base.option_vols)
        with self.lock:
            self.version += 1
            self.model = RiskModel(self.table, market, self.params)
            self.shard.on_model(self.model, self.version)
            actor = self.actor
            model, version = self.model, self.version
        done = threading.Event()

        def swap() -> None:
            actor.model, actor.model_version = model, version
            done.set()
        actor._loop.call_soon(swap)
        done.wait(5)
        self.publish()

    def ratio(self) -> float:
        with self.lock:
            return self.shard.accounts[ACCOUNT].summary().margin_ratio

    def tier(self) -> str:
        with self.lock:
            return self.shard.accounts[ACCOUNT].tier.name.lower()

    def factor_for(self, ratio: float) -> float:
        """The price factor (a fall) that puts the account at ``ratio`` (bisection on the shard)."""
        lo, hi = 0.80, 1.0
        for _ in range(50):
            mid = (lo + hi) / 2
            market = MarketSnapshot(as_of=self.base.as_of, underlyings={
                u: msgspec.structs.replace(q, price=q.price * mid) for u, q in self.base.underlyings.items()},
                future_prices={k: v * mid for k, v in self.base.future_prices.items()}, option_vols=self.base.option_vols)
            acct = self.shard.accounts[ACCOUNT]
            model = RiskModel(self.table, market, self.params)
            acct.rebind(model)
            r = acct.summary().margin_ratio
            lo, hi = (mid, hi) if r > ratio else (lo, mid)
        self.shard.accounts[ACCOUNT].rebind(self.model)
        return (lo + hi) / 2

    def stop(self) -> None:
        if self.actor is not None:
            self.actor.stop()
        self.venue.stop()


@pytest.fixture
def world(book_parts, tmp_path):
    w = World(book_parts, tmp_path)
    yield w
    w.stop()


def transitions(folder) -> list[tuple[str, str]]:
    return [(r.event.previous, r.event.tier) for r in LiquidationJournal(folder).records
            if isinstance(r, TransitionRecord)]


def test_market_path_normal_to_liquidation_and_back(world: World) -> None:
    path = [(0.75, "margin_call"), (0.90, "reduce_only"), (1.08, "partial_liquidation")]
    factors = [world.factor_for(r) for r, _ in path]
    for (ratio, tier), factor in zip(path[:-1], factors):
        world.move(factor)
        assert world.tier() == tier
        wait_for(lambda t=tier: world.actor.tiers.get(ACCOUNT) == t, 5.0, message=tier)
    engine = world.actor.engine
    wait_for(lambda: engine.counters["margin_calls"] == 1, 10.0, message="margin call")
    assert engine.counters["orders"] == 0 and not world.venue.orders  # reduce-only sends nothing
    world.move(factors[-1])
    # the round goes out, the venue fills it, the drop copy books it, the shard publishes
    wait_for(lambda: world.tier() == "normal" and world.actor.tiers.get(ACCOUNT) == "normal", 15.0,
             message=lambda: f"back to normal (tier {world.tier()}, ratio {world.ratio():.4f})")
    folder = world.actor.journal.folder
    assert transitions(folder) == [("normal", "margin_call"), ("margin_call", "reduce_only"),
                                   ("reduce_only", "partial_liquidation"), ("partial_liquidation", "normal")]
    # The margin call: amount, deadline, drivers and the tech-crash stress.
    call = next(r.event for r in LiquidationJournal(folder).records if isinstance(r, MarginCallRecord))
    assert call.amount_needed > 0 and call.deadline_s > call.issued_at_s
    assert {d.instrument for d in call.drivers} <= set(POSITIONS) and call.drivers
    assert [s.name for s in call.stress] == ["tech crash"] and call.stress[0].pnl < 0
    # Ends at or under the target, and no cut could have been spared (one contract less of any
    # instrument cut would leave the account above the target).
    assert world.ratio() <= 0.6
    orders = world.venue.orders
    assert orders and len({o.cl_ord_id for o in orders}) == len(orders)
    assert all(o.cl_ord_id.startswith(f"LIQ-{ACCOUNT}-") for o in orders)
    with world.lock:
        acct = world.shard.accounts[ACCOUNT]
        for o in orders:
            row = world.table.index[o.symbol]
            acct.apply_fill(row, -o.side * 1.0, float(world.model.valuation.mark[row]))
            assert acct.summary().margin_ratio > 0.6, f"one {o.symbol} fewer would still meet the target"
            acct.apply_fill(row, o.side * 1.0, float(world.model.valuation.mark[row]))
    # every order inside the band around the mark it was planned at, IOC, whole contracts
    for record in LiquidationJournal(folder).records:
        if isinstance(record, OrderRecord):
            assert record.quantity == int(record.quantity)


def test_oscillating_ratio_does_not_flap(world: World) -> None:
    lo, hi = world.factor_for(0.83), world.factor_for(0.87)
    for i in range(12):
        world.move(hi if i % 2 == 0 else lo)
    wait_for(lambda: world.actor.received >= 12, 5.0)
    assert transitions(world.actor.journal.folder) == [("normal", "reduce_only")]
    assert world.actor.engine.counters["transitions"] == 1


def test_restart_between_send_and_fill(book_parts, tmp_path) -> None:
    world = World(book_parts, tmp_path, hold=True)
    try:
        world.move(world.factor_for(1.08))
        wait_for(lambda: world.venue.orders, 10.0, message="liquidation orders at the venue")
        sent = list(world.venue.orders)
        wait_for(lambda: all(o[0] == "new" for o in world.actor.engine.state()[ACCOUNT]["orders"].values()),
                 10.0, message="acks")
        world.actor.stop()  # the daemon goes down with the orders working
        positions_before = world._fetch(ACCOUNT)["positions"]
        actor = world.start_actor()  # same journal, same execution FileStore
        # Still in partial liquidation: the restarted engine must not send the round again.
        for _ in range(3):
            world.publish()
        wait_for(lambda: actor.engine.counters["risk"] >= 3 and actor.engine.counters["refreshes"] >= 1, 5.0)
        wait_for(lambda: ACCOUNT in actor.engine.accounts and actor.engine.accounts[ACCOUNT].mirror is not None,
                 5.0, message="mirror after restart")
        assert actor.engine.counters["orders"] == 0 and len(world.venue.orders) == len(sent)
        for order in sent:
            world.venue.fill(order.cl_ord_id)
        wait_for(lambda: len(world.fills) == len(sent) and world.tier() == "normal", 10.0, message="fills booked")
        # The drop copy re-delivers the same fills (PossDup resend after a reconnect): not booked again.
        for symbol, qty, price, exec_id in list(world.fills):
            world.deliver(symbol, qty, price, exec_id)
        wait_for(lambda: all(o[0] == "filled" for o in actor.engine.state()[ACCOUNT]["orders"].values()), 10.0,
                 message="fills reported on the execution session")
        wait_for(lambda: actor.engine.counters["risk"] >= 3 + 2 * len(sent), 10.0)
        ids = [o.cl_ord_id for o in world.venue.orders]
        assert ids == [o.cl_ord_id for o in sent]  # nothing sent again, nothing new
        assert actor.engine.counters["orders"] == 0 and actor.engine.counters["rounds"] == 0
        after = world._fetch(ACCOUNT)["positions"]
        for order in sent:
            q0 = positions_before[order.symbol][0]
            assert after.get(order.symbol, [0.0])[0] == pytest.approx(q0 + order.side * order.quantity)
        assert world.shard.duplicates == len(sent)
        assert world.ratio() <= 0.6
    finally:
        world.stop()
