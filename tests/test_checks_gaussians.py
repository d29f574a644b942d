"""Chapter 1 exercise checks: the reference passes, a stub says NOT IMPLEMENTED YET, and
realistic wrong implementations are rejected with a hint that points at the mistake."""

import math

import pytest
import torch

from dmlib import checks
from helpers import stub  # tests/helpers.py


_stub = stub


def _run(check, fn):
    return check(fn, verbose=False)


# ---- exercise 1.1: kl_gaussian -----------------------------------------------------------
def kl_ok(m1, v1, m2, v2):  # written independently of dmlib, in the slide's form
    return (v1 + (m1 - m2) ** 2) / (2 * v2) + torch.log(v2.sqrt() / v1.sqrt()) - 0.5


def test_kl_gaussian_reference_independent_and_stub(capsys):
    from dmlib.gaussians import normal_kl
    assert _run(checks.check_kl_gaussian, normal_kl).passed
    r = checks.check_kl_gaussian(kl_ok)
    assert r.passed and "PASS check_kl_gaussian" in capsys.readouterr().out
    r = checks.check_kl_gaussian(_stub)
    assert r.status == checks.NOT_IMPLEMENTED and "NOT IMPLEMENTED YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    # arguments reversed
    (lambda m1, v1, m2, v2: kl_ok(m2, v2, m1, v1), "KL is not symmetric"),
    # std and variance swapped: the student treats the variances as standard deviations
    (lambda m1, v1, m2, v2: (v1 ** 2 + (m1 - m2) ** 2) / (2 * v2 ** 2) + torch.log(v2 / v1) - 0.5,
     "you squared the variances"),
    (lambda m1, v1, m2, v2: (v1.sqrt() + (m1 - m2) ** 2) / (2 * v2.sqrt())
     + 0.25 * torch.log(v2 / v1) - 0.5, "standard deviations where the formula has variances"),
    # log of the variance where the log of the std belongs
    (lambda m1, v1, m2, v2: (v1 + (m1 - m2) ** 2) / (2 * v2) + torch.log(v2 / v1) - 0.5,
     "without the 1/2"),
    (lambda m1, v1, m2, v2: (v1 + (m1 - m2) ** 2) / (2 * v2) + 0.5 * torch.log(v1 / v2) - 0.5,
     "sign of the log term"),
    (lambda m1, v1, m2, v2: (v1 + (m1 - m2) ** 2) / (2 * v2) + 0.5 * torch.log(v2 / v1),
     "constant -1/2 is missing"),
    # missing 1/2 overall
    (lambda m1, v1, m2, v2: (v1 + (m1 - m2) ** 2) / v2 + torch.log(v2 / v1) - 1, "factor 1/2 is missing"),
    (lambda m1, v1, m2, v2: v1 / (2 * v2) + (m1 - m2) ** 2 + 0.5 * torch.log(v2 / v1) - 0.5,
     "squared mean difference"),
    (lambda m1, v1, m2, v2: (m1 - m2) ** 2 / 2 - 0.5, "slide's equal-variance formula"),
    (lambda m1, v1, m2, v2: float(kl_ok(m1, v1, m2, v2).sum()), "return a torch.Tensor"),
    (lambda m1, v1, m2, v2: kl_ok(m1, v1, m2, v2).sum(), "wrong shape"),
])
def test_kl_gaussian_mistakes(wrong, hint):
    r = _run(checks.check_kl_gaussian, wrong)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_kl_gaussian_unknown_mistake_gets_the_generic_message_or_where_it_is():
    r = _run(checks.check_kl_gaussian, lambda m1, v1, m2, v2: kl_ok(m1, v1, m2, v2) * 1.1)
    assert r.status == checks.FAIL and "1.1 times the reference" in r.message, r.message
    r = _run(checks.check_kl_gaussian, lambda m1, v1, m2, v2: kl_ok(m1, v1, m2, v2) + 0.1 * m1 ** 2)
    assert r.status == checks.FAIL and "does not change when v1, m2, v2 change" in r.message
    r = _run(checks.check_kl_gaussian, lambda m1, v1, m2, v2: kl_ok(m1, v1, m2, v2) ** 1.1)
    assert r.status == checks.FAIL and "values differ from the reference" in r.message


