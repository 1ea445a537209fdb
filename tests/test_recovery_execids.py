"""The ExecID store loaded in bulk (fix.recovery_execids) against the store's own record-by-record replay.

The store is written by the real DropCopyApplication from the trial OMS's report
flow (order acks and cancels: non-trade records; fills; busts and corrections
naming the trade's current or original ExecID), over two trading days (the same
plain ExecID on both), then reopened both ways.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.bench_recovery_oms import ReportFlow
from fix.application import BusinessReject
from fix.dropcopy import DropCopyApplication, ExecIdStore
from fix.parser import parse
from fix.recovery_execids import BulkLoadedExecIdStore

MARKS = {"ESZ6": (6900.0, 0.25), "NQZ6": (24570.0, 0.25)}


def _write_day(store: ExecIdStore, seed: int, n: int, day: bytes) -> ReportFlow:
    flow = ReportFlow(("A-1", "A-2"), MARKS, seed)
    app = DropCopyApplication(lambda event: None, store)
    for seq in range(1, n + 1):
        fields = [(t, v) for t, v in flow.next() if t != 60]
        body = b"".join(b"%d=%s\x01" % (t, str(v).encode()) for t, v in fields)
        raw = b"8=FIX.4.4\x019=0\x0135=8\x0134=%d\x0149=OMS\x0156=RISKD\x01%b60=%b-12:00:00.000\x0110=000\x01" % (
            seq, body, day)
        try:
            app.from_app(parse(raw), None)  # type: ignore[arg-type]
        except BusinessReject:
            pass
        if seq % 50 == 0:
            store.flush()
    store.flush()
    return flow


def _maps(store: ExecIdStore) -> tuple:
    # Dict order too: the same insertion order as one by one; each trade as the store
    # answers for it (the bulk-loaded one keeps loaded trades encoded until asked).
    return (store._seen, list(store._latest.items()), list(store._chain_of.items()),
            [(chain, store.current(chain)) for chain in store._current])


def test_a_bulk_loaded_store_holds_exactly_what_the_record_by_record_replay_holds(tmp_path: Path) -> None:
    path = tmp_path / "execids"
    store = ExecIdStore(path)
    flows = [_write_day(store, 3, 2500, b"20261119"), _write_day(store, 3, 2500, b"20261120")]
    store.close()
    counts = flows[0].counts
    assert counts.get("0", 0) > 50 and counts.get("4", 0) > 20  # acks and cancels: non-trade records
    assert counts.get("H", 0) > 50 and counts.get("G", 0) > 50  # busts and corrections
    reference, bulk = ExecIdStore(path), BulkLoadedExecIdStore(path)
    assert _maps(bulk) == _maps(reference)
    assert len(reference._seen) == 5000 and reference._current  # both days, busted chains gone
    # Same answers to the application's questions, and the same records written after.
    assert bulk.latest_key("X00000010") == reference.latest_key("X00000010") == "20261120\x1fX00000010"
    for store_ in (reference, bulk):
        store_.record("20261121\x1fX1", "", None)
        store_.close()


def test_a_torn_tail_is_dropped_and_truncated_as_by_the_store_itself(tmp_path: Path) -> None:
    path = tmp_path / "execids"
    store = ExecIdStore(path)
    _write_day(store, 8, 800, b"20261120")
    store.close()
    data = path.read_bytes()
    cut = len(data) - 7  # inside the last record
    path.write_bytes(data[:cut])
    reference_path = tmp_path / "reference"
    reference_path.write_bytes(data[:cut])
    bulk, reference = BulkLoadedExecIdStore(path), ExecIdStore(reference_path)
    assert _maps(bulk) == _maps(reference)
    assert path.stat().st_size == reference_path.stat().st_size < cut
    bulk.close()
    reference.close()


def test_a_damaged_record_in_the_middle_raises_as_in_the_store_itself(tmp_path: Path) -> None:
    path = tmp_path / "execids"
    store = ExecIdStore(path)
    _write_day(store, 9, 300, b"20261120")
    store.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 3] = b"\xc1\xc1\xc1"  # 0xc1: never valid msgpack
    path.write_bytes(bytes(data))
    errors = []
    for cls in (ExecIdStore, BulkLoadedExecIdStore):
        with pytest.raises(Exception) as info:
            cls(path)
        errors.append(type(info.value))
    assert errors[0] is errors[1]
