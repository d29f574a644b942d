"""Tests for dmlib.forward: closed forms written with numpy, Monte Carlo with fixed seeds."""

import numpy as np
import pytest
import torch

from dmlib.forward import q_mean_var, q_sample, q_step, q_step_mean_var
from dmlib.schedules import Schedule

D = torch.float64
BETAS = np.array([0.05, 0.1, 0.2, 0.15, 0.3, 0.25])  # T = 6, chosen by hand
T = len(BETAS)


@pytest.fixture
def sched():
    return Schedule(torch.tensor(BETAS, dtype=D))


def _alpha_bar(t):
    """alpha_bar_t = prod_{s<=t} (1 - beta_s) by an explicit loop (t = 0 gives 1)."""
    out = 1.0
    for s in range(1, t + 1):
        out *= 1.0 - BETAS[s - 1]
    return out


def test_q_step_mean_var_uses_variance_beta_not_sqrt_beta(sched):
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=D)
    for t in range(1, T + 1):
        mean, var = q_step_mean_var(sched, x, t)
        b = BETAS[t - 1]
        np.testing.assert_allclose(mean.numpy(), np.sqrt(1 - b) * x.numpy(), rtol=1e-14)
        assert var.shape == x.shape
        np.testing.assert_allclose(var.numpy(), b, rtol=1e-14)
        assert not np.allclose(var.numpy(), np.sqrt(b))  # the slide's sqrt(beta_t) is wrong


def test_q_step_with_given_eps_is_the_reparameterisation(sched):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g, dtype=D)
    eps = torch.randn(3, 4, generator=g, dtype=D)
    got = q_step(sched, x, 3, eps=eps)
    b = BETAS[2]
    np.testing.assert_allclose(got.numpy(), np.sqrt(1 - b) * x.numpy() + np.sqrt(b) * eps.numpy(),
                               rtol=1e-14)


def test_q_step_monte_carlo_moments(sched):
    # x_t | x_{t-1} has mean sqrt(1 - beta_t) x_{t-1} and variance beta_t (4 std errors).
    n = 200_000
    g = torch.Generator().manual_seed(1)
    x_prev = torch.full((n, 1), 1.5, dtype=D)
    xt = q_step(sched, x_prev, 5, generator=g)
    b = BETAS[4]
    assert abs(float(xt.mean()) - np.sqrt(1 - b) * 1.5) < 4 * np.sqrt(b / n)
    assert abs(float(xt.var()) - b) < 4 * b * np.sqrt(2 / n)


def test_iterated_steps_match_the_one_jump_closed_form(sched):
    # C3.2: t single steps from x0 have the law of q(x_t|x0) = N(sqrt(ab_t) x0, (1 - ab_t)).
    n = 200_000
    g = torch.Generator().manual_seed(2)
    x0 = torch.tensor([0.8, -1.3], dtype=D).expand(n, 2)
    x = x0
    for t in range(1, T + 1):
        x = q_step(sched, x, t, generator=g)
        if t in (1, 3, T):
            ab = _alpha_bar(t)
            jump = q_sample(sched, x0, t, generator=g)
            for sample in (x, jump):
                m, v = sample.mean(0).numpy(), sample.var(0).numpy()
                np.testing.assert_allclose(m, np.sqrt(ab) * x0[0].numpy(),
                                           atol=4 * np.sqrt((1 - ab) / n))
                np.testing.assert_allclose(v, 1 - ab, atol=4 * (1 - ab) * np.sqrt(2 / n))


def test_q_mean_var_closed_form(sched):
    x0 = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]], dtype=D)
    t = torch.tensor([0, 2, T])
    mean, var = q_mean_var(sched, x0, t)
    for i, ti in enumerate(t.tolist()):
        ab = _alpha_bar(ti)
        np.testing.assert_allclose(mean[i].numpy(), np.sqrt(ab) * x0[i].numpy(), rtol=1e-14)
        np.testing.assert_allclose(var[i].numpy(), 1 - ab, rtol=1e-12, atol=1e-15)


