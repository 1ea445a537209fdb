"""``riskd margin BOOK --json`` and ``riskd demo``, checked against independent recomputations.

The scenario margin and the stress moves are recomputed here from the TOML files
alone (tomllib), risk.pricing.price, risk.history and NumPy: nothing from
risk/valuation.py, risk/scenarios.py, risk/model.py or risk/var.py is used, so a
convention drift there shows up as a mismatch.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import json
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.cli import main
from risk.history import read_history, returns
from risk.pricing import price

BOOK = "builtin:demo_book.toml"
DAYS_PER_YEAR = 365.0
TIER_NAMES = ("normal", "margin_call", "reduce_only", "partial_liquidation", "full_liquidation")


def _builtin(name: str) -> dict[str, Any]:
    return tomllib.loads(resources.files("configs").joinpath(name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["margin", BOOK, "--json"])
    assert code == 0, err.getvalue()
    assert err.getvalue() == ""
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def book() -> dict[str, Any]:
    data = _builtin("demo_book.toml")
    assert data["config"] == "builtin:default.toml"
    return data


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return _builtin("default.toml")


def _accounts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["margin"]["account"]: a for a in report["accounts"]}


def _profile(config: dict[str, Any], book_account: dict[str, Any]) -> dict[str, Any]:
    return config["margin"]["profiles"][book_account["profile"]]


# --------------------------------------------------------------------------- report invariants

def test_json_has_every_book_account(report: dict[str, Any], book: dict[str, Any]) -> None:
    assert [a["margin"]["account"] for a in report["accounts"]] == [a["id"] for a in book["accounts"]]
    assert len(report["accounts"]) == 3
    assert dt.datetime.fromisoformat(report["as_of"]) == book["market"]["as_of"]
    assert report["covariance_repaired"] is False


def test_margin_identities(report: dict[str, Any], book: dict[str, Any], config: dict[str, Any]) -> None:
    for spec in book["accounts"]:
        m = _accounts(report)[spec["id"]]["margin"]
        mm_factor = _profile(config, spec).get("mm_factor", 0.8)
        assert m["initial_margin"] > 0.0
        assert m["maintenance_margin"] == pytest.approx(mm_factor * m["initial_margin"], rel=1e-12)
        assert m["margin_ratio"] == pytest.approx(m["maintenance_margin"] / m["equity"], rel=1e-12)
        assert m["equity"] == pytest.approx(m["cash"] + m["unrealized_pnl"], rel=1e-12)
        assert m["cash"] == spec["cash"]
        assert m["initial_margin_with_orders"] >= m["initial_margin"]
        if not spec.get("orders"):
            assert m["initial_margin_with_orders"] == m["initial_margin"]
        # IM is the largest selected method, floored by the short-option minimum.
        methods = m["methods"]
        selected = [methods[k] for k in _profile(config, spec).get("methods", ["scenario"])]
        assert all(v is not None for v in selected)
        assert m["initial_margin"] == pytest.approx(max(selected + [methods["short_option_minimum"]]), rel=1e-12)


def test_order_reservation_raises_the_short_vol_account(report: dict[str, Any]) -> None:
    m = _accounts(report)["ACC-SHORTVOL"]["margin"]
    assert m["initial_margin_with_orders"] > m["initial_margin"]


def test_binding_scenario_is_on_the_largest_requirement(report: dict[str, Any]) -> None:
    for acct in report["accounts"]:
        m = acct["margin"]
        unds = {u["underlying"]: u for u in m["underlyings"]}
        assert set(unds) == {"SPX", "NDX"}
        for u in unds.values():
            assert u["scan_risk"] >= 0.0
            assert u["requirement"] == pytest.approx(max(u["scan_risk"], u["short_option_minimum"]), rel=1e-12)
            assert (u["worst_scenario"] == "") == (u["scan_risk"] == 0.0)
        largest = max(u["requirement"] for u in unds.values())
        assert largest > 0.0
        binding = unds[m["binding_underlying"]]
        assert binding["requirement"] == largest
        assert m["binding_scenario"] == binding["worst_scenario"] != ""
        if m["methods"]["scenario"] is not None:
            assert m["methods"]["scenario"] == pytest.approx(sum(u["requirement"] for u in unds.values()),
                                                             rel=1e-12)


def test_tiers_follow_the_configured_ladder(report: dict[str, Any], config: dict[str, Any]) -> None:
    t = config["margin"]["tiers"]
    ladder = [t["margin_call"], t["reduce_only"], t["partial_liquidation"], t["full_liquidation"]]
    for acct in report["accounts"]:
        ratio = acct["margin"]["margin_ratio"]
        assert acct["tier"] == TIER_NAMES[sum(ratio >= level for level in ladder)]
    assert _accounts(report)["ACC-SHORTVOL"]["tier"] == "margin_call"


# --------------------------------------------------------------------------- independent pricing helpers

class Market:
    """Unit values of the book's instruments from the TOML data, with risk.pricing.price only."""

    def __init__(self, config: dict[str, Any], book: dict[str, Any]) -> None:
        self.instruments = {i["id"]: i for i in config["instruments"]}
        self.market = book["market"]
        self.as_of = self.market["as_of"].date()

    def quote(self, underlying: str) -> dict[str, float]:
        q = self.market["underlyings"][underlying]
        return {"price": q["price"], "rate": q.get("rate", 0.0), "div": q.get("dividend_yield", 0.0),
                "vol": q.get("vol", 0.2)}

    def years(self, iid: str) -> float:
        return max((self.instruments[iid]["expiry"] - self.as_of).days, 0) / DAYS_PER_YEAR

    def future(self, fid: str) -> float:
        quoted = self.market.get("future_prices", {})
        if fid in quoted:
            return quoted[fid]
        q = self.quote(self.instruments[fid]["underlying"])
        return q["price"] * math.exp((q["rate"] - q["div"]) * self.years(fid))

    def vol(self, iid: str) -> float:
        return self.market.get("option_vols", {}).get(iid, self.quote(self.instruments[iid]["underlying"])["vol"])

    def unit_value(self, iid: str, move: float = 0.0, vol_shift: float = 0.0, decay_years: float = 0.0,
                   vol_floor: float = 0.0) -> float:
        """Value per unit after a relative move of the underlying, a vol shift and some time decay."""
        spec = self.instruments[iid]
        if spec["kind"] == "future":
            return self.future(iid) * (1.0 + move)
        if spec["kind"] == "spot":
            return self.quote(spec["underlying"])["price"] * (1.0 + move)
        q = self.quote(spec["underlying"])
        on_future = spec.get("on_future")
        s = self.future(on_future) if on_future else q["price"]
        return float(price(spec["right"] == "call", s * (1.0 + move), spec["strike"], q["rate"], q["div"],
                           max(self.years(iid) - decay_years, 0.0), max(self.vol(iid) + vol_shift, vol_floor),
                           on_future is not None))


