"""`riskd run`'s core under a real local Ray: simulated OMS -> ingest actor -> shard actors.

Positions in the shard actors must equal the OMS's own record exactly.
"""

from __future__ import annotations

import os
import time

import msgspec
import pytest

ray = pytest.importorskip("ray")

from daemon.book import load_book  # noqa: E402
from daemon.config import resolve_data_path  # noqa: E402
from daemon.run import Daemon  # noqa: E402
from tests.fix_sim import ReportStream, SimulatedOms, wait_for  # noqa: E402


def test_drop_copy_through_ray_actors_equals_the_oms_record(tmp_path) -> None:
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    accounts = tuple(a.id for a in config.accounts)
    oms = SimulatedOms(seed=11)
    oms.stream = ReportStream(11, accounts=accounts, symbols=("ESZ6", "NQZ6"))
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms.port,
                                        file_store_path=str(tmp_path / "fix"), reconnect_interval=0.2)
    config = msgspec.structs.replace(
        config, fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy),
        daemon=msgspec.structs.replace(config.daemon, run_dir=str(tmp_path / "run"), shards=2, worker_niceness=3))
    daemon = None
    if ray.is_initialized():
        ray.shutdown()  # the daemon starts its own local instance (and sets its workers' nice value)
    try:
        daemon = Daemon(config, book.market)
        # Ray's default would be 15; the configured increment reaches every actor process.
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert [os.getpriority(os.PRIO_PROCESS, s["pid"]) for s in daemon.health()["shards"]] == [own + 3] * 2
        wait_for(lambda: oms.logged_on, 30, message="drop-copy logon")
        time.sleep(0.2)
        oms.send_reports(600)
        expected = len(oms.stream.fills) + 600
        wait_for(lambda: sum(daemon.health()["ingest"]["sent_per_shard"]) >= expected, 60,
                 message=lambda: f"routed {daemon.health()['ingest']['sent_per_shard']} of {expected}")
        truth = {k: v for k, v in oms.stream.positions.items() if abs(v) > 1e-9}

        def positions() -> dict:
            return {(acct, sym): qty for acct, held in daemon.positions_by_account().items()
                    for sym, qty in held.items()}

        wait_for(lambda: positions() == truth, 30, message=lambda: f"{positions()} != {truth}")
        health = daemon.health()
        assert all(s["handler_errors"] == 0 and s["held"] == 0 for s in health["shards"]), \
            [s["last_error"] for s in health["shards"]]
        assert sum(s["received"] for s in health["shards"]) == expected
    finally:
        if daemon is not None:
            daemon.stop()
        oms.stop()
        ray.shutdown()


def test_simulated_market_reprices_the_shards(tmp_path) -> None:
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    oms = SimulatedOms(seed=12)
    oms.stream = ReportStream(12, accounts=tuple(a.id for a in config.accounts), symbols=("ESZ6", "NQZ6"))
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms.port,
                                        file_store_path=str(tmp_path / "fix"), reconnect_interval=0.2)
    config = msgspec.structs.replace(
        config, fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy),
        daemon=msgspec.structs.replace(config.daemon, run_dir=str(tmp_path / "run"), market="simulate",
                                       full_interval_s=0.5))
    daemon = None
    try:
        daemon = Daemon(config, book.market)
        wait_for(lambda: all(s["market_version"] >= 5 for s in daemon.health()["shards"]), 60,
                 message=lambda: f"market versions {[s['market_version'] for s in daemon.health()['shards']]}")
        health = daemon.health()
        assert health["market"]["ticks"] > 0 and health["market"]["malformed"] == 0
        assert health["market"]["full_revaluations"] >= 1 and not health["market"]["errors"]
        assert all(s["market_errors"] == 0 for s in health["shards"])
    finally:
        if daemon is not None:
            daemon.stop()
        oms.stop()
        ray.shutdown()
