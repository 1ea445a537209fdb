"""``riskd demo``: the whole daemon on its embedded default, with a simulated OMS and market.

No setup: a simulated OMS (a real FIX acceptor on loopback) streams a drop copy
for the default config's accounts trading its futures and options; a simulated
market (GBM with jumps and a moving vol surface) ticks; riskd runs its Ray
actors (drop-copy ingest, market/pricing, position shards) and a live table
(rich) shows every account's equity, IM, MM, MM/equity, tier and top risk
driver, and the per-stage latency against its budget. ``--duration`` seconds;
``--no-tty`` prints only a final summary and exits 0 (scripts and CI).
"""

from __future__ import annotations

import tempfile
import time
from typing import TextIO

import msgspec
from rich.console import Console
from rich.live import Live
from rich.table import Table

from actors.latency import StageStats
from actors.messages import AccountRisk
from daemon.book import build_model, load_book
from daemon.config import BUILTIN_PREFIX, resolve_data_path
from daemon.sim_oms import SimulatedOms, wait_logged_on


def _tables(latest: dict[str, AccountRisk], stages_now: dict[str, StageStats], fills: int, elapsed: float,
            url: str) -> Table:
    grid = Table.grid()
    accounts = Table(title=f"riskd demo: {fills} drop-copy reports in {elapsed:.0f} s (status: {url}/status)")
    for name in ("account", "equity", "IM", "MM", "MM/equity", "tier", "top driver"):
        accounts.add_column(name, justify="left" if name in ("account", "tier", "top driver") else "right")
    for account_id in sorted(latest):
        r = latest[account_id]
        ratio = "inf" if r.margin_ratio == float("inf") else f"{r.margin_ratio:.1%}"
        accounts.add_row(account_id, f"{r.equity:,.0f}", f"{r.initial_margin:,.0f}", f"{r.maintenance_margin:,.0f}",
                         ratio, r.tier, r.top_driver or "-")
    stages = Table(title="latency per stage (us)")
    for name in ("stage", "count", "p50", "p99", "p99.9", "budget p99", "ok"):
        stages.add_column(name, justify="left" if name == "stage" else "right")
    for stage, stats in stages_now.items():
        if stats.count:
            stages.add_row(stage, str(stats.count), f"{stats.p50_us:.0f}", f"{stats.p99_us:.0f}",
                           f"{stats.p999_us:.0f}", f"{stats.budget_us:.0f}" if stats.budget_us else "-",
                           "no" if stats.breached else "yes")
    grid.add_row(accounts)
    grid.add_row(stages)
    return grid


def run_demo(duration_s: float, tty: bool, out: TextIO) -> int:
    """Run the daemon demo for ``duration_s`` seconds; returns the exit code."""
    import ray

    from daemon.run import Daemon

    book, config = load_book(str(resolve_data_path(BUILTIN_PREFIX + "demo_book.toml")))
    model = build_model(config, book.market)
    marks = {iid: float(model.valuation.mark[row]) for iid, row in model.table.index.items()}
    oms = SimulatedOms([a.id for a in config.accounts], marks, rate_per_s=20.0).start()
    state = tempfile.TemporaryDirectory(prefix="riskd-demo-")
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms.port,
                                        file_store_path=f"{state.name}/fix", reconnect_interval=0.2)
    config = msgspec.structs.replace(
        config, fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy),
        daemon=msgspec.structs.replace(config.daemon, run_dir=f"{state.name}/run", market="simulate",
                                       http_port=0))
    console = Console(file=out, width=120)
    daemon = None
    try:
        console.print("starting riskd (Ray, FIX drop copy, simulated market)...")
        daemon = Daemon(config, book.market)
        if not wait_logged_on(oms, 30.0):
            console.print("riskd: the drop-copy session did not log on within 30 s")
            return 1

        start = time.monotonic()
        view = daemon.view
        url = daemon.http.url if daemon.http is not None else "-"

        def refresh() -> Table:
            view.refresh()
            latest = {r.account: r for r in view.accounts()}
            return _tables(latest, dict(view.stage_snapshot()), oms.sent, time.monotonic() - start, url)

        if tty:
            with Live(refresh(), console=console, refresh_per_second=4) as live:
                while time.monotonic() - start < duration_s:
                    time.sleep(0.5)
                    live.update(refresh())
        else:
            time.sleep(duration_s)
        final = refresh()
        if not tty:
            console.print(final)
        health = daemon.health()
        console.print(f"drop copy: {health['ingest']['next_target_seq'] - 1} messages received, "
                      f"{sum(health['ingest']['sent_per_shard'])} events routed; market: "
                      f"{health['market']['ticks']} ticks, fast-path max error {health['market']['fast_path_max_abs']:.4f}"
                      " per unit")
        return 0
    finally:
        oms.stop()
        if daemon is not None:
            daemon.stop()
        if ray.is_initialized():
            ray.shutdown()
        state.cleanup()
