"""The recovery trials' OMS: a FIX 4.4 drop-copy acceptor streaming orders, fills, busts and corrections.

It runs in the trial's own process (the daemon under test is another process that
gets killed), on riskd's FIX engine: one acceptor session OMS -> RISKD with an
in-memory store, so reports sent while the daemon is down are resent from it
after the daemon's next logon (PossDupFlag=Y), like a real OMS. Every report is
an ExecutionReport: new order acks, partial and full fills, cancels, trade busts
and trade corrections (ExecRefID naming the trade's current or original ExecID).

The OMS keeps its own record, the ground truth of the trials: every fill event a
correct consumer must apply (trades, bust reversals, correction reversals and
corrected fills) with its dedupe key (trade date, ExecID, kind), account,
instrument, signed contracts and price per unit, in drop-copy order.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import msgspec

from fix.application import NullApplication
from fix.engine import FixEngine
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import MemoryStore


class TruthFill(NamedTuple):
    """A fill event the drop copy implies: dedupe key fields, signed contracts, price per unit."""

    trade_date: str
    exec_id: str
    kind: str
    account: str
    symbol: str
    quantity: float
    price: float


@dataclass
class _Order:
    order_id: str
    account: str
    symbol: str
    side: str  # "1" buy, "2" sell
    quantity: int
    price: float
    cum: int = 0
    status: str = "0"

    @property
    def sign(self) -> int:
        return 1 if self.side == "1" else -1

    @property
    def open(self) -> bool:
        return self.status in ("0", "1")


@dataclass
class _Trade:
    original: str
    current: str
    order: _Order
    quantity: int
    price: float
    standing: bool = True


@dataclass
class ReportFlow:
    """Seeded generator of ExecutionReport bodies and the fills they imply (``fills``)."""

    accounts: Sequence[str]
    marks: dict[str, tuple[float, float]]  # symbol -> (price per unit, tick)
    seed: int = 1
    fills: list[TruthFill] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._orders: list[_Order] = []
        self._open: list[_Order] = []
        self._standing: list[_Trade] = []
        self._exec = 0
        self._order = 0

    def _body(self, order: _Order, exec_id: str, exec_type: str, now: str, *, ref: str | None = None,
              last: tuple[int, float] | None = None) -> list[tuple[int, Any]]:
        body: list[tuple[int, Any]] = [(37, order.order_id), (11, "C" + order.order_id), (17, exec_id)]
        if ref is not None:
            body.append((19, ref))
        body += [(150, exec_type), (39, order.status), (1, order.account), (55, order.symbol), (54, order.side),
                 (38, order.quantity), (40, "2"), (44, repr(order.price))]
        if last is not None:
            body += [(32, last[0]), (31, repr(last[1]))]
        leaves = order.quantity - order.cum if order.open else 0
        body += [(151, leaves), (14, order.cum), (6, "0"), (60, now)]
        return body

    def _fill(self, day: str, exec_id: str, kind: str, order: _Order, quantity: float, price: float) -> None:
        self.fills.append(TruthFill(day, exec_id, kind, order.account, order.symbol, float(quantity), float(price)))

    def next(self) -> list[tuple[int, Any]]:
        """The next report's body (fields after the standard header)."""
        rng = self.rng
        stamp = dt.datetime.now(dt.timezone.utc)
        now, day = stamp.strftime("%Y%m%d-%H:%M:%S.%f")[:-3], stamp.strftime("%Y%m%d")
        self._exec += 1
        exec_id = f"X{self._exec:08d}"
        p = rng.random()
        if not self._open or (p < 0.2 and len(self._open) < 24):
            kind = "new"
        elif p < 0.72 or not self._standing:
            kind = "fill"
        elif p < 0.80:
            kind = "cancel"
        elif p < 0.90:
            kind = "bust"
        else:
            kind = "correct"
        if kind == "new":
            self._order += 1
            symbol = rng.choice(sorted(self.marks))
            mark, tick = self.marks[symbol]
            order = _Order(f"O{self._order:07d}", rng.choice(list(self.accounts)), symbol, rng.choice("12"),
                           rng.randint(1, 30), round(mark + rng.randint(-20, 20) * tick, 6))
            self._open.append(order)
            body, exec_type = self._body(order, exec_id, "0", now), "0"
        elif kind == "fill":
            order = rng.choice(self._open)
            remaining = order.quantity - order.cum
            qty = remaining if remaining <= 2 or rng.random() < 0.35 else rng.randint(1, remaining - 1)
            tick = self.marks[order.symbol][1]
            price = round(order.price + rng.randint(0, 3) * tick * (-1 if order.side == "1" else 1), 6)
            order.cum += qty
            order.status = "2" if order.cum == order.quantity else "1"
            if not order.open:
                self._open.remove(order)
            self._standing.append(_Trade(exec_id, exec_id, order, qty, price))
            self._fill(day, exec_id, "trade", order, order.sign * qty, price)
            body, exec_type = self._body(order, exec_id, "F", now, last=(qty, price)), "F"
        elif kind == "cancel":
            order = rng.choice(self._open)
            order.status = "4"
            self._open.remove(order)
            body, exec_type = self._body(order, exec_id, "4", now), "4"
        else:
            index = rng.randrange(len(self._standing))
            trade = self._standing[index]
            order = trade.order
            ref = trade.current if rng.random() < 0.75 else trade.original
            if kind == "bust":
                self._standing[index] = self._standing[-1]
                self._standing.pop()
                trade.standing = False
                self._fill(day, exec_id, "bust", order, -order.sign * trade.quantity, trade.price)
                body = self._body(order, exec_id, "H", now, ref=ref, last=(trade.quantity, trade.price))
                exec_type = "H"
            else:
                tick = self.marks[order.symbol][1]
                new_qty = rng.randint(1, trade.quantity)
                new_price = round(trade.price + rng.choice((-2, -1, 1, 2)) * tick, 6)
                self._fill(day, exec_id, "correction_reversal", order, -order.sign * trade.quantity, trade.price)
                self._fill(day, exec_id, "correction", order, order.sign * new_qty, new_price)
                trade.quantity, trade.price, trade.current = new_qty, new_price, exec_id
                body = self._body(order, exec_id, "G", now, ref=ref, last=(new_qty, new_price))
                exec_type = "G"
        self.counts[exec_type] = self.counts.get(exec_type, 0) + 1
        return body

    def positions(self) -> dict[tuple[str, str], float]:
        """Net contracts per (account, symbol), zeros left out."""
        out: dict[tuple[str, str], float] = {}
        for f in self.fills:
            out[(f.account, f.symbol)] = out.get((f.account, f.symbol), 0.0) + f.quantity
        return {k: v for k, v in out.items() if v != 0.0}