# ---- exercise 1.2: product_mean_var ------------------------------------------------------
def product_ok(m1, v1, m2, v2):
    prec = 1 / v1 + 1 / v2
    return (m1 / v1 + m2 / v2) / prec, 1 / prec


def test_product_mean_var_reference_independent_and_stub():
    from dmlib.gaussians import gaussian_product
    assert _run(checks.check_product_mean_var, lambda *a: gaussian_product(*a)[:2]).passed
    assert _run(checks.check_product_mean_var, product_ok).passed
    assert _run(checks.check_product_mean_var, lambda *a: list(product_ok(*a))).passed
    assert _run(checks.check_product_mean_var, _stub).status == checks.NOT_IMPLEMENTED


def _var_ok(m1, v1, m2, v2):
    return product_ok(m1, v1, m2, v2)[1]


def _mean_ok(m1, v1, m2, v2):
    return product_ok(m1, v1, m2, v2)[0]


@pytest.mark.parametrize("wrong, hints", [
    # unweighted average of the means, variance right
    (lambda m1, v1, m2, v2: ((m1 + m2) / 2, _var_ok(m1, v1, m2, v2)), ["unweighted average"]),
    # sum of variances instead of precisions, mean right
    (lambda m1, v1, m2, v2: (_mean_ok(m1, v1, m2, v2), v1 + v2), ["added the variances"]),
    # both: the "sum of random variables" confusion
    (lambda m1, v1, m2, v2: (m1 + m2, v1 + v2), ["sum of the means", "added the variances"]),
    # weights inverted (weighted by variance instead of precision)
    (lambda m1, v1, m2, v2: ((m1 * v1 + m2 * v2) / (v1 + v2), _var_ok(m1, v1, m2, v2)),
     ["wrong way round"]),
    # std vs variance: precisions built from standard deviations
    (lambda m1, v1, m2, v2: ((m1 / v1.sqrt() + m2 / v2.sqrt()) / (1 / v1.sqrt() + 1 / v2.sqrt()),
                             1 / (1 / v1.sqrt() + 1 / v2.sqrt())), ["weights use 1/std", "added 1/std"]),
    # forgot to invert the summed precision / to normalise the mean
    (lambda m1, v1, m2, v2: (m1 / v1 + m2 / v2, 1 / v1 + 1 / v2), ["not yet normalised", "reciprocal"]),
    (lambda m1, v1, m2, v2: (_mean_ok(m1, v1, m2, v2), _var_ok(m1, v1, m2, v2).sqrt()),
     ["returned a standard deviation"]),
    (lambda m1, v1, m2, v2: product_ok(m1, v1, m2, v2)[::-1], ["return (mean, var) in this order"]),
])
def test_product_mean_var_mistakes(wrong, hints):
    r = _run(checks.check_product_mean_var, wrong)
    assert r.status == checks.FAIL, r.message
    for h in hints:
        assert h in r.message, r.message


def test_product_mean_var_bad_return_type_is_explained():
    r = _run(checks.check_product_mean_var, lambda *a: torch.stack(product_ok(*a)))
    assert r.status == checks.ERROR and "return a tuple (mean, var)" in r.message
    r = _run(checks.check_product_mean_var, lambda m1, v1, m2, v2: (1.0, 2.0))
    assert r.status == checks.ERROR and "two torch tensors" in r.message


# ---- exercise 1.3: kl_monte_carlo --------------------------------------------------------
def _logn(x, m, v):
    return -0.5 * math.log(2 * math.pi) - 0.5 * torch.log(v) - (x - m) ** 2 / (2 * v)


def mc_ok(m1, v1, m2, v2, eps):
    x = m1 + v1.sqrt() * eps
    return (_logn(x, m1, v1) - _logn(x, m2, v2)).mean()


