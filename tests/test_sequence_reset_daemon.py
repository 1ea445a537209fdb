"""A drop copy whose sequence numbers restart (Logon with ResetSeqNumFlag=Y), in the
whole daemon, across a reconnection and a daemon restart on the same state folder.

riskd orders events by their drop-copy position (offset + MsgSeqNum, the offset
moving up at each reset), so the shards apply the events after a reset, and a
restarted daemon expects the right MsgSeqNum from the journal. Reference: the
simulated OMS's own record of every fill (net position per account and instrument).
"""

from __future__ import annotations

import msgspec
import pytest

ray = pytest.importorskip("ray")

from daemon.book import load_book  # noqa: E402
from daemon.config import resolve_data_path  # noqa: E402
from daemon.run import Daemon  # noqa: E402
from tests.fix_sim import ReportStream, SimulatedOms, wait_for  # noqa: E402

SYMBOLS = ("ESZ6", "NQZ6", "NQZ6 C25000")


def _positions(daemon: Daemon) -> dict[tuple[str, str], float]:
    return {(a, s): q for a, st in daemon.state().items() for s, (q, _avg) in st["positions"].items() if abs(q) > 1e-9}


def _truth(oms: SimulatedOms) -> dict[tuple[str, str], float]:
    return {k: v for k, v in oms.stream.positions.items() if abs(v) > 1e-9}


def _settled(daemon: Daemon, oms: SimulatedOms) -> bool:
    return daemon.drain(5.0) and _positions(daemon) == _truth(oms)


def test_fills_after_a_sequence_reset_are_applied_and_survive_a_restart(tmp_path) -> None:
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    accounts = tuple(a.id for a in config.accounts)
    oms = SimulatedOms(seed=41)
    oms.stream = ReportStream(41, accounts=accounts, symbols=SYMBOLS)
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms.port,
                                        file_store_path=str(tmp_path / "fix"), reconnect_interval=0.2,
                                        reset_on_logon=True)  # every Logon restarts both sequences at 1
    config = msgspec.structs.replace(
        config, fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy),
        daemon=msgspec.structs.replace(config.daemon, run_dir=str(tmp_path / "run"), shards=2, http_port=0))
    daemon = None
    try:
        daemon = Daemon(config, book.market, http=False)
        wait_for(lambda: oms.logged_on, 30, message="drop-copy logon")
        oms.send_reports(150)
        wait_for(lambda: _settled(daemon, oms), 30, message="positions before the reset")
        before = oms.next_sender_seq
        oms.drop_connection()
        wait_for(lambda: not oms.logged_on, 10, message="connection dropped")
        wait_for(lambda: oms.logged_on, 30, message="logon with ResetSeqNumFlag=Y")
        assert oms.next_sender_seq < before  # the OMS restarted its numbers
        oms.send_reports(120)
        wait_for(lambda: _settled(daemon, oms), 30,
                 message=lambda: f"positions after the reset: {_positions(daemon)} vs {_truth(oms)}")
        assert daemon.health()["ingest"]["sequence_resets"] == 0  # positions never went back

        daemon.stop()  # and again on the same state folder: journal, snapshots, a third sequence
        daemon = Daemon(config, book.market, http=False)
        wait_for(lambda: oms.logged_on, 30, message="logon after the restart")
        oms.send_reports(80)
        wait_for(lambda: _settled(daemon, oms), 30,
                 message=lambda: f"positions after the restart: {_positions(daemon)} vs {_truth(oms)}")
    finally:
        if daemon is not None:
            daemon.stop()
        oms.stop()
        ray.shutdown()
