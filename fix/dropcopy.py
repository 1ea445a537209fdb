"""The drop-copy application: ExecutionReports in, normalized fills and order events out.

For every ExecutionReport (35=8) accepted by the session, in sequence order:

- ExecType F (trade): one :class:`Fill` (kind ``trade``), signed quantity (buy > 0);
- ExecType H (trade bust): one reversing :class:`Fill` (kind ``bust``) that undoes
  the current version of the referenced trade (ExecRefID 19);
- ExecType G (trade correction): a reversing fill (kind ``correction_reversal``)
  of the current version of the referenced trade, then the corrected fill (kind
  ``correction``) from the report's LastQty/LastPx;
- every report also gives an :class:`OrderEvent` (new, partially filled, filled,
  canceled, replaced, rejected, expired, ...) for open-order tracking.

Fills are deduplicated by ExecID across PossDup resends and restarts: the
:class:`ExecIdStore` records each trade's ExecID and economics, so a bust or
correction of a trade seen in an earlier run still reverses the right quantity
and price. Records are written once per TCP read, before the session persists
its next expected sequence number: after a crash the counterparty re-delivers
the last read's reports rather than any being skipped (at-least-once across a
crash; the journal and the position actors' ExecID check make it exactly once). A report the application cannot use
(missing LastQty on a trade, a bust of an unknown ExecID, an unknown ExecType)
is refused with a BusinessMessageReject and logged with its raw bytes; the
session keeps running. Knows nothing of margin.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Callable, Literal, Union

import msgspec
import numpy as np

from fix.application import BusinessReject, UnsupportedMessageType
from fix.parser import FixMessage
from fix.session import Session

log = logging.getLogger("riskd.fix.dropcopy")

FillKind = Literal["trade", "bust", "correction_reversal", "correction"]
ORDER_STATUS = {b"0": "new", b"1": "partially_filled", b"2": "filled", b"3": "done_for_day", b"4": "canceled",
                b"5": "replaced", b"6": "pending_cancel", b"7": "stopped", b"8": "rejected", b"9": "suspended",
                b"A": "pending_new", b"B": "calculated", b"C": "expired", b"D": "accepted_for_bidding",
                b"E": "pending_replace"}
#: Order statuses after which the order can no longer fill (its reservation is released).
TERMINAL_STATUSES = frozenset({"filled", "canceled", "rejected", "expired", "done_for_day"})
EXEC_TYPES = frozenset(b"0 3 4 5 6 7 8 9 A B C D E F G H I L".split())
#: Side (54) -> position direction: buy and buy minus buy; sell, sell plus, sell
#: short, sell short exempt, cross short and cross short exempt sell.
_SIDES = {b"1": 1, b"3": 1, b"2": -1, b"4": -1, b"5": -1, b"6": -1, b"9": -1, b"A": -1}


class Fill(msgspec.Struct, frozen=True, array_like=True):
    """A change of position from the drop copy.

    ``quantity``: signed contracts (buy > 0); a reversal carries the opposite sign
    of what it reverses. ``price``: per unit of the instrument. ``ref_exec_id``:
    the trade a bust or correction refers to. ``seq``: the FIX MsgSeqNum it came
    in. ``received_ns``: monotonic ns when its bytes were read off the socket, for
    the latency budget.
    ``transact_time``: the OMS's TransactTime (60) as sent. ``trade_date``:
    YYYYMMDD the ExecID is unique within (FIX only promises uniqueness per trading
    day): TradeDate (75), else the date of TransactTime, else of SendingTime.
    """

    exec_id: str
    kind: FillKind
    account: str
    symbol: str
    quantity: float
    price: float
    order_id: str
    cl_ord_id: str
    ref_exec_id: str
    transact_time: str
    seq: int
    poss_dup: bool
    received_ns: int
    trade_date: str = ""


class OrderEvent(msgspec.Struct, frozen=True, array_like=True):
    """An order's state from an ExecutionReport, for open-order tracking.

    ``status``: one of ORDER_STATUS's names. ``side``: +1 buy, -1 sell.
    ``order_qty``, ``leaves_qty``, ``cum_qty``: contracts (unsigned). ``price``:
    limit price per unit, 0 when absent. ``orig_cl_ord_id``: the order a replace
    or cancel refers to.
    """

    exec_id: str
    exec_type: str
    status: str
    account: str
    symbol: str
    side: int
    order_qty: float
    leaves_qty: float
    cum_qty: float
    price: float
    order_id: str
    cl_ord_id: str
    orig_cl_ord_id: str
    seq: int
    received_ns: int


DropCopyEvent = Union[Fill, OrderEvent]


class _TradeRecord(msgspec.Struct, array_like=True):
    exec_id: str
    account: str
    symbol: str
    quantity: float
    price: float
    order_id: str
    cl_ord_id: str


class ExecIdStore:
    """Processed ExecIDs and the current version of every trade, persisted.

    Keys are day-scoped (``YYYYMMDD<US>ExecID``, see :func:`scoped_exec_id`): FIX only
    promises an ExecID is unique within a trading day, so the same id on another
    day is a new execution, not a duplicate.

    An append-only file of msgpack records (length-prefixed), loaded at open
    (:meth:`load`); a torn record at the tail (crash mid-write) is dropped.
    ``path=None`` keeps everything in memory (tests). Memory: about 200 bytes per
    trade.

    The maps are as few as the questions need, because a restart loads a day of
    records (a million) into them before the session can log on: a plain trade is
    one entry in ``_current`` (its chain is its own key) and one in ``_latest``.
    """

    _LEN = 4
    FLUSH_BYTES = 1 << 16

    def __init__(self, path: str | Path | None = None) -> None:
        #: Chain (the key of the trade's first version) -> its current version, for every
        #: trade still standing (a version loaded in bulk stays msgpack until asked for).
        self._current: dict[str, _TradeRecord | msgspec.Raw] = {}
        #: Every seen key that is not a key of ``_current``: non-trade reports, busts,
        #: corrections, busted trades.
        self._seen_other: set[str] = set()
        #: A correction's key -> the chain it corrects (absent: a key is its own chain).
        self._chain_of: dict[str, str] = {}
        #: Plain ExecID -> its latest day-scoped key, for an ExecRefID from another day.
        self._latest: dict[str, str] = {}
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(tuple[str, str, _TradeRecord | None])
        self._fd: int | None = None
        self._pending = bytearray()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            self.load()

    def load(self) -> int:
        """Read the file into the maps (at open); returns the records read.

        In bulk: the record boundaries found with NumPy (:func:`_record_spans`), every
        record decoded by one msgspec call, runs of plain trades (no ExecRefID: the
        day's nearly every record) put into the maps with one ``update`` each, in file
        order, any other record applied in its place as :meth:`record` applies it.
        Measured on the recovery bench's store (1,000,000 trades, CPU s, a fresh process
        each, collector off, shared host): 3.1 record by record, 1.7-1.9 with runs of
        trades put one update per map but the records framed and decoded one by one,
        1.4-1.7 so. A torn record at the tail is dropped and truncated, with a warning."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        # 5 bytes ahead of the file's: room for the msgpack array header of the bulk decode.
        buffer = bytearray(5 + size)
        if size and os.preadv(self._fd, [memoryview(buffer)[5:]], 0) != size:
            raise OSError(f"ExecID store: short read of {size} bytes")
        data = np.frombuffer(buffer, np.uint8)[5:]
        offsets, end = _record_spans(data)
        if len(offsets) and bool(np.all(data[offsets + self._LEN] == 0x93)):
            self._load_bulk(buffer, data, offsets, end)
        else:  # a record that is not a 3-array (another writer's format): one by one
            for start, stop in zip(offsets.tolist(), [*offsets[1:].tolist(), end]):
                self._apply(*self._decoder.decode(buffer[5 + start + self._LEN:5 + stop]))
        if end != size:
            log.warning("ExecID store: torn record at offset %d dropped", end)
            os.ftruncate(self._fd, end)
        return len(offsets)

    def _load_bulk(self, buffer: bytearray, data: np.ndarray, offsets: np.ndarray, end: int) -> None:
        # Each record's 4-byte length and its fixarray(3) header become one fixarray(7)
        # header and four nils: the file is then one msgpack array of records.
        data[offsets] = 0x97
        for k in range(1, 5):
            data[offsets + k] = 0xC0
        buffer[:5] = b"\xdd" + len(offsets).to_bytes(4, "big")
        records = _LOADED.decode(memoryview(buffer)[:5 + end])
        keys = list(map(_KEY, records))
        trades = list(map(_TRADE_RAW, records))
        n = len(records)
        # Not a plain trade: an ExecRefID (bust, correction) or no trade (a nil, one byte).
        other = np.flatnonzero(np.fromiter(map(bool, map(_REF, records)), bool, n)
                               | (np.fromiter(map(len, trades), np.int64, n) == 1))
        start = 0
        for i in other.tolist():
            self._put_trades(keys[start:i], trades[start:i])
            trade = trades[i]
            self._apply(keys[i], records[i].ref, None if len(trade) == 1 else _TRADE.decode(trade))
            start = i + 1
        self._put_trades(keys[start:] if start else keys, trades[start:] if start else trades)

    def _put_trades(self, keys: list[str], trades: list[msgspec.Raw]) -> None:
        """``_apply(key, "", trade)`` for each, in order, one update per map."""
        if not keys:
            return
        if self._chain_of:  # a key recorded before as a correction is its own chain now
            for key in self._chain_of.keys() & keys:
                del self._chain_of[key]
        self._current.update(zip(keys, trades))
        plain = list(map(_AFTER, map(str.partition, keys, repeat(KEY_SEPARATOR))))
        if "" in plain:  # a key without a day (or an empty ExecID): the key itself
            plain = [p or k for p, k in zip(plain, keys)]
        self._latest.update(zip(plain, keys))

    def _apply(self, exec_id: str, ref: str, record: _TradeRecord | None) -> None:
        self._latest[exec_id.partition(KEY_SEPARATOR)[2] or exec_id] = exec_id
        chain = self._chain_of.get(ref, ref) if ref else exec_id
        if record is None:
            self._seen_other.add(exec_id)
            if ref and self._current.pop(chain, None) is not None:  # a bust ends the chain
                self._seen_other.add(chain)
            return
        if chain != exec_id:  # a correction
            self._chain_of[exec_id] = chain
            self._seen_other.add(exec_id)
        elif self._chain_of:
            self._chain_of.pop(exec_id, None)
        self._current[chain] = record

    def seen(self, exec_id: str) -> bool:
        """A day-scoped key seen; a plain ExecID: seen on any day."""
        if KEY_SEPARATOR in exec_id:
            return exec_id in self._current or exec_id in self._seen_other
        return exec_id in self._latest

    def current(self, exec_id: str) -> _TradeRecord | None:
        """The current version of the trade that ``exec_id`` names (original or correction);
        a plain ExecID means its latest day."""
        if KEY_SEPARATOR not in exec_id:
            exec_id = self._latest.get(exec_id, exec_id)
        trade = self._current.get(self._chain_of.get(exec_id, exec_id))
        if type(trade) is msgspec.Raw:
            return _TRADE.decode(trade)
        return trade  # type: ignore[return-value]

    def latest_key(self, plain_exec_id: str) -> str | None:
        """The day-scoped key under which a plain ExecID was last seen, if ever."""
        return self._latest.get(plain_exec_id)

    def record(self, exec_id: str, ref: str, trade: _TradeRecord | None) -> None:
        """Remember ``exec_id`` (and the trade it creates or corrects; None for a bust).

        Buffered: :meth:`flush` writes (the session calls it once per TCP read).
        """
        if self._fd is not None:
            body = self._encoder.encode((exec_id, ref, trade))
            self._pending += len(body).to_bytes(self._LEN, "little")
            self._pending += body
            if len(self._pending) >= self.FLUSH_BYTES:
                self.flush()
        self._apply(exec_id, ref, trade)

    def flush(self) -> None:
        """Write buffered records (to the page cache; no fsync)."""
        if self._fd is not None and self._pending:
            os.write(self._fd, self._pending)
            self._pending = bytearray()

    def close(self) -> None:
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None


