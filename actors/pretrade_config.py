"""Settings of the pre-trade check: static limits per account, staleness, reservations.

Frozen msgspec Structs that the daemon's TOML decodes into. Every limit is
optional: 0 (or an empty tuple) turns it off. Checks in ``__post_init__`` start
their message with ``"<field>: "`` so the config loader can name the field (as in
risk/params.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

NonNegative = Annotated[float, Meta(ge=0.0)]


def _check_non_negative(struct: msgspec.Struct, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(struct, name)
        # NaN fails both comparisons; inf is refused: "no limit" is written 0.
        if not (0.0 <= value < math.inf):
            raise ValueError(f"{name}: expected a finite number >= 0 (0 = off), found {value}")


class PretradeLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Static limits of one account (0 / empty = off).

    ``max_order_qty``: contracts per order. ``max_order_notional``: currency per
    order, quantity x limit price x multiplier. ``price_collar``: a fraction
    (0.05 = 5 %): the limit price must lie within reference x (1 +- collar), the
    reference being the model's mark of the instrument. ``max_position_instrument``:
    contracts, absolute, of the instrument's position after the order, counting
    every open order on the order's side as filled (they may all fill).
    ``max_position_underlying``: gross contracts on the underlying after the order,
    sum over its instruments of |position|, each at the worst case of its open
    orders (all buys or all sells filled); gross contracts rather than a
    delta-equivalent because it needs no model, cannot be gamed by hedges, and is
    what an operator can read off a position report. ``restricted``: instrument ids
    that may not be traded at all. ``max_orders_per_s``: accepted orders (replaces
    included) per account in any sliding 1 s window.
    """

    max_order_qty: NonNegative = 0.0
    max_order_notional: NonNegative = 0.0
    price_collar: NonNegative = 0.0
    max_position_instrument: NonNegative = 0.0
    max_position_underlying: NonNegative = 0.0
    restricted: tuple[str, ...] = ()
    max_orders_per_s: Annotated[int, Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        _check_non_negative(self, ("max_order_qty", "max_order_notional", "price_collar",
                                   "max_position_instrument", "max_position_underlying"))
        if self.max_orders_per_s < 0:
            raise ValueError(f"max_orders_per_s: expected an integer >= 0 (0 = off), found {self.max_orders_per_s}")
        if any(not r for r in self.restricted):
            raise ValueError("restricted: instrument ids must not be empty")


class PretradeSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The pre-trade endpoint's settings.

    ``limits``: the default static limits; ``accounts``: per-account limits that
    replace the defaults as a whole for that account (not field by field: a 0 in an
    override means "off", so copy the defaults you want to keep). ``stale_after_s``:
    seconds; reject when the underlying's price or vol is older (0 = off).
    ``reservation_ttl_s``: seconds an accepted order's reservation is held while the
    drop copy has said nothing about the order (0 = until the drop copy does).
    ``timeout_us``: the client library's budget per check, microseconds; past it
    the client rejects (fails closed), except for ``fail_open_accounts``, whose
    orders it lets go. ``kill_switch_journal``: JSON-lines file of kill-switch
    commands ("" = ``killswitch.jsonl`` in the daemon's run_dir).
    ``im_tolerance``: currency; an order whose marginal IM is at most this adds no
    risk (absorbs rounding in the reduce-only and margin checks).
    ``reservation_publish_s``: seconds; a reservation made or released changes only
    the account's IM with orders (not its MM, equity or tier), so its AccountRisk
    goes out at most this often per shard (the first at once), not after every
    accepted order (0 = after every one).
    """

    limits: PretradeLimits = PretradeLimits()
    accounts: dict[str, PretradeLimits] = {}
    stale_after_s: NonNegative = 0.0
    reservation_ttl_s: NonNegative = 30.0
    timeout_us: Annotated[int, Meta(gt=0)] = 500
    fail_open_accounts: tuple[str, ...] = ()
    kill_switch_journal: str = ""
    im_tolerance: NonNegative = 0.01
    reservation_publish_s: NonNegative = 0.05

    def __post_init__(self) -> None:
        _check_non_negative(self, ("stale_after_s", "reservation_ttl_s", "im_tolerance", "reservation_publish_s"))
        if self.timeout_us <= 0:
            raise ValueError(f"timeout_us: expected an integer > 0 (microseconds), found {self.timeout_us}")
        if any(not a for a in self.accounts):
            raise ValueError("accounts: account ids must not be empty")
        if len(set(self.fail_open_accounts)) != len(self.fail_open_accounts):
            dup = next(a for a in self.fail_open_accounts if self.fail_open_accounts.count(a) > 1)
            raise ValueError(f"fail_open_accounts: account {dup!r} is listed twice")

    def limits_for(self, account: str) -> PretradeLimits:
        """The static limits that apply to ``account``."""
        return self.accounts.get(account, self.limits)

    def journal_path(self, run_dir: str | Path) -> Path:
        """The kill-switch journal file: the configured path, else run_dir/killswitch.jsonl."""
        return Path(self.kill_switch_journal) if self.kill_switch_journal else Path(run_dir) / "killswitch.jsonl"
