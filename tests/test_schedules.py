"""Schedules against independent references (explicit loops, the papers' closed forms)."""

import math

import numpy as np
import pytest
import torch

from dmlib.schedules import Schedule, check_betas, cosine_betas, linear_betas, make_schedule


def test_linear_matches_ddpm_values():
    b = linear_betas(1000)
    assert b.shape == (1000,)
    assert float(b[0]) == pytest.approx(1e-4)
    assert float(b[-1]) == pytest.approx(0.02)
    # evenly spaced
    d = torch.diff(b)
    assert torch.allclose(d, d[0].expand_as(d))


def test_linear_scaled_for_other_T():
    b = linear_betas(100)
    assert float(b[0]) == pytest.approx(1e-3) and float(b[-1]) == pytest.approx(0.2)


def test_cosine_alpha_bar_matches_closed_form():
    T, s = 200, 0.008
    sched = Schedule.cosine(T, s)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in [1, 10, 100, 150]:
        assert float(sched.alpha_bar[t]) == pytest.approx(f(t) / f(0), rel=1e-9)
    assert float(sched.betas[-1]) <= 0.999


def test_schedule_quantities_against_loops():
    sched = Schedule.linear(50)
    betas = [0.0] + linear_betas(50).tolist()
    ab = 1.0
    for t in range(1, 51):
        ab_prev = ab
        ab *= 1 - betas[t]
        assert float(sched.alpha_bar[t]) == pytest.approx(ab, rel=1e-12)
        assert float(sched.alpha_bar_prev[t]) == pytest.approx(ab_prev, rel=1e-12)
        assert float(sched.alphas[t]) == pytest.approx(1 - betas[t])
        assert float(sched.snr[t]) == pytest.approx(ab / (1 - ab), rel=1e-10)
        bt = (1 - ab_prev) / (1 - ab) * betas[t]
        assert float(sched.posterior_variance[t]) == pytest.approx(bt, rel=1e-10, abs=1e-300)
        assert float(sched.posterior_mean_coef_x0[t]) == pytest.approx(
            math.sqrt(ab_prev) * betas[t] / (1 - ab), rel=1e-10)
        assert float(sched.posterior_mean_coef_xt[t]) == pytest.approx(
            math.sqrt(1 - betas[t]) * (1 - ab_prev) / (1 - ab), rel=1e-10, abs=1e-300)
    # t = 0 is the clean data; beta_tilde_1 = 0 and the clipped log-variance copies t = 2
    assert float(sched.alpha_bar[0]) == 1.0 and float(sched.betas[0]) == 0.0
    assert float(sched.posterior_variance[1]) == 0.0
    assert float(sched.posterior_log_variance_clipped[1]) == pytest.approx(
        math.log(float(sched.posterior_variance[2])))
    assert math.isinf(float(sched.snr[0]))
    # entry 0 convention: NaN where the quantity has no value at t = 0
    for table in (sched.posterior_variance, sched.posterior_log_variance_clipped,
                  sched.posterior_mean_coef_x0, sched.posterior_mean_coef_xt):
        assert math.isnan(float(table[0]))
    assert float(sched.alpha_bar_prev[0]) == 1.0  # the empty product


def test_snr_is_monotone_and_alpha_bar_decreasing():
    for sched in [Schedule.linear(1000), Schedule.cosine(1000)]:
        assert (torch.diff(sched.alpha_bar) < 0).all()
        assert (torch.diff(sched.snr[1:]) < 0).all()
        assert sched.alpha_bar[-1] < 1e-4  # x_T is (nearly) pure noise


def test_extract_broadcasts_and_indexes_by_t():
    sched = Schedule.linear(10)
    x = torch.zeros(3, 1, 4, 4, dtype=torch.float32)
    t = torch.tensor([1, 5, 10])
    out = sched.extract(sched.alpha_bar, t, x)
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    np.testing.assert_allclose(out.flatten().numpy(), sched.alpha_bar[[1, 5, 10]].numpy(), rtol=1e-6)
    assert sched.extract(sched.alpha_bar, 4, x).shape == ()


def test_sample_timesteps_uniform_in_1_T():
    sched = Schedule.linear(5)
    t = sched.sample_timesteps(20000, generator=torch.Generator().manual_seed(0))
    assert int(t.min()) == 1 and int(t.max()) == 5
    counts = torch.bincount(t, minlength=6)[1:].double() / 20000
    assert torch.allclose(counts, torch.full((5,), 0.2, dtype=torch.float64), atol=0.015)


def test_make_schedule_names():
    assert make_schedule("cosine", 10).name == "cosine"
    with pytest.raises(ValueError, match="unknown schedule 'sigmoidal'"):
        make_schedule("sigmoidal")


# ---- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("betas, msg", [
    (torch.tensor([0.1, 0.0, 0.2]), r"strictly inside \(0, 1\).*beta_2 = 0"),
    (torch.tensor([0.1, 1.0]), r"strictly inside \(0, 1\).*beta_2 = 1"),
    (torch.tensor([-0.1]), r"strictly inside \(0, 1\).*beta_1 = -0.1"),
    (torch.tensor([[0.1, 0.2]]), r"1-D tensor of shape \(T,\)"),
    (torch.tensor([0.1, float("nan")]), "NaN or inf"),
])
def test_bad_betas(betas, msg):
    with pytest.raises(ValueError, match=msg):
        Schedule(betas)


