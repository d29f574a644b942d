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


# --- C1.1: sums ----------------------------------------------------------------------------
from dmlib.gaussians import (gaussian_product, gaussian_product_diag, gaussian_sum,  # noqa: E402
                             normal_kl_diag, normal_kl_isotropic, normal_kl_monte_carlo)


@pytest.mark.parametrize("m1,v1,m2,v2", [(0.0, 1.0, 0.0, 1.0), (1.5, 0.3, -2.0, 2.5)])
def test_gaussian_sum_density_is_the_convolution(m1, v1, m2, v2):
    # p_{x+y}(z) = int p_x(u) p_y(z - u) du for independent x, y (scipy quad).
    mean, var = gaussian_sum(torch.tensor(m1, dtype=D), v1, m2, v2)
    for z in [-3.0, -0.5, 0.0, 1.0, 2.7]:
        conv, _ = integrate.quad(lambda u: stats.norm.pdf(u, m1, math.sqrt(v1))
                                 * stats.norm.pdf(z - u, m2, math.sqrt(v2)), -40, 40,
                                 points=[m1, z - m2], limit=200)
        assert stats.norm.pdf(z, float(mean), math.sqrt(float(var))) == pytest.approx(conv, abs=1e-10)


def test_gaussian_sum_with_covariance_matches_monte_carlo():
    # Correlated pair by Cholesky; tolerance 5 standard errors of the sample mean / variance.
    g = torch.Generator().manual_seed(0)
    n, v1, v2, rho = 200_000, 0.5, 2.0, -0.6
    cov = rho * math.sqrt(v1 * v2)
    L = torch.linalg.cholesky(torch.tensor([[v1, cov], [cov, v2]], dtype=D))
    xy = torch.randn(n, 2, generator=g, dtype=D) @ L.T + torch.tensor([1.0, -3.0], dtype=D)
    s = xy.sum(1)
    mean, var = gaussian_sum(1.0, v1, -3.0, v2, cov=cov)
    assert abs(float(s.mean()) - float(mean)) < 5 * math.sqrt(float(var) / n)
    assert abs(float(s.var()) - float(var)) < 5 * float(var) * math.sqrt(2 / (n - 1))
    # Ignoring the covariance is far off: var1 + var2 = 2.5 vs 2.5 - 1.2 = 1.3.
    assert abs(float(s.var()) - (v1 + v2)) > 1.0


def test_gaussian_sum_perfect_anticorrelation_is_a_point_mass_and_bad_cov_is_rejected():
    mean, var = gaussian_sum(torch.tensor(2.0, dtype=D), 1.0, -2.0, 1.0, cov=-1.0)
    assert float(mean) == 0.0 and float(var) == 0.0
    with pytest.raises(ValueError, match=r"\|cov\| must be <= sqrt\(var1 \* var2\)"):
        gaussian_sum(0.0, 1.0, 0.0, 1.0, cov=1.5)
    with pytest.raises(ValueError, match="var2 must be > 0"):
        gaussian_sum(0.0, 1.0, 0.0, -1.0)
    with pytest.raises(ValueError, match="cov contains NaN"):
        gaussian_sum(0.0, 1.0, 0.0, 1.0, cov=float("nan"))


# --- C1.2: KL in d dimensions ---------------------------------------------------------------
def _kl_full_cov(m1, S1, m2, S2):
    """General multivariate KL with full covariances (numpy): independent reference."""
    d = len(m1)
    S2inv = np.linalg.inv(S2)
    diff = m2 - m1
    return 0.5 * (np.trace(S2inv @ S1) + diff @ S2inv @ diff - d
                  + np.linalg.slogdet(S2)[1] - np.linalg.slogdet(S1)[1])


