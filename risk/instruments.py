"""Instrument reference data as flat arrays, and market snapshots as pricing inputs.

:class:`InstrumentTable` turns the configured instruments into struct-of-arrays
form (one row per instrument) so pricing and revaluation are vectorized over
instruments. :class:`MarketSnapshot` holds the prices, rates and vols that price
them at one moment; :func:`pricing_inputs` combines the two into the per-row
arguments of :func:`risk.pricing.greeks`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated

import msgspec
import numpy as np
from msgspec import Meta

from risk.errors import RiskModelError
from risk.params import InstrumentSpec, UnderlyingSpec

SPOT, FUTURE, OPTION = 0, 1, 2
_KIND_CODE = {"spot": SPOT, "future": FUTURE, "option": OPTION}
DAYS_PER_YEAR = 365.0
SECONDS_PER_YEAR = DAYS_PER_YEAR * 86400.0


class ReferenceDataError(ValueError):
    """Instruments that do not fit together (unknown underlying, duplicate id, ...)."""


class UnderlyingQuote(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Market state of one underlying.

    ``price``: spot or index level (currency per unit). ``rate``: continuously
    compounded risk-free rate, fraction per year. ``dividend_yield``: continuous
    yield, fraction per year. ``vol``: implied vol for its options without an own
    quote, fraction per year. ``updated_at``: when this quote was last updated.
    """

    price: Annotated[float, Meta(gt=0.0)]
    rate: float = 0.0
    dividend_yield: float = 0.0
    vol: Annotated[float, Meta(gt=0.0)] = 0.2
    updated_at: dt.datetime | None = None


class MarketSnapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything pricing needs at one moment ``as_of``.

    ``future_prices`` overrides the cost-of-carry futures price S e^{(r-q)T};
    ``option_vols`` gives an option its own implied vol (fraction per year).
    """

    as_of: dt.datetime
    underlyings: dict[str, UnderlyingQuote]
    future_prices: dict[str, Annotated[float, Meta(gt=0.0)]] = {}
    option_vols: dict[str, Annotated[float, Meta(gt=0.0)]] = {}


class InstrumentTable:
    """Instruments as arrays, one row each, in configuration order.

    Attributes (NumPy arrays of length n unless said): ``kind`` (SPOT, FUTURE,
    OPTION), ``underlying`` (row in ``underlying_ids``), ``multiplier`` (currency
    per 1.00 price per contract), ``strike`` (NaN unless option), ``is_call``,
    ``black76`` (option on a future), ``future_row`` (row of that future, -1 if
    none), ``expiry`` (list of dates, None for spot).
    """

    def __init__(self, underlyings: list[UnderlyingSpec] | tuple[UnderlyingSpec, ...],
                 instruments: list[InstrumentSpec] | tuple[InstrumentSpec, ...]) -> None:
        self.underlying_specs = tuple(underlyings)
        self.underlying_ids = [u.id for u in underlyings]
        self.underlying_index = {uid: k for k, uid in enumerate(self.underlying_ids)}
        if len(self.underlying_index) != len(self.underlying_ids):
            raise ReferenceDataError(f"duplicate underlying id in {self.underlying_ids}")
        self.specs = tuple(instruments)
        self.ids = [s.id for s in instruments]
        self.index = {iid: k for k, iid in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            seen: set[str] = set()
            dup = next(i for i in self.ids if i in seen or seen.add(i))
            raise ReferenceDataError(f"instrument id {dup!r} is defined twice")
        n = len(instruments)
        self.kind = np.empty(n, dtype=np.int8)
        self.underlying = np.empty(n, dtype=np.int64)
        self.multiplier = np.empty(n)
        self.strike = np.full(n, np.nan)
        self.is_call = np.zeros(n, dtype=bool)
        self.black76 = np.zeros(n, dtype=bool)
        self.future_row = np.full(n, -1, dtype=np.int64)
        self.expiry: list[dt.date | None] = []
        for row, spec in enumerate(instruments):
            if spec.underlying not in self.underlying_index:
                raise ReferenceDataError(f"instrument {spec.id!r}: unknown underlying {spec.underlying!r}")
            self.kind[row] = _KIND_CODE[spec.kind]
            self.underlying[row] = self.underlying_index[spec.underlying]
            self.multiplier[row] = spec.multiplier
            self.expiry.append(spec.expiry)
            if spec.kind == "option":
                self.strike[row] = spec.strike
                self.is_call[row] = spec.right == "call"
                if spec.on_future is not None:
                    fut = self.index.get(spec.on_future)
                    if fut is None or self.specs[fut].kind != "future":
                        raise ReferenceDataError(f"option {spec.id!r}: on_future {spec.on_future!r} is not a future")
                    if self.specs[fut].underlying != spec.underlying:
                        raise ReferenceDataError(f"option {spec.id!r}: its future {spec.on_future!r} has another underlying")
                    self.black76[row] = True
                    self.future_row[row] = fut
        self.is_option = self.kind == OPTION

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of_underlying(self, underlying_row: int) -> np.ndarray:
        """Rows of the instruments whose underlying is ``underlying_row``."""
        return np.flatnonzero(self.underlying == underlying_row)

    def expiry_moment(self, row: int) -> dt.datetime | None:
        """When row's instrument expires (UTC), None for spot."""
        expiry = self.expiry[row]
        if expiry is None:
            return None
        at = self.underlying_specs[self.underlying[row]].expiry_time_utc
        return dt.datetime.combine(expiry, at.replace(tzinfo=None), tzinfo=dt.timezone.utc)

    def years_to_expiry(self, as_of: dt.datetime) -> np.ndarray:
        """Time to expiry in years (seconds / (365 x 86400)) from ``as_of``; 0 for spot.

        Raises RiskModelError for an instrument already expired at ``as_of``: it must
        be settled and removed from reference data, not priced at intrinsic value.
        A naive ``as_of`` is taken as UTC.
        """
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=dt.timezone.utc)
        out = np.zeros(len(self))
        for row in range(len(self)):
            moment = self.expiry_moment(row)
            if moment is not None:
                seconds = (moment - as_of).total_seconds()
                if seconds <= 0.0:
                    raise RiskModelError(f"instrument {self.ids[row]!r} expired at {moment.isoformat()}"
                                         f" (as of {as_of.isoformat()}): settle it and remove it")
                out[row] = seconds / SECONDS_PER_YEAR
        return out


