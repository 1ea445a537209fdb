"""Print a book's margin report: rich tables for people, JSON for programs."""

from __future__ import annotations

from typing import TextIO

import msgspec
from rich.console import Console
from rich.table import Table

from daemon.book import AccountReport, BookReport


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _ratio(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.1%}"


def render_json(report: BookReport, out: TextIO) -> None:
    """One JSON document (NaN/inf are written as null, as JSON has no such numbers)."""
    out.write(msgspec.json.format(msgspec.json.encode(report).decode(), indent=2) + "\n")


def _summary(report: BookReport) -> Table:
    table = Table(title=f"riskd margin report as of {report.as_of}")
    for name in ("account", "equity", "IM", "MM", "IM w/ orders", "MM/equity", "tier", "binding scenario"):
        table.add_column(name, justify="left" if name in ("account", "tier", "binding scenario") else "right")
    for acct in report.accounts:
        m = acct.margin
        table.add_row(m.account, _money(m.equity), _money(m.initial_margin), _money(m.maintenance_margin),
                      _money(m.initial_margin_with_orders), _ratio(m.margin_ratio), acct.tier,
                      f"{m.binding_underlying} {m.binding_scenario}".strip() or "-")
    return table


def _detail(acct: AccountReport) -> Table:
    m = acct.margin
    table = Table(title=f"{m.account}: what drives the margin", show_header=True)
    table.add_column("item")
    table.add_column("value", justify="right")
    table.add_column("note")
    meth = m.methods
    for name, value in (("scenario (SPAN-like / PM)", meth.scenario), ("parametric VaR", meth.parametric_var),
                        ("historical VaR", meth.historical_var), ("historical ES (not in IM)", meth.historical_es),
                        ("short-option minimum", meth.short_option_minimum)):
        if value is not None:
            table.add_row(name, _money(value), "method")
    for und in m.underlyings:
        table.add_row(f"scan risk {und.underlying}", _money(und.scan_risk), und.worst_scenario or "no loss")
    for c in m.top_contributors:
        table.add_row(f"  {c.instrument} x {c.quantity:g}", _money(c.scenario_pnl), "P&L in binding scenario")
    for s in acct.stress:
        moves = ", ".join(f"{u} {v:+.1%}" for u, v in s.moves.items())
        table.add_row(f"stress: {s.name}", _money(s.pnl), moves)
    return table


def render_text(report: BookReport, out: TextIO) -> None:
    """The summary table, then one detail table per account."""
    console = Console(file=out, width=120, force_terminal=False, color_system=None)
    console.print(_summary(report))
    for acct in report.accounts:
        console.print(_detail(acct))
    if report.covariance_repaired:
        console.print("note: the VaR covariance was not positive semidefinite and was repaired")
