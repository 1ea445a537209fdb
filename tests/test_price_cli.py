"""``riskd price``: daemon.calc_price.run_price on CSV files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import QuantLib as ql

from daemon.calc_price import RESULT_COLUMNS, run_price
from risk.pricing import greeks

GOOD = """\
type,spot,strike,rate,dividend,time,vol,book,model
call,100,95,0.05,0.02,0.2,0.25,alpha,
PUT,100,95,0.05,0.02,0.5,0.25,"beta, with comma",bsm
Call,4200.5,4300,-0.01,0.03,0.0027397260273972603,1.5,gamma,BSM
put,50,150,0.1,-0.02,5,0.01,delta,bsm
call,80,100,0.03,,2,0.4,futures,black76
put,80,60,0.03,0.9,2,0.4,futures,Black76
call,105,100,0.05,0.02,0,0.2,expired,
"""


def _run(tmp_path: Path, text: str, as_json: bool = False) -> tuple[int, str, str]:
    path = tmp_path / "options.csv"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    code = run_price(str(path), as_json, out, err)
    return code, out.getvalue(), err.getvalue().replace(str(path), "FILE")


def _expected(rows: list[dict[str, str]]) -> np.ndarray:
    """One vectorized risk.pricing.greeks call over the rows' inputs, as (n, 6)."""
    names = ("spot", "strike", "rate", "dividend", "time", "vol")
    col = {name: np.array([float(r[name] or 0) for r in rows]) for name in names}
    is_call = np.array([r["type"].lower() == "call" for r in rows])
    black76 = np.array([r.get("model", "").lower() == "black76" for r in rows])
    g = greeks(is_call, *(col[name] for name in names), black76)
    return np.stack([np.broadcast_to(x, (len(rows),)) for x in g], axis=1)


def _input_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_output_is_the_input_plus_greeks(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, GOOD)
    assert (code, err) == (0, "")
    rows = list(csv.reader(io.StringIO(out)))
    header = GOOD.splitlines()[0].split(",")
    assert rows[0] == header + list(RESULT_COLUMNS)
    inputs = list(csv.reader(io.StringIO(GOOD)))[1:]
    assert [r[: len(header)] for r in rows[1:]] == inputs
    expected = _expected(_input_rows(GOOD))
    for row, want in zip(rows[1:], expected):
        # Written with repr: the shortest text that reads back as the same double.
        assert row[len(header):] == [repr(float(x)) for x in want]
    # Not just a copy of whatever greeks returns: the models and the expired row differ.
    assert expected[4, 5] == pytest.approx(-2 * expected[4, 0], rel=1e-15)  # Black-76 rho
    assert list(expected[6][[0, 1, 2, 3, 5]]) == [5.0, 1.0, 0.0, 0.0, 0.0]  # expired: intrinsic


def test_values_agree_with_quantlib(tmp_path: Path) -> None:
    code, out, _ = _run(tmp_path, GOOD)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    today = ql.Date(1, ql.July, 2024)
    saved = ql.Settings.instance().evaluationDate
    ql.Settings.instance().evaluationDate = today
    try:
        dc = ql.Actual365Fixed()
        # Rows 0, 2 (one day: t = 1/365), 3 (deep ITM, 1 % vol) and 4 (Black-76, as
        # BSM with the dividend curve equal to the rate curve).
        for i, days in ((0, 73), (2, 1), (3, 5 * 365), (4, 2 * 365)):
            row = rows[i]
            b76 = row["model"].lower() == "black76"
            rate = ql.YieldTermStructureHandle(ql.FlatForward(today, float(row["rate"]), dc))
            div = rate if b76 else ql.YieldTermStructureHandle(ql.FlatForward(today, float(row["dividend"]), dc))
            vol = ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), float(row["vol"]), dc))
            process = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(float(row["spot"]))), div, rate, vol)
            kind = ql.Option.Call if row["type"].lower() == "call" else ql.Option.Put
            opt = ql.VanillaOption(ql.PlainVanillaPayoff(kind, float(row["strike"])),
                                   ql.EuropeanExercise(today + days))
            opt.setPricingEngine(ql.AnalyticEuropeanEngine(process))
            assert float(row["time"]) == pytest.approx(days / 365, rel=1e-15)
            t = float(row["time"])
            # Black-76 rho holds the futures price fixed: -t * price (see test_pricing_quantlib).
            ref = {"price": opt.NPV(), "delta": opt.delta(), "gamma": opt.gamma(), "vega": opt.vega(),
                   "theta": opt.theta(), "rho": -t * opt.NPV() if b76 else opt.rho()}
            for name, value in ref.items():
                assert float(row[name]) == pytest.approx(value, rel=1e-9, abs=1e-9 * float(row["spot"])), (i, name)
    finally:
        ql.Settings.instance().evaluationDate = saved


def test_json_lines(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, GOOD, as_json=True)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    inputs = _input_rows(GOOD)
    assert len(lines) == len(inputs)
    expected = _expected(inputs)
    for line, row, want in zip(lines, inputs, expected):
        obj = json.loads(line)
        assert list(obj) == list(row) + list(RESULT_COLUMNS)
        assert {k: obj[k] for k in row} == row  # original fields, as text
        assert [obj[k] for k in RESULT_COLUMNS] == [float(x) for x in want]


