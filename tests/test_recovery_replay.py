"""A shard's bulk replay of the journal at start-up (actors.recovery_replay) against the live path.

The journal is written by the ingest's own code (DropCopyRouter behind a
JournaledApplication, the real DropCopyApplication and ExecID store) from the trial
OMS's report flow: orders, fills, busts, corrections, PossResend duplicates,
collateral notes, an unknown account's events (held) and the drop copy's ack of an
order the pre-trade hook had reserved. References:

- the live path: a PositionService per shard (its receive thread, real ZeroMQ
  sockets) fed the frames the router published, from the start; a snapshot is
  taken from it half-way;
- ``riskd replay`` (daemon.replay_cmd): positions and cash rebuilt from the raw
  FIX alone.

A shard restored from that snapshot and bulk-replayed from the journal must hold
exactly the live shards' positions, cash, open orders, dedup set, sequence numbers,
held events and pre-trade reservations.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import zmq

from actors.bus import Bus, ipc_endpoint
from actors.ingest import DropCopyRouter
from actors.kill_switch import KillSwitches
from actors.messages import Stamps
from actors.position_service import PositionService
from actors.position_shard import PositionShard
from actors.pretrade import PreTradeChecker
from actors.pretrade_config import PretradeSettings
from actors.pretrade_messages import CheckRequest
from actors.recovery_replay import bulk_replay
from actors.snapshot import capture_shard, restore_shard
from daemon.bench_recovery_oms import ReportFlow
from daemon.book import load_book, load_history_returns
from daemon.config import resolve_data_path
from daemon.replay_cmd import replay_journal
from fix.application import BusinessReject
from fix.dropcopy import DropCopyApplication, ExecIdStore
from fix.journal import Journal, JournalSettings
from fix.journaled_app import JournaledApplication
from fix.parser import parse
from risk.instruments import InstrumentTable
from risk.model import RiskModel
from tests.fix_sim import wait_for

MARKS = {"ESZ6": (6900.0, 0.25), "NQZ6": (24570.0, 0.25), "SPX 261218C7000": (150.0, 0.05),
         "NQZ6 C25000": (900.0, 0.05)}
ACCOUNTS = ("ACC-HEDGED", "ACC-SHORTVOL", "ACC-VAR")  # shards 0, 0, 1 of 2; NOBODY (unknown): shard 1
N_SHARDS = 2


@pytest.fixture(scope="module")
def demo():
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    table = InstrumentTable(config.underlyings, config.instruments)
    return book, config, RiskModel(table, book.market, config.margin, load_history_returns(config, table))


class _Sink:
    """Stands in for a shard's PUSH socket: the frames the router sends it, in order."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)


class _Stamp:
    read_ns = 1


