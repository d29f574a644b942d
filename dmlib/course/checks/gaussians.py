"""Checks for chapter 1: Gaussian identities (sums, KL, Monte Carlo KL, product of densities)."""

from __future__ import annotations

import math
from itertools import product
from typing import Callable

import torch

from ._core import Case, CheckResult, Mistake, Spec, _x, run_check, wraps

__all__ = ["check_sum_params", "check_kl_gaussian", "check_product_mean_var", "check_kl_monte_carlo"]

_D = torch.float64


def _var(shape: tuple[int, ...], seed: int, lo: float = 0.2, hi: float = 3.0) -> torch.Tensor:
    """Seeded variances in [lo, hi], never equal to 1 (so var, std and var^2 all differ)."""
    u = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=_D)
    return lo + (hi - lo) * u


def _kl(m1, v1, m2, v2):
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def _pair(fn: Callable, what: str = "(mean, var)") -> Callable:
    """Wrap a function returning a pair of tensors so the framework can compare one tensor."""
    @wraps(fn)
    def wrapped(*args):
        out = fn(*args)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"return a tuple {what} of two tensors, got {type(out).__name__}")
        a, b = out
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            raise TypeError(f"return a tuple {what} of two torch tensors, got "
                            f"({type(a).__name__}, {type(b).__name__})")
        if a.shape != b.shape:
            raise TypeError(f"the two entries of {what} should have the same shape, got "
                            f"{tuple(a.shape)} and {tuple(b.shape)}")
        return torch.stack([a, b])
    return wrapped


# --------------------------------------------------------------------------------------
# Exercise 1.1: mean and variance of a x + b y for independent Gaussians x, y
def _sum_cases() -> list[Case]:
    t = lambda v: torch.tensor(v, dtype=_D)  # noqa: E731
    return [
        Case((_x((5,), 130), _var((5,), 131), _x((5,), 132), _var((5,), 133),
              t(1.7), t(-0.6)), "5 pairs of Gaussians (shape (5,)) with a = 1.7, b = -0.6"),
        Case((_x((2, 3), 134), _var((2, 3), 135), _x((2, 3), 136), _var((2, 3), 137),
              _var((2, 3), 138), _x((2, 3), 139)), "tensors of shape (2, 3), a and b too"),
        Case((t(1.5), t(2.0), t(0.0), t(1.0), t(math.sqrt(0.9)), t(math.sqrt(0.1))),
             "one noising step: x ~ N(1.5, 2), y = eps ~ N(0, 1), a = sqrt(0.9), b = sqrt(0.1)"),
    ]


