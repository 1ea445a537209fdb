"""Unit tests of the drop-copy application (fix/dropcopy.py), without sockets.

Messages are built with simplefix (the oracle) and parsed by riskd's fast parser;
``DropCopyApplication.from_app`` is called directly, as the session does after
its own checks. One test wires the application into a Session fed frames by hand
to see the BusinessMessageRejects on the wire.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import simplefix

from fix.application import BusinessReject, UnsupportedMessageType
from fix.dropcopy import DropCopyApplication, ExecIdStore, Fill, OrderEvent
from fix.parser import FixMessage, parse
from fix.session import Session
from fix.store import MemoryStore
from tests.fix_sim import OMS, RISKD, settings, transact_time

FAKE_SESSION: Any = SimpleNamespace(settings=settings(RISKD, OMS, "initiator", SocketConnectPort=9))
T60 = "20261120-14:30:00.125"


def message(msg_type: str = "8", seq: int = 1, body: list[tuple[int, Any]] = (), *, poss_dup: bool = False,
            poss_resend: bool = False) -> FixMessage:
    m = simplefix.FixMessage()
    m.append_pair(8, "FIX.4.4", header=True)
    m.append_pair(35, msg_type, header=True)
    m.append_pair(34, seq, header=True)
    if poss_dup:
        m.append_pair(43, "Y", header=True)
    m.append_pair(49, OMS, header=True)
    m.append_pair(52, transact_time(), header=True)
    m.append_pair(56, RISKD, header=True)
    if poss_resend:
        m.append_pair(97, "Y", header=True)
    if poss_dup:
        m.append_pair(122, transact_time(time.time() - 5), header=True)
    for tag, value in body:
        m.append_pair(tag, value)
    return parse(m.encode())


def report(exec_id: str, exec_type: str = "F", status: str = "1", *, seq: int = 1, side: str = "1",
           account: str = "ACC-1", symbol: str = "ESZ6", order_id: str = "O1", cl_ord_id: str = "C1",
           order_qty: float | None = 10, price: float | None = 4500.25, last_qty: float | None = None,
           last_px: float | None = None, leaves: float = 0, cum: float = 0, avg_px: float = 0,
           ref: str | None = None, orig_cl_ord_id: str | None = None, **flags: bool) -> FixMessage:
    """An ExecutionReport with the FIX 4.4 required fields (37 17 150 39 55 54 151 14 6) and the usual ones."""
    body: list[tuple[int, Any]] = [(37, order_id), (11, cl_ord_id)]
    if orig_cl_ord_id is not None:
        body.append((41, orig_cl_ord_id))
    body.append((17, exec_id))
    if ref is not None:
        body.append((19, ref))
    body += [(150, exec_type), (39, status), (1, account), (55, symbol), (54, side)]
    if order_qty is not None:
        body.append((38, order_qty))
    body.append((40, "2"))
    if price is not None:
        body.append((44, price))
    if last_qty is not None:
        body.append((32, last_qty))
    if last_px is not None:
        body.append((31, last_px))
    body += [(151, leaves), (14, cum), (6, avg_px), (60, T60)]
    return message("8", seq, body, **flags)


def trade(exec_id: str, qty: float, px: float, **kw: Any) -> FixMessage:
    return report(exec_id, "F", kw.pop("status", "1"), last_qty=qty, last_px=px, **kw)


def bust(exec_id: str, ref: str, **kw: Any) -> FixMessage:
    return report(exec_id, "H", kw.pop("status", "1"), ref=ref, last_qty=kw.pop("last_qty", 1),
                  last_px=kw.pop("last_px", 1.0), **kw)


def correction(exec_id: str, ref: str, qty: float, px: float, **kw: Any) -> FixMessage:
    return report(exec_id, "G", kw.pop("status", "1"), ref=ref, last_qty=qty, last_px=px, **kw)


class Recorder:
    def __init__(self, exec_ids: ExecIdStore | None = None) -> None:
        self.events: list[Fill | OrderEvent] = []
        self.app = DropCopyApplication(self.events.append, exec_ids, clock_ns=lambda: 42)

    def feed(self, msg: FixMessage) -> list[Fill | OrderEvent]:
        before = len(self.events)
        self.app.from_app(msg, FAKE_SESSION)
        return self.events[before:]

    @property
    def fills(self) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill)]


def _econ(fill: Fill) -> tuple:
    return (fill.kind, fill.exec_id, fill.ref_exec_id, fill.account, fill.symbol, fill.quantity, fill.price)


# --------------------------------------------------------------------------- trades
@pytest.mark.parametrize("side, sign", [("1", 1), ("2", -1), ("5", -1), ("3", 1)])
def test_trade_is_a_fill_signed_by_side(side: str, sign: int) -> None:
    r = Recorder()
    events = r.feed(trade("E1", 3, 4500.5, side=side, seq=17, leaves=7, cum=3, avg_px=4500.5))
    assert [type(e) for e in events] == [Fill, OrderEvent], "the fill comes before the order event"
    fill = events[0]
    assert fill == Fill("E1", "trade", "ACC-1", "ESZ6", sign * 3.0, 4500.5, "O1", "C1", "", T60, 17, False, 42,
                        T60[:8])  # the trading day the ExecID is unique within
    assert events[1].status == "partially_filled" and events[1].side == sign


def test_poss_dup_and_poss_resend_flags_are_carried() -> None:
    r = Recorder()
    assert r.feed(trade("E1", 1, 10.0, poss_dup=True))[0].poss_dup
    assert r.feed(trade("E2", 1, 10.0, poss_resend=True))[0].poss_dup
    assert not r.feed(trade("E3", 1, 10.0))[0].poss_dup


# --------------------------------------------------------------------------- busts and corrections
def test_bust_reverses_the_trade() -> None:
    r = Recorder()
    r.feed(trade("T1", 10, 100.0, side="2"))
    events = r.feed(bust("B1", "T1", side="2", last_qty=10, last_px=100.0))
    assert [type(e) for e in events] == [Fill, OrderEvent]
    assert _econ(events[0]) == ("bust", "B1", "T1", "ACC-1", "ESZ6", 10.0, 100.0)
    assert sum(f.quantity for f in r.fills) == 0


def test_correction_reverses_then_corrects() -> None:
    r = Recorder()
    r.feed(trade("T1", 10, 100.0))
    events = r.feed(correction("C1", "T1", 8, 101.0))
    assert [_econ(e) for e in events[:2]] == [("correction_reversal", "C1", "T1", "ACC-1", "ESZ6", -10.0, 100.0),
                                              ("correction", "C1", "T1", "ACC-1", "ESZ6", 8.0, 101.0)]
    assert isinstance(events[2], OrderEvent)
    assert sum(f.quantity for f in r.fills) == 8


@pytest.mark.parametrize("ref", ["T1", "C1"], ids=["ref-original", "ref-correction"])
def test_bust_after_correction_reverses_the_current_version(ref: str) -> None:
    r = Recorder()
    r.feed(trade("T1", 10, 100.0))
    r.feed(correction("C1", "T1", 8, 101.0))
    events = r.feed(bust("B1", ref))
    assert _econ(events[0]) == ("bust", "B1", ref, "ACC-1", "ESZ6", -8.0, 101.0)
    assert sum(f.quantity for f in r.fills) == 0


@pytest.mark.parametrize("ref", ["T1", "C1"], ids=["ref-original", "ref-correction"])
def test_correction_of_a_correction(ref: str) -> None:
    r = Recorder()
    r.feed(trade("T1", 10, 100.0, side="2"))
    r.feed(correction("C1", "T1", 8, 101.0, side="2"))
    events = r.feed(correction("C2", ref, 6, 99.5, side="2"))
    assert [_econ(e) for e in events[:2]] == [("correction_reversal", "C2", ref, "ACC-1", "ESZ6", 8.0, 101.0),
                                              ("correction", "C2", ref, "ACC-1", "ESZ6", -6.0, 99.5)]
    assert sum(f.quantity for f in r.fills) == -6
    # and a bust then takes out the latest version
    assert _econ(r.feed(bust("B1", "C2"))[0]) == ("bust", "B1", "C2", "ACC-1", "ESZ6", 6.0, 99.5)


@pytest.mark.parametrize("make", [lambda: bust("B9", "NOPE"), lambda: correction("C9", "NOPE", 1, 1.0)],
                         ids=["bust", "correction"])
def test_bust_or_correction_of_unknown_exec_id_is_business_rejected(make) -> None:
    r = Recorder()
    r.feed(trade("T1", 10, 100.0))
    before = list(r.events)
    with pytest.raises(BusinessReject) as err:
        r.feed(make())
    assert err.value.reason == 1 and err.value.ref_tag == 19
    assert r.events == before and r.app.rejected == 1
    assert not r.app.exec_ids.seen("B9") and not r.app.exec_ids.seen("C9")


def test_bust_of_a_busted_trade_is_business_rejected() -> None:
    r = Recorder()
    r.feed(trade("T1", 10, 100.0))
    r.feed(bust("B1", "T1"))
    with pytest.raises(BusinessReject) as err:
        r.feed(bust("B2", "T1"))
    assert err.value.reason == 1
    assert sum(f.quantity for f in r.fills) == 0


@pytest.mark.parametrize("missing, tag", [("last_qty", 32), ("last_px", 31)])
def test_trade_without_last_qty_or_px_is_business_rejected(missing: str, tag: int) -> None:
    r = Recorder()
    kw = {"last_qty": 5, "last_px": 100.0, missing: None}
    with pytest.raises(BusinessReject) as err:
        r.feed(report("T1", "F", "1", **kw))
    assert err.value.reason == 5 and err.value.ref_tag == tag
    assert r.events == []
    # not remembered: the corrected report under the same ExecID is still processed
    assert not r.app.exec_ids.seen("T1")
    assert len(r.feed(trade("T1", 5, 100.0))) == 2


def test_unknown_exec_type_is_business_rejected() -> None:
    r = Recorder()
    with pytest.raises(BusinessReject) as err:
        r.feed(report("X1", "Z", "0"))
    assert err.value.reason == 0 and err.value.ref_tag == 150
    assert r.events == []


@pytest.mark.parametrize("msg_type", ["D", "9", "AE", "j"])
def test_non_execution_report_is_unsupported(msg_type: str) -> None:
    r = Recorder()
    with pytest.raises(UnsupportedMessageType):
        r.feed(message(msg_type, 1, [(11, "C1"), (55, "ESZ6"), (54, "1")]))
    assert r.events == []


# --------------------------------------------------------------------------- dedupe
def test_duplicate_exec_id_is_ignored_including_possdup_resends() -> None:
    r = Recorder()
    r.feed(report("N1", "0", "0", leaves=10))
    r.feed(trade("T1", 4, 100.0, leaves=6, cum=4))
    r.feed(correction("C1", "T1", 3, 100.0))
    r.feed(bust("B1", "C1"))
    delivered = list(r.events)
    for msg in (report("N1", "0", "0", leaves=10, seq=9, poss_dup=True), trade("T1", 4, 100.0, seq=10),
                trade("T1", 4, 100.0, seq=11, poss_resend=True), correction("C1", "T1", 3, 100.0, poss_dup=True),
                bust("B1", "C1", poss_resend=True)):
        assert r.feed(msg) == []
    assert r.events == delivered and r.app.duplicates == 5


def test_dedupe_and_trade_economics_survive_an_exec_id_store_reopen(tmp_path: Path) -> None:
    path = tmp_path / "dc" / "execids.bin"
    r1 = Recorder(ExecIdStore(path))
    r1.feed(report("N1", "0", "0", leaves=10))
    r1.feed(trade("T1", 10, 100.0, side="2"))
    r1.feed(correction("C1", "T1", 7, 100.5, side="2"))
    r1.feed(trade("T2", 2, 99.0))
    r1.app.exec_ids.close()

    r2 = Recorder(ExecIdStore(path))
    for msg in (report("N1", "0", "0", poss_dup=True), trade("T1", 10, 100.0, side="2", poss_dup=True),
                correction("C1", "T1", 7, 100.5, side="2", poss_resend=True), trade("T2", 2, 99.0)):
        assert r2.feed(msg) == []
    assert r2.app.duplicates == 4
    # the current version of T1 (the correction) was persisted with its economics
    assert _econ(r2.feed(bust("B1", "T1", side="2"))[0]) == ("bust", "B1", "T1", "ACC-1", "ESZ6", 7.0, 100.5)
    assert _econ(r2.feed(correction("C2", "T2", 1, 98.0))[0]) == \
        ("correction_reversal", "C2", "T2", "ACC-1", "ESZ6", -2.0, 99.0)
    r2.app.exec_ids.close()

    r3 = Recorder(ExecIdStore(path))
    assert r3.feed(bust("B1", "T1", side="2")) == []
    with pytest.raises(BusinessReject):  # T1's chain was busted before the reopen
        r3.feed(bust("B2", "C1", side="2"))
    r3.app.exec_ids.close()


def test_torn_record_at_the_store_tail_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "execids.bin"
    r1 = Recorder(ExecIdStore(path))
    r1.feed(trade("T1", 10, 100.0))
    r1.feed(trade("T2", 5, 101.0))
    r1.app.exec_ids.close()
    whole = path.stat().st_size
    r1b = Recorder(ExecIdStore(path))
    r1b.feed(trade("T3", 1, 102.0))
    r1b.app.exec_ids.close()
    with_t3 = path.stat().st_size
    # a crash in the middle of writing T3's record: its tail is missing
    os.truncate(path, with_t3 - 3)

    r2 = Recorder(ExecIdStore(path))
    assert path.stat().st_size == whole, "the torn record is cut off at open"
    assert r2.app.exec_ids.seen("T1") and r2.app.exec_ids.seen("T2")
    assert not r2.app.exec_ids.seen("T3")
    assert [_econ(e) for e in r2.feed(trade("T3", 1, 102.0)) if isinstance(e, Fill)] == \
        [("trade", "T3", "", "ACC-1", "ESZ6", 1.0, 102.0)], "T3 is delivered again after the torn write"
    r2.app.exec_ids.close()

    # garbage after a valid prefix (a length that runs past the end) is dropped too
    with open(path, "ab") as f:
        f.write((1000).to_bytes(4, "little") + b"\x93\xa2T4")
    r3 = Recorder(ExecIdStore(path))
    assert r3.app.exec_ids.seen("T3") and not r3.app.exec_ids.seen("T4")
    assert r3.feed(trade("T4", 1, 1.0))  # appended after the cut, readable next time
    r3.app.exec_ids.close()
    r4 = Recorder(ExecIdStore(path))
    assert all(r4.app.exec_ids.seen(x) for x in ("T1", "T2", "T3", "T4"))
    r4.app.exec_ids.close()


# --------------------------------------------------------------------------- order events
@pytest.mark.parametrize(
    "exec_type, status, name, fields",
    [
        ("0", "0", "new", dict(leaves=10, cum=0)),
        ("F", "1", "partially_filled", dict(last_qty=4, last_px=4500.0, leaves=6, cum=4, avg_px=4500.0)),
        ("F", "2", "filled", dict(last_qty=6, last_px=4500.25, leaves=0, cum=10, avg_px=4500.15)),
        ("4", "4", "canceled", dict(leaves=0, cum=4)),
        ("5", "5", "replaced", dict(leaves=12, cum=0, order_qty=12, orig_cl_ord_id="C0")),
        ("8", "8", "rejected", dict(leaves=0, cum=0)),
        ("C", "C", "expired", dict(leaves=0, cum=3)),
    ],
)
def test_order_event_statuses(exec_type: str, status: str, name: str, fields: dict) -> None:
    r = Recorder()
    fields = dict(fields)
    order_qty = fields.pop("order_qty", 10)
    orig = fields.pop("orig_cl_ord_id", None)
    events = r.feed(report(f"X-{name}", exec_type, status, side="2", seq=5, order_qty=order_qty,
                           orig_cl_ord_id=orig, **fields))
    event = events[-1]
    assert isinstance(event, OrderEvent)
    assert event == OrderEvent(f"X-{name}", exec_type, name, "ACC-1", "ESZ6", -1, float(order_qty),
                               float(fields["leaves"]), float(fields["cum"]), 4500.25, "O1", "C1", orig or "", 5, 42)
    assert len(events) == (2 if exec_type == "F" else 1)


def test_order_event_without_order_qty_or_price() -> None:
    r = Recorder()
    (event,) = r.feed(report("X1", "0", "0", order_qty=None, price=None, leaves=5))
    assert (event.order_qty, event.price, event.leaves_qty, event.cum_qty) == (0.0, 0.0, 5.0, 0.0)


# --------------------------------------------------------------------------- wired into a session
def test_business_rejects_on_the_wire_and_the_session_keeps_running() -> None:
    """Bust of an unknown ExecID -> 35=j 380=1 371=19; no LastQty -> 380=5 371=32; an order -> 380=3."""
    written: list[bytes] = []
    r = Recorder()
    session = Session(settings(RISKD, OMS, "initiator", SocketConnectPort=9), MemoryStore(), r.app)
    session.connection_made(written.append, lambda: None)
    logon = message("A", 1, [(98, 0), (108, 30)])
    session.on_frame(logon.raw)
    assert session.logged_on
    session.on_frame(trade("T1", 2, 100.0, seq=2).raw)
    session.on_frame(bust("B9", "NOPE", seq=3).raw)
    session.on_frame(report("T2", "F", "1", last_px=100.0, seq=4).raw)
    session.on_frame(message("D", 5, [(11, "C1"), (1, "A"), (55, "ESZ6"), (54, "1"), (60, T60), (38, 1),
                                      (40, "1")]).raw)
    session.on_frame(trade("T3", 1, 100.0, seq=6).raw)
    rejects = [parse(raw) for raw in written if parse(raw).msg_type == b"j"]
    assert [(m.get(45), m.get(380), m.get(371), m.get(372)) for m in rejects] == [
        (b"3", b"1", b"19", b"8"), (b"4", b"5", b"32", b"8"), (b"5", b"3", None, b"D")]
    assert [f.exec_id for f in r.fills] == ["T1", "T3"]
    assert session.store.next_target_seq == 7
