"""Messages of the data plane: msgspec Structs carried over ZeroMQ between actors.

Every hot-path message is ``array_like`` (the fastest msgspec encoding measured)
and tagged, so one socket can carry several kinds and a decoder of the union
tells them apart. Every message that crosses a stage carries :class:`Stamps`:
monotonic-clock nanoseconds (``time.monotonic_ns``) of the stages it passed, 0
for a stage not (yet) passed. Monotonic clocks are comparable between processes
on one host, which is where the latency budget is measured.
"""

from __future__ import annotations

from typing import Union

import msgspec

from risk.instruments import MarketSnapshot


class Stamps(msgspec.Struct, array_like=True):
    """Monotonic ns at each stage a fill passes: drop-copy bytes read, parsed into a
    Fill, sent by the ingest actor, received by the position actor, applied with
    margin recomputed, and AccountRisk published."""

    read_ns: int = 0
    parsed_ns: int = 0
    routed_ns: int = 0
    received_ns: int = 0
    applied_ns: int = 0
    published_ns: int = 0


class FillMsg(msgspec.Struct, tag="fill", array_like=True):
    """A position change from the drop copy (see fix.dropcopy.Fill for the fields).

    ``quantity``: signed contracts (buy > 0); ``price``: per unit; ``kind``: trade,
    bust, correction_reversal or correction; ``seq``: drop-copy MsgSeqNum;
    ``trade_date``: YYYYMMDD the ExecID is unique within.
    """

    exec_id: str
    kind: str
    account: str
    symbol: str
    quantity: float
    price: float
    order_id: str
    cl_ord_id: str
    ref_exec_id: str
    seq: int
    stamps: Stamps
    trade_date: str = ""


class OrderMsg(msgspec.Struct, tag="order", array_like=True):
    """An order's state from the drop copy (see fix.dropcopy.OrderEvent).

    ``side``: +1 buy, -1 sell; quantities unsigned contracts; ``price`` per unit.
    """

    exec_id: str
    status: str
    account: str
    symbol: str
    side: int
    order_qty: float
    leaves_qty: float
    cum_qty: float
    price: float
    order_id: str
    cl_ord_id: str
    orig_cl_ord_id: str
    seq: int
    stamps: Stamps


class CollateralMsg(msgspec.Struct, tag="collateral", array_like=True):
    """Set an account's cash or collateral value (currency), e.g. after a deposit."""

    account: str
    cash: float
    seq: int = 0


class AccountRisk(msgspec.Struct, tag="risk", array_like=True):
    """An account's margin state, published when it changes (currency unless said).

    ``margin_ratio``: MM / equity (fraction; inf when equity <= 0 with margin).
    ``tier``: normal, margin_call, reduce_only, partial_liquidation,
    full_liquidation. ``top_driver``: the instrument losing most in the binding
    scenario. ``last_seq``: the drop-copy MsgSeqNum of the last fill applied.
    ``model_version``: the risk arrays it was computed on.
    """

    account: str
    equity: float
    initial_margin: float
    maintenance_margin: float
    initial_margin_with_orders: float
    margin_ratio: float
    tier: str
    binding_underlying: str
    binding_scenario: str
    top_driver: str
    last_seq: int
    model_version: int
    stamps: Stamps


class HeldEvent(msgspec.Struct, tag="held", array_like=True):
    """A fill or order event the position actor cannot apply yet (unknown account or
    instrument): kept, reported, and applied once reference data knows the name."""

    reason: str
    exec_id: str
    account: str
    symbol: str
    seq: int


class MarketUpdate(msgspec.Struct, tag="market", array_like=True):
    """A new market for the position shards to revalue on.

    ``changed``: the underlyings that moved since the previous update (the shards
    reprice only those); ``full``: reprice everything (time passed for all).
    ``version``: increasing; a shard ignores an older one. ``stamps.read_ns``:
    when the first tick of this update arrived (reprice stage start).
    """

    version: int
    full: bool
    changed: tuple[str, ...]
    snapshot: MarketSnapshot
    stamps: Stamps


class ReplayDone(msgspec.Struct, tag="replay_done", array_like=True):
    """End of a replay of the drop-copy events already routed to one shard.

    ``count``: events replayed; ``last_seq``: the drop-copy MsgSeqNum of the last
    one (0 if none): live events up to it were in the replay.
    """

    shard: int
    count: int
    last_seq: int


DataPlaneMessage = Union[FillMsg, OrderMsg, CollateralMsg, AccountRisk, HeldEvent, MarketUpdate, ReplayDone]

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(DataPlaneMessage)


def encode(message: DataPlaneMessage) -> bytes:
    """msgpack bytes of one data-plane message."""
    return _ENCODER.encode(message)


def decode(data: bytes) -> DataPlaneMessage:
    """The message in ``data``; msgspec.DecodeError (a ValueError) if malformed."""
    return _DECODER.decode(data)


def fill_message(fill: object, stamps: Stamps) -> FillMsg:
    """A FillMsg from a fix.dropcopy.Fill (duck-typed: actors may import fix, this
    keeps the schema module free of it)."""
    f = fill
    return FillMsg(f.exec_id, f.kind, f.account, f.symbol, f.quantity, f.price, f.order_id,  # type: ignore[attr-defined]
                   f.cl_ord_id, f.ref_exec_id, f.seq, stamps, f.trade_date)  # type: ignore[attr-defined]


def order_message(event: object, stamps: Stamps) -> OrderMsg:
    """An OrderMsg from a fix.dropcopy.OrderEvent."""
    e = event
    return OrderMsg(e.exec_id, e.status, e.account, e.symbol, e.side, e.order_qty,  # type: ignore[attr-defined]
                    e.leaves_qty, e.cum_qty, e.price, e.order_id, e.cl_ord_id,  # type: ignore[attr-defined]
                    e.orig_cl_ord_id, e.seq, stamps)  # type: ignore[attr-defined]