@pytest.mark.parametrize("T", [0, -3, 2.5, True])
def test_bad_T(T):
    with pytest.raises(ValueError, match="positive int"):
        Schedule.linear(T)


def test_t_zero_is_explained():
    sched = Schedule.linear(10)
    with pytest.raises(ValueError, match=r"t out of range.*got 0.*1-based.*add 1"):
        sched.extract(sched.alpha_bar, torch.tensor([0, 3]), torch.zeros(2, 2))


def test_t_above_T():
    sched = Schedule.linear(10)
    with pytest.raises(ValueError, match=r"t out of range: expected 1 <= t <= T=10, got 11"):
        sched.timesteps(11)


def test_t_float_dtype_and_batch_mismatch():
    sched = Schedule.linear(10)
    with pytest.raises(TypeError, match="integer timesteps"):
        sched.timesteps(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="t has 3 timesteps but x has shape \\(2, 2\\)"):
        sched.extract(sched.alpha_bar, torch.tensor([1, 2, 3]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="scalar or a 1-D tensor"):
        sched.timesteps(torch.ones(2, 2, dtype=torch.long))


def test_check_betas_accepts_valid():
    assert check_betas(cosine_betas(10)).shape == (10,)


# ---- the sigmoid schedule and the cosine closed form (chapter 3) ------------------------
def _sigmoid_alpha_bar(t, T, start=-3.0, end=3.0, tau=1.0):
    """Chen (2023), Algorithm 1, written with math (independent of torch)."""
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    v_start, v_end = sig(start / tau), sig(end / tau)
    return (v_end - sig(((t / T) * (end - start) + start) / tau)) / (v_end - v_start)


@pytest.mark.parametrize("T, start, end, tau", [(1000, -3, 3, 1.0), (50, 0, 3, 0.3), (7, -3, 3, 1.1)])
def test_sigmoid_alpha_bar_matches_closed_form(T, start, end, tau):
    sched = Schedule.sigmoid(T, start, end, tau)
    assert sched.name == "sigmoid" and sched.T == T
    for t in sorted({1, T // 3, T // 2, T - 1}):
        if t >= 1:
            assert float(sched.alpha_bar[t]) == pytest.approx(_sigmoid_alpha_bar(t, T, start, end, tau),
                                                              rel=1e-9)
    # alpha_bar(T) = 0 in closed form; the capped last beta leaves 0.1 % of alpha_bar_{T-1}
    assert float(sched.betas[-1]) == pytest.approx(0.999)
    assert (torch.diff(sched.alpha_bar) < 0).all()


def test_sigmoid_is_symmetric_about_the_middle():
    # with start = -end the sigmoid curve is point-symmetric: alpha_bar(T/2) = 1/2 and
    # alpha_bar(t) + alpha_bar(T - t) = 1
    sched = Schedule.sigmoid(1000)
    assert float(sched.alpha_bar[500]) == pytest.approx(0.5, abs=1e-12)
    assert float(sched.alpha_bar[200] + sched.alpha_bar[800]) == pytest.approx(1.0, abs=1e-12)


def test_make_schedule_knows_sigmoid_and_lists_it():
    assert make_schedule("sigmoid", 20).name == "sigmoid"
    with pytest.raises(ValueError, match=r"\['cosine', 'linear', 'sigmoid'\]"):
        make_schedule("quadratic")


@pytest.mark.parametrize("kwargs, msg", [
    (dict(start=3.0, end=-3.0), "start < end"),
    (dict(tau=0.0), "tau > 0"),
    (dict(tau=-1.0), "tau > 0"),
    (dict(tau=1e-3), "saturates"),
])
def test_sigmoid_bad_input(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        Schedule.sigmoid(100, **kwargs)


def test_sigmoid_bad_max_beta_and_T():
    from dmlib.schedules import sigmoid_betas
    with pytest.raises(ValueError, match="max_beta"):
        sigmoid_betas(10, max_beta=1.0)
    with pytest.raises(ValueError, match="positive int"):
        sigmoid_betas(0)


def test_cosine_alpha_bar_closed_form_and_unclipped():
    from dmlib.schedules import cosine_alpha_bar
    T, s = 40, 0.008
    ab = cosine_alpha_bar(T, s)
    assert ab.shape == (T + 1,) and float(ab[0]) == 1.0
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in range(T + 1):
        assert float(ab[t]) == pytest.approx(f(t) / f(0), rel=1e-9, abs=1e-30)
    # Schedule.cosine agrees except where beta_t hit the 0.999 cap (only the last step)
    sched = Schedule.cosine(T, s)
    assert torch.allclose(sched.alpha_bar[:T], ab[:T], rtol=1e-12)


@pytest.mark.parametrize("s", [-0.1, float("nan"), "0.008"])
def test_cosine_alpha_bar_bad_offset(s):
    from dmlib.schedules import cosine_alpha_bar
    with pytest.raises(ValueError, match="offset s"):
        cosine_alpha_bar(10, s)
