"""The whole daemon restarted between a liquidation order going out and its fill (issue 6).

The daemon (real local Ray, one shard) consumes a simulated OMS drop copy and
sends live liquidation orders (``dry_run`` false) on a real FIX execution session
to a venue on loopback that acknowledges them and holds them. An account is put
into partial liquidation by its collateral; once its round's NewOrderSingles are
at the venue, acknowledged and unfilled, the daemon is stopped and a new one
started on the same state folder (liquidation journal, execution FileStore,
drop-copy journal). The venue then fills the orders; each fill reaches the new
daemon twice, as the venue's ExecutionReport on the execution session and as the
OMS's drop copy (sent once more as a PossDup resend; booked at the mark, as if the
venue improved the IOC limit, so the account lands where the plan expected).

Checked: the venue saw every ClOrdID exactly once across the restart, and the new
daemon sent nothing; every fill was booked once: the account's positions equal an
offline recomputation (the opening fills plus the venue's fills) and its margin
ratio that of an offline account holding them; the journal has each order once,
and its reports say filled.
"""

from __future__ import annotations

import itertools

import msgspec
import pytest

ray = pytest.importorskip("ray")

from actors.liquidation_journal import LiquidationJournal, OrderRecord, ReportRecord  # noqa: E402
from daemon.book import build_model, load_book  # noqa: E402
from daemon.config import AccountSpec, resolve_data_path  # noqa: E402
from daemon.liquidation_venue import ExecutionVenue, VenueOrder  # noqa: E402
from daemon.run import Daemon  # noqa: E402
from risk.account import Account  # noqa: E402
from tests.fix_sim import SimulatedOms, transact_time, wait_for  # noqa: E402

ACCOUNT = "LQ-RESTART"
OPENING = {"ESZ6": 12.0, "NQZ6": 8.0}  # long futures: a round sells some of each


class DropCopy:
    """The OMS side: ExecutionReports of the account's fills, on the simulated OMS's session."""

    def __init__(self) -> None:
        self.oms = SimulatedOms(seed=5)
        self.fills: list[tuple[str, str, float, float]] = []  # (ExecID, symbol, signed qty, price)
        self._ids = itertools.count(1)

    def fill(self, symbol: str, qty: float, price: float, exec_id: str | None = None, *, poss_dup: bool = False) -> str:
        exec_id = exec_id or f"OMS-{next(self._ids):05d}"
        side = "1" if qty > 0 else "2"
        body = [(37, f"O-{exec_id}"), (11, f"C-{exec_id}"), (17, exec_id), (150, "F"), (39, "2"), (1, ACCOUNT),
                (55, symbol), (54, side), (38, abs(qty)), (40, "2"), (44, price), (32, abs(qty)), (31, price),
                (151, 0), (14, abs(qty)), (6, price), (60, transact_time())]
        header = [(43, "Y"), (122, transact_time())] if poss_dup else None
        self.oms.run(lambda: self.oms.session.send(b"8", body, header))
        if not poss_dup:
            self.fills.append((exec_id, symbol, qty, price))
        return exec_id


def daemon_config(tmp_path, oms_port: int, venue: ExecutionVenue):
    book, config = load_book(str(resolve_data_path("builtin:demo_book.toml")))
    drop_copy = msgspec.structs.replace(config.fix.drop_copy, socket_connect_port=oms_port,
                                        file_store_path=str(tmp_path / "fix"), reconnect_interval=0.2)
    execution = msgspec.structs.replace(venue.client_settings(str(tmp_path / "execution")), reconnect_interval=0.2)
    config = msgspec.structs.replace(
        config, accounts=(AccountSpec(id=ACCOUNT, profile="span", cash=1_000_000_000.0),),
        fix=msgspec.structs.replace(config.fix, drop_copy=drop_copy, execution=execution),
        daemon=msgspec.structs.replace(config.daemon, run_dir=str(tmp_path / "run"), shards=1, http_port=0),
        # settle_timeout_s: the round must wait for its fills, never re-plan on a timer here
        liquidation=msgspec.structs.replace(config.liquidation, dry_run=False, cooldown_s=0.0,
                                            settle_timeout_s=600.0, margin_call_stress=()))
    return book, config


def held(daemon: Daemon) -> dict[str, float]:
    """The account's positions in its shard (signed contracts, non-zero only)."""
    return {s: float(q) for s, (q, _average) in daemon.state()[ACCOUNT]["positions"].items() if q}


def account_risk(daemon: Daemon):
    return next(r for r in daemon.view.accounts() if r.account == ACCOUNT)


def engine(daemon: Daemon) -> dict:
    return daemon.health()["liquidation"]["engine"]


