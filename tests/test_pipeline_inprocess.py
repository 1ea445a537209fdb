"""Drop copy to position shards in one process: FIX session -> router -> ZeroMQ -> shards.

The simulated OMS (a real FIX acceptor) streams ExecutionReports; riskd's FIX
initiator turns them into fills and order events, the router pushes them over
ipc:// to two shard threads, and the shards' positions must equal the OMS's own
record exactly.
"""

from __future__ import annotations

import threading

import msgspec
import zmq

from actors.bus import Bus, ReceiveLoop, ipc_endpoint
from actors.ingest import DropCopyRouter
from actors.messages import FillMsg, OrderMsg, decode
from actors.position_shard import PositionShard, shard_of
from daemon.book import build_model, load_book
from daemon.config import resolve_data_path
from fix.dropcopy import DropCopyApplication, ExecIdStore
from fix.engine import FixEngine
from fix.session import Session
from fix.store import MemoryStore
from tests.fix_sim import RISKD, OMS, ReportStream, SimulatedOms, settings, wait_for

ACCOUNTS = ("ACC-1", "ACC-2", "ACC-3", "HOUSE")


def test_drop_copy_reaches_two_shards_and_positions_equal_the_oms(tmp_path) -> None:
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    config = msgspec.structs.replace(config, history=None)
    model = build_model(config, book.market)
    shards = [PositionShard(i, 2, model) for i in range(2)]
    for acct in ACCOUNTS:
        shards[shard_of(acct, 2)].add_account(acct, config.margin.profiles["span"], 1e7)

    bus = Bus(zmq.Context())
    pushes, loops = [], []
    applied = [0, 0]
    lock = threading.Lock()
    for i, shard in enumerate(shards):
        endpoint = ipc_endpoint(f"shard-{i}", tmp_path)
        pull = bus.socket(zmq.PULL, endpoint, bind=True)
        pushes.append(bus.socket(zmq.PUSH, endpoint, bind=False))

        def handle(frame: bytes, shard: PositionShard = shard, i: int = i) -> None:
            message = decode(frame)
            if isinstance(message, FillMsg):
                shard.on_fill(message)
            elif isinstance(message, OrderMsg):
                shard.on_order(message)
            with lock:
                applied[i] += 1

        loops.append(ReceiveLoop({pull: handle}, name=f"shard-{i}").start())

    oms = SimulatedOms(seed=5)
    oms.stream = ReportStream(5, accounts=ACCOUNTS, symbols=("ESZ6", "NQZ6"))
    router = DropCopyRouter(pushes)
    consumer_settings = settings(RISKD, OMS, "initiator", SocketConnectPort=oms.port, ReconnectInterval=0.1)
    session = Session(consumer_settings, MemoryStore(), DropCopyApplication(router, ExecIdStore()))
    engine = FixEngine()
    engine.add(session)
    engine.start_in_thread("consumer")
    try:
        wait_for(lambda: session.logged_on and oms.logged_on, 10, message="logon")
        oms.send_reports(1500)
        expected_events = len(oms.stream.fills) + 1500  # one OrderMsg per report
        wait_for(lambda: sum(applied) >= expected_events, 30, message=lambda: f"{applied} of {expected_events}")
        truth = {k: v for k, v in oms.stream.positions.items() if abs(v) > 1e-9}
        got = {}
        for shard in shards:
            for acct_id, account in shard.accounts.items():
                for symbol, pos in account.iter_positions():
                    got[(acct_id, symbol)] = pos.quantity
        assert got == truth
        assert sum(router.sent) == expected_events
        assert all(not shard.held for shard in shards)
        assert all(loop.errors == 0 for loop in loops)
    finally:
        engine.stop_thread()
        oms.stop()
        for loop in loops:
            loop.stop()
        bus.close()
