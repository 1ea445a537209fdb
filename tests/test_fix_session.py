"""Session-layer behaviours over real sockets that the QuickFIX acceptance scripts
(tests/test_fix_conformance.py) do not cover: persisted sequence numbers across
restarts, the initiator's reconnect backoff, an order stored while disconnected
and delivered by resend, NewOrderSingle fields on the wire, Logons with wrong
CompIDs, the loopback default, and the TestRequest / timeout of a silent peer.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import simplefix

from fix.application import UnsupportedMessageType
from fix.engine import FixEngine
from fix.framing import FixFramer
from fix.order_entry import NewOrder, OrderEntryClient
from fix.parser import FixMessage, parse
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import FileStore, MemoryStore, open_store
from tests.fix_sim import run_on, settings, transact_time, wait_for

VENUE, RISKD = "VENUE", "RISKD"


class RecordingApp:
    """Records every admin and business message; business messages other than D, F, 8 are unsupported."""

    def __init__(self) -> None:
        self.admin: list[FixMessage] = []
        self.received: list[FixMessage] = []
        self.logons = 0

    def on_logon(self, session: Session) -> None:
        self.logons += 1

    def on_logout(self, session: Session) -> None:
        pass

    def from_admin(self, message: FixMessage, session: Session) -> None:
        self.admin.append(message)

    def from_app(self, message: FixMessage, session: Session) -> None:
        if message.msg_type not in (b"D", b"F", b"8"):
            raise UnsupportedMessageType()
        self.received.append(message)

    def admin_of(self, msg_type: bytes) -> list[FixMessage]:
        return [m for m in self.admin if m.msg_type == msg_type]


class Side:
    """One session on its own engine thread."""

    def __init__(self, session_settings: SessionSettings, store: Any = None) -> None:
        self.settings = session_settings
        s = session_settings
        self.store = store if store is not None else open_store(s.file_store_path, s.sender_comp_id, s.target_comp_id)
        self.app = RecordingApp()
        self.session = Session(session_settings, self.store, self.app)
        self.engine = FixEngine()
        self.engine.add(self.session)
        self.engine.start_in_thread(name=f"fix-{s.sender_comp_id}")
        self._stopped = False

    @property
    def port(self) -> int:
        return self.engine.bound_ports[self.settings.session_key]

    def run(self, fn, *args) -> Any:
        return run_on(self.engine, fn, *args)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.engine.stop_thread()


def venue(port: int = 0, store_path: Path | None = None, **extra: Any) -> Side:
    return Side(settings(VENUE, RISKD, "acceptor", SocketAcceptPort=port, FileStorePath=str(store_path or ""),
                         **extra))


def riskd(port: int, store_path: Path | None = None, **extra: Any) -> Side:
    extra.setdefault("ReconnectInterval", 0.1)
    extra.setdefault("MaxReconnectInterval", 0.2)
    return Side(settings(RISKD, VENUE, "initiator", SocketConnectPort=port, FileStorePath=str(store_path or ""),
                         **extra))


@pytest.fixture
def sides():
    started: list[Side] = []
    yield started
    for side in reversed(started):
        side.stop()


def _logged_on(*sides: Side, timeout: float = 5.0) -> None:
    wait_for(lambda: all(s.session.logged_on for s in sides), timeout, message="logon")


def _seqnums(folder: Path, sender: str, target: str) -> tuple[int, int]:
    store = FileStore(folder, sender, target)
    try:
        return store.next_sender_seq, store.next_target_seq
    finally:
        store.close()


def _order(n: int, **kw: Any) -> NewOrder:
    fields = dict(cl_ord_id=f"LIQ-ACC1-R1-L{n}", account="ACC1", symbol="ESZ6", side="sell", quantity=2,
                  order_type="limit", price=4512.25, time_in_force="ioc")
    fields.update(kw)
    return NewOrder(**fields)


# --------------------------------------------------------------------------- persisted sequence numbers
def test_sequence_numbers_survive_restarts_with_file_store(tmp_path: Path, sides: list[Side]) -> None:
    v_dir, r_dir = tmp_path / "venue", tmp_path / "riskd"
    v = venue(store_path=v_dir)
    r = riskd(v.port, store_path=r_dir)
    sides += [v, r]
    _logged_on(v, r)
    client = OrderEntryClient(r.session)
    for n in range(3):
        r.run(client.new_order_single, _order(n))
    for n in range(2):
        v.run(v.session.send, b"8", [(37, f"O{n}"), (17, f"E{n}"), (150, "0"), (39, "0"), (55, "ESZ6"),
                                       (54, "2"), (151, 2), (14, 0), (6, 0)])
    wait_for(lambda: len(v.app.received) == 3 and len(r.app.received) == 2, 5, message="the messages")

    # 1. Restart the initiator only: it logs on with its next number, accepted without a reset.
    r.stop()
    wait_for(lambda: not v.session.connected, 5, message="the venue to see the logout")
    r_next_sender, r_next_target = _seqnums(r_dir, RISKD, VENUE)
    assert (r_next_sender, r_next_target) == (v.store.next_target_seq, v.store.next_sender_seq)
    assert r_next_sender > 4 and r_next_target > 3
    r = riskd(v.port, store_path=r_dir)
    sides.append(r)
    _logged_on(v, r)
    logon = v.app.admin_of(b"A")[-1]
    assert logon.get_int(34) == r_next_sender and logon.get(141) is None
    assert r.app.admin_of(b"A")[-1].get_int(34) == r_next_target
    seq = r.run(OrderEntryClient(r.session).new_order_single, _order(9))
    wait_for(lambda: len(v.app.received) == 4, 5, message="the order after the restart")
    assert seq == r_next_sender + 1 and v.app.received[-1].get_int(34) == seq

    # 2. Restart both sides (new engines, new port): both next numbers survive.
    r.stop()
    v.stop()
    v_next_sender, v_next_target = _seqnums(v_dir, VENUE, RISKD)
    r_next_sender, r_next_target = _seqnums(r_dir, RISKD, VENUE)
    assert (v_next_sender, v_next_target) == (r_next_target, r_next_sender)
    v = venue(store_path=v_dir)
    r = riskd(v.port, store_path=r_dir)
    sides += [v, r]
    _logged_on(v, r)
    assert v.app.admin_of(b"A")[-1].get_int(34) == r_next_sender
    assert r.app.admin_of(b"A")[-1].get_int(34) == v_next_sender
    assert v.store.next_target_seq == r_next_sender + 1 and r.store.next_target_seq == v_next_sender + 1
    # no resend, no reset: neither side saw a ResendRequest, SequenceReset or ResetSeqNumFlag
    for side in (v, r):
        assert not side.app.admin_of(b"2") and not side.app.admin_of(b"4")
        assert all(m.get(141) is None for m in side.app.admin_of(b"A"))


# --------------------------------------------------------------------------- reconnect backoff
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_initiator_reconnects_with_backoff(sides: list[Side], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="riskd.fix")
    port = _free_port()
    r = riskd(port, ReconnectInterval=0.1, MaxReconnectInterval=0.4)
    sides.append(r)

    def failures() -> list[float]:
        return [rec.created for rec in list(caplog.records) if rec.getMessage().startswith("FIX connect to")]

    wait_for(lambda: len(failures()) >= 6, 10, message="six failed connection attempts")
    times = failures()[:6]
    gaps = [b - a for a, b in zip(times, times[1:])]
    delays = r.engine.reconnect_delays[(RISKD, VENUE)][:5]
    # ReconnectInterval 0.1 doubling up to MaxReconnectInterval 0.4 (the delays asked for;
    # wall-clock gaps are only bounded below: a sleep never returns early).
    assert delays == [0.1, 0.2, 0.4, 0.4, 0.4], delays
    assert all(gap >= delay - 0.02 for gap, delay in zip(gaps, delays)), (gaps, delays)

    v = venue(port)
    sides.append(v)
    _logged_on(v, r, timeout=5.0)

    # after a logon the backoff starts again from ReconnectInterval
    before = len(r.engine.reconnect_delays[(RISKD, VENUE)])
    v.run(v.session.disconnect, "test: drop")
    wait_for(lambda: r.session.logons == 1 and not r.session.logged_on, 5, 0.005, "the drop")
    wait_for(lambda: r.session.logons == 2, 5, 0.005, "the reconnection")
    assert r.engine.reconnect_delays[(RISKD, VENUE)][before] == 0.1, "backoff not reset after a logon"


# --------------------------------------------------------------------------- order entry
def test_order_sent_while_disconnected_is_delivered_after_logon_by_resend(tmp_path: Path,
                                                                         sides: list[Side]) -> None:
    v = venue(store_path=tmp_path / "venue")
    port = v.port
    r = riskd(port, store_path=tmp_path / "riskd")
    sides += [v, r]
    _logged_on(v, r)
    client = OrderEntryClient(r.session)
    r.run(client.new_order_single, _order(1))
    wait_for(lambda: len(v.app.received) == 1, 5, message="the first order")
    assert v.app.received[0].get(43) is None

    v.stop()
    wait_for(lambda: not r.session.connected, 5, message="the disconnect")
    seq = r.run(client.new_order_single, _order(2, side="buy", quantity=3, price=4499.5))
    stored = dict(r.store.sent_range(seq, seq))
    assert parse(stored[seq]).get(11) == b"LIQ-ACC1-R1-L2", "stored before (not) being written"

    v = venue(port, store_path=tmp_path / "venue")  # the venue comes back on the same port
    sides.append(v)
    _logged_on(v, r)
    wait_for(lambda: len(v.app.received) == 1, 5, message="the resent order")
    order = v.app.received[0]
    assert order.msg_type == b"D" and order.get_int(34) == seq
    assert order.get(11) == b"LIQ-ACC1-R1-L2" and order.get(54) == b"1" and order.get(38) == b"3"
    assert order.get(43) == b"Y" and order.get(122) is not None, "delivered as a PossDup resend"
    assert [m.get_int(7) for m in r.app.admin_of(b"2")] == [seq], "the venue's ResendRequest"
    time.sleep(0.2)
    assert len(v.app.received) == 1, "delivered exactly once"


def test_new_order_single_fields_as_the_counterparty_receives_them(sides: list[Side]) -> None:
    v = venue()
    r = riskd(v.port)
    sides += [v, r]
    _logged_on(v, r)
    client = OrderEntryClient(r.session)
    now = dt.datetime(2026, 11, 20, 14, 30, 1, 234567, tzinfo=dt.timezone.utc)
    r.run(client.new_order_single, _order(1, quantity=2.5, price=4512.25, time_in_force="ioc"), now)
    r.run(client.new_order_single, NewOrder(cl_ord_id="LIQ-2", account="ACC2", symbol="NQZ6", side="buy",
                                            quantity=7, order_type="market", time_in_force="day"), now)
    r.run(client.cancel, "LIQ-3", "LIQ-ACC1-R1-L1", "ACC1", "ESZ6", "sell", 2.5, now)
    wait_for(lambda: len(v.app.received) == 3, 5, message="the orders")
    limit, market, cancel = v.app.received
    assert limit.msg_type == b"D"
    fields = {tag: limit.get(tag) for tag in (11, 1, 55, 54, 38, 40, 44, 59, 60)}
    assert fields == {11: b"LIQ-ACC1-R1-L1", 1: b"ACC1", 55: b"ESZ6", 54: b"2", 38: b"2.5", 40: b"2",
                      44: b"4512.25", 59: b"3", 60: b"20261120-14:30:01.234"}
    assert market.msg_type == b"D"
    assert {tag: market.get(tag) for tag in (11, 1, 55, 54, 38, 40, 44, 59)} == {
        11: b"LIQ-2", 1: b"ACC2", 55: b"NQZ6", 54: b"1", 38: b"7", 40: b"1", 44: None, 59: b"0"}
    assert cancel.msg_type == b"F"
    assert {tag: cancel.get(tag) for tag in (41, 11, 1, 55, 54, 38, 60)} == {
        41: b"LIQ-ACC1-R1-L1", 11: b"LIQ-3", 1: b"ACC1", 55: b"ESZ6", 54: b"2", 38: b"2.5",
        60: b"20261120-14:30:01.234"}
    assert not v.app.admin_of(b"3"), "the venue rejected an order at session level"


# --------------------------------------------------------------------------- raw peers
class RawPeer:
    """A FIX counterparty on a plain socket, for what the engine must do to a misbehaving one."""

    def __init__(self, sock: socket.socket, sender: str = RISKD, target: str = VENUE) -> None:
        self.sock, self.sender, self.target = sock, sender, target
        self.framer = FixFramer()
        self.seq = 1
        self.eof_at: float | None = None

    @classmethod
    def connect(cls, port: int, **kw: Any) -> "RawPeer":
        return cls(socket.create_connection(("127.0.0.1", port), timeout=5), **kw)

    def send(self, msg_type: str, body: list[tuple[int, Any]]) -> None:
        m = simplefix.FixMessage()
        for tag, value in [(8, "FIX.4.4"), (35, msg_type), (34, self.seq), (49, self.sender),
                           (52, transact_time()), (56, self.target), *body]:
            m.append_pair(tag, value)
        self.seq += 1
        self.sock.sendall(m.encode())

    def logon(self, heart_bt_int: int = 30) -> float:
        self.send("A", [(98, 0), (108, heart_bt_int)])
        return time.monotonic()

    def read(self, timeout: float) -> list[tuple[float, FixMessage]]:
        """Messages received (with their monotonic arrival time) until EOF or ``timeout`` s."""
        out: list[tuple[float, FixMessage]] = []
        deadline = time.monotonic() + timeout
        while self.eof_at is None and time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                data = b""
            now = time.monotonic()
            if not data:
                self.eof_at = now
                break
            out += [(now, parse(frame.raw)) for frame in self.framer.feed(data)]
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("sender, target", [("WRONG", VENUE), (RISKD, "WRONG"), (VENUE, RISKD)],
                         ids=["wrong-sender", "wrong-target", "swapped"])
def test_logon_with_wrong_comp_ids_is_dropped_without_reply(sender: str, target: str,
                                                            sides: list[Side]) -> None:
    v = venue()
    sides.append(v)
    peer = RawPeer.connect(v.port, sender=sender, target=target)
    try:
        peer.logon()
        assert peer.read(3.0) == [], "the acceptor answered a Logon with wrong CompIDs"
        assert peer.eof_at is not None, "the acceptor kept the connection open"
    finally:
        peer.close()
    assert not v.session.connected and v.app.logons == 0 and v.store.next_target_seq == 1
    # and the right counterparty still gets in
    good = RawPeer.connect(v.port)
    try:
        good.logon()
        replies = good.read(0.5)
        assert [m.msg_type for _, m in replies] == [b"A"]
    finally:
        good.close()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: picks the outbound interface
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_acceptor_binds_to_loopback_by_default(sides: list[Side]) -> None:
    s = settings(VENUE, RISKD, "acceptor", SocketAcceptPort=0)
    assert s.socket_accept_host == "127.0.0.1"
    assert settings(RISKD, VENUE, "initiator", SocketConnectPort=1).socket_connect_host == "127.0.0.1"
    v = Side(s, MemoryStore())
    sides.append(v)
    bound = [sock.getsockname() for server in v.engine._servers for sock in server.sockets]
    assert bound and all(address[0] == "127.0.0.1" for address in bound), bound
    other = _non_loopback_address()
    if other is not None:
        with pytest.raises(OSError):
            socket.create_connection((other, v.port), timeout=1).close()


# --------------------------------------------------------------------------- heartbeat timeout
def test_silent_peer_gets_a_test_request_then_is_dropped(sides: list[Side]) -> None:
    """HeartBtInt 1 s: TestRequest after 1.5 s of silence, disconnect after 2.4 s (QuickFIX's timeout)."""
    v = venue()
    sides.append(v)
    peer = RawPeer.connect(v.port)
    try:
        logon_at = peer.logon(heart_bt_int=1)
        received = peer.read(5.0)
    finally:
        peer.close()
    kinds = [(m.msg_type, round(t - logon_at, 2)) for t, m in received]
    assert received and received[0][1].msg_type == b"A" and received[0][1].get(108) == b"1", kinds
    test_requests = [(t - logon_at, m) for t, m in received if m.msg_type == b"1"]
    assert len(test_requests) == 1, kinds
    assert 1.5 <= test_requests[0][0] <= 1.5 + 1.0, kinds  # lower bound is the rule; upper only "not 2x"
    assert test_requests[0][1].get(112), "TestReqID"
    others = {m.msg_type for _, m in received[1:] if m.msg_type != b"1"}
    assert others <= {b"0"}, kinds  # only Heartbeats besides the TestRequest (no Logout on a timeout)
    assert peer.eof_at is not None, f"the connection was not dropped: {kinds}"
    assert 2.4 <= peer.eof_at - logon_at <= 2.4 + 1.0, (peer.eof_at - logon_at, kinds)
    assert not v.session.connected


def test_initiator_drops_a_silent_acceptor_and_reconnects(sides: list[Side]) -> None:
    """The same timer on the initiator side: TestRequest at 1.5 s, drop at 2.4 s, then a new connection."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(5)
        r = riskd(server.getsockname()[1], HeartBtInt=1)
        sides.append(r)
        conn, _ = server.accept()
        peer = RawPeer(conn, sender=VENUE, target=RISKD)
        try:
            first = peer.read(0.5)
            assert [m.msg_type for _, m in first] == [b"A"] and first[0][1].get(108) == b"1"
            logon_at = peer.logon(heart_bt_int=1)
            received = peer.read(5.0)
        finally:
            peer.close()
        kinds = [(m.msg_type, round(t - logon_at, 2)) for t, m in received]
        test_requests = [t - logon_at for t, m in received if m.msg_type == b"1"]
        assert len(test_requests) == 1 and 1.5 <= test_requests[0] <= 2.5, kinds
        assert peer.eof_at is not None and 2.4 <= peer.eof_at - logon_at <= 3.4, kinds
        again, _ = server.accept()  # reconnects by itself
        again.close()


# --------------------------------------------------------------------------- engine lifecycle
def test_stop_thread_twice_is_harmless() -> None:
    v = venue()
    v.engine.stop_thread()
    with warnings.catch_warnings():  # keep the leaked coroutine's warning out of later tests
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            v.engine.stop_thread()
            error = None
        except RuntimeError as exc:
            error = repr(exc)
        gc.collect()
    assert error is None, error
