"""``[liquidation]`` settings of the liquidation engine (decoded by daemon/config.py)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from actors.webhook import WebhookSettings
from risk.liquidation import PlannerParams


class LiquidationSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How accounts in the liquidation tiers are cut, and where alerts go.

    ``dry_run``: plan and publish instructions (log, journal, /metrics, events) but
    send nothing to execution. ``price_band``: IOC limit prices sit this fraction
    of the reference (mark) price through it (sell at mark x (1 - band), buy at
    mark x (1 + band)), rounded inward to ``price_decimals``. ``cooldown_s``:
    seconds between the start of two rounds of one account. ``settle_timeout_s``:
    seconds after which a round whose fills the drop copy has not (yet) shown is
    closed anyway and the account re-planned from the drop copy's positions.
    ``margin_call_deadline_s``: seconds an account has to cure a margin call;
    ``margin_call_target``: MM / equity the call's amount needed restores;
    ``margin_call_stress``: the named stresses (margin.stress) shown in a call.
    ``journal_dir``: "" = <run_dir>/liquidation. ``journal_fsync``: fsync every
    order record before sending (survives a host crash, not only a daemon crash).
    ``cl_ord_id_prefix``: every liquidation ClOrdID starts with it and a dash, so
    the OMS and the pre-trade hook can recognise liquidation orders.
    """

    dry_run: bool = True
    planner: PlannerParams = PlannerParams()
    price_band: Annotated[float, Meta(ge=0.0, lt=1.0)] = 0.02
    price_decimals: Annotated[int, Meta(ge=0, le=10)] = 2
    cooldown_s: Annotated[float, Meta(ge=0.0, le=3600.0)] = 2.0
    settle_timeout_s: Annotated[float, Meta(gt=0.0, le=3600.0)] = 10.0
    max_orders_per_round: Annotated[int, Meta(ge=1, le=10_000)] = 100
    margin_call_deadline_s: Annotated[float, Meta(gt=0.0)] = 3600.0
    margin_call_target: Annotated[float, Meta(gt=0.0)] = 0.60
    margin_call_stress: tuple[str, ...] = ("tech crash",)
    journal_dir: str = ""
    journal_fsync: bool = False
    cl_ord_id_prefix: Annotated[str, Meta(pattern=r"^[A-Za-z0-9]{1,8}$")] = "LIQ"
    webhook: WebhookSettings = WebhookSettings()
