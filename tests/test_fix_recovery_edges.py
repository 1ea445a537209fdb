"""Session edge cases a drop-copy consumer must survive without losing a fill.

From an independent review: a target number persisted ahead of the ExecID store,
an application failure consuming a number, a queued fill turned stale by a long
resend, a resend range left open by a GapFill, and sides with no direction.
Sessions are driven directly with a fake clock and transport.
"""

from __future__ import annotations

import time

import msgspec
import pytest

from fix.application import BusinessReject
from fix.dropcopy import DropCopyApplication, ExecIdStore, Fill
from fix.outbound import SendingTimeClock, build
from fix.parser import parse
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import FileStore, MemoryStore


class Clock:
    def __init__(self) -> None:
        self.t, self.m = time.time(), 1000.0

    def wall(self) -> float:
        return self.t

    def mono(self) -> float:
        return self.m

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.m += seconds


class Peer:
    """Builds OMS -> RISKD messages."""

    def __init__(self, clock: Clock) -> None:
        self.ts = SendingTimeClock(clock.wall)

    def msg(self, msg_type: bytes, seq: int, body=(), header=()) -> bytes:
        return build(msg_type, [(34, seq), (49, b"OMS"), (52, self.ts.now()), (56, b"RISKD"), *header], list(body))

    def logon(self, seq: int) -> bytes:
        return self.msg(b"A", seq, [(98, 0), (108, 30)])

    def report(self, seq: int, exec_id: str, exec_type: bytes = b"F", side: bytes = b"1", ref: str | None = None):
        body = [(37, b"O1"), (11, b"C1"), (17, exec_id)] + ([(19, ref)] if ref else [])
        body += [(150, exec_type), (39, b"2" if exec_type == b"F" else b"0"), (1, b"ACC"), (55, b"ES"), (54, side),
                 (38, 10), (32, 1), (31, 100), (151, 0), (14, 1), (6, 100), (60, b"20240101-00:00:00")]
        return self.msg(b"8", seq, body)


def _session(store=None, app=None, clock=None):
    clock = clock or Clock()
    events: list = []
    app = app or DropCopyApplication(events.append, ExecIdStore())
    settings = msgspec.convert({"SenderCompID": "RISKD", "TargetCompID": "OMS", "SocketConnectPort": 9999},
                               SessionSettings)
    session = Session(settings, store or MemoryStore(), app, clock=clock.wall, monotonic=clock.mono)
    out: list[bytes] = []
    closed: list[int] = []
    session.connection_made(out.append, lambda: closed.append(1))
    return session, out, closed, events, clock


def _fills(events) -> list[str]:
    return [e.exec_id for e in events if isinstance(e, Fill)]


def test_a_reply_sent_mid_read_does_not_persist_the_target_ahead_of_the_execids(tmp_path) -> None:
    clock = Clock()
    peer = Peer(clock)
    store, exec_ids = FileStore(tmp_path, "RISKD", "OMS"), ExecIdStore(tmp_path / "execids")
    session, *_ = _session(store, DropCopyApplication(lambda e: None, exec_ids), clock)
    session.on_frame(peer.logon(1))
    session.on_batch_end()
    session.on_frame(peer.report(2, "T1"))
    session.on_frame(peer.msg(b"1", 3, [(112, b"X")]))  # our Heartbeat reply writes the sender number
    # kill -9 here: no on_batch_end
    assert (tmp_path / "RISKD-OMS.seqnums").read_text().split(":")[1].strip() == "0000000002"
    assert FileStore(tmp_path, "RISKD", "OMS").next_target_seq == 2  # seq 2 is asked for again


def test_an_application_failure_does_not_consume_the_message() -> None:
    clock = Clock()
    peer = Peer(clock)
    fail = [True]
    delivered: list = []

    def on_event(event) -> None:
        if fail[0]:
            raise RuntimeError("downstream socket failed")
        delivered.append(event)

    session, out, closed, _, _ = _session(app=DropCopyApplication(on_event, ExecIdStore()), clock=clock)
    session.on_frame(peer.logon(1))
    session.on_frame(peer.report(2, "T1"))
    assert session.store.next_target_seq == 2 and closed  # not consumed; the connection drops
    fail[0] = False
    session.connection_lost()
    session.connection_made(out.append, lambda: closed.append(1))
    session.on_frame(peer.logon(3))  # too high: a ResendRequest from 2
    assert any(parse(o).msg_type == b"2" and parse(o).get(7) == b"2" for o in out)
    session.on_frame(peer.msg(b"8", 2, parse(peer.report(2, "T1")).fields[7:-1], [(43, b"Y"), (122, peer.ts.now())]))
    assert _fills(delivered) == ["T1"]


def test_a_fill_queued_behind_a_long_resend_is_not_lost_to_the_sending_time_check() -> None:
    clock = Clock()
    peer = Peer(clock)
    session, out, closed, events, _ = _session(clock=clock)
    session.on_frame(peer.logon(3))  # expected 1: ResendRequest 1..
    session.on_frame(peer.report(4, "LIVE4"))  # queued behind the gap
    clock.advance(121)  # the resend takes longer than MaxLatency
    session.on_frame(peer.msg(b"4", 1, [(36, 3), (123, b"Y")], [(43, b"Y"), (122, peer.ts.now())]))
    assert _fills(events) == ["LIVE4"] and not closed
    assert session.store.next_target_seq == 5


