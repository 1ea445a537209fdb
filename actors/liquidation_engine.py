"""The liquidation engine's decisions for every account: no sockets, no Ray, no threads.

:class:`LiquidationEngine` is fed AccountRisk messages (from the shards), account
mirrors (positions and cash as the drop copy made them, on the shard's risk
model) and execution reports of its own orders; it emits tier transitions,
margin calls, plans and NewOrderSingles through the callables it is given, and
journals every decision first (actors.liquidation_journal). The actor
(actors.ray_liquidation) owns the threads and calls it from one thread only.

Rounds. In partial liquidation an account gets a round of IOC orders planned by
risk.liquidation.plan_reduction (full liquidation: every position closed). The
next round waits until (1) every order of the round is done (filled, cancelled,
rejected or expired, per the execution reports), (2) the drop copy shows the
round's fills in the account's positions (the positions moved by the filled
quantities since the plan; in these tiers the pre-trade hook lets no other order
through), or ``settle_timeout_s`` passed, and (3) ``cooldown_s`` passed since the
round began. It is then re-planned from the drop copy's positions: an account
back under the target gets nothing more.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from typing import Callable, Protocol

import msgspec

from actors.liquidation_config import LiquidationSettings
from actors.liquidation_journal import (LiquidationJournal, MarginCallRecord, OrderRecord, ReportRecord, RoundRecord,
                                        TransitionRecord)
from actors.messages import AccountRisk
from fix.order_entry import NewOrder
from risk.account import Account
from risk.liquidation import Plan, book_from_account, plan_full, plan_reduction
from risk.margin_call import MarginCall, TierTransition, margin_call
from risk.model import RiskModel
from risk.params import MarginParams
from risk.stress import stress_account, stress_moves, stress_pnl_per_contract
from risk.tiers import Tier

log = logging.getLogger("riskd.liquidation")

TIERS = {t.name.lower(): t for t in Tier}
TERMINAL = frozenset({"filled", "canceled", "rejected", "expired", "done_for_day"})
#: Relative difference between a mirror's equity / MM and its AccountRisk's beyond
#: which the mirror is stale (another fill or deposit reached the shard since).
MIRROR_TOLERANCE = 1e-9


def liquidation_cl_ord_id(prefix: str, account: str, round_: int, leg: int) -> str:
    """The deterministic ClOrdID of leg ``leg`` of round ``round_`` of ``account``."""
    return f"{prefix}-{account}-{round_}-{leg}"


def is_liquidation_order(cl_ord_id: str, prefix: str = "LIQ") -> bool:
    """True for a ClOrdID the liquidation engine made (the OMS sets CheckRequest.liquidation from it)."""
    return cl_ord_id.startswith(prefix + "-")


class Mirror(msgspec.Struct):
    """An account as the drop copy made it, on the risk model of ``model_version``.

    ``plan``: its partial-liquidation plan, worked out ahead of a breach (the
    planner is a pure function of the account, its model and the target) and
    dropped whenever the account or its model changes.
    """

    account: Account
    last_seq: int
    model_version: int
    plan: Plan | None = None


class _Order(msgspec.Struct):
    record: OrderRecord
    status: str = "sent"
    cum_qty: float = 0.0


class _AccountState(msgspec.Struct):
    tier: Tier = Tier.NORMAL
    risk: AccountRisk | None = None
    mirror: Mirror | None = None
    refresh_asked: tuple[int, int] | None = None
    asked_ns: int | None = None
    round: int = 0
    round_at: float = -math.inf
    before: dict[str, float] = {}
    orders: dict[str, _Order] = {}
    called: bool = False


class Outputs(Protocol):
    def send(self, order: NewOrder) -> None: ...
    def refresh(self, account: str) -> None: ...
    def event(self, kind: str, payload: object) -> None: ...
    def decision(self, start_ns: int, end_ns: int) -> None: ...


class LiquidationEngine:
    """See the module docstring. ``clock``: monotonic seconds; ``wall``: epoch seconds."""

    def __init__(self, settings: LiquidationSettings, params: MarginParams, journal: LiquidationJournal,
                 outputs: Outputs, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        tiers = params.tiers
        if settings.planner.target_ratio >= tiers.partial_liquidation - tiers.hysteresis:
            raise ValueError(f"planner.target_ratio: expected below partial_liquidation - hysteresis"
                             f" ({tiers.partial_liquidation - tiers.hysteresis:g}), found"
                             f" {settings.planner.target_ratio:g}: a plan would never leave the tier")
        self.settings = settings
        self.params = params
        self.journal = journal
        self.out = outputs
        self.clock = clock
        self.wall = wall
        self.accounts: dict[str, _AccountState] = {}
        self.by_cl_ord_id: dict[str, tuple[str, _Order]] = {}
        self.counters = {"risk": 0, "transitions": 0, "margin_calls": 0, "rounds": 0, "orders": 0,
                         "orders_dry_run": 0, "fills": 0, "rejects": 0, "refreshes": 0, "mirrors": 0,
                         "send_errors": 0}
        #: monotonic ns at which the AccountRisk being handled was received (None: not
        #: handling one): a round it causes is timed from there (Outputs.decision).
        self._trigger_ns: int | None = None
        self._stress = {s.name: s for s in params.stress}
        #: (monotonic s, account): when an open round's cooldown or settle timeout ends
        #: (the only changes that no report or mirror announces): what on_timer checks.
        self._due: list[tuple[float, str]] = []
        self._recover()

    # ----- restart ------------------------------------------------------------------
    def _recover(self) -> None:
        """Rebuild tiers, margin calls, rounds and orders from the journal: every journaled
        ClOrdID counts as sent, and an open round waits for its fills (or the settle timeout,
        counted from the restart) before anything is re-planned."""
        restart = self.clock()
        for record in self.journal.records:
            if isinstance(record, TransitionRecord):
                st = self.accounts.setdefault(record.event.account, _AccountState())
                st.tier = TIERS.get(record.event.tier, Tier.FULL_LIQUIDATION)
                if st.tier < Tier.MARGIN_CALL:
                    st.called = False
            elif isinstance(record, MarginCallRecord):
                self.accounts.setdefault(record.event.account, _AccountState()).called = True
            elif isinstance(record, RoundRecord):
                st = self.accounts.setdefault(record.account, _AccountState())
                st.round, st.before, st.orders = record.round, dict(record.before), {}
                st.round_at = restart
            elif isinstance(record, OrderRecord):
                st = self.accounts.setdefault(record.account, _AccountState())
                order = _Order(record, "sent" if not record.dry_run else "dry_run")
                st.orders[record.cl_ord_id] = order
                self.by_cl_ord_id[record.cl_ord_id] = (record.account, order)
            elif isinstance(record, ReportRecord) and record.cl_ord_id in self.by_cl_ord_id:
                order = self.by_cl_ord_id[record.cl_ord_id][1]
                order.status, order.cum_qty = record.status, record.cum_qty
        for account_id, st in self.accounts.items():
            if st.round_at == restart:
                self._schedule(account_id, restart)
        if self.by_cl_ord_id:
            log.info("liquidation journal: %d orders in %d accounts recovered", len(self.by_cl_ord_id),
                     len(self.accounts))

    def _schedule(self, account_id: str, round_at: float) -> None:
        # A little after each deadline, so the check sees it passed despite rounding.
        for delay in (self.settings.cooldown_s, self.settings.settle_timeout_s):
            heapq.heappush(self._due, (round_at + delay + 1e-3, account_id))

    # ----- inputs ---------------------------------------------------------------------
    def on_risk(self, risk: AccountRisk, received_ns: int | None = None) -> None:
        """An AccountRisk from a shard (the tier in it is the shard's, with hysteresis),
        received at ``received_ns`` (monotonic ns; None: now)."""
        self._trigger_ns = received_ns if received_ns is not None else time.monotonic_ns()
        try:
            self._on_risk(risk)
        finally:
            self._trigger_ns = None

    def _on_risk(self, risk: AccountRisk) -> None:
        self.counters["risk"] += 1
        st = self.accounts.get(risk.account)
        if st is None:
            st = self.accounts[risk.account] = _AccountState()
        tier = TIERS.get(risk.tier, Tier.FULL_LIQUIDATION)
        previous, st.tier, st.risk = st.tier, tier, risk
        try:
            if tier < Tier.MARGIN_CALL:
                st.called = False
            elif not self._fresh(st):
                self._ask_refresh(risk.account, st)
            else:
                self._act(risk.account, st)
        finally:
            # Journaled, logged and alerted after the orders it causes are on their way.
            if tier != previous:
                self._transition(risk, previous, tier)

    def on_mirror(self, account_id: str, mirror: Mirror) -> None:
        """A fresh copy of the account from its shard (asked for with ``outputs.refresh``)."""
        st = self.accounts.setdefault(account_id, _AccountState())
        st.mirror, st.refresh_asked = mirror, None
        self.counters["mirrors"] += 1
        if st.risk is not None and st.tier >= Tier.MARGIN_CALL and self._fresh(st):
            self._trigger_ns = st.asked_ns
            try:
                self._act(account_id, st)
            finally:
                self._trigger_ns = st.asked_ns = None
        self._prepare(st)

    def on_model(self, model: RiskModel, version: int) -> None:
        """New risk arrays (a market update): the mirrors of accounts at margin call or
        worse are revalued on them here, so a breach the move causes is planned at once
        rather than after a read from the shard. Their positions are unchanged."""
        for account_id, st in self.accounts.items():
            m = st.mirror
            if m is None or st.tier < Tier.MARGIN_CALL or m.model_version >= version:
                continue
            m.account.rebind(model)
            m.model_version, m.plan = version, None
            if st.risk is not None and self._fresh(st):
                self._act(account_id, st)
            self._prepare(st)

    def _prepare(self, st: _AccountState) -> None:
        """Plan ahead: an account at margin call or worse gets its plan worked out now,
        off the breach's path (the mirror keeps it until it changes)."""
        m = st.mirror
        if m is not None and m.plan is None and st.tier >= Tier.MARGIN_CALL and st.tier < Tier.FULL_LIQUIDATION:
            m.plan = plan_reduction(book_from_account(m.account, self.settings.planner),
                                    self.settings.planner.target_ratio)

    def on_report(self, cl_ord_id: str, status: str, cum_qty: float, exec_id: str, *, sync: bool = True) -> None:
        """An execution report of one of our orders (unknown ClOrdIDs are not ours: ignored).

        ``sync=False``: its journal record is flushed by the next :meth:`flush` (the
        actor flushes once per burst of reports instead of once per report)."""
        found = self.by_cl_ord_id.get(cl_ord_id)
        if found is None:
            return
        account_id, order = found
        if status == order.status and cum_qty == order.cum_qty:
            return
        if cum_qty > order.cum_qty:
            self.counters["fills"] += 1
        if status == "rejected":
            self.counters["rejects"] += 1
            log.error("liquidation order %s rejected", cl_ord_id, extra={"event": "liquidation_reject",
                                                                        "cl_ord_id": cl_ord_id})
        order.status, order.cum_qty = status, max(cum_qty, order.cum_qty)
        self.journal.append(ReportRecord(cl_ord_id=cl_ord_id, status=status, cum_qty=order.cum_qty,
                                         exec_id=exec_id), sync=sync)
        self.out.event("report", {"cl_ord_id": cl_ord_id, "account": account_id, "status": status,
                                  "cum_qty": order.cum_qty})
        st = self.accounts[account_id]
        # Only a report that can close the round (or an account not yet called) is worth
        # the freshness check (a margin summary): most acks leave other orders live.
        if st.risk is not None and (not st.called or self._round_closed(st)) and self._fresh(st):
            self._act(account_id, st)

    def flush(self) -> None:
        """Flush journal records appended without a sync (see :meth:`on_report`)."""
        self.journal.sync()

    def on_timer(self) -> None:
        """Re-check the accounts whose round's cooldown or settle timeout just ended.

        Everything else that can close a round (its reports, the drop copy showing its
        fills) arrives as on_report / on_mirror, which act at once. Checking every
        account in liquidation instead (a margin summary each) held the loop thread
        for milliseconds with hundreds of them, delaying breaches queued behind it."""
        now = self.clock()
        due: dict[str, None] = {}
        while self._due and self._due[0][0] <= now:
            due[heapq.heappop(self._due)[1]] = None
        for account_id in due:
            st = self.accounts.get(account_id)
            if st is not None and st.tier >= Tier.PARTIAL_LIQUIDATION and st.risk is not None and self._fresh(st):
                self._act(account_id, st)

    # ----- decisions ----------------------------------------------------------------
    def _fresh(self, st: _AccountState) -> bool:
        m, r = st.mirror, st.risk
        if m is None or r is None or m.last_seq != r.last_seq or m.model_version != r.model_version:
            return False
        summary = m.account.summary()
        return (_close(summary.equity, r.equity) and _close(summary.maintenance_margin, r.maintenance_margin))

    def _ask_refresh(self, account_id: str, st: _AccountState) -> None:
        key = (st.risk.last_seq, st.risk.model_version) if st.risk is not None else (0, 0)
        if st.refresh_asked == key:
            return
        st.refresh_asked = key
        st.asked_ns = self._trigger_ns
        self.counters["refreshes"] += 1
        self.out.refresh(account_id)

    def _act(self, account_id: str, st: _AccountState) -> None:
        # Orders first: the margin call's stress revaluation must not delay them.
        if st.tier >= Tier.PARTIAL_LIQUIDATION and self._round_closed(st):
            self._round(account_id, st)
        if not st.called:
            self._margin_call(account_id, st)

    def _round_closed(self, st: _AccountState) -> bool:
        now = self.clock()
        if now - st.round_at < self.settings.cooldown_s:
            return False
        if not st.orders:
            return True
        live = [o for o in st.orders.values() if o.status not in TERMINAL and o.status != "dry_run"]
        if live and now - st.round_at < self.settings.settle_timeout_s:
            return False
        if not self._fills_visible(st) and now - st.round_at < self.settings.settle_timeout_s:
            return False
        return True

    def _fills_visible(self, st: _AccountState) -> bool:
        """The drop copy's positions moved by the round's filled quantities (contracts)."""
        if st.mirror is None:
            return False
        filled: dict[str, float] = {}
        for o in st.orders.values():
            sign = 1.0 if o.record.side == "buy" else -1.0
            filled[o.record.symbol] = filled.get(o.record.symbol, 0.0) + sign * o.cum_qty
        held = {s: p.quantity for s, p in st.mirror.account.iter_positions()}
        return all(abs(held.get(s, 0.0) - (st.before.get(s, 0.0) + q)) < 1e-9 for s, q in filled.items())

    def _round(self, account_id: str, st: _AccountState) -> None:
        mirror = st.mirror
        assert mirror is not None
        if st.tier >= Tier.FULL_LIQUIDATION:
            plan = plan_full(book_from_account(mirror.account, self.settings.planner))
        else:
            if mirror.plan is None:
                self._prepare(st)
            plan = mirror.plan  # type: ignore[assignment]
        if not plan.cuts:
            return
        self._send_plan(account_id, st, plan)

    def _send_plan(self, account_id: str, st: _AccountState, plan: Plan) -> None:
        s = self.settings
        st.round += 1
        st.round_at = self.clock()
        self._schedule(account_id, st.round_at)
        st.orders = {}
        held = {sym: p.quantity for sym, p in st.mirror.account.iter_positions()}  # type: ignore[union-attr]
        st.before = {c.instrument: held.get(c.instrument, 0.0) for c in plan.cuts}
        now = self.wall()
        self.counters["rounds"] += 1
        self.journal.append(RoundRecord(account=account_id, round=st.round, tier=st.tier.name.lower(),
                                        ratio_before=plan.ratio_before, ratio_expected=plan.ratio_after,
                                        expected_cost=plan.expected_cost, before=st.before, at_s=now))
        records = []
        for leg, cut in enumerate(plan.cuts[:s.max_orders_per_round], start=1):
            side = "buy" if cut.quantity > 0 else "sell"
            record = OrderRecord(cl_ord_id=liquidation_cl_ord_id(s.cl_ord_id_prefix, account_id, st.round, leg),
                                 account=account_id, symbol=cut.instrument, side=side, quantity=abs(cut.quantity),
                                 price=band_price(cut.mark, side, s.price_band, s.price_decimals), round=st.round,
                                 at_s=now, dry_run=s.dry_run)
            self.journal.append(record)
            records.append(record)
        self.journal.sync()  # every ClOrdID of the round is on record before the first is sent
        if self._trigger_ns is not None:
            self.out.decision(self._trigger_ns, time.monotonic_ns())
            self._trigger_ns = None
        for record in records:
            order = _Order(record, "dry_run" if s.dry_run else "sent")
            st.orders[record.cl_ord_id] = order
            self.by_cl_ord_id[record.cl_ord_id] = (account_id, order)
            if s.dry_run:
                self.counters["orders_dry_run"] += 1
                continue
            try:
                self.out.send(NewOrder(cl_ord_id=record.cl_ord_id, account=account_id, symbol=record.symbol,
                                       side=record.side, quantity=record.quantity,  # type: ignore[arg-type]
                                       order_type="limit", price=record.price, time_in_force="ioc"))
                self.counters["orders"] += 1
            except Exception as exc:  # never re-sent: the next round re-plans
                self.counters["send_errors"] += 1
                order.status = "rejected"
                log.error("liquidation order %s not sent: %s", record.cl_ord_id, exc)
        for record in records:  # alerts after every order is on its way
            self.out.event("instruction", record)
        log.warning("account %s: liquidation round %d, %d orders%s (MM/equity %.4f -> %.4f expected, cost %.2f)",
                    account_id, st.round, len(records), " (dry run)" if s.dry_run else "", plan.ratio_before,
                    plan.ratio_after, plan.expected_cost,
                    extra={"event": "liquidation_round", "account": account_id, "round": st.round})

    def _transition(self, risk: AccountRisk, previous: Tier, tier: Tier) -> None:
        event = TierTransition(account=risk.account, previous=previous.name.lower(), tier=tier.name.lower(),
                               margin_ratio=risk.margin_ratio, equity=risk.equity,
                               maintenance_margin=risk.maintenance_margin, initial_margin=risk.initial_margin,
                               binding_underlying=risk.binding_underlying, binding_scenario=risk.binding_scenario,
                               top_driver=risk.top_driver, last_seq=risk.last_seq, model_version=risk.model_version,
                               at_s=self.wall())
        self.counters["transitions"] += 1
        self.journal.append(TransitionRecord(event=event), sync=True)
        level = logging.WARNING if tier > previous else logging.INFO
        log.log(level, "account %s: tier %s -> %s (MM/equity %.4f, equity %.2f, MM %.2f, driver %s)", risk.account,
                event.previous, event.tier, risk.margin_ratio, risk.equity, risk.maintenance_margin,
                risk.top_driver, extra={"event": "tier_transition", "account": risk.account, "tier": event.tier,
                                        "previous_tier": event.previous, "margin_ratio": risk.margin_ratio})
        self.out.event("tier_transition", event)

    def _margin_call(self, account_id: str, st: _AccountState) -> None:
        account = st.mirror.account  # type: ignore[union-attr]
        call = build_margin_call(account, self.params, self.settings, self.wall(), self._stress)
        st.called = True
        self.counters["margin_calls"] += 1
        self.journal.append(MarginCallRecord(event=call), sync=True)
        stress = ", ".join(f"{s.name}: {s.pnl:,.0f} (MM/equity {s.ratio_after:.3f})" for s in call.stress)
        log.warning("account %s: margin call: deposit %.2f by %s (MM/equity %.4f -> %.2f); drivers %s; stress %s",
                    account_id, call.amount_needed, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(call.deadline_s)),
                    call.margin_ratio, call.target_ratio, ", ".join(d.instrument for d in call.drivers), stress,
                    extra={"event": "margin_call", "account": account_id, "amount_needed": call.amount_needed})
        self.out.event("margin_call", call)

    # ----- status ---------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        return {a: {"tier": st.tier.name.lower(), "round": st.round, "margin_called": st.called,
                    "orders": {k: [o.status, o.cum_qty] for k, o in st.orders.items()}}
                for a, st in self.accounts.items() if st.tier >= Tier.MARGIN_CALL or st.orders}


