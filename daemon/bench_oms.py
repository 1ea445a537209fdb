"""The pipeline bench's OMS: a real FIX 4.4 drop-copy acceptor that sends fills fast and on time.

It runs in its own process (:class:`OmsClient` starts it with ``spawn``), so its
sending never competes for the bench's GIL with the AccountRisk subscriber whose
receive times the end-to-end latency is measured with. Inside:

- a :class:`fix.engine.FixEngine` with one acceptor session OMS -> RISKD (the
  daemon's drop-copy initiator logs on to it) that answers heartbeats, test
  requests and resend requests like any session;
- :class:`FastSendSession`, a :class:`fix.session.Session` whose
  :meth:`~FastSendSession.send_bodies` frames pre-built ExecutionReport bodies
  itself (about 2 us each, simplefix takes 30-100 us), numbers them from the
  session's own store, stores them for resend, and writes a batch in one
  transport write: the session stays valid (sequence numbers, store, heartbeat
  timer) exactly as if ``Session.send`` had been used;
- a pacer thread with absolute deadlines (message i is due at start + i / rate,
  so jitter never accumulates) that wakes the engine loop, whose pump sends every
  report due by now in one write (batches when behind). ``time.monotonic_ns()``
  is taken right after the write, for every MsgSeqNum in it;
- backpressure: while the transport holds more than :data:`WRITE_BUFFER_LIMIT`
  bytes unsent, nothing more is written (the achieved rate then falls short of
  the target and the step fails honestly instead of queueing without bound).

Every report is one order filled at once (ExecType F, OrdStatus 2) for an
(account, instrument) of the universe, quantity signed (buy > 0) in contracts,
price the instrument's mark. The OMS keeps the ground truth: net contracts per
(account, held instrument) of everything it sent.
"""

from __future__ import annotations

import collections
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Sequence

import msgspec
import numpy as np

from fix.application import NullApplication
from fix.engine import FixEngine
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import MemoryStore

#: Bytes queued in the OMS transport beyond which the pump stops writing.
WRITE_BUFFER_LIMIT = 4 << 20
#: Most reports framed and written in one pump call.
MAX_BATCH = 2000
#: Above this rate (fills/s) the pacer wakes the pump every 1 ms, not once per fill.
PER_FILL_WAKE_MAX_RATE = 4000.0

_BODY = (b"37=O%d\x0111=C%d\x0117=E%d\x01150=F\x0139=2\x01%b54=%b\x0138=%d\x0144=%b\x0132=%d\x0131=%b\x01"
         b"151=0\x0114=%d\x016=%b\x0160=%b\x01")


class BoundedStore(MemoryStore):
    """A MemoryStore that keeps only the last ``keep`` sent messages (older resends are gap-filled,
    which the bench would then see as lost fills: never silently)."""

    def __init__(self, keep: int = 500_000) -> None:
        super().__init__()
        self.keep = keep
        self._order: collections.deque[int] = collections.deque()

    def save_sent(self, seq: int, raw: bytes) -> None:
        super().save_sent(seq, raw)
        self._order.append(seq)
        if len(self._order) > self.keep:
            self._sent.pop(self._order.popleft(), None)


class FastSendSession(Session):
    """A Session with a fast path for application messages whose body is already encoded."""

    def send_bodies(self, msg_type: bytes, bodies: Sequence[bytes]) -> int:
        """Frame, number, store and write ``bodies`` (each ``tag=value\\x01``...); returns the
        first MsgSeqNum. Like ``Session.send``: stored first, written only while logged on."""
        store = self.store
        first = seq = store.next_sender_seq
        head = b"35=" + msg_type + b"\x0134=%d\x0149=" + self.sender + b"\x0152=%b\x0156=" + self.target + b"\x01"
        begin = b"8=" + self._begin_string + b"\x019=%d\x01%b"
        stamp = self._sending_time.now()
        persist = self.settings.persist_messages
        out = []
        for body in bodies:
            rest = head % (seq, stamp) + body
            raw = begin % (len(rest), rest)
            raw += b"10=%03d\x01" % (sum(raw) & 255)
            if persist:
                store.save_sent(seq, raw)
            out.append(raw)
            seq += 1
        store.set_next_sender_seq(seq)
        if self._write is not None and self.logged_on:
            self._write(b"".join(out))
            self.last_sent = self._monotonic()
        return first

    def write_buffer_size(self) -> int:
        """Bytes the transport still holds (0 when not connected)."""
        connection = getattr(self._write, "__self__", None)
        transport = getattr(connection, "transport", None)
        return transport.get_write_buffer_size() if transport is not None else 0


class OmsSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The universe as the OMS needs it: account ids, each account's instruments, marks per unit."""

    accounts: tuple[str, ...]
    holdings: tuple[tuple[str, ...], ...]
    marks: dict[str, float]
    keep_sent: int = 500_000


