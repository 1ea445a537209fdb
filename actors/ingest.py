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

from actors.messages import Stamps, encode, fill_message, order_message
from actors.position_shard import shard_of
from fix.dropcopy import DropCopyEvent, Fill


class DropCopyRouter:
    """Routes drop-copy events to shard sockets; counts what it sent per shard."""

    def __init__(self, shard_sockets: list[zmq.Socket], clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.sockets = shard_sockets
        self.sent = [0] * len(shard_sockets)
        self._clock_ns = clock_ns

    def __call__(self, event: DropCopyEvent) -> None:
        parsed = self._clock_ns()
        # received_ns on the FIX event is when its bytes were read off the socket.
        stamps = Stamps(read_ns=event.received_ns, parsed_ns=parsed)
        message = fill_message(event, stamps) if isinstance(event, Fill) else order_message(event, stamps)
        shard = shard_of(event.account, len(self.sockets))
        stamps.routed_ns = self._clock_ns()
        self.sockets[shard].send(encode(message))
        self.sent[shard] += 1
