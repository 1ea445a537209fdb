"""Writing liquidation orders on the execution socket from the thread that decides them.

The execution session runs on its own FIX thread (fix.engine, an asyncio/uvloop
loop). Handing each NewOrderSingle to that thread cost a wake-up and a wait for
the GIL behind whatever the deciding thread did next (its alerts, its journal,
the venue's acks): hundreds of microseconds at the median and milliseconds at the
tail of breach -> wire (``riskd bench liquidation``). Here the deciding thread
builds, stores and writes the message itself:

- :class:`LockedSession` is the session with one re-entrant lock around every
  entry point (inbound frames, timers, connection events, sends), so sequence
  numbers, the message store and the session state change under it from either
  thread. A NewOrderSingle is stored (and its ClOrdID journaled by the engine
  before that) in the same order as it is written, as before.
- :class:`DirectWriter` replaces the connection's write callback: with the lock
  held it writes the bytes straight to the socket (``os.write`` on its
  non-blocking descriptor). The event loop's transport is not thread-safe and is
  never touched from another thread: when it still holds unsent bytes, or the
  socket takes only part of a message, the (rest of the) message goes to the FIX
  thread and every later one follows it there, so bytes leave in sequence-number
  order.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Callable

from fix.outbound import FieldValue
from fix.session import Session

Written = Callable[[int], None]


class DirectWriter:
    """The session's write callback on a live connection (call it with the session lock held).

    ``write``: the connection's own (event-loop) write; ``transport`` its asyncio
    transport; ``loop`` the event loop. ``stamp``: when set by the caller, called
    with the monotonic ns at which the message's last byte went to the socket
    (now, or later on the FIX thread), then cleared.
    """

    def __init__(self, write: Callable[[bytes], None], transport: Any, loop: asyncio.AbstractEventLoop,
                 lock: threading.RLock) -> None:
        self._write = write
        self._transport = transport
        self._loop = loop
        self._lock = lock
        # Our own descriptor of the socket: the loop closes its own when the connection
        # goes, and that number could be reused before connection_lost reaches us.
        self._fd = os.dup(transport.get_extra_info("socket").fileno())
        self._queued = 0  # messages handed to the FIX thread, not yet given to the transport
        self.stamp: Written | None = None
        self.direct = 0
        self.handed_off = 0

    def __call__(self, raw: bytes) -> None:
        stamp, self.stamp = self.stamp, None
        # Earlier bytes still on their way through the loop: these follow them.
        if self._queued or self._fd < 0 or self._transport.get_write_buffer_size():
            self._hand_off(raw, stamp)
            return
        try:
            written = os.write(self._fd, raw)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:  # the connection is going: let the transport find out and close
            self._hand_off(raw, stamp)
            return
        if written < len(raw):
            self._hand_off(raw[written:], stamp)
            return
        self.direct += 1
        if stamp is not None:
            stamp(time.monotonic_ns())

    def close(self) -> None:
        """Release the socket (with the session lock held; called when the connection goes)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _hand_off(self, data: bytes, stamp: Written | None) -> None:
        self._queued += 1
        self.handed_off += 1
        self._loop.call_soon_threadsafe(self._flush, data, stamp)

    def _flush(self, data: bytes, stamp: Written | None) -> None:
        with self._lock:
            self._queued -= 1
            self._write(data)
        if stamp is not None:
            stamp(time.monotonic_ns())


class LockedSession(Session):
    """A :class:`fix.session.Session` safe to send on from any thread (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock = threading.RLock()
        super().__init__(*args, **kwargs)
        self.writer: DirectWriter | None = None

    # ----- the FIX thread's entry points, under the lock -----------------------------
    def connection_made(self, write: Callable[[bytes], None], close: Callable[[], None]) -> None:
        with self.lock:
            if self.writer is not None:
                self.writer.close()
            self.writer = _direct_writer(write, self.lock)
            super().connection_made(self.writer or write, close)

    def connection_lost(self) -> None:
        with self.lock:
            if self.writer is not None:
                self.writer.close()
            self.writer = None
            super().connection_lost()

    def on_frame(self, raw: bytes, read_ns: int = 0) -> None:
        with self.lock:
            super().on_frame(raw, read_ns)

    def on_batch_end(self) -> None:
        with self.lock:
            super().on_batch_end()

    def on_garbled(self, raw: bytes, reason: str) -> None:
        with self.lock:
            super().on_garbled(raw, reason)

    def on_timer(self) -> None:
        with self.lock:
            super().on_timer()

    def logout(self, text: str | None = None) -> None:
        with self.lock:
            super().logout(text)

    def disconnect(self, reason: str) -> None:
        with self.lock:
            super().disconnect(reason)

    # ----- any thread --------------------------------------------------------------------
    def send(self, msg_type: bytes, body: list[tuple[int, FieldValue]],
             header: list[tuple[int, FieldValue]] | None = None) -> int:
        with self.lock:
            return super().send(msg_type, body, header)


def _direct_writer(write: Callable[[bytes], None], lock: threading.RLock) -> DirectWriter | None:
    """A :class:`DirectWriter` for ``write`` (a fix.engine connection's bound write), or
    None when its transport or socket cannot be found (then the loop writes, as before)."""
    connection = getattr(write, "__self__", None)
    transport = getattr(connection, "transport", None)
    if transport is None or transport.get_extra_info("socket") is None:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return DirectWriter(write, transport, loop, lock)


__all__ = ["DirectWriter", "LockedSession"]
