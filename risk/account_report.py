"""Read-only margin reports of a :class:`risk.account.Account`: the per-fill summary,
the full report with its drivers, and the top driver.

Split out of risk/account.py (which keeps the state changes and the pre-trade
what-if); the methods ``Account.summary``, ``Account.margin`` and
``Account.top_driver`` call these. Money is in the account currency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from risk.exposure import initial_margin, method_margins, scan_risk
from risk.tiers import margin_ratio

if TYPE_CHECKING:
    from risk.account import Account, AccountMargin, MarginSummary


def summary_of(account: "Account") -> "MarginSummary":
    """See :meth:`risk.account.Account.summary`."""
    from risk.account import MarginSummary

    im = account.initial_margin()
    mm = account.profile.mm_factor * im
    equity, _ = account.equity()
    model, exposure = account.model, account._exposure
    if account._scenario_only and account._terms_held:
        # The per-underlying requirements are cached per fill: only the binding one
        # needs its scenario looked up.
        terms = account._terms_held
        u = max(range(len(terms)), key=terms.__getitem__)
        segment = exposure.scenario[model.segments[u]]
        scan = scan_risk(segment)
        som = float(account.profile.short_option_minimum * exposure.short_notional[u])
        label = ("" if terms[u] <= 0.0 else "short-option minimum" if som > scan else
                 model.blocks[u].scenarios.labels[int(segment.argmin())])
        return MarginSummary(equity, im, mm, float(account.initial_margin_with_orders()), margin_ratio(mm, equity),
                             model.blocks[u].underlying, label)
    best_u, best_req, label = -1, 0.0, ""
    for u, seg in enumerate(model.segments):
        segment = exposure.scenario[seg]
        scan = scan_risk(segment)
        som = float(account.profile.short_option_minimum * exposure.short_notional[u])
        requirement = scan if scan > som else som
        if best_u < 0 or requirement > best_req:
            best_u, best_req = u, requirement
            label = ("short-option minimum" if som > scan else
                     model.blocks[u].scenarios.labels[int(segment.argmin())] if scan > 0.0 else "")
    binding = model.blocks[best_u].underlying if best_u >= 0 else ""
    if best_req <= 0.0:
        label = ""
    return MarginSummary(equity, im, mm, float(account.initial_margin_with_orders()), margin_ratio(mm, equity),
                         binding, label)


def margin_report(account: "Account", top: int = 5) -> "AccountMargin":
    """See :meth:`risk.account.Account.margin`."""
    from risk.account import AccountMargin, Contributor, UnderlyingMargin

    model, exposure = account.model, account._exposure
    methods = method_margins(model, exposure, account.profile)
    im = float(initial_margin(methods))
    mm = account.profile.mm_factor * im
    equity, upl = account.equity()
    per_underlying = []
    for u, (block, seg) in enumerate(zip(model.blocks, model.segments)):
        segment = exposure.scenario[seg]
        som = float(account.profile.short_option_minimum * exposure.short_notional[u])
        scan = scan_risk(segment)
        label = block.scenarios.labels[int(segment.argmin())] if scan > 0.0 else ""
        if som > scan:
            label = "short-option minimum"
        per_underlying.append(UnderlyingMargin(block.underlying, scan, som, max(scan, som), label))
    binding_u = int(np.argmax([m.requirement for m in per_underlying])) if per_underlying else 0
    contributors: list[Contributor] = []
    binding_label = ""
    binding = per_underlying[binding_u] if per_underlying else None
    if binding is not None and binding.requirement > 0.0:
        binding_label = binding.worst_scenario
        if binding.scan_risk >= binding.short_option_minimum:
            scenario = int(exposure.scenario[model.segments[binding_u]].argmin())
            held = [(r, p.quantity) for r, p in account.positions.items() if model.block_of[r] == binding_u]
            pnl = [(q * float(model.scenario_rows[r][scenario]), r, q) for r, q in held]
            contributors = [Contributor(model.table.ids[r], q, v) for v, r, q in sorted(pnl)[:top]]
    return AccountMargin(
        account=account.id, equity=equity, cash=account.cash, unrealized_pnl=upl,
        initial_margin=im, maintenance_margin=mm,
        initial_margin_with_orders=float(account.initial_margin_with_orders()),
        margin_ratio=margin_ratio(mm, equity), methods=methods,
        underlyings=tuple(per_underlying),
        binding_underlying=binding.underlying if binding is not None else "",
        binding_scenario=binding_label, top_contributors=tuple(contributors),
    )


def top_driver_of(account: "Account") -> str:
    """See :meth:`risk.account.Account.top_driver`."""
    model, exposure, profile = account.model, account._exposure, account.profile
    if account._scenario_only:
        terms = account._terms_held
    else:
        terms = [max(scan_risk(exposure.scenario[seg]),
                     float(profile.short_option_minimum * exposure.short_notional[u]))
                 for u, seg in enumerate(model.segments)]
    if not terms:
        return ""
    u = max(range(len(terms)), key=terms.__getitem__)  # the first largest, as np.argmax
    if not terms[u] > 0.0:
        return ""
    segment = exposure.scenario[model.segments[u]]
    if scan_risk(segment) < float(profile.short_option_minimum * exposure.short_notional[u]):
        return ""  # bound by the short-option minimum: no scenario to explain
    scenario = int(segment.argmin())
    block_of, rows = model.block_list, model.scenario_rows
    best: tuple[float, int, float] | None = None
    for r, p in account.positions.items():
        if block_of[r] == u:
            key = (p.quantity * float(rows[r][scenario]), r, p.quantity)
            if best is None or key < best:
                best = key
    return model.table.ids[best[1]] if best is not None else ""
