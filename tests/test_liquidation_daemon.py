"""The liquidation engine inside the whole daemon (real local Ray, simulated OMS drop copy).

An account of the demo book is pushed into partial liquidation by lowering its
collateral (Daemon.set_collateral, in order with the drop copy); the liquidation
actor, wired by the daemon, reads the account from its shard, plans and, in dry
run (the default), journals and publishes the instructions. Checked against the
account's positions as the OMS recorded them: every instruction reduces a held
position (never opens or flips one) and the journal has each ClOrdID once.
"""

from __future__ import annotations

import msgspec
import pytest

ray = pytest.importorskip("ray")

from actors.liquidation_journal import LiquidationJournal, OrderRecord, RoundRecord, TransitionRecord  # noqa: E402
from daemon.book import load_book  # noqa: E402
from daemon.config import resolve_data_path  # noqa: E402
from daemon.run import Daemon  # noqa: E402
from tests.fix_sim import ReportStream, SimulatedOms, wait_for  # noqa: E402

SYMBOLS = ("ESZ6", "NQZ6", "NQZ6 C25000")


def test_a_breached_account_gets_dry_run_liquidation_orders_from_the_daemon(tmp_path) -> None:
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    accounts = tuple(a.id for a in config.accounts)
    oms = SimulatedOms(seed=31)
    oms.stream = ReportStream(31, accounts=accounts, symbols=SYMBOLS)
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms.port,
                                        file_store_path=str(tmp_path / "fix"), reconnect_interval=0.2)
    config = msgspec.structs.replace(
        config, fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy),
        daemon=msgspec.structs.replace(config.daemon, run_dir=str(tmp_path / "run"), shards=2, http_port=0),
        liquidation=msgspec.structs.replace(config.liquidation, dry_run=True, cooldown_s=60.0))
    daemon = None
    try:
        daemon = Daemon(config, book.market)
        wait_for(lambda: oms.logged_on, 30, message="drop-copy logon")
        oms.send_reports(60)
        assert daemon.drain(30.0)
        truth = {k: v for k, v in oms.stream.positions.items() if abs(v) > 1e-9}
        # Every account's AccountRisk as of its last drop-copy event: one from before the
        # last fills has a smaller MM, and the collateral below would aim at another ratio.
        def current() -> bool:
            state = daemon.state()
            views = {r.account: r for r in daemon.view.accounts()}
            return len(views) == len(accounts) and all(views[a].last_seq == state[a]["last_seq"] for a in accounts)

        wait_for(current, 30, message="AccountRisk of every account, as of its last event")
        risk = max(daemon.view.accounts(), key=lambda r: r.maintenance_margin)
        assert risk.maintenance_margin > 0
        held = {s: q for (a, s), q in truth.items() if a == risk.account}
        # Collateral that puts MM / equity at 1.1: partial liquidation (1.00 <= ratio < 1.20).
        cash = daemon.state()[risk.account]["cash"] + risk.maintenance_margin / 1.1 - risk.equity
        daemon.set_collateral(risk.account, cash)
        wait_for(lambda: daemon.health()["liquidation"]["engine"]["orders_dry_run_total"] > 0, 30,
                 message=lambda: f"dry-run instructions: {daemon.health()['liquidation']}")
        health = daemon.health()["liquidation"]
        assert health["action_accounts"] == {risk.account: "partial_liquidation"}
        assert daemon.liquidation_metrics()["rounds_total"] == 1
        scrape = daemon.http.metrics.render().decode()
        assert "riskd_liquidation_orders_dry_run_total" in scrape and "riskd_liquidation_dry_run 1.0" in scrape
        folder = daemon.state_dir / "liquidation"
    finally:
        if daemon is not None:
            daemon.stop()
        oms.stop()
        ray.shutdown()

    records = LiquidationJournal(folder).records
    orders = [r for r in records if isinstance(r, OrderRecord)]
    assert orders and all(o.dry_run and o.account == risk.account for o in orders)
    assert len({o.cl_ord_id for o in orders}) == len(orders)
    assert [o.cl_ord_id for o in orders] == [f"LIQ-{risk.account}-1-{i}" for i in range(1, len(orders) + 1)]
    for o in orders:  # each reduces a held position, by at most what is held
        q = held[o.symbol]
        assert (o.side == "sell") == (q > 0) and o.quantity <= abs(q) + 1e-9
    rounds = [r for r in records if isinstance(r, RoundRecord)]
    assert len(rounds) == 1 and rounds[0].ratio_before == pytest.approx(1.1, rel=1e-6)
    assert rounds[0].ratio_expected <= config.liquidation.planner.target_ratio
    assert any(isinstance(r, TransitionRecord) and r.event.tier == "partial_liquidation" for r in records)
