"""Margin parameter sets: scenario grids, margin profiles, tiers, VaR and stress.

These are the frozen msgspec Structs that configs/ TOML decodes into (the loader,
with its error messages, is in daemon/config.py). Nothing here has a default grid
baked into code paths: every number a margin depends on comes from config.

Conventions: moves and shocks are fractions (0.16 is 16 %), never percent; vol
levels and absolute vol shocks are fractions of 1.00 vol per year (0.04 is 4 vol
points); days are calendar days.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]
PositiveFloat = Annotated[float, Meta(gt=0.0)]
NonNegativeFloat = Annotated[float, Meta(ge=0.0)]
Identifier = Annotated[str, Meta(min_length=1, max_length=64)]


class _Frozen(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class SpanGrid(_Frozen, tag="span", tag_field="family"):
    """SPAN-like grid: 16 scenarios per underlying.

    Price moves 0, +-1/3, +-2/3 and +-1 of ``price_scan_range`` (a fraction of the
    underlying price), each with vol up and down by ``vol_scan_range`` (absolute
    vol, 0.04 = 4 vol points): 14 scenarios. Then two extreme moves of
    +-``extreme_multiple`` x the range, vol unchanged, whose P&L counts at
    ``extreme_fraction`` (0.35 in SPAN). ``lookahead_days`` of time decay is applied
    to every option scenario (SPAN uses the time to the next settlement); futures
    are revalued at F x (1 + move), their carry over the lookahead ignored.
    """

    price_scan_range: Annotated[float, Meta(gt=0.0, lt=1.0)]
    vol_scan_range: NonNegativeFloat
    extreme_multiple: PositiveFloat = 3.0
    extreme_fraction: Fraction = 0.35
    lookahead_days: NonNegativeFloat = 0.0
    vol_floor: PositiveFloat = 0.01

    def __post_init__(self) -> None:
        if not 0.0 < self.price_scan_range < 1.0:
            raise ValueError(f"price_scan_range: expected a fraction in (0, 1), found {self.price_scan_range}")
        # A move of -100 % or worse has no price: it must be refused, not priced as NaN.
        if self.extreme_multiple * self.price_scan_range >= 1.0:
            raise ValueError(f"extreme_multiple: extreme moves of {self.extreme_multiple:g} x"
                             f" {self.price_scan_range:g} reach -100 %; expected extreme_multiple x"
                             " price_scan_range < 1")


class PortfolioGrid(_Frozen, tag="portfolio", tag_field="family"):
    """Exchange-portfolio-margin-like grid (Deribit-style).

    Price moves of +-``max_move`` in ``buckets_per_side`` equal steps each side plus
    0 (9 moves for 4 buckets), each with three vol scenarios: up, unchanged, down,
    giving (2 * buckets + 1) * 3 scenarios (27 by default). Vol shocks are relative
    (0.45 = vol x 1.45) and scaled per option by (``dte_reference_days`` / DTE) **
    power, with ``short_dated_power`` below ``dte_reference_days`` and
    ``long_dated_power`` at or above it; DTE is floored at ``min_dte_days``; the
    shocked vol is floored at ``vol_floor``. The extended table of large moves
    (vol unchanged) counts at ``extended_dampener`` (a fraction) of its P&L.
    Futures are revalued at F x (1 + move) in every family.
    """

    max_move: Annotated[float, Meta(gt=0.0, lt=1.0)] = 0.16
    buckets_per_side: Annotated[int, Meta(ge=1, le=64)] = 4
    vol_up: NonNegativeFloat = 0.45
    vol_down: Fraction = 0.30
    dte_reference_days: PositiveFloat = 30.0
    short_dated_power: NonNegativeFloat = 0.30
    long_dated_power: NonNegativeFloat = 0.13
    min_dte_days: PositiveFloat = 1.0
    vol_floor: PositiveFloat = 0.01
    extended_moves: tuple[Annotated[float, Meta(gt=-1.0)], ...] = (
        -0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0,
    )
    extended_dampener: Fraction = 0.1

    def __post_init__(self) -> None:
        # Checked here too (not only by the decoder) so grids built in code are safe.
        if not 0.0 < self.max_move < 1.0:
            raise ValueError(f"max_move: expected a fraction in (0, 1), found {self.max_move}")
        bad = [m for m in self.extended_moves if m <= -1.0]
        if bad:
            raise ValueError(f"extended_moves: moves must be above -1 (-100 %), found {bad}")


ScenarioGrid = SpanGrid | PortfolioGrid

MarginMethod = Literal["scenario", "parametric_var", "historical_var"]


class VarParams(_Frozen):
    """Parametric and historical VaR settings.

    ``confidence`` is a fraction (0.99). ``horizon_days`` is in trading days: the
    parametric covariance is scaled by it, historical returns are taken over it.
    ``window`` is the number of historical scenarios (252 or 504 days typical).
    ``method`` picks delta-normal or delta-gamma (Cornish-Fisher) for parametric VaR.
    """

    confidence: Annotated[float, Meta(gt=0.5, lt=1.0)] = 0.99
    horizon_days: Annotated[int, Meta(ge=1, le=260)] = 1
    ewma_lambda: Annotated[float, Meta(gt=0.0, lt=1.0)] = 0.94
    window: Annotated[int, Meta(ge=20, le=5000)] = 252
    method: Literal["delta_normal", "delta_gamma"] = "delta_gamma"


class MarginProfile(_Frozen):
    """How an account's initial margin is computed.

    IM = the largest of the selected ``methods`` and the short-option minimum;
    MM = ``mm_factor`` x IM. ``short_option_minimum`` is a fraction of the
    underlying's notional (price x multiplier) charged per short option contract,
    as a floor on each underlying's scan risk (SPAN's short option minimum).
    """

    methods: tuple[MarginMethod, ...] = ("scenario",)
    mm_factor: Annotated[float, Meta(gt=0.0, le=1.0)] = 0.8
    short_option_minimum: Fraction = 0.0
    max_utilization: Annotated[float, Meta(gt=0.0, le=1.0)] = 1.0

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("methods: expected at least one of scenario, parametric_var, historical_var")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: a method is listed twice: {list(self.methods)}")


class TierThresholds(_Frozen):
    """Tier ladder on the margin ratio MM / equity (a fraction; 1.0 = equity equals MM).

    An account enters a tier when its ratio reaches the tier's threshold, and leaves
    it downward only when the ratio falls below threshold - ``hysteresis``.
    Thresholds must increase up the ladder.
    """

    margin_call: PositiveFloat = 0.70
    reduce_only: PositiveFloat = 0.85
    partial_liquidation: PositiveFloat = 1.00
    full_liquidation: PositiveFloat = 1.20
    hysteresis: NonNegativeFloat = 0.05

    def __post_init__(self) -> None:
        names = ("margin_call", "reduce_only", "partial_liquidation", "full_liquidation")
        for lower, upper in zip(names, names[1:]):
            if getattr(self, upper) <= getattr(self, lower):
                # "field: message" lets the config loader name the field.
                raise ValueError(f"{upper}: thresholds must increase up the ladder; expected above {lower}"
                                 f" ({getattr(self, lower)}), found {getattr(self, upper)}")
        if self.hysteresis >= self.margin_call:
            raise ValueError(f"hysteresis: expected below margin_call ({self.margin_call}), found {self.hysteresis}")


class StressScenario(_Frozen):
    """A named stress test, e.g. "tech crash": sector tech -20 %, correlations +50 %.

    ``underlying_moves`` and ``sector_moves`` are relative price moves (fractions);
    an underlying's own entry wins over its sector's. ``vol_shift`` is an absolute
    vol change for every option (0.10 = +10 vol points); ``sector_vol_shifts`` per
    sector. Underlyings not shocked move by their conditional expectation given the
    shocked ones, under the covariance with correlations scaled by
    ``correlation_factor`` (1.5 = correlations +50 %, capped at 1, then PSD-repaired).
    With no covariance available, unshocked underlyings do not move.
    """

    name: Identifier
    underlying_moves: dict[str, Annotated[float, Meta(gt=-1.0)]] = {}
    sector_moves: dict[str, Annotated[float, Meta(gt=-1.0)]] = {}
    vol_shift: float = 0.0
    sector_vol_shifts: dict[str, float] = {}
    correlation_factor: NonNegativeFloat = 1.0


class MarginParams(_Frozen):
    """All margin parameter sets, referenced by name from underlyings and accounts."""

    grids: dict[Identifier, ScenarioGrid]
    profiles: dict[Identifier, MarginProfile]
    tiers: TierThresholds = TierThresholds()
    var: VarParams = VarParams()
    stress: tuple[StressScenario, ...] = ()


class UnderlyingSpec(_Frozen):
    """A risk factor: an index, stock or commodity whose price moves in scenarios.

    ``expiry_time_utc``: the time of day (UTC) at which its futures and options
    expire on their expiry date; time to expiry runs to that moment, so an option
    on its last day still has hours of optionality.
    """

    id: Identifier
    grid: Identifier
    sector: str = ""
    expiry_time_utc: dt.time = dt.time(21, 0)


class InstrumentSpec(_Frozen):
    """One tradable instrument.

    ``kind``: spot (an equity or index unit), future, or option. An option with
    ``on_future`` set is an option on that future (Black-76); otherwise it is on the
    underlying's spot (Black-Scholes-Merton with the underlying's dividend yield).
    ``multiplier`` is currency per 1.00 of price per contract.
    """

    id: Identifier
    kind: Literal["spot", "future", "option"]
    underlying: Identifier
    multiplier: PositiveFloat = 1.0
    expiry: dt.date | None = None
    right: Literal["call", "put"] | None = None
    strike: PositiveFloat | None = None
    on_future: Identifier | None = None

    def __post_init__(self) -> None:
        # Messages start with the field name so the config loader can point at it.
        if self.kind in ("future", "option") and self.expiry is None:
            raise ValueError(f"expiry: required field is missing (instrument {self.id!r} is a {self.kind})")
        if self.kind == "option":
            for name in ("right", "strike"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name}: required field is missing (instrument {self.id!r} is an option)")
        for name in ("right", "strike", "on_future"):
            if self.kind != "option" and getattr(self, name) is not None:
                raise ValueError(f"{name}: applies to options only (instrument {self.id!r} is a {self.kind})")
