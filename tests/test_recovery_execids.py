"""The ExecID store's load at open (fix.dropcopy.ExecIdStore.load) against an independent reference.

The store is written by the real DropCopyApplication from the trial OMS's report
flow (order acks and cancels: non-trade records; fills; busts and corrections
naming the trade's current or original ExecID), over two trading days (the same
plain ExecID on both), then reopened. The reference reads the same file with the
plain length-prefix loop and keeps the store's original maps (a set of every key,
every key's chain, each chain's current version, each plain ExecID's latest key);
the reopened store must answer every question (seen, current, latest_key; by
day-scoped key and by plain ExecID) as the reference does, and as the store that
wrote the records did.
"""

from __future__ import annotations

import struct
from pathlib import Path

import msgspec
import numpy as np
import pytest

from daemon.bench_recovery_oms import ReportFlow
from fix.application import BusinessReject
from fix.dropcopy import KEY_SEPARATOR, DropCopyApplication, ExecIdStore, _record_spans, _TradeRecord
from fix.parser import parse

MARKS = {"ESZ6": (6900.0, 0.25), "NQZ6": (24570.0, 0.25)}
_RECORD = msgspec.msgpack.Decoder(tuple[str, str, _TradeRecord | None])


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


def _spans(data: bytes) -> tuple[list[int], int]:
    """The record starts and the end of the last complete record, one length prefix at a time."""
    offsets, offset = [], 0
    while offset + 4 <= len(data):
        end = offset + 4 + int.from_bytes(data[offset:offset + 4], "little")
        if end > len(data):
            break
        offsets.append(offset)
        offset = end
    return offsets, offset


class _Reference:
    """The ExecID semantics with one map per question, fed record by record."""

    def __init__(self, data: bytes) -> None:
        self.seen_keys: set[str] = set()
        self.chain_of: dict[str, str] = {}
        self.current_of: dict[str, _TradeRecord] = {}
        self.latest: dict[str, str] = {}
        offsets, self.end = _spans(data)
        for start, stop in zip(offsets, [*offsets[1:], self.end]):
            key, ref, trade = _RECORD.decode(data[start + 4:stop])
            self.seen_keys.add(key)
            self.latest[key.partition(KEY_SEPARATOR)[2] or key] = key
            chain = self.chain_of.get(ref, ref) if ref else key
            if trade is None:
                if ref:
                    self.current_of.pop(chain, None)
                continue
            self.chain_of[key] = chain
            self.current_of[chain] = trade

    def seen(self, key: str) -> bool:
        return key in self.seen_keys if KEY_SEPARATOR in key else key in self.latest

    def current(self, key: str) -> _TradeRecord | None:
        if KEY_SEPARATOR not in key:
            key = self.latest.get(key, key)
        return self.current_of.get(self.chain_of.get(key, key))

    def latest_key(self, plain: str) -> str | None:
        return self.latest.get(plain)


def _answers(store: ExecIdStore | _Reference, keys: list[str]) -> list[tuple]:
    out = []
    for key in keys:
        plain = key.partition(KEY_SEPARATOR)[2] or key
        out.append((store.seen(key), store.current(key), store.seen(plain), store.current(plain),
                    store.latest_key(plain)))
    return out


def _questions(reference: _Reference) -> list[str]:
    return sorted(reference.seen_keys) + ["20261120\x1fNEVER", "NEVER"]


def test_a_reopened_store_answers_as_the_reference_and_as_the_store_that_wrote_it(tmp_path: Path) -> None:
    path = tmp_path / "execids"
    writer = ExecIdStore(path)
    flows = [_write_day(writer, 3, 2500, b"20261119"), _write_day(writer, 3, 2500, b"20261120")]
    writer.close()
    counts = flows[0].counts
    assert counts.get("0", 0) > 50 and counts.get("4", 0) > 20  # acks and cancels: non-trade records
    assert counts.get("H", 0) > 50 and counts.get("G", 0) > 50  # busts and corrections
    reference = _Reference(path.read_bytes())
    assert len(reference.seen_keys) == 5000 and reference.current_of  # both days, busted chains gone
    keys = _questions(reference)
    loaded = ExecIdStore(path)
    expected = _answers(reference, keys)
    assert _answers(loaded, keys) == expected
    assert _answers(writer, keys) == expected
    assert any(a[1] is None and a[0] for a in expected)  # busted trades: seen, nothing standing
    assert loaded.latest_key("X00000010") == "20261120\x1fX00000010"
    # What it records after the load is written and kept as before.
    loaded.record("20261121\x1fX1", "", _TradeRecord("X1", "A-1", "ESZ6", 2.0, 6900.0, "O", "C"))
    loaded.close()
    again = ExecIdStore(path)
    assert again.seen("20261121\x1fX1") and again.current("X1") == _TradeRecord("X1", "A-1", "ESZ6", 2.0, 6900.0,
                                                                                "O", "C")
    again.close()


