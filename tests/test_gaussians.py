"""Tests for dmlib.gaussians against scipy, numerical integration and mpmath."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from dmlib.gaussians import (discretized_gaussian_log_likelihood, gaussian_log_prob,
                             normal_kl)

D = torch.float64


def _kl_quad(m1, v1, m2, v2):
    """KL by numerical integration of p log(p/q) (independent of any closed form)."""
    p = stats.norm(m1, math.sqrt(v1))
    q = stats.norm(m2, math.sqrt(v2))
    lo, hi = m1 - 30 * math.sqrt(v1), m1 + 30 * math.sqrt(v1)
    val, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), lo, hi,
                            limit=200, points=[m1])
    return val


@pytest.mark.parametrize("m1,v1,m2,v2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -1.2, 2.0),
                                         (2.0, 0.01, 1.9, 0.04), (-1.0, 3.0, 0.5, 0.7)])
def test_normal_kl_matches_numerical_integration(m1, v1, m2, v2):
    got = normal_kl(torch.tensor(m1, dtype=D), torch.tensor(v1, dtype=D),
                    torch.tensor(m2, dtype=D), torch.tensor(v2, dtype=D))
    assert float(got) == pytest.approx(_kl_quad(m1, v1, m2, v2), abs=1e-8)


def test_normal_kl_equal_variances_erratum():
    # C1.3: with equal variances KL = (mu_x - mu_y)^2 / (2 s^2), not the slide's
    # (mu_x - mu_y)^2 / 2 - 1/2.
    m1, m2, v = 0.7, -0.4, 0.25
    got = float(normal_kl(torch.tensor(m1, dtype=D), v, m2, v))
    assert got == pytest.approx((m1 - m2) ** 2 / (2 * v), rel=1e-12)
    assert got == pytest.approx(_kl_quad(m1, v, m2, v), abs=1e-8)
    slide = (m1 - m2) ** 2 / 2 - 0.5
    assert abs(got - slide) > 0.5


def test_normal_kl_broadcasts_and_is_zero_for_equal_gaussians():
    g = torch.Generator().manual_seed(0)
    mean1 = torch.randn(4, 3, generator=g, dtype=D)
    var1 = torch.rand(4, 3, generator=g, dtype=D) + 0.1
    got = normal_kl(mean1, var1, torch.zeros(3, dtype=D), torch.ones(1, dtype=D))
    assert got.shape == (4, 3)
    # Reference: scipy-based numerical KL per element.
    ref = np.array([[_kl_quad(float(mean1[i, j]), float(var1[i, j]), 0.0, 1.0)
                     for j in range(3)] for i in range(4)])
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-8)
    assert torch.allclose(normal_kl(mean1, var1, mean1, var1), torch.zeros_like(mean1),
                          atol=1e-15)
    assert (got >= 0).all()


@pytest.mark.parametrize("which", ["var1", "var2"])
@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_normal_kl_rejects_non_positive_variance(which, bad):
    args = dict(mean1=torch.zeros(3, dtype=D), var1=torch.ones(3, dtype=D),
                mean2=torch.zeros(3, dtype=D), var2=torch.ones(3, dtype=D))
    args[which] = torch.tensor([1.0, bad, 1.0], dtype=D)
    with pytest.raises(ValueError, match=f"{which} must be > 0"):
        normal_kl(**args)


def test_normal_kl_rejects_nan_and_bad_types():
    with pytest.raises(ValueError, match="var1 contains NaN"):
        normal_kl(0.0, torch.tensor([float("nan")]), 0.0, 1.0)
    with pytest.raises(TypeError, match="mean2 must be a torch.Tensor or a float"):
        normal_kl(torch.zeros(1), torch.ones(1), "0", torch.ones(1))


def test_gaussian_log_prob_matches_scipy():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, generator=g, dtype=D) * 2
    mean = torch.randn(4, generator=g, dtype=D)
    var = torch.rand(5, 1, generator=g, dtype=D) + 0.05
    got = gaussian_log_prob(x, mean, var)
    ref = stats.norm.logpdf(x.numpy(), loc=mean.numpy(), scale=np.sqrt(var.numpy()))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_gaussian_log_prob_rejects_non_positive_variance():
    with pytest.raises(ValueError, match="var must be > 0"):
        gaussian_log_prob(torch.zeros(2, dtype=D), 0.0, torch.tensor([1.0, 0.0], dtype=D))


# --- discretised decoder -------------------------------------------------------------------
GRID = torch.linspace(-1, 1, 256, dtype=D)  # the 256 pixel values scaled to [-1, 1]


def _discrete_ref(x, mean, std):
    """Bin probabilities from scipy's CDF, bins [x - 1/255, x + 1/255], edges open."""
    lo = -np.inf if x < -0.999 else x - 1 / 255
    hi = np.inf if x > 0.999 else x + 1 / 255
    return stats.norm.cdf(hi, mean, std) - stats.norm.cdf(lo, mean, std)