class _Day:
    """The ingest's journaling path fed a report flow (see the module docstring)."""

    def __init__(self, folder: Path, seed: int) -> None:
        self.journal = Journal(folder, JournalSettings(fsync="none"))
        self.sinks = [_Sink() for _ in range(N_SHARDS)]
        self.router = DropCopyRouter(self.sinks, journal=self.journal)  # type: ignore[arg-type]
        self.app = JournaledApplication(DropCopyApplication(self.router, ExecIdStore()), self.journal,
                                        derived=self.router.derived, discard=self.router.discard,
                                        publish=self.router.publish)
        self.flow = ReportFlow(ACCOUNTS + ("NOBODY",), MARKS, seed)
        self.seq = 0
        self.trades: list[bytes] = []
        self.rejected = 0

    def send(self, body: bytes) -> None:
        self.seq += 1
        raw = b"8=FIX.4.4\x019=0\x0135=8\x0134=%d\x0149=OMS\x0156=RISKD\x01%b10=000\x01" % (self.seq, body)
        try:
            self.app.from_app(parse(raw), _Stamp())  # type: ignore[arg-type]
        except BusinessReject:
            self.rejected += 1

    def reports(self, n: int) -> None:
        """``n`` reports of the flow, a TCP read (commit, then publish) every 7, and every
        40th one a PossResend of an earlier trade (a duplicate ExecID: no event)."""
        for i in range(n):
            body = b"".join(b"%d=%s\x01" % (t, str(v).encode()) for t, v in self.flow.next())
            if b"150=F\x01" in body:
                self.trades.append(body)
            self.send(body)
            if i % 40 == 39 and self.trades:
                self.send(self.trades[len(self.trades) // 2] + b"97=Y\x01")
            if i % 7 == 6:
                self.app.flush()
        self.app.flush()


def _live_view(shard: PositionShard, checker: PreTradeChecker) -> dict:
    return {"accounts": {a: (acct.cash, sorted((s, p.quantity, p.average_price) for s, p in acct.iter_positions()),
                             sorted((o.order_id, o.row, o.quantity, o.limit_price) for o in acct.orders.values()))
                         for a, acct in shard.accounts.items()},
            "applied_fills": set(shard.applied_fills), "applied_seq": shard.applied_seq,
            "last_seq": dict(shard.last_seq),
            "held": [msgspec.to_builtins(msgspec.structs.replace(m, stamps=Stamps())) for m in shard.held],
            "pending": sorted(checker.pending)}


def _checker(shard: PositionShard) -> PreTradeChecker:
    return PreTradeChecker(shard, PretradeSettings(), KillSwitches(), market_age=lambda u: 0.0)


def _shard(k: int, config, model) -> PositionShard:
    from actors.position_shard import shard_of

    shard = PositionShard(k, N_SHARDS, model)
    for a in config.accounts:
        if shard_of(a.id, N_SHARDS) == k:
            shard.add_account(a.id, config.margin.profiles[a.profile], a.cash)
    return shard


def test_a_bulk_replayed_shard_equals_the_live_path_and_riskd_replay(demo, tmp_path: Path) -> None:
    book, config, model = demo
    profiles = config.margin.profiles
    journal_dir = tmp_path / "journal"
    day = _Day(journal_dir, seed=21)
    bus = Bus(zmq.Context())
    live = []
    pushes = []
    for k in range(N_SHARDS):
        shard = _shard(k, config, model)
        checker = _checker(shard)
        events = ipc_endpoint(f"events-{k}", tmp_path)
        service = PositionService(shard, bus, events, ipc_endpoint(f"risk-{k}", tmp_path),
                                  pretrade=(ipc_endpoint(f"pretrade-{k}", tmp_path), checker, 1e6)).start()
        live.append((shard, checker, service))
        pushes.append(bus.socket(zmq.PUSH, events, bind=False))
    sent = [0] * N_SHARDS

    def deliver() -> None:  # what the router published since the last call, to the live shards
        for k, push in enumerate(pushes):
            for frame in day.sinks[k].frames[sent[k]:]:
                push.send(frame)
            sent[k] = len(day.sinks[k].frames)
        for k, (_, _, service) in enumerate(live):
            wait_for(lambda: service.received >= sent[k], 20, message=f"shard {k} fed")
    try:
        day.reports(1200)
        day.router.collateral("ACC-HEDGED", 5e9)  # well clear of every tier: the check below is accepted
        deliver()
        # Half-way: a pre-trade reservation on shard 0, then both shards' snapshots.
        shard0, checker0, service0 = live[0]
        decision = service0.read(lambda s: checker0.check(CheckRequest("PT-1", "ACC-HEDGED", "ESZ6", 1, 2.0,
                                                                       6900.0)), timeout_s=10)
        assert decision.accepted, decision.message
        snapshots = [service.read(lambda s, c=checker: capture_shard(s, profiles, c), timeout_s=10)
                     for _, checker, service in live]
        day.router.collateral("ACC-VAR", 1_750_000.0)  # same seq as the snapshot's: applied again
        day.reports(1300)
        # The drop copy acks the order the hook reserved: the reservation is the drop copy's now.
        day.send(b"37=PT-1\x0111=CPT-1\x0117=XPT1\x01150=0\x0139=0\x011=ACC-HEDGED\x0155=ESZ6\x0154=1\x01"
                 b"38=2\x0140=2\x0144=6900.0\x01151=2\x0114=0\x016=0\x0160=20261120-21:00:00.000\x01")
        day.reports(200)
        day.router.collateral("ACC-SHORTVOL", 900_000.0)
        deliver()
        final = [service.read(lambda s, c=checker: _live_view(s, c), timeout_s=10) for _, checker, service in live]
        margins = [service.read(lambda s: {a: acct.summary() for a, acct in s.accounts.items()}, timeout_s=10)
                   for _, _, service in live]
    finally:
        for _, _, service in live:
            service.stop()
        bus.close()
        day.journal.close()
    counts = day.flow.counts
    assert counts.get("H", 0) > 10 and counts.get("G", 0) > 10, counts  # busts and corrections in it
    assert day.app.inner.duplicates >= 40  # type: ignore[attr-defined]
    assert final[1]["held"], "the unknown account's events are held"
    assert "PT-1" not in final[0]["pending"]  # handed over to the drop copy

    replayed = []
    for k in range(N_SHARDS):
        shard = _shard(k, config, model)
        checker = _checker(shard)
        restore_shard(shard, snapshots[k], profiles, checker)
        assert snapshots[k].applied_seq < final[k]["applied_seq"]
        before = shard.applied_seq
        stats, held = bulk_replay(shard, journal_dir, checker)
        assert stats.error == "" and stats.from_seq == before and stats.applied > 500
        assert stats.collateral >= 1 and stats.fills > 100
        assert _live_view(shard, checker) == final[k]
        if k == 0:
            assert snapshots[0].pending and checker.pending == {}  # restored, then handed over
        # One HeldEvent reported per event held since the snapshot, in order.
        assert [(h.exec_id, h.account, h.symbol, h.seq) for h in held] == [
            (m.exec_id, m.account, m.symbol, m.seq) for m in shard.held[len(snapshots[k].held):]]
        for account_id, account in shard.accounts.items():  # rebuilt sums vs the live incremental ones
            got, want = account.summary(), margins[k][account_id]
            assert got.binding_scenario == want.binding_scenario
            assert (got.equity, got.initial_margin, got.initial_margin_with_orders) == pytest.approx(
                (want.equity, want.initial_margin, want.initial_margin_with_orders), rel=1e-9)
        # Again from the new applied seq (the ingest's catch-up overlaps it): nothing changes.
        again, _ = bulk_replay(shard, journal_dir, checker)
        assert again.applied >= 1 and _live_view(shard, checker) == final[k]
        replayed.append(shard)

    # riskd replay, from the raw FIX alone, over the whole journal.
    offline = replay_journal(journal_dir, config, book.market)
    assert offline["rejected"] == day.rejected
    for shard in replayed:
        for account_id, account in shard.accounts.items():
            state = offline["accounts"][account_id]
            assert account.cash == state["cash"]
            assert {s: [p.quantity, p.average_price] for s, p in account.iter_positions()} == state["positions"]


def test_bulk_replay_without_a_journal_changes_nothing(demo, tmp_path: Path) -> None:
    _, config, model = demo
    shard = _shard(0, config, model)
    stats, held = bulk_replay(shard, tmp_path / "absent")
    assert (stats.records, stats.applied, held, shard.applied_seq) == (0, 0, [], 0)


def test_bulk_replay_stops_at_a_damaged_record_and_says_where(demo, tmp_path: Path) -> None:
    _, config, model = demo
    day = _Day(tmp_path / "journal", seed=5)
    day.reports(300)
    day.journal.close()
    (segment,) = sorted((tmp_path / "journal").iterdir())
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte in the middle: corruption, not a torn tail
    segment.write_bytes(bytes(data))
    shard = _shard(0, config, model)
    stats, _ = bulk_replay(shard, tmp_path / "journal")
    assert "corrupt journal record" in stats.error and str(segment) in stats.error
    assert 0 < shard.applied_seq < day.seq  # the events before it, in order, and none after
