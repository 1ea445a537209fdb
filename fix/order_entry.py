"""Order entry to an execution session: NewOrderSingle and OrderCancelRequest.

ClOrdIDs are supplied by the caller and must be deterministic (the liquidation
engine derives them from the account, the round and the leg), so a restart that
replays its plan produces the same ids and the venue refuses a repeat. Every
message goes through the session, which stores it before writing it: a message
sent while disconnected is delivered by the venue's ResendRequest after the next
logon. Acks and fills come back on the drop copy. Prices are per unit,
quantities in contracts (unsigned; the side says the direction).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Literal

import msgspec

from fix.outbound import FieldValue
from fix.session import Session

SIDE = {"buy": b"1", "sell": b"2"}
ORD_TYPE = {"market": b"1", "limit": b"2"}
TIME_IN_FORCE = {"day": b"0", "gtc": b"1", "ioc": b"3", "fok": b"4"}


class NewOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A NewOrderSingle. ``price`` is required for limit orders (per unit)."""

    cl_ord_id: str
    account: str
    symbol: str
    side: Literal["buy", "sell"]
    quantity: float
    order_type: Literal["market", "limit"] = "limit"
    price: float | None = None
    time_in_force: Literal["day", "gtc", "ioc", "fok"] = "ioc"

    def __post_init__(self) -> None:
        if not self.cl_ord_id:
            raise ValueError("cl_ord_id: required (a deterministic id from the caller)")
        if not self.quantity > 0:
            raise ValueError(f"quantity: expected > 0 contracts, found {self.quantity}")
        if self.order_type == "limit" and (self.price is None or not self.price > 0):
            raise ValueError(f"price: a limit order needs a price > 0, found {self.price}")


#: (whole second, its "YYYYMMDD-HH:MM:SS" bytes): strftime once a second, not per order
#: (~4 us); one tuple, so threads sending at a second's turn never mix the two.
_SECOND: tuple[int, bytes] = (-1, b"")


def _transact_time(now: dt.datetime | None = None) -> bytes:
    global _SECOND
    if now is not None:
        return now.strftime("%Y%m%d-%H:%M:%S.%f")[:-3].encode()
    t = time.time()
    second, prefix = _SECOND
    if int(t) != second:
        second = int(t)
        prefix = dt.datetime.fromtimestamp(second, dt.timezone.utc).strftime("%Y%m%d-%H:%M:%S").encode()
        _SECOND = (second, prefix)
    return prefix + b".%03d" % int((t - second) * 1000)


def _number(value: float) -> str:
    return repr(float(value)).removesuffix(".0") if float(value).is_integer() else repr(float(value))


class NotLoggedOn(RuntimeError):
    """The execution session is down and resets its sequence numbers at logon, so an
    order stored now would be wiped before it could be resent: refuse it instead."""


class OrderEntryClient:
    """Sends orders on one execution session. Call it on the session's event-loop thread
    (``FixEngine.call`` from another thread)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _check_deliverable(self) -> None:
        session = self.session
        if not session.logged_on and session.settings.reset_on_logon:
            raise NotLoggedOn(f"execution session {session.settings.session_key} is not logged on and resets"
                              " sequence numbers at logon: the order would be lost, not resent")

    def new_order_single(self, order: NewOrder, now: dt.datetime | None = None) -> int:
        """Send a NewOrderSingle (35=D); returns its MsgSeqNum.

        Raises NotLoggedOn when it could not be delivered later (see the class)."""
        self._check_deliverable()
        body: list[tuple[int, FieldValue]] = [
            (11, order.cl_ord_id), (1, order.account), (21, b"1"), (55, order.symbol), (54, SIDE[order.side]),
            (60, _transact_time(now)), (38, _number(order.quantity)), (40, ORD_TYPE[order.order_type]),
        ]
        if order.order_type == "limit":
            body.append((44, _number(order.price or 0.0)))
        body.append((59, TIME_IN_FORCE[order.time_in_force]))
        return self.session.send(b"D", body)

    def cancel(self, cl_ord_id: str, orig_cl_ord_id: str, account: str, symbol: str,
               side: Literal["buy", "sell"], quantity: float, now: dt.datetime | None = None) -> int:
        """Send an OrderCancelRequest (35=F) for ``orig_cl_ord_id``; returns its MsgSeqNum."""
        self._check_deliverable()
        body: list[tuple[int, FieldValue]] = [
            (41, orig_cl_ord_id), (11, cl_ord_id), (1, account), (55, symbol), (54, SIDE[side]),
            (60, _transact_time(now)), (38, _number(quantity)),
        ]
        return self.session.send(b"F", body)
