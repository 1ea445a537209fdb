"""The pre-trade endpoint of one position shard: a ZeroMQ ROUTER answered on the
shard's own thread, so a check sees exactly the state fills have built.

Wire: the client (a DEALER, :mod:`actors.pretrade_client`) sends ``[b"", request]``;
the reply is ``[identity, b"", decision]`` (msgpack of
:mod:`actors.pretrade_messages`). A request that waited longer than the client's
timeout (``received - sent_ns``) is answered ``timeout`` without being checked:
the client has already failed it closed, so it must not reserve margin. Latency:
the ``pretrade`` stage (request received -> decision sent), in us, on the shard's
recorder.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import msgspec
import zmq

from actors.pretrade import PreTradeChecker
from actors.pretrade_messages import DECODE, ENCODE, CheckRequest, ReasonCode

log = logging.getLogger("riskd.pretrade")

#: Reason code of a request answered after the client gave up on it.
TIMEOUT = "timeout"
#: Latency stage of the decisions of one reason code: ``pretrade:<reason>``.
REASON_STAGE_PREFIX = "pretrade:"
_REASON_STAGES = {code: REASON_STAGE_PREFIX + code for code in (*ReasonCode.ALL, TIMEOUT)}
_SNDMORE = int(zmq.SNDMORE)
#: Reservations released per sweep call at most.
SWEEP_BATCH = 32


def _raw_send(socket: Any) -> Callable[..., Any]:
    """``socket.send``, for a pyzmq socket its Cython base's: the same send (bytes, int
    flags, copied) without pyzmq's Python-level wrapper, a frame per send."""
    sugar = getattr(zmq.sugar.socket, "Socket", None) if hasattr(zmq, "sugar") else None
    if sugar is not None and isinstance(socket, sugar) and type(socket).send is sugar.send:
        base = super(sugar, socket).send
        if getattr(base, "__self__", None) is socket:
            return base
    return socket.send


class PretradeEndpoint:
    """ROUTER handler and TTL sweeper around a :class:`PreTradeChecker`.

    ``mark_changed(account)``: an accepted order or an expired reservation changed
    the account's margin (the service republishes its AccountRisk). ``timeout_us``:
    the client's budget; older requests are refused unchecked.
    """

    def __init__(self, checker: PreTradeChecker, socket: zmq.Socket, recorder: object,
                 mark_changed: Callable[[str], None], *, timeout_us: float,
                 clock_ns: Callable[[], int] = time.monotonic_ns, sweep_interval_s: float = 0.1,
                 fpga: Any = None) -> None:
        self.checker = checker
        self._check = checker._decide  # = checker.check with received_ns given
        self.socket = socket
        self._send = _raw_send(socket)
        self._record = recorder.record  # type: ignore[attr-defined]
        self._mark_changed = mark_changed
        self._timeout_ns = int(timeout_us * 1000)
        self._clock_ns = clock_ns
        self._sweep_ns = int(sweep_interval_s * 1e9)
        self._next_sweep = 0
        self.requests = 0
        self.late = 0
        self.fpga = fpga

    @property
    def fpga(self) -> Any:
        """The FPGA path beside the software hook (actors.fpga_shadow.FpgaPath), if any."""
        return self._fpga

    @fpga.setter
    def fpga(self, fpga: Any) -> None:
        self._fpga = fpga
        # Without an overlay (path "software") FpgaPath.check only calls the checker:
        # the endpoint calls it directly.
        self._fpga_check = None if fpga is None or getattr(fpga, "path", None) == "software" else fpga.check

    def on_request(self, frames: list[bytes]) -> None:
        received = self._clock_ns()
        self.requests += 1
        identity, payload = frames[0], frames[-1]
        try:
            request = DECODE(payload)
            if not isinstance(request, CheckRequest):
                raise ValueError(f"expected a check request, found {type(request).__name__}")
        except (ValueError, msgspec.DecodeError) as exc:
            decision = self.checker.reject("", ReasonCode.BAD_REQUEST, f"undecodable request: {exc}", received)
        else:
            budget_ns = int(request.timeout_us * 1000) if request.timeout_us > 0 else self._timeout_ns
            if request.sent_ns and budget_ns and received - request.sent_ns > budget_ns:
                self.late += 1
                decision = self.checker.reject(request.order_id, TIMEOUT, "request arrived after the client's "
                                               f"timeout ({(received - request.sent_ns) / 1000:.0f} us > "
                                               f"{budget_ns / 1000:.0f} us): not checked", received)
            else:
                fpga_check = self._fpga_check  # the overlay decides or shadows (actors.fpga_shadow.FpgaPath.check)
                decision = (self._check(request, received or time.monotonic_ns()) if fpga_check is None
                            else fpga_check(self.checker, request, received))
                if decision.accepted and not request.what_if:
                    self._mark_changed(request.account)
        decision.decided_ns = self._clock_ns()
        # Three sends with a plain int flag: send_multipart ORs IntFlag enums per frame,
        # which costs more than the sends themselves.
        send = self._send
        send(identity, _SNDMORE)
        send(b"", _SNDMORE)
        send(ENCODE(decision))
        done = self._clock_ns()
        self._record("pretrade", received, done)
        # Per reason code too (/metrics: riskd_pretrade_latency_us{reason}): a margin
        # rejection costs a what-if, a kill-switch rejection nothing.
        stage = _REASON_STAGES.get(decision.reason) or REASON_STAGE_PREFIX + decision.reason
        self._record(stage, received, done)

    def sweep(self) -> None:
        """Release reservations whose TTL ran out: at most :data:`SWEEP_BATCH` per call
        (each release may republish an account, and a check waiting behind a sweep of
        thousands would miss its budget), again at the next call while more are due,
        else every ``sweep_interval_s``."""
        now = self._clock_ns()
        if now < self._next_sweep:
            return
        released = self.checker.expire(limit=SWEEP_BATCH)
        more = len(released) >= SWEEP_BATCH and self.checker.expiry_due()
        self._next_sweep = now if more else now + self._sweep_ns
        for account, order_id in released:
            log.info("pre-trade reservation of %s expired (no drop-copy report within the TTL)", order_id,
                     extra={"event": "reservation_expired", "account": account, "order_id": order_id})
            self._mark_changed(account)
