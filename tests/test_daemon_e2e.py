"""The whole daemon end to end under a real local Ray, checked against an offline recomputation.

A simulated OMS (a real FIX acceptor) streams a drop copy (fills, partial fills,
busts, corrections, order events) while the market actor replays a recorded
market path. Afterwards every account's positions equal the OMS's own record
exactly, and its equity, IM, MM and margin ratio equal an offline recomputation
from the same fills and the final market (a fresh full revaluation by risk/, IM of
scenario-only profiles by matrix products straight from the risk arrays) to 1e-9
relative. A second test kills a position actor mid-run: Ray restarts it, it
rebuilds from the drop copy and the run still ends with the right positions.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time

import msgspec
import numpy as np
import pytest
import zmq

ray = pytest.importorskip("ray")

from actors.bus import Bus, ReceiveLoop, ipc_endpoint  # noqa: E402
from actors.market_replay import write_replay_csv  # noqa: E402
from actors.messages import MarketUpdate, decode  # noqa: E402
from actors.ticks import Tick  # noqa: E402
from daemon.book import load_book, load_history_returns  # noqa: E402
from daemon.config import resolve_data_path  # noqa: E402
from daemon.run import Daemon  # noqa: E402
from risk.account import Account  # noqa: E402
from risk.instruments import InstrumentTable  # noqa: E402
from risk.model import RiskModel  # noqa: E402
from tests.fix_sim import ReportStream, SimulatedOms, wait_for  # noqa: E402

SYMBOLS = ("ESZ6", "NQZ6", "SPX 261218C7000", "NQZ6 C25000", "SPX 270319P6400")


def _recorded_path(path, market, n: int = 120, seed: int = 3) -> None:
    """A GBM path of the book's underlyings, one tick per underlying per recorded second."""
    rng = np.random.default_rng(seed)
    start_ns = int(market.as_of.timestamp() * 1e9)
    prices = {uid: q.price for uid, q in market.underlyings.items()}
    ticks, seq = [], 0
    for i in range(n):
        for uid in sorted(prices):
            prices[uid] *= math.exp(0.002 * rng.standard_normal())
            seq += 1
            ticks.append(Tick(underlying=uid, price=prices[uid], event_time_ns=start_ns + (i + 1) * 10**9, seq=seq))
    write_replay_csv(path, ticks)


def _daemon_config(config, oms, tmp_path, **daemon_fields):
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms.port,
                                        file_store_path=str(tmp_path / "fix"), reconnect_interval=0.2)
    return msgspec.structs.replace(
        config, fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy),
        daemon=msgspec.structs.replace(config.daemon, run_dir=str(tmp_path / "run"), shards=2, http_port=0,
                                       **daemon_fields))


def _positions(daemon: Daemon) -> dict[tuple[str, str], float]:
    return {(acct, sym): qty for acct, held in daemon.positions_by_account().items() for sym, qty in held.items()}


def _scenario_im(model: RiskModel, quantities: np.ndarray, short_option_minimum: float) -> float:
    """IM of a scenario-only profile straight from the risk arrays: no incremental state."""
    total = 0.0
    for block in model.blocks:
        pnl = quantities[block.rows] @ block.arrays
        short = sum(max(-quantities[r], 0.0) * model.option_notional[r] for r in block.rows)
        total += max(max(-float(pnl.min()), 0.0), short_option_minimum * short)
    return total