class TrialOms:
    """The acceptor and the flow behind it; streams from a background thread."""

    def __init__(self, accounts: Sequence[str], marks: dict[str, tuple[float, float]], *, seed: int = 1) -> None:
        settings = msgspec.convert({"SenderCompID": "OMS", "TargetCompID": "RISKD", "ConnectionType": "acceptor",
                                    "SocketAcceptPort": 0, "HeartBtInt": 30}, SessionSettings)
        self.session = Session(settings, MemoryStore(), NullApplication())
        self.flow = ReportFlow(accounts, marks, seed)
        self.engine = FixEngine()
        self.engine.add(self.session)
        self.engine.start_in_thread("trial-oms")
        self.port = self.engine.bound_ports[("OMS", "RISKD")]
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def last_seq(self) -> int:
        """MsgSeqNum of the last message the OMS sent (admin ones included)."""
        return self.session.store.next_sender_seq - 1

    def _send(self, n: int, done: threading.Event) -> None:
        try:
            for _ in range(n):
                self.session.send(b"8", self.flow.next())
                self.sent += 1
        except BaseException as exc:  # reported to the streaming thread
            self.error = exc
        finally:
            done.set()

    def stream(self, total: int, rate_per_s: float, batch: int = 50) -> None:
        """Send ``total`` reports at about ``rate_per_s`` from a background thread."""
        def run() -> None:
            start = time.monotonic()
            while self.sent < total and not self._stop.is_set() and self.error is None:
                n = min(batch, total - self.sent)
                done = threading.Event()
                self.engine.call(self._send, n, done)
                done.wait(30)
                ahead = start + self.sent / rate_per_s - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        self._thread = threading.Thread(target=run, name="trial-oms-stream", daemon=True)
        self._thread.start()

    def wait_sent(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.sent < count:
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the OMS sent {self.sent} of {count} reports in {timeout_s} s")
            time.sleep(0.005)

    def wait_streamed(self, timeout_s: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout_s)
        if self.error is not None:
            raise self.error
        if self._thread.is_alive():
            raise TimeoutError(f"the OMS stream did not finish in {timeout_s} s ({self.sent} sent)")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.engine.stop_thread()
