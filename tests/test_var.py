"""Tests for risk.var and risk.covariance: parametric VaR, EWMA, PSD repair, historical VaR/ES, stress helpers."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from risk.covariance import (
    DEFAULT_EWMA_LAMBDA,
    EwmaCovariance,
    PsdRepair,
    conditional_moves,
    ewma_update,
    repair_psd,
    scale_correlations,
)
from risk.var import DeltaGammaVarResult, VarResult, delta_gamma_var, delta_normal_var, var_es_from_pnl

Z99 = 2.3263478740408408  # N^-1(0.99)


def cov2(vol1: float, vol2: float, rho: float) -> np.ndarray:
    return np.array([[vol1 * vol1, rho * vol1 * vol2], [rho * vol1 * vol2, vol2 * vol2]])


# --------------------------------------------------------------------------- strategies

N_FACTORS = st.integers(min_value=1, max_value=5)
FINITE = dict(allow_nan=False, allow_infinity=False)


@st.composite
def covariances(draw, n: int | None = None):
    """A PSD covariance of daily-ish relative returns: A A' plus a small ridge."""
    n = draw(N_FACTORS) if n is None else n
    a = draw(arrays(np.float64, (n, n), elements=st.floats(-0.03, 0.03, **FINITE)))
    return a @ a.T + 1e-6 * np.eye(n)


def deltas(n: int):
    return arrays(np.float64, (n,), elements=st.floats(-1e7, 1e7, **FINITE))


@st.composite
def cov_and_deltas(draw, how_many: int = 1):
    cov = draw(covariances())
    n = cov.shape[0]
    return (cov, *[draw(deltas(n)) for _ in range(how_many)])


# --------------------------------------------------------------------------- delta-normal


def test_delta_normal_two_assets_by_hand():
    # Daily vols 2 % and 1.5 %, correlation 0.4.
    # Long 1,000,000 of dollar delta on asset 1, short 500,000 on asset 2.
    # sigma_1 d_1 = 0.02 * 1e6 = 20,000 ; sigma_2 d_2 = 0.015 * -5e5 = -7,500
    # variance = 20,000^2 + 7,500^2 + 2 * 0.4 * 20,000 * (-7,500)
    #          = 400,000,000 + 56,250,000 - 120,000,000 = 336,250,000
    # stdev = sqrt(336,250,000) = 18,337.1208...
    # VaR99 = 2.3263478740 * 18,337.1208 = 42,658.5...
    cov = cov2(0.02, 0.015, 0.4)
    result = delta_normal_var(np.array([1_000_000.0, -500_000.0]), cov, 0.99)
    assert isinstance(result, VarResult)
    assert result.var == pytest.approx(Z99 * math.sqrt(336_250_000.0), rel=1e-12)
    assert result.var == pytest.approx(42_658.6, abs=0.1)
    assert result.psd_repaired is False
    assert result.n_clipped == 0
    assert result.min_eigenvalue == pytest.approx(0.6)  # correlation eigenvalues 1 +- 0.4


def test_delta_normal_weights_form():
    # d = w * V: 60 % / 40 % of a 10,000,000 book.
    cov = cov2(0.02, 0.015, 0.4)
    w, value = np.array([0.6, 0.4]), 10_000_000.0
    sigma_p = math.sqrt(w @ cov @ w)
    assert delta_normal_var(w * value, cov, 0.99).var == pytest.approx(Z99 * sigma_p * value, rel=1e-12)


def test_delta_normal_rejects_bad_inputs():
    cov = cov2(0.02, 0.015, 0.4)
    with pytest.raises(ValueError, match="confidence"):
        delta_normal_var([1.0, 1.0], cov, 99)
    with pytest.raises(ValueError, match="shape"):
        delta_normal_var([1.0, 1.0, 1.0], cov, 0.99)
    with pytest.raises(ValueError, match="NaN"):
        delta_normal_var([1.0, float("nan")], cov, 0.99)