def test_daemon_with_replayed_market_equals_offline_recomputation(tmp_path) -> None:
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    accounts = tuple(a.id for a in config.accounts)
    replay = tmp_path / "market.csv"
    _recorded_path(replay, book.market)
    oms = SimulatedOms(seed=21)
    oms.stream = ReportStream(21, accounts=accounts, symbols=SYMBOLS)
    config = _daemon_config(config, oms, tmp_path, market="replay", replay_path=str(replay), replay_speed=50.0,
                            full_interval_s=0.5, publish_interval_s=0.02)
    updates: list[MarketUpdate] = []
    bus = Bus(zmq.Context())
    daemon = listener = None
    try:
        daemon = Daemon(config, book.market)
        sub = bus.socket(zmq.SUB, ipc_endpoint("market-updates", daemon.run_dir), bind=False)
        lock = threading.Lock()

        def on_update(frame: bytes) -> None:
            message = decode(frame)
            if isinstance(message, MarketUpdate):
                with lock:
                    updates.append(message)
        listener = ReceiveLoop({sub: on_update}, name="test-market", context=bus.context).start()
        wait_for(lambda: oms.logged_on, 30, message="drop-copy logon")
        for _ in range(8):  # fills interleaved with the replayed market
            oms.send_reports(50)
            time.sleep(0.1)
        wait_for(lambda: daemon.health()["market"]["replay_done"], 60, message="replay to finish")
        assert daemon.drain(30.0)
        truth = {k: v for k, v in oms.stream.positions.items() if abs(v) > 1e-9}
        wait_for(lambda: _positions(daemon) == truth, 30, message=lambda: f"{_positions(daemon)} != {truth}")
        # A full revaluation after everything: the shards' risk arrays are then a pure
        # function of the final market, which the offline recomputation reprices.
        with lock:
            seen = len(updates)
        wait_for(lambda: any(u.full for u in updates[seen:]), 30, message="a full revaluation")
        with lock:
            final = [u for u in updates[seen:] if u.full][0]
        wait_for(lambda: all(s["market_version"] >= final.version for s in daemon.health()["shards"]), 30,
                 message="shards on the final market")
        wait_for(lambda: all(r.model_version >= final.version for r in daemon.view.accounts())
                 and len(daemon.view.accounts()) == len(accounts), 30, message="AccountRisk on the final market")
        latest = {r.account: r for r in daemon.view.accounts()}
        health = daemon.health()
        assert all(s["handler_errors"] == 0 and s["held"] == 0 for s in health["shards"])
        assert health["market"]["replay_emitted"] == 240 and health["market"]["replay_skipped"] == 0
    finally:
        if listener is not None:
            listener.stop()
        bus.close()
        if daemon is not None:
            daemon.stop()
        oms.stop()
        ray.shutdown()

    # ---- offline: the same fills and the final market, recomputed from scratch -----------
    assert final.version == max(r.model_version for r in latest.values())
    assert final.snapshot.as_of > book.market.as_of  # the replay's recorded clock moved the market
    table = InstrumentTable(config.underlyings, config.instruments)
    model = RiskModel(table, final.snapshot, config.margin, load_history_returns(config, table))
    for spec in config.accounts:
        profile = config.margin.profiles[spec.profile]
        fills = [f for f in oms.stream.fills if f.account == spec.id]
        quantities = np.zeros(len(table))
        for f in fills:
            quantities[table.index[f.symbol]] += f.quantity
        equity = spec.cash + math.fsum(f.quantity * (float(model.valuation.mark[table.index[f.symbol]]) - f.price)
                                       * float(table.multiplier[table.index[f.symbol]]) for f in fills)
        if profile.methods == ("scenario",):
            im = _scenario_im(model, quantities, profile.short_option_minimum)
        else:  # VaR methods: a fresh account on the fresh model (no incremental state)
            fresh = Account(spec.id, profile, model, spec.cash)
            for f in fills:
                fresh.apply_fill(table.index[f.symbol], f.quantity, f.price)
            im = fresh.margin().initial_margin
        risk = latest[spec.id]
        assert risk.equity == pytest.approx(equity, rel=1e-9), spec.id
        assert risk.initial_margin == pytest.approx(im, rel=1e-9), spec.id
        assert risk.maintenance_margin == pytest.approx(profile.mm_factor * im, rel=1e-9), spec.id
        expected_ratio = profile.mm_factor * im / equity if equity > 0 else math.inf  # negative equity: inf
        assert risk.margin_ratio == pytest.approx(expected_ratio, rel=1e-9), spec.id


