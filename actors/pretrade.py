"""The pre-trade check: "may this order go?", decided on a position shard's own state.

No sockets, no Ray: the position actor wraps a :class:`PreTradeChecker` around its
:class:`~actors.position_shard.PositionShard` and answers :class:`CheckRequest`s
from its socket thread. Checks run in the order of issue 5 and the first failure
decides (codes in :class:`ReasonCode`):

0. the request itself: side +-1, quantity > 0, a finite limit price > 0, a known
   account and instrument, an order id that is not already open (a change of an
   open order is a replace: ``replaces`` = its id);
1. kill switches: global, the account's, the instrument's underlying's;
2. account tier: in REDUCE_ONLY an order is rejected if it increases risk judged on
   the risk arrays, i.e. its marginal IM (open orders counted at their worst side,
   so an order never gets hedge credit) exceeds ``im_tolerance``: a leg reduction
   that adds vega or direction in some scenario raises IM there and is rejected.
   It is also rejected if it flips the instrument's position (held plus the open
   orders on the order's side), whatever the IM says. PARTIAL_ / FULL_LIQUIDATION
   reject every order that is not ``liquidation``;
3. static limits (actors.pretrade_limits);
4. stale market data: the underlying's price or vol older than ``stale_after_s``
   (an unknown age is stale);
5. margin: IM after the order, counting open-order reservations, must stay within
   equity x the profile's max_utilization, unless the order adds no margin
   (marginal IM <= ``im_tolerance``): an account over its limit can always reduce.
   Margin that cannot be computed (RiskModelError, a non-finite figure) rejects
   with ``risk_unavailable``: fail closed.

Reservations. An accepted order reserves margin at once as if filled on its worst
side: ``account.reserve(order_id, ...)``, the very key (OrderID) the drop copy
reports the order under, so the drop copy's events replace it (New / Replaced
reserve the leaves quantity under that key), or release it (filled, canceled,
rejected, expired). While the drop copy has said nothing about the order, the
reservation is the checker's and expires after ``reservation_ttl_s``
(:meth:`PreTradeChecker.expire`); once the drop copy has reported the order it
owns the reservation, which never expires by TTL. The checker learns that from
:meth:`PreTradeChecker.drop_copy_seen` (or :meth:`PreTradeChecker.on_order`, which
applies the event to the shard and calls it): the position actor MUST route every
drop-copy order event through one of them (but pending_cancel / pending_replace,
which say nothing of the leaves), because a report identical to the
reservation (the usual "new") leaves the account untouched and is otherwise
invisible. As a fallback, a reservation that is no longer the object the checker
created (the shard re-reserved or released it) is never released by TTL either.

A replace releases the replaced order's reservation while the new one is judged
(the two are never both live), then reserves the new one if accepted, or
restores the old one if rejected (the old order is still working).
"""

from __future__ import annotations

import heapq
import math
import time
from typing import Callable

import msgspec

from actors.kill_switch import KillSwitches
from actors.messages import AccountRisk, HeldEvent, OrderMsg
from actors.position_shard import PositionShard
from actors.pretrade_config import PretradeLimits, PretradeSettings
from actors.pretrade_limits import RateWindow, check_static
from actors.pretrade_messages import CheckRequest, Decision, ReasonCode
from risk.account import Account, OpenOrder, WhatIf
from risk.errors import RiskModelError
from risk.tiers import Tier

__all__ = ["PreTradeChecker", "ReasonCode", "PendingReservation"]

NAN = math.nan
#: Drop-copy statuses that do not hand an order's reservation over to the drop copy.
_NOT_A_HANDOVER = frozenset({"pending_cancel", "pending_replace"})
#: Tier -> its name in a decision ("reduce_only"); Enum.name is a property lookup per call.
_TIER_NAMES = {tier: tier.name.lower() for tier in Tier}
_REDUCE_ONLY = int(Tier.REDUCE_ONLY)
_ACCEPTED = ReasonCode.ACCEPTED


class PendingReservation(msgspec.Struct):
    """A reservation the checker made that the drop copy has not reported yet.

    ``expiry``: monotonic s; ``order``: the OpenOrder the checker put in the account
    (identity tells whether the drop copy has replaced it since). ``previous``: for
    a replace of an order the drop copy had reported, that order's reservation: if
    the drop copy never reports the replace, the old order is presumably still
    working, so expiry restores it rather than leave the order unreserved.
    """

    account: str
    expiry: float
    order: OpenOrder
    previous: OpenOrder | None = None