def _sum_mistakes() -> list[Mistake]:
    means = {
        None: lambda mx, vx, my, vy, a, b: a * mx + b * my,
        "the mean ignores the coefficients: E[a x + b y] = a mu_x + b mu_y":
            lambda mx, vx, my, vy, a, b: mx + my,
        "the mean keeps the signs of the coefficients, E[a x] = a mu_x (only the variance "
        "uses a^2)": lambda mx, vx, my, vy, a, b: a.abs() * mx + b.abs() * my,
    }
    variances = {
        None: lambda mx, vx, my, vy, a, b: a ** 2 * vx + b ** 2 * vy,
        "scaling a random variable by a scales its variance by a^2, not by a":
            lambda mx, vx, my, vy, a, b: a * vx + b * vy,
        "the variance ignores the coefficients: Var(a x) = a^2 Var(x)":
            lambda mx, vx, my, vy, a, b: vx + vy,
        "you added standard deviations; for independent variables the variances add":
            lambda mx, vx, my, vy, a, b: (a.abs() * vx.sqrt() + b.abs() * vy.sqrt()) ** 2,
        "you added (signed) standard deviations; for independent variables the variances add":
            lambda mx, vx, my, vy, a, b: (a * vx.sqrt() + b * vy.sqrt()) ** 2,
        "you added (scaled) standard deviations and returned that; variances add, and the "
        "function returns a variance":
            lambda mx, vx, my, vy, a, b: a.abs() * vx.sqrt() + b.abs() * vy.sqrt(),
        "you returned a standard deviation; return the variance":
            lambda mx, vx, my, vy, a, b: (a ** 2 * vx + b ** 2 * vy).sqrt(),
        "variances never subtract: with b < 0, Var(b y) = b^2 var_y is still positive":
            lambda mx, vx, my, vy, a, b: a * a.abs() * vx + b * b.abs() * vy,
        "variances never subtract: Var(a x + b y) = a^2 var_x + b^2 var_y for independent "
        "x, y, whatever the signs":
            lambda mx, vx, my, vy, a, b: a ** 2 * vx - b ** 2 * vy,
        "var_x and var_y already are variances (sigma^2): do not square them again":
            lambda mx, vx, my, vy, a, b: a ** 2 * vx ** 2 + b ** 2 * vy ** 2,
    }
    out = [Mistake("you returned (var, mean); return (mean, var) in this order",
                   lambda mx, vx, my, vy, a, b: torch.stack(
                       [a ** 2 * vx + b ** 2 * vy, a * mx + b * my]))]
    for (hm, fm), (hv, fv) in product(means.items(), variances.items()):
        if hm is None and hv is None:
            continue
        hint = " and ".join(h for h in (hm, hv) if h)
        out.append(Mistake(hint, lambda *a, fm=fm, fv=fv: torch.stack(
            torch.broadcast_tensors(fm(*a), fv(*a)))))
    return out


