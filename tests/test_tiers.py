"""Tier ladder: thresholds, hysteresis, no flapping."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from risk.params import TierThresholds
from risk.tiers import Tier, margin_ratio, next_tier, tier_for_ratio

T = TierThresholds(margin_call=0.7, reduce_only=0.85, partial_liquidation=1.0, full_liquidation=1.2, hysteresis=0.05)


def test_margin_ratio_edges() -> None:
    assert margin_ratio(0.0, 100.0) == 0.0
    assert margin_ratio(50.0, 100.0) == 0.5
    assert margin_ratio(50.0, 0.0) == math.inf
    assert margin_ratio(50.0, -10.0) == math.inf


@pytest.mark.parametrize("ratio,tier", [(0.0, Tier.NORMAL), (0.69, Tier.NORMAL), (0.7, Tier.MARGIN_CALL),
                                        (0.9, Tier.REDUCE_ONLY), (1.0, Tier.PARTIAL_LIQUIDATION),
                                        (1.19, Tier.PARTIAL_LIQUIDATION), (1.2, Tier.FULL_LIQUIDATION),
                                        (math.inf, Tier.FULL_LIQUIDATION)])
def test_entering_thresholds(ratio: float, tier: Tier) -> None:
    assert tier_for_ratio(ratio, T) == tier
    assert next_tier(Tier.NORMAL, ratio, T) == tier


def test_leaving_needs_the_hysteresis_margin() -> None:
    tier = next_tier(Tier.NORMAL, 1.01, T)
    assert tier == Tier.PARTIAL_LIQUIDATION
    assert next_tier(tier, 0.97, T) == Tier.PARTIAL_LIQUIDATION  # within 0.05 below 1.0: stays
    assert next_tier(tier, 0.94, T) == Tier.REDUCE_ONLY          # below 0.95: leaves one tier
    assert next_tier(tier, 0.50, T) == Tier.NORMAL               # far below: straight to normal
    assert next_tier(Tier.MARGIN_CALL, 0.66, T) == Tier.MARGIN_CALL
    assert next_tier(Tier.MARGIN_CALL, 0.64, T) == Tier.NORMAL


@given(st.lists(st.floats(-0.04, 0.04), min_size=10, max_size=200), st.sampled_from([0.7, 0.85, 1.0, 1.2]))
def test_ratio_oscillating_around_a_threshold_changes_tier_at_most_once(wiggle, threshold) -> None:
    tier = tier_for_ratio(threshold + wiggle[0], T)
    changes = 0
    for w in wiggle[1:]:
        new = next_tier(tier, threshold + w, T)
        changes += new != tier
        tier = new
    assert changes <= 1


def test_thresholds_must_increase() -> None:
    with pytest.raises(ValueError, match="must increase"):
        TierThresholds(margin_call=0.9, reduce_only=0.85)
