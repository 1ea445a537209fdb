"""The same risk/ functions on CuPy arrays give the NumPy results.

Runs where CuPy and a GPU are present (the device machine); skipped elsewhere,
where the NumPy path of the same code is what every other test exercises.
"""

from __future__ import annotations

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    HAS_GPU = cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # no driver: CuPy imports but cannot reach a device
    HAS_GPU = False
pytestmark = pytest.mark.skipif(not HAS_GPU, reason="no CUDA device")

from risk import pricing  # noqa: E402
from risk.implied_vol import implied_vol  # noqa: E402
from risk.instruments import pricing_inputs  # noqa: E402
from risk.valuation import underlying_risk_arrays  # noqa: E402


def _options(n: int = 5000):
    rng = np.random.default_rng(2)
    return (rng.random(n) < 0.5, rng.uniform(50, 150, n), rng.uniform(40, 160, n), rng.uniform(-0.01, 0.06, n),
            rng.uniform(0, 0.04, n), rng.uniform(1 / 365, 3, n), rng.uniform(0.05, 1.5, n), rng.random(n) < 0.3)


def test_greeks_on_cupy_equal_numpy() -> None:
    args = _options()
    want = pricing.greeks(*args)
    got = pricing.greeks(*(cupy.asarray(a) for a in args))
    for g, w in zip(got, want):
        assert isinstance(g, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(g), w, rtol=1e-9, atol=1e-12)


def test_implied_vol_on_cupy_round_trips() -> None:
    call, s, k, r, q, t, vol, b76 = _options()
    prices = pricing.price(call, s, k, r, q, t, vol, b76)
    got = implied_vol(cupy.asarray(prices), cupy.asarray(call), cupy.asarray(s), cupy.asarray(k), cupy.asarray(r),
                      cupy.asarray(q), cupy.asarray(t), cupy.asarray(b76))
    want = implied_vol(prices, call, s, k, r, q, t, b76)
    np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-8, equal_nan=True)


def test_risk_arrays_on_cupy_equal_numpy(book_parts) -> None:
    table, market, params = book_parts
    inputs = pricing_inputs(table, market)
    for u, spec in enumerate(table.underlying_specs):
        grid = params.grids[spec.grid]
        want = underlying_risk_arrays(table, inputs, u, grid).arrays
        got = underlying_risk_arrays(table, inputs, u, grid, xp=cupy).arrays
        assert isinstance(got, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-9, atol=1e-6)
