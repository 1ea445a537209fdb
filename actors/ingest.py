"""Drop-copy ingest: FIX session events stamped and routed to position shards over ZeroMQ.

:class:`DropCopyRouter` is the drop-copy application's ``on_event`` callback: it
turns each fix.dropcopy Fill / OrderEvent into an actors.messages FillMsg /
OrderMsg, stamps it (parsed and routed, monotonic ns) and pushes it to the PULL
socket of the account's shard (``shard_of``). One PUSH socket per shard keeps
every account's events in drop-copy order. The socket is written from the FIX
engine's event-loop thread only.
"""

from __future__ import annotations

import time
from typing import Callable

import zmq

from actors.messages import CollateralMsg, ReplayDone, Stamps, encode, fill_message, order_message
from actors.position_shard import shard_of
from fix.dropcopy import DropCopyEvent, Fill


class DropCopyRouter:
    """Routes drop-copy events to shard sockets; counts what it sent per shard.

    Every routed frame is also kept, per shard and in order, so a restarted
    position actor can be given its events again (:meth:`replay`). The log is in
    memory: it lives as long as this process (the on-disk journal replaces it in
    the durability work).
    """

    def __init__(self, shard_sockets: list[zmq.Socket], clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.sockets = shard_sockets
        self.sent = [0] * len(shard_sockets)
        self.log: list[list[bytes]] = [[] for _ in shard_sockets]
        #: Drop-copy MsgSeqNum of the last event routed to each shard.
        self.last_seq = [0] * len(shard_sockets)
        self._clock_ns = clock_ns

    def __call__(self, event: DropCopyEvent) -> None:
        parsed = self._clock_ns()
        # received_ns on the FIX event is when its bytes were read off the socket.
        stamps = Stamps(read_ns=event.received_ns, parsed_ns=parsed)
        message = fill_message(event, stamps) if isinstance(event, Fill) else order_message(event, stamps)
        shard = shard_of(event.account, len(self.sockets))
        stamps.routed_ns = self._clock_ns()
        frame = encode(message)
        self.sockets[shard].send(frame)
        self.sent[shard] += 1
        self.log[shard].append(frame)
        self.last_seq[shard] = event.seq

    def collateral(self, account: str, cash: float) -> None:
        """Route a collateral change (currency) to its account's shard, in order with the
        drop copy, and keep it for replays like every other event."""
        shard = shard_of(account, len(self.sockets))
        frame = encode(CollateralMsg(account, float(cash), self.last_seq[shard]))
        self.sockets[shard].send(frame)
        self.log[shard].append(frame)

    def replay(self, shard: int, socket: zmq.Socket) -> ReplayDone:
        """Send every event routed to ``shard`` so far, in order, then a ReplayDone.

        Must run on the thread that routes (the FIX engine's), so nothing is routed
        in between and the marker's ``last_seq`` splits replayed from live events.
        """
        events = self.log[shard]
        for frame in events:
            socket.send(frame)
        done = ReplayDone(shard, len(events), self.last_seq[shard])
        socket.send(encode(done))
        return done
