"""Tests for dmlib.optimal against independent references: Bayes' rule on a grid, importance-
weighted Monte Carlo posteriors, Tweedie's formula with the mixture's score, scipy densities,
and Monte Carlo of the bound (dmlib.losses.vlb_terms) for the exact Gaussian terms."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import trapezoid

from dmlib.data.mixture import GaussianMixture, default_gmm2d
from dmlib.losses import diffusion_loss, vlb_terms
from dmlib.optimal import (GaussianData, OptimalDenoiser, gaussian_vlb_terms, nll, optimal_eps,
                           optimal_x0, posterior_x0)
from dmlib.posterior import posterior_mean
from dmlib.schedules import Schedule

D = torch.float64


@pytest.fixture
def gauss():
    return GaussianData(torch.tensor([0.5, -1.0]), torch.tensor([0.3, 2.0]))


@pytest.fixture
def gmm1d():
    return GaussianMixture([0.3, 0.7], [[-1.5], [1.0]], [0.2, 0.05])


def _importance_posterior_mean(samples, xt, ab):
    """E[x_0 | x_t] ~ sum_j w_j x0_j / sum_j w_j, x0_j ~ p_data, w_j = q(x_t | x0_j); with a
    standard error from the self-normalised estimator's delta-method variance."""
    logw = -0.5 * ((xt[None] - math.sqrt(ab) * samples) ** 2).sum(-1) / (1 - ab)  # (N,)
    w = torch.softmax(logw, 0)
    est = (w[:, None] * samples).sum(0)
    se = torch.sqrt(((w[:, None] * (samples - est)) ** 2).sum(0))
    return est, se


# ---- Gaussian data -------------------------------------------------------------------------
def test_gaussian_posterior_matches_bayes_on_a_grid():
    data = GaussianData(torch.tensor([0.4]), torch.tensor([0.5]))
    grid = np.linspace(-10, 10, 200_001)
    for ab, xt in [(0.9, 1.3), (0.3, -0.7), (0.01, 2.0)]:
        dens = (stats.norm.pdf(grid, 0.4, math.sqrt(0.5))
                * stats.norm.pdf(xt, math.sqrt(ab) * grid, math.sqrt(1 - ab)))
        dens /= trapezoid(dens, grid)
        m = trapezoid(grid * dens, grid)
        v = trapezoid((grid - m) ** 2 * dens, grid)
        mean, var = posterior_x0(data, ab, torch.tensor([[xt]], dtype=D))
        assert float(mean) == pytest.approx(m, abs=1e-8)
        assert float(var) == pytest.approx(v, rel=1e-6)


def test_gaussian_optimal_x0_matches_importance_sampling(gauss):
    sched = Schedule.linear(100)
    g = torch.Generator().manual_seed(0)
    samples = gauss.sample(400_000, g, dtype=D)
    for t, xt in [(10, [0.8, -0.5]), (50, [0.0, 1.0]), (90, [-0.3, 0.2])]:
        xt = torch.tensor([xt], dtype=D)
        est, se = _importance_posterior_mean(samples, xt[0], float(sched.alpha_bar[t]))
        got = optimal_x0(gauss, sched, xt, t)[0]
        assert torch.all((got - est).abs() < 5 * se + 1e-4), (t, got, est, se)


def test_gaussian_entropy_and_log_prob_match_scipy(gauss):
    cov = np.diag(gauss.var.numpy())
    mvn = stats.multivariate_normal(gauss.mean.numpy(), cov)
    x = torch.tensor([[0.1, 0.2], [-2.0, 3.0]], dtype=D)
    np.testing.assert_allclose(gauss.log_prob(x).numpy(), mvn.logpdf(x.numpy()), rtol=1e-12)
    np.testing.assert_allclose(nll(gauss, x).numpy(), -mvn.logpdf(x.numpy()), rtol=1e-12)
    assert gauss.entropy() == pytest.approx(mvn.entropy(), rel=1e-12)


def test_gaussian_noised_matches_sampling(gauss):
    g = torch.Generator().manual_seed(1)
    x0 = gauss.sample(200_000, g, dtype=D)
    ab = 0.4
    xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(x0.shape, generator=g, dtype=D)
    noised = gauss.noised(ab)
    torch.testing.assert_close(xt.mean(0), noised.mean, atol=0.01, rtol=0)
    torch.testing.assert_close(xt.var(0), noised.var, atol=0.02, rtol=0)


def test_one_component_mixture_agrees_with_gaussian(gauss):
    sched = Schedule.cosine(50)
    g = torch.Generator().manual_seed(2)
    xt = torch.randn(6, 2, generator=g, dtype=D)
    t = torch.tensor([1, 2, 10, 25, 49, 50])
    torch.testing.assert_close(optimal_x0(gauss.as_mixture(), sched, xt, t),
                               optimal_x0(gauss, sched, xt, t), rtol=1e-10, atol=1e-12)


