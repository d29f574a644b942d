"""Tests for dmlib.data.mixture against scipy.stats, closed forms and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from dmlib.data.mixture import GaussianMixture, default_gmm2d, ring_gmm

W = np.array([0.2, 0.5, 0.3])
MU = np.array([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5], [-1.5, 0.0, 3.0]])
VAR = np.array([[0.5, 1.0, 0.2], [0.3, 0.3, 2.0], [1.5, 0.7, 0.4]])


def scipy_logpdf(x, w, mu, var):
    """Reference: log sum_k w_k N(x; mu_k, diag var_k) with scipy, component by component."""
    comps = [math.log(w[k]) + stats.multivariate_normal(mu[k], np.diag(var[k])).logpdf(x)
             for k in range(len(w))]
    return logsumexp(np.stack(comps, axis=-1), axis=-1)


@pytest.fixture
def gmm3():
    return GaussianMixture(torch.tensor(W), torch.tensor(MU), torch.tensor(VAR))


def test_log_prob_matches_scipy(gmm3):
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    lp = gmm3.log_prob(x)
    assert lp.shape == (200,) and lp.dtype == torch.float64
    np.testing.assert_allclose(lp.numpy(), scipy_logpdf(x.numpy(), W, MU, VAR), rtol=1e-10, atol=1e-10)


def test_log_prob_isotropic_matches_scipy():
    var_iso = np.array([0.4, 2.0])
    mu = np.array([[1.0, 2.0], [-1.0, 0.0]])
    g = GaussianMixture([0.3, 0.7], mu.tolist(), var_iso.tolist())  # lists are accepted
    assert g.var.shape == (2, 2)
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0], [-3.0, 4.0]], dtype=torch.float64)
    ref = logsumexp(np.stack([math.log(w) + stats.multivariate_normal(m, v * np.eye(2)).logpdf(x.numpy())
                              for w, m, v in zip([0.3, 0.7], mu, var_iso)], -1), -1)
    np.testing.assert_allclose(g.log_prob(x).numpy(), ref, rtol=1e-12)


def test_log_prob_far_away_is_finite(gmm3):
    # Every component density underflows to 0 here; logsumexp keeps the log finite.
    x = torch.full((2, 3), 60.0, dtype=torch.float64)
    lp = gmm3.log_prob(x)
    assert torch.isfinite(lp).all()
    np.testing.assert_allclose(lp.numpy(), scipy_logpdf(x.numpy(), W, MU, VAR), rtol=1e-10)


def test_sample_moments_and_seed(gmm3):
    n = 200_000
    x = gmm3.sample(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64).numpy()
    # Independent closed form of the mixture moments, written with numpy.
    mean = (W[:, None] * MU).sum(0)
    cov = sum(W[k] * (np.diag(VAR[k]) + np.outer(MU[k] - mean, MU[k] - mean)) for k in range(3))
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.03)
    np.testing.assert_allclose(gmm3.mean().numpy(), mean, rtol=1e-12)
    np.testing.assert_allclose(gmm3.covariance().numpy(), cov, rtol=1e-12, atol=1e-12)
    # Reproducible from a seed, float32 by default.
    a, b = gmm3.sample(10, 7), gmm3.sample(10, 7)
    assert a.dtype == torch.float32 and a.shape == (10, 3) and torch.equal(a, b)
    assert not torch.equal(a, gmm3.sample(10, 8))


def test_sample_component_frequencies():
    g = GaussianMixture([0.1, 0.9], [[-10.0], [10.0]], [1.0, 1.0])
    x = g.sample(20_000, 3, dtype=torch.float64)
    frac = float((x[:, 0] < 0).double().mean())
    assert abs(frac - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 20_000)


def test_entropy_single_gaussian_closed_form():
    var = np.array([0.3, 2.0])
    g = GaussianMixture([1.0], [[1.0, -2.0]], [var.tolist()])
    est, se = g.entropy(n_mc=50_000, seed=0)
    exact = 0.5 * np.sum(np.log(2 * np.pi * np.e * var))
    assert 0 < se < 0.02
    assert abs(est - exact) < 4 * se


def test_entropy_matches_grid_integration():
    # H = -int p log p by a Riemann sum with scipy densities on a fine grid (2-D).
    g = default_gmm2d()
    est, se = g.entropy(n_mc=50_000, seed=1)
    h = 0.01
    u = np.arange(-3.5, 3.5, h) + h / 2
    xx = np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    lp = scipy_logpdf(xx, g.weights.numpy(), g.means.numpy(), g.var.numpy())
    ref = -np.sum(np.exp(lp) * lp) * h * h
    assert abs(est - ref) < 4 * se


def test_responsibilities_and_score(gmm3):
    x = torch.tensor([[0.3, -0.2, 1.0], [2.0, -1.0, 0.0]], dtype=torch.float64)
    r = gmm3.responsibilities(x)
    dens = np.stack([W[k] * stats.multivariate_normal(MU[k], np.diag(VAR[k])).pdf(x.numpy())
                     for k in range(3)], -1)
    np.testing.assert_allclose(r.numpy(), dens / dens.sum(-1, keepdims=True), rtol=1e-10)
    # Score against central finite differences of scipy's log-density.
    eps = 1e-5
    fd = np.stack([(scipy_logpdf(x.numpy() + eps * e, W, MU, VAR)
                    - scipy_logpdf(x.numpy() - eps * e, W, MU, VAR)) / (2 * eps)
                   for e in np.eye(3)], -1)
    np.testing.assert_allclose(gmm3.score(x).numpy(), fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha_bar", [0.9, 0.3])
def test_noised_matches_forward_process_monte_carlo(alpha_bar):
    g = GaussianMixture([0.3, 0.7], [[-2.0, 1.0], [1.5, 0.0]], [[0.05, 0.2], [0.3, 0.1]])
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    x0 = g.sample(n, gen, dtype=torch.float64)
    xt = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    q = g.noised(alpha_bar)
    # The analytic 1-D marginal CDFs of q(x_t), written with scipy from the formula
    # N(sqrt(ab) mu, ab var + 1 - ab), must pass a KS test on the simulated x_t.
    w = np.array([0.3, 0.7])
    mu = np.array([[-2.0, 1.0], [1.5, 0.0]])
    var = np.array([[0.05, 0.2], [0.3, 0.1]])
    for i in range(2):
        m = math.sqrt(alpha_bar) * mu[:, i]
        s = np.sqrt(alpha_bar * var[:, i] + 1 - alpha_bar)
        cdf = lambda v: sum(w[k] * stats.norm.cdf(v, m[k], s[k]) for k in range(2))  # noqa: E731
        assert stats.kstest(xt[:, i].numpy(), cdf).pvalue > 0.01
    np.testing.assert_allclose(q.means.numpy(), math.sqrt(alpha_bar) * mu, rtol=1e-12)
    np.testing.assert_allclose(q.var.numpy(), alpha_bar * var + 1 - alpha_bar, rtol=1e-12)
    # And its log-density is the right one: the MC average of log q(x_t) is the
    # cross-entropy, which for the true q equals the entropy estimate from q itself.
    est, se = q.entropy(n_mc=40_000, seed=3)
    lp = q.log_prob(xt)
    assert abs(-float(lp.mean()) - est) < 4 * math.hypot(se, float(lp.std()) / math.sqrt(n))


def test_noised_endpoints():
    g = default_gmm2d()
    same = g.noised(1.0)
    assert torch.allclose(same.means, g.means) and torch.allclose(same.var, g.var)
    noise = g.noised(torch.tensor(0.0))
    assert torch.all(noise.means == 0) and torch.allclose(noise.var, torch.ones(9, 2, dtype=torch.float64))
    x = torch.randn(5, 2, dtype=torch.float64)
    ref = stats.multivariate_normal(np.zeros(2), np.eye(2)).logpdf(x.numpy())
    np.testing.assert_allclose(noise.log_prob(x).numpy(), ref, rtol=1e-12)


def test_default_gmm2d_is_unit_scale():
    g = default_gmm2d()
    assert g.n_components == 9 and g.dim == 2
    assert torch.allclose(g.var.sqrt(), torch.full((9, 2), 0.15, dtype=torch.float64))
    x = g.sample(100_000, 0, dtype=torch.float64)
    assert torch.all(x.mean(0).abs() < 0.02)
    assert torch.all((x.std(0) - 1).abs() < 0.02)
    # Nine well separated modes: every sample is close to one of the 3 x 3 grid points.
    d = torch.cdist(x[:1000], g.means).min(1).values
    assert float(d.max()) < 0.15 * 6


def test_ring_gmm():
    g = ring_gmm(8, std=0.1)
    r = g.means.norm(dim=1)
    assert torch.allclose(r, torch.full((8,), math.sqrt(2 * 0.99), dtype=torch.float64))
    x = g.sample(100_000, 1, dtype=torch.float64)
    assert torch.all((x.std(0) - 1).abs() < 0.02)
    with pytest.raises(ValueError, match="n_modes"):
        ring_gmm(2)
    with pytest.raises(ValueError, match="std"):
        ring_gmm(8, std=1.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weights=[0.5, 0.6], means=[[0.0], [1.0]], var=[1.0, 1.0]), "sum to 1"),
    (dict(weights=[1.5, -0.5], means=[[0.0], [1.0]], var=[1.0, 1.0]), "positive"),
    (dict(weights=[0.5, 0.5], means=[[0.0], [1.0]], var=[1.0, 0.0]), "var .*must be positive"),
    (dict(weights=[0.5, 0.5], means=[[0.0], [1.0], [2.0]], var=[1.0, 1.0]), r"means must have shape"),
    (dict(weights=[0.5, 0.5], means=[[0.0, 1.0], [1.0, 1.0]], var=[[1.0, 1.0, 1.0]] * 2), "var must have shape"),
    (dict(weights=[[0.5, 0.5]], means=[[0.0], [1.0]], var=[1.0, 1.0]), "weights must be a non-empty 1-D"),
    (dict(weights=[0.5, 0.5], means=[[0.0], [float("nan")]], var=[1.0, 1.0]), "NaN"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_bad_inputs():
    g = default_gmm2d()
    with pytest.raises(ValueError, match=r"expected \(n, 2\)"):
        g.log_prob(torch.zeros(4, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        g.log_prob(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="positive int"):
        g.sample(0)
    with pytest.raises(TypeError, match="positive int"):
        g.sample(2.5)
    with pytest.raises(ValueError, match="non-negative"):
        g.sample(3, -1)
    with pytest.raises(TypeError, match="seed"):
        g.sample(3, "a")
    with pytest.raises(ValueError, match=r"alpha_bar must lie in \[0, 1\]"):
        g.noised(1.2)
    with pytest.raises(ValueError, match="scalar"):
        g.noised(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="n_mc"):
        g.entropy(n_mc=1)
