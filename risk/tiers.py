"""The account tier ladder on the margin ratio, with hysteresis.

The margin ratio is MM / equity (a fraction: 1.0 means equity only just covers
maintenance margin); equity <= 0 with any margin is an infinite ratio.
"""

from __future__ import annotations

import enum
import math

from risk.params import TierThresholds


class Tier(enum.IntEnum):
    """Ordered from healthy to worst; comparisons follow the ladder."""

    NORMAL = 0
    MARGIN_CALL = 1
    REDUCE_ONLY = 2
    PARTIAL_LIQUIDATION = 3
    FULL_LIQUIDATION = 4


def margin_ratio(maintenance_margin: float, equity: float) -> float:
    """MM / equity as a fraction; 0 with no margin, +inf when equity <= 0 with margin.

    A NaN in either is +inf: a margin that cannot be computed fails closed.
    """
    if not (math.isfinite(maintenance_margin) and math.isfinite(equity)):
        return math.inf
    if maintenance_margin <= 0.0:
        return 0.0
    if equity <= 0.0:
        return math.inf
    return maintenance_margin / equity


def _thresholds(t: TierThresholds) -> tuple[float, ...]:
    return (t.margin_call, t.reduce_only, t.partial_liquidation, t.full_liquidation)


def tier_for_ratio(ratio: float, thresholds: TierThresholds) -> Tier:
    """The tier of ``ratio`` with no history (entering thresholds only); NaN is the worst tier."""
    if ratio != ratio:
        return Tier.FULL_LIQUIDATION
    tier = Tier.NORMAL
    for level, threshold in enumerate(_thresholds(thresholds), start=1):
        if ratio >= threshold:
            tier = Tier(level)
    return tier


def next_tier(current: Tier, ratio: float, thresholds: TierThresholds) -> Tier:
    """The tier after observing ``ratio`` while in ``current``.

    Up the ladder at once when a threshold is reached; down only to the tier whose
    band the ratio is inside by at least ``hysteresis``, so a ratio oscillating
    within ``hysteresis`` of a threshold does not flap.
    """
    entering = tier_for_ratio(ratio, thresholds)
    if entering >= current:
        return entering
    leaving = tier_for_ratio(ratio + thresholds.hysteresis, thresholds)
    return max(entering, min(current, leaving))
