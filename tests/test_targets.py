"""Tests for dmlib.targets: round trips are identities; consistency with numpy references."""

import itertools

import numpy as np
import pytest
import torch

from dmlib.schedules import Schedule
from dmlib.targets import (PREDICTION_TYPES, convert, eps_from_x0, target_for, v_from_x0_eps,
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