def test_restart_between_a_liquidation_order_and_its_fill(tmp_path) -> None:
    fills_at_venue: list[tuple[VenueOrder, str]] = []
    venue = ExecutionVenue(hold=True, on_fill=lambda order, exec_id: fills_at_venue.append((order, exec_id)))
    drop_copy = DropCopy()
    book, config = daemon_config(tmp_path, drop_copy.oms.port, venue)
    model = build_model(config, book.market, "test")
    daemon = None
    try:
        # ----- the first daemon: opening fills, then the breach and its round
        daemon = Daemon(config, book.market, http=False)
        wait_for(lambda: drop_copy.oms.logged_on, 30, message="drop-copy logon")
        for symbol, qty in OPENING.items():
            drop_copy.fill(symbol, qty, float(model.valuation.mark[model.table.index[symbol]]))
        wait_for(lambda: held(daemon) == OPENING, 30, message=lambda: f"opening positions: {held(daemon)}")
        # The view's AccountRisk as of the last opening fill (an earlier one, after some of
        # the fills, has a smaller MM: the collateral below would then aim at another ratio).
        wait_for(lambda: account_risk(daemon).maintenance_margin > 0
                 and account_risk(daemon).last_seq == daemon.state()[ACCOUNT]["last_seq"], 10,
                 message="AccountRisk with all the opening positions")
        risk = account_risk(daemon)
        # Collateral that puts MM / equity at 1.1: partial liquidation (1.00 <= ratio < 1.20).
        cash = daemon.state()[ACCOUNT]["cash"] + risk.maintenance_margin / 1.1 - risk.equity
        daemon.set_collateral(ACCOUNT, cash)
        wait_for(lambda: venue.orders and engine(daemon)["orders_total"] == len(venue.orders), 30,
                 message=lambda: f"the round at the venue: {engine(daemon)}")
        sent = [o.cl_ord_id for o in venue.orders]
        assert sent == [f"LIQ-{ACCOUNT}-1-{i}" for i in range(1, len(sent) + 1)]
        folder = daemon.state_dir / "liquidation"
        wait_for(lambda: {r.cl_ord_id for r in LiquidationJournal(folder).records
                          if isinstance(r, ReportRecord) and r.status == "new"} == set(sent), 10,
                 message="acks journaled")
        assert not fills_at_venue and held(daemon) == OPENING  # working, unfilled

        # ----- restart between the orders and their fills
        daemon.stop()
        daemon = Daemon(config, book.market, http=False)
        wait_for(lambda: daemon.health()["liquidation"]["action_accounts"] == {ACCOUNT: "partial_liquidation"}, 30,
                 message=lambda: f"the account back in partial liquidation: {daemon.health()['liquidation']}")
        # It has read the account from its shard (and acted on it, in the same call).
        wait_for(lambda: engine(daemon)["mirrors_total"] >= 1, 30, message="the restarted engine read the account")
        assert held(daemon) == OPENING
        assert engine(daemon)["orders_total"] == 0 and [o.cl_ord_id for o in venue.orders] == sent

        # ----- the venue fills; the OMS's drop copy brings each fill (and once more as a PossDup)
        for cl_ord_id in sent:
            venue.fill(cl_ord_id)
        wait_for(lambda: len(fills_at_venue) == len(sent), 10, message="fills at the venue")
        def mark(symbol: str) -> float:
            return float(model.valuation.mark[model.table.index[symbol]])
        for order, exec_id in fills_at_venue:
            drop_copy.fill(order.symbol, order.side * order.quantity, mark(order.symbol), f"OMS-{exec_id}")
        for order, exec_id in fills_at_venue:
            drop_copy.fill(order.symbol, order.side * order.quantity, mark(order.symbol), f"OMS-{exec_id}",
                           poss_dup=True)
        expected = dict(OPENING)
        for order, _ in fills_at_venue:
            expected[order.symbol] += order.side * order.quantity
        expected = {s: q for s, q in expected.items() if q}
        wait_for(lambda: engine(daemon)["fills_total"] >= len(sent), 20,
                 message=lambda: f"fills on the execution session: {engine(daemon)}")
        assert daemon.drain(30.0)
        wait_for(lambda: held(daemon) == expected, 20, message=lambda: f"{held(daemon)} != {expected}")
        # the account is back under the target: nothing more goes out
        wait_for(lambda: daemon.health()["liquidation"]["action_accounts"] == {}, 20,
                 message=lambda: f"out of liquidation: {daemon.health()['liquidation']}")
        assert [o.cl_ord_id for o in venue.orders] == sent and len(set(sent)) == len(sent)
        assert engine(daemon)["orders_total"] == 0 and engine(daemon)["rounds_total"] == 0

        # ----- offline recomputation: the opening fills and the venue's, on a fresh account
        state = daemon.state()[ACCOUNT]
        offline = Account(ACCOUNT, config.margin.profiles["span"], model, 0.0)
        for _, symbol, qty, price in drop_copy.fills:
            offline.apply_fill(model.table.index[symbol], qty, price)
        offline.cash = float(state["cash"])
        assert {s: p.quantity for s, p in offline.iter_positions() if p.quantity} == expected
        risk = account_risk(daemon)
        assert risk.margin_ratio == pytest.approx(offline.summary().margin_ratio, rel=1e-9)
        assert risk.margin_ratio <= config.liquidation.planner.target_ratio
    finally:
        if daemon is not None:
            daemon.stop()
        venue.stop()
        drop_copy.oms.stop()
        ray.shutdown()

    records = LiquidationJournal(tmp_path / "run" / "state" / "liquidation").records
    orders = [r.cl_ord_id for r in records if isinstance(r, OrderRecord)]
    assert orders == sent
    last = {r.cl_ord_id: r.status for r in records if isinstance(r, ReportRecord)}
    assert last == {cl: "filled" for cl in sent}