def test_delta_normal_repairs_a_non_psd_cov_and_reports_it():
    # Correlations 0.9, 0.9, -0.9 cannot all hold at once.
    corr = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    vols = np.array([0.01, 0.02, 0.03])
    cov = corr * np.outer(vols, vols)
    d = np.array([1e6, 1e6, 1e6])
    result = delta_normal_var(d, cov, 0.99)
    repair = repair_psd(cov)
    assert result.psd_repaired is True and result.n_clipped == 1
    assert result.min_eigenvalue == pytest.approx(repair.min_eigenvalue_before)
    assert result.min_eigenvalue < 0
    expected = Z99 * math.sqrt(d @ repair.matrix @ d)
    assert result.var == pytest.approx(expected, rel=1e-12)
    # A PsdRepair passed in is used as is and its flags are carried over.
    again = delta_normal_var(d, repair, 0.99)
    assert again == result


@settings(max_examples=60, deadline=None)
@given(cov_and_deltas(), st.floats(0.001, 1000.0))
def test_delta_normal_positive_homogeneity(data, k):
    cov, d = data
    base = delta_normal_var(d, cov, 0.99).var
    assert delta_normal_var(k * d, cov, 0.99).var == pytest.approx(k * base, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(cov_and_deltas(how_many=2))
def test_delta_normal_subadditive(data):
    cov, d1, d2 = data
    joint = delta_normal_var(d1 + d2, cov, 0.99).var
    separate = delta_normal_var(d1, cov, 0.99).var + delta_normal_var(d2, cov, 0.99).var
    assert joint <= separate * (1 + 1e-9) + 1e-9


@settings(max_examples=60, deadline=None)
@given(cov_and_deltas(), st.floats(0.5, 0.9999))
def test_var_is_non_negative(data, confidence):
    cov, d = data
    assert delta_normal_var(d, cov, confidence).var >= 0.0
    gamma = -np.abs(d) * 50.0
    assert delta_gamma_var(d, gamma, cov, confidence).var >= 0.0


# --------------------------------------------------------------------------- delta-gamma


@settings(max_examples=60, deadline=None)
@given(cov_and_deltas(), st.floats(0.5, 0.9999), st.booleans())
def test_delta_gamma_with_zero_gamma_is_delta_normal(data, confidence, as_matrix):
    cov, d = data
    n = d.shape[0]
    gamma = np.zeros((n, n)) if as_matrix else np.zeros(n)
    dg = delta_gamma_var(d, gamma, cov, confidence)
    dn = delta_normal_var(d, cov, confidence)
    assert isinstance(dg, DeltaGammaVarResult)
    assert dg.var == pytest.approx(dn.var, rel=1e-12, abs=1e-9)
    assert dg.skewness == 0.0 and dg.excess_kurtosis == 0.0 and dg.mean == 0.0
    assert dg.cf_monotone is True


def _mc_pnl(d, gamma_diag, cov, n_samples, seed):
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((n_samples, len(d))) @ np.linalg.cholesky(cov).T
    return r @ d + 0.5 * np.einsum("ij,j,ij->i", r, gamma_diag, r)


@pytest.mark.parametrize("gamma", [[5e6, -2e6], [-5e6, 2e6], [-1e7, 3e6]])
def test_delta_gamma_against_monte_carlo(gamma):
    cov = cov2(0.02, 0.015, 0.3)
    d = np.array([1e6, -5e5])
    gamma = np.array(gamma)
    result = delta_gamma_var(d, gamma, cov, 0.99)
    pnl = _mc_pnl(d, gamma, cov, 400_000, seed=20240101)
    mc_var = -np.quantile(pnl, 0.01)
    # Moments are exact formulas: check them tightly against the sample's.
    assert result.mean == pytest.approx(pnl.mean(), abs=4 * pnl.std() / math.sqrt(len(pnl)))
    assert result.stdev == pytest.approx(pnl.std(), rel=0.01)
    centred = (pnl - pnl.mean()) / pnl.std()
    assert result.skewness == pytest.approx(np.mean(centred**3), abs=0.03)
    # The Cornish-Fisher quantile: loose, it is an approximation.
    assert result.var == pytest.approx(mc_var, rel=0.02)
    # ... and it moved from delta-normal in the right direction.
    dn = delta_normal_var(d, cov, 0.99).var
    assert abs(result.var - mc_var) < abs(dn - mc_var)
    assert result.cf_monotone is True


def test_delta_gamma_full_matrix_equals_diagonal_vector():
    cov = cov2(0.02, 0.015, 0.3)
    d = np.array([1e6, -5e5])
    a = delta_gamma_var(d, np.array([5e6, -2e6]), cov, 0.99)
    b = delta_gamma_var(d, np.diag([5e6, -2e6]), cov, 0.99)
    assert a.var == pytest.approx(b.var, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=8), confidence=st.sampled_from([0.95, 0.99, 0.999]))