def build_margin_call(account: Account, params: MarginParams, settings: LiquidationSettings, now_s: float,
                      stresses: dict[str, object] | None = None) -> MarginCall:
    """The margin call of ``account``: drivers from its full margin report, the configured stresses."""
    stresses = stresses if stresses is not None else {s.name: s for s in params.stress}
    results = []
    model = account.model
    for name in settings.margin_call_stress:
        stress = stresses.get(name)
        if stress is None:
            continue
        moves = stress_moves(model, stress)  # type: ignore[arg-type]
        results.append(stress_account(model, moves, stress_pnl_per_contract(model, moves), account.quantities()))
    return margin_call(account.margin(top=5), results, target_ratio=settings.margin_call_target, now_s=now_s,
                       deadline_s=settings.margin_call_deadline_s)


def band_price(mark: float, side: str, band: float, decimals: int) -> float:
    """IOC limit price ``band`` (fraction) through ``mark``, rounded inward (never outside the band)."""
    scale = 10.0 ** decimals
    if side == "sell":
        return max(math.ceil(mark * (1.0 - band) * scale - 1e-9) / scale, 1.0 / scale)
    return max(math.floor(mark * (1.0 + band) * scale + 1e-9) / scale, 1.0 / scale)


def _close(a: float, b: float) -> bool:
    if a == b:
        return True
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= MIRROR_TOLERANCE * max(1.0, abs(a), abs(b))