def test_kl_monte_carlo_reference_independent_and_stub():
    from dmlib.gaussians import normal_kl_monte_carlo
    assert _run(checks.check_kl_monte_carlo, lambda *a: normal_kl_monte_carlo(*a)[0]).passed
    assert _run(checks.check_kl_monte_carlo, mc_ok).passed
    # torch.distributions is an equally valid way to write it
    D = torch.distributions.Normal
    assert _run(checks.check_kl_monte_carlo, lambda m1, v1, m2, v2, e: (
        D(m1, v1.sqrt()).log_prob(m1 + v1.sqrt() * e) - D(m2, v2.sqrt()).log_prob(m1 + v1.sqrt() * e)
    ).mean()).passed
    assert _run(checks.check_kl_monte_carlo, _stub).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong, hint", [
    # std vs variance: eps scaled by the variance
    (lambda m1, v1, m2, v2, e: (_logn(m1 + v1 * e, m1, v1) - _logn(m1 + v1 * e, m2, v2)).mean(),
     "eps is scaled by the variance"),
    # arguments reversed: KL(q || p)
    (lambda m1, v1, m2, v2, e: mc_ok(m2, v2, m1, v1, e), "KL arguments reversed"),
    (lambda m1, v1, m2, v2, e: -mc_ok(m1, v1, m2, v2, e), "check the sign"),
    (lambda m1, v1, m2, v2, e: (_logn(m2 + v2.sqrt() * e, m1, v1)
                                - _logn(m2 + v2.sqrt() * e, m2, v2)).mean(), "samples come from"),
    # missing 1/2 in the log-density
    (lambda m1, v1, m2, v2, e: 2 * mc_ok(m1, v1, m2, v2, e), "twice the right one"),
    # log of the variance where the log of the std belongs
    (lambda m1, v1, m2, v2, e: mc_ok(m1, v1, m2, v2, e) + 0.5 * torch.log(v2 / v1),
     "log of the variance where the log of the standard deviation"),
    (lambda m1, v1, m2, v2, e: mc_ok(m1, v1, m2, v2, e) * len(e), "summed the log-ratios"),
    (lambda m1, v1, m2, v2, e: 0.5 * torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5,
     "closed-form KL"),
    (lambda m1, v1, m2, v2, e: (_logn(m1 + v1.sqrt() * e, m1, v1)
                                - _logn(m1 + v1.sqrt() * e, m2, v2)), "wrong shape"),
])
def test_kl_monte_carlo_mistakes(wrong, hint):
    r = _run(checks.check_kl_monte_carlo, wrong)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_checks_are_reexported_and_strict_mode_raises(monkeypatch):
    from dmlib.course.checks import gaussians
    for name in gaussians.__all__:
        assert getattr(checks, name) is getattr(gaussians, name)
    monkeypatch.setenv("DMLIB_CHECKS_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="check_kl_gaussian"):
        checks.check_kl_gaussian(lambda m1, v1, m2, v2: kl_ok(m2, v2, m1, v1), verbose=False)


# ---- exercise 1.1: sum_params ------------------------------------------------------------
def sum_ok(mx, vx, my, vy, a, b):
    return a * mx + b * my, a * a * vx + b * b * vy


def test_sum_params_reference_independent_and_stub():
    assert _run(checks.check_sum_params, sum_ok).passed
    assert _run(checks.check_sum_params, _stub).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong, hints", [
    (lambda mx, vx, my, vy, a, b: (a * mx + b * my, a * vx + b * vy), ["scales its variance by a^2"]),
    (lambda mx, vx, my, vy, a, b: (a * mx + b * my, (a * vx.sqrt() + b * vy.sqrt()) ** 2),
     ["added (signed) standard deviations"]),
    (lambda mx, vx, my, vy, a, b: (a * mx + b * my, (a.abs() * vx.sqrt() + b.abs() * vy.sqrt()) ** 2),
     ["added standard deviations"]),
    (lambda mx, vx, my, vy, a, b: (a * mx + b * my, vx + vy), ["Var(a x) = a^2 Var(x)"]),
    (lambda mx, vx, my, vy, a, b: (mx + my, a ** 2 * vx + b ** 2 * vy), ["a mu_x + b mu_y"]),
    (lambda mx, vx, my, vy, a, b: (a * mx + b * my, (a ** 2 * vx + b ** 2 * vy).sqrt()),
     ["returned a standard deviation"]),
    (lambda mx, vx, my, vy, a, b: sum_ok(mx, vx, my, vy, a, b)[::-1], ["(mean, var) in this order"]),
])
def test_sum_params_mistakes(wrong, hints):
    r = _run(checks.check_sum_params, wrong)
    assert r.status == checks.FAIL, r.message
    for h in hints:
        assert h in r.message, r.message
