"""Tests for dmlib.posterior: Bayes on a grid, product of Gaussians, Monte Carlo regression."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import trapezoid

from dmlib.posterior import posterior_mean, posterior_mean_from_eps, posterior_mean_var
from dmlib.schedules import Schedule

D = torch.float64
BETAS = np.array([0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
T = len(BETAS)


@pytest.fixture
def sched():
    return Schedule(torch.tensor(BETAS, dtype=D))


def _ab(t):
    return float(np.prod(1 - BETAS[:t]))


def _product_of_gaussians(x0, xt, t):
    """q(x_{t-1}|x_t,x0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x0) as a product of two Gaussians in
    x_{t-1} (C1.4): precisions add, the mean is precision-weighted. t >= 2."""
    a, b = 1 - BETAS[t - 1], BETAS[t - 1]
    # q(x_t|x_{t-1}) as a function of x_{t-1}: N(x_{t-1}; x_t / sqrt(a), b / a)
    m1, p1 = xt / math.sqrt(a), a / b
    m2, p2 = math.sqrt(_ab(t - 1)) * x0, 1 / (1 - _ab(t - 1))
    prec = p1 + p2
    return (p1 * m1 + p2 * m2) / prec, 1 / prec


def test_matches_product_of_gaussians(sched):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(T - 1, 3, generator=g, dtype=D)
    xt = torch.randn(T - 1, 3, generator=g, dtype=D)
    t = torch.arange(2, T + 1)
    mean, var, log_var = posterior_mean_var(sched, x0, xt, t)
    assert mean.shape == var.shape == log_var.shape == x0.shape
    for i, ti in enumerate(t.tolist()):
        m, v = _product_of_gaussians(x0[i].numpy(), xt[i].numpy(), ti)
        np.testing.assert_allclose(mean[i].numpy(), m, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(var[i].numpy(), v, rtol=1e-12)
        np.testing.assert_allclose(log_var[i].numpy(), math.log(v), rtol=1e-12)


def test_bayes_rule_on_a_dense_grid(sched):
    # Posterior density on a grid from Bayes' rule with scipy densities, then its moments.
    x0, xt = 0.7, -0.4
    grid = np.linspace(-8, 8, 400_001)
    for t in (2, 4, T):
        a, b = 1 - BETAS[t - 1], BETAS[t - 1]
        ab_prev = _ab(t - 1)
        dens = (stats.norm.pdf(xt, math.sqrt(a) * grid, math.sqrt(b))
                * stats.norm.pdf(grid, math.sqrt(ab_prev) * x0, math.sqrt(1 - ab_prev)))
        dens /= trapezoid(dens, grid)
        m = trapezoid(grid * dens, grid)
        v = trapezoid((grid - m) ** 2 * dens, grid)
        mean, var, _ = posterior_mean_var(sched, torch.tensor([x0], dtype=D),
                                          torch.tensor([xt], dtype=D), t)
        assert float(mean) == pytest.approx(m, abs=1e-8)
        assert float(var) == pytest.approx(v, rel=1e-6)


def test_by_sampling_linear_regression(sched):
    # For fixed x0, draw x_{t-1} ~ q(x_{t-1}|x0), x_t ~ q(x_t|x_{t-1}); the regression of
    # x_{t-1} on x_t has slope coef_xt, intercept coef_x0 * x0 and residual variance beta_tilde.
    n, t, x0 = 400_000, 3, 1.2
    rng = np.random.default_rng(0)
    ab_prev = _ab(t - 1)
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * rng.standard_normal(n)
    xt = math.sqrt(1 - BETAS[t - 1]) * x_prev + math.sqrt(BETAS[t - 1]) * rng.standard_normal(n)
    slope, intercept = np.polyfit(xt, x_prev, 1)
    resid_var = np.var(x_prev - (slope * xt + intercept))
    xs = torch.tensor([-1.0, 0.0, 2.0], dtype=D)
    mean, var, _ = posterior_mean_var(sched, torch.full_like(xs, x0), xs, t)
    np.testing.assert_allclose(mean.numpy(), slope * xs.numpy() + intercept, atol=5e-3)
    assert float(var[0]) == pytest.approx(resid_var, rel=1e-2)


def test_t_equal_one_is_a_point_mass_at_x0(sched):
    x0 = torch.tensor([[0.3, -0.2]], dtype=D)
    xt = torch.tensor([[5.0, 1.0]], dtype=D)
    mean, var, log_var = posterior_mean_var(sched, x0, xt, 1)
    torch.testing.assert_close(mean, x0, rtol=0, atol=1e-15)
    assert torch.all(var == 0)
    # the clipped log-variance at t = 1 borrows beta_tilde_2 (DDPM's convention)
    bt2 = (1 - _ab(1)) / (1 - _ab(2)) * BETAS[1]
    np.testing.assert_allclose(log_var.numpy(), math.log(bt2), rtol=1e-12)


def test_eps_form_agrees_with_x0_form():
    # The slide's mean (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t) equals the x0 form
    # when x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, for every t, on a long schedule too.
    for sched in (Schedule(torch.tensor(BETAS, dtype=D)), Schedule.linear(1000),
                  Schedule.cosine(1000)):
        g = torch.Generator().manual_seed(1)
        t = torch.cat([torch.tensor([1, 2, sched.T]),
                       torch.randint(1, sched.T + 1, (61,), generator=g)])
        x0 = torch.randn(len(t), 2, generator=g, dtype=D)
        eps = torch.randn(len(t), 2, generator=g, dtype=D)
        ab = sched.alpha_bar[t].unsqueeze(1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        torch.testing.assert_close(posterior_mean_from_eps(sched, xt, eps, t),
                                   posterior_mean(sched, x0, xt, t), rtol=1e-9, atol=1e-9)


def test_scalar_t_broadcasts_like_per_example_t(sched):
    g = torch.Generator().manual_seed(2)
    x0, xt = torch.randn(2, 4, 3, 3, generator=g, dtype=D)
    a = posterior_mean(sched, x0, xt, 5)
    b = posterior_mean(sched, x0, xt, torch.full((4,), 5))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_errors(sched):
    x = torch.zeros(3, 2, dtype=D)
    with pytest.raises(ValueError, match="1-based t"):
        posterior_mean_var(sched, x, x, 0)
    with pytest.raises(ValueError, match="t out of range"):
        posterior_mean(sched, x, x, T + 1)
    with pytest.raises(ValueError, match="shape mismatch: x0 has shape"):
        posterior_mean(sched, x, torch.zeros(3, 3, dtype=D), 2)
    with pytest.raises(ValueError, match="shape mismatch: xt has shape"):
        posterior_mean_from_eps(sched, x, torch.zeros(2, 2, dtype=D), 2)
    with pytest.raises(ValueError, match="t has 2 timesteps"):
        posterior_mean_from_eps(sched, x, x, torch.tensor([1, 2]))