# ---- Gaussian mixtures ---------------------------------------------------------------------
@pytest.mark.parametrize("sched", [Schedule.linear(1000), Schedule.cosine(20)])
def test_gmm_optimal_x0_is_tweedie_with_the_mixture_score(sched):
    gmm = default_gmm2d()
    g = torch.Generator().manual_seed(3)
    t = torch.randint(1, sched.T + 1, (64,), generator=g)
    t[:2] = torch.tensor([1, sched.T])
    xt = 1.5 * torch.randn(64, 2, generator=g, dtype=D)
    got = optimal_x0(gmm, sched, xt, t)
    for i in range(64):
        ab = sched.alpha_bar[t[i]]
        score = gmm.noised(ab).score(xt[i:i + 1])
        tweedie = (xt[i:i + 1] + (1 - ab) * score) / ab.sqrt()
        torch.testing.assert_close(got[i:i + 1], tweedie, rtol=1e-9, atol=1e-9)
    # and eps* = -sqrt(1 - alpha_bar) * score
    eps = optimal_eps(gmm, sched, xt, t)
    for i in range(0, 64, 7):
        ab = sched.alpha_bar[t[i]]
        torch.testing.assert_close(eps[i:i + 1], -(1 - ab).sqrt() * gmm.noised(ab).score(xt[i:i + 1]),
                                   rtol=1e-8, atol=1e-8)


def test_gmm_optimal_x0_matches_importance_sampling(gmm1d):
    sched = Schedule.linear(100)
    g = torch.Generator().manual_seed(4)
    samples = gmm1d.sample(400_000, g, dtype=D)
    for t, xt in [(5, 0.9), (20, -0.2), (40, 0.3), (100, 1.0)]:
        xt = torch.tensor([[xt]], dtype=D)
        est, se = _importance_posterior_mean(samples, xt[0], float(sched.alpha_bar[t]))
        got = optimal_x0(gmm1d, sched, xt, t)[0]
        assert torch.all((got - est).abs() < 5 * se + 1e-4), (t, got, est, se)


def test_gmm_nll_matches_scipy(gmm1d):
    x = torch.tensor([[-1.0], [0.0], [2.5]], dtype=D)
    p = sum(w * stats.norm.pdf(x.numpy()[:, 0], m, math.sqrt(v)) for w, m, v in
            [(0.3, -1.5, 0.2), (0.7, 1.0, 0.05)])
    np.testing.assert_allclose(nll(gmm1d, x).numpy(), -np.log(p), rtol=1e-10)


# ---- the model wrapper ---------------------------------------------------------------------
@pytest.mark.parametrize("data", [GaussianData(torch.zeros(2), torch.ones(2) * 0.5), default_gmm2d()])
def test_denoiser_prediction_types_and_batched_t(data):
    sched = Schedule.linear(200)
    g = torch.Generator().manual_seed(5)
    xt = torch.randn(8, 2, generator=g)
    t = torch.tensor([1, 2, 3, 50, 50, 120, 199, 200])
    x0 = OptimalDenoiser(data, sched, "x0")(xt, t)
    assert x0.dtype == torch.float32 and x0.shape == xt.shape
    # batched t equals one call per row with an int t
    for i in range(8):
        row = OptimalDenoiser(data, sched, "x0")(xt[i:i + 1], int(t[i]))
        torch.testing.assert_close(row, x0[i:i + 1])
    x64, xt64 = x0.double(), xt.double()
    ab = sched.alpha_bar[t].unsqueeze(1)
    eps = OptimalDenoiser(data, sched, "eps")(xt64, t)
    torch.testing.assert_close(eps, (xt64 - ab.sqrt() * optimal_x0(data, sched, xt64, t)) / (1 - ab).sqrt())
    mu = OptimalDenoiser(data, sched, "mu")(xt64, t)
    torch.testing.assert_close(mu, posterior_mean(sched, optimal_x0(data, sched, xt64, t), xt64, t))
    v = OptimalDenoiser(data, sched, "v")(xt64, t)
    torch.testing.assert_close(v, ab.sqrt() * eps - (1 - ab).sqrt() * optimal_x0(data, sched, xt64, t))
    assert torch.allclose(x64, optimal_x0(data, sched, xt64, t), atol=1e-5)


def test_denoiser_minimises_the_loss():
    # E||eps - model||^2 is smallest for the optimum: shrinking or shifting it costs.
    gmm = default_gmm2d()
    sched = Schedule.cosine(100)
    g = torch.Generator().manual_seed(6)
    x0 = gmm.sample(5_000, g, dtype=D)
    t = torch.randint(1, 101, (5_000,), generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=D)
    best = OptimalDenoiser(gmm, sched, "eps")
    loss = lambda m: float(diffusion_loss(m, sched, x0, "eps", t=t, eps=eps))  # noqa: E731
    base = loss(best)
    assert base < loss(lambda xt, tt: 0.9 * best(xt, tt))
    assert base < loss(lambda xt, tt: best(xt, tt) + 0.05)
    assert base < loss(OptimalDenoiser(GaussianData(torch.zeros(2), torch.ones(2)), sched, "eps"))


