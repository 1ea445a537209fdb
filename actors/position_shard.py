"""The state of one position shard: accounts, fills, open orders, margin. No sockets, no Ray.

The position actor (a Ray actor with ZeroMQ sockets in threads) wraps one
:class:`PositionShard`; keeping the state machine here lets tests and the offline
recomputation drive it directly. Accounts belong to shards by a stable hash of
their id (:func:`shard_of`).

Fills arrive at least once (a crash upstream re-delivers), so the shard keeps the
ExecIDs it applied and ignores repeats. A fill or order event for an account or
instrument the shard does not know is held (and reported as :class:`HeldEvent`),
never dropped; :meth:`PositionShard.retry_held` applies what reference data now
covers. Open orders reserve margin for their leaves quantity (``OrderMsg``
carries it), released when the order is filled, canceled, rejected or expired.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from typing import Callable

from actors.messages import AccountRisk, CollateralMsg, FillMsg, HeldEvent, OrderMsg, Stamps
from risk.account import Account
from risk.errors import RiskModelError
from risk.model import RiskModel
from risk.params import MarginProfile
from risk.tiers import next_tier

log = logging.getLogger("riskd.position")

#: Order statuses after which an order can no longer fill: its reservation goes.
TERMINAL = frozenset({"filled", "canceled", "rejected", "expired", "done_for_day"})


def shard_of(account_id: str, n_shards: int) -> int:
    """Stable shard of an account: CRC-32 of its id modulo the shard count."""
    return zlib.crc32(account_id.encode()) % n_shards


class PositionShard:
    """Accounts of one shard and their margin on the latest risk model."""

    def __init__(self, shard: int, n_shards: int, model: RiskModel, *, explain_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``explain_interval_s``: how often (seconds, per account) a fill refreshes the
        top risk driver, which needs the full per-position report; a tier change always does."""
        self.shard = shard
        self.n_shards = n_shards
        self.model = model
        self.model_version = 0
        self.accounts: dict[str, Account] = {}
        self.held: list[FillMsg | OrderMsg] = []
        #: (trade date, ExecID, kind) of the fills applied: a correction's reversal and
        #: corrected fill share the report's ExecID, and ExecIDs are unique per day only.
        self.applied_fills: set[tuple[str, str, str]] = set()
        self.duplicates = 0
        self.last_seq: dict[str, int] = {}
        #: Highest drop-copy seq among the frames the shard's service applied (in order):
        #: what a snapshot reflects and where a replay resumes (PositionService sets it).
        self.applied_seq = 0
        self.explain_interval_s = explain_interval_s
        self._clock = clock
        #: account -> (monotonic s of the last full report, its top driver instrument,
        #: the binding (underlying, scenario) it was computed for)
        self._explained: dict[str, tuple[float, str, tuple[str, str]]] = {}

    # ----- reference data --------------------------------------------------
    def add_account(self, account_id: str, profile: MarginProfile, cash: float) -> None:
        """Create an account of this shard (ValueError if it belongs to another shard)."""
        if shard_of(account_id, self.n_shards) != self.shard:
            raise ValueError(f"account {account_id!r} belongs to shard {shard_of(account_id, self.n_shards)},"
                             f" not {self.shard}")
        if account_id not in self.accounts:
            self.accounts[account_id] = Account(account_id, profile, self.model, cash)

    def on_collateral(self, message: CollateralMsg) -> AccountRisk | None:
        """Set an account's cash or collateral value (currency)."""
        account = self.accounts.get(message.account)
        if account is None:
            log.warning("collateral for unknown account %r ignored", message.account)
            return None
        account.cash = float(message.cash)
        return self.risk(message.account, Stamps())

    def on_model(self, model: RiskModel, version: int) -> list[AccountRisk]:
        """New risk arrays: rebind every account and republish its risk."""
        self.model = model
        self.model_version = version
        out = []
        for account_id, account in self.accounts.items():
            account.rebind(model)
            out.append(self.risk(account_id, Stamps()))
        return out

    # ----- drop copy -------------------------------------------------------
    def on_fill(self, message: FillMsg) -> AccountRisk | HeldEvent | None:
        """Apply a fill; None for a repeat of an ExecID already applied."""
        applied = self.apply_fill(message)
        return self.risk(message.account, message.stamps) if applied is True else applied or None

    def on_order(self, message: OrderMsg) -> AccountRisk | HeldEvent | None:
        """Track an order's reservation; None when it changes nothing."""
        changed = self.apply_order(message)
        return self.risk(message.account, message.stamps) if changed is True else changed or None

    def apply_fill(self, message: FillMsg) -> HeldEvent | bool:
        """Book a fill without computing margin: True if applied, False for a repeat of
        an ExecID already applied, a HeldEvent for an unknown account or instrument."""
        key = (message.trade_date, message.exec_id, message.kind)
        if key in self.applied_fills:
            self.duplicates += 1
            return False
        account = self.accounts.get(message.account)
        row = self.model.table.index.get(message.symbol)
        if account is None or row is None:
            return self._hold(message, "unknown account" if account is None else "unknown instrument")
        account.apply_fill(row, message.quantity, message.price)
        self.applied_fills.add(key)
        self.last_seq[message.account] = message.seq
        return True

    def apply_order(self, message: OrderMsg) -> HeldEvent | bool:
        """Track an order's reservation (its leaves quantity while open) without computing
        margin: True if the reservation changed, False if not (e.g. the report of a fill
        that completed an order already released), a HeldEvent if unknown."""
        account = self.accounts.get(message.account)
        row = self.model.table.index.get(message.symbol)
        if account is None or row is None:
            return self._hold(message, "unknown account" if account is None else "unknown instrument")
        self.last_seq[message.account] = max(self.last_seq.get(message.account, 0), message.seq)
        # Keyed by OrderID, which a replace keeps: the new leaves replace the old reservation.
        if message.status in TERMINAL or message.leaves_qty <= 0.0:
            return account.release(message.order_id)
        if message.status in ("pending_cancel", "pending_replace"):
            return False
        quantity = message.side * message.leaves_qty
        held = account.orders.get(message.order_id)
        if held is not None and held.row == row and held.quantity == quantity and held.limit_price == message.price:
            return False
        try:
            account.reserve(message.order_id, row, quantity, message.price)
        except RiskModelError as exc:
            # No margin figure for it: the AccountRisk that follows says so (worst tier).
            log.error("order %s of %s cannot be margined: %s", message.order_id, message.account, exc)
        return True

    def retry_held(self) -> list[AccountRisk | HeldEvent | None]:
        """Apply held events that reference data now covers, in their original order."""
        pending, self.held = self.held, []
        out: list[AccountRisk | HeldEvent | None] = []
        for message in pending:
            handler = self.on_fill if isinstance(message, FillMsg) else self.on_order
            out.append(handler(message))  # type: ignore[arg-type]
        return out

    def _hold(self, message: FillMsg | OrderMsg, reason: str) -> HeldEvent:
        self.held.append(message)
        log.warning("held %s for %r/%r (%s), seq %d", type(message).__name__, message.account, message.symbol,
                    reason, message.seq)
        return HeldEvent(reason, message.exec_id, message.account, message.symbol, message.seq)

    # ----- margin ----------------------------------------------------------
    def risk(self, account_id: str, stamps: Stamps, *, explain: bool = False,
             carry_driver: bool = False) -> AccountRisk:
        """The account's AccountRisk now (tier updated with hysteresis).

        Every figure is exact and current. The top driver (the position losing most
        in the binding scenario) needs the full per-position report, so it is
        refreshed when ``explain`` is set, when the tier or the binding scenario
        changes, or when the last refresh is older than ``explain_interval_s``; in
        between it is carried over. ``carry_driver``: only open orders changed (a
        pre-trade reservation), which moves no position: the driver is carried over
        unless the tier changed or there is none yet.
        """
        account = self.accounts[account_id]
        try:
            summary = account.summary()
        except RiskModelError as exc:
            # No trustworthy margin: publish the worst case, never "no risk".
            log.error("margin of %s cannot be computed: %s", account_id, exc)
            account.tier = next_tier(account.tier, math.nan, self.model.params.tiers)
            return AccountRisk(account_id, math.nan, math.nan, math.nan, math.nan, math.inf, account.tier.name.lower(),
                               "", str(exc), "", self.last_seq.get(account_id, 0), self.model_version, stamps)
        tier = next_tier(account.tier, summary.margin_ratio, self.model.params.tiers)
        now = self._clock()
        explained = self._explained.get(account_id)
        binding = (summary.binding_underlying, summary.binding_scenario)
        if (explain or tier != account.tier or explained is None
                or (not carry_driver and (explained[2] != binding or now - explained[0] >= self.explain_interval_s))):
            explained = (now, account.top_driver(), binding)
            self._explained[account_id] = explained
        account.tier = tier
        return AccountRisk(account_id, summary.equity, summary.initial_margin, summary.maintenance_margin,
                           summary.initial_margin_with_orders, summary.margin_ratio, tier.name.lower(),
                           summary.binding_underlying, summary.binding_scenario, explained[1],
                           self.last_seq.get(account_id, 0), self.model_version, stamps)
