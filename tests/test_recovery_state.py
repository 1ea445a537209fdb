"""Recovery pieces without Ray: shard snapshots, the ExecID store catching up with the journal,
the journaled ingest (journal before publish), and `riskd replay` against the OMS's record.

References: a shard that was never snapshotted (same events straight through), the
OMS's own record of fills (daemon.bench_recovery_oms), and offline accounts
(risk.account.Account) applying those fills in order.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
import pytest
import zmq

from actors.bus import Bus, ipc_endpoint
from actors.ingest import journal_frames, reconcile_exec_ids
from actors.kill_switch import KillSwitches
from actors.messages import Stamps, fill_message, order_message
from actors.position_shard import PositionShard
from actors.pretrade import PreTradeChecker
from actors.pretrade_config import PretradeSettings
from actors.pretrade_messages import CheckRequest
from actors.ray_ingest import IngestActorImpl, IngestSpec
from actors.snapshot import (SnapshotError, capture_shard, encode_snapshot, read_snapshot, restore_shard,
                             write_atomic)
from daemon.book import load_book, load_history_returns
from daemon.bench_recovery_oms import ReportFlow, TrialOms
from daemon.config import resolve_data_path
from fix.application import BusinessReject
from fix.dropcopy import DropCopyApplication, ExecIdStore, Fill, scoped_exec_id, trade_date
from fix.journal import Journal, JournalSettings, read_journal
from fix.parser import parse
from risk.account import Account
from risk.instruments import InstrumentTable
from risk.model import RiskModel
from tests.fix_sim import settings, wait_for

MARKS = {"ESZ6": (6900.0, 0.25), "NQZ6": (24570.0, 0.25), "SPX 261218C7000": (150.0, 0.05),
         "NQZ6 C25000": (900.0, 0.05)}
ACCOUNTS = ("ACC-HEDGED", "ACC-SHORTVOL", "ACC-VAR")


@pytest.fixture(scope="module")
def demo():
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    table = InstrumentTable(config.underlyings, config.instruments)
    return book, config, RiskModel(table, book.market, config.margin, load_history_returns(config, table))


def _shard(config, model, *, pretrade: bool = False) -> tuple[PositionShard, PreTradeChecker | None]:
    shard = PositionShard(0, 1, model)
    for a in config.accounts:
        shard.add_account(a.id, config.margin.profiles[a.profile], a.cash)
    checker = PreTradeChecker(shard, PretradeSettings(), KillSwitches(), market_age=lambda u: 0.0) if pretrade else None
    return shard, checker


def _events(n: int, seed: int = 3) -> list:
    """Drop-copy events (FillMsg / OrderMsg) of ``n`` reports, through the real DropCopyApplication."""
    flow = ReportFlow(ACCOUNTS + ("NOBODY",), MARKS, seed)
    out: list = []
    app = DropCopyApplication(lambda e: out.append(fill_message(e, Stamps()) if isinstance(e, Fill)
                                                   else order_message(e, Stamps())))
    for seq in range(1, n + 1):
        body = b"".join(b"%d=%s\x01" % (t, v if isinstance(v, bytes) else str(v).encode()) for t, v in flow.next())
        raw = b"8=FIX.4.4\x019=0\x0135=8\x0134=%d\x0149=OMS\x0156=RISKD\x01%b10=000\x01" % (seq, body)
        app.from_app(parse(raw), None)  # type: ignore[arg-type]
    return out


def _apply(shard: PositionShard, events) -> None:
    for e in events:
        if e.seq >= shard.applied_seq:  # PositionService's rule: older frames are skipped
            shard.applied_seq = e.seq
            (shard.apply_fill if hasattr(e, "kind") else shard.apply_order)(e)


def _view(shard: PositionShard) -> dict:
    return {a: (acct.cash, int(acct.tier), sorted((s, p.quantity, p.average_price) for s, p in acct.iter_positions()),
                sorted((o.order_id, o.row, o.quantity, o.limit_price) for o in acct.orders.values()))
            for a, acct in shard.accounts.items()}


def test_a_restored_snapshot_goes_on_exactly_like_the_shard_it_was_taken_from(demo, tmp_path: Path) -> None:
    book, config, model = demo
    events = _events(1500)
    cut = len(events) // 2
    original, checker = _shard(config, model, pretrade=True)
    _apply(original, events[:cut])
    assert original.held and any(a.orders for a in original.accounts.values())  # held events and open orders
    decision = checker.check(CheckRequest("PT-1", "ACC-HEDGED", "ESZ6", 1, 2.0, 6900.0))
    assert decision.accepted, decision.message
    path = tmp_path / "shard-0.snap"
    write_atomic(path, encode_snapshot(capture_shard(original, config.margin.profiles, checker)))
    restored, restored_checker = _shard(config, model, pretrade=True)
    restore_shard(restored, read_snapshot(path), config.margin.profiles, restored_checker)
    assert _view(restored) == _view(original)
    assert restored.applied_fills == original.applied_fills and restored.applied_seq == original.applied_seq
    assert [msgspec.to_builtins(m) for m in restored.held] == [msgspec.to_builtins(m) for m in original.held]
    assert set(restored_checker.pending) == {"PT-1"}
    assert restored_checker.pending["PT-1"].expiry == pytest.approx(checker.pending["PT-1"].expiry, abs=1.0)
    # Replaying from the snapshot's seq (the same-seq frames again) ends where the uninterrupted shard ends.
    _apply(original, events[cut:])
    _apply(restored, [e for e in events if e.seq >= restored.applied_seq])
    assert _view(restored) == _view(original)
    for account_id, account in original.accounts.items():  # margin: rebuilt sums vs incremental ones
        got, want = restored.accounts[account_id].summary(), account.summary()
        assert got.binding_scenario == want.binding_scenario
        assert (got.equity, got.initial_margin, got.initial_margin_with_orders) == pytest.approx(
            (want.equity, want.initial_margin, want.initial_margin_with_orders), rel=1e-9)


def test_a_damaged_or_foreign_snapshot_is_refused_by_name(demo, tmp_path: Path) -> None:
    book, config, model = demo
    shard, _ = _shard(config, model)
    _apply(shard, _events(200))
    path = tmp_path / "shard-0.snap"
    data = encode_snapshot(capture_shard(shard, config.margin.profiles))
    write_atomic(path, data[:-40] + bytes([data[-40] ^ 1]) + data[-39:])
    with pytest.raises(SnapshotError, match=f"{path}: checksum mismatch"):
        read_snapshot(path)
    assert read_snapshot(tmp_path / "absent.snap") is None
    write_atomic(path, data)
    other = PositionShard(1, 2, model)
    with pytest.raises(SnapshotError, match="shard 0 of 1, expected 1 of 2"):
        restore_shard(other, read_snapshot(path), config.margin.profiles)


def _journaled(tmp_path: Path, n: int, seed: int = 4) -> tuple[Journal, list[bytes]]:
    """A journal of ``n`` ExecutionReports as the session received them."""
    flow = ReportFlow(ACCOUNTS, MARKS, seed)
    journal = Journal(tmp_path / "journal", JournalSettings(fsync="none"))
    raws = []
    for seq in range(1, n + 1):
        body = b"".join(b"%d=%s\x01" % (t, str(v).encode()) for t, v in flow.next())
        raw = b"8=FIX.4.4\x019=0\x0135=8\x0134=%d\x0149=OMS\x0156=RISKD\x01%b10=000\x01" % (seq, body)
        journal.append(seq, seq, raw)
        raws.append(raw)
    journal.commit()
    return journal, raws


def test_the_exec_id_store_catches_up_with_the_journal_after_a_crash(tmp_path: Path) -> None:
    journal, raws = _journaled(tmp_path, 600)
    behind = ExecIdStore(tmp_path / "behind")
    app = DropCopyApplication(lambda e: None, behind)
    for raw in raws[:520]:  # the crash came after the journal commit, before the store's write
        try:
            app.from_app(parse(raw), None)  # type: ignore[arg-type]
        except BusinessReject:
            pass
    behind.close()
    full = ExecIdStore()
    app = DropCopyApplication(lambda e: None, full)
    for raw in raws:
        try:
            app.from_app(parse(raw), None)  # type: ignore[arg-type]
        except BusinessReject:
            pass
    reopened = ExecIdStore(tmp_path / "behind")
    assert reconcile_exec_ids(journal, reopened) == sum(1 for raw in raws[520:])
    keys = [scoped_exec_id(trade_date(m), m.get(17).decode()) for m in map(parse, raws) if m.get(17)]
    assert len(set(keys)) > 500
    for key in keys + ["20261120\x1fNEVER"]:  # every report's ExecID: seen, and its trade's current version
        plain = key.partition("\x1f")[2]
        assert (reopened.seen(key), reopened.current(key), reopened.latest_key(plain)) == (
            full.seen(key), full.current(key), full.latest_key(plain)), key
    assert reconcile_exec_ids(journal, reopened) == 0  # nothing left to catch up


def test_journaled_ingest_publishes_only_what_is_committed_and_replay_rebuilds_the_oms_record(demo, tmp_path):
    book, config, model = demo
    bus = Bus(zmq.Context())
    endpoints = tuple(ipc_endpoint(f"shard-{i}", tmp_path) for i in range(2))
    pulls = [bus.socket(zmq.PULL, e, bind=True) for e in endpoints]
    oms = TrialOms(ACCOUNTS, MARKS, seed=9)
    session = settings("RISKD", "OMS", "initiator", SocketConnectPort=oms.port, ReconnectInterval=0.1,
                       FileStorePath=str(tmp_path / "fix"))
    journal_dir = tmp_path / "state" / "journal"
    spec = IngestSpec(session=session, shard_endpoints=endpoints, state_dir=str(tmp_path / "state" / "ingest"),
                      journal_dir=str(journal_dir), journal=JournalSettings(fsync="batch"))
    ingest = IngestActorImpl(spec, applied=lambda shard: 0)
    committed_at_publish: list[tuple[int, int]] = []
    publish = ingest.router.publish

    def checked_publish() -> None:  # every frame sent is in a committed journal record
        committed_at_publish.extend((seq, ingest.journal.committed_seq) for _, seq, _ in ingest.router._ready)
        publish()
    ingest.application._publish = checked_publish
    frames: list[bytes] = []
    try:
        wait_for(lambda: oms.session.logged_on, 10, message="logon")
        oms.stream(1500, 5000.0)
        oms.wait_streamed(60)
        wait_for(lambda: ingest.session.store.next_target_seq > oms.last_seq, 30, message="every report")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(frames) < sum(ingest.router.sent):
            for pull in pulls:
                while pull.poll(10):
                    frames.append(pull.recv())
    finally:
        ingest.stop()
        oms.stop()
        bus.close()
    assert committed_at_publish and all(seq <= committed for seq, committed in committed_at_publish)
    journaled = [frame for _, frame in journal_frames(read_journal(journal_dir))]
    assert sorted(journaled) == sorted(frames)
    assert Journal(journal_dir).last_seq == max(r.seq for r in read_journal(journal_dir))
    # riskd replay: positions and cash rebuilt from the raw FIX alone, against the OMS's record.
    from daemon.cli import main

    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["replay", str(journal_dir), "--json"]) == 0
    result = json.loads(buffer.getvalue())
    truth_qty = oms.flow.positions()
    got = {(a, s): p[0] for a, st in result["accounts"].items() for s, p in st["positions"].items()}
    assert got == truth_qty
    table = model.table
    truth = {a.id: Account(a.id, config.margin.profiles[a.profile], model, a.cash) for a in config.accounts}
    for f in oms.flow.fills:
        truth[f.account].apply_fill(table.index[f.symbol], f.quantity, f.price)
    assert {a: st["cash"] for a, st in result["accounts"].items()} == {a: t.cash for a, t in truth.items()}
    assert result["fills"] == len(oms.flow.fills) and result["rejected"] == 0