def test_delta_gamma_small_path_equals_the_matrix_path(data, n, confidence):
    # A diagonal G given as a vector takes the Python-float path (n <= SMALL_N); the
    # same G as a full matrix takes the NumPy matrix path: every field must agree.
    cov = data.draw(covariances(n))
    d = data.draw(deltas(n))
    g = data.draw(arrays(np.float64, (n,), elements=st.floats(-1e8, 1e8, **FINITE)))
    small = delta_gamma_var(d, g, cov, confidence)
    full = delta_gamma_var(d, np.diag(g), cov, confidence)
    scale = max(abs(full.var), abs(full.mean), full.stdev, 1e-300)
    assert abs(small.var - full.var) <= 1e-9 * scale
    assert abs(small.mean - full.mean) <= 1e-9 * scale and abs(small.stdev - full.stdev) <= 1e-9 * scale
    if full.stdev > 1e-6 * scale:  # skewness and kurtosis are ratios of the cumulants: only when defined
        assert small.skewness == pytest.approx(full.skewness, rel=1e-7, abs=1e-9)
        assert small.excess_kurtosis == pytest.approx(full.excess_kurtosis, rel=1e-7, abs=1e-9)


def test_delta_gamma_small_path_rejects_bad_inputs():
    cov = cov2(0.02, 0.015, 0.3)
    with pytest.raises(ValueError, match="dollar_delta"):
        delta_gamma_var([1.0, np.nan], [0.0, 0.0], cov, 0.99)
    with pytest.raises(ValueError, match="dollar_gamma"):
        delta_gamma_var([1.0, 2.0], [0.0, np.inf], cov, 0.99)
    with pytest.raises(ValueError, match="shape"):
        delta_gamma_var([1.0, 2.0, 3.0], [0.0, 0.0], cov, 0.99)


def test_delta_gamma_one_factor_cumulants_by_hand():
    # P&L = delta r + gamma r^2 / 2, r ~ N(0, s^2):
    # mean = gamma s^2 / 2, var = delta^2 s^2 + gamma^2 s^4 / 2,
    # k3 = 3 delta^2 gamma s^4 + gamma^3 s^6.
    s, delta, gamma = 0.02, 1e6, 2e7
    result = delta_gamma_var([delta], [gamma], [[s * s]], 0.99)
    assert result.mean == pytest.approx(gamma * s**2 / 2)
    var = delta**2 * s**2 + gamma**2 * s**4 / 2
    assert result.stdev == pytest.approx(math.sqrt(var))
    assert result.skewness == pytest.approx((3 * delta**2 * gamma * s**4 + gamma**3 * s**6) / var**1.5)


def test_delta_gamma_flags_cornish_fisher_breakdown():
    # Pure long gamma: P&L = gamma r^2 / 2 >= 0, a scaled chi-square with one degree
    # of freedom (skewness +2.83): the loss side has no tail at all and the
    # Cornish-Fisher map turns back before the 99 % point.
    result = delta_gamma_var([0.0], [1e8], [[0.0004]], 0.99)
    assert result.skewness == pytest.approx(math.sqrt(8), rel=1e-12)
    assert result.excess_kurtosis == pytest.approx(12.0, rel=1e-12)
    assert result.cf_monotone is False
    assert result.var == 0.0  # the truth here: the book cannot lose