def test_bad_rows_are_reported_and_skipped(tmp_path: Path) -> None:
    text = (
        "type,spot,strike,rate,dividend,time,vol,note\n"  # line 1
        "call,100,100,0.05,0.02,1,0.2,ok\n"  # 2
        "\n"  # 3: blank, ignored
        "call,-100,100,0.05,0.02,1,0.2,bad spot\n"  # 4
        'put,100,100,0.05,0.02,1,0.2,"two\nlines"\n'  # 5-6, good
        "straddle,100,abc,0.05,0.02,1,0.2,x\n"  # 7: two bad cells
        "put,100,100,0.05,0.02,-1,0.2,neg time\n"  # 8
        "put,100,100,0.05,0.02,1,nan,nan vol\n"  # 9
        "put,100,100,0.05\n"  # 10: short
        "call,100,0,0.05,0.02,1,-0.2,x\n"  # 11
        "call,100,100,0.05,0.02,1,0.2,x,surplus\n"  # 12: an extra field
        "put,90,100,0.05,0.02,1,0.3,ok too,\n"  # 13: a trailing empty field is fine
        'put,90,100,0.05,0.02,1,-1,"bad, on\ntwo lines"\n'  # 14-15: reported at its first line
    )
    code, out, err = _run(tmp_path, text)
    assert code == 1
    assert err.splitlines() == [
        "FILE:4: column 'spot': expected a number > 0, found '-100'",
        "FILE:7: column 'type': expected 'call' or 'put', found 'straddle'",
        "FILE:7: column 'strike': expected a number > 0, found 'abc'",
        "FILE:8: column 'time': expected a number >= 0 (years), found '-1'",
        "FILE:9: column 'vol': expected a number >= 0 (fraction per year), found 'nan'",
        "FILE:10: column 'dividend': expected a number (fraction per year), found ''",
        "FILE:10: column 'time': expected a number >= 0 (years), found ''",
        "FILE:10: column 'vol': expected a number >= 0 (fraction per year), found ''",
        "FILE:11: column 'strike': expected a number > 0, found '0'",
        "FILE:11: column 'vol': expected a number >= 0 (fraction per year), found '-0.2'",
        "FILE:12: expected 8 fields as in the header, found 9",
        "FILE:14: column 'vol': expected a number >= 0 (fraction per year), found '-1'",
    ]
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["note"] for r in rows] == ["ok", "two\nlines", "ok too"]
    assert [float(r["price"]) for r in rows] == [float(x) for x in _expected(rows)[:, 0]]


def test_unknown_model_and_black76_dividend(tmp_path: Path) -> None:
    text = (
        "Type , Spot,strike,rate,dividend,time,vol,Model\n"
        "call,100,100,0.05,,1,0.2,sabr\n"
        "call,100,100,0.05,,1,0.2,\n"
        "call,100,100,0.05,,1,0.2,black76\n"
        "call,100,100,0.05,0.4,1,0.2,black76\n"
    )
    code, out, err = _run(tmp_path, text)
    assert code == 1
    assert err.splitlines() == [
        # Not Black-76, so the dividend is needed; each bad cell in column order.
        "FILE:2: column 'dividend': expected a number (fraction per year), found ''",
        "FILE:2: column 'Model': expected 'bsm' or 'black76', found 'sabr'",
        "FILE:3: column 'dividend': expected a number (fraction per year), found ''",
    ]
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][:2] == ["Type ", " Spot"]  # the header is passed through as written
    # Black-76 ignores the dividend, given or not.
    assert rows[1][8:] == rows[2][8:]


def test_missing_columns(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "type,spot,strike,rate,time\ncall,100,100,0.05,1\n")
    assert (code, out) == (2, "")
    assert err.startswith("FILE:1: missing required column(s) 'dividend', 'vol'")


@pytest.mark.parametrize("header, problem", [
    ("type,spot,strike,rate,dividend,time,vol,price", "the input already has result column(s) 'price'"),
    ("type,spot,strike,rate,dividend,time,vol,Spot", "duplicate column(s) 'spot'"),
])
def test_unusable_header(tmp_path: Path, header: str, problem: str) -> None:
    code, out, err = _run(tmp_path, header + "\n")
    assert (code, out) == (2, "")
    assert err.startswith(f"FILE:1: {problem}")


def test_unreadable_file(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_price(str(tmp_path / "nope.csv"), False, out, err) == 2
    assert "cannot read" in err.getvalue() and out.getvalue() == ""
    (tmp_path / "empty.csv").write_text("\n\n")
    assert run_price(str(tmp_path / "empty.csv"), False, out, err) == 2
    (tmp_path / "latin1.csv").write_bytes("type,spot\n\xe9t\xe9\n".encode("latin-1"))
    assert run_price(str(tmp_path / "latin1.csv"), True, out, err) == 2
    assert out.getvalue() == ""


def test_header_only_and_bom(tmp_path: Path) -> None:
    code, out, err = _run(tmp_path, "\ufefftype,spot,strike,rate,dividend,time,vol\n")
    assert (code, err) == (0, "")
    assert out == "type,spot,strike,rate,dividend,time,vol,price,delta,gamma,vega,theta,rho\n"
