"""The overlay decides: one pre-trade check split between the FPGA risk filter and software.

:func:`decide` is :meth:`actors.fpga_shadow.FpgaPath.check` on the ``"fpga"`` path.
The checks the filter implements (kill switches, the five static limits it holds,
margin: ``FILTER_CODES``) are decided by the overlay's risk filter through the
unchanged pynq driver (``RiskFilterDriver.check``); the others stay in the
software hook (:class:`actors.pretrade.PreTradeChecker`'s own check functions):
request sanity, the account tier (reduce-only / liquidation-only), the restricted
list, the rate throttle and stale market data. Both sets of checks run and the
failure that comes first in the hook's order (``ReasonCode.ALL``) decides, so an
order gets the reason code the software hook alone would give it: the filter
reports its first failure in that same order, the software its first, and the
earlier of the two is the first overall.

What the filter cannot hold (``risk_filter_host.order_fields`` refuses with
ValueError: a profile that is not scenario-only, more than 27 scenarios, a figure
outside its formats; or the account's margin cannot be computed) is decided by the
software hook for that order (``fallback``, counted, the latest reason kept). A
device error or timeout (the driver's ``TimeoutError``: ap_done never seen) rejects
the order with :data:`FPGA_ERROR` (fail closed, logged at ERROR, rate-limited),
except for an account in ``pretrade.fail_open_accounts``, whose order the software
hook then decides (``failed_open``).

The shard's bookkeeping stays in software: an accepted order reserves margin through
the checker (``_accept``: the reservation, its TTL, the rate window) exactly as on
the software path, a replace releases the replaced order while the new one is judged
and restores it if rejected. A decision the filter made carries its figures (IM
after from the filter, IM before, equity and limit from the account) but no binding
scenario label (the filter does not report which lane was worst).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING

from actors.fpga_shadow import FILTER_CODES
from actors.pretrade import PreTradeChecker, _Reject
from actors.pretrade_config import PretradeLimits
from actors.pretrade_limits import check_static
from actors.pretrade_messages import CheckRequest, Decision, ReasonCode
from fpga_overlay.risk_filter_host import FilterLimits, KillFlags, order_fields, supported
from risk.account import Account
from risk.errors import RiskModelError

if TYPE_CHECKING:
    from actors.fpga_shadow import FpgaPath

log = logging.getLogger("riskd.fpga")


class _Loud:
    """ERROR lines, the first ``burst`` in full, then one per ``interval_s`` (monotonic s)
    with the count not logged: a dead device under 100k orders/s must not flood the log."""

    def __init__(self, burst: int = 20, interval_s: float = 10.0) -> None:
        self.burst, self.interval_s = burst, interval_s
        self.count, self._suppressed, self._last = 0, 0, -math.inf

    def error(self, msg: str, *args: object) -> None:
        self.count += 1
        now = time.monotonic()
        if self.count > self.burst and now - self._last < self.interval_s:
            self._suppressed += 1
            return
        if self._suppressed:
            msg, self._suppressed = msg + f" ({self._suppressed} similar not logged)", 0
        self._last = now
        log.error(msg, *args, extra={"event": "fpga_error"})


_loud = _Loud()

#: Reason code of an order rejected because the overlay failed (raised or timed out).
FPGA_ERROR = "fpga_error"
NAN = math.nan
#: Position of each reason code in the hook's order (the first failure decides).
_ORDER = {code: i for i, code in enumerate(ReasonCode.ALL)}
_AFTER_ALL = len(ReasonCode.ALL)
_TIER = _ORDER[ReasonCode.REDUCE_ONLY]  # = LIQUIDATION_ONLY's: one tier check, two codes
_STALE = _ORDER[ReasonCode.STALE_MARKET]
#: Limits objects seen -> (the filter's limits, the software-only static limits).
_LIMITS_CACHE_MAX = 1024


def split_limits(path: "FpgaPath", limits: PretradeLimits) -> tuple[FilterLimits, PretradeLimits | None]:
    """The limits the filter applies, and those that stay in software (the restricted
    list and the rate throttle; None when both are off), cached per limits object."""
    cache: dict[int, tuple[PretradeLimits, FilterLimits, PretradeLimits | None]] = path.__dict__.setdefault(
        "_limits_cache", {})
    hit = cache.get(id(limits))
    if hit is not None and hit[0] is limits:
        return hit[1], hit[2]
    if len(cache) >= _LIMITS_CACHE_MAX:
        cache.clear()
    on_filter = FilterLimits(max_order_qty=limits.max_order_qty, max_order_notional=limits.max_order_notional,
                             price_collar=limits.price_collar,
                             max_position_instrument=limits.max_position_instrument,
                             max_position_underlying=limits.max_position_underlying)
    in_software = (PretradeLimits(restricted=limits.restricted, max_orders_per_s=limits.max_orders_per_s)
                   if limits.restricted or limits.max_orders_per_s else None)
    cache[id(limits)] = (limits, on_filter, in_software)
    return on_filter, in_software


def decide(path: "FpgaPath", checker: PreTradeChecker, request: CheckRequest, received_ns: int = 0) -> Decision:
    """Decide one order with the overlay's risk filter and the software-only checks."""
    received_ns = received_ns or time.monotonic_ns()
    try:
        account, row = checker._sanity(request)
    except _Reject:
        path.software_only += 1
        return checker.check(request, received_ns)  # request sanity is the software's, and first
    why = supported(account)
    if why:
        return _fallback(path, checker, request, received_ns, why)
    settings = checker.settings
    model = account.model
    underlying = model.table.underlying_ids[int(model.block_of[row])]
    quantity = request.side * request.quantity
    switches = checker.kill_switches
    kills = KillFlags(global_=switches.engaged_global() is not None,
                      account=switches.engaged_account(account.id) is not None,
                      underlying=switches.engaged_underlying(underlying) is not None)
    limits = settings.limits_for(account.id)
    on_filter, in_software = split_limits(path, limits)
    replaced = account.orders.get(request.replaces) if request.replaces else None
    if replaced is not None:
        account.release(request.replaces)  # judge the replacement without it (never both live)
    try:
        try:
            record = order_fields(account, row, quantity, request.limit_price, on_filter, kills,
                                  settings.im_tolerance)
        except (ValueError, RiskModelError) as exc:
            if replaced is not None:
                checker._restore(account, replaced)
                replaced = None
            return _fallback(path, checker, request, received_ns, str(exc))
        figures: list[float] = [NAN, NAN, NAN, NAN, NAN]  # im_before, im_after, marginal, equity, limit
        now = checker._clock()
        first = _software_only(checker, request, account, row, quantity, underlying, in_software, now, figures)
        try:
            hardware = path.backend.check(record)
            if hardware.reason not in FILTER_CODES or hardware.accepted != (hardware.reason == ReasonCode.ACCEPTED):
                raise RuntimeError(f"the filter answered {hardware.reason!r} (accepted={hardware.accepted})")
        except Exception as exc:  # the device: any failure at all fails closed
            path.device_errors += 1
            path.last_error = f"{request.order_id}: {type(exc).__name__}: {exc}"
            if account.id in settings.fail_open_accounts:
                path.failed_open += 1
                _loud.error("fpga risk filter FAILED for %s (%s); fail-open account %s: the software hook"
                              " decides", request.order_id, path.last_error, account.id)
                if replaced is not None:
                    checker._restore(account, replaced)
                    replaced = None
                return checker.check(request, received_ns)
            _loud.error("fpga risk filter FAILED for %s: %s; order REJECTED (fail closed)", request.order_id,
                          path.last_error)
            return _decision(checker, request, False, FPGA_ERROR,
                             f"{FPGA_ERROR}: the FPGA risk filter failed ({type(exc).__name__}: {exc});"
                             " rejected (fail closed)", figures, account, received_ns)
        path.decided += 1
        at = _AFTER_ALL if hardware.accepted else _ORDER[hardware.reason]
        if first is not None and first[0] < at:
            return _decision(checker, request, False, first[1], first[2], figures, account, received_ns)
        if hardware.reason in (ReasonCode.ACCEPTED, ReasonCode.MARGIN):
            _margin_figures(account, hardware.im_after, figures)
        if not hardware.accepted:
            message = _message(checker, request, account, row, quantity, hardware.reason, limits, figures)
            return _decision(checker, request, False, hardware.reason, message, figures, account, received_ns)
        if not request.what_if:
            try:
                checker._accept(request, account, row, quantity, now, replaced)
            except RiskModelError as exc:
                return _decision(checker, request, False, ReasonCode.RISK_UNAVAILABLE,
                                 f"risk_unavailable: margin cannot be computed: {exc}", figures, account,
                                 received_ns)
            replaced = None
        return _decision(checker, request, True, ReasonCode.ACCEPTED, "", figures, account, received_ns)
    finally:
        if replaced is not None:
            checker._restore(account, replaced)