def test_q_sample_formula_per_example_t_and_t_zero(sched):
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 3, 2, generator=g, dtype=D)
    eps = torch.randn(4, 3, 2, generator=g, dtype=D)
    t = torch.tensor([1, 0, 4, T])
    got = q_sample(sched, x0, t, eps=eps)
    for i, ti in enumerate(t.tolist()):
        ab = _alpha_bar(ti)
        ref = np.sqrt(ab) * x0[i].numpy() + np.sqrt(1 - ab) * eps[i].numpy()
        np.testing.assert_allclose(got[i].numpy(), ref, rtol=1e-13, atol=1e-15)
    assert torch.equal(q_sample(sched, x0, 0, eps=eps), x0)


def test_seeded_generator_is_deterministic(sched):
    x0 = torch.zeros(5, 2, dtype=D)
    a = q_sample(sched, x0, 3, generator=torch.Generator().manual_seed(7))
    b = q_sample(sched, x0, 3, generator=torch.Generator().manual_seed(7))
    c = q_sample(sched, x0, 3, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_errors(sched):
    x = torch.zeros(4, 2, dtype=D)
    with pytest.raises(ValueError, match="shape mismatch: x0 has shape"):
        q_sample(sched, x, 1, eps=torch.zeros(4, 3, dtype=D))
    with pytest.raises(ValueError, match="shape mismatch: x_prev has shape"):
        q_step(sched, x, 1, eps=torch.zeros(2, dtype=D))
    with pytest.raises(ValueError, match="1-based t"):
        q_step(sched, x, 0)
    with pytest.raises(ValueError, match="1-based t"):
        q_step_mean_var(sched, x, 0)
    with pytest.raises(ValueError, match="t out of range"):
        q_sample(sched, x, T + 1)
    with pytest.raises(ValueError, match="t out of range"):
        q_mean_var(sched, x, -1)
    with pytest.raises(ValueError, match="t has 3 timesteps"):
        q_sample(sched, x, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer timesteps"):
        q_sample(sched, x, torch.tensor([1.0, 2.0, 3.0, 4.0]))


# ---- q_iterate: t single steps (chapter 3, C3.2) -------------------------------------------
def test_q_iterate_replays_the_step_formula_with_the_same_noise(sched):
    from dmlib.forward import q_iterate
    x0 = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-0.3, 0.7]], dtype=D)
    path = q_iterate(sched, x0, 4, generator=torch.Generator().manual_seed(5), return_all=True)
    assert path.shape == (5, 3, 2) and torch.equal(path[0], x0)
    g = torch.Generator().manual_seed(5)  # the same draws, in the same order, by hand
    x = x0.numpy().copy()
    for s in range(1, 5):
        eps = torch.randn(3, 2, generator=g, dtype=D).numpy()
        x = np.sqrt(1 - BETAS[s - 1]) * x + np.sqrt(BETAS[s - 1]) * eps
        np.testing.assert_allclose(path[s].numpy(), x, rtol=1e-13)
    last = q_iterate(sched, x0, 4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(last, path[-1])
    assert torch.equal(q_iterate(sched, x0, 0), x0)


def test_q_iterate_law_is_the_closed_form(sched):
    # Monte Carlo, 4 standard errors: mean sqrt(ab_T) x0, variance 1 - ab_T
    from dmlib.forward import q_iterate
    n = 100_000
    x0 = torch.full((n, 1), -0.9, dtype=D)
    xT = q_iterate(sched, x0, T, generator=torch.Generator().manual_seed(6))
    ab = _alpha_bar(T)
    assert abs(float(xT.mean()) - np.sqrt(ab) * -0.9) < 4 * np.sqrt((1 - ab) / n)
    assert abs(float(xT.var()) - (1 - ab)) < 4 * (1 - ab) * np.sqrt(2 / n)


def test_q_iterate_errors(sched):
    from dmlib.forward import q_iterate
    x = torch.zeros(2, 2, dtype=D)
    with pytest.raises(TypeError, match="single int"):
        q_iterate(sched, x, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="single int"):
        q_iterate(sched, x, True)
    with pytest.raises(ValueError, match="t out of range"):
        q_iterate(sched, x, T + 1)
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        q_iterate(sched, [[0.0]], 1)
