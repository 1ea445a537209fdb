"""Liquidation orders written on the execution socket by the deciding thread (actors.liquidation_wire).

Against a real FIX venue on loopback (daemon.liquidation_venue): orders sent from
another thread while the FIX thread itself sends (heartbeats) all arrive, once,
in sequence-number order, none as a resend; when the socket takes only part of a
message (or nothing), the rest goes through the FIX thread and still arrives
whole and in order. The outbound builder used on that path is checked byte for
byte against simplefix, its reference.
"""

from __future__ import annotations

import os
import threading

import pytest
import simplefix
from hypothesis import given, settings
from hypothesis import strategies as st

import actors.liquidation_wire as wire
from actors.liquidation_orders import ExecutionLink
from daemon.liquidation_venue import ExecutionVenue
from fix.order_entry import NewOrder
from fix.outbound import build
from fix.parser import FixMessage
from tests.fix_sim import wait_for


def simplefix_build(msg_type, header, body, begin_string=b"FIX.4.4") -> bytes:
    message = simplefix.FixMessage()
    message.append_pair(8, begin_string, header=True)
    message.append_pair(35, msg_type, header=True)
    for tag, value in sorted(header, key=lambda field: field[0]):
        message.append_pair(tag, value, header=True)
    for tag, value in body:
        message.append_pair(tag, value)
    return message.encode()


_values = st.one_of(st.none(), st.binary(max_size=12).filter(lambda b: b"\x01" not in b),
                    st.text(max_size=8).filter(lambda t: "\x01" not in t), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False, width=64))
_tags = st.sampled_from([1, 8, 9, 10, 11, 34, 35, 38, 43, 44, 49, 52, 55, 56, 58, 122, 9999])


@settings(max_examples=300, deadline=None)
@given(msg_type=st.sampled_from([b"D", b"8", "0", b"A"]), header=st.lists(st.tuples(_tags, _values), max_size=6),
       body=st.lists(st.tuples(_tags, _values), max_size=10))
def test_build_is_simplefix_byte_for_byte(msg_type, header, body) -> None:
    try:
        expected = simplefix_build(msg_type, header, body)
    except ValueError as exc:  # an empty BeginString: refused by both
        with pytest.raises(ValueError, match=str(exc)):
            build(msg_type, header, body)
        return
    assert build(msg_type, header, body) == expected


class Recorder:
    """What the venue's application saw: (MsgSeqNum, PossDupFlag, ClOrdID) of every order."""

    def __init__(self, venue: ExecutionVenue) -> None:
        self.orders: list[tuple[int, bool, str]] = []
        inner = venue.from_app

        def from_app(message: FixMessage, session) -> None:
            self.orders.append((int(message.get(34)), message.get(43) == b"Y", message.get(11).decode()))
            inner(message, session)
        venue.from_app = from_app  # type: ignore[method-assign]


def order(i: int) -> NewOrder:
    return NewOrder(cl_ord_id=f"LIQ-W-1-{i}", account="W", symbol="ESZ6", side="sell" if i % 2 else "buy",
                    quantity=float(1 + i % 3), order_type="limit", price=6900.25, time_in_force="ioc")


@pytest.fixture
def link(tmp_path):
    venue = ExecutionVenue(hold=True)
    recorder = Recorder(venue)
    written: dict[str, int] = {}
    link = ExecutionLink(venue.client_settings(str(tmp_path / "fix")), tmp_path, lambda *a: None,
                         on_written=lambda cl_ord_id, ns: written.__setitem__(cl_ord_id, ns))
    wait_for(lambda: link.logged_on, 10.0, message="execution logon")
    yield link, venue, recorder, written
    link.stop()
    venue.stop()


def _send_with_fix_thread_busy(link: ExecutionLink, n: int) -> None:
    """``n`` orders from a thread of ours while the FIX thread sends heartbeats of its own."""
    stop = threading.Event()

    def heartbeats() -> None:
        while not stop.is_set():
            link.engine.call(lambda: link.session.send(b"0", []))
            stop.wait(0.0005)
    beats = threading.Thread(target=heartbeats)
    beats.start()
    try:
        senders = [threading.Thread(target=lambda k=k: [link.send(order(i)) for i in range(k, n, 2)])
                   for k in (0, 1)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
    finally:
        stop.set()
        beats.join()


def _check_delivered(link: ExecutionLink, venue: ExecutionVenue, recorder: Recorder, n: int) -> None:
    wait_for(lambda: len(recorder.orders) >= n, 10.0, message=lambda: f"{len(recorder.orders)} of {n} orders")
    wait_for(lambda: venue.session.store.next_target_seq == link.session.store.next_sender_seq, 10.0,
             message="every message the link numbered reached the venue")
    seqs = [seq for seq, _, _ in recorder.orders]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert not any(possdup for _, possdup, _ in recorder.orders)  # none came as a resend of a gap
    assert sorted(cl for _, _, cl in recorder.orders) == sorted(order(i).cl_ord_id for i in range(n))


def test_orders_from_other_threads_arrive_once_and_in_sequence(link) -> None:
    link, venue, recorder, written = link
    _send_with_fix_thread_busy(link, 400)
    _check_delivered(link, venue, recorder, 400)
    assert link.session.writer is not None and link.session.writer.direct >= 400
    assert set(written) == {order(i).cl_ord_id for i in range(400)}


def test_a_socket_that_takes_part_of_a_message_hands_the_rest_to_the_fix_thread(link, monkeypatch) -> None:
    link, venue, recorder, written = link
    real_write = os.write
    calls = [0]

    def stingy_write(fd: int, data: bytes) -> int:
        calls[0] += 1
        if calls[0] % 5 == 0:
            raise BlockingIOError
        if calls[0] % 3 == 0:
            return real_write(fd, data[:7])  # part of a message
        return real_write(fd, data)

    monkeypatch.setattr(wire.os, "write", stingy_write)
    _send_with_fix_thread_busy(link, 120)
    monkeypatch.setattr(wire.os, "write", real_write)
    _check_delivered(link, venue, recorder, 120)
    assert link.session.writer is not None and link.session.writer.handed_off > 0
    wait_for(lambda: len(written) == 120, 5.0, message="every order stamped once written")