class _LoadedRecord(msgspec.Struct, array_like=True):
    """A store record as :meth:`ExecIdStore._load_bulk` rewrites it: four nils, then the record."""

    n0: None
    n1: None
    n2: None
    n3: None
    exec_id: str
    ref: str
    trade: msgspec.Raw  # the trade left encoded (a nil: the one byte 0xc0)


_LOADED = msgspec.msgpack.Decoder(list[_LoadedRecord])
_TRADE = msgspec.msgpack.Decoder(_TradeRecord)
_KEY, _REF, _TRADE_RAW = attrgetter("exec_id"), attrgetter("ref"), attrgetter("trade")
_AFTER = itemgetter(2)


def _record_spans(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Start offsets of the complete records of an ExecID store file (``data``: its bytes)
    and where the last one ends (< len(data): a torn tail).

    A record is a 4-byte little-endian length and a msgpack body; the store's bodies
    are 3-arrays (0x93). Candidates: every 0x93 after two zero bytes (a length below
    65,536). The chain from offset 0 is followed a run at a time: while each
    candidate's record ends exactly where the next candidate starts, the run is the
    chain (checked in NumPy, not a Python step per record); where it does not (a
    0x93 inside a record, a longer record, the tail), one step by the length prefix,
    as the reader of the file always did, until the chain is on a candidate again."""
    n = len(data)
    hits = np.flatnonzero(data[4:] == 0x93) if n > 4 else np.zeros(0, np.int64)
    cand = hits[(data[hits + 2] == 0) & (data[hits + 3] == 0)]
    ends = cand + 4 + data[cand].astype(np.int64) + (data[cand + 1].astype(np.int64) << 8)
    # Where a run breaks: candidate i's record does not end at candidate i + 1.
    breaks = np.flatnonzero(ends[:-1] != cand[1:])
    runs: list[np.ndarray] = []
    offset = 0
    while offset + 4 <= n:
        i = int(np.searchsorted(cand, offset))
        if i < len(cand) and cand[i] == offset:
            b = int(np.searchsorted(breaks, i))
            last = int(breaks[b]) if b < len(breaks) else len(cand) - 1
            stop = int(ends[last])
            if stop > n:  # the run's last record is torn
                last -= 1
                runs.append(cand[i:last + 1])
                offset = int(cand[last + 1])
                break
            runs.append(cand[i:last + 1])
            offset = stop
            continue
        stop = offset + 4 + int.from_bytes(data[offset:offset + 4].tobytes(), "little")
        if stop > n:
            break
        runs.append(np.array([offset], np.int64))
        offset = stop
    return (np.concatenate(runs) if runs else np.zeros(0, np.int64)), offset


def trade_date(message: FixMessage) -> str:
    """The trading day (YYYYMMDD) an ExecID is unique within: TradeDate (75), else the
    date of TransactTime (60), else of SendingTime (52)."""
    for tag in (75, 60, 52):
        value = message.get(tag)
        if value and len(value) >= 8 and value[:8].isdigit():
            return value[:8].decode()
    return ""


#: Between the day and the ExecID in a dedupe key: a control character no ExecID carries.
KEY_SEPARATOR = "\x1f"


def scoped_exec_id(day: str, exec_id: str) -> str:
    """The dedupe key of an ExecID on a trading day."""
    return f"{day}{KEY_SEPARATOR}{exec_id}"


def _required(message: FixMessage, tag: int) -> bytes:
    value = message.get(tag)
    if not value:
        raise BusinessReject(5, f"Conditionally required field missing: tag {tag}", tag)
    return value


def _float(message: FixMessage, tag: int, default: float | None = None) -> float:
    value = message.get(tag)
    if value is None:
        if default is None:
            raise BusinessReject(5, f"Conditionally required field missing: tag {tag}", tag)
        return default
    try:
        return float(value)
    except ValueError:
        raise BusinessReject(0, f"Incorrect value for tag {tag}: {value!r}", tag) from None


class DropCopyApplication:
    """A FIX Application that turns a drop copy into :data:`DropCopyEvent` callbacks.

    ``on_event`` is called on the session's thread, in sequence order; it must
    not block for long (the ingest actor hands events to its ZeroMQ socket).
    """

    def __init__(self, on_event: Callable[[DropCopyEvent], None], exec_ids: ExecIdStore | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.on_event = on_event
        self.exec_ids = exec_ids if exec_ids is not None else ExecIdStore()
        self._clock_ns = clock_ns
        self.duplicates = 0
        self.rejected = 0
        #: Added to MsgSeqNum to give the events' ``seq`` (the drop-copy position): it moves
        #: up to the highest position so far when the sequence restarts (Logon 141=Y), so
        #: positions never go back (fix.journaled_app.JournaledApplication sets it from the journal).
        self.seq_offset = 0
        self.max_position = 0

    def on_logon(self, session: Session) -> None:
        log.info("drop copy %s logged on", session.settings.session_key)

    def on_logout(self, session: Session) -> None:
        log.info("drop copy %s logged out", session.settings.session_key)

    def from_admin(self, message: FixMessage, session: Session) -> None:
        if message.msg_type == b"A" and message.get(141) == b"Y" and self.max_position:
            self.seq_offset = max(self.seq_offset, self.max_position)
            log.warning("drop copy sequence reset (Logon 141=Y): positions go on from %d", self.seq_offset)

    def flush(self) -> None:
        """Called by the session at the end of each TCP read: persist the ExecIDs seen."""
        self.exec_ids.flush()

    def from_app(self, message: FixMessage, session: Session) -> None:
        if message.msg_type != b"8":
            raise UnsupportedMessageType()
        received = getattr(session, "read_ns", 0) or self._clock_ns()
        try:
            self._execution_report(message, received)
        except BusinessReject:
            self.rejected += 1
            log.warning("drop copy report refused: %r", message.raw)
            raise
        except (AttributeError, TypeError, ValueError) as exc:  # a field the dictionary should have caught
            self.rejected += 1
            log.warning("drop copy report malformed (%s): %r", exc, message.raw)
            raise BusinessReject(0, f"Malformed ExecutionReport: {exc}") from None

    def _execution_report(self, message: FixMessage, received: int) -> None:
        # The session validated the report against the FIX 4.4 dictionary, so the
        # required fields (17, 150, 39, 54, 37, 151, 14, 6) are present and well
        # formed; only conditionally required ones are checked here.
        get = message.get
        exec_id = get(17).decode()
        exec_type = get(150)
        if exec_type not in EXEC_TYPES:
            raise BusinessReject(0, f"Unknown ExecType {exec_type!r}", 150)
        day = trade_date(message)
        key = scoped_exec_id(day, exec_id)
        if self.exec_ids.seen(key):
            self.duplicates += 1
            log.info("drop copy duplicate ExecID %s (PossDup=%s) ignored", exec_id, message.get_str(43))
            return
        seq = self.seq_offset + int(get(34) or 0)
        if seq > self.max_position:
            self.max_position = seq
        poss_dup = get(43) == b"Y" or get(97) == b"Y"
        side = _SIDES.get(get(54))
        if side is None:  # undisclosed, cross, as-defined...: never guess a direction
            raise BusinessReject(5, f"Side {get(54)!r} has no position direction", 54)
        account = (get(1) or b"").decode()
        symbol = _required(message, 55).decode()
        order_id = get(37).decode()
        cl_ord_id = (get(11) or b"").decode()
        events: list[DropCopyEvent] = []
        record: tuple[str, str, _TradeRecord | None] = (key, "", None)
        if exec_type in (b"F", b"G", b"H"):
            fills, record = self._fills(message, exec_id, key, day, exec_type, side, account, symbol, order_id,
                                        cl_ord_id, seq, poss_dup, received)
            events += fills
        events.append(OrderEvent(exec_id, exec_type.decode(), ORDER_STATUS.get(get(39), "unknown"), account, symbol,
                                 side, float(get(38) or 0.0), float(get(151)), float(get(14)),
                                 float(get(44) or 0.0), order_id, cl_ord_id, (get(41) or b"").decode(), seq,
                                 received))
        # Publish first, remember second: if publishing fails the report is not
        # marked seen, so a re-delivery can still bring it (never at-most-once).
        for event in events:
            self.on_event(event)
        self.exec_ids.record(*record)

    def _fills(self, message: FixMessage, exec_id: str, key: str, day: str, exec_type: bytes, side: int,
               account: str, symbol: str, order_id: str, cl_ord_id: str, seq: int, poss_dup: bool, received: int
               ) -> tuple[list[Fill], tuple[str, str, _TradeRecord | None]]:
        """The fill events of a trade, bust or correction, and the ExecID record to keep."""
        transact = (message.get(60) or b"").decode()
        if exec_type == b"F":
            qty, px = _float(message, 32), _float(message, 31)
            trade = _TradeRecord(exec_id, account, symbol, side * qty, px, order_id, cl_ord_id)
            return ([Fill(exec_id, "trade", account, symbol, side * qty, px, order_id, cl_ord_id, "", transact, seq,
                          poss_dup, received, day)], (key, "", trade))
        ref = _required(message, 19).decode()
        # The referenced trade is usually of the same day; a correction can come later.
        ref_key = scoped_exec_id(day, ref)
        current = self.exec_ids.current(ref_key)
        if current is None:
            ref_key = self.exec_ids.latest_key(ref) or ref_key
            current = self.exec_ids.current(ref_key)
        if current is None:
            raise BusinessReject(1, f"ExecRefID {ref} names no trade that is still standing", 19)
        reverse = Fill(exec_id, "bust" if exec_type == b"H" else "correction_reversal", current.account,
                       current.symbol, -current.quantity, current.price, current.order_id, current.cl_ord_id, ref,
                       transact, seq, poss_dup, received, day)
        if exec_type == b"H":
            return [reverse], (key, ref_key, None)
        qty, px = _float(message, 32), _float(message, 31)
        corrected = _TradeRecord(exec_id, account, symbol, side * qty, px, order_id, cl_ord_id)
        return ([reverse, Fill(exec_id, "correction", account, symbol, side * qty, px, order_id, cl_ord_id, ref,
                               transact, seq, poss_dup, received, day)], (key, ref_key, corrected))