# ---- the exact bound for Gaussian data -----------------------------------------------------
@pytest.mark.parametrize("sched, sigma", [(Schedule.linear(20), "beta"),
                                          (Schedule.linear(20), "beta_tilde"),
                                          (Schedule.cosine(50), "beta_tilde")])
def test_gaussian_vlb_terms_match_monte_carlo(gauss, sched, sigma):
    g = torch.Generator().manual_seed(7)
    n = 6_000
    x0 = gauss.sample(n, g, dtype=D)
    with torch.no_grad():
        mc = vlb_terms(OptimalDenoiser(gauss, sched, "eps"), sched, x0, variance=sigma, generator=g)
    exact = gaussian_vlb_terms(gauss, sched, sigma)
    assert exact.shape == (sched.T + 1,)
    se = mc.std(0) / math.sqrt(n)
    assert torch.all((mc.mean(0) - exact).abs() < 5 * se + 1e-9)
    total_se = float(mc.sum(1).std() / math.sqrt(n))
    assert float(exact.sum()) == pytest.approx(float(mc.sum(1).mean()), abs=5 * total_se)
    # a bound: never below the entropy of the data
    assert float(exact.sum()) >= gauss.entropy()


def test_gaussian_gap_shrinks_with_T(gauss):
    gaps = [float(gaussian_vlb_terms(gauss, Schedule.linear(T), "beta").sum()) - gauss.entropy()
            for T in (10, 100, 1000, 4000)]
    assert all(g > 0 for g in gaps)
    assert all(a > b for a, b in zip(gaps, gaps[1:]))
    assert gaps[-1] < 0.01


def test_standard_normal_data_with_beta_is_tight():
    # For data N(0, I) every marginal q(x_t) is N(0, I) and the true reverse step is
    # q(x_{t-1}|x_t) = N(sqrt(alpha_t) x_t, beta_t I), the decoder included. The optimal model
    # with sigma_t^2 = beta_t is then the exact reverse process, so the bound equals the entropy
    # (the terms themselves are not zero: each is a conditional mutual information).
    data = GaussianData(torch.zeros(3), torch.ones(3))
    for sched in (Schedule.linear(30), Schedule.cosine(200)):
        terms = gaussian_vlb_terms(data, sched, "beta")
        assert float(terms[2]) > 0.01  # L_1, the KL term at t = 2
        assert float(terms.sum()) == pytest.approx(data.entropy(), abs=1e-6)
    # with beta_tilde (too small a variance) the bound is loose
    assert float(gaussian_vlb_terms(data, Schedule.linear(30), "beta_tilde").sum()) > data.entropy() + 0.1


# ---- errors --------------------------------------------------------------------------------
def test_errors(gauss):
    sched = Schedule.linear(10)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="var must be positive"):
        GaussianData(torch.zeros(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="shape of mean"):
        GaussianData(torch.zeros(2), torch.ones(3))
    with pytest.raises(ValueError, match="shape \\(d,\\)"):
        GaussianData(torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(TypeError, match="GaussianData or a GaussianMixture"):
        optimal_x0("gauss", sched, x, 1)
    with pytest.raises(TypeError, match="GaussianData or a GaussianMixture"):
        OptimalDenoiser(None, sched)
    with pytest.raises(TypeError, match="Schedule"):
        OptimalDenoiser(gauss, "linear")
    with pytest.raises(ValueError, match="unknown prediction_type"):
        OptimalDenoiser(gauss, sched, "score")
    with pytest.raises(ValueError, match="dimension d = 2"):
        optimal_x0(gauss, sched, torch.zeros(3, 3), 1)
    with pytest.raises(TypeError, match="xt must be a torch.Tensor"):
        optimal_eps(gauss, sched, [[0.0, 0.0]], 1)
    with pytest.raises(ValueError, match="1-based t"):
        optimal_x0(gauss, sched, x, 0)
    with pytest.raises(ValueError, match="t has 2 timesteps"):
        OptimalDenoiser(gauss, sched)(x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="alpha_bar must lie in"):
        posterior_x0(gauss, 1.5, x)
    with pytest.raises(TypeError, match="GaussianData"):
        posterior_x0(default_gmm2d(), 0.5, x)
    with pytest.raises(ValueError, match="unknown variance"):
        gaussian_vlb_terms(gauss, sched, "sigma")
    with pytest.raises(TypeError, match="GaussianData"):
        gaussian_vlb_terms(default_gmm2d(), sched)
    with pytest.raises(ValueError, match="n must be a positive int"):
        gauss.sample(0)