def test_normal_kl_diag_matches_full_covariance_formula():
    g = torch.Generator().manual_seed(2)
    m1, m2 = torch.randn(3, 5, generator=g, dtype=D), torch.randn(3, 5, generator=g, dtype=D)
    v1 = torch.rand(3, 5, generator=g, dtype=D) + 0.1
    v2 = torch.rand(3, 5, generator=g, dtype=D) + 0.1
    got = normal_kl_diag(m1, v1, m2, v2)
    assert got.shape == (3,)
    for i in range(3):
        ref = _kl_full_cov(m1[i].numpy(), np.diag(v1[i].numpy()), m2[i].numpy(), np.diag(v2[i].numpy()))
        assert float(got[i]) == pytest.approx(ref, rel=1e-10)


def test_normal_kl_isotropic_matches_full_covariance_formula_and_monte_carlo():
    g = torch.Generator().manual_seed(3)
    d = 10
    m1, m2 = torch.randn(4, d, generator=g, dtype=D), torch.randn(d, generator=g, dtype=D)
    v1 = torch.tensor([0.2, 0.5, 1.0, 3.0], dtype=D)
    got = normal_kl_isotropic(m1, v1, m2, 0.7)
    assert got.shape == (4,)
    for i in range(4):
        ref = _kl_full_cov(m1[i].numpy(), float(v1[i]) * np.eye(d), m2.numpy(), 0.7 * np.eye(d))
        assert float(got[i]) == pytest.approx(ref, rel=1e-10)
    # Monte Carlo, 5 standard errors: E_p[log p(x) - log q(x)] with scipy's log-densities.
    rng = np.random.default_rng(0)
    x = m1[1].numpy() + math.sqrt(0.5) * rng.standard_normal((100_000, d))
    lr = (stats.multivariate_normal(m1[1].numpy(), 0.5).logpdf(x)
          - stats.multivariate_normal(m2.numpy(), 0.7).logpdf(x))
    assert abs(lr.mean() - float(got[1])) < 5 * lr.std() / math.sqrt(len(lr))


def test_normal_kl_isotropic_equal_variances_is_scaled_l2():
    m1 = torch.tensor([[1.0, 2.0, -1.0]], dtype=D)
    got = normal_kl_isotropic(m1, 0.25, torch.zeros(3, dtype=D), 0.25)
    assert float(got) == pytest.approx(6.0 / (2 * 0.25), rel=1e-12)


def test_normal_kl_multivariate_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d\)"):
        normal_kl_isotropic(torch.tensor(1.0), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d\)"):
        normal_kl_diag(torch.tensor(1.0), 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="use normal_kl_diag"):
        normal_kl_isotropic(torch.zeros(4, 3), torch.ones(4, 3), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match=r"var1 has shape \(4, 1\)"):  # would give (4, 4)
        normal_kl_isotropic(torch.zeros(4, 3), torch.ones(4, 1), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="do not broadcast"):
        normal_kl_isotropic(torch.zeros(4, 3), 1.0, torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="var2 must be > 0"):
        normal_kl_isotropic(torch.zeros(4, 3), 1.0, torch.zeros(3), 0.0)


@pytest.mark.parametrize("m1,v1,m2,v2", [(0.3, 0.5, -1.2, 2.0), (-1.0, 3.0, 0.5, 0.7)])
def test_normal_kl_monte_carlo_within_its_error_bar(m1, v1, m2, v2):
    eps = torch.randn(50_000, generator=torch.Generator().manual_seed(4), dtype=D)
    est, se = normal_kl_monte_carlo(m1, v1, m2, v2, eps)
    ref = _kl_quad(m1, v1, m2, v2)
    assert abs(float(est) - ref) < 5 * float(se)
    # The stated standard error is the spread of the log-ratio over sqrt(n): compare with
    # the spread of 200 independent estimates of 250 samples each.
    ests, _ = normal_kl_monte_carlo(m1, v1, m2, v2, eps.reshape(250, 200))
    _, se_small = normal_kl_monte_carlo(m1, v1, m2, v2, eps[:250])
    assert float(ests.std()) == pytest.approx(float(se_small), rel=0.25)


