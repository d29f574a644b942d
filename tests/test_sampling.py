"""Tests for dmlib.sampling: Gaussian data with the exact optimal denoiser, whose sampler
output law is also computed exactly by a linear-Gaussian recursion written here."""

import math

import numpy as np
import pytest
import torch

from dmlib.sampling import StepContext, ddpm_sample, ddpm_step, p_mean_var
from dmlib.schedules import reverse_variance
from dmlib.schedules import Schedule

D = torch.float64
M = torch.tensor([1.0, -0.5], dtype=D)  # data mean
S = torch.tensor([0.5, 1.5], dtype=D)   # data std (per dim)


def _optimal_eps_model(sched):
    """E[eps | x_t] for x0 ~ N(M, diag S^2): Cov(eps, x_t) / Var(x_t) * (x_t - E x_t)."""
    def model(xt, t):
        assert t.dtype == torch.long and t.shape == (xt.shape[0],)
        ab = sched.alpha_bar[t].view(-1, 1)
        return (1 - ab).sqrt() * (xt - ab.sqrt() * M) / (ab * S ** 2 + 1 - ab)
    return model


def _exact_sampler_law(sched, variance):
    """Mean and variance of the sampler's x_0 per dim: each step is x_{t-1} = A_t x_t + c_t +
    sigma_t z, so mean and variance follow a scalar recursion from N(0, 1) at t = T."""
    betas = sched.betas.numpy()
    ab = np.cumprod(1 - betas)
    m, s2 = M.numpy(), S.numpy() ** 2
    mean, var = np.zeros(2), np.ones(2)
    for t in range(sched.T, 0, -1):
        b, a_bar = betas[t], ab[t]
        k = math.sqrt(1 - a_bar) / (a_bar * s2 + 1 - a_bar)  # eps_hat = k (x - sqrt(ab) m)
        g = b / math.sqrt(1 - a_bar)
        A = (1 - g * k) / math.sqrt(1 - b)
        c = g * k * math.sqrt(a_bar) * m / math.sqrt(1 - b)
        if t == 1:
            sig2 = 0.0
        elif variance == "beta":
            sig2 = b
        else:
            sig2 = (1 - ab[t - 1]) / (1 - a_bar) * b
        mean, var = A * mean + c, A * A * var + sig2
    return mean, var


@pytest.mark.parametrize("variance,std_tol", [("beta_tilde", 0.04), ("beta", 0.015)])
def test_optimal_model_reproduces_gaussian_data(variance, std_tol):
    sched = Schedule.linear(200)
    n = 20_000
    x = ddpm_sample(_optimal_eps_model(sched), sched, (n, 2), variance=variance,
                    generator=torch.Generator().manual_seed(0), dtype=D)
    assert x.shape == (n, 2) and x.dtype == D
    mean, var = _exact_sampler_law(sched, variance)
    # Monte Carlo vs the exact law of this sampler (4 standard errors).
    assert np.all(np.abs(x.mean(0).numpy() - mean) < 4 * np.sqrt(var / n))
    assert np.all(np.abs(x.var(0).numpy() - var) < 4 * var * np.sqrt(2 / n))
    # The exact law vs the data: the mean is exact; the std is slightly off because the
    # reverse process's sigma_t is fixed (beta_tilde too small, beta too large at T = 200).
    np.testing.assert_allclose(mean, M.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.sqrt(var), S.numpy(), rtol=std_tol)


def test_prediction_types_give_the_same_samples():
    sched = Schedule.linear(50)
    eps_model = _optimal_eps_model(sched)
    ab = lambda t: sched.alpha_bar[t].view(-1, 1)  # noqa: E731
    models = {
        "eps": eps_model,
        "x0": lambda xt, t: (xt - (1 - ab(t)).sqrt() * eps_model(xt, t)) / ab(t).sqrt(),
        "v": lambda xt, t: (eps_model(xt, t) - (1 - ab(t)).sqrt() * xt) / ab(t).sqrt(),
    }
    outs = {k: ddpm_sample(f, sched, (64, 2), k, variance="beta_tilde", dtype=D,
                           generator=torch.Generator().manual_seed(1)) for k, f in models.items()}
    torch.testing.assert_close(outs["x0"], outs["eps"], rtol=0, atol=1e-9)
    torch.testing.assert_close(outs["v"], outs["eps"], rtol=0, atol=1e-9)


