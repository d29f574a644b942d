"""Tests for dmlib.likelihood: the probability-flow ODE likelihood of the exact denoiser of
a Gaussian mixture against the mixture's closed-form density, the PF-ODE drift against the
exact transport map of Gaussian data, Hutchinson against the exact trace, bits/dim."""

import math

import pytest
import torch

from dmlib.data import default_gmm2d
from dmlib.data.mixture import GaussianMixture
from dmlib.likelihood import (bits_per_dim, dequantize, likelihood_grid, ode_log_likelihood,
                              pf_ode_drift, sigma_of)
from dmlib.optimal import OptimalDenoiser
from dmlib.schedules import Schedule

D = torch.float64


def _setup(n=100):
    sched = Schedule.linear(1000)
    gmm = default_gmm2d()
    x = gmm.sample(n, generator=torch.Generator().manual_seed(0), dtype=D)
    s1 = float(sigma_of(sched)[1])
    # x_bar at sigma_1 = x_0 + sigma_1 eps: the mixture with variances + sigma_1^2
    true = GaussianMixture(gmm.weights, gmm.means, gmm.var + s1 ** 2).log_prob(x)
    return sched, OptimalDenoiser(gmm, sched), x, true


def test_gmm_exact_likelihood(one_thread):
    sched, model, x, true = _setup()
    lp = ode_log_likelihood(model, sched, x, steps=200, solver="heun")
    assert (lp - true).abs().mean() < 0.01
    # and the sigma_1 smoothing is negligible against the data's own density
    assert (default_gmm2d().log_prob(x) - true).abs().mean() < 0.01


def test_solver_orders(one_thread):
    sched, model, x, true = _setup(50)
    err = {(s, S): float((ode_log_likelihood(model, sched, x, steps=S, solver=s) - true).mean())
           for s in ("euler", "heun") for S in (50, 100)}
    assert 1.6 < err["euler", 50] / err["euler", 100] < 2.6
    assert 3.2 < err["heun", 50] / err["heun", 100] < 5.0


def test_hutchinson_is_unbiased_for_the_integral(one_thread):
    sched, model, x, _ = _setup(20)
    exact = ode_log_likelihood(model, sched, x, steps=20)
    g = torch.Generator().manual_seed(0)
    est = torch.stack([ode_log_likelihood(model, sched, x, steps=20, trace="hutchinson",
                                          generator=g) for _ in range(40)])
    se = est.std(0) / math.sqrt(40)
    assert ((est.mean(0) - exact).abs() < 4 * se + 1e-9).all()
    assert (est.std(0) > 0).any()


def test_pf_ode_drift_moves_gaussian_data_along_its_transport_map():
    """For data N(0, v) in 1-D, q_t = N(0, V_t) with V_t = alpha_bar_t v + 1 - alpha_bar_t, the
    exact PF-ODE flow is x_t = sqrt(V_t / V_s) x_s; its time derivative must equal the drift
    with the exact eps = sqrt(1 - alpha_bar) x / V (continuous linear beta(t))."""
    v, b0, b1 = 0.3, 0.1, 20.0
    beta = lambda t: b0 + t * (b1 - b0)  # noqa: E731
    ab = lambda t: math.exp(-(b0 * t + 0.5 * (b1 - b0) * t * t))  # noqa: E731
    V = lambda t: ab(t) * v + 1 - ab(t)  # noqa: E731
    x_s, s = torch.tensor([0.7, -1.2], dtype=D), 0.2
    for t in (0.3, 0.6):
        h = 1e-6
        x = lambda u: math.sqrt(V(u) / V(s)) * x_s  # noqa: E731
        dxdt = (x(t + h) - x(t - h)) / (2 * h)
        eps = math.sqrt(1 - ab(t)) * x(t) / V(t)
        torch.testing.assert_close(pf_ode_drift(eps, x(t), beta(t), ab(t)), dxdt,
                                   rtol=1e-6, atol=1e-8)


def test_grid_and_bits_per_dim():
    sched = Schedule.linear(1000)
    ts = likelihood_grid(sched, 50)
    assert ts[0] == 1 and ts[-1] == 1000 and bool((ts[1:] > ts[:-1]).all())
    with pytest.raises(ValueError):
        likelihood_grid(sched, 1000)
    # uniform density on [-1, 1]^D: log p_z = -D log 2 -> exactly 8 bits per dimension
    assert float(bits_per_dim(torch.tensor(-784 * math.log(2)), 784)) == pytest.approx(8.0)
    img = torch.tensor([[-1.0, 1.0, 0.0039215686]])
    z = dequantize(img, torch.Generator().manual_seed(0))
    n = torch.tensor([[0.0, 255.0, 128.0]])
    assert ((z + 1) * 128 >= n).all() and ((z + 1) * 128 < n + 1).all()


def test_cosine_schedule_stops_before_its_last_jump(one_thread):
    """The cosine schedule's last step jumps sigma from 642 to 20,291; the grid stops at the
    last t with sigma <= 200, and the likelihood is right there too."""
    sched = Schedule.cosine(1000)
    ts = likelihood_grid(sched, 50)
    assert float(sigma_of(sched)[int(ts[-1])]) <= 200 < float(sigma_of(sched)[int(ts[-1]) + 1])
    gmm = default_gmm2d()
    x = gmm.sample(100, generator=torch.Generator().manual_seed(0), dtype=D)
    s1 = float(sigma_of(sched)[1])
    true = GaussianMixture(gmm.weights, gmm.means, gmm.var + s1 ** 2).log_prob(x)
    lp = ode_log_likelihood(OptimalDenoiser(gmm, sched), sched, x, steps=100)
    assert abs(float((lp - true).mean())) < 0.05