def test_delta_gamma_short_gamma_limit_documented():
    # Pure short gamma: loss = 2e4 * chi2_1; exact 99.9 % VaR = 2e4 * 10.8276.
    # Cornish-Fisher stays monotone but overshoots by ~8 %: the documented limit.
    result = delta_gamma_var([0.0], [-1e8], [[0.0004]], 0.999)
    exact = 2e4 * 10.827566170662733
    assert result.cf_monotone is True
    assert result.var == pytest.approx(exact, rel=0.10)
    assert result.var != pytest.approx(exact, rel=0.02)


def test_delta_gamma_tiny_and_huge_books_do_not_underflow():
    cov = cov2(0.02, 0.015, 0.3)
    d, g = np.array([1e6, -5e5]), np.array([5e6, -2e6])
    base = delta_gamma_var(d, g, cov, 0.99)
    for k in (1e-150, 1e150):
        scaled = delta_gamma_var(k * d, k * g, cov, 0.99)
        assert scaled.var == pytest.approx(k * base.var, rel=1e-12)
        assert scaled.skewness == pytest.approx(base.skewness, rel=1e-12)


# --------------------------------------------------------------------------- EWMA


def test_ewma_update_equals_weighted_sum():
    lam = 0.94
    c0 = cov2(0.02, 0.01, 0.2)
    rs = [np.array([0.01, -0.02]), np.array([-0.03, 0.005]), np.array([0.002, 0.01])]
    c = c0
    for r in rs:
        c = ewma_update(c, r, lam)
    explicit = lam**3 * c0 + (1 - lam) * (
        lam**2 * np.outer(rs[0], rs[0]) + lam * np.outer(rs[1], rs[1]) + np.outer(rs[2], rs[2])
    )
    np.testing.assert_allclose(c, explicit, rtol=1e-13, atol=0)

    state = EwmaCovariance(c0, lam)
    for r in rs:
        state.update(r)
    np.testing.assert_allclose(state.cov, explicit, rtol=1e-13)
    batch = EwmaCovariance(c0, lam)
    batch.update_many(np.array(rs))
    np.testing.assert_allclose(batch.cov, explicit, rtol=1e-12)
    assert state.n_updates == batch.n_updates == 3


def test_ewma_from_returns_seeds_then_updates():
    rng = np.random.default_rng(3)
    r = rng.normal(0, 0.01, size=(40, 3))
    state = EwmaCovariance.from_returns(r, n_seed=20)
    assert state.lam == DEFAULT_EWMA_LAMBDA == 0.94
    expected = r[:20].T @ r[:20] / 20
    for row in r[20:]:
        expected = ewma_update(expected, row, 0.94)
    np.testing.assert_allclose(state.cov, expected, rtol=1e-12)
    assert state.n_updates == 20


@pytest.mark.parametrize("lam", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_ewma_lambda_validated(lam):
    with pytest.raises(ValueError, match="lambda"):
        EwmaCovariance(np.eye(2), lam)
    with pytest.raises(ValueError, match="lambda"):
        ewma_update(np.eye(2), np.zeros(2), lam)


def test_ewma_rejects_nan_returns():
    with pytest.raises(ValueError, match="NaN"):
        ewma_update(np.eye(2), [0.01, float("nan")], 0.94)


# --------------------------------------------------------------------------- PSD repair


def test_repair_psd_fixes_a_non_psd_matrix():
    corr = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    vols = np.array([0.01, 0.02, 0.03])
    cov = corr * np.outer(vols, vols)
    assert np.linalg.eigvalsh(cov).min() < 0
    result = repair_psd(cov)
    assert isinstance(result, PsdRepair)
    assert result.repaired is True
    assert result.n_clipped == 1
    assert result.min_eigenvalue_before == pytest.approx(np.linalg.eigvalsh(corr).min())
    assert np.linalg.eigvalsh(result.matrix).min() >= -1e-12
    np.testing.assert_array_equal(np.diag(result.matrix), np.diag(cov))
    np.testing.assert_array_equal(result.matrix, result.matrix.T)
    # Idempotent: the repaired matrix is PSD, so a second pass leaves it alone.
    assert repair_psd(result.matrix).repaired is False


def test_repair_psd_floor():
    corr = np.array([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]])
    result = repair_psd(corr, min_eigenvalue=0.05)
    assert result.repaired is True
    assert np.linalg.eigvalsh(result.matrix).min() > 0.02  # approximately the floor
    np.testing.assert_array_equal(np.diag(result.matrix), 1.0)


