"""Market data: the tick schema, tick validation, the market state, a simulator, replay.

Everything here is synchronous and clock-free (time is passed in or injected), so the
market-data ingest actor can wrap it in a thread and tests can drive it directly.

Tick schema
-----------
A :class:`Tick` is an update of one underlying, sent as a msgspec msgpack *array*
(``array_like=True``: field order is the wire format, names are not sent; about
0.1-0.3 us to encode or decode). Fields:

==================  =======================================================================
``underlying``      underlying id, as in the instrument reference data.
``price``           spot or index level, currency per unit of underlying; finite, > 0.
``rate``            risk-free rate, continuously compounded, fraction per year
                    (0.04 = 4 %/yr); None = unchanged.
``dividend_yield``  continuous dividend (or borrow) yield, fraction per year; None = unchanged.
``atm_vol``         at-the-money implied vol, fraction per year (0.2 = 20 vol); None = unchanged.
``vol_points``      a slice of the implied vol surface: :class:`VolPoint` s (expiry ISO date,
                    strike in currency per unit, vol fraction per year). Each expiry present
                    replaces that expiry's whole smile; expiries not present are unchanged.
``future_prices``   (future instrument id, price in currency per unit) pairs.
``option_vols``     (option instrument id, implied vol fraction per year) pairs.
``event_time_ns``   wall-clock time of the market event, integer ns since 1970-01-01 UTC.
``seq``             per-source sequence number (+1 per tick), for gap and stale detection.
==================  =======================================================================

A tick is a *delta*: None or an empty tuple leaves the previous value in place, so a
feed may send prices alone most of the time. :func:`validate_tick` says what is wrong
with a malformed tick; the ingest reports and drops such a tick, never applies it.

Vol resolution (:meth:`MarketState.snapshot`): an option's own ticked vol, else the
underlying's surface interpolated linearly in total variance (vol^2 x T) between
expiries and linearly in vol between strikes (flat beyond the end strikes and the
end expiries), else the underlying's ATM vol.

Replay files (:class:`ReplaySource`): CSV (UTF-8, header row) or Parquet with columns

- ``time``: ISO 8601 timestamp (``2024-08-05T14:30:00.123456789Z``; no zone = UTC; up
  to 9 fractional digits kept exactly) or integer ns since 1970-01-01 UTC (Parquet:
  a timestamp column of any unit, an integer column in ns, or ISO strings);
- ``underlying``, ``price``: as in the tick;
- optional ``rate``, ``dividend_yield``, ``atm_vol``: as in the tick; an empty cell
  (CSV) or null (Parquet) means unchanged.

Column names are case-insensitive; an unknown column is an error when the file is
opened (a misspelt ``atmvol`` would otherwise be ignored in silence). Rows must be in
time order (equal times allowed).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import os
import re
import threading
import time as _time
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from risk.errors import RiskModelError
from risk.instruments import (FUTURE, SECONDS_PER_YEAR, InstrumentTable, MarketSnapshot, ReferenceDataError,
                              UnderlyingQuote)

__all__ = [
    "MAX_ABS_RATE", "MAX_VOL", "REPLAY_COLUMNS",
    "VolPoint", "Tick", "encode_tick", "TickDecoder", "validate_tick",
    "MarketState", "GbmUnderlying", "GbmMarket",
    "ReplayError", "ReplayFileError", "ReplaySource", "write_replay_csv", "write_replay_parquet",
]

log = logging.getLogger("riskd.market_data")

# Bounds that catch unit errors, the commonest feed mistake: a vol of 20 is "20 %"
# sent as a number of percent, a rate of 4 is "4 %". Real vols above 1000 %/yr and
# rates beyond +-100 %/yr do not occur in what this daemon margins.
MAX_VOL = 10.0
MAX_ABS_RATE = 1.0

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


# --------------------------------------------------------------------------- schema


class VolPoint(msgspec.Struct, frozen=True, array_like=True):
    """One point of an implied vol surface.

    ``expiry``: ISO date ``YYYY-MM-DD`` (the options expire on it at the underlying's
    ``expiry_time_utc``). ``strike``: currency per unit of underlying, > 0.
    ``vol``: implied vol, fraction per year, in (0, MAX_VOL].
    """

    expiry: str
    strike: float
    vol: float


class Tick(msgspec.Struct, frozen=True, array_like=True, kw_only=True):
    """A market update of one underlying (see the module docstring for the table).

    ``underlying``: id. ``price``: spot/index, currency per unit, finite > 0.
    ``rate``: continuously compounded, fraction/yr, or None (unchanged).
    ``dividend_yield``: continuous, fraction/yr, or None (unchanged).
    ``atm_vol``: fraction/yr, or None (unchanged). ``vol_points``: surface slice,
    each expiry present replaces that expiry's smile. ``future_prices``: (future id,
    currency per unit). ``option_vols``: (option id, fraction/yr).
    ``event_time_ns``: wall-clock ns since the Unix epoch (UTC) of the market event.
    ``seq``: per-source sequence number, +1 per tick.
    """

    underlying: str
    price: float
    rate: float | None = None
    dividend_yield: float | None = None
    atm_vol: float | None = None
    vol_points: tuple[VolPoint, ...] = ()
    future_prices: tuple[tuple[str, float], ...] = ()
    option_vols: tuple[tuple[str, float], ...] = ()
    event_time_ns: int
    seq: int


_ENCODER = msgspec.msgpack.Encoder()


def encode_tick(tick: Tick) -> bytes:
    """msgpack bytes of ``tick`` (an array in field order)."""
    return _ENCODER.encode(tick)


class TickDecoder:
    """Reusable msgpack decoder of :class:`Tick` (build one per thread, keep it).

    :meth:`decode` raises ``msgspec.DecodeError`` (``msgspec.ValidationError`` for a
    wrong shape or type) on bytes that are not a tick; values are range-checked by
    :func:`validate_tick`, not here, so that a bad value gets a precise message.
    """

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = msgspec.msgpack.Decoder(Tick)

    def decode(self, data: bytes | bytearray | memoryview) -> Tick:
        """Decode one tick from msgpack bytes."""
        return self._decoder.decode(data)

    __call__ = decode


# --------------------------------------------------------------------------- validation


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_vol(value: Any) -> str | None:
    if not _is_real(value) or not math.isfinite(value):
        return "must be a finite number"
    if value <= 0.0:
        return "must be > 0"
    if value > MAX_VOL:
        return f"must be <= {MAX_VOL:g} (a fraction per year: 0.2 is 20 %)"
    return None


def _check_rate(value: Any) -> str | None:
    if value is None:
        return None
    if not _is_real(value) or not math.isfinite(value):
        return "must be a finite number or None"
    if abs(value) > MAX_ABS_RATE:
        return f"must be within +-{MAX_ABS_RATE:g} (a fraction per year: 0.04 is 4 %)"
    return None


def _parse_iso_date(text: Any) -> dt.date | None:
    if not isinstance(text, str) or not _ISO_DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _check_tick(tick: Any, known_underlyings: Container[str] | None,
                instruments: InstrumentTable | None) -> tuple[str, str, Any] | None:
    """(field, reason, offending value) of the first problem, or None."""
    if not isinstance(tick, Tick):
        return ("tick", f"is a {type(tick).__name__}, not a Tick", tick)
    und = tick.underlying
    if not isinstance(und, str) or not und:
        return ("underlying", "must be a non-empty string", und)
    if known_underlyings is not None and und not in known_underlyings:
        return ("underlying", "unknown underlying", und)
    if not _is_real(tick.price) or not math.isfinite(tick.price) or tick.price <= 0.0:
        return ("price", "must be finite and > 0", tick.price)
    for name in ("rate", "dividend_yield"):
        reason = _check_rate(getattr(tick, name))
        if reason:
            return (name, reason, getattr(tick, name))
    if tick.atm_vol is not None:
        reason = _check_vol(tick.atm_vol)
        if reason:
            return ("atm_vol", reason, tick.atm_vol)
    seen_points: set[tuple[str, float]] = set()
    for i, point in enumerate(tick.vol_points):
        where = f"vol_points[{i}]"
        if not isinstance(point, VolPoint):
            return (where, "must be a VolPoint", point)
        if _parse_iso_date(point.expiry) is None:
            return (f"{where}.expiry", "must be an ISO date YYYY-MM-DD", point.expiry)
        if not _is_real(point.strike) or not math.isfinite(point.strike) or point.strike <= 0.0:
            return (f"{where}.strike", "must be finite and > 0", point.strike)
        reason = _check_vol(point.vol)
        if reason:
            return (f"{where}.vol", reason, point.vol)
        key = (point.expiry, float(point.strike))
        if key in seen_points:
            return (f"{where}", f"duplicate point for expiry {point.expiry} strike {point.strike!r}", point)
        seen_points.add(key)
    for field, pairs in (("future_prices", tick.future_prices), ("option_vols", tick.option_vols)):
        seen_ids: set[str] = set()
        for i, pair in enumerate(pairs):
            where = f"{field}[{i}]"
            if not isinstance(pair, tuple) or len(pair) != 2:
                return (where, "must be an (instrument id, value) pair", pair)
            iid, value = pair
            if not isinstance(iid, str) or not iid:
                return (where, "instrument id must be a non-empty string", iid)
            if iid in seen_ids:
                return (where, f"instrument {iid!r} appears twice", iid)
            seen_ids.add(iid)
            if field == "future_prices":
                if not _is_real(value) or not math.isfinite(value) or value <= 0.0:
                    return (where, f"price of {iid!r} must be finite and > 0", value)
            else:
                reason = _check_vol(value)
                if reason:
                    return (where, f"vol of {iid!r} {reason}", value)
            if instruments is not None:
                row = instruments.index.get(iid)
                wanted = "future" if field == "future_prices" else "option"
                ok = row is not None and (instruments.kind[row] == FUTURE if wanted == "future"
                                          else bool(instruments.is_option[row]))
                if not ok:
                    return (where, f"{iid!r} is not a configured {wanted}", iid)
                owner = instruments.underlying_ids[instruments.underlying[row]]
                if owner != und:
                    article = "a" if wanted == "future" else "an"
                    return (where, f"{iid!r} is {article} {wanted} on {owner!r}, not on {und!r}", iid)
    if not _is_int(tick.event_time_ns) or tick.event_time_ns < 0:
        return ("event_time_ns", "must be an integer >= 0 (ns since 1970-01-01 UTC)", tick.event_time_ns)
    if not _is_int(tick.seq) or tick.seq < 0:
        return ("seq", "must be an integer >= 0", tick.seq)
    return None


def validate_tick(tick: Tick, known_underlyings: Container[str] | None, *,
                  instruments: InstrumentTable | None = None) -> str | None:
    """What is wrong with ``tick``, or None if it may be applied.

    ``known_underlyings``: the configured underlying ids (None accepts any non-empty
    id). ``instruments``: when given, ``future_prices`` and ``option_vols`` must name
    configured futures / options of the tick's own underlying.

    Checks: underlying known; price finite and > 0; rate and dividend yield None or
    finite within +-MAX_ABS_RATE; every vol (ATM, surface point, option) finite in
    (0, MAX_VOL]; surface expiries ISO dates, strikes finite > 0, no duplicate
    (expiry, strike); no instrument twice; futures prices finite > 0; event time and
    seq integers >= 0. The message names the tick, the field and the value, e.g.
    ``tick 'SPX' seq 7: price: must be finite and > 0, got nan``.
    """
    problem = _check_tick(tick, known_underlyings, instruments)
    if problem is None:
        return None
    field, reason, value = problem
    if field == "tick":
        return f"tick: {reason}"
    return f"tick {tick.underlying!r} seq {tick.seq!r}: {field}: {reason}, got {value!r}"


# --------------------------------------------------------------------------- market state


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment


def _to_us(moment: dt.datetime) -> int:
    """Integer microseconds since the epoch: one exact clock for option and surface
    times to expiry, so an option expiring on a surface expiry gets exactly its vol."""
    delta = _utc(moment) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _ns_to_datetime(ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


class _Slice(msgspec.Struct):
    strikes: np.ndarray  # ascending, currency per unit
    vols: np.ndarray     # fraction per year


class _UnderlyingState(msgspec.Struct):
    price: float | None = None
    rate: float | None = None
    dividend_yield: float | None = None
    atm_vol: float | None = None
    surface: dict[dt.date, _Slice] = {}
    last_event_ns: int | None = None
    last_seq: int | None = None


def _live_slices(slices: dict[dt.date, _Slice], expiry_time: dt.time, as_of_us: int) -> list[tuple[float, _Slice]]:
    """(years to expiry, slice) of the slices expiring after as_of, nearest first."""
    live = []
    for expiry, sl in slices.items():
        moment = dt.datetime.combine(expiry, expiry_time.replace(tzinfo=None), tzinfo=dt.timezone.utc)
        t = (_to_us(moment) - as_of_us) / 1e6 / SECONDS_PER_YEAR
        if t > 0.0:
            live.append((t, sl))
    live.sort(key=lambda item: item[0])
    return live


def _surface_vols(live: list[tuple[float, _Slice]], strikes: np.ndarray, t_opt: np.ndarray) -> np.ndarray:
    """Vols (fraction/yr) at ``strikes`` and times to expiry ``t_opt`` (years, > 0) from
    the live slices (non-empty, nearest first, as from :func:`_live_slices`).

    Strike: linear in vol, flat beyond the end strikes (np.interp). Expiry: linear in
    total variance w = vol^2 T at a fixed strike, which keeps vols positive and is the
    usual no-arbitrage-friendly choice; flat vol before the first and after the last
    live expiry.
    """
    t_exp = np.array([t for t, _ in live])
    v = np.vstack([np.interp(strikes, sl.strikes, sl.vols) for _, sl in live])  # (E, n)
    n_exp = len(live)
    cols = np.arange(len(strikes))
    idx = np.searchsorted(t_exp, t_opt)  # t_exp[idx-1] < t <= t_exp[idx]
    hi = np.minimum(idx, n_exp - 1)
    lo = np.maximum(idx - 1, 0)
    t_hi, t_lo = t_exp[hi], t_exp[lo]
    v_hi, v_lo = v[hi, cols], v[lo, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        w_lo, w_hi = v_lo * v_lo * t_lo, v_hi * v_hi * t_hi
        w = w_lo + (w_hi - w_lo) * (t_opt - t_lo) / (t_hi - t_lo)
        between = np.sqrt(w / t_opt)
    # Before the first expiry, on an expiry, or after the last (hi is then the last
    # slice): that slice's vol as is.
    exact_or_flat = (idx == 0) | (idx >= n_exp) | (t_opt == t_hi)
    return np.where(exact_or_flat, v_hi, between)


class MarketState:
    """The latest quote of every underlying, built from ticks; snapshots for pricing.

    ``table``: the instruments (maps options to their underlying's surface, futures
    and options to ids). ``initial``: starting quotes (e.g. from config), used until
    a tick replaces a value; a quote's ``updated_at`` is ignored (only ticks count
    for :meth:`age_s`). Without an initial quote, rate and dividend yield are 0.0
    until ticked.

    Counters: ``applied`` (ticks applied), ``out_of_order`` (ticks older than the
    underlying's last one, ignored).
    """

    def __init__(self, table: InstrumentTable, initial: Mapping[str, UnderlyingQuote] | None = None) -> None:
        self.table = table
        self._known = frozenset(table.underlying_ids)
        self._state: dict[str, _UnderlyingState] = {uid: _UnderlyingState(surface={}) for uid in table.underlying_ids}
        for uid, quote in (initial or {}).items():
            if uid not in self._state:
                raise ReferenceDataError(f"initial quote for unknown underlying {uid!r}")
            st = self._state[uid]
            st.price, st.rate, st.dividend_yield, st.atm_vol = quote.price, quote.rate, quote.dividend_yield, quote.vol
        self._future_prices: dict[str, float] = {}
        self._option_vols: dict[str, float] = {}
        # Per underlying, its option rows with strikes and expiry moments (us): fixed
        # reference data, so resolved once rather than on every snapshot.
        self._options: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for k, uid in enumerate(table.underlying_ids):
            rows = np.array([r for r in table.rows_of_underlying(k) if table.is_option[r]], dtype=np.int64)
            moments = np.array([_to_us(table.expiry_moment(int(r))) for r in rows], dtype=np.int64)
            self._options[uid] = (rows, table.strike[rows].astype(float), moments)
        self.applied = 0
        self.out_of_order = 0

    # ---- updates

    def apply(self, tick: Tick) -> set[str]:
        """Apply one tick; return the underlyings whose pricing inputs changed.

        The tick is validated first (:func:`validate_tick` against this table); a
        malformed one raises ValueError with that message and changes nothing. A
        tick older (event time) than the underlying's last one is ignored and
        counted in ``out_of_order``: a late packet must not undo a newer quote.
        The returned set is empty when nothing changed (the age still refreshes).
        """
        problem = validate_tick(tick, self._known, instruments=self.table)
        if problem is not None:
            raise ValueError(problem)
        st = self._state[tick.underlying]
        if st.last_event_ns is not None and tick.event_time_ns < st.last_event_ns:
            self.out_of_order += 1
            return set()
        changed = False
        price = float(tick.price)
        if st.price != price:
            st.price, changed = price, True
        for name in ("rate", "dividend_yield", "atm_vol"):
            value = getattr(tick, name)
            if value is not None and getattr(st, name) != float(value):
                setattr(st, name, float(value))
                changed = True
        if tick.vol_points:
            by_expiry: dict[dt.date, list[tuple[float, float]]] = {}
            for point in tick.vol_points:
                by_expiry.setdefault(dt.date.fromisoformat(point.expiry), []).append(
                    (float(point.strike), float(point.vol)))
            for expiry, pts in by_expiry.items():
                pts.sort()
                new = _Slice(strikes=np.array([k for k, _ in pts]), vols=np.array([v for _, v in pts]))
                old = st.surface.get(expiry)
                if (old is None or not np.array_equal(old.strikes, new.strikes)
                        or not np.array_equal(old.vols, new.vols)):
                    st.surface[expiry] = new
                    changed = True
        for store, pairs in ((self._future_prices, tick.future_prices), (self._option_vols, tick.option_vols)):
            for iid, value in pairs:
                if store.get(iid) != float(value):
                    store[iid] = float(value)
                    changed = True
        st.last_event_ns = tick.event_time_ns
        st.last_seq = tick.seq
        self.applied += 1
        return {tick.underlying} if changed else set()

    def apply_all(self, ticks: Iterable[Tick]) -> set[str]:
        """Apply a burst of ticks in order; the union of the changed underlyings
        (one reprice per underlying for the whole burst). Raises like :meth:`apply`
        at the first malformed tick, after applying those before it."""
        changed: set[str] = set()
        for tick in ticks:
            changed |= self.apply(tick)
        return changed

    # ---- reads

    def age_s(self, underlying: str, now_ns: int) -> float:
        """Seconds from the underlying's last applied tick (its event time) to
        ``now_ns`` (wall-clock ns since the epoch); ``math.inf`` if never ticked.
        Raises KeyError for an underlying not in the table."""
        last = self._state[underlying].last_event_ns
        return math.inf if last is None else (now_ns - last) / 1e9

    def last_seq(self, underlying: str) -> int | None:
        """``seq`` of the underlying's last applied tick, None if never ticked."""
        return self._state[underlying].last_seq

    def missing(self) -> dict[str, str]:
        """Underlyings that :meth:`snapshot` cannot include yet, with the reason
        (for health checks); empty when every underlying is ready."""
        out: dict[str, str] = {}
        for uid in self.table.underlying_ids:
            if self._state[uid].price is None:
                out[uid] = "no price yet"
        return out

    def snapshot(self, as_of: dt.datetime, underlyings: Iterable[str] | None = None) -> MarketSnapshot:
        """The pricing inputs at ``as_of`` (naive = UTC) for ``underlyings`` (default all).

        ``underlyings[u]``: price, rate, dividend yield (0.0 if never given), ``vol`` =
        the ATM vol (ticked, else initial; if neither, the surface's vol at strike =
        spot on its nearest live expiry) and ``updated_at`` = the last tick's event
        time (None if never ticked). ``option_vols``: every live option of these
        underlyings with its own ticked vol, else a surface vol (see the module
        docstring); options with neither are priced at ``vol``. ``future_prices``:
        ticked futures prices of these underlyings.

        Raises RiskModelError for an underlying with no price, or with options that
        have no vol from any source (fail closed: no made-up vol); ReferenceDataError
        for an id not in the table. An underlying without options and without any
        vol gets UnderlyingQuote's default vol, which prices nothing.
        """
        as_of = _utc(as_of)
        as_of_us = _to_us(as_of)
        wanted = list(self.table.underlying_ids) if underlyings is None else list(underlyings)
        quotes: dict[str, UnderlyingQuote] = {}
        option_vols: dict[str, float] = {}
        future_prices: dict[str, float] = {}
        for uid in wanted:
            st = self._state.get(uid)
            if st is None:
                raise ReferenceDataError(f"underlying {uid!r} is not in the instrument table")
            if st.price is None:
                raise RiskModelError(f"underlying {uid!r}: no price yet (no tick and no initial quote)")
            spec = self.table.underlying_specs[self.table.underlying_index[uid]]
            rows, strikes, moments = self._options[uid]
            live = moments > as_of_us
            rows, strikes, moments = rows[live], strikes[live], moments[live]
            t_opt = (moments - as_of_us) / 1e6 / SECONDS_PER_YEAR
            live_slices = _live_slices(st.surface, spec.expiry_time_utc, as_of_us) if st.surface else []
            surf = _surface_vols(live_slices, strikes, t_opt) if live_slices and len(rows) else None
            atm = st.atm_vol
            if atm is None and live_slices:
                nearest = live_slices[0][1]
                atm = float(np.interp(st.price, nearest.strikes, nearest.vols))
            for j, row in enumerate(rows):
                iid = self.table.ids[row]
                own = self._option_vols.get(iid)
                if own is not None:
                    option_vols[iid] = own
                elif surf is not None:
                    option_vols[iid] = float(surf[j])
                elif atm is None:
                    raise RiskModelError(f"underlying {uid!r}: no vol for option {iid!r}"
                                         " (no own vol, no live surface, no ATM vol)")
            quote_kw: dict[str, Any] = {"price": st.price, "rate": st.rate if st.rate is not None else 0.0,
                                        "dividend_yield": st.dividend_yield if st.dividend_yield is not None else 0.0,
                                        "updated_at": None if st.last_event_ns is None
                                        else _ns_to_datetime(st.last_event_ns)}
            if atm is not None:
                quote_kw["vol"] = atm
            quotes[uid] = UnderlyingQuote(**quote_kw)
            for row in self.table.rows_of_underlying(self.table.underlying_index[uid]):
                fid = self.table.ids[row]
                if fid in self._future_prices:
                    future_prices[fid] = self._future_prices[fid]
        return MarketSnapshot(as_of=as_of, underlyings=quotes, future_prices=future_prices, option_vols=option_vols)


# --------------------------------------------------------------------------- simulator


class GbmUnderlying(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Simulation parameters of one underlying for :class:`GbmMarket`.

    Price: ``spot`` (initial, currency per unit), ``vol`` (diffusion vol, fraction per
    year), ``rate`` / ``dividend_yield`` (fractions per year, constant, sent on every
    tick), jumps: ``jump_intensity`` (expected jumps per year, Poisson),
    ``jump_mean`` / ``jump_std`` (of the log price jump; -0.05 = about -5 %).

    Vol surface: ``atm_vol`` (initial ATM implied vol, fraction/yr; default ``vol``),
    ``vol_long_run`` (long-run mean of the ATM vol; default the initial ATM vol),
    ``vol_mean_reversion`` (kappa, per year: half-life ln2/kappa years),
    ``vol_of_vol`` (std of log ATM vol per sqrt(year)), ``spot_vol_correlation``
    (between the price's and the log-vol's Brownian shocks; negative = leverage),
    ``vol_jump_beta`` (log ATM vol rises by beta x |log jump| on a down jump),
    ``skew`` (vol = atm + skew x ln(K/F) / sqrt(T), T in years: vol x sqrt(year)),
    ``vol_floor`` / ``vol_cap`` (fractions/yr bounding every vol), ``expiries``
    (surface expiry dates), ``moneyness`` (strikes as K/F, strictly ascending),
    ``expiry_time_utc`` (time of day the expiries expire; match the reference data).
    """

    id: str
    spot: float
    vol: float
    rate: float = 0.0
    dividend_yield: float = 0.0
    jump_intensity: float = 0.0
    jump_mean: float = 0.0
    jump_std: float = 0.0
    atm_vol: float | None = None
    vol_long_run: float | None = None
    vol_mean_reversion: float = 4.0
    vol_of_vol: float = 0.5
    spot_vol_correlation: float = -0.5
    vol_jump_beta: float = 2.0
    skew: float = -0.1
    vol_floor: float = 0.01
    vol_cap: float = 5.0
    expiries: tuple[dt.date, ...] = ()
    moneyness: tuple[float, ...] = (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2)
    expiry_time_utc: dt.time = dt.time(21, 0)

    def __post_init__(self) -> None:
        # Messages start with the field name, as in risk.params, so config errors can point at it.
        def finite(name: str) -> float:
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number (underlying {self.id!r}), got {value!r}")
            return float(value)

        if not self.id:
            raise ValueError("id: must be non-empty")
        for name in ("spot", "vol"):
            if finite(name) <= 0.0:
                raise ValueError(f"{name}: must be > 0 (underlying {self.id!r})")
        for name in ("rate", "dividend_yield", "jump_mean", "skew"):
            finite(name)
        for name in ("jump_intensity", "jump_std", "vol_mean_reversion", "vol_of_vol", "vol_jump_beta"):
            if finite(name) < 0.0:
                raise ValueError(f"{name}: must be >= 0 (underlying {self.id!r})")
        if not -1.0 <= finite("spot_vol_correlation") <= 1.0:
            raise ValueError(f"spot_vol_correlation: must be in [-1, 1] (underlying {self.id!r})")
        if not 0.0 < finite("vol_floor") < finite("vol_cap") <= MAX_VOL:
            raise ValueError(f"vol_floor, vol_cap: need 0 < vol_floor < vol_cap <= {MAX_VOL:g}"
                             f" (underlying {self.id!r})")
        for name in ("atm_vol", "vol_long_run"):
            if getattr(self, name) is not None and not self.vol_floor <= finite(name) <= self.vol_cap:
                raise ValueError(f"{name}: must be within [vol_floor, vol_cap] (underlying {self.id!r})")
        if any(not _is_real(m) or not math.isfinite(m) or m <= 0.0 for m in self.moneyness):
            raise ValueError(f"moneyness: every K/F must be finite and > 0 (underlying {self.id!r})")
        if any(b <= a for a, b in zip(self.moneyness, self.moneyness[1:])):
            raise ValueError(f"moneyness: must be strictly ascending (underlying {self.id!r})")
        if len(set(self.expiries)) != len(self.expiries):
            raise ValueError(f"expiries: duplicate date (underlying {self.id!r})")


class GbmMarket:
    """Simulated market: GBM with jumps per underlying and a moving vol surface.

    Log price per step of dt years: ``(-vol^2/2 - lambda k) dt + vol sqrt(dt) Z + J``,
    Z correlated across underlyings by ``correlation`` (identity if None), J the sum
    of N ~ Poisson(lambda dt) normal log jumps, k = E[e^J1] - 1: the compensator
    makes the price a martingale (drift 0 in price).

    ATM vol: log vol is Ornstein-Uhlenbeck toward ``vol_long_run`` (centred so that
    the long-run *mean vol*, not its log, is ``vol_long_run``), exact discretisation,
    plus ``vol_jump_beta`` x |J| when J < 0; clamped to [vol_floor, vol_cap]. Surface
    points: vol = clamp(atm + skew ln(K/F) / sqrt(T)) at K = F x moneyness for every
    configured expiry still alive, F = S e^{(r-q)T}.

    Deterministic for a seed (numpy PCG64; every step draws the same random numbers
    whatever the parameters, so a path with jumps off shares its diffusion with one
    with jumps on). Wall-clock independent: time starts at ``start_ns`` (wall-clock
    ns since the epoch, the ticks' event time) and advances by ``dt_s`` per step.
    """

    def __init__(self, underlyings: Sequence[GbmUnderlying], *, seed: int, start_ns: int,
                 correlation: Sequence[Sequence[float]] | np.ndarray | None = None) -> None:
        if not underlyings:
            raise ValueError("underlyings: at least one is needed")
        ids = [u.id for u in underlyings]
        if len(set(ids)) != len(ids):
            raise ValueError(f"underlyings: duplicate id in {ids}")
        if not _is_int(start_ns) or start_ns < 0:
            raise ValueError(f"start_ns: must be an integer >= 0, got {start_ns!r}")
        n = len(underlyings)
        self.specs = tuple(underlyings)
        corr = np.eye(n) if correlation is None else np.array(correlation, dtype=float)
        if corr.shape != (n, n):
            raise ValueError(f"correlation: must be {n}x{n} (one row per underlying), got shape {corr.shape}")
        if not np.all(np.isfinite(corr)) or not np.allclose(corr, corr.T, atol=1e-12, rtol=0.0):
            raise ValueError("correlation: must be finite and symmetric")
        if not np.allclose(np.diag(corr), 1.0, atol=1e-12, rtol=0.0) or np.any(np.abs(corr) > 1.0):
            raise ValueError("correlation: diagonal must be 1 and every entry in [-1, 1]")
        try:
            self._chol = np.linalg.cholesky(corr)
        except np.linalg.LinAlgError:
            raise ValueError("correlation: not positive definite") from None
        self.correlation = corr
        self._rng = np.random.Generator(np.random.PCG64(seed))
        f = lambda name: np.array([float(getattr(u, name)) for u in underlyings])  # noqa: E731
        self._vol, self._lam = f("vol"), f("jump_intensity")
        self._jm, self._js = f("jump_mean"), f("jump_std")
        self._rate, self._div = f("rate"), f("dividend_yield")
        self._kappa, self._eta = f("vol_mean_reversion"), f("vol_of_vol")
        self._rho, self._beta = f("spot_vol_correlation"), f("vol_jump_beta")
        self._floor, self._cap = f("vol_floor"), f("vol_cap")
        atm0 = np.array([u.atm_vol if u.atm_vol is not None else min(max(u.vol, u.vol_floor), u.vol_cap)
                         for u in underlyings])
        theta = np.array([u.vol_long_run if u.vol_long_run is not None else a for u, a in zip(underlyings, atm0)])
        # Stationary log-vol variance is eta^2/(2 kappa); E[e^x] = e^{mu + var/2}.
        with np.errstate(divide="ignore", invalid="ignore"):
            half_var = np.where(self._kappa > 0, self._eta ** 2 / (4.0 * self._kappa), 0.0)
        self._log_theta = np.log(theta) - half_var
        self._comp = self._lam * (np.exp(self._jm + 0.5 * self._js ** 2) - 1.0)
        self._log_s = np.log(f("spot"))
        self._log_atm = np.log(atm0)
        self._now_ns = int(start_ns)
        self._seq = 0
        self._jumps = np.zeros(n, dtype=np.int64)
        self._expiry_ns = [[(e, _to_us(dt.datetime.combine(e, u.expiry_time_utc.replace(tzinfo=None),
                                                             tzinfo=dt.timezone.utc)) * 1000)
                            for e in sorted(u.expiries)] for u in underlyings]
        self._log_m = [np.log(np.array(u.moneyness, dtype=float)) for u in underlyings]

    @property
    def now_ns(self) -> int:
        """Simulated wall-clock time, ns since the epoch."""
        return self._now_ns

    @property
    def prices(self) -> dict[str, float]:
        """Current price per underlying, currency per unit."""
        return {u.id: float(x) for u, x in zip(self.specs, np.exp(self._log_s))}

    @property
    def atm_vols(self) -> dict[str, float]:
        """Current ATM implied vol per underlying, fraction per year."""
        return {u.id: float(x) for u, x in zip(self.specs, np.exp(self._log_atm))}

    @property
    def jump_counts(self) -> dict[str, int]:
        """Number of price jumps so far per underlying."""
        return {u.id: int(c) for u, c in zip(self.specs, self._jumps)}

    def step(self, dt_s: float) -> list[Tick]:
        """Advance ``dt_s`` seconds (> 0) and return one tick per underlying, in
        configuration order, stamped with the new time and consecutive seq numbers."""
        if not _is_real(dt_s) or not math.isfinite(dt_s) or dt_s <= 0.0:
            raise ValueError(f"dt_s: must be finite and > 0 seconds, got {dt_s!r}")
        n = len(self.specs)
        dt_y = dt_s / SECONDS_PER_YEAR
        rng = self._rng
        z = self._chol @ rng.standard_normal(n)
        z_indep = rng.standard_normal(n)
        n_jumps = rng.poisson(self._lam * dt_y)
        z_jump = rng.standard_normal(n)
        jump = n_jumps * self._jm + np.sqrt(n_jumps) * self._js * z_jump
        self._jumps += n_jumps
        self._log_s += (-0.5 * self._vol ** 2 - self._comp) * dt_y + self._vol * math.sqrt(dt_y) * z + jump
        # Exact OU step in log vol; kappa = 0 degenerates to a random walk.
        decay = np.exp(-self._kappa * dt_y)
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.where(self._kappa > 0, self._eta * np.sqrt((1.0 - decay ** 2) / (2.0 * self._kappa)),
                          self._eta * math.sqrt(dt_y))
        z_vol = self._rho * z + np.sqrt(1.0 - self._rho ** 2) * z_indep
        x = self._log_theta + (self._log_atm - self._log_theta) * decay + sd * z_vol
        x += self._beta * np.maximum(-jump, 0.0)  # vol spikes on a crash
        self._log_atm = np.clip(x, np.log(self._floor), np.log(self._cap))
        self._now_ns += int(round(dt_s * 1e9))
        return [self._tick(i) for i in range(n)]

    def _tick(self, i: int) -> Tick:
        spec = self.specs[i]
        spot = float(math.exp(self._log_s[i]))
        atm = float(math.exp(self._log_atm[i]))
        points: list[VolPoint] = []
        for expiry, moment_ns in self._expiry_ns[i]:
            t = (moment_ns - self._now_ns) / 1e9 / SECONDS_PER_YEAR
            if t <= 0.0:
                continue
            fwd = spot * math.exp((spec.rate - spec.dividend_yield) * t)
            vols = np.clip(atm + spec.skew * self._log_m[i] / math.sqrt(t), spec.vol_floor, spec.vol_cap)
            iso = expiry.isoformat()
            points.extend(VolPoint(expiry=iso, strike=float(fwd * m), vol=float(v))
                          for m, v in zip(spec.moneyness, vols))
        self._seq += 1
        # Rates are sent on every tick so a subscriber that joins late has full state.
        return Tick(underlying=spec.id, price=spot, rate=spec.rate, dividend_yield=spec.dividend_yield,
                    atm_vol=atm, vol_points=tuple(points), event_time_ns=self._now_ns, seq=self._seq)


# --------------------------------------------------------------------------- replay

REPLAY_COLUMNS = ("time", "underlying", "price", "rate", "dividend_yield", "atm_vol")
_REQUIRED = ("time", "underlying", "price")
_OPTIONAL_NUMERIC = ("rate", "dividend_yield", "atm_vol")
_FIELD_COLUMN = {"underlying": "underlying", "price": "price", "rate": "rate", "dividend_yield": "dividend_yield",
                 "atm_vol": "atm_vol", "event_time_ns": "time"}
_ISO_TS = re.compile(r"(?P<base>\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?)"
                     r"(?:\.(?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d{2}:?\d{2})?")
# Integer times below this (1973-03-03 in ns) are seconds, ms or us sent as ns: replayed
# as ns they would compress a day into microseconds without anyone noticing.
_MIN_INT_TIME_NS = 10 ** 17
_TS_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


class ReplayError(msgspec.Struct, frozen=True):
    """A replay row that was skipped: ``path``, ``line`` (CSV: 1-based physical line,
    header = 1; Parquet: 1-based data row), ``column`` (name, or None for the whole
    row), ``value`` (as read), ``reason``. ``str()`` gives ``path:line:column: reason``."""

    path: str
    line: int
    column: str | None
    value: Any
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column or '-'}: {self.reason} (value {self.value!r})"


class ReplayFileError(ValueError):
    """A replay file that cannot be replayed at all (raised when the source opens it,
    never in the middle of a replay): unreadable, no header, bad or missing columns."""


def _parse_time(value: Any) -> int:
    """ns since the epoch from an ISO string or an integer ns; ValueError with why."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("missing time")
    if isinstance(value, dt.datetime):
        return _to_us(value) * 1000
    if _is_int(value):
        ns = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        ns = int(value.strip())
    elif isinstance(value, str):
        match = _ISO_TS.fullmatch(value.strip())
        if match is None:
            raise ValueError("time must be an ISO 8601 timestamp or integer ns since 1970-01-01 UTC")
        tz = match["tz"] or ""
        try:
            base = dt.datetime.fromisoformat(match["base"] + ("+00:00" if tz == "Z" else tz))
        except ValueError as exc:
            raise ValueError(f"invalid timestamp: {exc}") from None
        frac = match["frac"] or ""
        return _to_us(base) * 1000 + (int(frac.ljust(9, "0")) if frac else 0)
    else:
        raise ValueError(f"time of type {type(value).__name__}")
    if ns < _MIN_INT_TIME_NS:
        raise ValueError("integer time must be ns since 1970-01-01 UTC; this looks like seconds, ms or us")
    return ns


def _parse_number(value: Any, column: str, optional: bool) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise ValueError(f"missing {column}")
    if isinstance(value, bool):
        raise ValueError(f"{column} is a boolean")
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"{column} is not a number") from None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise ValueError(f"{column} of type {type(value).__name__}")


def _is_parquet(path: str) -> bool:
    if path.lower().endswith((".parquet", ".pq")):
        return True
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


def _columns(names: Sequence[str], path: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, raw in enumerate(names):
        name = str(raw).strip().lower()
        if name not in REPLAY_COLUMNS:
            raise ReplayFileError(f"{path}: unknown column {raw!r} (columns are {', '.join(REPLAY_COLUMNS)})")
        if name in index:
            raise ReplayFileError(f"{path}: column {name!r} appears twice")
        index[name] = i
    missing = [c for c in _REQUIRED if c not in index]
    if missing:
        raise ReplayFileError(f"{path}: missing column(s) {', '.join(missing)}")
    return index


class ReplaySource:
    """Ticks from a recorded CSV or Parquet file (columns in the module docstring),
    paced at recorded speed, accelerated, or as fast as possible.

    ``speed``: 1.0 = recorded timing, 10.0 = ten times faster, 0 = no waiting.
    Pacing is against the start of the replay (tick i is due ``(t_i - t_0) / speed``
    seconds after the first), so a slow consumer does not accumulate lag.
    ``clock``: seconds, monotonic (default ``time.monotonic``); ``sleep``: waits
    seconds (default: an interruptible wait that :meth:`stop` cuts short); inject
    both to replay without waiting in tests. ``known_underlyings``: the configured
    ids (None accepts any). ``on_error``: called with each :class:`ReplayError`
    (default: a warning log line). ``seq_start``: ``seq`` of the first tick, +1 per
    tick yielded. Ticks carry the recorded time as ``event_time_ns``.

    A malformed row (bad or missing value, unknown underlying, value out of range
    per :func:`validate_tick`, time going backwards, wrong field count) is reported
    and skipped: ``skipped`` counts them, ``errors`` keeps the first
    ``max_errors_kept``. The iteration never raises for file contents; a file that
    cannot be replayed at all raises :class:`ReplayFileError` from the constructor.
    Each ``iter()`` replays the file from the start.
    """

    def __init__(self, path: str | os.PathLike[str], *, speed: float = 1.0,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], Any] | None = None,
                 known_underlyings: Container[str] | None = None,
                 on_error: Callable[[ReplayError], Any] | None = None,
                 seq_start: int = 1, max_errors_kept: int = 1000) -> None:
        if not _is_real(speed) or not math.isfinite(speed) or speed < 0.0:
            raise ValueError(f"speed: must be finite and >= 0 (0 = as fast as possible), got {speed!r}")
        self.path = os.fspath(path)
        self.speed = float(speed)
        self._stop_event = threading.Event()
        self._clock = clock if clock is not None else _time.monotonic
        self._sleep = sleep if sleep is not None else self._stop_event.wait
        self._known = known_underlyings
        self._on_error = on_error
        self._seq_start = int(seq_start)
        self._max_errors = int(max_errors_kept)
        self.errors: list[ReplayError] = []
        self.skipped = 0
        self.emitted = 0
        # Open once here so a missing file or a bad header fails before the stream starts.
        try:
            self._parquet = _is_parquet(self.path)
            if self._parquet:
                self._parquet_columns()
            else:
                self._csv_header()
        except OSError as exc:
            raise ReplayFileError(f"{self.path}: cannot open: {exc}") from exc

    def stop(self) -> None:
        """End the replay at the next tick (and cut a default ``sleep`` short)."""
        self._stop_event.set()

    # ---- reading

    def _csv_header(self) -> tuple[dict[str, int], int]:
        with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.reader(handle)
            for fields in reader:
                if fields and any(f.strip() for f in fields):
                    return _columns(fields, self.path), reader.line_num
        raise ReplayFileError(f"{self.path}: empty file (no header)")

    def _csv_rows(self) -> Iterator[tuple[int, dict[str, Any] | ReplayError]]:
        index, header_line = self._csv_header()
        width = max(index.values()) + 1
        # errors="replace": a bad byte becomes U+FFFD inside its field, so it fails that
        # row's parsing instead of aborting the whole replay with UnicodeDecodeError.
        with open(self.path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            reader = csv.reader(handle)
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield reader.line_num, ReplayError(self.path, reader.line_num, None, None, f"CSV error: {exc}")
                    continue
                line = reader.line_num
                if line <= header_line or not fields or not any(f.strip() for f in fields):
                    continue
                if len(fields) != width:
                    yield line, ReplayError(self.path, line, None, ",".join(fields),
                                            f"expected {width} fields, got {len(fields)}")
                    continue
                yield line, {name: fields[i] for name, i in index.items()}

    def _parquet_columns(self) -> tuple[Any, dict[str, int]]:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError(f"replaying the Parquet file {self.path!r} needs pyarrow: "
                              "pip install 'riskd[parquet]'") from exc
        try:
            pf = pq.ParquetFile(self.path)
        except OSError:
            raise
        except Exception as exc:  # pyarrow's ArrowInvalid family
            raise ReplayFileError(f"{self.path}: cannot read Parquet file: {exc}") from exc
        index = _columns(pf.schema_arrow.names, self.path)
        return pf, index

    def _parquet_rows(self) -> Iterator[tuple[int, dict[str, Any] | ReplayError]]:
        import pyarrow as pa

        pf, index = self._parquet_columns()
        row = 0
        batches = pf.iter_batches(batch_size=8192)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:  # a corrupt row group: report it and end, never raise mid-stream
                yield row + 1, ReplayError(self.path, row + 1, None, None, f"cannot read Parquet data: {exc}")
                return
            columns: dict[str, list[Any]] = {}
            for name, i in index.items():
                col = batch.column(i)
                if pa.types.is_timestamp(col.type):
                    # Integers in the column's unit times the unit: exact, cannot overflow.
                    scale = _TS_UNIT_NS[col.type.unit]
                    columns[name] = [None if v is None else v * scale for v in col.cast(pa.int64()).to_pylist()]
                else:
                    columns[name] = col.to_pylist()
            for k in range(batch.num_rows):
                row += 1
                yield row, {name: values[k] for name, values in columns.items()}

    def _to_tick(self, line: int, values: dict[str, Any], seq: int) -> Tick | ReplayError:
        def err(column: str, reason: str) -> ReplayError:
            return ReplayError(self.path, line, column, values.get(column), reason)

        try:
            time_ns = _parse_time(values["time"])
        except ValueError as exc:
            return err("time", str(exc))
        und = values["underlying"]
        if not isinstance(und, str) or not und.strip():
            return err("underlying", "missing underlying")
        und = und.strip()
        if "\ufffd" in und:
            return err("underlying", "not valid UTF-8")
        numbers: dict[str, float | None] = {}
        for column in ("price",) + _OPTIONAL_NUMERIC:
            if column == "price" or column in values:
                try:
                    numbers[column] = _parse_number(values.get(column), column, optional=column != "price")
                except ValueError as exc:
                    return err(column, str(exc))
        tick = Tick(underlying=und, price=numbers["price"], rate=numbers.get("rate"),
                    dividend_yield=numbers.get("dividend_yield"), atm_vol=numbers.get("atm_vol"),
                    event_time_ns=time_ns, seq=seq)
        problem = _check_tick(tick, self._known, None)
        if problem is not None:
            field, reason, value = problem
            return ReplayError(self.path, line, _FIELD_COLUMN.get(field, field), values.get(_FIELD_COLUMN.get(field)),
                               f"{field}: {reason}")
        return tick

    def _report(self, error: ReplayError) -> None:
        self.skipped += 1
        if len(self.errors) < self._max_errors:
            self.errors.append(error)
        if self._on_error is not None:
            self._on_error(error)
        else:
            log.warning("replay row skipped: %s", error)

    # ---- pacing

    def __iter__(self) -> Iterator[Tick]:
        self._stop_event.clear()
        rows = self._parquet_rows() if self._parquet else self._csv_rows()
        seq = self._seq_start
        first_ns: int | None = None
        last_ns: int | None = None
        start_clock = 0.0
        for line, values in rows:
            if self._stop_event.is_set():
                return
            item = values if isinstance(values, ReplayError) else self._to_tick(line, values, seq)
            if isinstance(item, ReplayError):
                self._report(item)
                continue
            if last_ns is not None and item.event_time_ns < last_ns:
                self._report(ReplayError(self.path, line, "time", values["time"],
                                         f"time goes backwards (previous row at {last_ns} ns)"))
                continue
            if first_ns is None:
                first_ns, start_clock = item.event_time_ns, self._clock()
            elif self.speed > 0.0:
                due = start_clock + (item.event_time_ns - first_ns) / 1e9 / self.speed
                delay = due - self._clock()
                if delay > 0.0:
                    self._sleep(delay)
                if self._stop_event.is_set():
                    return
            last_ns = item.event_time_ns
            seq += 1
            self.emitted += 1
            yield item


def _replay_rows(ticks: Iterable[Tick]) -> Iterator[tuple[int, str, float, float | None, float | None, float | None]]:
    for tick in ticks:
        yield tick.event_time_ns, tick.underlying, tick.price, tick.rate, tick.dividend_yield, tick.atm_vol


def write_replay_csv(path: str | os.PathLike[str], ticks: Iterable[Tick]) -> int:
    """Record ``ticks`` as a replay CSV (time as integer ns, floats in repr so they
    read back bit-exact, None as an empty cell); return the number of rows.

    Only the replay columns are written: vol surfaces, futures prices and option
    vols are not part of the replay format and are dropped.
    """
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REPLAY_COLUMNS)
        for row in _replay_rows(ticks):
            writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
            count += 1
    return count


def write_replay_parquet(path: str | os.PathLike[str], ticks: Iterable[Tick]) -> int:
    """Record ``ticks`` as a replay Parquet file (``time`` a UTC ns timestamp column);
    return the number of rows. Same columns and drops as :func:`write_replay_csv`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(_replay_rows(ticks))
    cols = list(zip(*rows)) if rows else [[] for _ in REPLAY_COLUMNS]
    table = pa.table({
        "time": pa.array(cols[0], type=pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "underlying": pa.array(cols[1], type=pa.string()),
        "price": pa.array(cols[2], type=pa.float64()),
        "rate": pa.array(cols[3], type=pa.float64()),
        "dividend_yield": pa.array(cols[4], type=pa.float64()),
        "atm_vol": pa.array(cols[5], type=pa.float64()),
    })
    pq.write_table(table, path)
    return len(rows)
