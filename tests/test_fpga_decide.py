"""The overlay decides (issue 8): the pre-trade hook's "fpga" path against the software hook.

Two twin shards start from identical state and get identical orders, settings, kill
switches, tiers, market ages and clock: one is decided by the software hook alone
(actors.pretrade.PreTradeChecker.check), the other by actors.fpga_decide (the risk
filter decides kill switches, static limits and margin; software the tier,
restricted list, rate throttle and stale data). Decisions and reason codes must be
identical, IM after within the fixed point's quantum, and the shards' bookkeeping
(reservations, pending TTLs, counters) identical after every order. A few hundred
random orders run on the bit-exact model backend (fpga_overlay.model_backend),
scripted orders through the Amaranth simulation behind the pynq driver, and a
failing device must reject (fail closed) unless the account fails open.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

pytest.importorskip("amaranth", reason="amaranth is in the [test] extra (FPGA overlay simulation)")

from actors.fpga_decide import FPGA_ERROR  # noqa: E402
from actors.fpga_shadow import FILTER_CODES, FpgaPath, FpgaSettings  # noqa: E402
from actors.kill_switch import KillSwitches  # noqa: E402
from actors.position_shard import PositionShard  # noqa: E402
from actors.pretrade import PreTradeChecker  # noqa: E402
from actors.pretrade_config import PretradeLimits, PretradeSettings  # noqa: E402
from actors.pretrade_messages import CheckRequest, KillSwitchCommand, ReasonCode  # noqa: E402
from fpga_overlay.model_backend import ModelBackend  # noqa: E402
from risk.model import RiskModel  # noqa: E402
from risk.params import MarginProfile, PortfolioGrid  # noqa: E402
from risk.tiers import Tier  # noqa: E402

SOFTWARE_ONLY = {ReasonCode.REDUCE_ONLY, ReasonCode.LIQUIDATION_ONLY, ReasonCode.RESTRICTED_INSTRUMENT,
                 ReasonCode.RATE_THROTTLE, ReasonCode.STALE_MARKET}


def model_27(book_parts) -> RiskModel:
    """The test book with the PM grid's extended moves off (16 and 27 scenarios: the
    filter holds every underlying) and a short-option-minimum profile."""
    table, market, params = book_parts
    grids = dict(params.grids)
    grids["pm"] = PortfolioGrid(extended_moves=())
    profiles = {"span": MarginProfile(), "som": MarginProfile(short_option_minimum=0.01)}
    return RiskModel(table, market, msgspec.structs.replace(params, grids=grids, profiles=profiles))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Twins:
    """Two shards built alike from ``seed``: ``soft`` (software hook) and ``fpga`` (the
    deciding path on ``backend``), with shared clock and market ages."""

    def __init__(self, model: RiskModel, backend, seed: int, n_accounts: int = 10,
                 fail_open: tuple[str, ...] = (), cash: list[float] | None = None, fills: bool = True) -> None:
        self.model = model
        self.rng = np.random.default_rng(seed)
        self.clock = Clock()
        self.ages: dict[str, float] = {}
        self.accounts = [f"A{i}" for i in range(n_accounts)]
        self.settings = PretradeSettings(reservation_ttl_s=5.0, fail_open_accounts=fail_open)
        drawn = [float(np.exp(self.rng.uniform(math.log(3e4), math.log(3e6)))) for _ in self.accounts]
        cash = cash or drawn
        held = [[(int(self.rng.integers(len(model.table))), float(self.rng.integers(-20, 21) or 1))
                 for _ in range(self.rng.integers(0, 6))] if fills else [] for _ in self.accounts]
        self.checkers = [self._shard(cash, held) for _ in range(2)]
        self.soft, self.hard = self.checkers
        self.path = FpgaPath(FpgaSettings(shadow=False), self.settings, backend)
        assert self.path.path == "fpga"
        self.open: list[tuple[str, str]] = []  # (account, order id) accepted for real

    def _shard(self, cash, fills) -> PreTradeChecker:
        shard = PositionShard(0, 1, self.model)
        for i, a in enumerate(self.accounts):
            shard.add_account(a, self.model.params.profiles["som" if i % 3 == 0 else "span"], cash[i])
            for row, qty in fills[i]:
                shard.accounts[a].apply_fill(row, qty, float(self.model.valuation.mark[row]))
        return PreTradeChecker(shard, self.settings, KillSwitches(), clock=self.clock,
                               market_age=self.ages.get)

    # ----- the same change on both twins ---------------------------------------------
    def kill(self, scope: str, key: str, engaged: bool) -> None:
        for c in self.checkers:
            c.kill_switches.apply(KillSwitchCommand(scope, key, engaged))

    def tier(self, account: str, tier: Tier) -> None:
        for c in self.checkers:
            c.shard.accounts[account].tier = tier

    def configure(self, settings: PretradeSettings) -> None:
        for c in self.checkers:
            c.settings = settings

    def redraw(self, k: int) -> None:
        """New kill switches, tiers and market ages for the ``k``-th stretch of orders:
        the global switch in stretch 3, one underlying's in stretches 5 and 7, accounts'
        at random."""
        rng, underlyings = self.rng, list(self.model.table.underlying_ids)
        self.kill("global", "", k == 3)
        for i, u in enumerate(underlyings):
            self.kill("underlying", u, k in (5, 7) and i == (k // 6))
        for a in self.accounts:
            self.kill("account", a, bool(rng.random() < 0.06))
            r = rng.random()
            self.tier(a, Tier.REDUCE_ONLY if r < 0.12 else Tier.PARTIAL_LIQUIDATION if r < 0.17 else Tier.NORMAL)
        self.ages.clear()
        self.ages.update({u: float(rng.choice([0.5, 0.5, 0.5, 9.0])) for u in underlyings})

    def random_limits(self, row: int) -> PretradeLimits:
        rng, model = self.rng, self.model
        mark, mult = float(model.valuation.mark[row]), float(model.table.multiplier[row])
        on = rng.random(7) < np.array([0.4, 0.4, 0.4, 0.4, 0.4, 0.08, 0.3])
        return PretradeLimits(
            max_order_qty=float(rng.integers(1, 40)) if on[0] else 0.0,
            max_order_notional=float(rng.uniform(0.2, 3.0) * 15 * mark * mult) if on[1] else 0.0,
            price_collar=float(rng.uniform(0.01, 0.12)) if on[2] else 0.0,
            max_position_instrument=float(rng.integers(5, 60)) if on[3] else 0.0,
            max_position_underlying=float(rng.integers(10, 150)) if on[4] else 0.0,
            restricted=(model.table.ids[row],) if on[5] else (),
            max_orders_per_s=int(rng.integers(1, 3)) if on[6] else 0)

    def random_request(self, i: int) -> CheckRequest:
        rng, model = self.rng, self.model
        a = self.accounts[int(rng.integers(len(self.accounts)))]
        row = int(rng.integers(len(model.table)))
        lim = self.random_limits(row)
        self.configure(msgspec.structs.replace(self.settings, accounts={a: lim},
                                               stale_after_s=2.0 if rng.random() < 0.3 else 0.0))
        mark = float(model.valuation.mark[row])
        r = rng.random()
        qty = (float(rng.integers(1, 50)) if r < 0.88 else float(rng.uniform(0.01, 50.0)) if r < 0.96
               else 3e9 if r < 0.98 else 0.0)  # 3e9 contracts: outside the filter's q format (fallback)
        replaces = ""
        mine = [o for acct, o in self.open if acct == a and o in self.soft.shard.accounts[a].orders]
        if mine and rng.random() < 0.15:
            replaces = mine[int(rng.integers(len(mine)))]
        return CheckRequest(f"o{i}", a, model.table.ids[row], 1 if rng.random() < 0.5 else -1, qty,
                            mark * float(1.0 + rng.uniform(-0.15, 0.15)), liquidation=bool(rng.random() < 0.1),
                            replaces=replaces, what_if=bool(rng.random() < 0.5))

    def decide(self, request: CheckRequest):
        soft = self.soft.check(request)
        before = self.path.fallback + self.path.software_only
        hard = self.path.check(self.hard, request)
        self.by_software = self.path.fallback + self.path.software_only > before  # the filter was not asked
        if soft.accepted and not request.what_if:
            self.open.append((request.account, request.order_id))
        self.clock.t += 0.02
        return soft, hard

    def assert_same_books(self) -> None:
        for a in self.accounts:
            s, h = self.soft.shard.accounts[a], self.hard.shard.accounts[a]
            assert {k: (o.row, o.quantity) for k, o in s.orders.items()} == \
                   {k: (o.row, o.quantity) for k, o in h.orders.items()}, a
            assert {r: p.quantity for r, p in s.positions.items()} == {r: p.quantity for r, p in h.positions.items()}
        assert {k: (p.account, p.expiry) for k, p in self.soft.pending.items()} == \
               {k: (p.account, p.expiry) for k, p in self.hard.pending.items()}
        assert self.soft.counters == self.hard.counters
        assert self.soft.what_if_counters == self.hard.what_if_counters


def assert_same_decision(request: CheckRequest, soft, hard, by_software: bool = False) -> None:
    assert (hard.accepted, hard.reason) == (soft.accepted, soft.reason), (request, soft, hard)
    if soft.reason in SOFTWARE_ONLY or soft.reason in (ReasonCode.BAD_REQUEST, ReasonCode.RISK_UNAVAILABLE):
        assert hard.message == soft.message
    if soft.reason in (ReasonCode.ACCEPTED, ReasonCode.MARGIN):
        # the filter's IM after (Q.16 money) against the float64 figure
        assert abs(hard.im_after - soft.im_after) <= 1e-3 + 1e-9 * abs(soft.im_after), (request, soft, hard)
        assert hard.im_before == pytest.approx(soft.im_before, rel=1e-12, abs=1e-9)
        assert hard.equity == soft.equity and hard.limit == soft.limit
    if not hard.accepted and hard.reason in FILTER_CODES and not by_software:
        assert hard.message.startswith(hard.reason + ":") and hard.message.endswith("(fpga risk filter)")


@pytest.mark.parametrize("which", ["27 scenarios", "book with 35"])
def test_deciding_path_decides_like_the_software_hook_on_random_orders(book_parts, which) -> None:
    """Model-backed: 400 random orders per book (what-ifs, real orders that reserve,
    replaces, liquidation orders; kill switches, tiers, limits, restricted lists, rate
    throttles and stale data re-drawn), identical decisions and bookkeeping."""
    model = model_27(book_parts) if which == "27 scenarios" else RiskModel(*book_parts)
    backend = ModelBackend()
    twins = Twins(model, backend, seed=20260802 if which == "27 scenarios" else 11)
    seen: dict[str, int] = {}
    for i in range(400):
        if i % 40 == 0:
            twins.redraw(i // 40)
        request = twins.random_request(i)
        soft, hard = twins.decide(request)
        assert_same_decision(request, soft, hard, twins.by_software)
        seen[soft.reason] = seen.get(soft.reason, 0) + 1
        twins.assert_same_books()
    state = twins.path.state()
    assert state["device_errors"] == 0 and backend.checks == state["decided"]
    assert state["fallback"] >= 3, state  # 3e9 contracts: outside the q format
    assert state["software_only"] >= 3  # bad requests: decided before the filter is needed
    if which == "27 scenarios":
        assert state["decided"] >= 300, state
        # every check of both sides decides some orders
        assert FILTER_CODES | SOFTWARE_ONLY <= set(seen), seen
        assert min(seen[code] for code in FILTER_CODES) >= 3, seen
    else:  # NDX has 35 scenarios: its orders are the software's, SPX's the filter's
        assert state["fallback"] >= 100 and state["decided"] >= 100, state


def test_reason_order_is_the_hooks_when_both_sides_fail(book_parts) -> None:
    """A kill switch (filter) comes before reduce-only (software) and both before the
    rate throttle; stale data (software) comes before margin (filter)."""
    model = model_27(book_parts)
    twins = Twins(model, ModelBackend(), seed=3, n_accounts=2)
    es = float(model.valuation.mark[model.table.index["ES"]])
    got = []

    def decide(request: CheckRequest) -> None:
        soft, hard = twins.decide(request)
        assert_same_decision(request, soft, hard)
        got.append(hard.reason)

    twins.tier("A0", Tier.REDUCE_ONLY)
    twins.kill("account", "A0", True)
    decide(CheckRequest("k1", "A0", "ES", 1, 10.0, es))                    # kill switch, not reduce-only
    twins.kill("account", "A0", False)
    decide(CheckRequest("k2", "A0", "ES", 1, 10.0, es))                    # reduce-only
    twins.tier("A0", Tier.NORMAL)
    twins.configure(msgspec.structs.replace(twins.settings, stale_after_s=2.0,
                                            limits=PretradeLimits(max_order_qty=5, restricted=("C7000",),
                                                                  max_orders_per_s=1)))
    twins.ages.update({"SPX": 9.0, "NDX": 9.0})
    decide(CheckRequest("k3", "A1", "C7000", 1, 10.0, 100.0))              # restricted before max qty
    decide(CheckRequest("k4", "A1", "ES", 1, 10.0, es))                    # max qty before stale
    decide(CheckRequest("k5", "A1", "ES", 1, 1.0, es))                     # stale (margin would pass)
    twins.ages.update({"SPX": 0.1, "NDX": 0.1})
    decide(CheckRequest("k6", "A1", "ES", 1, 1.0, es))                     # the filter decides
    decide(CheckRequest("k7", "A1", "ES", 1, 9.0, es))                     # max qty before the rate throttle
    decide(CheckRequest("k8", "A1", "ES", 1, 1.0, es))                     # rate throttle
    want = [ReasonCode.KILL_SWITCH_ACCOUNT, ReasonCode.REDUCE_ONLY, ReasonCode.RESTRICTED_INSTRUMENT,
            ReasonCode.MAX_ORDER_QTY, ReasonCode.STALE_MARKET]
    # k6 accepted: one order in the last second, the most A1 may send
    assert got == want + [ReasonCode.ACCEPTED, ReasonCode.MAX_ORDER_QTY, ReasonCode.RATE_THROTTLE], got
    twins.assert_same_books()


class FailingBackend:
    """A device that raises (or times out, as the driver's TimeoutError says)."""

    simulated = True

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0

    def check(self, record):
        self.calls += 1
        raise self.exc

    def greeks(self, batch):
        self.calls += 1
        raise self.exc


@pytest.mark.parametrize("exc", [TimeoutError("RiskFilterDriver: ap_done not seen after 1000 polls of CTRL"),
                                 OSError("bus error")])
def test_a_failing_device_rejects_fail_closed_unless_the_account_fails_open(book_parts, exc, caplog) -> None:
    model = model_27(book_parts)
    backend = FailingBackend(exc)
    twins = Twins(model, backend, seed=5, n_accounts=2, fail_open=("A1",))
    es = float(model.valuation.mark[model.table.index["ES"]])
    with caplog.at_level("ERROR", logger="riskd.fpga"):
        soft, hard = twins.decide(CheckRequest("f1", "A0", "ES", 1, 1.0, es))
    assert soft.accepted  # the software would have accepted it
    assert (hard.accepted, hard.reason) == (False, FPGA_ERROR)
    assert "fail closed" in hard.message and type(exc).__name__ in hard.message
    assert any("REJECTED (fail closed)" in r.getMessage() for r in caplog.records)
    assert "f1" not in twins.hard.shard.accounts["A0"].orders  # nothing reserved
    assert twins.hard.counters[FPGA_ERROR] == 1
    # fail-open account: the software hook decides (and reserves) instead
    soft, hard = twins.decide(CheckRequest("f2", "A1", "ES", 1, 1.0, es))
    assert (hard.accepted, hard.reason) == (soft.accepted, soft.reason) == (True, ReasonCode.ACCEPTED)
    assert "f2" in twins.hard.shard.accounts["A1"].orders
    state = twins.path.state()
    assert (state["device_errors"], state["failed_open"], backend.calls) == (2, 1, 2)
    assert type(exc).__name__ in state["last_error"]


def test_a_replace_rejected_by_the_device_keeps_the_old_order(book_parts) -> None:
    model = model_27(book_parts)
    backend = ModelBackend()
    twins = Twins(model, backend, seed=9, n_accounts=1)
    es = float(model.valuation.mark[model.table.index["ES"]])
    twins.configure(msgspec.structs.replace(twins.settings, limits=PretradeLimits(max_order_qty=5)))
    soft, hard = twins.decide(CheckRequest("r1", "A0", "ES", 1, 2.0, es))
    assert soft.accepted and hard.accepted
    # a replace too large for the limit: rejected by the filter, the old order restored
    soft, hard = twins.decide(CheckRequest("r2", "A0", "ES", 1, 9.0, es, replaces="r1"))
    assert_same_decision(CheckRequest("r2", "A0", "ES", 1, 9.0, es), soft, hard)
    assert hard.reason == ReasonCode.MAX_ORDER_QTY
    assert twins.hard.shard.accounts["A0"].orders["r1"].quantity == 2.0
    twins.assert_same_books()
    # an accepted replace: the new order replaces the old one in the reservations
    soft, hard = twins.decide(CheckRequest("r3", "A0", "ES", 1, 3.0, es, replaces="r1"))
    assert hard.accepted and "r1" not in twins.hard.shard.accounts["A0"].orders
    twins.assert_same_books()


def test_riskd_status_names_each_path() -> None:
    from daemon.status_cmd import _fpga_line

    deciding = FpgaPath(FpgaSettings(), PretradeSettings(), ModelBackend()).state()
    software = FpgaPath(FpgaSettings(enabled="off"), PretradeSettings()).state()
    from actors.fpga_greeks import FpgaGreeks

    greeks = FpgaGreeks(FpgaSettings(), ModelBackend()).state()
    line = _fpga_line({"shards": [{"fpga": deciding}, {"fpga": software}], "market": {"fpga": greeks}})
    assert "shard 0: fpga (simulated overlay decides" in line and "decided 0, software fallback 0" in line
    assert "shard 1: software (fpga off)" in line
    assert "pricing Greeks path: fpga (option Greeks from the simulated overlay" in line