@settings(max_examples=60, deadline=None)
@given(covariances())
def test_repair_psd_leaves_psd_matrix_unchanged(cov):
    result = repair_psd(cov)
    assert result.repaired is False
    assert result.n_clipped == 0
    np.testing.assert_array_equal(result.matrix, cov)


def test_repair_psd_singular_psd_and_zero_variance_not_flagged():
    # Perfect correlation (singular) and a dead factor are valid covariances.
    cov = np.array([[0.0004, 0.0002, 0.0], [0.0002, 0.0001, 0.0], [0.0, 0.0, 0.0]])
    result = repair_psd(cov)
    assert result.repaired is False
    np.testing.assert_array_equal(result.matrix, cov)


def test_repair_psd_rejects_negative_variance():
    with pytest.raises(ValueError, match="negative variance"):
        repair_psd(np.array([[-1.0, 0.0], [0.0, 1.0]]))


def test_results_are_frozen_structs():
    result = delta_normal_var([1.0], [[0.01]], 0.99)
    assert isinstance(result, msgspec.Struct)
    with pytest.raises(AttributeError):
        result.var = 0.0  # type: ignore[misc]


# --------------------------------------------------------------------------- historical VaR / ES


def test_var_es_by_hand():
    pnl = np.array([12.0, -10.0, 4.0, -3.0, 0.0, 2.0, -5.0, 6.0, 8.0, 10.0])
    # Losses sorted worst first: 10, 5, 3, 0, -2, ...
    # confidence 0.8: k = ceil(0.2 * 10) = 2 -> VaR = 5, ES = (10 + 5) / 2 = 7.5
    assert var_es_from_pnl(pnl, 0.8) == (5.0, 7.5)
    # confidence 0.9: k = 1 -> VaR = ES = 10 (the worst loss)
    assert var_es_from_pnl(pnl, 0.9) == (10.0, 10.0)
    # confidence 0.75: k = ceil(2.5) = 3 -> VaR = 3, ES = (10 + 5 + 3) / 3 = 6
    assert var_es_from_pnl(pnl, 0.75) == (3.0, 6.0)
    # confidence 0.5: k = 5 -> 5th worst is a 2.0 gain -> VaR 0; ES = (10+5+3+0-2)/5 = 3.2
    var, es = var_es_from_pnl(pnl, 0.5)
    assert var == 0.0 and es == pytest.approx(3.2)


def test_var_es_quantile_index_not_fooled_by_float():
    # (1 - 0.99) * 100 = 1.0000000000000009 in floats: k must still be 1.
    pnl = -np.arange(100.0)  # losses 0..99
    assert var_es_from_pnl(pnl, 0.99) == (99.0, 99.0)


def test_var_es_no_loss_is_zero():
    assert var_es_from_pnl(np.array([1.0, 2.0, 3.0]), 0.99) == (0.0, 0.0)


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e6, 1e6, **FINITE)),
    st.floats(0.5, 0.999),
)
def test_es_at_least_var(pnl, confidence):
    var, es = var_es_from_pnl(pnl, confidence)
    assert var >= 0.0
    assert es >= var - 1e-9 * max(1.0, abs(var))


# --------------------------------------------------------------------------- stress helpers


@settings(max_examples=40, deadline=None)
@given(covariances())
def test_scale_correlations_by_one_is_identity(cov):
    result = scale_correlations(cov, 1.0)
    assert result.repaired is False
    np.testing.assert_allclose(result.matrix, cov, rtol=1e-15, atol=0)


def _cov3(vols, c01, c02, c12):
    corr = np.array([[1.0, c01, c02], [c01, 1.0, c12], [c02, c12, 1.0]])
    return corr * np.outer(vols, vols)


def _corr(cov):
    vols = np.sqrt(np.diag(cov))
    return cov / np.outer(vols, vols)


