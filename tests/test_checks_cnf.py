"""Chapter 8 checks: independent solutions (written here from the equations) pass, stubs say
NOT IMPLEMENTED YET, and realistic mistakes fail with the hint that points at them."""

import math

import pytest

from dmlib import checks
from helpers import stub  # tests/helpers.py


def drift(eps, x, beta, ab):
    return -0.5 * beta * (x - eps / math.sqrt(1 - ab))


def ddim(eps, xt, ab, abp, eta, z, x0_pow=0.5, now=False, no_sigma_dir=False, var=False):
    x0 = (xt - (1 - ab) ** x0_pow * eps) / math.sqrt(ab)
    s2 = eta ** 2 * (1 - abp) / (1 - ab) * (1 - ab / abp)
    s = s2 if var else math.sqrt(s2)
    d = math.sqrt(1 - abp - (0 if no_sigma_dir else s * s))
    return math.sqrt(ab if now else abp) * x0 + d * eps + s * z


def heun(f, x, s, sn, kind="heun"):
    d = f(x, s)
    xe = x + (sn - s) * d
    if kind == "euler" or sn == 0:
        return xe
    if kind == "end":
        return x + (sn - s) * f(xe, sn)
    if kind == "same":
        return x + (sn - s) * 0.5 * (d + f(x, sn))
    return x + (sn - s) * 0.5 * (d + f(xe, sn))


def test_solutions_pass_and_stubs_are_reported():
    assert checks.check_pf_ode_drift(drift, verbose=False).passed
    assert checks.check_ddim_step(ddim, verbose=False).passed
    assert checks.check_heun_step(heun, verbose=False).passed
    assert checks.check_heun_step(stub, verbose=False).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong,hint", [
    (lambda e, x, b, a: -0.5 * b * (x + e / math.sqrt(1 - a)), "MINUS eps"),
    (lambda e, x, b, a: -0.5 * b * x + b * e / math.sqrt(1 - a), "REVERSE SDE"),
    (lambda e, x, b, a: -0.5 * b * (x - e / (1 - a)), "not by the variance"),
    (lambda e, x, b, a: -b * (x - e / math.sqrt(1 - a)), "factor 1/2"),
])
def test_drift_mistakes(wrong, hint):
    r = checks.check_pf_ode_drift(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message


@pytest.mark.parametrize("kw,hint", [
    (dict(x0_pow=1.0), "standard deviation: x_t - sqrt"),
    (dict(now=True), "EARLIER time"),
    (dict(no_sigma_dir=True), "part of the noise is fresh"),
    (dict(var=True), "sigma is a standard deviation"),
])
def test_ddim_mistakes(kw, hint):
    r = checks.check_ddim_step(lambda *a: ddim(*a, **kw), verbose=False)
    assert r.status == checks.FAIL and hint in r.message


@pytest.mark.parametrize("kind,hint", [("euler", "Euler's step"), ("end", "only the slope at the end"),
                                       ("same", "not at the starting point")])
def test_heun_mistakes(kind, hint):
    r = checks.check_heun_step(lambda *a: heun(*a, kind=kind), verbose=False)
    assert r.status == checks.FAIL and hint in r.message


def test_heun_last_step_mistake():
    def no_euler_at_end(f, x, s, sn):
        d = f(x, s)
        xe = x + (sn - s) * d
        return x + (sn - s) * 0.5 * (d + f(xe, sn))
    r = checks.check_heun_step(no_euler_at_end, verbose=False)
    assert r.status == checks.FAIL and "last step" in r.message
