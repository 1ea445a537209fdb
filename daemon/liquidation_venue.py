"""A simulated execution venue for liquidation orders: a real FIX 4.4 acceptor on loopback.

It takes NewOrderSingles on session EXEC <- RISKD-EX, acknowledges each (ER New)
and fills it at its limit price, at once or when told (``hold=True`` then
:meth:`ExecutionVenue.fill`). Every fill is also handed to ``on_fill`` (the OMS's
drop copy of it, in tests and the bench). Used by tests/test_liquidation_*.py and
``riskd bench liquidation``.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Callable

import msgspec

from fix.engine import FixEngine
from fix.parser import FixMessage
from fix.session import Session
from fix.settings import SessionSettings
from fix.store import MemoryStore


class VenueOrder(msgspec.Struct):
    cl_ord_id: str
    account: str
    symbol: str
    side: int
    quantity: float
    price: float
    received_ns: int


class ExecutionVenue:
    """See the module docstring. ``on_fill(order, exec_id)`` runs on the venue's FIX thread."""

    def __init__(self, *, hold: bool = False, on_fill: Callable[[VenueOrder, str], None] | None = None,
                 on_order: Callable[[VenueOrder], None] | None = None) -> None:
        settings = msgspec.convert({"SenderCompID": "EXEC", "TargetCompID": "RISKD-EX", "ConnectionType": "acceptor",
                                    "SocketAcceptPort": 0, "HeartBtInt": 30}, SessionSettings)
        self.session = Session(settings, MemoryStore(), self)
        self.engine = FixEngine()
        self.engine.add(self.session)
        self.hold = hold
        self.on_fill = on_fill
        self.on_order = on_order
        self.orders: list[VenueOrder] = []
        self._n = 0
        self.engine.start_in_thread("exec-venue")
        self.port = self.engine.bound_ports[("EXEC", "RISKD-EX")]

    def client_settings(self, store_path: str = "") -> SessionSettings:
        """The riskd side of this session (initiator), QuickFIX-named keys."""
        raw = {"SenderCompID": "RISKD-EX", "TargetCompID": "EXEC", "ConnectionType": "initiator",
               "SocketConnectHost": "127.0.0.1", "SocketConnectPort": self.port, "HeartBtInt": 30,
               "ReconnectInterval": 0.1, "FileStorePath": store_path}
        return msgspec.convert(raw, SessionSettings)

    # ----- Application -------------------------------------------------------------
    def on_logon(self, session: Session) -> None:
        pass

    def on_logout(self, session: Session) -> None:
        pass

    def from_admin(self, message: FixMessage, session: Session) -> None:
        pass

    def from_app(self, message: FixMessage, session: Session) -> None:
        received = time.monotonic_ns()
        order = VenueOrder(message.get(11).decode(), (message.get(1) or b"").decode(), message.get(55).decode(),
                           1 if message.get(54) == b"1" else -1, float(message.get(38)), float(message.get(44)),
                           received)
        self.orders.append(order)
        if self.on_order is not None:
            self.on_order(order)
        self._report(order, "0", "0", 0.0)
        if not self.hold:
            self._fill(order)

    # ----- venue side ------------------------------------------------------------------
    def fill(self, cl_ord_id: str) -> None:
        """Fill a held order (thread-safe: runs on the venue's thread)."""
        order = next(o for o in self.orders if o.cl_ord_id == cl_ord_id)
        self.engine.call(self._fill, order)

    def _fill(self, order: VenueOrder) -> None:
        exec_id = self._report(order, "F", "2", order.quantity)
        if self.on_fill is not None:
            self.on_fill(order, exec_id)

    def _report(self, order: VenueOrder, exec_type: str, status: str, filled: float) -> str:
        self._n += 1
        exec_id = f"X{self._n:06d}-{order.cl_ord_id}"
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S.%f")[:-3]
        body = [(37, "O-" + order.cl_ord_id), (11, order.cl_ord_id), (17, exec_id), (150, exec_type), (39, status),
                (1, order.account), (55, order.symbol), (54, "1" if order.side > 0 else "2"), (38, order.quantity),
                (44, order.price), (32, filled), (31, order.price), (151, order.quantity - filled), (14, filled),
                (6, order.price if filled else 0.0), (60, now)]
        self.session.send(b"8", body)
        return exec_id

    def stop(self) -> None:
        self.engine.stop_thread()
