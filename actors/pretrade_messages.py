"""Messages of the pre-trade endpoint: order checks, decisions and kill-switch commands.

Like actors/messages.py: ``array_like`` tagged msgspec Structs, with an encoder and
decoder pair of their own for the pre-trade union (the OMS-facing socket carries
only these). Timestamps are monotonic-clock nanoseconds (``time.monotonic_ns``);
quantities are unsigned contracts with a separate side; prices are per unit;
money is in the account currency.

:class:`ReasonCode` lists every code a :class:`Decision` can carry: it is part of
the wire contract, so the client library can use it without importing the checker.
"""

from __future__ import annotations

from typing import Literal, Union

import msgspec


class ReasonCode:
    """The ``Decision.reason`` codes (plain strings, so they cost nothing on the wire).

    One code per check, in the order the checks run (the first failure decides):
    request sanity, kill switches, account tier, static limits, stale market data,
    margin.
    """

    ACCEPTED = "accepted"
    # request sanity (before any check: the request cannot be judged)
    BAD_REQUEST = "bad_request"
    UNKNOWN_ACCOUNT = "unknown_account"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    # 1. kill switches
    KILL_SWITCH_GLOBAL = "kill_switch_global"
    KILL_SWITCH_ACCOUNT = "kill_switch_account"
    KILL_SWITCH_UNDERLYING = "kill_switch_underlying"
    # 2. account tier
    REDUCE_ONLY = "reduce_only"
    LIQUIDATION_ONLY = "liquidation_only"
    # 3. static limits
    RESTRICTED_INSTRUMENT = "restricted_instrument"
    MAX_ORDER_QTY = "max_order_qty"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    PRICE_COLLAR = "price_collar"
    MAX_POSITION_INSTRUMENT = "max_position_instrument"
    MAX_POSITION_UNDERLYING = "max_position_underlying"
    RATE_THROTTLE = "rate_throttle"
    # 4. stale market data
    STALE_MARKET = "stale_market"
    # 5. margin
    MARGIN = "margin"
    #: Margin cannot be computed (RiskModelError, a NaN figure): reject, fail closed.
    RISK_UNAVAILABLE = "risk_unavailable"

    ALL: tuple[str, ...] = (
        ACCEPTED, BAD_REQUEST, UNKNOWN_ACCOUNT, UNKNOWN_INSTRUMENT,
        KILL_SWITCH_GLOBAL, KILL_SWITCH_ACCOUNT, KILL_SWITCH_UNDERLYING,
        REDUCE_ONLY, LIQUIDATION_ONLY,
        RESTRICTED_INSTRUMENT, MAX_ORDER_QTY, MAX_ORDER_NOTIONAL, PRICE_COLLAR,
        MAX_POSITION_INSTRUMENT, MAX_POSITION_UNDERLYING, RATE_THROTTLE,
        STALE_MARKET, MARGIN, RISK_UNAVAILABLE,
    )


class CheckRequest(msgspec.Struct, tag="check", array_like=True):
    """May this order go?

    ``order_id``: the id the drop copy will report the order under (its OrderID):
    the reservation an accepted order makes is keyed by it, so the drop copy's
    events for the order update or release that very reservation. ``side``: +1 buy,
    -1 sell. ``quantity``: contracts, > 0. ``limit_price``: per unit, finite and
    > 0 (a market order is sent with its protection price). ``liquidation``: the
    order comes from riskd's liquidation engine (the only orders a liquidation
    tier accepts). ``replaces``: the order id this one replaces ("" = a new order;
    it may equal ``order_id`` when the OrderID survives the replace, as in FIX).
    ``sent_ns``: the client's monotonic ns when it sent the request (0 = unknown).
    ``what_if``: decide but do not reserve (nor count toward the order-rate
    throttle): the what-if question of ``riskd check`` and the daemon's HTTP API.
    """

    order_id: str
    account: str
    instrument: str
    side: int
    quantity: float
    limit_price: float
    time_in_force: str = ""
    liquidation: bool = False
    replaces: str = ""
    sent_ns: int = 0
    #: The client's budget for this check, us (0 = the shard's configured timeout_us):
    #: a request that reaches the shard later than this is refused unchecked.
    timeout_us: float = 0.0
    what_if: bool = False


class Decision(msgspec.Struct, tag="decision", array_like=True):
    """The answer to one :class:`CheckRequest`.

    ``reason``: a :class:`ReasonCode`; ``message``: which limit was hit and by how
    much ("" when accepted). Margin figures (currency) count open orders on their
    worst side: ``im_before`` / ``im_after`` the account's initial margin without /
    with this order, ``marginal_im`` their difference, ``equity``, ``limit`` =
    equity x the profile's max utilization; NaN where the check that computes them
    was not reached. ``binding_scenario``: the worst scenario of the order's
    underlying after the order ("" if none). ``tier``: the account's tier
    ("" if the account is unknown). ``received_ns`` / ``decided_ns``: monotonic ns.
    """

    order_id: str
    accepted: bool
    reason: str
    message: str
    im_before: float
    im_after: float
    marginal_im: float
    equity: float
    limit: float
    binding_scenario: str
    tier: str
    received_ns: int
    decided_ns: int


KillSwitchScope = Literal["global", "account", "underlying"]


class KillSwitchCommand(msgspec.Struct, tag="kill_switch", array_like=True):
    """Engage or clear a kill switch (control API).

    ``scope``: ``global`` (every order; ``key`` ignored), ``account`` (``key`` = an
    account id) or ``underlying`` (``key`` = an underlying id: every instrument on
    it). ``reason`` and ``by`` (who) are journaled and shown in ``riskd status``.
    """

    scope: KillSwitchScope
    key: str
    engaged: bool
    reason: str = ""
    by: str = ""


PretradeMessage = Union[CheckRequest, Decision, KillSwitchCommand]

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(PretradeMessage)


#: The bound encode / decode themselves, for the shard's hot path (a Python frame less).
ENCODE = _ENCODER.encode
DECODE = _DECODER.decode


def encode(message: PretradeMessage) -> bytes:
    """msgpack bytes of one pre-trade message."""
    return _ENCODER.encode(message)


def decode(data: bytes) -> PretradeMessage:
    """The message in ``data``; msgspec.DecodeError (a ValueError) if malformed."""
    return _DECODER.decode(data)
