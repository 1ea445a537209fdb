"""The OMS-side client of the pre-trade hook: routes a check to its account's shard
and fails closed when no answer comes within the budget.

One DEALER socket per shard endpoint (ipc:// or tcp://), with ``IMMEDIATE`` so a
request is never queued for a shard that is not connected: a stopped shard is a
rejection within the timeout, not a check decided minutes later. Replies are
matched by order id; a late reply to an earlier request is dropped. Not
thread-safe: one client per thread.

Fail-open accounts (config ``pretrade.fail_open_accounts``) get an accepted
``timeout_fail_open`` decision instead, logged at ERROR every time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import zmq

from actors.position_shard import shard_of
from actors.pretrade_messages import CheckRequest, Decision, decode, encode

log = logging.getLogger("riskd.pretrade")

TIMEOUT = "timeout"
TIMEOUT_FAIL_OPEN = "timeout_fail_open"
NAN = math.nan
# Plain ints: pyzmq's send_multipart ORs IntFlag enums per frame (microseconds each).
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)


class PretradeClient:
    """``endpoints``: the shards' pre-trade endpoints, index = shard; ``timeout_us``:
    the budget from sending to decision (us); ``fail_open``: accounts that fail open."""

    def __init__(self, endpoints: Sequence[str], *, timeout_us: float = 500.0, fail_open: Sequence[str] = (),
                 context: zmq.Context | None = None) -> None:
        self._context = context or zmq.Context.instance()
        self._sockets: list[zmq.Socket] = []
        for endpoint in endpoints:
            socket = self._context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.IMMEDIATE, 1)
            socket.connect(endpoint)
            self._sockets.append(socket)
        self._pollers = []
        for socket in self._sockets:
            poller = zmq.Poller()
            poller.register(socket, zmq.POLLIN)
            self._pollers.append(poller)
        self._shard_of: dict[str, int] = {}  # account -> shard, cached (CRC-32 per check otherwise)
        self.timeout_us = float(timeout_us)
        self.fail_open = frozenset(fail_open)
        self.timeouts = 0

    def check(self, request: CheckRequest) -> Decision:
        """The shard's decision, or a fail-closed ``timeout`` rejection."""
        shard = self._shard_of.get(request.account)
        if shard is None:
            shard = self._shard_of[request.account] = shard_of(request.account, len(self._sockets))
        socket, poller = self._sockets[shard], self._pollers[shard]
        start = time.monotonic_ns()
        request.sent_ns = start
        request.timeout_us = self.timeout_us
        deadline = start + int(self.timeout_us * 1000)
        payload = encode(request)
        while True:
            try:
                # The empty delimiter first: with IMMEDIATE and no connected shard it is
                # refused (Again) and nothing is queued; once taken, the rest of the
                # message is always taken.
                socket.send(b"", _SNDMORE_NOBLOCK)
                socket.send(payload, _NOBLOCK)
                break
            except zmq.Again:
                # Not connected (yet: connecting is asynchronous, or the shard is down):
                # wait for the connection within the same budget, never past it.
                left_ms = (deadline - time.monotonic_ns()) / 1e6
                if left_ms <= 0 or not socket.poll(math.ceil(left_ms), zmq.POLLOUT):
                    return self._timed_out(request, start, "shard not connected")
        while True:
            left_ms = (deadline - time.monotonic_ns()) / 1e6
            # pyzmq truncates a poll timeout to whole ms (0.6 ms would be no wait at all):
            # round up. A decision arriving in that last partial ms is still taken: the
            # shard checked it within the budget (it refuses older requests), and
            # dropping it would strand the margin it reserved.
            ready = poller.poll(math.ceil(left_ms)) if left_ms > 0 else []
            if not ready:
                if time.monotonic_ns() >= deadline:
                    return self._timed_out(request, start, f"no answer within {self.timeout_us:.0f} us")
                continue
            reply = decode(socket.recv_multipart()[-1])
            if isinstance(reply, Decision) and reply.order_id == request.order_id:
                return reply
            # a late answer to an earlier request: dropped, keep waiting for ours

    def _timed_out(self, request: CheckRequest, start: int, why: str) -> Decision:
        self.timeouts += 1
        now = time.monotonic_ns()
        if request.account in self.fail_open:
            log.error("pre-trade check of %s for %s FAILED OPEN: %s", request.order_id, request.account, why,
                      extra={"event": "pretrade_fail_open", "account": request.account, "order_id": request.order_id})
            return Decision(request.order_id, True, TIMEOUT_FAIL_OPEN, f"accepted unchecked (fail-open account): {why}",
                            NAN, NAN, NAN, NAN, NAN, "", "", start, now)
        log.warning("pre-trade check of %s for %s rejected: %s", request.order_id, request.account, why)
        return Decision(request.order_id, False, TIMEOUT, f"rejected (fail closed): {why}", NAN, NAN, NAN, NAN, NAN,
                        "", "", start, now)

    def close(self) -> None:
        for socket in self._sockets:
            socket.close(0)