class PricingInputs(msgspec.Struct, frozen=True):
    """Per-row pricing arguments (NumPy arrays, length n) at one market snapshot.

    ``s``: the price the row's value is a function of: the underlying's spot for
    spot rows and BSM options, the futures price for futures and Black-76 options.
    ``t``: years to expiry. ``r``, ``q``, ``vol``: fractions per year (vol is NaN for
    non-options). ``spot``: the underlying's spot, for notional and scenario moves.
    """

    s: np.ndarray
    t: np.ndarray
    r: np.ndarray
    q: np.ndarray
    vol: np.ndarray
    spot: np.ndarray


def pricing_inputs(table: InstrumentTable, market: MarketSnapshot) -> PricingInputs:
    """Resolve every row's pricing arguments from the snapshot.

    Raises ReferenceDataError naming the underlying that has no quote.
    """
    quotes = []
    for uid in table.underlying_ids:
        quote = market.underlyings.get(uid)
        if quote is None:
            raise ReferenceDataError(f"market snapshot has no quote for underlying {uid!r}")
        # Structs built in code (a feed handler) skip the decoder's range checks.
        for name in ("price", "vol"):
            if not _positive(getattr(quote, name)):
                raise RiskModelError(f"underlying {uid!r}: {name} must be finite and > 0, found {getattr(quote, name)!r}")
        for name in ("rate", "dividend_yield"):
            if not math.isfinite(getattr(quote, name)):
                raise RiskModelError(f"underlying {uid!r}: {name} must be finite, found {getattr(quote, name)!r}")
        quotes.append(quote)
    u = table.underlying
    spot_u = np.array([qt.price for qt in quotes])
    rate_u = np.array([qt.rate for qt in quotes])
    div_u = np.array([qt.dividend_yield for qt in quotes])
    vol_u = np.array([qt.vol for qt in quotes])
    t = table.years_to_expiry(market.as_of)
    spot, r, q = spot_u[u], rate_u[u], div_u[u]
    # A future's price is its own quote when there is one, else spot carried forward.
    s = np.where(table.kind == FUTURE, spot * np.exp((r - q) * t), spot)
    for fid, fprice in market.future_prices.items():
        row = table.index.get(fid)
        if row is None or table.kind[row] != FUTURE:
            raise ReferenceDataError(f"market snapshot quotes {fid!r} as a future, but it is not a configured future")
        if not _positive(fprice):
            raise RiskModelError(f"future {fid!r}: price must be finite and > 0, found {fprice!r}")
        s[row] = fprice
    on_future = table.future_row >= 0
    s = np.where(on_future, s[np.maximum(table.future_row, 0)], s)
    vol = np.where(table.is_option, vol_u[u], np.nan)
    for oid, ovol in market.option_vols.items():
        row = table.index.get(oid)
        if row is None or not table.is_option[row]:
            raise ReferenceDataError(f"market snapshot has a vol for {oid!r}, which is not a configured option")
        if not _positive(ovol):
            raise RiskModelError(f"option {oid!r}: vol must be finite and > 0, found {ovol!r}")
        vol[row] = ovol
    return PricingInputs(s=s, t=t, r=r, q=q, vol=vol, spot=spot)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0.0

