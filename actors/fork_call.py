"""Run a function in a forked child and get its bytes back: copy-on-write state capture.

A shard snapshot built on the shard's thread stalls it: capturing and encoding
1,000 accounts x 50 positions, their open orders and the applied ExecIDs took
42-161 ms every 10 s in ``riskd bench pipeline`` (each stall delays every fill
and check queued behind it). A forked child sees the process's memory frozen at
the fork, so it can build and write the snapshot at leisure while the parent
goes on; the parent's thread pays only ``fork()`` itself (3-8 ms here for a
shard's few hundred MB; page tables, not pages). This is how Redis writes its
RDB snapshots.

The child runs only ``fn`` and then ``os._exit``: no atexit handlers, no logging
(a lock another thread held at the fork would never be released in the child),
no ZeroMQ (its sockets' threads do not exist there). It dies with its parent
(``PR_SET_PDEATHSIG``), so a killed shard leaves no orphan writing after it.
The result travels through a pipe: ``OK`` + ``fn``'s bytes, or ``ER`` + the error.
Linux only (:func:`fork_available`); elsewhere callers do the work in process.
"""

from __future__ import annotations

import ctypes
import gc
import os
import select
import signal
import sys
import time
from typing import Callable

#: prctl(2) option: the signal the child gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def fork_available() -> bool:
    """Whether :func:`fork_call` works here (Linux: fork and prctl)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class ForkCallError(RuntimeError):
    """The child failed (its error text), died, or ran past its time."""


class ForkedCall:
    """A child running one function; :meth:`result` waits for its bytes."""

    def __init__(self, pid: int, read_fd: int, started: float) -> None:
        self.pid = pid
        self._read_fd = read_fd
        #: time.monotonic() at the fork.
        self.started = started

    def result(self, timeout_s: float) -> bytes:
        """The function's bytes; ForkCallError if it raised, died or took longer than
        ``timeout_s`` seconds (the child is then killed). Call it once."""
        deadline = time.monotonic() + timeout_s
        chunks: list[bytes] = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._kill()
                    raise ForkCallError(f"child {self.pid} still running after {timeout_s:.0f} s: killed")
                ready, _, _ = select.select([self._read_fd], [], [], min(left, 1.0))
                if not ready:
                    continue
                chunk = os.read(self._read_fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self._read_fd)
            self._reap()
        data = b"".join(chunks)
        if data[:2] == b"OK":
            return data[2:]
        if data[:2] == b"ER":
            raise ForkCallError(data[2:].decode(errors="replace"))
        raise ForkCallError(f"child {self.pid} exited without a result")

    def _kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap(self) -> None:
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:  # SIGCHLD ignored somewhere: reaped by the kernel
            pass


def fork_call(fn: Callable[[], bytes]) -> ForkedCall:
    """Fork; the child runs ``fn()`` on the memory as it is now and exits. Returns at
    once in the parent (the fork is the only cost on the calling thread)."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        _child(fn, read_fd, write_fd, parent)
    os.close(write_fd)
    return ForkedCall(pid, read_fd, started)


def _child(fn: Callable[[], bytes], read_fd: int, write_fd: int, parent: int) -> None:
    code = 1
    report = b"ER child did not run"
    try:
        os.close(read_fd)
        # A collection would walk (and copy-on-write) every tracked object for nothing:
        # the child lives for one function call.
        gc.disable()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)
        report = b"OK" + fn()
        code = 0
    except BaseException as exc:  # reported to the parent, which logs it
        report = b"ER" + f"{type(exc).__name__}: {exc}".encode(errors="replace")[:4000]
    finally:
        try:
            view = memoryview(report)
            while view:
                view = view[os.write(write_fd, view):]
        finally:
            os._exit(code)
