"""Tests for the chapter-8 samplers (dmlib.samplers through dmlib.sampling.sample): each step
against its paper's update written out here, the eta = 1 / DDPM identity, and the orders of
convergence to the probability-flow ODE solution with the exact denoiser of a mixture."""

import math

import pytest
import torch

from dmlib.data import default_gmm2d
from dmlib.optimal import OptimalDenoiser
from dmlib.respacing import respace
from dmlib.samplers import ddim_step, dpmpp_2m_step, heun_step, nfe, steps_for_nfe
from dmlib.sampling import SAMPLERS, StepContext, ddpm_step, sample
from dmlib.schedules import Schedule

D = torch.float64
W = torch.tensor([[0.3, -0.2], [0.1, 0.5]], dtype=D)


def _linear_eps_model(x, t):
    """A smooth, t-dependent stand-in for a network (float64)."""
    return torch.tanh(x @ W) * (1 + t.to(D)[:, None] / 1000)


def _x(seed=0, n=7):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=D)


def test_registered():
    assert {"ddpm", "ddim", "heun", "dpmpp_2m"} <= set(SAMPLERS)
    assert nfe("heun", 5) == 9 and nfe("ddim", 5) == 5 and steps_for_nfe("heun", 10) == 5


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers_formula(eta):
    # diffusers' DDIMScheduler.step, written out (0-based timesteps there, our t - 1)
    sched, _ = respace(Schedule.cosine(1000), 20)
    x, t = _x(), 12
    out = _linear_eps_model(x, torch.full((7,), t))
    alpha_prod_t = float(sched.alpha_bar[t])
    alpha_prod_t_prev = float(sched.alpha_bar[t - 1])
    beta_prod_t = 1 - alpha_prod_t
    pred_original_sample = (x - beta_prod_t ** 0.5 * out) / alpha_prod_t ** 0.5
    variance = (1 - alpha_prod_t_prev) / beta_prod_t * (1 - alpha_prod_t / alpha_prod_t_prev)
    std_dev_t = eta * variance ** 0.5
    pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t ** 2) ** 0.5 * out
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=D)
    ref = alpha_prod_t_prev ** 0.5 * pred_original_sample + pred_sample_direction
    if eta > 0:
        ref = ref + std_dev_t * noise
    ctx = StepContext(generator=torch.Generator().manual_seed(3), eta=eta)
    got = ddim_step(_linear_eps_model, sched, x, t, ctx)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps", [None, 25])
def test_ddim_eta1_is_ddpm_with_beta_tilde(steps):
    sched = Schedule.linear(1000)
    if steps:
        sched, _ = respace(sched, steps)
    x = _x(1)
    for t in [sched.T, sched.T // 2, 2, 1]:
        a = ddim_step(_linear_eps_model, sched, x, t,
                      StepContext(generator=torch.Generator().manual_seed(t), eta=1.0))
        b = ddpm_step(_linear_eps_model, sched, x, t,
                      StepContext(variance="beta_tilde", generator=torch.Generator().manual_seed(t)))
        assert (a - b).abs().max() < 1e-10


def test_ddim_eta0_is_euler_in_xbar_sigma():
    sched, _ = respace(Schedule.linear(1000), 10)
    x = _x(2)
    for t in range(sched.T, 0, -1):
        ab, abp = float(sched.alpha_bar[t]), float(sched.alpha_bar_prev[t])
        sig, sigp = math.sqrt((1 - ab) / ab), math.sqrt((1 - abp) / abp)
        eps = _linear_eps_model(x, torch.full((7,), t))
        euler = math.sqrt(abp) * (x / math.sqrt(ab) + (sigp - sig) * eps)
        got = ddim_step(_linear_eps_model, sched, x, t, StepContext())
        assert (got - euler).abs().max() < 1e-12
        x = got


def _karras_heun(model, sched, x):
    """Karras et al. (2022) Alg. 1 in (x_bar, sigma) with the denoiser D = x0_hat."""
    sig = ((1 - sched.alpha_bar) / sched.alpha_bar).sqrt()
    xbar = x / sched.alpha_bar[sched.T].sqrt()

    def Dfn(xb, t):
        a = float(sched.alpha_bar[t].sqrt())
        xx = a * xb
        e = model(xx, torch.full((xx.shape[0],), t))
        return (xx - math.sqrt(1 - a * a) * e) / a

    for t in range(sched.T, 0, -1):
        s, sn = float(sig[t]), float(sig[t - 1])
        d = (xbar - Dfn(xbar, t)) / s
        x_next = xbar + (sn - s) * d
        if sn > 0:
            d2 = (x_next - Dfn(x_next, t - 1)) / sn
            x_next = xbar + (sn - s) * (d + d2) / 2
        xbar = x_next
    return xbar


def test_heun_matches_karras_algorithm_1():
    # linear schedule: sigma_T = 157 < HEUN_SIGMA_MAX, so every step but the last is Heun's
    sched, taus = respace(Schedule.linear(1000), 8)
    from dmlib.respacing import RespacedModel
    model = RespacedModel(_linear_eps_model, taus)
    x = _x(4)
    ref = _karras_heun(model, sched, x)
    got = sample(_linear_eps_model, Schedule.linear(1000), x.shape, "heun", steps=8, x_T=x)
    torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-11)  # |x| ~ 1e4: not a denoiser


