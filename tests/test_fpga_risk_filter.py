"""The FPGA risk filter (issue 8): the software hook (actors.pretrade.PreTradeChecker) vs the
bit-exact model on 10,000 random orders (identical decisions and reason codes), and the
Amaranth simulation of the filter vs the model on the same 10,000 records plus 2,000 raw
random records that drive every field through its whole format (identical outputs).
"""

from __future__ import annotations

import math
import random

import msgspec
import numpy as np
import pytest

pytest.importorskip("amaranth", reason="amaranth is in the [test] extra (FPGA overlay simulation)")

from actors.kill_switch import KillSwitches  # noqa: E402
from actors.position_shard import PositionShard  # noqa: E402
from actors.pretrade import PreTradeChecker  # noqa: E402
from actors.pretrade_config import PretradeLimits, PretradeSettings  # noqa: E402
from actors.pretrade_messages import CheckRequest, KillSwitchCommand, ReasonCode  # noqa: E402
from fpga_overlay import risk_filter as rf  # noqa: E402
from fpga_overlay import risk_filter_host as host  # noqa: E402
from fpga_overlay.filter_sim import run_fed  # noqa: E402
from fpga_overlay.hdl_dataflow import DataflowPipeline  # noqa: E402
from risk.model import RiskModel  # noqa: E402
from risk.params import MarginProfile, PortfolioGrid  # noqa: E402

N_ORDERS = 10_000
N_RAW = 2_000
FILTER_CODES = {ReasonCode.ACCEPTED, ReasonCode.KILL_SWITCH_GLOBAL, ReasonCode.KILL_SWITCH_ACCOUNT,
                ReasonCode.KILL_SWITCH_UNDERLYING, ReasonCode.MAX_ORDER_QTY, ReasonCode.MAX_ORDER_NOTIONAL,
                ReasonCode.PRICE_COLLAR, ReasonCode.MAX_POSITION_INSTRUMENT, ReasonCode.MAX_POSITION_UNDERLYING,
                ReasonCode.MARGIN}


def test_reason_codes_are_the_software_hooks() -> None:
    assert rf.FilterReason.ALL == ReasonCode.ALL
    for name in dir(ReasonCode):
        if name.isupper():
            assert getattr(rf.FilterReason, name) == getattr(ReasonCode, name)


def _model(book_parts) -> RiskModel:
    """The test book with the PM grid's extended moves off: 16 and 27 scenarios (S = 27)."""
    table, market, params = book_parts
    grids = dict(params.grids)
    grids["pm"] = PortfolioGrid(extended_moves=())
    profiles = {"span": MarginProfile(), "som": MarginProfile(short_option_minimum=0.01)}
    return RiskModel(table, market, msgspec.structs.replace(params, grids=grids, profiles=profiles))


def _random_limits(rng: np.random.Generator, mark: float, mult: float) -> PretradeLimits:
    on = rng.random(5) < 0.45
    return PretradeLimits(
        max_order_qty=float(rng.integers(1, 40)) if on[0] else 0.0,
        max_order_notional=float(rng.uniform(0.2, 3.0) * 15 * mark * mult) if on[1] else 0.0,
        price_collar=float(rng.uniform(0.01, 0.12)) if on[2] else 0.0,
        max_position_instrument=float(rng.integers(5, 60)) if on[3] else 0.0,
        max_position_underlying=float(rng.integers(10, 150)) if on[4] else 0.0,
    )


