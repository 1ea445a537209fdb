"""Market state: the latest quote of every underlying, built from ticks, and the
vol-surface interpolation that turns it into pricing snapshots.

One job: apply validated ticks (:mod:`actors.ticks`) and answer
:meth:`MarketState.snapshot`. Synchronous and clock-free (time is passed in).

Vol resolution (:meth:`MarketState.snapshot`): an option's own ticked vol, else the
underlying's surface interpolated linearly in total variance (vol^2 x T) between
expiries and linearly in vol between strikes (flat beyond the end strikes and the
end expiries), else the underlying's ATM vol.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import numpy as np

from actors.ticks import Tick, _ns_to_datetime, _to_us, _utc, validate_tick
from risk.errors import RiskModelError
from risk.instruments import (SECONDS_PER_YEAR, InstrumentTable, MarketSnapshot, ReferenceDataError,
                              UnderlyingQuote)

__all__ = ["MarketState"]


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