def _dpmpp_2m_paper(model, sched, x):
    """Lu et al. (2022) Algorithm 2 (DPM-Solver++(2M)) on the times T, ..., 1 of ``sched``,
    then x_0 = x_theta at the last time (lambda_0 = +inf)."""
    ab = sched.alpha_bar
    alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
    lam = (alpha / sigma).log()
    ts = list(range(sched.T, 0, -1))

    def x_theta(xx, t):
        e = model(xx, torch.full((xx.shape[0],), t))
        return (xx - sigma[t] * e) / alpha[t]

    Q = [x_theta(x, ts[0])]
    h_prev = None
    for i in range(1, len(ts)):
        t_prev, t_i = ts[i - 1], ts[i]
        h = float(lam[t_i] - lam[t_prev])
        if i == 1:
            Dv = Q[-1]
        else:
            r = h_prev / h
            Dv = (1 + 1 / (2 * r)) * Q[-1] - 1 / (2 * r) * Q[-2]
        x = sigma[t_i] / sigma[t_prev] * x - alpha[t_i] * (math.exp(-h) - 1) * Dv
        Q.append(x_theta(x, t_i))
        h_prev = h
    return Q[-1]


def test_dpmpp_2m_matches_paper_algorithm_2():
    sched, taus = respace(Schedule.linear(1000), 7)
    from dmlib.respacing import RespacedModel
    x = _x(5)
    ref = _dpmpp_2m_paper(RespacedModel(_linear_eps_model, taus), sched, x)
    got = sample(_linear_eps_model, Schedule.linear(1000), x.shape, "dpmpp_2m", steps=7, x_T=x)
    torch.testing.assert_close(got, ref, rtol=1e-11, atol=1e-11)
    got2 = sample(_linear_eps_model, Schedule.linear(1000), x.shape, "dpmpp_2m", steps=7, x_T=x)
    assert torch.equal(got, got2)  # the multistep memory is reset at the start of a run


@pytest.mark.parametrize("name,order", [("ddim", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_convergence_order_to_the_ode_solution(name, order, one_thread):
    """With the exact denoiser of a mixture, the state at t = 500 (on every grid below)
    converges to a fine Heun solution with the solver's order: halving the step divides
    the error by 2 (Euler = DDIM) or 4 (second order)."""
    sched = Schedule.linear(1000)
    model = OptimalDenoiser(default_gmm2d(), sched)
    xT = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=D)
    kw = dict(x_T=xT, return_trajectory=True, trajectory_steps=[500])
    ref = sample(model, sched, xT.shape, "heun", steps=1000, **kw)[1][500]
    errs = [float((sample(model, sched, xT.shape, name, steps=S, **kw)[1][500] - ref).norm())
            for S in (40, 80, 160)]
    ratios = [errs[0] / errs[1], errs[1] / errs[2]]
    for r in ratios:
        assert 0.85 * 2 ** order < r < 1.2 * 2 ** order, (errs, ratios)


def test_eta_validated():
    with pytest.raises(ValueError, match="eta"):
        StepContext(eta=-1.0)


def test_ddim_inversion_reconstructs_and_improves_with_steps(one_thread):
    from dmlib.samplers import ddim_decode, ddim_invert, log_sigma_timesteps, slerp
    sched = Schedule.linear(1000)
    gmm = default_gmm2d()
    model = OptimalDenoiser(gmm, sched)
    x0 = gmm.sample(100, generator=torch.Generator().manual_seed(1), dtype=D)
    errs = []
    for S in (20, 100):
        taus = log_sigma_timesteps(sched, S)
        xT = ddim_invert(model, sched, x0, taus)
        assert 0.5 < float(xT.std()) < 1.5  # noise-like
        back = ddim_decode(model, sched, xT, taus)
        errs.append(float((back - x0).norm(dim=1).mean()))
    assert errs[1] < errs[0] / 2 and errs[1] < 0.05, errs
    z0, z1 = torch.randn(2, 50, dtype=D, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(slerp(z0, z1, 0.0), z0) and torch.allclose(slerp(z0, z1, 1.0), z1)


def test_ode_schedule_cuts_the_cosine_jump():
    from dmlib.samplers import ode_end, ode_schedule
    cos = Schedule.cosine(1000)
    t_end = ode_end(cos)
    assert t_end < 1000 and ode_end(Schedule.linear(1000)) == 1000
    cut = ode_schedule(cos)
    assert cut.T == t_end
    torch.testing.assert_close(cut.alpha_bar, cos.alpha_bar[:t_end + 1])


def test_heun_first_cosine_step_is_euler():
    """From the cosine schedule's sigma_T = 20,291 Heun takes the Euler (= DDIM) step."""
    sched, _ = respace(Schedule.cosine(1000), 5)
    x = _x(6)
    calls = []

    def counting(xx, t):
        calls.append(int(t[0]))
        return _linear_eps_model(xx, t)

    a = heun_step(counting, sched, x, 5, StepContext())
    b = ddim_step(_linear_eps_model, sched, x, 5, StepContext())
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert calls == [5]
    assert nfe("heun", 5, Schedule.cosine(1000)) == 8 and nfe("heun", 5, Schedule.linear(1000)) == 9