@pytest.fixture(scope="module")
def orders(request) -> dict:
    """10,000 random orders decided by the software hook and their filter records."""
    book_parts = request.getfixturevalue("book_parts_module")
    model = _model(book_parts)
    rng = np.random.default_rng(20260801)
    shard = PositionShard(0, 1, model)
    accounts = [f"A{i}" for i in range(12)]
    for i, a in enumerate(accounts):
        shard.add_account(a, model.params.profiles["som" if i % 3 == 0 else "span"],
                          float(np.exp(rng.uniform(math.log(3e4), math.log(3e6)))))
    n_rows = len(model.table)
    for a in accounts:  # positions and open orders (reserved on their worst side)
        acct = shard.accounts[a]
        for _ in range(rng.integers(0, 6)):
            row = int(rng.integers(n_rows))
            acct.apply_fill(row, float(rng.integers(-20, 21) or 1), float(model.valuation.mark[row]))
        for k in range(rng.integers(0, 4)):
            row = int(rng.integers(n_rows))
            acct.reserve(f"{a}-open{k}", row, float(rng.integers(-15, 16) or -1), float(model.valuation.mark[row]))
    switches = KillSwitches()
    settings = PretradeSettings(reservation_ttl_s=0.0)
    checker = PreTradeChecker(shard, settings, switches, clock=lambda: 1000.0)
    records, software, im_after = [], [], []
    for i in range(N_ORDERS):
        if i % 250 == 0:  # re-draw the kill switches and the limits now and then
            for scope, keys in (("global", [""]), ("account", accounts), ("underlying", ["SPX", "NDX"])):
                for key in keys:
                    switches.apply(KillSwitchCommand(scope, key, bool(rng.random() < 0.04)))
            limits = {a: _random_limits(rng, 1000.0, 50.0) for a in accounts}
        a = accounts[int(rng.integers(len(accounts)))]
        row = int(rng.integers(n_rows))
        mark, mult = float(model.valuation.mark[row]), float(model.table.multiplier[row])
        lim = _random_limits(rng, mark, mult) if rng.random() < 0.7 else limits[a]
        checker.settings = msgspec.structs.replace(settings, accounts={a: lim})
        side = 1 if rng.random() < 0.5 else -1
        qty = float(rng.integers(1, 50)) if rng.random() < 0.9 else float(rng.uniform(0.01, 50.0))
        price = mark * float(1.0 + rng.uniform(-0.15, 0.15))
        # every 8th order is real (reserves when accepted): the account state moves along
        what_if = i % 8 != 0
        acct = shard.accounts[a]
        u = model.table.underlying_ids[int(model.block_of[row])]
        kills = host.KillFlags(global_=switches.engaged_global() is not None,
                               account=switches.engaged_account(a) is not None,
                               underlying=switches.engaged_underlying(u) is not None)
        records.append(host.order_fields(acct, row, side * qty, price,
                                         host.FilterLimits(**{k: getattr(lim, k) for k in host.FilterLimits.__struct_fields__}), kills,
                                         settings.im_tolerance))
        d = checker.check(CheckRequest(f"o{i}", a, model.table.ids[row], side, qty, price, what_if=what_if))
        software.append((d.accepted, d.reason))
        im_after.append(d.im_after)
    return {"records": records, "software": software, "im_after": im_after, "model": model, "shard": shard}


@pytest.fixture(scope="module")
def book_parts_module():
    """tests/conftest.py's book, built once for the module (the fixture is function-scoped)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_riskd_test_book", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.book_parts._get_wrapped_function()()


def test_model_decides_like_the_software_hook_on_10000_orders(orders) -> None:
    fields = host.stack(orders["records"])
    out = rf.model(fields)
    mismatches = []
    counts: dict[str, int] = {}
    for i, (accepted, reason) in enumerate(orders["software"]):
        got_accept, got_reason, got_im = host.decode(out, i)
        counts[reason] = counts.get(reason, 0) + 1
        if (got_accept, got_reason) != (accepted, reason):
            mismatches.append((i, (accepted, reason), (got_accept, got_reason)))
        elif reason in (ReasonCode.ACCEPTED, ReasonCode.MARGIN):
            want = orders["im_after"][i]  # the IM figure, to the fixed point's quantum
            assert abs(got_im - want) <= 1e-3 + 1e-9 * abs(want), (i, got_im, want)
    assert not mismatches, mismatches[:10]
    assert set(counts) == FILTER_CODES, counts  # every check decides some orders
    assert min(counts.values()) >= 30, counts


def _raw_records(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random fields over each format's whole range (the ends included), so every
    comparison, sign and saturation path of the hardware is driven."""
    rng = np.random.default_rng(seed)
    bits_rng = random.Random(seed)
    out = {}
    for name, (bits, _) in rf.FIELDS.items():
        lo, hi = rf.field_range(name)
        if bits == 1:
            vals = (rng.random(n) < (0.05 if name.startswith("kill") else 0.5)).astype(int)
        else:
            scale = rng.integers(1, bits, n)  # log-uniform magnitudes
            mag = [bits_rng.getrandbits(int(b)) for b in scale]
            sign = rng.random(n) < 0.5
            vals = [min(max(-m if s else m, lo), hi) for m, s in zip(mag, sign)]
            ends = rng.random(n)
            vals = [lo if e < 0.02 else hi if e > 0.98 else v for v, e in zip(vals, ends)]
        out[name] = np.asarray([int(v) for v in vals], dtype=object)
    return out