def _odd_store(path: Path) -> None:
    """Records the fast framing cannot take as they are: a float whose bytes read 00 00 93
    (a false record start), a record over 65,535 bytes, a key without a day; and a
    correction and a bust after them."""
    store = ExecIdStore(path)
    _write_day(store, 5, 400, b"20261120")
    false_start = struct.unpack(">d", b"\x00\x00\x00\x00\x00\x00\x93\x10")[0]
    store.record("20261121\x1fFP", "", _TradeRecord("FP", "A-1", "ESZ6", false_start, false_start, "O", "C"))
    store.record("20261121\x1fBIG", "", _TradeRecord("BIG", "A-1", "ESZ6", 1.0, 2.0, "O" * 70_000, "C"))
    store.record("NODAY", "", _TradeRecord("NODAY", "A-2", "ESZ6", 1.0, 2.0, "O", "C"))
    store.record("20261121\x1fT", "", _TradeRecord("T", "A-1", "ESZ6", 1.0, 2.0, "O", "C"))
    store.record("20261121\x1fTC", "20261121\x1fT", _TradeRecord("TC", "A-1", "ESZ6", 3.0, 2.0, "O", "C"))
    store.record("20261121\x1fTB", "20261121\x1fTC", None)
    store.record("20261121\x1fU", "", _TradeRecord("U", "A-1", "ESZ6", 1.0, 2.0, "O", "C"))
    store.close()


def test_records_the_fast_framing_cannot_take_are_read_by_their_length_prefix(tmp_path: Path) -> None:
    path = tmp_path / "execids"
    _odd_store(path)
    data = path.read_bytes()
    raw = np.frombuffer(data, np.uint8)
    assert len(np.flatnonzero(raw[4:] == 0x93)) > len(_spans(data)[0])  # the false start is there
    offsets, end = _record_spans(raw)
    assert (offsets.tolist(), end) == _spans(data)
    reference = _Reference(data)
    keys = _questions(reference)
    assert _answers(ExecIdStore(path), keys) == _answers(reference, keys)
    assert reference.current("20261121\x1fT") is None and reference.seen("20261121\x1fTC")


@pytest.mark.parametrize("back", [1, 3, 4, 5, 9, 40, 70_050])
def test_a_torn_tail_is_dropped_and_truncated_where_the_last_whole_record_ends(tmp_path: Path, back: int) -> None:
    path = tmp_path / "execids"
    _odd_store(path)
    data = path.read_bytes()
    cut = data[:len(data) - back]
    path.write_bytes(cut)
    reference = _Reference(cut)
    assert reference.end < len(cut)  # torn
    store = ExecIdStore(path)
    keys = _questions(_Reference(data))
    assert _answers(store, keys) == _answers(reference, keys)
    assert path.stat().st_size == reference.end
    store.close()


def test_a_damaged_record_in_the_middle_raises_as_the_reference_reader_does(tmp_path: Path) -> None:
    path = tmp_path / "execids"
    store = ExecIdStore(path)
    _write_day(store, 9, 300, b"20261120")
    store.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 3] = b"\xc1\xc1\xc1"  # 0xc1: never valid msgpack
    path.write_bytes(bytes(data))
    errors = []
    for read in (lambda: _Reference(bytes(data)), lambda: ExecIdStore(path)):
        with pytest.raises(ValueError) as info:  # msgspec.DecodeError or UnicodeDecodeError
            read()
        errors.append(type(info.value))
    assert errors[0] is errors[1]