def _software_only(checker: PreTradeChecker, request: CheckRequest, account: Account, row: int, quantity: float,
                   underlying: str, in_software: PretradeLimits | None, now: float,
                   figures: list[float]) -> tuple[int, str, str] | None:
    """The first failing check the filter does not have: (position in the hook's
    order, reason code, message), or None. Tier, restricted list and rate throttle,
    stale market data, in that order (the software hook's functions)."""
    try:
        checker._tier(request, account, row, quantity, figures)
    except _Reject as rejection:
        return _TIER, rejection.reason, rejection.message
    except RiskModelError as exc:  # raised where the tier check runs: a kill switch still comes first
        return _TIER, ReasonCode.RISK_UNAVAILABLE, f"risk_unavailable: margin cannot be computed: {exc}"
    if in_software is not None:
        failure = check_static(in_software, account, row, quantity, request.limit_price,
                               checker._rates.get(account.id), now)
        if failure is not None:
            return _ORDER[failure[0]], failure[0], failure[1]
    try:
        checker._stale(underlying)
    except _Reject as rejection:
        return _STALE, rejection.reason, rejection.message
    return None


def _fallback(path: "FpgaPath", checker: PreTradeChecker, request: CheckRequest, received_ns: int,
              why: str) -> Decision:
    path.fallback += 1
    path.last_fallback = f"{request.order_id}: {why}"
    log.debug("fpga risk filter cannot hold %s (%s): the software hook decides", request.order_id, why)
    return checker.check(request, received_ns)


