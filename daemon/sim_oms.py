"""A simulated OMS for the demo: a real FIX acceptor streaming a drop copy.

Accounts trade the configured futures and options: each order gets a New
acknowledgement and then a fill near the instrument's mark; now and then a fill
is busted. Everything is a FIX 4.4 ExecutionReport on a real session over
loopback (SenderCompID OMS, TargetCompID RISKD), so the daemon consumes it
exactly as it would a production drop copy. Seeded, so a demo run is repeatable.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from typing import Sequence

import msgspec

from fix.application import NullApplication
from fix.engine import FixEngine
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import MemoryStore


class SimulatedOms:
    """A drop-copy acceptor and the order flow behind it."""

    def __init__(self, accounts: Sequence[str], instruments: dict[str, float], *, seed: int = 7,
                 rate_per_s: float = 20.0) -> None:
        """``instruments``: id -> mark price per unit; ``rate_per_s``: orders per second."""
        settings = msgspec.convert({"SenderCompID": "OMS", "TargetCompID": "RISKD", "ConnectionType": "acceptor",
                                    "SocketAcceptPort": 0, "HeartBtInt": 30}, SessionSettings)
        self.session = Session(settings, MemoryStore(), NullApplication())
        self.engine = FixEngine()
        self.engine.add(self.session)
        self.engine.start_in_thread("sim-oms")
        self.port = self.engine.bound_ports[("OMS", "RISKD")]
        self.accounts = list(accounts)
        self.instruments = dict(instruments)
        self.rate_per_s = rate_per_s
        self.rng = random.Random(seed)
        self.sent = 0
        self.fills: list[tuple[str, str, str, float, float]] = []  # exec id, account, symbol, qty, px
        self._next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-oms-flow", daemon=True)

    def start(self) -> "SimulatedOms":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.engine.stop_thread()

    def _run(self) -> None:
        while not self._stop.wait(1.0 / self.rate_per_s):
            if self.session.logged_on:
                self.engine.call(self._one_order)

    def _one_order(self) -> None:
        rng = self.rng
        self._next += 1
        n = self._next
        account = rng.choice(self.accounts)
        symbol = rng.choice(sorted(self.instruments))
        side = rng.choice((b"1", b"2"))
        qty = float(rng.randint(1, 5))
        mark = self.instruments[symbol]
        px = round(mark * (1 + rng.gauss(0, 0.001)), 2)
        order = (b"O%06d" % n, b"C%06d" % n)
        self._report(order, b"N%06d" % n, b"0", b"0", account, symbol, side, qty, px, 0.0)
        if self.fills and rng.random() < 0.03:  # a bust of an earlier fill
            ref, f_account, f_symbol, f_qty, f_px = rng.choice(self.fills)
            self.fills = [f for f in self.fills if f[0] != ref]
            self._report(order, b"B%06d" % n, b"H", b"2", f_account, f_symbol, b"1" if f_qty > 0 else b"2",
                         abs(f_qty), f_px, abs(f_qty), ref=ref.encode())
        self._report(order, b"F%06d" % n, b"F", b"2", account, symbol, side, qty, px, qty)
        self.fills.append((f"F{n:06d}", account, symbol, qty if side == b"1" else -qty, px))

    def _report(self, order: tuple[bytes, bytes], exec_id: bytes, exec_type: bytes, status: bytes, account: str,
                symbol: str, side: bytes, qty: float, px: float, last: float, ref: bytes | None = None) -> None:
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3].encode()
        body = [(37, order[0]), (11, order[1]), (17, exec_id)] + ([(19, ref)] if ref else [])
        body += [(150, exec_type), (39, status), (1, account), (55, symbol), (54, side), (38, qty), (44, px),
                 (32, last), (31, px), (151, 0.0 if exec_type != b"0" else qty), (14, last), (6, px), (60, now)]
        self.session.send(b"8", body)
        self.sent += 1


def wait_logged_on(oms: SimulatedOms, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not oms.session.logged_on:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
