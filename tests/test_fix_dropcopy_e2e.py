"""End to end: riskd's engine as initiator consumes a drop copy from a simulated OMS.

The OMS (tests/fix_sim.py) is an acceptor on riskd's own engine streaming a
realistic mix of ExecutionReports (new, partial fill, fill, cancel, bust,
correction) and keeping the ground truth. The consumer is the production
stack: an initiator session with a FileStore and the DropCopyApplication over an
ExecIdStore file. Faults: a sequence gap (reports stored and numbered by the OMS
but never written), the TCP connection aborted by the OMS in mid-stream, a
restart of the consumer (new engine, session and application over the same
files) while the OMS keeps sending, and PossResend re-delivery of old reports
under new sequence numbers. The check is the drop copy's contract: every fill
event (trade, bust, correction_reversal, correction) reaches the application
exactly once and in the OMS's order, and the net positions equal the OMS's.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from fix.dropcopy import DropCopyEvent, Fill, OrderEvent
from tests.fix_sim import DropCopyConsumer, SimulatedOms, TruthFill, fill_key, wait_for

TOTAL_REPORTS = 2400


def _fills(events: list[DropCopyEvent]) -> list[TruthFill]:
    return [fill_key(e) for e in list(events) if isinstance(e, Fill)]


def _positions(fills: list[TruthFill]) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = defaultdict(float)
    for f in fills:
        out[(f.account, f.symbol)] += f.quantity
    return dict(out)


def _caught_up(oms: SimulatedOms, consumer: DropCopyConsumer, timeout: float = 20.0) -> None:
    """Wait until the consumer has processed every message the OMS has numbered."""
    wait_for(lambda: consumer.session.logged_on and consumer.next_target_seq == oms.next_sender_seq, timeout,
             message=lambda: (f"consumer caught up: next target {consumer.next_target_seq}, "
                              f"OMS next sender {oms.next_sender_seq}"))


def _assert_matches_truth(oms: SimulatedOms, events: list[DropCopyEvent]) -> None:
    fills = _fills(events)
    truth = oms.stream.fills
    keys = [(f.exec_id, f.kind) for f in fills]
    duplicated = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicated, f"fill events delivered more than once: {duplicated[:10]}"
    missing = set((f.exec_id, f.kind) for f in truth) - set(keys)
    assert not missing, f"{len(missing)} fill events never delivered, e.g. {sorted(missing)[:10]}"
    assert fills == truth, "fill events out of the OMS's order or with other economics"
    assert _positions(fills) == oms.stream.net_positions()
    order_events = [e.exec_id for e in list(events) if isinstance(e, OrderEvent)]
    assert order_events == [exec_id for exec_id, _, _ in oms.stream.reports], \
        "every report gives exactly one OrderEvent, in order"


@pytest.fixture
def oms():
    sim = SimulatedOms(seed=20261120)
    yield sim
    sim.stop()


def test_exactly_once_through_gap_disconnect_and_restart(tmp_path: Path, oms: SimulatedOms) -> None:
    events: list[DropCopyEvent] = []
    consumer = DropCopyConsumer(tmp_path, oms.port, events, reconnect_interval=0.1, max_reconnect_interval=0.2)
    consumers = [consumer]
    try:
        wait_for(lambda: consumer.session.logged_on and oms.logged_on, 5, message="first logon")
        # (i) two sequence gaps: one before the drop, one after the restart.
        oms.add_gap(300, 25)
        oms.add_gap(345, 3)  # a second gap close behind the first, while its resend may be under way
        oms.add_gap(1800, 12)
        oms.start_streaming(TOTAL_REPORTS, batch=20, interval=0.003)

        # (ii) the OMS aborts the TCP connection in mid-stream; the initiator reconnects by itself.
        oms.wait_sent(800)
        assert oms.drop_connection(in_flight=40)
        wait_for(lambda: consumer.session.logons >= 2, 5, message="the consumer's reconnection")
        assert oms.sent < TOTAL_REPORTS, "the drop was not in mid-stream"

        # (iii) restart of the consumer while the OMS keeps sending.
        oms.wait_sent(1300)
        consumer.stop()
        assert not consumer.session.connected
        stopped_at = oms.sent
        oms.wait_sent(stopped_at + 150)  # stored by the OMS, nobody connected
        assert not oms.logged_on
        sent_while_down = oms.sent - stopped_at
        assert oms.sent < TOTAL_REPORTS, "the restart was not in mid-stream"
        consumer = DropCopyConsumer(tmp_path, oms.port, events, reconnect_interval=0.1, max_reconnect_interval=0.2)
        consumers.append(consumer)

        oms.wait_streamed()
        assert oms.sent == TOTAL_REPORTS and oms.withheld == 40
        _caught_up(oms, consumer)
        _assert_matches_truth(oms, events)

        # PossResend (97=Y) re-delivery under new sequence numbers, across the restart: the
        # first 300 reports (seen by the first consumer only) and every bust and correction.
        delivered = len(events)
        again = [r[0] for r in oms.stream.reports[:300]] + [r[0] for r in oms.stream.reports if r[1] in "GH"]
        oms.resend_as_new(again)
        _caught_up(oms, consumer)
        assert len(events) == delivered, "a PossResend of a processed ExecID produced events"
        assert consumer.app.duplicates == len(set(again))
        _assert_matches_truth(oms, events)
    finally:
        for c in consumers:
            c.stop()

    stream = oms.stream
    assert len(stream.reports) == TOTAL_REPORTS
    assert all(stream.counts[t] >= 100 for t in "0F4HG"), dict(stream.counts)
    # The faults happened as intended: ResendRequests answered, PossDup resends processed,
    # sequence numbers continued across the restart (no ResetSeqNumFlag).
    resend_requests = [m for m in oms.app.admin if m.msg_type == b"2"]
    assert len(resend_requests) >= 3, "expected ResendRequests for the gaps, the drop and the restart"
    logons = [m for m in oms.app.admin if m.msg_type == b"A"]
    assert len(logons) >= 3 and all(m.get(141) != b"Y" for m in logons)
    assert sent_while_down >= 150
    assert sum(1 for e in events if isinstance(e, Fill) and e.poss_dup) > 0
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs), "events out of sequence-number order"


@pytest.mark.parametrize("how", ["logout", "crash"])
def test_reports_sent_while_consumer_is_down_are_delivered_by_resend(tmp_path: Path, oms: SimulatedOms,
                                                                     how: str) -> None:
    """(c) deterministically: the consumer stops (graceful Logout, or a crash with no Logout),
    the OMS sends 250 reports to nobody, and a new consumer over the same files gets them all."""
    events: list[DropCopyEvent] = []
    consumer = DropCopyConsumer(tmp_path, oms.port, events)
    try:
        wait_for(lambda: consumer.session.logged_on and oms.logged_on, 5, message="logon")
        oms.send_reports(150)
        _caught_up(oms, consumer)
        if how == "logout":
            consumer.stop()
        else:
            consumer.crash()
        wait_for(lambda: not oms.session.connected, 5, message="the OMS to see the disconnect")
        first_offline = oms.next_sender_seq
        oms.send_reports(250)  # stored and numbered, written nowhere
        assert len(_fills(events)) < len(oms.stream.fills)
        consumer = DropCopyConsumer(tmp_path, oms.port, events)
        _caught_up(oms, consumer)
        _assert_matches_truth(oms, events)
        offline = [e for e in events if e.seq >= first_offline]
        assert len({e.exec_id for e in offline}) == 250
        assert all(e.poss_dup for e in offline if isinstance(e, Fill)), "resent reports carry PossDupFlag=Y"
    finally:
        consumer.stop()


def test_poss_resend_of_processed_exec_ids_yields_no_events(tmp_path: Path, oms: SimulatedOms) -> None:
    events: list[DropCopyEvent] = []
    consumer = DropCopyConsumer(tmp_path, oms.port, events)
    try:
        wait_for(lambda: consumer.session.logged_on and oms.logged_on, 5, message="logon")
        oms.send_reports(400)
        _caught_up(oms, consumer)
        delivered = list(events)
        seqs = oms.resend_as_new(count=400)  # the same 400 reports, new MsgSeqNums, 97=Y
        assert seqs[0] > delivered[-1].seq
        oms.send_reports(100)  # and new business after them still flows
        _caught_up(oms, consumer)
        assert consumer.app.duplicates == 400
        assert consumer.app.rejected == 0
        assert events[:len(delivered)] == delivered
        _assert_matches_truth(oms, events)
    finally:
        consumer.stop()


def test_gap_at_the_tail_is_closed_by_the_next_heartbeat(tmp_path: Path) -> None:
    """The last reports withheld: nothing follows them but the OMS's Heartbeat (HeartBtInt 1 s),
    whose MsgSeqNum reveals the gap."""
    oms = SimulatedOms(seed=5)
    events: list[DropCopyEvent] = []
    consumer = DropCopyConsumer(tmp_path, oms.port, events, heart_bt_int=1)
    try:
        wait_for(lambda: consumer.session.logged_on and oms.logged_on, 5, message="logon")
        oms.send_reports(200)
        oms.send_gap(15, then=0)
        assert oms.withheld == 15
        time.sleep(0.1)
        assert consumer.next_target_seq < oms.next_sender_seq, "the withheld reports were written"
        _caught_up(oms, consumer, timeout=4.0)
        _assert_matches_truth(oms, events)
        assert [m.get_int(7) for m in oms.app.admin if m.msg_type == b"2"] == [202]
    finally:
        consumer.stop()
        oms.stop()