def check_sum_params(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(mu_x, var_x, mu_y, var_y, a, b) -> (mean, var)`` of a x + b y for
    independent x ~ N(mu_x, var_x), y ~ N(mu_y, var_y):
    mean = a mu_x + b mu_y, var = a^2 var_x + b^2 var_y. Chapter 1, exercise 1.1."""
    from ...gaussians import gaussian_sum

    def ref(mx, vx, my, vy, a, b):
        return torch.stack(torch.broadcast_tensors(*gaussian_sum(a * mx, a ** 2 * vx,
                                                                 b * my, b ** 2 * vy)))

    spec = Spec("check_sum_params", ref, _sum_cases(), _sum_mistakes())
    return run_check(_pair(fn), spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 1.2: KL between two 1-D Gaussians
def _kl_cases() -> list[Case]:
    return [
        Case((_x((6,), 100), _var((6,), 101), _x((6,), 102), _var((6,), 103)),
             "6 pairs of 1-D Gaussians (tensors of shape (6,))"),
        Case((_x((3, 4), 104), _var((3, 4), 105), torch.zeros((), dtype=_D),
              torch.ones((), dtype=_D)),
             "mu1, var1 of shape (3, 4) against the standard normal N(0, 1) (0-d tensors)"),
        Case((torch.tensor(0.5, dtype=_D), torch.tensor(0.3, dtype=_D),
              torch.tensor(0.5, dtype=_D), torch.tensor(0.3, dtype=_D)),
             "two identical Gaussians N(0.5, 0.3) (the KL must be 0)"),
    ]


def check_kl_gaussian(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(mu1, var1, mu2, var2) -> KL(N(mu1, var1) || N(mu2, var2))`` (elementwise,
    broadcasting; variances, not standard deviations):
    (var1 + (mu1 - mu2)^2) / (2 var2) + log(sigma2 / sigma1) - 1/2. Chapter 1, exercise 1.2."""
    mistakes = [
        Mistake("KL is not symmetric: you computed KL(N(mu2, var2) || N(mu1, var1)); the "
                "first argument is the distribution the expectation is taken under",
                lambda m1, v1, m2, v2: _kl(m2, v2, m1, v1)),
        Mistake("you squared the variances: var1 and var2 already are sigma^2 (not standard "
                "deviations)", lambda m1, v1, m2, v2: _kl(m1, v1 ** 2, m2, v2 ** 2)),
        Mistake("you used standard deviations where the formula has variances (sigma^2 in the "
                "fraction)", lambda m1, v1, m2, v2: _kl(m1, v1.sqrt(), m2, v2.sqrt())),
        Mistake("the log term is log(sigma2 / sigma1) = 1/2 log(var2 / var1): you took the log "
                "of the variance ratio without the 1/2",
                lambda m1, v1, m2, v2: _kl(m1, v1, m2, v2) + 0.5 * torch.log(v2 / v1)),
        Mistake("check the sign of the log term: it is log(sigma2 / sigma1), with the second "
                "distribution's sigma on top",
                lambda m1, v1, m2, v2: _kl(m1, v1, m2, v2) - torch.log(v2 / v1)),
        Mistake("the constant -1/2 is missing (KL(p || p) must be 0)",
                lambda m1, v1, m2, v2: _kl(m1, v1, m2, v2) + 0.5),
        Mistake("your value is twice the KL: a factor 1/2 is missing",
                lambda m1, v1, m2, v2: 2 * _kl(m1, v1, m2, v2)),
        Mistake("the squared mean difference is missing its 1/(2 var2): only var1 is divided "
                "by 2 var2 in your version",
                lambda m1, v1, m2, v2: 0.5 * torch.log(v2 / v1) + v1 / (2 * v2)
                + (m1 - m2) ** 2 - 0.5),
        Mistake("divide by the variance of the second distribution (var2), not the first",
                lambda m1, v1, m2, v2: 0.5 * torch.log(v2 / v1) + (v2 + (m1 - m2) ** 2) / (2 * v1)
                - 0.5),
        Mistake("divide by the variance of the second distribution (var2), not the first",
                lambda m1, v1, m2, v2: 0.5 * torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / (2 * v1)
                - 0.5),
        Mistake("the term var1 / (2 var2) is missing: the fraction is (var1 + (mu1 - mu2)^2) / "
                "(2 var2)", lambda m1, v1, m2, v2: _kl(m1, v1, m2, v2) - v1 / (2 * v2)),
        Mistake("this is the slide's equal-variance formula (mu1 - mu2)^2 / 2 - 1/2, which is "
                "wrong (see the Erratum) and ignores the variances",
                lambda m1, v1, m2, v2: (m1 - m2) ** 2 / 2 - 0.5),
    ]
    from ...gaussians import normal_kl

    spec = Spec("check_kl_gaussian", normal_kl, _kl_cases(), mistakes,
                broadcast_hint="use elementwise torch operations so that tensors of different "
                "shapes broadcast (no loops, no .item())")
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 1.4: mean and variance of the (normalised) product of two Gaussian densities
def _product_cases() -> list[Case]:
    return [
        Case((_x((5,), 110), _var((5,), 111), _x((5,), 112) * 2, _var((5,), 113, 0.1, 4.0)),
             "5 pairs of Gaussians (tensors of shape (5,))"),
        Case((_x((2, 3), 114), _var((2, 3), 115), _x((2, 3), 116), _var((2, 3), 117)),
             "tensors of shape (2, 3)"),
        Case((torch.tensor(1.0, dtype=_D), torch.tensor(0.25, dtype=_D),
              torch.tensor(-2.0, dtype=_D), torch.tensor(4.0, dtype=_D)),
             "N(1, 0.25) times N(-2, 4) (0-d tensors)"),
    ]


def _product_ref(m1, v1, m2, v2):
    var = 1 / (1 / v1 + 1 / v2)
    return torch.stack([var * (m1 / v1 + m2 / v2), var])


def _product_mistakes() -> list[Mistake]:
    means = {
        None: lambda m1, v1, m2, v2: (m1 * v2 + m2 * v1) / (v1 + v2),
        "the mean is an unweighted average of the two means; weight each mean by its "
        "precision 1/var (the sharper Gaussian pulls harder)":
            lambda m1, v1, m2, v2: (m1 + m2) / 2,
        "the means are weighted the wrong way round: each mean is weighted by its own "
        "precision 1/var, so the narrower Gaussian gets the larger weight":
            lambda m1, v1, m2, v2: (m1 * v1 + m2 * v2) / (v1 + v2),
        "the mean's weights use 1/std; weight by the precision 1/var":
            lambda m1, v1, m2, v2: (m1 / v1.sqrt() + m2 / v2.sqrt()) / (1 / v1.sqrt() + 1 / v2.sqrt()),
        "the mean is the precision-weighted sum m1/var1 + m2/var2 but not yet normalised: "
        "multiply it by the product's variance":
            lambda m1, v1, m2, v2: m1 / v1 + m2 / v2,
        "the mean is the sum of the means (that is the mean of a sum of random variables, "
        "not of a product of densities)": lambda m1, v1, m2, v2: m1 + m2,
        "the mean's weighted sum m1 var2 + m2 var1 is normalised by var1 + var2 (the sum of "
        "the weights), not by var1 var2": lambda m1, v1, m2, v2: (m1 * v2 + m2 * v1) / (v1 * v2),
    }
    variances = {
        None: lambda m1, v1, m2, v2: v1 * v2 / (v1 + v2),
        "you added the variances (that is the sum of random variables); for a product of "
        "densities the precisions 1/var add": lambda m1, v1, m2, v2: v1 + v2,
        "the variance is an average of the two variances; the precisions 1/var add":
            lambda m1, v1, m2, v2: (v1 + v2) / 2,
        "you returned the summed precision 1/var1 + 1/var2 itself; the variance is its "
        "reciprocal": lambda m1, v1, m2, v2: 1 / v1 + 1 / v2,
        "you added 1/std; the precisions are 1/var (1/sigma^2)":
            lambda m1, v1, m2, v2: 1 / (1 / v1.sqrt() + 1 / v2.sqrt()),
        "you returned a standard deviation; return the variance":
            lambda m1, v1, m2, v2: (v1 * v2 / (v1 + v2)).sqrt(),
    }
    out = [Mistake("you returned (var, mean); return (mean, var) in this order",
                   lambda *a: _product_ref(*a).flip(0))]
    for (hm, fm), (hv, fv) in product(means.items(), variances.items()):
        if hm is None and hv is None:
            continue
        hint = " and ".join(h for h in (hm, hv) if h)
        out.append(Mistake(hint, lambda *a, fm=fm, fv=fv: torch.stack([fm(*a), fv(*a)])))
    return out


def check_product_mean_var(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(mu1, var1, mu2, var2) -> (mean, var)`` of the normalised product
    N(x; mu1, var1) N(x; mu2, var2) / Z: 1/var = 1/var1 + 1/var2,
    mean = var (mu1/var1 + mu2/var2). Elementwise. Chapter 1, exercise 1.4."""
    from ...gaussians import gaussian_product

    spec = Spec("check_product_mean_var", lambda *a: torch.stack(gaussian_product(*a)[:2]),
                _product_cases(), _product_mistakes())
    return run_check(_pair(fn), spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 1.3: a Monte Carlo estimate of the KL, deterministic given the noise eps
def _log_n(x, m, v, half=0.5, log_std=False):
    logv = torch.log(v) * (2.0 if log_std else 1.0)  # log_std: log var where log std belongs
    return -half * (math.log(2 * math.pi) + logv) - half * (x - m) ** 2 / v


def _kl_mc(m1, v1, m2, v2, eps, *, from_q=False, flip=False, half=0.5, std_as_var=False,
           log_std=False, reduce="mean"):
    ms, vs = (m2, v2) if from_q else (m1, v1)
    x = ms + (vs if std_as_var else vs.sqrt()) * eps
    r = _log_n(x, m1, v1, half, log_std) - _log_n(x, m2, v2, half, log_std)
    r = -r if flip else r
    return r.sum(0) if reduce == "sum" else r.mean(0)


def _mc_mixed(m1, v1, m2, v2, eps):
    """Samples scaled by q's standard deviation: x = mu1 + sqrt(var2) eps."""
    x = m1 + v2.sqrt() * eps
    return (_log_n(x, m1, v1) - _log_n(x, m2, v2)).mean(0)


def _mc_cases() -> list[Case]:
    def eps(n, seed):
        return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=_D)
    t = lambda v: torch.tensor(v, dtype=_D)  # noqa: E731
    return [
        Case((t(0.5), t(0.6), t(-0.3), t(2.0), eps(1000, 120)),
             "p = N(0.5, 0.6), q = N(-0.3, 2.0) with eps of shape (1000,)"),
        Case((t(-1.0), t(2.5), t(0.0), t(1.0), eps(200, 121)),
             "p = N(-1, 2.5), q = N(0, 1) with eps of shape (200,)"),
        Case((t(2.0), t(0.3), t(1.5), t(0.7), eps(5000, 122)),
             "p = N(2, 0.3), q = N(1.5, 0.7) with eps of shape (5000,)"),
    ]


def check_kl_monte_carlo(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(mu1, var1, mu2, var2, eps) -> estimate`` (a 0-d tensor): the Monte Carlo
    estimate of KL(N(mu1, var1) || N(mu2, var2)) from the standard-normal draws ``eps``
    (shape (n,)): x = mu1 + sqrt(var1) eps, estimate = mean(log p(x) - log q(x)).
    Deterministic given eps. Chapter 1, exercise 1.3."""
    mistakes = [
        Mistake("your samples come from the second distribution q; KL(p || q) = E_p[...] needs "
                "x drawn from p = N(mu1, var1)",
                lambda *a: _kl_mc(*a, from_q=True)),
        Mistake("KL arguments reversed: you estimated KL(q || p) (samples from q, "
                "log q - log p); the expectation is under p, of log p - log q",
                lambda *a: _kl_mc(*a, from_q=True, flip=True)),
        Mistake("check the sign: the KL averages log p(x) - log q(x), not log q - log p",
                lambda *a: _kl_mc(*a, flip=True)),
        Mistake("eps is scaled by the variance: samples are x = mu1 + std * eps with "
                "std = sqrt(var1)", lambda *a: _kl_mc(*a, std_as_var=True)),
        Mistake("your estimate is twice the right one: the log-density has a factor 1/2 in "
                "front of (x - mu)^2 / var and of log(2 pi var)",
                lambda *a: _kl_mc(*a, half=1.0)),
        Mistake("the log-density has -1/2 log(var) = -log(std); you used -log(var) (the log "
                "of the variance where the log of the standard deviation belongs)",
                lambda *a: _kl_mc(*a, log_std=True)),
        Mistake("the log-normalisers -1/2 log(2 pi var) of p and q are missing: they cancel only "
                "when var1 = var2, so keep the -1/2 log(var) terms",
                lambda *a: _kl_mc(*a) - 0.5 * torch.log(a[3] / a[1])),
        Mistake("the samples must come from p: x = mu1 + sqrt(var1) eps; you scaled eps by q's "
                "standard deviation sqrt(var2)",
                lambda *a: _mc_mixed(*a)),
        Mistake("you summed the log-ratios; a Monte Carlo estimate averages them (divide "
                "by the number of samples)", lambda *a: _kl_mc(*a, reduce="sum")),
        Mistake("you returned the closed-form KL; this exercise asks for the Monte Carlo "
                "estimate from the given eps (it differs from the closed form by a few "
                "standard errors)", lambda m1, v1, m2, v2, eps: _kl(m1, v1, m2, v2)),
    ]
    from ...gaussians import normal_kl_monte_carlo

    spec = Spec("check_kl_monte_carlo", lambda *a: normal_kl_monte_carlo(*a)[0], _mc_cases(), mistakes,
                broadcast_hint="eps has shape (n,) and the parameters are 0-d tensors: "
                "average over the n samples and return a 0-d tensor")
    return run_check(fn, spec, verbose)
