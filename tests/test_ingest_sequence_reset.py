"""A drop copy whose MsgSeqNum goes back (the OMS reset its sequence) is reported
loudly by the router, once per reset; reference: the sequence of seqs fed to it."""

from __future__ import annotations

import logging

import zmq

from actors.ingest import DropCopyRouter
from fix.dropcopy import OrderEvent


def _event(seq: int) -> OrderEvent:
    return OrderEvent(exec_id=f"E{seq}", exec_type="0", status="new", account="A", symbol="ESZ6", side=1,
                      order_qty=1.0, leaves_qty=1.0, cum_qty=0.0, price=1.0, order_id=f"O{seq}", cl_ord_id=f"C{seq}",
                      orig_cl_ord_id="", seq=seq, received_ns=0)


def test_a_lower_msgseqnum_is_reported_once_per_reset(caplog) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("inproc://reset-test")
    sink = context.socket(zmq.PULL)  # a PUSH with no peer would block
    sink.setsockopt(zmq.LINGER, 0)
    sink.connect("inproc://reset-test")
    router = DropCopyRouter([sock])
    try:
        with caplog.at_level(logging.CRITICAL, logger="riskd.ingest"):
            for seq in [1, 2, 3, 3, 4, 5, 5, 2, 3, 4, 6, 7, 2, 3]:  # a report can give two events
                router(_event(seq))
        assert router.sequence_resets == 2
        assert router.max_seq == 7
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(messages) == 2
        assert "from 5 to 2" in messages[0] and "from 7 to 2" in messages[1]
        assert router.sent == [14]  # still routed (shards skip them: the log says so)
    finally:
        sink.close(0)
        sock.close(0)
        context.term()