class _Phase:
    """One paced run of fills: (account index, holding slot, signed contracts) per fill."""

    def __init__(self, acct: np.ndarray, slot: np.ndarray, qty: np.ndarray, rate: float) -> None:
        self.acct, self.slot, self.qty, self.rate = acct, slot, qty, rate
        self.n = len(acct)
        self.seq = np.zeros(self.n, np.int64)
        self.write_ns = np.zeros(self.n, np.int64)
        self.sent = 0
        self.start_ns = 0
        self.stalls = 0
        self.max_buffer = 0
        self.pending = False
        self.done = threading.Event()


class OmsServer:
    """The OMS process's state: engine, session, pacer and ground truth (see the module docstring)."""

    def __init__(self, spec: OmsSpec) -> None:
        settings = msgspec.convert({"SenderCompID": "OMS", "TargetCompID": "RISKD", "ConnectionType": "acceptor",
                                    "SocketAcceptPort": 0, "HeartBtInt": 30}, SessionSettings)
        self.session = FastSendSession(settings, BoundedStore(spec.keep_sent), NullApplication())
        self.engine = FixEngine()
        self.engine.add(self.session)
        self.engine.start_in_thread("bench-oms")
        self.port = self.engine.bound_ports[("OMS", "RISKD")]
        self.n_accounts = len(spec.accounts)
        self.n_slots = len(spec.holdings[0])
        # b"1=<account>\x0155=<symbol>\x01" and the mark as bytes, per (account, slot).
        self.frags = [[b"1=%b\x0155=%b\x01" % (a.encode(), s.encode()) for s in held]
                      for a, held in zip(spec.accounts, spec.holdings)]
        self.prices = [[b"%.2f" % spec.marks[s] for s in held] for held in spec.holdings]
        self.truth = np.zeros((self.n_accounts, self.n_slots), np.int64)
        self.next_order = 0
        self.phase: _Phase | None = None

    # ----- the engine thread ------------------------------------------------
    def _pump(self) -> None:
        phase = self.phase
        if phase is None:
            return
        phase.pending = False
        now = time.monotonic_ns()
        due = min(phase.n, (now - phase.start_ns) * phase.rate // 1_000_000_000 + 1)
        todo = int(min(due - phase.sent, MAX_BATCH))
        if todo <= 0:
            return
        session = self.session
        buffered = session.write_buffer_size()
        phase.max_buffer = max(phase.max_buffer, buffered)
        if not session.logged_on or buffered > WRITE_BUFFER_LIMIT:
            phase.stalls += 1
            return
        stamp = session._sending_time.now()
        bodies = []
        n0 = self.next_order
        i = phase.sent
        for j in range(todo):
            a, k, q = int(phase.acct[i + j]), int(phase.slot[i + j]), int(phase.qty[i + j])
            n = n0 + j
            px = self.prices[a][k]
            size = q if q > 0 else -q
            bodies.append(_BODY % (n, n, n, self.frags[a][k], b"1" if q > 0 else b"2", size, px, size, px, size,
                                   px, stamp))
        first = session.send_bodies(b"8", bodies)
        written = time.monotonic_ns()
        self.next_order = n0 + todo
        phase.seq[i:i + todo] = np.arange(first, first + todo)
        phase.write_ns[i:i + todo] = written
        phase.sent = i + todo
        if phase.sent >= phase.n:
            phase.done.set()

    # ----- commands (the process's main thread) -----------------------------
    def run_phase(self, kind: str, rate: float, count: int, seed: int, deadline_s: float) -> dict[str, Any]:
        """Send ``count`` fills at ``rate`` fills/s: ``load`` = one per (account, slot), else random.

        Stops at ``deadline_s`` seconds even if not everything was sent. Returns the
        arrays (MsgSeqNum, account index, write monotonic ns) of what was sent, and
        counts: planned, sent, stalls (pump calls refused by backpressure).
        """
        rng = np.random.default_rng(seed)
        if kind == "load":
            acct = np.tile(np.arange(self.n_accounts, dtype=np.int32), self.n_slots)
            slot = np.repeat(np.arange(self.n_slots, dtype=np.int32), self.n_accounts)
            qty = rng.integers(1, 11, len(acct)) * rng.choice((-1, 1), len(acct))
        else:
            acct = rng.integers(0, self.n_accounts, count).astype(np.int32)
            slot = rng.integers(0, self.n_slots, count).astype(np.int32)
            qty = rng.integers(1, 6, count) * rng.choice((-1, 1), count)
        phase = _Phase(acct, slot, qty.astype(np.int64), float(rate))
        period_ns = int(1e9 / rate) if rate <= PER_FILL_WAKE_MAX_RATE else 1_000_000
        phase.start_ns = start = time.monotonic_ns() + 2_000_000
        self.phase = phase
        loop = self.engine.loop
        assert loop is not None
        deadline = start + int(deadline_s * 1e9)
        k = 0
        while not phase.done.is_set():
            target = start + k * period_ns
            now = time.monotonic_ns()
            if now > deadline:
                break
            if target > now:
                time.sleep((target - now) / 1e9)
                k += 1
            else:
                k = (now - start) // period_ns + 1  # behind: wake now, next deadline on the grid
            if not phase.pending:
                phase.pending = True
                loop.call_soon_threadsafe(self._pump)
        done = threading.Event()
        loop.call_soon_threadsafe(lambda: (setattr(self, "phase", None), done.set()))
        done.wait(10.0)
        sent = phase.sent
        np.add.at(self.truth, (phase.acct[:sent], phase.slot[:sent]), phase.qty[:sent])
        return {"planned": phase.n, "sent": sent, "stalls": phase.stalls, "max_buffer": phase.max_buffer,
                "rate": rate, "seq": phase.seq[:sent].tobytes(), "acct": phase.acct[:sent].tobytes(),
                "write_ns": phase.write_ns[:sent].tobytes()}

    def status(self) -> dict[str, Any]:
        return {"logged_on": self.session.logged_on, "next_sender_seq": self.session.store.next_sender_seq,
                "port": self.port}

    def stop(self) -> None:
        self.engine.stop_thread()


def oms_main(conn: Connection, spec: OmsSpec) -> None:
    """The OMS process: answer commands on ``conn`` until ``stop`` or the parent goes away."""
    server = OmsServer(spec)
    conn.send({"port": server.port})
    try:
        while True:
            try:
                command, args = conn.recv()
            except (EOFError, OSError):
                return
            if command == "stop":
                conn.send(None)
                return
            if command == "phase":
                conn.send(server.run_phase(*args))
            elif command == "status":
                conn.send(server.status())
            elif command == "truth":
                conn.send(server.truth.tobytes())
            else:
                conn.send({"error": f"unknown command {command!r}"})
    finally:
        server.stop()


class PhaseResult(msgspec.Struct, kw_only=True):
    """What one phase sent: per fill its MsgSeqNum, account index and write time (monotonic ns)."""

    planned: int
    sent: int
    stalls: int
    max_buffer: int
    rate: float
    seq: np.ndarray
    acct: np.ndarray
    write_ns: np.ndarray

    @property
    def achieved_per_s(self) -> float:
        """Fills/s between the first and the last write (the target rate if fewer than 2 writes apart)."""
        if self.sent < 2 or self.write_ns[-1] == self.write_ns[0]:
            return self.rate
        return (self.sent - 1) * 1e9 / float(self.write_ns[-1] - self.write_ns[0])


class OmsClient:
    """The bench's handle on the OMS process."""

    def __init__(self, spec: OmsSpec, start_timeout_s: float = 60.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=oms_main, args=(child, spec), name="bench-oms", daemon=True)
        self._process.start()
        child.close()
        self.n_accounts = len(spec.accounts)
        self.n_slots = len(spec.holdings[0])
        if not self._conn.poll(start_timeout_s):
            self.stop()
            raise RuntimeError(f"the bench OMS process did not start within {start_timeout_s} s")
        self.port: int = self._conn.recv()["port"]

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _call(self, command: str, *args: Any, timeout_s: float = 60.0) -> Any:
        self._conn.send((command, args))
        if not self._conn.poll(timeout_s):
            raise TimeoutError(f"bench OMS did not answer {command!r} within {timeout_s} s")
        return self._conn.recv()

    def status(self) -> dict[str, Any]:
        return self._call("status")

    def wait_logged_on(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.status()["logged_on"]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def run_phase(self, kind: str, rate: float, count: int, seed: int, deadline_s: float) -> PhaseResult:
        """Run one phase (see :meth:`OmsServer.run_phase`) and wait for it."""
        raw = self._call("phase", kind, rate, count, seed, deadline_s, timeout_s=deadline_s + 30.0)
        return PhaseResult(planned=raw["planned"], sent=raw["sent"], stalls=raw["stalls"],
                           max_buffer=raw["max_buffer"], rate=raw["rate"],
                           seq=np.frombuffer(raw["seq"], np.int64), acct=np.frombuffer(raw["acct"], np.int32),
                           write_ns=np.frombuffer(raw["write_ns"], np.int64))

    def truth(self) -> np.ndarray:
        """Net contracts sent per (account index, holding slot)."""
        return np.frombuffer(self._call("truth"), np.int64).reshape(self.n_accounts, self.n_slots)

    def stop(self) -> None:
        """Stop the OMS (FIX Logout) and its process; idempotent."""
        if self._process.is_alive():
            try:
                self._call("stop", timeout_s=10.0)
            except (OSError, EOFError, TimeoutError):
                pass
            self._process.join(5.0)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5.0)
        self._conn.close()
