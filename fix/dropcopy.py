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
from typing import Callable, Literal, Union

import msgspec

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

    An append-only file of msgpack records (length-prefixed), replayed at open;
    a torn record at the tail (crash mid-write) is dropped. ``path=None`` keeps
    everything in memory (tests). Memory: about 200 bytes per trade.
    """

    _LEN = 4
    FLUSH_BYTES = 1 << 16

    def __init__(self, path: str | Path | None = None) -> None:
        self._seen: set[str] = set()
        #: Any ExecID of a trade (original or correction) -> the ExecID that opened its chain.
        self._chain_of: dict[str, str] = {}
        #: Chain -> the trade's current version (absent once busted).
        self._current: dict[str, _TradeRecord] = {}
        #: Plain ExecID -> its latest day-scoped key, for an ExecRefID from another day.
        self._latest: dict[str, str] = {}
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(tuple[str, str, _TradeRecord | None])
        self._fd: int | None = None
        self._pending = bytearray()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            self._replay()

    def _replay(self) -> None:
        assert self._fd is not None
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        offset = 0
        while offset + self._LEN <= len(data):
            size = int.from_bytes(data[offset:offset + self._LEN], "little")
            if offset + self._LEN + size > len(data):
                break
            exec_id, ref, record = self._decoder.decode(data[offset + self._LEN:offset + self._LEN + size])
            self._apply(exec_id, ref, record)
            offset += self._LEN + size
        if offset != len(data):
            log.warning("ExecID store: torn record at offset %d dropped", offset)
            os.ftruncate(self._fd, offset)

    def _apply(self, exec_id: str, ref: str, record: _TradeRecord | None) -> None:
        self._seen.add(exec_id)
        self._latest[exec_id.partition(KEY_SEPARATOR)[2] or exec_id] = exec_id
        chain = self._chain_of.get(ref, ref) if ref else exec_id
        if record is None:
            if ref:  # a bust ends the chain; a non-trade report (ref "") only marks the ExecID seen
                self._current.pop(chain, None)
            return
        self._chain_of[exec_id] = chain
        self._current[chain] = record

    def seen(self, exec_id: str) -> bool:
        """A day-scoped key seen; a plain ExecID: seen on any day."""
        if KEY_SEPARATOR in exec_id:
            return exec_id in self._seen
        return exec_id in self._latest

    def current(self, exec_id: str) -> _TradeRecord | None:
        """The current version of the trade that ``exec_id`` names (original or correction);
        a plain ExecID means its latest day."""
        if KEY_SEPARATOR not in exec_id:
            exec_id = self._latest.get(exec_id, exec_id)
        return self._current.get(self._chain_of.get(exec_id, exec_id))

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

    def on_logon(self, session: Session) -> None:
        log.info("drop copy %s logged on", session.settings.session_key)

    def on_logout(self, session: Session) -> None:
        log.info("drop copy %s logged out", session.settings.session_key)

    def from_admin(self, message: FixMessage, session: Session) -> None:
        pass

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
        seq = int(get(34) or 0)
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