def test_p_mean_var_against_the_slide_formula_and_clipping():
    sched = Schedule.linear(20)
    g = torch.Generator().manual_seed(2)
    xt = torch.randn(6, 3, generator=g, dtype=D)
    eps = 3 * torch.randn(6, 3, generator=g, dtype=D)
    t = torch.tensor([1, 2, 5, 10, 19, 20])
    b = sched.betas[t].view(-1, 1)
    a_bar = torch.cumprod(1 - sched.betas[1:], 0)[t - 1].view(-1, 1)
    a_bar_all = torch.cat([torch.ones(1, dtype=D), torch.cumprod(1 - sched.betas[1:], 0)])
    a_bar_prev = a_bar_all[t - 1].view(-1, 1)
    mean, var = p_mean_var(sched, eps, xt, t, "eps", "beta")
    torch.testing.assert_close(mean, (xt - b / (1 - a_bar).sqrt() * eps) / (1 - b).sqrt())
    torch.testing.assert_close(var, b.expand_as(xt))
    _, var_tilde = p_mean_var(sched, eps, xt, t, "eps", "beta_tilde")
    torch.testing.assert_close(var_tilde, ((1 - a_bar_prev) / (1 - a_bar) * b).expand_as(xt))
    assert torch.all(var_tilde[0] == 0)  # beta_tilde_1 = 0
    # clip x0_hat to [-1, 1], then the posterior mean of the clipped x0_hat
    mean_c, _ = p_mean_var(sched, eps, xt, t, "eps", clip_x0=1.0)
    x0_hat = ((xt - (1 - a_bar).sqrt() * eps) / a_bar.sqrt()).clamp(-1, 1)
    ref = (a_bar_prev.sqrt() * b * x0_hat + (1 - b).sqrt() * (1 - a_bar_prev) * xt) / (1 - a_bar)
    torch.testing.assert_close(mean_c, ref)
    assert not torch.allclose(mean_c, mean)


def test_last_step_adds_no_noise_and_other_steps_do():
    sched = Schedule.linear(20)
    model = _optimal_eps_model(sched)
    xt = torch.randn(500, 2, generator=torch.Generator().manual_seed(3), dtype=D)
    a = ddpm_step(model, sched, xt, 1, StepContext(generator=torch.Generator().manual_seed(4)))
    b = ddpm_step(model, sched, xt, 1, StepContext(generator=torch.Generator().manual_seed(5)))
    mean1, _ = p_mean_var(sched, model(xt, torch.ones(500, dtype=torch.long)), xt, 1)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, mean1, rtol=0, atol=0)
    # at t = 7 the step adds N(0, beta_7) noise around the mean: check its variance
    xt7 = torch.zeros(20_000, 2, dtype=D)
    x6 = ddpm_step(model, sched, xt7, 7, StepContext(generator=torch.Generator().manual_seed(6)))
    mean7, var7 = p_mean_var(sched, model(xt7, torch.full((20_000,), 7)), xt7, 7)
    resid = (x6 - mean7).numpy()
    b7 = float(sched.betas[7])
    np.testing.assert_allclose(resid.var(0), b7, rtol=4 * math.sqrt(2 / 20_000))
    torch.testing.assert_close(var7, torch.full_like(var7, b7))


def test_trajectory_keys_shapes_and_determinism():
    sched = Schedule.linear(10)
    model = _optimal_eps_model(sched)
    x0, traj = ddpm_sample(model, sched, (4, 2), generator=torch.Generator().manual_seed(7),
                           dtype=D, return_trajectory=True)
    assert list(traj) == list(range(10, -1, -1))
    assert all(v.shape == (4, 2) and v.device.type == "cpu" for v in traj.values())
    torch.testing.assert_close(traj[0], x0, rtol=0, atol=0)
    again = ddpm_sample(model, sched, (4, 2), generator=torch.Generator().manual_seed(7), dtype=D)
    other = ddpm_sample(model, sched, (4, 2), generator=torch.Generator().manual_seed(8), dtype=D)
    assert torch.equal(again, x0) and not torch.equal(other, x0)
    # x_T given: it is the trajectory's first entry; a subset of steps can be kept
    x_T = torch.randn(4, 2, dtype=D)
    x0b, sub = ddpm_sample(model, sched, (4, 2), x_T=x_T, return_trajectory=True,
                           trajectory_steps=[10, 5, 0], progress=True,
                           generator=torch.Generator().manual_seed(9))
    assert list(sub) == [10, 5, 0]
    assert torch.equal(sub[10], x_T) and torch.equal(sub[0], x0b)