def _net_positions(book_account: dict[str, Any]) -> dict[str, float]:
    net: dict[str, float] = {}
    for pos in book_account.get("positions", []):
        net[pos["instrument"]] = net.get(pos["instrument"], 0.0) + pos["quantity"]
    return net


def _span_scenarios(grid: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(relative move, vol shift, weight) of the 16 SPAN scenarios, per risk/params.py SpanGrid."""
    assert grid["family"] == "span"
    rng, vol = grid["price_scan_range"], grid["vol_scan_range"]
    out = [(k / 3.0 * rng, d * vol, 1.0) for k in (0, 1, -1, 2, -2, 3, -3) for d in (1.0, -1.0)]
    extreme, fraction = grid.get("extreme_multiple", 3.0), grid.get("extreme_fraction", 0.35)
    out += [(extreme * rng, 0.0, fraction), (-extreme * rng, 0.0, fraction)]
    assert len(out) == 16
    return out


def _scan(config: dict[str, Any], mkt: Market, net: dict[str, float], underlying: dict[str, Any]
          ) -> tuple[float, float]:
    """(scan risk, short option contracts x underlying price x multiplier) of one underlying, currency."""
    grid = config["margin"]["grids"][underlying["grid"]]
    decay = grid.get("lookahead_days", 0.0) / DAYS_PER_YEAR
    floor = grid.get("vol_floor", 0.01)
    scenarios = _span_scenarios(grid)
    pnl = np.zeros(len(scenarios))
    short_notional = 0.0
    for iid, qty in net.items():
        spec = mkt.instruments[iid]
        if spec["underlying"] != underlying["id"] or qty == 0.0:
            continue
        mult = spec.get("multiplier", 1.0)
        base = mkt.unit_value(iid)
        for j, (move, vol_shift, weight) in enumerate(scenarios):
            pnl[j] += qty * mult * weight * (mkt.unit_value(iid, move, vol_shift, decay, floor) - base)
        if spec["kind"] == "option" and qty < 0:
            # The option's own underlying price: the future's for options on futures.
            on_future = spec.get("on_future")
            ref = mkt.future(on_future) if on_future else mkt.quote(underlying["id"])["price"]
            short_notional += -qty * ref * mult
    return max(0.0, -float(pnl.min())), short_notional


@pytest.mark.parametrize("account_id", ["ACC-HEDGED", "ACC-SHORTVOL", "ACC-VAR"])
def test_scenario_margin_recomputed_independently(report: dict[str, Any], book: dict[str, Any],
                                                  config: dict[str, Any], account_id: str) -> None:
    """SPAN-like IM = sum over underlyings of max(scan risk, short-option minimum), to 1e-6 relative.

    ACC-HEDGED is the account the brief names (SPX futures and BSM calls); ACC-SHORTVOL adds
    Black-76 options on a quoted future, ACC-VAR an unquoted future and a long put.
    """
    mkt = Market(config, book)
    spec = next(a for a in book["accounts"] if a["id"] == account_id)
    profile = _profile(config, spec)
    som_rate = profile.get("short_option_minimum", 0.0)
    net = _net_positions(spec)
    m = _accounts(report)[account_id]["margin"]
    got = {u["underlying"]: u for u in m["underlyings"]}
    total = 0.0
    for und in config["underlyings"]:
        scan, short_notional = _scan(config, mkt, net, und)
        som = som_rate * short_notional
        assert got[und["id"]]["scan_risk"] == pytest.approx(scan, rel=1e-6, abs=1e-6)
        assert got[und["id"]]["short_option_minimum"] == pytest.approx(som, rel=1e-6, abs=1e-6)
        total += max(scan, som)
    assert m["methods"]["scenario"] == pytest.approx(total, rel=1e-6)
    if profile.get("methods", ["scenario"]) == ["scenario"]:
        assert m["initial_margin"] == pytest.approx(total, rel=1e-6)
    # Equity: cash + quantity x (mark - average price) x multiplier (average price defaults to the mark).
    upl = 0.0
    for pos in spec.get("positions", []):
        mark = mkt.unit_value(pos["instrument"])
        mult = mkt.instruments[pos["instrument"]].get("multiplier", 1.0)
        upl += pos["quantity"] * (mark - pos.get("average_price", mark)) * mult
    assert m["unrealized_pnl"] == pytest.approx(upl, rel=1e-9, abs=1e-6)
    assert m["equity"] == pytest.approx(spec["cash"] + upl, rel=1e-9)


def test_hedged_account_binds_on_the_spx_upside_extreme(report: dict[str, Any]) -> None:
    """Short 25 of the 7000 calls against +10/+10 wings and 4 long futures: the +3x move hurts most."""
    m = _accounts(report)["ACC-HEDGED"]["margin"]
    assert m["binding_underlying"] == "SPX"
    assert m["binding_scenario"].startswith("extreme +")
    assert m["methods"]["short_option_minimum"] == pytest.approx(0.005 * 6900.0 * 100 * 25)


# --------------------------------------------------------------------------- stress tests

def _ewma_covariance(config: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """EWMA covariance of the sample history, seeded as risk/model.py does.

    risk/model.py: n_seed = min(D, max(20, U + 1)); seed = R[:n_seed]' R[:n_seed] / n_seed
    (zero mean), then C <- lambda C + (1 - lambda) r r' for each later row, oldest first.
    """
    ids = [u["id"] for u in config["underlyings"]]
    history_ref = config["history"]
    assert history_ref.startswith("builtin:")
    history = read_history(Path(str(resources.files("configs").joinpath(history_ref[len("builtin:"):]))))
    var = config["margin"].get("var", {})
    lam, window, horizon = var.get("ewma_lambda", 0.94), var.get("window", 252), var.get("horizon_days", 1)
    cols = [history.underlyings.index(u) for u in ids]
    r = np.asarray(returns(history.prices[:, cols], horizon, window), dtype=float)
    assert r.shape == (window, len(ids))
    n_seed = min(len(r), max(20, len(ids) + 1))
    cov = r[:n_seed].T @ r[:n_seed] / n_seed
    for row in r[n_seed:]:
        cov = lam * cov + (1.0 - lam) * np.outer(row, row)
    return ids, cov


def test_tech_crash_moves_ndx_and_implies_spx(report: dict[str, Any], config: dict[str, Any]) -> None:
    stress = next(s for s in config["margin"]["stress"] if s["name"] == "tech crash")
    sectors = {u["id"]: u.get("sector", "") for u in config["underlyings"]}
    assert sectors["NDX"] == "tech" and stress["sector_moves"] == {"tech": -0.20}
    ids, cov = _ewma_covariance(config)
    spx, ndx = ids.index("SPX"), ids.index("NDX")
    bound = math.sqrt(cov[spx, spx] * cov[ndx, ndx])
    scaled = float(np.clip(cov[spx, ndx] * stress["correlation_factor"], -bound, bound))
    # Conditioned on log-returns (risk/stress.py), then back to a relative move.
    expected_spx = math.expm1(scaled / cov[ndx, ndx] * math.log1p(-0.20))
    assert -0.20 < expected_spx < 0.0
    for acct in report["accounts"]:
        result = next(s for s in acct["stress"] if s["name"] == "tech crash")
        assert result["moves"]["NDX"] == -0.20
        assert result["moves"]["SPX"] == pytest.approx(expected_spx, rel=1e-10, abs=1e-12)


def test_broad_rally_uses_the_given_moves(report: dict[str, Any]) -> None:
    for acct in report["accounts"]:
        result = next(s for s in acct["stress"] if s["name"] == "broad rally")
        assert result["moves"] == {"SPX": 0.08, "NDX": 0.10}


def test_stress_pnl_recomputed_independently(report: dict[str, Any], book: dict[str, Any],
                                             config: dict[str, Any]) -> None:
    """Full revaluation at the reported moves: price x (1 + move), vol + shift, no time decay."""
    mkt = Market(config, book)
    sectors = {u["id"]: u.get("sector", "") for u in config["underlyings"]}
    stresses = {s["name"]: s for s in config["margin"]["stress"]}
    for spec in book["accounts"]:
        for result in _accounts(report)[spec["id"]]["stress"]:
            stress = stresses[result["name"]]
            pnl = 0.0
            for iid, qty in _net_positions(spec).items():
                und = mkt.instruments[iid]["underlying"]
                shift = stress.get("sector_vol_shifts", {}).get(sectors[und], stress.get("vol_shift", 0.0))
                mult = mkt.instruments[iid].get("multiplier", 1.0)
                pnl += qty * mult * (mkt.unit_value(iid, result["moves"][und], shift) - mkt.unit_value(iid))
            assert result["pnl"] == pytest.approx(pnl, rel=1e-9, abs=1e-6), (spec["id"], result["name"])


# --------------------------------------------------------------------------- riskd demo and bad books

def test_demo_prints_every_account(capsys: pytest.CaptureFixture[str], book: dict[str, Any]) -> None:
    assert main(["demo", "--margin-only"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "riskd margin report" in out
    for acct in book["accounts"]:
        assert acct["id"] in out


def _key(name: str) -> str:
    bare = name and name.isascii() and all(c.isalnum() or c in "-_" for c in name)
    return name if bare else json.dumps(name)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(type(v).__name__)


def _write_toml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text("".join(f"{_key(k)} = {_value(v)}\n" for k, v in data.items()), encoding="utf-8")
    return path


def _run_margin(path: Path | str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["margin", str(path), "--json"])
    return code, out.getvalue(), err.getvalue()


def test_written_copy_of_the_demo_book_gives_the_same_report(tmp_path: Path, book: dict[str, Any],
                                                            report: dict[str, Any]) -> None:
    code, out, err = _run_margin(_write_toml(tmp_path / "book.toml", book))
    assert (code, err) == (0, "")
    assert json.loads(out) == report


def test_book_with_unknown_instrument(tmp_path: Path, book: dict[str, Any]) -> None:
    data = copy.deepcopy(book)
    data["accounts"][0]["positions"][1]["instrument"] = "SPX 261218C7100"
    path = _write_toml(tmp_path / "book.toml", data)
    code, out, err = _run_margin(path)
    assert code == 2 and out == ""
    assert err.startswith(f"riskd: {path}: accounts[0].positions[1].instrument: ")
    assert "'SPX 261218C7100'" in err and "builtin:default.toml" in err


def test_book_with_unknown_order_instrument(tmp_path: Path, book: dict[str, Any]) -> None:
    data = copy.deepcopy(book)
    data["accounts"][1]["orders"][0]["instrument"] = "NQH7"
    path = _write_toml(tmp_path / "book.toml", data)
    code, out, err = _run_margin(path)
    assert code == 2 and out == ""
    assert err.startswith(f"riskd: {path}: accounts[1].orders[0].instrument: ") and "'NQH7'" in err


def test_book_with_bad_profile(tmp_path: Path, book: dict[str, Any]) -> None:
    data = copy.deepcopy(book)
    data["accounts"][1]["profile"] = "spam"
    path = _write_toml(tmp_path / "book.toml", data)
    code, out, err = _run_margin(path)
    assert code == 2 and out == ""
    assert err.startswith(f"riskd: {path}: accounts[1].profile: expected one of the profiles")
    assert "'span'" in err and "found 'spam'" in err


def test_book_naming_a_bad_config_reports_the_config_file(tmp_path: Path, book: dict[str, Any],
                                                          config: dict[str, Any]) -> None:
    bad = copy.deepcopy(config)
    bad["margin"]["grids"]["span_tech"]["vol_scan_range"] = -0.05
    cfg = _write_toml(tmp_path / "cfg.toml", bad)
    path = _write_toml(tmp_path / "book.toml", dict(book, config="cfg.toml"))
    code, out, err = _run_margin(path)
    assert code == 2 and out == ""
    assert err.startswith(f"riskd: {cfg.resolve()}: margin.grids.span_tech.vol_scan_range: expected float >= 0")
    assert "found -0.05" in err


def test_book_with_negative_option_vol_names_the_option(tmp_path: Path, book: dict[str, Any]) -> None:
    data = copy.deepcopy(book)
    data["market"]["option_vols"]["NQZ6 C25000"] = -0.205
    path = _write_toml(tmp_path / "book.toml", data)
    code, _, err = _run_margin(path)
    assert code == 2
    assert f"{path}: market.option_vols." in err
    assert "NQZ6 C25000" in err and "-0.205" in err
