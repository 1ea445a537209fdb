"""Static pre-trade limits (check 3): pure functions of an account, an order and its limits.

Each returns None when the order passes, else ``(reason code, message)``; the
message names the limit and says by how much it is exceeded. Position limits count
open orders at their worst case (any subset of them may fill), like the margin
check, so two orders each within a limit alone cannot breach it together. A
position limit never blocks an order that leaves the worst case no larger (an
account over a lowered limit can always reduce).
"""

from __future__ import annotations

import math
from collections import deque

from actors.pretrade_config import PretradeLimits
from actors.pretrade_messages import ReasonCode
from risk.account import Account
from risk.model import RiskModel

Failure = tuple[str, str]


class RateWindow:
    """Accepted-order times of one account (monotonic s) within the last second."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def count(self, now: float) -> int:
        """Orders accepted in (now - 1 s, now]."""
        times = self.times
        while times and times[0] <= now - 1.0:
            times.popleft()
        return len(times)

    def record(self, now: float) -> None:
        self.times.append(now)


def _worst_abs(held: float, buys: float, sells: float) -> float:
    """Largest |position| any subset of open orders can reach: all buys or all sells fill."""
    return max(abs(held + buys), abs(held + sells))


def _open_sides(account: Account, rows: frozenset[int]) -> dict[int, list[float]]:
    """row -> [held, open buys (>= 0), open sells (<= 0)], contracts, for the table rows in ``rows``.

    O(positions + rows with open orders) of the account (the account keeps its open
    orders summed per row), for the gross limit per underlying.
    """
    out: dict[int, list[float]] = {}
    for r, pos in account.positions.items():
        if r in rows:
            out[r] = [pos.quantity, 0.0, 0.0]
    for r, (buys, sells) in account.open_by_row.items():
        if r in rows:
            entry = out.get(r)
            if entry is None:
                out[r] = [0.0, buys, sells]
            else:
                entry[1], entry[2] = buys, sells
    return out


def _rows_of(model: RiskModel, u: int) -> frozenset[int]:
    """Table rows of underlying ``u``, cached per model (the table is fixed for its life)."""
    cache = _ROWS.get(id(model))
    if cache is None or cache[0] is not model:
        cache = (model, [frozenset(int(r) for r in block.rows) for block in model.blocks])
        _ROWS.clear()  # one model at a time is current; do not keep old ones alive
        _ROWS[id(model)] = cache
    return cache[1][u]


_ROWS: dict[int, tuple[RiskModel, list[frozenset[int]]]] = {}


def check_static(limits: PretradeLimits, account: Account, row: int, quantity: float, price: float,
                 rate: RateWindow | None, now: float) -> Failure | None:
    """Check 3 for an order of ``quantity`` signed contracts of table ``row`` at ``price`` (per unit).

    Order of the sub-checks: restricted instrument, order quantity, order notional,
    price collar, position per instrument, position per underlying, rate throttle.
    ``rate``: the account's window of accepted orders (None = no history yet); ``now``:
    monotonic seconds.
    """
    model = account.model
    table = model.table
    instrument = table.ids[row]
    size = abs(quantity)
    multiplier = model.multiplier_list[row]
    if limits.restricted and instrument in limits.restricted:
        return ReasonCode.RESTRICTED_INSTRUMENT, f"restricted_instrument: {instrument} is on the restricted list"
    if limits.max_order_qty and size > limits.max_order_qty:
        return ReasonCode.MAX_ORDER_QTY, (f"max_order_qty: {size:g} contracts > limit {limits.max_order_qty:g}"
                                          f" (by {size - limits.max_order_qty:g})")
    if limits.max_order_notional:
        notional = size * price * multiplier
        if notional > limits.max_order_notional:
            return ReasonCode.MAX_ORDER_NOTIONAL, (
                f"max_order_notional: {size:g} x {price:g} x {multiplier:g} = {notional:,.2f}"
                f" > limit {limits.max_order_notional:,.2f} (by {notional - limits.max_order_notional:,.2f})")
    if limits.price_collar:
        reference = model.mark_list[row]
        if not (reference > 0.0 and math.isfinite(reference)):
            return ReasonCode.PRICE_COLLAR, f"price_collar: {instrument} has no reference price ({reference})"
        deviation = (price - reference) / reference
        if abs(deviation) > limits.price_collar:
            side = "above" if deviation > 0 else "below"
            return ReasonCode.PRICE_COLLAR, (
                f"price_collar: limit {price:g} is {abs(deviation):.2%} {side} reference {reference:.6g}"
                f" > collar {limits.price_collar:.2%} (by {abs(deviation) - limits.price_collar:.2%})")
    if limits.max_position_instrument or limits.max_position_underlying:
        position = account.positions.get(row)
        held = position.quantity if position is not None else 0.0
        entry = account.open_by_row.get(row)  # = account.open_sides(row)
        buys, sells = (entry[0], entry[1]) if entry is not None else (0.0, 0.0)
        new_buys, new_sells = buys + max(quantity, 0.0), sells + min(quantity, 0.0)
        if limits.max_position_instrument:
            # = _worst_abs(held, buys, sells) and of the new sums, inline (a call per check).
            before = max(abs(held + buys), abs(held + sells))
            after = max(abs(held + new_buys), abs(held + new_sells))
            if after > limits.max_position_instrument and after > before:
                open_same = buys if quantity > 0 else sells
                return ReasonCode.MAX_POSITION_INSTRUMENT, (
                    f"max_position_instrument: {instrument} position could reach {after:g} contracts (held"
                    f" {held:+g}, open orders {open_same:+g}, this order {quantity:+g}) > limit"
                    f" {limits.max_position_instrument:g} (by {after - limits.max_position_instrument:g})")
        if limits.max_position_underlying:
            u = model.block_list[row]
            # Only the underlying's rows count toward its gross limit; the instrument's row is one of them.
            sides = _open_sides(account, _rows_of(model, u))
            before = math.fsum(_worst_abs(*v) for v in sides.values())
            sides[row] = [held, new_buys, new_sells]
            after = math.fsum(_worst_abs(*v) for v in sides.values())
            if after > limits.max_position_underlying and after > before:
                return ReasonCode.MAX_POSITION_UNDERLYING, (
                    f"max_position_underlying: {table.underlying_ids[u]} gross position could reach {after:g}"
                    f" contracts (now {before:g} with open orders, this order {quantity:+g}) > limit"
                    f" {limits.max_position_underlying:g} (by {after - limits.max_position_underlying:g})")
    if limits.max_orders_per_s and rate is not None:
        times = rate.times  # = rate.count(now), inline (a call per check)
        while times and times[0] <= now - 1.0:
            times.popleft()
        count = len(times)
        if count >= limits.max_orders_per_s:
            return ReasonCode.RATE_THROTTLE, (
                f"rate_throttle: {count + 1} orders in 1 s > limit {limits.max_orders_per_s} per s (by 1)")
    return None
