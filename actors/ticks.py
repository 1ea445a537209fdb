"""Ticks: the market-data wire schema, its msgpack codec and tick validation.

One job: what a tick is and whether it may be applied. Also the time convention
shared by the market-data modules (integer ns / us since 1970-01-01 UTC).

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
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Container
from typing import Any

import msgspec

from risk.instruments import FUTURE, InstrumentTable

__all__ = ["MAX_ABS_RATE", "MAX_VOL", "VolPoint", "Tick", "encode_tick", "TickDecoder", "validate_tick"]

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


# --------------------------------------------------------------------------- time convention


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment


def _to_us(moment: dt.datetime) -> int:
    """Integer microseconds since the epoch: one exact clock for option and surface
    times to expiry, so an option expiring on a surface expiry gets exactly its vol."""
    delta = _utc(moment) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _ns_to_datetime(ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)