def test_a_killed_position_actor_is_restarted_and_rebuilt_from_the_drop_copy(tmp_path) -> None:
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    accounts = tuple(a.id for a in config.accounts)
    oms = SimulatedOms(seed=22)
    oms.stream = ReportStream(22, accounts=accounts, symbols=("ESZ6", "NQZ6", "NQZ6 C25000"))
    config = _daemon_config(config, oms, tmp_path)
    daemon = None
    try:
        daemon = Daemon(config, book.market)
        wait_for(lambda: oms.logged_on, 30, message="drop-copy logon")
        oms.send_reports(300)
        assert daemon.drain(30.0)
        victim = daemon.positions[0]
        pid = ray.get(victim.health.remote(), timeout=30)["pid"]
        ray.kill(victim, no_restart=False)
        oms.send_reports(300)  # the drop copy goes on while the shard is down and restarting

        def restarted() -> bool:
            try:
                h = ray.get(victim.health.remote(), timeout=5)
            except Exception:
                return False
            return h["pid"] != pid and h["restarted"] and not h["recovering"]
        wait_for(restarted, 90, message="shard 0 restarted and recovered")
        oms.send_reports(100)
        assert daemon.drain(30.0)
        truth = {k: v for k, v in oms.stream.positions.items() if abs(v) > 1e-9}
        wait_for(lambda: _positions(daemon) == truth, 30, message=lambda: f"{_positions(daemon)} != {truth}")
        health = daemon.health()
        assert health["ingest"]["replays"] == 1
        assert health["shards"][0]["replayed"] > 0 and health["shards"][0]["handler_errors"] == 0
    finally:
        if daemon is not None:
            daemon.stop()
        oms.stop()
        ray.shutdown()


def test_unreachable_oms_keeps_the_daemon_serving_until_the_oms_appears(tmp_path) -> None:
    """The drop-copy initiator retries; status answers meanwhile; once the OMS listens,
    the drop copy flows."""
    import json
    import socket
    import urllib.request

    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    with socket.socket() as probe:  # a free port nobody listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    class _Later:
        port = 0
    later = _Later()
    later.port = port
    config = _daemon_config(config, later, tmp_path)
    daemon = oms = None
    try:
        daemon = Daemon(config, book.market)
        time.sleep(1.0)
        assert not daemon.health()["ingest"]["logged_on"]
        with urllib.request.urlopen(daemon.http.url + "/status", timeout=10) as reply:
            status = json.loads(reply.read())
        assert {a["account"] for a in status["accounts"]} <= {a.id for a in config.accounts}
        assert status["health"]["ingest"]["logged_on"] is False
        # The pre-trade hook answers from the shards while the drop copy is down.
        from actors.pretrade_client import PretradeClient
        from actors.pretrade_messages import CheckRequest

        client = PretradeClient(daemon.pretrade_endpoints, timeout_us=5e6)
        try:
            price = 6900.0
            ok = client.check(CheckRequest("PT1", "ACC-HEDGED", "ESZ6", 1, 1.0, price))
            assert ok.accepted and ok.im_after == pytest.approx(ok.im_before + ok.marginal_im), ok.message
            unknown = client.check(CheckRequest("PT2", "ACC-HEDGED", "NOPE", 1, 1.0, price))
            assert not unknown.accepted and unknown.reason == "unknown_instrument"
            big = client.check(CheckRequest("PT3", "ACC-HEDGED", "ESZ6", 1, 10_000.0, price))
            assert not big.accepted and big.reason == "max_order_qty" and "500" in big.message
        finally:
            client.close()
        oms = SimulatedOms(seed=23, port=port)
        oms.stream = ReportStream(23, accounts=tuple(a.id for a in config.accounts), symbols=("ESZ6",))
        wait_for(lambda: oms.logged_on, 60, message="drop-copy logon after the OMS came up")
        oms.send_reports(50)
        assert daemon.drain(30.0)
        truth = {k: v for k, v in oms.stream.positions.items() if abs(v) > 1e-9}
        wait_for(lambda: _positions(daemon) == truth, 30, message=lambda: f"{_positions(daemon)} != {truth}")
    finally:
        if daemon is not None:
            daemon.stop()
        if oms is not None:
            oms.stop()
        ray.shutdown()