@pytest.mark.parametrize("mean,var", [(0.0, 0.1), (0.9, 1e-3), (-0.999, 1e-4), (0.3, 4.0)])
def test_discretized_bins_sum_to_one_and_match_scipy(mean, var):
    lp = discretized_gaussian_log_likelihood(GRID, torch.tensor(mean, dtype=D),
                                             torch.tensor(math.log(var), dtype=D))
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    ref = np.array([_discrete_ref(float(x), mean, math.sqrt(var)) for x in GRID])
    big = ref > 1e-300
    np.testing.assert_allclose(lp.exp().numpy()[big], ref[big], rtol=1e-7, atol=1e-14)


def test_discretized_is_density_times_bin_width_for_wide_gaussians():
    # For std >> bin width, P(bin) ~ N(x; mean, var) * 2/255.
    x = GRID[1:-1]
    lp = discretized_gaussian_log_likelihood(x, torch.tensor(0.1, dtype=D),
                                             torch.tensor(math.log(0.5), dtype=D))
    ref = stats.norm.logpdf(x.numpy(), 0.1, math.sqrt(0.5)) + math.log(2 / 255)
    np.testing.assert_allclose(lp.numpy(), ref, atol=1e-4)


def test_discretized_is_accurate_far_in_the_tails():
    mpmath = pytest.importorskip("mpmath")
    std = 0.02
    cases = [(0.5, -0.5), (-0.5, 0.5), (1.0, 0.0), (-1.0, 0.0), (0.7, 0.69)]
    for x, mean in cases:
        got = float(discretized_gaussian_log_likelihood(
            torch.tensor([x], dtype=D), torch.tensor(mean, dtype=D),
            torch.tensor(2 * math.log(std), dtype=D)))
        cdf = lambda z: mpmath.ncdf((mpmath.mpf(z) - mean) / std)  # noqa: E731
        with mpmath.workdps(1500):  # enough digits that 1 - Phi(z) does not cancel to 0
            if x > 0.999:
                p = 1 - cdf(x - 1 / 255)
            elif x < -0.999:
                p = cdf(x + 1 / 255)
            else:
                p = cdf(x + 1 / 255) - cdf(x - 1 / 255)
            ref = float(mpmath.log(p))
        assert math.isfinite(got)
        assert got == pytest.approx(ref, rel=1e-9), (x, mean)


def test_discretized_rejects_data_outside_unit_interval_and_bad_log_var():
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\]"):
        discretized_gaussian_log_likelihood(torch.tensor([0.0, 255.0], dtype=D), 0.0, 0.0)
    with pytest.raises(ValueError, match="log_var contains NaN or inf"):
        discretized_gaussian_log_likelihood(torch.zeros(2, dtype=D), 0.0,
                                            torch.tensor(float("-inf"), dtype=D))
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        discretized_gaussian_log_likelihood(np.zeros(2), 0.0, 0.0)