def test_scale_correlations_plus_50_percent():
    vols = np.array([0.02, 0.01, 0.03])
    cov = _cov3(vols, 0.4, 0.2, 0.3)
    result = scale_correlations(cov, 1.5)  # 0.6, 0.3, 0.45: still PSD
    assert result.repaired is False
    np.testing.assert_array_equal(np.diag(result.matrix), np.diag(cov))
    corr = _corr(result.matrix)
    assert corr[0, 1] == pytest.approx(0.6)
    assert corr[0, 2] == pytest.approx(0.3)
    assert corr[1, 2] == pytest.approx(0.45)


def test_scale_correlations_clips_at_one_and_repairs():
    vols = np.array([0.02, 0.01, 0.03])
    cov = _cov3(vols, 0.8, 0.2, 0.3)
    # 0.8 * 1.5 = 1.2 -> clipped to 1; then 0.3 and 0.45 to the third factor are
    # inconsistent with assets 0 and 1 moving as one: not PSD, repaired.
    result = scale_correlations(cov, 1.5)
    assert result.repaired is True
    np.testing.assert_array_equal(np.diag(result.matrix), np.diag(cov))
    assert np.linalg.eigvalsh(result.matrix).min() >= -1e-12
    corr = _corr(result.matrix)
    assert np.all(np.abs(corr) <= 1 + 1e-12)
    assert corr[0, 1] > 0.95


def test_scale_correlations_zero_factor_uncorrelates():
    cov = _cov3(np.array([0.02, 0.01, 0.03]), 0.8, 0.2, 0.3)
    np.testing.assert_array_equal(scale_correlations(cov, 0.0).matrix, np.diag(np.diag(cov)))
    with pytest.raises(ValueError, match="factor"):
        scale_correlations(cov, -1.0)


def test_conditional_moves_two_assets_by_hand():
    # vols 2 % and 1 %, correlation 0.5; asset 0 falls 10 %.
    # E[r1 | r0] = rho * s1 / s0 * r0 = 0.5 * 0.01 / 0.02 * (-0.10) = -0.025
    cov = cov2(0.02, 0.01, 0.5)
    moves = conditional_moves(cov, [0], [-0.10])
    np.testing.assert_allclose(moves, [-0.10, -0.025], rtol=1e-12)
    # Shocking asset 1 instead: rho * s0 / s1 * r1 = 0.5 * 2 * 0.04 = 0.04
    np.testing.assert_allclose(conditional_moves(cov, [1], [0.04]), [0.04, 0.04], rtol=1e-12)
    # Several scenarios at once.
    many = conditional_moves(cov, [0], [[-0.10], [0.02]])
    np.testing.assert_allclose(many, [[-0.10, -0.025], [0.02, 0.005]], rtol=1e-12)


def test_conditional_moves_singular_shocked_block():
    # Assets 0 and 1 perfectly correlated (singular C_ss); asset 2 at 0.5 with both.
    vols = np.array([0.02, 0.02, 0.01])
    corr = np.array([[1.0, 1.0, 0.5], [1.0, 1.0, 0.5], [0.5, 0.5, 1.0]])
    cov = corr * np.outer(vols, vols)
    moves = conditional_moves(cov, [0, 1], [-0.10, -0.10])
    np.testing.assert_allclose(moves, [-0.10, -0.10, -0.025], rtol=1e-9)


def test_conditional_moves_validates_index():
    cov = cov2(0.02, 0.01, 0.5)
    with pytest.raises(ValueError, match="duplicates"):
        conditional_moves(cov, [0, 0], [0.1, 0.1])
    with pytest.raises(ValueError, match="in \\[0, 2\\)"):
        conditional_moves(cov, [2], [0.1])


@settings(max_examples=200, deadline=None)
@given(pnl=st.lists(st.floats(-1e7, 1e7, allow_nan=False), min_size=1, max_size=400),
       confidence=st.sampled_from([0.9, 0.95, 0.975, 0.99, 0.995]))
def test_numpy_fast_path_equals_the_dispatched_path(pnl, confidence) -> None:
    """A float64 vector takes a shortcut past the array-module dispatch: bit-identical
    to the generic path (a list input goes through it)."""
    assert var_es_from_pnl(np.asarray(pnl, dtype=np.float64), confidence) == var_es_from_pnl(pnl, confidence)
