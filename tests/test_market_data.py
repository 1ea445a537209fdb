"""Tests for actors.market_data: tick schema, validation, market state, simulator, replay."""

from __future__ import annotations

import datetime as dt
import math

import msgspec
import numpy as np
import pytest

from actors.market_data import (MAX_VOL, GbmMarket, GbmUnderlying, MarketState, ReplayError, ReplayFileError,
                                ReplaySource, Tick, TickDecoder, VolPoint, encode_tick, validate_tick,
                                write_replay_csv, write_replay_parquet)
from risk.errors import RiskModelError
from risk.instruments import (SECONDS_PER_YEAR, InstrumentTable, MarketSnapshot, ReferenceDataError,
                              UnderlyingQuote, pricing_inputs)
from risk.params import InstrumentSpec, UnderlyingSpec

UTC = dt.timezone.utc
AS_OF = dt.datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
AS_OF_NS = int(AS_OF.timestamp()) * 10**9
DEC, MAR = dt.date(2026, 12, 18), dt.date(2027, 3, 19)


def ns_to_dt(ns: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=ns // 1000)


def full_tick(**changes) -> Tick:
    tick = Tick(underlying="SPX", price=6900.0, rate=0.04, dividend_yield=0.013, atm_vol=0.17,
                vol_points=(VolPoint("2026-12-18", 6600.0, 0.2), VolPoint("2026-12-18", 7000.0, 0.16)),
                future_prices=(("ES", 6912.5),), option_vols=(("C7000", 0.158),),
                event_time_ns=AS_OF_NS - 5 * 10**9, seq=7)
    return msgspec.structs.replace(tick, **changes)


# --------------------------------------------------------------------------- schema


def test_tick_round_trip_is_array_like():
    tick = full_tick()
    data = encode_tick(tick)
    assert data[0] == 0x90 | 10  # a msgpack fixarray of the 10 fields: names are not sent
    decoder = TickDecoder()
    assert decoder.decode(data) == tick
    assert decoder(data) == tick  # reusable
    minimal = Tick(underlying="NDX", price=24500.0, event_time_ns=1, seq=2)
    assert decoder.decode(encode_tick(minimal)) == minimal
    assert decoder.decode(encode_tick(minimal)).rate is None


def test_decoder_rejects_non_ticks():
    decoder = TickDecoder()
    with pytest.raises(msgspec.DecodeError):
        decoder.decode(b"\xc1garbage")
    with pytest.raises(msgspec.ValidationError):
        decoder.decode(msgspec.msgpack.encode(["SPX", "not a price", None, None, None, [], [], [], 1, 1]))


def test_tick_is_frozen():
    with pytest.raises(AttributeError):
        full_tick().price = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- validation


KNOWN = {"SPX", "NDX"}


def test_valid_tick_passes(book_parts):
    table = book_parts[0]
    assert validate_tick(full_tick(), KNOWN) is None
    assert validate_tick(full_tick(option_vols=(("C7000", 0.158),), future_prices=()), KNOWN, instruments=table) is None
    assert validate_tick(full_tick(atm_vol=MAX_VOL, rate=-1.0), KNOWN) is None  # bounds are inclusive
    assert validate_tick(full_tick(rate=None, dividend_yield=None, atm_vol=None), KNOWN) is None


def test_validate_message_is_exact():
    assert validate_tick(full_tick(price=float("nan")), KNOWN) == \
        "tick 'SPX' seq 7: price: must be finite and > 0, got nan"
    assert validate_tick(full_tick(underlying="XYZ"), KNOWN) == \
        "tick 'XYZ' seq 7: underlying: unknown underlying, got 'XYZ'"


@pytest.mark.parametrize("changes, expected", [
    ({"underlying": ""}, "underlying: must be a non-empty string, got ''"),
    ({"underlying": "ES"}, "underlying: unknown underlying, got 'ES'"),
    ({"price": float("inf")}, "price: must be finite and > 0, got inf"),
    ({"price": 0.0}, "price: must be finite and > 0, got 0.0"),
    ({"price": -1.5}, "price: must be finite and > 0, got -1.5"),
    ({"rate": float("nan")}, "rate: must be a finite number or None, got nan"),
    ({"rate": 4.0}, "rate: must be within +-1 (a fraction per year: 0.04 is 4 %), got 4.0"),
    ({"dividend_yield": float("-inf")}, "dividend_yield: must be a finite number or None, got -inf"),
    ({"atm_vol": 0.0}, "atm_vol: must be > 0, got 0.0"),
    ({"atm_vol": -0.2}, "atm_vol: must be > 0, got -0.2"),
    ({"atm_vol": 10.5}, "atm_vol: must be <= 10 (a fraction per year: 0.2 is 20 %), got 10.5"),
    ({"atm_vol": float("nan")}, "atm_vol: must be a finite number, got nan"),
    ({"vol_points": (VolPoint("2026-13-01", 7000.0, 0.2),)},
     "vol_points[0].expiry: must be an ISO date YYYY-MM-DD, got '2026-13-01'"),
    ({"vol_points": (VolPoint("2026-12-18", 7000.0, 0.2), VolPoint("2026-12-18", -5.0, 0.2))},
     "vol_points[1].strike: must be finite and > 0, got -5.0"),
    ({"vol_points": (VolPoint("2026-12-18", 7000.0, 0.0),)}, "vol_points[0].vol: must be > 0, got 0.0"),
    ({"vol_points": (VolPoint("2026-12-18", 7000.0, 20.0),)}, "vol_points[0].vol: must be <= 10"),
    ({"vol_points": (VolPoint("2026-12-18", 7000.0, 0.2), VolPoint("2026-12-18", 7000.0, 0.3))},
     "vol_points[1]: duplicate point for expiry 2026-12-18 strike 7000.0"),
    ({"future_prices": (("ES", float("nan")),)}, "future_prices[0]: price of 'ES' must be finite and > 0, got nan"),
    ({"future_prices": (("ES", 1.0), ("ES", 2.0))}, "future_prices[1]: instrument 'ES' appears twice"),
    ({"option_vols": (("C7000", 11.0),)}, "option_vols[0]: vol of 'C7000' must be <= 10"),
    ({"option_vols": (("", 0.2),)}, "option_vols[0]: instrument id must be a non-empty string"),
    ({"event_time_ns": -1}, "event_time_ns: must be an integer >= 0 (ns since 1970-01-01 UTC), got -1"),
    ({"event_time_ns": 1.5e18}, "event_time_ns: must be an integer >= 0"),
    ({"seq": -3}, "seq: must be an integer >= 0, got -3"),
])
def test_validate_rejects_each_malformed_case(changes, expected):
    message = validate_tick(full_tick(**changes), KNOWN)
    assert message is not None
    assert message.startswith(f"tick {full_tick(**changes).underlying!r} seq ")
    assert expected in message


@pytest.mark.parametrize("changes, expected", [
    ({"future_prices": (("NQ", 24570.0),)}, "future_prices[0]: 'NQ' is a future on 'NDX', not on 'SPX', got 'NQ'"),
    ({"future_prices": (("C7000", 1.0),)}, "future_prices[0]: 'C7000' is not a configured future"),
    ({"option_vols": (("NOPE", 0.2),)}, "option_vols[0]: 'NOPE' is not a configured option"),
    ({"option_vols": (("NQC", 0.2),)}, "option_vols[0]: 'NQC' is an option on 'NDX', not on 'SPX'"),
])
def test_validate_checks_instruments_against_the_table(book_parts, changes, expected):
    base = {"future_prices": (), "option_vols": ()}
    message = validate_tick(full_tick(**{**base, **changes}), KNOWN, instruments=book_parts[0])
    assert message is not None and expected in message


def test_validate_rejects_a_non_tick():
    assert validate_tick({"underlying": "SPX"}, KNOWN) == "tick: is a dict, not a Tick"  # type: ignore[arg-type]


# --------------------------------------------------------------------------- market state

T_SPX = AS_OF_NS - 3_000_000_123
T_NDX = AS_OF_NS - 1_000_000_000


def book_ticks() -> list[Tick]:
    return [
        Tick(underlying="SPX", price=6900.0, rate=0.04, dividend_yield=0.013, atm_vol=0.17,
             option_vols=(("C7000", 0.158), ("P6400", 0.215)), event_time_ns=T_SPX, seq=1),
        Tick(underlying="NDX", price=24500.0, rate=0.04, dividend_yield=0.007, atm_vol=0.22,
             future_prices=(("NQ", 24570.0),), event_time_ns=T_NDX, seq=2),
    ]


def test_snapshot_equals_hand_built_snapshot(book_parts):
    table, conftest_market, _ = book_parts
    state = MarketState(table)
    assert state.apply(book_ticks()[0]) == {"SPX"}
    assert state.apply(book_ticks()[1]) == {"NDX"}
    expected = MarketSnapshot(
        as_of=AS_OF,
        underlyings={"SPX": UnderlyingQuote(price=6900.0, rate=0.04, dividend_yield=0.013, vol=0.17,
                                            updated_at=ns_to_dt(T_SPX)),
                     "NDX": UnderlyingQuote(price=24500.0, rate=0.04, dividend_yield=0.007, vol=0.22,
                                            updated_at=ns_to_dt(T_NDX))},
        future_prices={"NQ": 24570.0},
        option_vols={"C7000": 0.158, "P6400": 0.215},
    )
    snap = state.snapshot(AS_OF)
    assert snap == expected
    # ... and it prices exactly like the fixture's hand-built snapshot (updated_at aside).
    ours, theirs = pricing_inputs(table, snap), pricing_inputs(table, conftest_market)
    for name in ("s", "t", "r", "q", "vol", "spot"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
    # Naive as_of is UTC.
    assert state.snapshot(AS_OF.replace(tzinfo=None)) == expected


def test_ticks_are_deltas_and_changes_are_reported(book_parts):
    table = book_parts[0]
    state = MarketState(table)
    state.apply_all(book_ticks())
    assert state.apply(Tick(underlying="SPX", price=6950.0, event_time_ns=T_SPX + 10, seq=3)) == {"SPX"}
    quote = state.snapshot(AS_OF).underlyings["SPX"]
    assert (quote.price, quote.rate, quote.dividend_yield, quote.vol) == (6950.0, 0.04, 0.013, 0.17)
    # Same values again: nothing to reprice, but the age refreshes.
    assert state.apply(Tick(underlying="SPX", price=6950.0, rate=0.04, event_time_ns=T_SPX + 20, seq=4)) == set()
    assert state.age_s("SPX", T_SPX + 20 + 2_500_000_000) == pytest.approx(2.5)
    assert state.last_seq("SPX") == 4
    # A late packet never undoes a newer quote.
    assert state.apply(Tick(underlying="SPX", price=1.0, event_time_ns=T_SPX, seq=5)) == set()
    assert state.out_of_order == 1
    assert state.snapshot(AS_OF).underlyings["SPX"].price == 6950.0
    assert state.apply_all(book_ticks()[:0]) == set()


def test_malformed_tick_raises_and_changes_nothing(book_parts):
    state = MarketState(book_parts[0])
    state.apply_all(book_ticks())
    before = state.snapshot(AS_OF)
    with pytest.raises(ValueError, match=r"tick 'SPX' seq 9: price: must be finite and > 0, got nan"):
        state.apply(Tick(underlying="SPX", price=float("nan"), event_time_ns=T_SPX + 1, seq=9))
    with pytest.raises(ValueError, match="'NQ' is a future on 'NDX', not on 'SPX'"):
        state.apply(Tick(underlying="SPX", price=1.0, future_prices=(("NQ", 1.0),), event_time_ns=T_SPX + 1, seq=9))
    assert state.snapshot(AS_OF) == before


def test_age_and_missing(book_parts):
    state = MarketState(book_parts[0])
    assert state.age_s("SPX", AS_OF_NS) == math.inf
    assert state.missing() == {"SPX": "no price yet", "NDX": "no price yet"}
    state.apply(book_ticks()[0])
    assert state.missing() == {"NDX": "no price yet"}
    assert state.age_s("SPX", AS_OF_NS) == pytest.approx(3.000000123)
    with pytest.raises(KeyError):
        state.age_s("XYZ", AS_OF_NS)
    with pytest.raises(RiskModelError, match="underlying 'NDX': no price yet"):
        state.snapshot(AS_OF)
    only_spx = state.snapshot(AS_OF, underlyings=["SPX"])
    assert set(only_spx.underlyings) == {"SPX"} and only_spx.future_prices == {}
    with pytest.raises(ReferenceDataError):
        state.snapshot(AS_OF, underlyings=["XYZ"])


def test_initial_quotes(book_parts):
    initial = {"NDX": UnderlyingQuote(price=24000.0, rate=0.03, dividend_yield=0.0, vol=0.25)}
    state = MarketState(book_parts[0], initial)
    state.apply(book_ticks()[0])
    ndx = state.snapshot(AS_OF).underlyings["NDX"]
    assert (ndx.price, ndx.rate, ndx.vol, ndx.updated_at) == (24000.0, 0.03, 0.25, None)
    assert state.age_s("NDX", AS_OF_NS) == math.inf  # an initial quote is not a market update
    with pytest.raises(ReferenceDataError):
        MarketState(book_parts[0], {"XYZ": UnderlyingQuote(price=1.0)})


def surface_table() -> InstrumentTable:
    def opt(iid, expiry, strike, right="call"):
        return InstrumentSpec(id=iid, kind="option", underlying="SPX", right=right, strike=strike, expiry=expiry)

    return InstrumentTable(
        [UnderlyingSpec(id="SPX", grid="span"), UnderlyingSpec(id="NDX", grid="span")],
        [InstrumentSpec(id="ES", kind="future", underlying="SPX", expiry=DEC, multiplier=50.0),
         opt("A", DEC, 6800.0), opt("B", DEC, 7600.0), opt("C", MAR, 6700.0, "put"),
         opt("D", dt.date(2027, 1, 15), 7000.0), opt("E", dt.date(2026, 12, 4), 7200.0),
         opt("F", dt.date(2027, 6, 18), 6400.0, "put"), opt("G", DEC, 7000.0),
         opt("X", dt.date(2026, 11, 19), 7000.0),  # expired before AS_OF
         InstrumentSpec(id="NDXSPOT", kind="spot", underlying="NDX")])


SURFACE = (VolPoint("2026-12-18", 7400.0, 0.14), VolPoint("2026-12-18", 6600.0, 0.20),
           VolPoint("2026-12-18", 7000.0, 0.16), VolPoint("2027-03-19", 6400.0, 0.23),
           VolPoint("2027-03-19", 7000.0, 0.18))


def test_surface_interpolation_by_hand():
    state = MarketState(surface_table())
    state.apply(Tick(underlying="SPX", price=6900.0, atm_vol=0.25, vol_points=SURFACE,
                     option_vols=(("G", 0.31),), event_time_ns=AS_OF_NS, seq=1))
    state.apply(Tick(underlying="NDX", price=24500.0, event_time_ns=AS_OF_NS, seq=2))
    snap = state.snapshot(AS_OF)
    vols = snap.option_vols
    t_dec, t_jan, t_mar = 28 / 365, 56 / 365, 119 / 365  # days from 2026-11-20, same 21:00 UTC
    w_dec, w_mar = 0.16 ** 2 * t_dec, 0.18 ** 2 * t_mar
    d_by_hand = math.sqrt((w_dec + (w_mar - w_dec) * (t_jan - t_dec) / (t_mar - t_dec)) / t_jan)
    expected = {
        "A": 0.20 + (0.16 - 0.20) * (200 / 400),   # DEC, linear in strike between 6600 and 7000
        "B": 0.14,                                 # DEC, beyond the last strike: flat
        "C": 0.23 + (0.18 - 0.23) * (300 / 600),   # MAR, between 6400 and 7000
        "D": d_by_hand,                            # JAN: linear in total variance DEC..MAR at K=7000
        "E": 0.16 + (0.14 - 0.16) * (200 / 400),   # before the first expiry: DEC's vol at 7200
        "F": 0.23,                                 # after the last expiry: MAR's vol at 6400
        "G": 0.31,                                 # own vol beats the surface
    }
    assert set(vols) == set(expected)              # X (expired) left for pricing to refuse
    for iid, vol in expected.items():
        assert vols[iid] == pytest.approx(vol, rel=1e-12, abs=0), iid
    assert 0.16 < d_by_hand < 0.18
    assert snap.underlyings["SPX"].vol == 0.25
    # The NDX underlying has no options and no vol: its quote's vol prices nothing.
    assert snap.underlyings["NDX"].vol > 0


def test_surface_slice_replaces_only_its_expiry():
    state = MarketState(surface_table())
    state.apply(Tick(underlying="SPX", price=6900.0, atm_vol=0.25, vol_points=SURFACE, event_time_ns=AS_OF_NS, seq=1))
    assert state.apply(Tick(underlying="SPX", price=6900.0, vol_points=(VolPoint("2026-12-18", 7000.0, 0.3),),
                            event_time_ns=AS_OF_NS + 1, seq=2)) == {"SPX"}
    vols = state.snapshot(AS_OF, underlyings=["SPX"]).option_vols
    assert vols["A"] == vols["B"] == 0.3        # DEC smile is now one point: flat
    assert vols["C"] == pytest.approx(0.205)    # MAR untouched
    # The same slice again changes nothing.
    assert state.apply(Tick(underlying="SPX", price=6900.0, vol_points=(VolPoint("2026-12-18", 7000.0, 0.3),),
                            event_time_ns=AS_OF_NS + 2, seq=3)) == set()


def test_vol_falls_back_to_atm_and_fails_closed_without_any():
    table = surface_table()
    state = MarketState(table)
    state.apply(Tick(underlying="SPX", price=6900.0, event_time_ns=AS_OF_NS, seq=1))
    state.apply(Tick(underlying="NDX", price=24500.0, event_time_ns=AS_OF_NS, seq=2))
    with pytest.raises(RiskModelError, match=r"underlying 'SPX': no vol for option 'A'"):
        state.snapshot(AS_OF)
    state.apply(Tick(underlying="SPX", price=6900.0, atm_vol=0.21, event_time_ns=AS_OF_NS + 1, seq=3))
    snap = state.snapshot(AS_OF)
    assert snap.option_vols == {} and snap.underlyings["SPX"].vol == 0.21
    # A surface alone also gives an ATM vol: the nearest live expiry at strike = spot.
    state2 = MarketState(table)
    state2.apply(Tick(underlying="SPX", price=6900.0, vol_points=SURFACE, event_time_ns=AS_OF_NS, seq=1))
    assert state2.snapshot(AS_OF, ["SPX"]).underlyings["SPX"].vol == pytest.approx(0.20 + (0.16 - 0.20) * 0.75)


# --------------------------------------------------------------------------- simulator

START_NS = AS_OF_NS


def log_returns(ticks_per_step: list[list[Tick]]) -> np.ndarray:
    prices = np.array([[t.price for t in step] for step in ticks_per_step])
    return np.diff(np.log(prices), axis=0)


def test_gbm_without_jumps_has_configured_vol_and_correlation():
    specs = [GbmUnderlying(id="SPX", spot=6900.0, vol=0.20), GbmUnderlying(id="NDX", spot=24500.0, vol=0.35)]
    market = GbmMarket(specs, seed=7, start_ns=START_NS, correlation=[[1.0, 0.6], [0.6, 1.0]])
    dt_s, n = 3600.0, 20_000
    steps = [market.step(dt_s) for _ in range(n)]
    r = log_returns(steps)
    dt_y = dt_s / SECONDS_PER_YEAR
    realized = r.std(axis=0, ddof=1) / math.sqrt(dt_y)
    # Sample std has relative standard error 1/sqrt(2n) = 0.5 %; 3 % is 6 sigma.
    assert realized == pytest.approx([0.20, 0.35], rel=0.03)
    # Sample correlation standard error (1 - rho^2)/sqrt(n) = 0.0045.
    assert np.corrcoef(r.T)[0, 1] == pytest.approx(0.6, abs=0.03)
    assert market.jump_counts == {"SPX": 0, "NDX": 0}
    assert market.now_ns == START_NS + n * 3600 * 10**9
    assert [t.seq for t in steps[-1]] == [2 * n - 1, 2 * n]


def test_gbm_jump_frequency_matches_intensity():
    lam, dt_s, n = 20.0, 86400.0, 20_000
    spec = GbmUnderlying(id="SPX", spot=6900.0, vol=0.10, jump_intensity=lam, jump_mean=-0.15, jump_std=0.02)
    market = GbmMarket([spec], seed=11, start_ns=START_NS)
    counts, steps = [], []
    for _ in range(n):
        steps.append(market.step(dt_s))
        counts.append(market.jump_counts["SPX"])
    lam_dt = lam * dt_s / SECONDS_PER_YEAR
    # Poisson: mean n lam dt = 1096, sd 33; 10 % is more than 3 sigma.
    assert counts[-1] == pytest.approx(n * lam_dt, rel=0.10)
    # Seen in the prices: a jump (-15 % +- 2 %) dwarfs a day's diffusion (0.5 %).
    r = log_returns(steps)[:, 0]
    detected = np.abs(r) > 0.06
    jumped = np.diff(np.array(counts)) > 0
    np.testing.assert_array_equal(detected, jumped)
    assert detected.sum() == pytest.approx((n - 1) * (1 - math.exp(-lam_dt)), rel=0.10)


def test_gbm_vol_surface_positive_and_mean_reverting():
    expiries = (dt.date(2030, 12, 20), dt.date(2031, 6, 20))
    spec = GbmUnderlying(id="SPX", spot=6900.0, vol=0.2, atm_vol=0.6, vol_long_run=0.2, vol_mean_reversion=6.0,
                         vol_of_vol=0.4, skew=-0.3, expiries=expiries)
    market = GbmMarket([spec], seed=3, start_ns=START_NS)
    atm = []
    for _ in range(3 * 365):
        (tick,) = market.step(86400.0)
        atm.append(tick.atm_vol)
        assert tick.vol_points and all(spec.vol_floor <= p.vol <= spec.vol_cap for p in tick.vol_points)
        assert validate_tick(tick, {"SPX"}) is None
    atm = np.array(atm)
    # Half-life ln2/6 = 42 days: after a year the start (0.6) is forgotten and the
    # long-run mean of the vol (not of its log) is 0.2.
    assert atm[:10].mean() > 0.45
    assert atm[365:].mean() == pytest.approx(0.2, rel=0.15)
    # Skew: lower strikes carry higher vols on every expiry.
    by_expiry: dict[str, list[VolPoint]] = {}
    for p in tick.vol_points:
        by_expiry.setdefault(p.expiry, []).append(p)
    for points in by_expiry.values():
        vols = [p.vol for p in sorted(points, key=lambda p: p.strike)]
        assert vols == sorted(vols, reverse=True)


def test_gbm_vol_jumps_up_when_price_jumps_down_and_stays_positive():
    # No diffusion in the vol, so the ATM vol moves only on jumps.
    spec = GbmUnderlying(id="SPX", spot=6900.0, vol=0.1, jump_intensity=50.0, jump_mean=-0.1, jump_std=0.05,
                         vol_mean_reversion=0.0, vol_of_vol=0.0, vol_jump_beta=2.0, skew=-2.0,
                         expiries=(DEC, MAR), vol_floor=0.05, vol_cap=3.0)
    market = GbmMarket([spec], seed=5, start_ns=START_NS)
    prev_atm, prev_count, rises = market.atm_vols["SPX"], 0, 0
    for _ in range(25):  # stay before DEC so both expiries are live
        (tick,) = market.step(86400.0)
        count = market.jump_counts["SPX"]
        if count == prev_count:
            assert tick.atm_vol == pytest.approx(prev_atm, rel=1e-12)
        elif tick.atm_vol > prev_atm * (1 + 1e-12):
            rises += 1
        assert all(0.05 <= p.vol <= 3.0 for p in tick.vol_points)
        prev_atm, prev_count = tick.atm_vol, count
    assert prev_count > 0 and rises > 0


def test_gbm_is_deterministic_for_a_seed():
    specs = [GbmUnderlying(id="SPX", spot=6900.0, vol=0.2, jump_intensity=10.0, jump_mean=-0.05, jump_std=0.03,
                           expiries=(DEC,)),
             GbmUnderlying(id="NDX", spot=24500.0, vol=0.3)]

    def path(seed: int) -> list[bytes]:
        market = GbmMarket(specs, seed=seed, start_ns=START_NS, correlation=[[1, 0.5], [0.5, 1]])
        return [encode_tick(t) for _ in range(200) for t in market.step(60.0)]

    assert path(42) == path(42)
    assert path(42) != path(43)


def test_gbm_rejects_bad_parameters():
    spec = GbmUnderlying(id="SPX", spot=1.0, vol=0.2)
    other = GbmUnderlying(id="NDX", spot=1.0, vol=0.2)
    with pytest.raises(ValueError, match="not positive definite"):
        GbmMarket([spec, other, GbmUnderlying(id="X", spot=1.0, vol=0.2)], seed=1, start_ns=0,
                  correlation=[[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]])
    with pytest.raises(ValueError, match="must be 2x2"):
        GbmMarket([spec, other], seed=1, start_ns=0, correlation=[[1.0]])
    with pytest.raises(ValueError, match="symmetric"):
        GbmMarket([spec, other], seed=1, start_ns=0, correlation=[[1, 0.5], [0.4, 1]])
    with pytest.raises(ValueError, match="duplicate id"):
        GbmMarket([spec, spec], seed=1, start_ns=0)
    with pytest.raises(ValueError, match="^vol: must be > 0"):
        GbmUnderlying(id="SPX", spot=1.0, vol=0.0)
    with pytest.raises(ValueError, match="^moneyness: must be strictly ascending"):
        GbmUnderlying(id="SPX", spot=1.0, vol=0.2, moneyness=(1.0, 0.9))
    with pytest.raises(ValueError, match="dt_s"):
        GbmMarket([spec], seed=1, start_ns=0).step(0.0)


def test_simulated_ticks_drive_market_state_into_pricing():
    table = surface_table()
    live = InstrumentTable(table.underlying_specs, [s for s in table.specs if s.id != "X"])
    market = GbmMarket([GbmUnderlying(id="SPX", spot=6900.0, vol=0.2, expiries=(DEC, MAR)),
                        GbmUnderlying(id="NDX", spot=24500.0, vol=0.25)], seed=1, start_ns=START_NS)
    state = MarketState(live)
    for _ in range(10):
        state.apply_all(market.step(1.0))
    snap = state.snapshot(ns_to_dt(market.now_ns))
    inputs = pricing_inputs(live, snap)
    assert np.all(np.isfinite(inputs.vol[live.is_option]) & (inputs.vol[live.is_option] > 0))
    assert set(snap.option_vols) == {"A", "B", "C", "D", "E", "F", "G"}  # all from the surface


# --------------------------------------------------------------------------- replay


class FakeClock:
    """A monotonic clock that only moves when slept on (or advanced by the test)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


T0 = "2026-11-20T14:30:00Z"
CSV_OK = f"""time,underlying,price,rate,dividend_yield,atm_vol
{T0},SPX,6900.5,0.04,0.013,0.17
2026-11-20T14:30:01.000000250Z,NDX,24500,,,0.22
2026-11-20T14:30:03,SPX,6901.25,,,
"""
T0_NS = int(dt.datetime(2026, 11, 20, 14, 30, tzinfo=UTC).timestamp()) * 10**9


def write(tmp_path, text, name="ticks.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def replay(path, speed, clock=None, **kw):
    clock = clock or FakeClock()
    source = ReplaySource(path, speed=speed, clock=clock, sleep=clock.sleep, **kw)
    seen = []
    for tick in source:
        seen.append((clock.now, tick))
    return source, clock, seen


def test_replay_csv_at_recorded_speed(tmp_path):
    source, clock, seen = replay(write(tmp_path, CSV_OK), speed=1.0)
    assert clock.sleeps == pytest.approx([1.00000025, 1.99999975])
    assert [at for at, _ in seen] == pytest.approx([100.0, 101.00000025, 103.0])
    ticks = [t for _, t in seen]
    assert ticks[0] == Tick(underlying="SPX", price=6900.5, rate=0.04, dividend_yield=0.013, atm_vol=0.17,
                            event_time_ns=T0_NS, seq=1)
    assert ticks[1] == Tick(underlying="NDX", price=24500.0, atm_vol=0.22, event_time_ns=T0_NS + 1_000_000_250, seq=2)
    assert ticks[2] == Tick(underlying="SPX", price=6901.25, event_time_ns=T0_NS + 3 * 10**9, seq=3)
    assert (source.emitted, source.skipped, source.errors) == (3, 0, [])


def test_replay_accelerated_and_as_fast_as_possible(tmp_path):
    path = write(tmp_path, CSV_OK)
    _, clock, seen = replay(path, speed=4.0)
    assert clock.sleeps == pytest.approx([0.25000006, 0.49999994])
    assert [at for at, _ in seen] == pytest.approx([100.0, 100.25000006, 100.75])
    _, clock, seen = replay(path, speed=0)
    assert clock.sleeps == [] and len(seen) == 3
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(path, speed=-1.0)


def test_replay_paces_against_the_start_not_the_last_tick(tmp_path):
    clock = FakeClock()
    source = ReplaySource(write(tmp_path, CSV_OK), speed=1.0, clock=clock, sleep=clock.sleep)
    for _ in source:
        clock.now += 0.7  # a slow consumer: its time counts toward the next gap
    assert clock.sleeps == pytest.approx([0.30000025, 1.29999975])


def test_replay_bad_rows_are_reported_with_lines_and_skipped(tmp_path):
    text = "\n".join([
        "time,underlying,price,atm_vol",            # 1
        f"{T0},SPX,6900,0.2",                       # 2 ok
        f"{T0},SPX,abc,0.2",                        # 3 price not a number
        f"{T0},SPX,nan,0.2",                        # 4 price not finite
        f"{T0},XYZ,6900,0.2",                       # 5 unknown underlying
        "yesterday,SPX,6900,0.2",                   # 6 bad time
        f"{T0},SPX,6900",                           # 7 short row
        f"{T0},SPX,6900,0",                         # 8 vol 0
        "2026-11-20T14:29:59Z,SPX,6900,0.2",        # 9 time goes backwards
        "",                                         # 10 blank: skipped silently
        "2026-11-20T14:30:02Z,NDX,24500,",          # 11 ok
        "1700000000,SPX,6900,0.2",                  # 12 epoch seconds, not ns
        f"{T0},SPX,6900,25",                        # 13 vol in percent
    ]) + "\n"
    path = write(tmp_path, text)
    reported: list[ReplayError] = []
    source, clock, seen = replay(path, speed=1.0, known_underlyings={"SPX", "NDX"}, on_error=reported.append)
    assert [(t.underlying, t.seq) for _, t in seen] == [("SPX", 1), ("NDX", 2)]
    assert clock.sleeps == pytest.approx([2.0])
    assert source.skipped == 9 and reported == source.errors
    assert [(e.line, e.column) for e in source.errors] == [
        (3, "price"), (4, "price"), (5, "underlying"), (6, "time"), (7, None), (8, "atm_vol"), (9, "time"),
        (12, "time"), (13, "atm_vol")]
    messages = [str(e) for e in source.errors]
    assert messages[0] == f"{path}:3:price: price is not a number (value 'abc')"
    assert messages[1] == f"{path}:4:price: price: must be finite and > 0 (value 'nan')"
    assert messages[2] == f"{path}:5:underlying: underlying: unknown underlying (value 'XYZ')"
    assert messages[3].startswith(f"{path}:6:time: time must be an ISO 8601 timestamp")
    assert messages[4] == f"{path}:7:-: expected 4 fields, got 3 (value '{T0},SPX,6900')"
    assert messages[5] == f"{path}:8:atm_vol: atm_vol: must be > 0 (value '0')"
    assert messages[6].startswith(f"{path}:9:time: time goes backwards")
    assert "looks like seconds" in messages[7]
    assert messages[8].startswith(f"{path}:13:atm_vol: atm_vol: must be <= 10")


def test_replay_file_level_errors_raise_before_the_stream(tmp_path):
    with pytest.raises(ReplayFileError, match="unknown column 'atmvol'"):
        ReplaySource(write(tmp_path, "time,underlying,price,atmvol\n"))
    with pytest.raises(ReplayFileError, match="missing column"):
        ReplaySource(write(tmp_path, "time,underlying\n"))
    with pytest.raises(ReplayFileError, match="empty file"):
        ReplaySource(write(tmp_path, "\n\n"))
    with pytest.raises(ReplayFileError, match="cannot open"):
        ReplaySource(tmp_path / "nope.csv")


def test_replay_stop_ends_the_stream(tmp_path):
    clock = FakeClock()
    source = ReplaySource(write(tmp_path, CSV_OK), speed=1.0, clock=clock, sleep=clock.sleep)
    got = []
    for tick in source:
        got.append(tick)
        source.stop()
    assert len(got) == 1


def simulated_ticks(n: int = 50) -> list[Tick]:
    market = GbmMarket([GbmUnderlying(id="SPX", spot=6900.0, vol=0.2, rate=0.04, jump_intensity=20.0,
                                      jump_mean=-0.05, jump_std=0.02),
                        GbmUnderlying(id="NDX", spot=24500.0, vol=0.3)], seed=9, start_ns=START_NS)
    return [t for _ in range(n) for t in market.step(0.25)]


def replay_fields(t: Tick) -> tuple:
    return (t.event_time_ns, t.underlying, t.price, t.rate, t.dividend_yield, t.atm_vol)


def test_record_and_replay_csv_is_exact(tmp_path):
    ticks = simulated_ticks()
    path = tmp_path / "path.csv"
    assert write_replay_csv(path, ticks) == len(ticks)
    source, clock, seen = replay(path, speed=2.0)
    assert [replay_fields(t) for _, t in seen] == [replay_fields(t) for t in ticks]
    # 50 steps of 0.25 s at speed 2: the last tick is due 49 x 0.125 s after the first.
    assert clock.now - 100.0 == pytest.approx(49 * 0.125)
    assert source.skipped == 0


def test_replay_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    ticks = simulated_ticks(20)
    path = tmp_path / "path.parquet"
    assert write_replay_parquet(path, ticks) == len(ticks)
    source, clock, seen = replay(path, speed=1.0)
    assert [replay_fields(t) for _, t in seen] == [replay_fields(t) for t in ticks]
    assert clock.now - 100.0 == pytest.approx(19 * 0.25)

    # Integer ns times, microsecond timestamps, ISO strings; bad rows by data row number.
    times = [T0_NS, T0_NS + 10**9, T0_NS + 2 * 10**9, T0_NS + 3 * 10**9]
    rows = {"underlying": ["SPX", "SPX", None, "NDX"], "price": [6900.0, -1.0, 6900.0, 24500.0],
            "atm_vol": [0.2, 0.2, None, None]}
    for name, time_col in [("int", pa.array(times, pa.int64())),
                           ("us", pa.array([t // 1000 for t in times], pa.int64()).cast(pa.timestamp("us"))),
                           ("iso", pa.array(["2026-11-20T14:30:00Z", "2026-11-20T14:30:01Z",
                                             "2026-11-20T14:30:02Z", "2026-11-20T14:30:03Z"]))]:
        file = tmp_path / f"{name}.pq"
        pq.write_table(pa.table({"time": time_col, **rows}), file)
        source, clock, seen = replay(file, speed=0.0)
        assert [(t.underlying, t.event_time_ns, t.atm_vol) for _, t in seen] == \
            [("SPX", T0_NS, 0.2), ("NDX", T0_NS + 3 * 10**9, None)], name
        assert [(e.line, e.column) for e in source.errors] == [(2, "price"), (3, "underlying")], name
        assert str(source.errors[0]).startswith(f"{file}:2:price: price: must be finite and > 0")
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"time": pa.array(times), "underlying": ["SPX"] * 4, "volume": [1, 2, 3, 4]}), bad)
    with pytest.raises(ReplayFileError, match="unknown column 'volume'"):
        ReplaySource(bad)
