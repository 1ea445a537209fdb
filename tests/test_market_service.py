"""Market service to position service: ticks -> MarketUpdate -> shard reprices -> AccountRisk."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from actors.bus import Bus, ReceiveLoop, ipc_endpoint
from actors.market_data import MarketState, Tick, encode_tick
from actors.market_service import MarketService, zmq_tick_source
from actors.messages import AccountRisk, FillMsg, Stamps, decode, encode
from actors.position_service import PositionService
from actors.position_shard import PositionShard
from actors.pricing_engine import PricingEngine
from risk.model import RiskModel
from tests.conftest import AS_OF


def _wait(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_tick_reprices_the_shard_and_republishes_account_risk(book_parts, tmp_path) -> None:
    table, market, params = book_parts
    bus = Bus(zmq.Context())
    ticks_ep, updates_ep = ipc_endpoint("ticks", tmp_path), ipc_endpoint("updates", tmp_path)
    events_ep, risk_ep = ipc_endpoint("events", tmp_path), ipc_endpoint("risk", tmp_path)
    tick_sub = bus.socket(zmq.SUB, ticks_ep, bind=True)
    tick_pub = bus.socket(zmq.PUB, ticks_ep, bind=False)
    engine = PricingEngine(table, params, MarketState(table, market.underlyings), full_interval_s=3600.0)
    market_service = MarketService(engine, zmq_tick_source(tick_sub), bus, updates_ep, publish_interval_s=0.02,
                                   wall_clock=lambda: AS_OF)

    def build(update, previous):
        changed = {table.underlying_index[u] for u in update.changed}
        if update.full:
            return RiskModel(table, update.snapshot, params)
        return RiskModel(table, update.snapshot, params, previous=previous, changed=changed)

    shard = PositionShard(0, 1, RiskModel(table, market, params))
    shard.add_account("A", params.profiles["span"], 1e6)
    service = PositionService(shard, bus, events_ep, risk_ep, market_endpoint=updates_ep, model_builder=build)
    risk_sub = bus.socket(zmq.SUB, risk_ep, bind=False)
    got: list = []
    lock = threading.Lock()
    listener = ReceiveLoop({risk_sub: lambda f: (lock.acquire(), got.append(decode(f)), lock.release())},
                           name="risk", context=bus.context).start()
    service.start()
    time.sleep(0.2)
    market_service.start()
    try:
        push = bus.socket(zmq.PUSH, events_ep, bind=False)
        push.send(encode(FillMsg("X1", "trade", "A", "ES", -10.0, 6900.0, "o", "c", "", 1, Stamps())))
        _wait(lambda: service.market_version >= 1 and any(isinstance(m, AccountRisk) for m in got))
        before = shard.risk("A", Stamps()).equity
        time.sleep(0.1)
        for i in range(20):  # a burst on NDX, then the move that matters on SPX
            tick_pub.send(encode_tick(Tick(underlying="NDX", price=24500.0 + i, event_time_ns=100 + i, seq=10 + i)))
        tick_pub.send(encode_tick(Tick(underlying="SPX", price=7000.0, event_time_ns=200, seq=40)))
        _wait(lambda: shard.model.inputs.spot[table.index["ES"]] == 7000.0)
        after = shard.risk("A", Stamps()).equity
        es = table.index["ES"]
        expected = -10.0 * (shard.model.valuation.mark[es] - 6900.0) * table.multiplier[es]
        assert after - 1e6 == pytest.approx(expected, rel=1e-12) and after < before
        assert market_service.malformed == 0 and service.market_errors == 0
    finally:
        market_service.stop()
        listener.stop()
        service.stop()
        bus.close()