def test_normal_kl_monte_carlo_rejects_bad_eps():
    with pytest.raises(TypeError, match="eps must be a floating-point"):
        normal_kl_monte_carlo(0.0, 1.0, 0.0, 1.0, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="n >= 2"):
        normal_kl_monte_carlo(0.0, 1.0, 0.0, 1.0, torch.zeros(1))
    with pytest.raises(ValueError, match="var1 must be > 0"):
        normal_kl_monte_carlo(0.0, 0.0, 0.0, 1.0, torch.zeros(5))


# --- C1.4: products -------------------------------------------------------------------------
@pytest.mark.parametrize("m1,v1,m2,v2", [(0.0, 1.0, 0.0, 1.0), (1.0, 0.25, -2.0, 4.0),
                                         (3.0, 0.01, -1.0, 0.5)])
def test_gaussian_product_matches_numerical_integration(m1, v1, m2, v2):
    f = lambda x: stats.norm.pdf(x, m1, math.sqrt(v1)) * stats.norm.pdf(x, m2, math.sqrt(v2))  # noqa: E731
    pts = [m1, m2]
    Z, _ = integrate.quad(f, -50, 50, points=pts, limit=400, epsabs=1e-14)
    M1, _ = integrate.quad(lambda x: x * f(x), -50, 50, points=pts, limit=400, epsabs=1e-14)
    M2, _ = integrate.quad(lambda x: x * x * f(x), -50, 50, points=pts, limit=400, epsabs=1e-14)
    mean, var, log_scale = gaussian_product(torch.tensor(m1, dtype=D), v1, m2, v2)
    assert math.exp(float(log_scale)) == pytest.approx(Z, rel=1e-7)
    assert float(mean) == pytest.approx(M1 / Z, abs=1e-7)
    assert float(var) == pytest.approx(M2 / Z - (M1 / Z) ** 2, abs=1e-7)
    # Pointwise: p1(x) p2(x) = Z N(x; mean, var).
    xs = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(f(xs), Z * stats.norm.pdf(xs, float(mean), math.sqrt(float(var))),
                               rtol=1e-6, atol=1e-300)


def test_gaussian_product_diag_matches_2d_integration():
    m1, v1 = torch.tensor([0.5, -1.0], dtype=D), torch.tensor([0.8, 0.3], dtype=D)
    m2, v2 = torch.tensor([1.0, 0.5], dtype=D), torch.tensor([2.0, 0.6], dtype=D)
    mean, var, log_scale = gaussian_product_diag(m1, v1, m2, v2)
    assert mean.shape == var.shape == (2,) and log_scale.shape == ()
    p = stats.multivariate_normal(m1.numpy(), np.diag(v1.numpy()))
    q = stats.multivariate_normal(m2.numpy(), np.diag(v2.numpy()))
    Z, _ = integrate.dblquad(lambda y, x: p.pdf([x, y]) * q.pdf([x, y]), -8, 8, -8, 8,
                             epsabs=1e-12)
    assert math.exp(float(log_scale)) == pytest.approx(Z, rel=1e-6)
    x = np.array([0.3, -0.2])
    ref = stats.multivariate_normal(mean.numpy(), np.diag(var.numpy())).pdf(x) * Z
    assert p.pdf(x) * q.pdf(x) == pytest.approx(ref, rel=1e-6)


def test_gaussian_product_broadcasts_and_rejects_bad_input():
    mean, var, log_scale = gaussian_product_diag(torch.zeros(4, 3, dtype=D), 1.0,
                                                 torch.ones(3, dtype=D), 2.0)
    assert mean.shape == var.shape == (4, 3) and log_scale.shape == (4,)
    assert torch.allclose(var, torch.full((4, 3), 2 / 3, dtype=D))
    with pytest.raises(ValueError, match="var1 must be > 0"):
        gaussian_product(0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d\)"):
        gaussian_product_diag(torch.tensor(0.0), 1.0, 0.0, 1.0)
    with pytest.raises(TypeError, match="mean2 must be a torch.Tensor or a float"):
        gaussian_product(0.0, 1.0, [0.0], 1.0)
