"""Chapter 5's exercise checks: independent solutions pass, stubs say NOT IMPLEMENTED YET, and
realistic wrong versions are rejected with the hint that names the mistake."""

import pytest
import torch

from dmlib import checks
from helpers import gather, stub  # tests/helpers.py


_stub = stub


_get = gather


def _ab(s, t, x, shift=0):
    return _get(torch.cumprod(1 - s.betas, 0), t, x, shift)  # alpha_bar from the betas


def _a(s, t, x, shift=0):
    return _get(1 - s.betas, t, x, shift)


def _b(s, t, x, shift=0):
    return _get(s.betas, t, x, shift)


CHECKS = [checks.check_x0_from_eps, checks.check_mu_from_eps, checks.check_v]


def test_checks_are_exported():
    from dmlib.course.checks import targets
    assert set(targets.__all__) == {"check_x0_from_eps", "check_mu_from_eps", "check_v"}
    for name in targets.__all__:
        assert name in checks.__all__


@pytest.mark.parametrize("check", CHECKS)
def test_stub_is_not_implemented(check, capsys):
    r = check(_stub)
    assert r.status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


# ---- x0 from eps ---------------------------------------------------------------------------
def test_x0_from_eps_reference_and_independent_solution_pass(capsys):
    from dmlib.targets import x0_from_eps
    assert checks.check_x0_from_eps(x0_from_eps).passed
    assert "PASS check_x0_from_eps" in capsys.readouterr().out

    def mine(s, xt, eps, t):
        ab = _ab(s, t, xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()
    assert checks.check_x0_from_eps(mine, verbose=False).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, xt, e, t: (xt - (1 - _a(s, t, xt)).sqrt() * e) / _a(s, t, xt).sqrt(), "single-step alpha_t"),
    (lambda s, xt, e, t: (xt - (1 - _ab(s, t, xt)) * e) / _ab(s, t, xt).sqrt(), "square root is missing"),
    (lambda s, xt, e, t: (xt - (1 - _ab(s, t, xt)).sqrt() * e) / _ab(s, t, xt), "square root is missing"),
    (lambda s, xt, e, t: (xt + (1 - _ab(s, t, xt)).sqrt() * e) / _ab(s, t, xt).sqrt(), "sign"),
    (lambda s, xt, e, t: (xt - (1 - _ab(s, t, xt, -1)).sqrt() * e) / _ab(s, t, xt, -1).sqrt(), "t off by one"),
    (lambda s, xt, e, t: (xt - (1 - _ab(s, t, xt)).sqrt() * e) * _ab(s, t, xt).sqrt(), "divides"),
    (lambda s, xt, e, t: xt - (1 - _ab(s, t, xt)).sqrt() * e, "did not undo the scaling"),
])
def test_x0_from_eps_mistakes(wrong, hint):
    r = checks.check_x0_from_eps(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_x0_from_eps_broadcasting_error_gets_a_hint():
    def no_reshape(s, xt, e, t):
        ab = torch.cumprod(1 - s.betas, 0)[torch.as_tensor(t)].to(xt.dtype)  # (B,) vs (B, 2)
        return (xt - (1 - ab).sqrt() * e) / ab.sqrt()
    r = checks.check_x0_from_eps(no_reshape, verbose=False)
    assert r.status in (checks.FAIL, checks.ERROR) and "reshape" in r.message, r.message


# ---- mu from eps ---------------------------------------------------------------------------
def _mu(s, xt, e, t, shift=0, pre=None, den=None):
    a, b, ab = _a(s, t, xt, shift), _b(s, t, xt, shift), _ab(s, t, xt, shift)
    pre = a.sqrt() if pre is None else pre(a, ab)
    den = (1 - ab).sqrt() if den is None else den(a, b, ab)
    return (xt - b / den * e) / pre


def test_mu_from_eps_reference_and_independent_solution_pass():
    from dmlib.posterior import posterior_mean_from_eps
    assert checks.check_mu_from_eps(posterior_mean_from_eps, verbose=False).passed
    assert checks.check_mu_from_eps(_mu, verbose=False).passed

    def coefficient_form(s, xt, e, t):  # via x0 and the posterior coefficients
        ab, abp = _ab(s, t, xt), _ab(s, t, xt, -1)
        a, b = _a(s, t, xt), _b(s, t, xt)
        x0 = (xt - (1 - ab).sqrt() * e) / ab.sqrt()
        return abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    assert checks.check_mu_from_eps(coefficient_form, verbose=False).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, xt, e, t: _mu(s, xt, e, t, pre=lambda a, ab: ab.sqrt()), "single-step alpha_t, not alpha_bar_t"),
    (lambda s, xt, e, t: _mu(s, xt, e, t, den=lambda a, b, ab: (1 - a).sqrt()), "cumulative alpha_bar_t"),
    (lambda s, xt, e, t: _mu(s, xt, e, t, den=lambda a, b, ab: 1 - ab), "square root is missing in the eps"),
    (lambda s, xt, e, t: _mu(s, xt, e, t, pre=lambda a, ab: a), "square root is missing in the prefactor"),
    (lambda s, xt, e, t: _mu(s, xt, e, t, shift=-1), "t off by one"),
    (lambda s, xt, e, t: (xt + _b(s, t, xt) / (1 - _ab(s, t, xt)).sqrt() * e) / _a(s, t, xt).sqrt(), "sign"),
    (lambda s, xt, e, t: (xt - (1 - _ab(s, t, xt)).sqrt() * e) / _ab(s, t, xt).sqrt(), "you returned x0"),
])
def test_mu_from_eps_mistakes(wrong, hint):
    r = checks.check_mu_from_eps(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


# ---- v ---------------------------------------------------------------------------------------
def test_v_reference_and_independent_solution_pass():
    from dmlib.targets import v_from_x0_eps
    assert checks.check_v(v_from_x0_eps, verbose=False).passed

    def rotation(s, x0, e, t):  # cos(phi) eps - sin(phi) x0 with phi = atan(sqrt((1-ab)/ab))
        phi = torch.atan(((1 - _ab(s, t, x0)) / _ab(s, t, x0)).sqrt())
        return torch.cos(phi) * e - torch.sin(phi) * x0
    assert checks.check_v(rotation, verbose=False).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, x0, e, t: _ab(s, t, x0).sqrt() * x0 - (1 - _ab(s, t, x0)).sqrt() * e, "swapped"),
    (lambda s, x0, e, t: (1 - _ab(s, t, x0)).sqrt() * x0 - _ab(s, t, x0).sqrt() * e, "sign is flipped"),
    (lambda s, x0, e, t: x0 * e, "LINEAR combination"),
    (lambda s, x0, e, t: _ab(s, t, x0).sqrt() * (1 - _ab(s, t, x0)).sqrt() * x0 * e, "LINEAR combination"),
    (lambda s, x0, e, t: _ab(s, t, x0) * e - (1 - _ab(s, t, x0)) * x0, "square root is missing"),
    (lambda s, x0, e, t: _a(s, t, x0).sqrt() * e - (1 - _a(s, t, x0)).sqrt() * x0, "single-step alpha_t"),
    (lambda s, x0, e, t: _ab(s, t, x0, -1).sqrt() * e - (1 - _ab(s, t, x0, -1)).sqrt() * x0, "t off by one"),
    (lambda s, x0, e, t: (1 - _ab(s, t, x0)).sqrt() * e - _ab(s, t, x0).sqrt() * x0, "sqrt(alpha_bar_t) goes with eps"),
])
def test_v_mistakes(wrong, hint):
    r = checks.check_v(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_v_wrong_shape_is_reported():
    r = checks.check_v(lambda s, x0, e, t: (x0 + e).sum(-1), verbose=False)
    assert r.status == checks.FAIL and "wrong shape" in r.message