def _margin_figures(account: Account, im_after: float, figures: list[float]) -> None:
    before = account.initial_margin_with_orders()
    equity, _ = account.equity()
    figures[0], figures[1], figures[2] = before, im_after, im_after - before
    figures[3], figures[4] = equity, equity * account.profile.max_utilization


def _message(checker: PreTradeChecker, request: CheckRequest, account: Account, row: int, quantity: float,
             reason: str, limits: PretradeLimits, figures: list[float]) -> str:
    """The rejection's text: the software's own wording for a kill switch (who, why),
    else the limit and the order's figures, marked as the filter's decision."""
    if reason.startswith("kill_switch"):
        model = account.model
        try:
            checker._kill_switches(request, model.table.underlying_ids[int(model.block_of[row])])
        except _Reject as rejection:
            return f"{rejection.message} (fpga risk filter)"
    table = account.model.table
    size, price = abs(quantity), request.limit_price
    text = {
        ReasonCode.KILL_SWITCH_GLOBAL: "all trading halted",
        ReasonCode.KILL_SWITCH_ACCOUNT: f"account {account.id} halted",
        ReasonCode.KILL_SWITCH_UNDERLYING: f"{request.instrument}'s underlying halted",
        ReasonCode.MAX_ORDER_QTY: f"{size:g} contracts > limit {limits.max_order_qty:g}",
        ReasonCode.MAX_ORDER_NOTIONAL: (f"{size:g} x {price:g} x {float(table.multiplier[row]):g} > limit"
                                        f" {limits.max_order_notional:,.2f}"),
        ReasonCode.PRICE_COLLAR: (f"limit {price:g} outside reference {float(account.model.valuation.mark[row]):.6g}"
                                  f" +- {limits.price_collar:.2%}"),
        ReasonCode.MAX_POSITION_INSTRUMENT: (f"{request.instrument} position could exceed"
                                             f" {limits.max_position_instrument:g} contracts with this order"
                                             f" {quantity:+g} (open orders counted)"),
        ReasonCode.MAX_POSITION_UNDERLYING: (f"gross position of {request.instrument}'s underlying could exceed"
                                             f" {limits.max_position_underlying:g} contracts with this order"
                                             f" {quantity:+g} (open orders counted)"),
        ReasonCode.MARGIN: (f"initial margin after the order {figures[1]:,.2f} > limit {figures[4]:,.2f} (equity"
                            f" {figures[3]:,.2f} x max utilization {account.profile.max_utilization:g}); the order"
                            f" adds {figures[2]:,.2f} (before {figures[0]:,.2f})"),
    }[reason]
    return f"{reason}: {text} (fpga risk filter)"


def _decision(checker: PreTradeChecker, request: CheckRequest, accepted: bool, reason: str, message: str,
              figures: list[float], account: Account, received_ns: int) -> Decision:
    """The Decision, counted like the checker's own (what-ifs apart)."""
    counters = checker.what_if_counters if request.what_if else checker.counters
    counters[reason] = counters.get(reason, 0) + 1
    return Decision(request.order_id, accepted, reason, message, *figures, "", account.tier.name.lower(),
                    received_ns, time.monotonic_ns())