def test_a_gap_fill_past_the_requested_range_closes_it_and_a_later_gap_is_requested() -> None:
    clock = Clock()
    peer = Peer(clock)
    store = MemoryStore()
    store.next_sender_seq = store.next_target_seq = 5
    session, out, closed, events, _ = _session(store, clock=clock)
    session.on_frame(peer.logon(10))  # expected 5
    session.on_frame(peer.msg(b"4", 5, [(36, 11), (123, b"Y")], [(43, b"Y"), (122, peer.ts.now())]))
    assert session.resend_range is None
    n = len(out)
    for seq in range(13, 16):  # 11 and 12 never arrive
        session.on_frame(peer.report(seq, f"T{seq}"))
    requests = [parse(o) for o in out[n:] if parse(o).msg_type == b"2"]
    assert requests and requests[0].get(7) == b"11"


@pytest.mark.parametrize("side,sign", [(b"1", 1), (b"3", 1), (b"2", -1), (b"5", -1), (b"9", -1), (b"A", -1)])
def test_sides_map_to_their_direction(side: bytes, sign: int) -> None:
    events: list = []
    app = DropCopyApplication(events.append, ExecIdStore())
    app.from_app(parse(Peer(Clock()).report(2, "T1", side=side)), None)
    assert _fills(events) == ["T1"] and events[0].quantity == sign


@pytest.mark.parametrize("side", [b"7", b"8", b"B"])
def test_a_side_without_direction_is_refused_not_guessed(side: bytes) -> None:
    events: list = []
    app = DropCopyApplication(events.append, ExecIdStore())
    with pytest.raises(BusinessReject) as info:
        app.from_app(parse(Peer(Clock()).report(2, "T1", side=side)), None)
    assert info.value.ref_tag == 54 and not events


def _with_venue_tag(peer: Peer, seq: int, exec_id: str) -> bytes:
    fields = parse(peer.report(seq, exec_id)).fields
    body = [f for f in fields if f[0] not in (8, 9, 10, 35, 34, 49, 52, 56)] + [(9001, b"VENUE-X")]
    return peer.msg(b"8", seq, body)


@pytest.mark.parametrize("validate_udf,delivered", [(True, []), (False, ["T1"])])
def test_venue_tags_on_a_drop_copy_follow_validate_user_defined_fields(validate_udf, delivered) -> None:
    clock = Clock()
    peer = Peer(clock)
    events: list = []
    settings = msgspec.convert({"SenderCompID": "RISKD", "TargetCompID": "OMS", "SocketConnectPort": 9999,
                                "ValidateUserDefinedFields": validate_udf}, SessionSettings)
    session = Session(settings, MemoryStore(), DropCopyApplication(events.append, ExecIdStore()),
                      clock=clock.wall, monotonic=clock.mono)
    out: list[bytes] = []
    session.connection_made(out.append, lambda: None)
    session.on_frame(peer.logon(1))
    session.on_frame(_with_venue_tag(peer, 2, "T1"))
    assert _fills(events) == delivered
    rejects = [parse(o) for o in out if parse(o).msg_type == b"3"]
    assert bool(rejects) == validate_udf
    if rejects:
        assert rejects[0].get(371) == b"9001" and rejects[0].get(373) == b"0"


def test_the_same_exec_id_on_another_trading_day_is_a_new_fill() -> None:
    events: list = []
    app = DropCopyApplication(events.append, ExecIdStore())
    peer = Peer(Clock())

    def report(seq: int, exec_id: str, day: bytes, exec_type: bytes = b"F", ref: str | None = None) -> bytes:
        fields = parse(peer.report(seq, exec_id, exec_type=exec_type, ref=ref)).fields
        body = [(t, (day + b"-12:00:00" if t == 60 else v)) for t, v in fields
                if t not in (8, 9, 10, 35, 34, 49, 52, 56)]
        return peer.msg(b"8", seq, body)

    app.from_app(parse(report(2, "1001", b"20261119")), None)
    app.from_app(parse(report(3, "1001", b"20261119")), None)  # a repeat that day: ignored
    app.from_app(parse(report(4, "1001", b"20261120")), None)  # same id next day: a new execution
    assert [(e.exec_id, e.trade_date) for e in events if isinstance(e, Fill)] == [
        ("1001", "20261119"), ("1001", "20261120")]
    # A correction on a later day still finds the trade it refers to.
    app.from_app(parse(report(5, "2001", b"20261121", exec_type=b"G", ref="1001")), None)
    kinds = [e.kind for e in events if isinstance(e, Fill)]
    assert kinds[-2:] == ["correction_reversal", "correction"]


def test_a_resend_that_never_comes_is_requested_again_after_two_heartbeat_intervals() -> None:
    clock = Clock()
    peer = Peer(clock)
    session, out, closed, events, _ = _session(clock=clock)
    session.on_frame(peer.logon(1))
    session.on_frame(peer.report(4, "T4"))  # 2 and 3 missing: ResendRequest 2..
    first = [o for o in out if parse(o).msg_type == b"2"]
    session.on_frame(peer.report(5, "T5"))  # already requested: no second request yet
    assert len([o for o in out if parse(o).msg_type == b"2"]) == len(first) == 1
    clock.advance(31)
    session.on_frame(peer.msg(b"0", 6))  # traffic keeps coming, the gap does not
    session.on_timer()
    assert len([o for o in out if parse(o).msg_type == b"2"]) == 1  # one interval: still patient
    clock.advance(30)
    session.on_frame(peer.msg(b"0", 7))
    session.on_timer()
    again = [parse(o) for o in out if parse(o).msg_type == b"2"]
    assert len(again) == 2 and again[-1].get(7) == b"2" and not closed
