"""Tests for dmlib.targets: round trips are identities; consistency with numpy references."""

import itertools

import math

import numpy as np
import pytest
import torch

from dmlib.schedules import Schedule
from dmlib.targets import (PREDICTION_TYPES, ConvertedModel, convert, eps_from_x0, target_for, v_from_x0_eps,
                           x0_eps_from_v, x0_from_eps, x0_from_mu)

D = torch.float64
SCHEDULES = {"linear1000": lambda: Schedule.linear(1000),
             "cosine1000": lambda: Schedule.cosine(1000),
             "hand6": lambda: Schedule(torch.tensor([0.05, 0.1, 0.2, 0.15, 0.3, 0.25], dtype=D))}


def _setup(sched, seed=0, extra=60):
    """Many t (always including 1, 2 and T), random x0 and eps, x_t from the forward process."""
    g = torch.Generator().manual_seed(seed)
    T = sched.T
    t = torch.cat([torch.tensor([1, 2, T]), torch.randint(1, T + 1, (extra,), generator=g)])
    x0 = torch.randn(len(t), 3, 2, generator=g, dtype=D)
    eps = torch.randn(len(t), 3, 2, generator=g, dtype=D)
    return t, x0, eps


def _numpy_refs(sched, t, x0, eps):
    """x_t and all four targets, written directly in numpy from the betas (independent of
    dmlib's Schedule fields): alpha_bar by cumprod, mu in the slide's eps form."""
    betas = sched.betas[1:].numpy()
    ab = np.concatenate([[1.0], np.cumprod(1 - betas)])
    tn = t.numpy()
    a = np.sqrt(ab[tn])[:, None, None]
    s = np.sqrt(1 - ab[tn])[:, None, None]
    beta = np.concatenate([[0.0], betas])[tn][:, None, None]
    x0n, epsn = x0.numpy(), eps.numpy()
    xt = a * x0n + s * epsn
    mu = (xt - beta / s * epsn) / np.sqrt(1 - beta)
    v = a * epsn - s * x0n
    return xt, {"eps": epsn, "x0": x0n, "mu": mu, "v": v}


@pytest.mark.parametrize("name", SCHEDULES)
def test_round_trips_are_identities(name):
    sched = SCHEDULES[name]()
    t, x0, eps = _setup(sched)
    xt, _ = _numpy_refs(sched, t, x0, eps)
    xt = torch.from_numpy(xt)
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(x0.shape, generator=g, dtype=D)  # arbitrary predictions, not only true ones
    for src, dst in itertools.product(PREDICTION_TYPES, PREDICTION_TYPES):
        there = convert(sched, pred, xt, t, src, dst)
        back = convert(sched, there, xt, t, dst, src)
        torch.testing.assert_close(back, pred, rtol=0, atol=1e-10, msg=f"{src}->{dst}->{src}")


@pytest.mark.parametrize("name", SCHEDULES)
def test_conversions_map_true_targets_to_true_targets(name):
    sched = SCHEDULES[name]()
    t, x0, eps = _setup(sched, seed=1)
    xt_np, refs = _numpy_refs(sched, t, x0, eps)
    xt = torch.from_numpy(xt_np)
    for src, dst in itertools.product(PREDICTION_TYPES, PREDICTION_TYPES):
        got = convert(sched, torch.from_numpy(refs[src]), xt, t, src, dst)
        np.testing.assert_allclose(got.numpy(), refs[dst], rtol=0, atol=1e-9,
                                   err_msg=f"{src}->{dst}")
    for kind in PREDICTION_TYPES:
        got = target_for(kind, sched, x0, eps, xt, t)
        np.testing.assert_allclose(got.numpy(), refs[kind], rtol=0, atol=1e-10, err_msg=kind)