class _Reject(Exception):
    """A check failed: its reason code and message (control flow inside :meth:`check`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class PreTradeChecker:
    """Pre-trade decisions on one shard's accounts.

    ``clock``: monotonic seconds (TTL and rate window). ``market_age``: seconds since
    the underlying's price or vol last updated, by underlying id (None = unknown,
    which is stale); only called when ``stale_after_s`` is on. Not thread-safe: call
    it from the thread that owns the shard.
    """

    def __init__(self, shard: PositionShard, settings: PretradeSettings, kill_switches: KillSwitches, *,
                 clock: Callable[[], float] = time.monotonic,
                 market_age: Callable[[str], float | None] | None = None) -> None:
        self.shard = shard
        self.settings = settings
        self.kill_switches = kill_switches
        self._clock = clock
        self._market_age = market_age
        #: Decisions per reason code, for /metrics.
        self.counters: dict[str, int] = {code: 0 for code in ReasonCode.ALL}
        #: What-if decisions (``CheckRequest.what_if``) per reason code: never reserved.
        self.what_if_counters: dict[str, int] = {}
        #: order id -> the checker's reservation, until the drop copy reports the order.
        self.pending: dict[str, PendingReservation] = {}
        self._expiries: list[tuple[float, str]] = []  # heap of (expiry s, order id); stale entries skipped
        self._rates: dict[str, RateWindow] = {}

    # ----- the check -----------------------------------------------------------
    def check(self, request: CheckRequest, received_ns: int = 0) -> Decision:
        """Decide one order. ``received_ns``: monotonic ns when its bytes arrived (0 = now)."""
        return self._decide(request, received_ns or time.monotonic_ns())

    def reject(self, order_id: str, reason: str, message: str, received_ns: int = 0, tier: str = "") -> Decision:
        """A rejection built outside the checks (an undecodable request, an unexpected
        error in the socket loop), counted like the others."""
        decision = Decision(order_id, False, reason, message, NAN, NAN, NAN, NAN, NAN, "", tier,
                            received_ns or time.monotonic_ns(), time.monotonic_ns())
        self.counters[reason] = self.counters.get(reason, 0) + 1
        return decision

    def _decide(self, request: CheckRequest, received_ns: int) -> Decision:
        """:meth:`check`, counted per reason code."""
        # One frame for the common path (the checks' methods below raise the rejections,
        # and run whole when a fast test cannot decide): on the shard's thread, every
        # call and object a check touches costs again after each idle wake-up.
        figures: list[float] = [NAN, NAN, NAN, NAN, NAN]  # im_before, im_after, marginal, equity, limit
        label, tier_name = "", ""
        replaced: OpenOrder | None = None
        account: Account | None = None
        try:
            order_id, side, size, price = request.order_id, request.side, request.quantity, request.limit_price
            account = self.shard.accounts.get(request.account)
            row = account.model.table.index.get(request.instrument) if account is not None else None
            if (row is None or not order_id or (side != 1 and side != -1) or not 0.0 < size < math.inf
                    or not 0.0 < price < math.inf or (order_id in account.orders  # type: ignore[union-attr]
                                                      and request.replaces != order_id)):
                account = None
                account, row = self._sanity(request)  # raises the first failure, in the order of the checks
            tier = account.tier
            tier_name = _TIER_NAMES[tier]
            model = account.model
            u = model.block_list[row]
            quantity = side * size
            switches = self.kill_switches
            if (type(switches) is not KillSwitches or switches.global_switch is not None or switches.accounts
                    or switches.underlyings):
                self._kill_switches(request, model.table.underlying_ids[u])
            if request.replaces:
                # Judge the replacement without the order it replaces (never both live).
                replaced = account.orders.get(request.replaces)
                if replaced is not None:
                    account.release(request.replaces)
            now = self._clock()
            # Tiers below reduce-only pass (the checks of _tier need a what-if only there).
            what_if = self._tier(request, account, row, quantity, figures) if tier >= _REDUCE_ONLY else None
            settings = self.settings
            limits = settings.accounts.get(account.id, settings.limits) if settings.accounts else settings.limits
            failure = check_static(limits, account, row, quantity, price, self._rates.get(account.id), now)
            if failure is not None:
                raise _Reject(*failure)
            bound = settings.stale_after_s
            if bound:
                underlying = model.table.underlying_ids[u]
                age = self._market_age(underlying) if self._market_age is not None else None
                if age is None or not age <= bound:  # NaN is stale too
                    self._stale_reject(underlying, age, bound)
            if what_if is None:
                what_if = account.what_if(row, quantity)
                figures[0] = before = what_if.initial_margin_before
                figures[1] = after = what_if.initial_margin_after
                figures[2] = what_if.marginal_im
                if not (math.isfinite(before) and math.isfinite(after)):
                    raise RiskModelError(f"initial margin is not finite ({before} -> {after})")
            after = what_if.initial_margin_after
            binding = what_if.binding_scenario
            if binding >= 0 and after > 0.0:
                label = model.blocks[u].scenarios.labels[binding]
            equity = account.equity()[0]
            limit = equity * account.profile.max_utilization
            figures[3], figures[4] = equity, limit
            if not (math.isfinite(equity) and math.isfinite(after)):
                raise RiskModelError(f"equity {equity} / initial margin after {after}")
            if what_if.marginal_im > settings.im_tolerance and after > limit:
                self._margin(account, what_if, label, figures)  # raises the margin rejection
            if not request.what_if:  # a what-if leaves no trace (the replaced order is restored below)
                self._accept(request, account, row, quantity, now, replaced, limits)
                replaced = None
            counters = self.what_if_counters if request.what_if else self.counters
            counters[_ACCEPTED] = counters.get(_ACCEPTED, 0) + 1
            return Decision(order_id, True, _ACCEPTED, "", *figures, label, tier_name,
                            received_ns, time.monotonic_ns())
        except _Reject as rejection:
            reason, message = rejection.reason, rejection.message
        except RiskModelError as exc:
            reason, message = ReasonCode.RISK_UNAVAILABLE, f"risk_unavailable: margin cannot be computed: {exc}"
        finally:
            if replaced is not None and account is not None:
                self._restore(account, replaced)
        counters = self.what_if_counters if request.what_if else self.counters
        counters[reason] = counters.get(reason, 0) + 1
        return Decision(request.order_id, False, reason, message, *figures, label, tier_name,
                        received_ns, time.monotonic_ns())

    # ----- the checks ----------------------------------------------------------
    def _sanity(self, request: CheckRequest) -> tuple[Account, int]:
        if not request.order_id:
            raise _Reject(ReasonCode.BAD_REQUEST, "bad_request: order_id is empty")
        if request.side not in (1, -1):
            raise _Reject(ReasonCode.BAD_REQUEST,
                          f"bad_request: side must be +1 (buy) or -1 (sell), got {request.side}")
        if not (0.0 < request.quantity < math.inf):
            raise _Reject(ReasonCode.BAD_REQUEST,
                          f"bad_request: quantity must be > 0 contracts, got {request.quantity}")
        if not (0.0 < request.limit_price < math.inf):
            raise _Reject(ReasonCode.BAD_REQUEST,
                          f"bad_request: limit_price must be finite and > 0, got {request.limit_price}")
        account = self.shard.accounts.get(request.account)
        if account is None:
            raise _Reject(ReasonCode.UNKNOWN_ACCOUNT, f"unknown_account: {request.account!r} is not on this shard")
        row = account.model.table.index.get(request.instrument)
        if row is None:
            raise _Reject(ReasonCode.UNKNOWN_INSTRUMENT, f"unknown_instrument: {request.instrument!r}")
        if request.order_id in account.orders and request.replaces != request.order_id:
            raise _Reject(ReasonCode.BAD_REQUEST, f"bad_request: order {request.order_id!r} is already open"
                                                  " (to change it, send a replace)")
        return account, row

    def _kill_switches(self, request: CheckRequest, underlying: str) -> None:
        switches = self.kill_switches
        if (hit := switches.engaged_global()) is not None:
            raise _Reject(ReasonCode.KILL_SWITCH_GLOBAL,
                          f"kill_switch_global: all trading halted by {hit.by or '?'}: {hit.reason}")
        if (hit := switches.engaged_account(request.account)) is not None:
            raise _Reject(ReasonCode.KILL_SWITCH_ACCOUNT,
                          f"kill_switch_account: account {request.account} halted by {hit.by or '?'}: {hit.reason}")
        if (hit := switches.engaged_underlying(underlying)) is not None:
            raise _Reject(ReasonCode.KILL_SWITCH_UNDERLYING,
                          f"kill_switch_underlying: {underlying} halted by {hit.by or '?'}: {hit.reason}")

    def _tier(self, request: CheckRequest, account: Account, row: int, quantity: float,
              figures: list[float]) -> WhatIf | None:
        tier = account.tier
        if tier >= Tier.PARTIAL_LIQUIDATION and not request.liquidation:
            raise _Reject(ReasonCode.LIQUIDATION_ONLY, f"liquidation_only: account {account.id} is in tier"
                                                       f" {tier.name.lower()}: only liquidation orders are accepted")
        if tier != Tier.REDUCE_ONLY:
            return None
        position = account.positions.get(row)
        held = position.quantity if position is not None else 0.0
        # Open orders on the order's side may all fill first: count them toward the flip.
        same_side = math.fsum(o.quantity for o in account.orders.values() if o.row == row and o.quantity * quantity > 0)
        after = held + same_side + quantity
        if held != 0.0 and after * held < 0.0:
            raise _Reject(ReasonCode.REDUCE_ONLY, (
                f"reduce_only: account {account.id} is reduce-only and the order flips {request.instrument} from"
                f" {held:+g} to {after:+g} contracts (held {held:+g}, open orders {same_side:+g},"
                f" this order {quantity:+g}; over by {abs(after):g})"))
        what_if = self._what_if(account, row, quantity, figures)
        tolerance = self.settings.im_tolerance
        if what_if.marginal_im > tolerance:
            label = self._label(account, account.model.block_list[row], what_if)
            raise _Reject(ReasonCode.REDUCE_ONLY, (
                f"reduce_only: account {account.id} is reduce-only and the order increases risk: initial margin"
                f" {what_if.initial_margin_before:,.2f} -> {what_if.initial_margin_after:,.2f}"
                f" (by {what_if.marginal_im:,.2f} > tolerance {tolerance:g}; scenario {label!r})"))
        return what_if

    def _stale(self, underlying: str) -> None:
        bound = self.settings.stale_after_s
        if not bound:
            return
        age = self._market_age(underlying) if self._market_age is not None else None
        self._stale_reject(underlying, age, bound)

    @staticmethod
    def _stale_reject(underlying: str, age: float | None, bound: float) -> None:
        """Raise the stale_market rejection if ``age`` (s; None = unknown) is past ``bound``."""
        if age is None:
            raise _Reject(ReasonCode.STALE_MARKET, f"stale_market: {underlying} price/vol age is unknown"
                                                   f" (limit {bound:g} s)")
        if not age <= bound:  # NaN is stale too
            raise _Reject(ReasonCode.STALE_MARKET, f"stale_market: {underlying} price/vol is {age:.3g} s old"
                                                   f" > limit {bound:g} s (by {age - bound:.3g} s)")

    def _margin(self, account: Account, what_if: WhatIf, label: str, figures: list[float]) -> None:
        equity, _ = account.equity()
        utilization = account.profile.max_utilization
        limit = equity * utilization
        figures[3], figures[4] = equity, limit
        if not (math.isfinite(equity) and math.isfinite(what_if.initial_margin_after)):
            raise RiskModelError(f"equity {equity} / initial margin after {what_if.initial_margin_after}")
        if what_if.marginal_im > self.settings.im_tolerance and what_if.initial_margin_after > limit:
            raise _Reject(ReasonCode.MARGIN, (
                f"margin: initial margin after the order {what_if.initial_margin_after:,.2f} > limit {limit:,.2f}"
                f" (equity {equity:,.2f} x max utilization {utilization:g}) by"
                f" {what_if.initial_margin_after - limit:,.2f}; the order adds {what_if.marginal_im:,.2f}"
                f" (before {what_if.initial_margin_before:,.2f}; scenario {label!r})"))

    def _what_if(self, account: Account, row: int, quantity: float, figures: list[float]) -> WhatIf:
        what_if = account.what_if(row, quantity)
        figures[0], figures[1], figures[2] = (what_if.initial_margin_before, what_if.initial_margin_after,
                                              what_if.marginal_im)
        if not (math.isfinite(what_if.initial_margin_before) and math.isfinite(what_if.initial_margin_after)):
            raise RiskModelError(f"initial margin is not finite ({what_if.initial_margin_before} ->"
                                 f" {what_if.initial_margin_after})")
        return what_if

    @staticmethod
    def _label(account: Account, u: int, what_if: WhatIf) -> str:
        if what_if.binding_scenario < 0 or what_if.initial_margin_after <= 0.0:
            return ""
        return account.model.blocks[u].scenarios.labels[what_if.binding_scenario]

    # ----- reservations ----------------------------------------------------------
    def _accept(self, request: CheckRequest, account: Account, row: int, quantity: float, now: float,
                replaced: OpenOrder | None, limits: PretradeLimits | None = None) -> None:
        try:
            account.reserve(request.order_id, row, quantity, request.limit_price)
        except RiskModelError:
            account.release(request.order_id)  # never a half-made reservation for a rejected order
            raise
        # The replaced order's reservation is worth restoring only if the drop copy owned it:
        # one of the checker's own would have expired before this one anyway.
        previous = replaced if replaced is not None and self.pending.pop(replaced.order_id, None) is None else None
        ttl = self.settings.reservation_ttl_s
        expiry = now + ttl if ttl > 0.0 else math.inf
        self.pending[request.order_id] = PendingReservation(account.id, expiry, account.orders[request.order_id],
                                                            previous)
        if ttl > 0.0:
            heapq.heappush(self._expiries, (expiry, request.order_id))
        if limits is None:
            limits = self.settings.limits_for(account.id)
        if limits.max_orders_per_s:
            rate = self._rates.get(account.id)
            if rate is None:
                rate = self._rates[account.id] = RateWindow()
            rate.times.append(now)

    def _restore(self, account: Account, order: OpenOrder) -> None:
        account.reserve(order.order_id, order.row, order.quantity, order.limit_price)
        entry = self.pending.get(order.order_id)
        if entry is not None:
            entry.order = account.orders[order.order_id]  # the new object is still the checker's

    def expire(self, now: float | None = None, limit: int = 0) -> list[tuple[str, str]]:
        """Release the checker's reservations whose TTL ran out (``now``: monotonic s;
        None = the clock), at most ``limit`` of them (0 = all: a sweep between two checks
        must stay short; :meth:`expiry_due` says whether more are due). Returns
        (account, order id) of each one released: their accounts' risk changed
        (publish it)."""
        now = self._clock() if now is None else now
        released: list[tuple[str, str]] = []
        heap = self._expiries
        while heap and heap[0][0] <= now and not (limit and len(released) >= limit):
            expiry, order_id = heapq.heappop(heap)
            entry = self.pending.get(order_id)
            if entry is None or entry.expiry != expiry:
                continue  # reported by the drop copy, or re-checked since: a stale heap entry
            del self.pending[order_id]
            account = self.shard.accounts.get(entry.account)
            # Only if the reservation is still the one the checker made: else the drop copy owns it.
            if account is not None and account.orders.get(order_id) is entry.order:
                account.release(order_id)
                if entry.previous is not None:
                    self._restore(account, entry.previous)
                released.append((entry.account, order_id))
        return released

    def expiry_due(self, now: float | None = None) -> bool:
        """True if some reservation's TTL has run out (or a stale heap entry is due)."""
        now = self._clock() if now is None else now
        return bool(self._expiries) and self._expiries[0][0] <= now

    def drop_copy_seen(self, order_id: str) -> None:
        """The drop copy reported this order: its reservation is the drop copy's from now
        on (no TTL). Call it for every drop-copy order event but pending_cancel and
        pending_replace (:meth:`on_order` does)."""
        self.pending.pop(order_id, None)

    def on_order(self, message: OrderMsg) -> AccountRisk | HeldEvent | None:
        """Apply a drop-copy order event to the shard and hand the order to the drop copy."""
        result = self.shard.on_order(message)
        # A pending cancel / replace says nothing of the order's leaves (the shard ignores
        # it too): a replace the venue then refuses must still restore the old reservation.
        if not isinstance(result, HeldEvent) and message.status not in _NOT_A_HANDOVER:
            self.drop_copy_seen(message.order_id)
        return result

    def state(self) -> dict[str, object]:
        """Counters, pending reservations and kill switches, for status and /metrics."""
        return {"counters": dict(self.counters), "what_if_counters": dict(self.what_if_counters),
                "pending_reservations": len(self.pending),
                "kill_switches": self.kill_switches.state()}