def test_rtl_matches_model_on_12000_records_one_per_clock(orders) -> None:
    graph = rf.filter_graph()
    assert graph.latency <= rf.latency_bound()
    real = host.stack(orders["records"])
    raw = _raw_records(N_RAW, seed=7)
    fields = {k: np.concatenate([real[k], raw[k]]) for k in rf.FIELDS}
    n = len(fields["q"])
    got, cycles = run_fed(DataflowPipeline(graph), fields)
    want = rf.model(fields)
    for name in rf.OUTPUTS:
        assert got[name] == [int(v) for v in want[name]], name
    # one decision per clock once full: n records in n + latency cycles
    assert cycles == n + graph.latency
    assert len(set(int(c) for c in want["code"][N_ORDERS:])) >= 8  # the raw records reach most codes


def test_host_refuses_what_the_filter_cannot_hold(book_parts) -> None:
    model = RiskModel(*book_parts)  # the PM grid with its 8 extended moves: 35 scenarios > S
    shard = PositionShard(0, 1, model)
    shard.add_account("A", model.params.profiles["span"], 1e6)
    acct = shard.accounts["A"]
    nq = model.table.index["NQ"]
    with pytest.raises(ValueError, match="35 scenarios > S = 27"):
        host.order_fields(acct, nq, 1.0, 24570.0, host.FilterLimits(), host.KillFlags(), 0.01)
    es = model.table.index["ES"]
    with pytest.raises(ValueError, match="field q"):
        host.order_fields(acct, es, 2.0 ** 40, 6900.0, host.FilterLimits(), host.KillFlags(), 0.01)
    with pytest.raises(ValueError, match="field price: nan"):
        host.order_fields(acct, es, 1.0, math.nan, host.FilterLimits(), host.KillFlags(), 0.01)


def test_lanes_quantize_like_the_scalar_field_conversion() -> None:
    """host._fx_lanes (all scenario lanes at once) against host._fx lane by lane: ties
    (half a quantum: round half to even), signs, the format's ends and beyond."""
    rng = np.random.default_rng(17)
    for keys, frac in ((host._C_KEYS, rf.MONEY_FRAC), (host._A_KEYS, rf.RISK_FRAC)):
        lo, hi = rf.field_range(keys[0])
        q = 1.0 / (1 << frac)
        for trial in range(300):
            n = int(rng.integers(0, rf.S + 1))
            magnitude = 10.0 ** rng.uniform(-6, math.log10(hi * q) + (0.3 if trial % 10 == 0 else -0.01), n)
            values = np.where(rng.random(n) < 0.5, -magnitude, magnitude)
            ties = rng.random(n) < 0.3  # exactly k + 1/2 quanta
            values[ties] = (np.floor(values[ties] / q) + 0.5) * q
            if trial % 25 == 0 and n:
                values[int(rng.integers(n))] = rng.choice([hi * q, lo * q, math.nan, math.inf])
            try:
                want = [host._fx(k, float(v), frac) for k, v in zip(keys, values)]
            except ValueError as exc:
                with pytest.raises(ValueError, match=str(exc).split(":")[0]):
                    host._fx_lanes(keys, values, frac)
                continue
            assert host._fx_lanes(keys, values, frac) == want