def test_reverse_variance_table():
    sched = Schedule(torch.tensor([0.1, 0.2, 0.3], dtype=D))
    torch.testing.assert_close(reverse_variance(sched, "beta"),
                               torch.tensor([math.nan, 0.1, 0.2, 0.3], dtype=D), equal_nan=True)
    ab = [1.0, 0.9, 0.72, 0.504]
    ref = [math.nan, 0.0] + [(1 - ab[t - 1]) / (1 - ab[t]) * [0.1, 0.2, 0.3][t - 1] for t in (2, 3)]
    torch.testing.assert_close(reverse_variance(sched, "beta_tilde"), torch.tensor(ref, dtype=D),
                               equal_nan=True)


def test_errors():
    sched = Schedule.linear(10)
    model = _optimal_eps_model(sched)
    x = torch.zeros(3, 2, dtype=D)
    with pytest.raises(ValueError,
                       match="unknown variance 'small'; valid ones are 'beta', 'beta_tilde'"):
        ddpm_sample(model, sched, (3, 2), variance="small")
    with pytest.raises(ValueError, match="unknown prediction_type 'score'"):
        ddpm_sample(model, sched, (3, 2), prediction_type="score")
    with pytest.raises(ValueError, match="unknown variance"):
        p_mean_var(sched, x, x, 2, variance="sigma")
    with pytest.raises(ValueError, match="unknown prediction_type"):
        ddpm_step(model, sched, x, 2, StepContext(prediction_type="x_0"))
    with pytest.raises(ValueError, match="1-based t"):
        ddpm_step(model, sched, x, 0)
    with pytest.raises(ValueError, match="t out of range"):
        ddpm_step(model, sched, x, 11)
    with pytest.raises(TypeError, match="t must be an int timestep"):
        ddpm_step(model, sched, x, 2.0)
    with pytest.raises(ValueError, match="clip_x0 must be None or a positive number"):
        p_mean_var(sched, x, x, 2, clip_x0=-1.0)
    with pytest.raises(ValueError, match=r"model must return a tensor shaped like x_t \(3, 2\)"):
        ddpm_step(lambda xt, t: xt[:, :1], sched, x, 3)
    with pytest.raises(ValueError, match=r"wrong shape for x_T: expected \(3, 2\)"):
        ddpm_sample(model, sched, (3, 2), x_T=torch.zeros(3, 3, dtype=D))
    with pytest.raises(ValueError, match="trajectory_steps must hold visited times"):
        ddpm_sample(model, sched, (3, 2), dtype=D, return_trajectory=True, trajectory_steps=[11])


def test_sample_with_steps_runs_the_respaced_chain_with_original_time_keys():
    from dmlib.respacing import RespacedModel, respace
    from dmlib.sampling import sample
    from dmlib.spec import DiffusionSpec

    spec = DiffusionSpec("linear", 20, "eps")
    sched = spec.make_schedule()
    model = _optimal_eps_model(sched)
    x, traj = sample(model, spec, (5, 2), steps=4, generator=torch.Generator().manual_seed(1),
                     dtype=D, return_trajectory=True)
    assert list(traj) == [20, 15, 10, 5, 0]  # tau_k = round(k T / S), then the samples
    s4, taus = respace(sched, 4)
    ref = ddpm_sample(RespacedModel(model, taus), s4, (5, 2), dtype=D,
                      generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        sample(model, spec, (5, 2), sampler="euler")
    with pytest.raises(ValueError, match="trained to predict 'eps'"):
        sample(model, spec, (5, 2), prediction_type="v")


def test_a_registered_step_function_is_used_by_the_one_loop(monkeypatch):
    """Adding a sampler is one function and one SAMPLERS entry (CONTRIBUTING's recipe)."""
    from dmlib import sampling
    from dmlib.spec import DiffusionSpec

    calls = []

    def mean_only(model, schedule, xt, t, ctx):  # DDPM without noise
        calls.append(t)
        out = model(xt, torch.full((xt.shape[0],), t))
        return p_mean_var(schedule, out, xt, t, ctx.prediction_type, ctx.variance)[0]

    monkeypatch.setitem(sampling.SAMPLERS, "mean_only", mean_only)
    spec = DiffusionSpec("linear", 10)
    model = _optimal_eps_model(spec.make_schedule())
    x_T = torch.randn(3, 2, dtype=D, generator=torch.Generator().manual_seed(0))
    a = sampling.sample(model, spec, (3, 2), "mean_only", x_T=x_T)
    b = sampling.sample(model, spec, (3, 2), "mean_only", x_T=x_T)
    assert calls == list(range(10, 0, -1)) * 2 and torch.equal(a, b)
