"""Checks of the exercises that need an idea (3.5, 5.4, 6.4): independent solutions pass,
stubs say NOT IMPLEMENTED YET, and realistic wrong versions get the hint that names the
mistake."""

import pytest
import torch

from dmlib import checks
from helpers import gather, stub  # tests/helpers.py


def _ab(s, t, x, shift=0):
    return gather(torch.cumprod(1 - s.betas, 0), t, x, shift)  # alpha_bar from the betas


def _a(s, t, x):
    return gather(1 - s.betas, t, x)


CHECKS = [checks.check_q_jump, checks.check_optimal_eps_std_normal, checks.check_point_mass_eps]


def test_checks_are_exported():
    from dmlib.course.checks import ideas
    assert set(ideas.__all__) == {"check_q_jump", "check_optimal_eps_std_normal",
                                  "check_point_mass_eps"}
    for name in ideas.__all__:
        assert name in checks.__all__ and callable(getattr(checks, name))


@pytest.mark.parametrize("check", CHECKS)
def test_stub_is_not_implemented(check, capsys):
    r = check(stub)
    assert r.status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


# ---- 3.5: q(x_t | x_s) -------------------------------------------------------------------
def test_q_jump_independent_solution_passes(capsys):
    def mine(s, xs, s_, t, eps):
        r = _ab(s, t, xs) / _ab(s, s_, xs)
        return r.sqrt() * xs + (1 - r).sqrt() * eps
    assert checks.check_q_jump(mine).passed
    assert "PASS check_q_jump" in capsys.readouterr().out

    def by_product(s, xs, s_, t, eps):  # the product of alphas s+1..t, one example at a time
        s_b = torch.as_tensor(s_).expand(xs.shape[0]) if torch.as_tensor(s_).dim() == 0 else s_
        t_b = torch.as_tensor(t).expand(xs.shape[0]) if torch.as_tensor(t).dim() == 0 else t
        r = torch.stack([torch.prod(1 - s.betas[int(a) + 1:int(b) + 1]) for a, b in zip(s_b, t_b)])
        r = r.to(xs.dtype).reshape(-1, *[1] * (xs.dim() - 1))
        return r.sqrt() * xs + (1 - r).sqrt() * eps
    assert checks.check_q_jump(by_product, verbose=False).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, xs, s_, t, e: _ab(s, t, xs).sqrt() * xs + (1 - _ab(s, t, xs)).sqrt() * e, "as if from x_0"),
    (lambda s, xs, s_, t, e: (_ab(s, t, xs) / _ab(s, s_, xs)).sqrt() * xs
     + (_ab(s, s_, xs) - _ab(s, t, xs)).sqrt() * e, "noise variance is wrong"),
    (lambda s, xs, s_, t, e: (_ab(s, t, xs) / _ab(s, s_, xs)) * xs
     + (1 - _ab(s, t, xs) / _ab(s, s_, xs)) * e, "square roots are missing"),
    (lambda s, xs, s_, t, e: (_ab(s, t, xs) / _ab(s, s_, xs, 1)).sqrt() * xs
     + (1 - _ab(s, t, xs) / _ab(s, s_, xs, 1)).sqrt() * e, "one step late"),
])
def test_q_jump_mistakes(wrong, hint):
    r = checks.check_q_jump(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_q_jump_broadcasting_error_gets_a_hint():
    def no_reshape(s, xs, s_, t, e):
        ab = torch.cumprod(1 - s.betas, 0).to(xs.dtype)
        r = ab[torch.as_tensor(t)] / ab[torch.as_tensor(s_)]  # (B,) against (B, 2)
        return r.sqrt() * xs + (1 - r).sqrt() * e
    r = checks.check_q_jump(no_reshape, verbose=False)
    assert r.status in (checks.FAIL, checks.ERROR) and "reshape" in r.message, r.message


# ---- 5.4: E[eps | x_t] for standard normal data -------------------------------------------
def test_optimal_eps_std_normal_independent_solutions_pass(capsys):
    def mine(s, xt, t):
        return (1 - _ab(s, t, xt)).sqrt() * xt
    assert checks.check_optimal_eps_std_normal(mine).passed
    assert "PASS check_optimal_eps_std_normal" in capsys.readouterr().out

    from dmlib.optimal import GaussianData, OptimalDenoiser

    def via_dmlib(s, xt, t):  # dmlib's optimal denoiser for N(0, I) data, flattened to (B, d)
        d = xt[0].numel()
        model = OptimalDenoiser(GaussianData(torch.zeros(d), torch.ones(d)), s, "eps")
        tt = torch.as_tensor(t).expand(xt.shape[0]) if torch.as_tensor(t).dim() == 0 else t
        return model(xt.reshape(xt.shape[0], -1), tt).reshape(xt.shape)
    assert checks.check_optimal_eps_std_normal(via_dmlib, verbose=False).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, xt, t: xt / (1 - _ab(s, t, xt)).sqrt(), "as if x0 were 0"),
    (lambda s, xt, t: _ab(s, t, xt).sqrt() * xt, "E[x0 | x_t]"),
    (lambda s, xt, t: (1 - _ab(s, t, xt)) * xt, "square root is missing"),
    (lambda s, xt, t: xt.clone(), "only part of x_t is noise"),
    (lambda s, xt, t: (1 - _a(s, t, xt)).sqrt() * xt, "single-step alpha_t"),
])
def test_optimal_eps_std_normal_mistakes(wrong, hint):
    r = checks.check_optimal_eps_std_normal(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


# ---- 6.4: eps for a single data point -------------------------------------------------------
def test_point_mass_eps_independent_solution_passes(capsys):
    def mine(s, xt, t, c):
        ab = _ab(s, t, xt)
        return (xt - ab.sqrt() * c) / (1 - ab).sqrt()
    assert checks.check_point_mass_eps(mine).passed
    assert "PASS check_point_mass_eps" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, xt, t, c: (xt - c) / (1 - _ab(s, t, xt)).sqrt(), "subtracted c itself"),
    (lambda s, xt, t, c: xt - _ab(s, t, xt).sqrt() * c, "divide by the noise's scale"),
    (lambda s, xt, t, c: (xt - _ab(s, t, xt) * c) / (1 - _ab(s, t, xt)), "square roots are missing"),
    (lambda s, xt, t, c: (_ab(s, t, xt).sqrt() * c - xt) / (1 - _ab(s, t, xt)).sqrt(), "sign"),
    (lambda s, xt, t, c: (xt - _a(s, t, xt).sqrt() * c) / (1 - _a(s, t, xt)).sqrt(), "single-step alpha_t"),
    (lambda s, xt, t, c: c.expand_as(xt).clone(), "x0-prediction"),
])
def test_point_mass_eps_mistakes(wrong, hint):
    r = checks.check_point_mass_eps(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message