def test_helpers_against_numpy():
    sched = SCHEDULES["hand6"]()
    t, x0, eps = _setup(sched, seed=2, extra=10)
    xt_np, refs = _numpy_refs(sched, t, x0, eps)
    xt = torch.from_numpy(xt_np)
    torch.testing.assert_close(x0_from_eps(sched, xt, eps, t), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(eps_from_x0(sched, xt, x0, t), eps, rtol=0, atol=1e-12)
    v = v_from_x0_eps(sched, x0, eps, t)
    np.testing.assert_allclose(v.numpy(), refs["v"], atol=1e-13)
    x0b, epsb = x0_eps_from_v(sched, xt, v, t)
    torch.testing.assert_close(x0b, x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(epsb, eps, rtol=0, atol=1e-12)
    torch.testing.assert_close(x0_from_mu(sched, xt, torch.from_numpy(refs["mu"]), t), x0,
                               rtol=0, atol=1e-12)


def test_v_is_a_rotation_of_x0_and_eps():
    # ||v||^2 + ||x_t||^2 = ||x0||^2 + ||eps||^2 (the map is orthogonal).
    sched = SCHEDULES["linear1000"]()
    t, x0, eps = _setup(sched, seed=3)
    xt_np, refs = _numpy_refs(sched, t, x0, eps)
    lhs = (refs["v"] ** 2).sum((1, 2)) + (xt_np ** 2).sum((1, 2))
    rhs = (x0.numpy() ** 2).sum((1, 2)) + (eps.numpy() ** 2).sum((1, 2))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_at_t_equal_one_mu_is_x0():
    sched = SCHEDULES["hand6"]()
    x0 = torch.tensor([[0.1, -0.3]], dtype=D)
    xt = torch.tensor([[2.0, 1.0]], dtype=D)
    torch.testing.assert_close(convert(sched, x0, xt, 1, "x0", "mu"), x0, rtol=0, atol=1e-15)


def test_unknown_prediction_type_lists_valid_ones():
    sched = SCHEDULES["hand6"]()
    x = torch.zeros(2, 2, dtype=D)
    valid = "'eps', 'x0', 'mu', 'v'"
    with pytest.raises(ValueError,
                       match=f"unknown prediction_type 'score'; valid ones are {valid}"):
        target_for("score", sched, x, x, x, 1)
    with pytest.raises(ValueError, match="unknown source 'x_0'"):
        convert(sched, x, x, 1, "x_0", "eps")
    with pytest.raises(ValueError, match="unknown target 'noise'"):
        convert(sched, x, x, 1, "eps", "noise")


def test_errors_on_t_and_shapes():
    sched = SCHEDULES["hand6"]()
    x = torch.zeros(2, 2, dtype=D)
    for src, dst in [("eps", "eps"), ("x0", "eps"), ("mu", "v")]:
        with pytest.raises(ValueError, match="1-based t"):
            convert(sched, x, x, 0, src, dst)
    with pytest.raises(ValueError, match="1-based t"):
        target_for("eps", sched, x, x, x, 0)
    with pytest.raises(ValueError, match="t out of range"):
        x0_from_eps(sched, x, x, 7)
    with pytest.raises(ValueError, match="shape mismatch: xt has shape"):
        convert(sched, torch.zeros(2, 3, dtype=D), x, 1, "eps", "x0")
    with pytest.raises(ValueError, match="t has 3 timesteps"):
        target_for("x0", sched, x, x, x, torch.tensor([1, 2, 3]))


# ---- chapter 5 additions: linear targets, their ELBO weights, per-t errors ------------------
from dmlib.targets import elbo_weight, error_per_t, target_coefficients, x0_error_factor  # noqa: E402


@pytest.mark.parametrize("name", SCHEDULES)
def test_target_coefficients_reproduce_the_targets(name):
    sched = SCHEDULES[name]()
    t, x0, eps = _setup(sched, seed=7)
    _, refs = _numpy_refs(sched, t, x0, eps)
    for kind in PREDICTION_TYPES:
        c0, ce = target_coefficients(sched, kind)
        assert c0.shape == ce.shape == (sched.T + 1,)
        y = c0[t][:, None, None].numpy() * x0.numpy() + ce[t][:, None, None].numpy() * eps.numpy()
        np.testing.assert_allclose(y, refs[kind], rtol=0, atol=1e-10, err_msg=kind)


@pytest.mark.parametrize("name", SCHEDULES)
def test_x0_error_factor_relates_errors_for_fixed_xt(name):
    # Another x0' with the same x_t implies eps' = (x_t - a x0') / s; the targets built from
    # (x0', eps') in numpy differ from the true ones by k(t) (x0 - x0').
    sched = SCHEDULES[name]()
    t, x0, eps = _setup(sched, seed=8)
    xt, refs = _numpy_refs(sched, t, x0, eps)
    ab = np.cumprod(1 - sched.betas[1:].numpy())
    a = np.sqrt(ab[t.numpy() - 1])[:, None, None]
    s = np.sqrt(1 - ab[t.numpy() - 1])[:, None, None]
    x0b = x0.numpy() + np.random.default_rng(0).normal(size=x0.shape)
    epsb = (xt - a * x0b) / s
    _, refs_b = _numpy_refs(sched, t, torch.from_numpy(x0b), torch.from_numpy(epsb))
    for kind in PREDICTION_TYPES:
        k = x0_error_factor(sched, *target_coefficients(sched, kind))
        assert k.shape == (sched.T + 1,) and math.isnan(k[0])
        np.testing.assert_allclose(refs[kind] - refs_b[kind],
                                   k[t].numpy()[:, None, None] * (x0.numpy() - x0b),
                                   rtol=1e-7, atol=1e-9, err_msg=kind)


@pytest.mark.parametrize("sigma", ["beta", "beta_tilde"])
def test_elbo_weight_matches_closed_forms(sigma):
    sched = Schedule.linear(200)
    b = sched.betas[1:].numpy()
    ab = np.cumprod(1 - b)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    var = b.copy() if sigma == "beta" else (1 - ab_prev) / (1 - ab) * b
    var[0] = b[0]  # sigma_1^2 = beta_1 for both choices
    c_eps = b ** 2 / (2 * var * (1 - b) * (1 - ab))
    closed = {"eps": c_eps, "x0": c_eps * ab / (1 - ab), "v": c_eps * ab, "mu": 1 / (2 * var)}
    for kind, ref in closed.items():
        w = elbo_weight(sched, *target_coefficients(sched, kind), variance=sigma)
        assert math.isnan(w[0])
        np.testing.assert_allclose(w[1:].numpy(), ref, rtol=1e-10, err_msg=kind)
    # an arbitrary combination y = x0 + eps: k = 1 - sqrt(SNR), weight c_x0 / k^2
    one = torch.ones(201, dtype=D)
    w = elbo_weight(sched, one, one, variance=sigma)
    np.testing.assert_allclose(w[1:].numpy(), closed["x0"] / (1 - np.sqrt(ab / (1 - ab))) ** 2,
                               rtol=1e-8)


def test_elbo_weight_rejects_multiples_of_xt_and_bad_shapes():
    sched = SCHEDULES["hand6"]()
    with pytest.raises(ValueError, match="multiple of x_t at t = 1"):
        elbo_weight(sched, 2 * sched.sqrt_alpha_bar, 2 * sched.sqrt_one_minus_alpha_bar)
    with pytest.raises(ValueError, match=r"coef_x0 must be a tensor of shape \(T \+ 1,\) = \(7,\)"):
        x0_error_factor(sched, torch.ones(6, dtype=D), torch.ones(7, dtype=D))
    with pytest.raises(ValueError, match="coef_eps must be a tensor"):
        elbo_weight(sched, torch.ones(7, dtype=D), [1.0] * 7)
    with pytest.raises(ValueError, match="unknown prediction_type"):
        target_coefficients(sched, "score")
    with pytest.raises(ValueError, match="unknown variance"):
        elbo_weight(sched, *target_coefficients(sched, "eps"), variance="tilde")


def test_error_per_t_exact_cases():
    sched = SCHEDULES["hand6"]()
    c = torch.tensor([0.7, -1.2], dtype=D)
    x0 = c.expand(300, 2).clone()  # point-mass data: the exact eps is computable from x_t

    def exact_eps(xt, t):
        ab = torch.cumprod(1 - sched.betas, 0)[t][:, None]
        return (xt - ab.sqrt() * c) / (1 - ab).sqrt()

    g = torch.Generator().manual_seed(0)
    err = error_per_t(exact_eps, sched, x0, "eps", generator=g, max_batch=1)  # one t per call
    assert err.shape == (7,) and torch.isnan(err[0])
    assert err[1:].abs().max() < 1e-20
    # a model that outputs 0, asked for x0: the error is mean(x0^2) at every t, exactly
    zero = lambda xt, t: torch.zeros_like(xt)  # noqa: E731
    err = error_per_t(zero, sched, x0, "x0", generator=g)
    torch.testing.assert_close(err[1:], torch.full((6,), (c ** 2).mean().item(), dtype=D))


def test_error_per_t_monte_carlo_eps():
    # zero prediction of eps: E[eps^2] = 1; mean of 2 x 4000 chi^2_1 draws has std 0.016
    sched = SCHEDULES["hand6"]()
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    err = error_per_t(lambda xt, t: torch.zeros_like(xt), sched, x0, "eps",
                      generator=torch.Generator().manual_seed(2))
    assert (err[1:] - 1).abs().max() < 0.08  # 5 standard deviations
    with pytest.raises(ValueError, match="batch dimension"):
        error_per_t(lambda xt, t: xt, sched, torch.tensor(1.0), "eps")


@pytest.mark.parametrize("source,target", [("v", "eps"), ("eps", "v"), ("x0", "eps"), ("v", "mu")])
def test_converted_model_returns_the_true_target(source, target):
    """A 'model' that returns the true ``source`` target for known (x0, eps), wrapped, returns
    the true ``target`` (numpy references), also through RespacedModel and in float64 after
    .double(); an unknown type is refused by name."""
    from dmlib.respacing import RespacedModel

    sched = SCHEDULES["cosine1000"]()
    t, x0, eps = _setup(sched, seed=3)
    xt, refs = _numpy_refs(sched, t, x0, eps)
    xt = torch.from_numpy(xt)

    class Oracle(torch.nn.Module):
        def forward(self, x, tt):
            assert torch.equal(tt, t) and torch.equal(x, xt)
            return torch.from_numpy(refs[source])

    wrapped = ConvertedModel(Oracle(), sched, source, target).double()
    np.testing.assert_allclose(wrapped(xt, t).numpy(), refs[target], rtol=1e-6, atol=1e-6)
    taus = torch.arange(1, sched.T + 1)  # respacing to all T steps: step k is time k
    np.testing.assert_allclose(RespacedModel(wrapped, taus)(xt, t).numpy(), refs[target],
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="velocity"):
        ConvertedModel(Oracle(), sched, "velocity", "eps")
