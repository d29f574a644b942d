"""Checks for chapter 3: the forward process (one step, the prior KL, the cosine schedule).

``check_q_sample`` (the closed-form jump) lives in ``diffusion``; the checks here are:

* ``check_q_step``: one noising step x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps;
* ``check_prior_kl``: KL( q(x_T | x_0) || N(0, I) ) per example, summed over dimensions;
* ``check_cosine_alpha_bar``: the cosine schedule's alpha_bar_t, t = 0..T, in closed form.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ...schedules import Schedule
from ._core import (Case, CheckResult, Mistake, Spec, _at, _BROADCAST, _OFF_BY_ONE, _schedules, _t,
                    _x, run_check)

__all__ = ["check_q_step", "check_prior_kl", "check_cosine_alpha_bar"]

_D = torch.float64


# --------------------------------------------------------------------------------------
# Exercise 3.1: one forward step q(x_t | x_{t-1})
def _q_step_cases() -> list[Case]:
    lin, cos = _schedules()
    return [
        Case((lin, _x((4, 2), 300), _t([1, 10, 500, 1000]), _x((4, 2), 301)),
             "x_prev of shape (4, 2) with t = [1, 10, 500, 1000]"),
        Case((cos, _x((3, 1, 6, 6), 302), _t([50, 2, 25]), _x((3, 1, 6, 6), 303)),
             "images of shape (3, 1, 6, 6) with t = [50, 2, 25] (cosine, T=50)"),
        Case((lin, _x((5, 2), 304), 700, _x((5, 2), 305)),
             "x_prev of shape (5, 2) with the int t = 700"),
        Case((lin, _x((3, 5, 2), 306), _t([1, 1000, 37]), _x((3, 5, 2), 307)),
             "x_prev of shape (3, 5, 2) with t = [1, 1000, 37]"),
    ]


def _step(s: Schedule, x: torch.Tensor, t, e: torch.Tensor, *, shift: int = 0,
          x_scale: Callable = torch.sqrt, noise_scale: Callable = torch.sqrt,
          cumulative: bool = False, sign: float = 1.0) -> torch.Tensor:
    """x_scale(alpha) x + sign * noise_scale(beta) eps, with alpha, beta taken at t + shift
    (or alpha_bar and 1 - alpha_bar with ``cumulative``)."""
    a = _at(s.alpha_bar if cumulative else s.alphas, t, x, shift)
    return x_scale(a) * x + sign * noise_scale(1 - a) * e


def check_q_step(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, x_prev, t, eps) -> x_t``, one step of the forward process:
    x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps (shapes: x_prev, eps (B, ...);
    t () or (B,)). Chapter 3, exercise 3.1."""
    from ...forward import q_step

    mistakes = [
        Mistake("your noise is scaled by beta_t ** (1/4): that is what you get when the "
                "slide's N(., sqrt(beta_t) I) is read with sqrt(beta_t) as the variance. The "
                "second slot of N(., .) is a variance (see the Erratum): multiply eps by the "
                "standard deviation that belongs to it",
                lambda s, x, t, e: _step(s, x, t, e, noise_scale=lambda b: b ** 0.25)),
        Mistake("the noise is scaled by the variance beta_t itself: eps must be multiplied by "
                "a standard deviation (the reparameterisation x = mean + std * eps)",
                lambda s, x, t, e: _step(s, x, t, e, noise_scale=lambda b: b)),
        Mistake("you used alpha_bar_t (the jump from x_0) where one step from x_{t-1} needs "
                "the single-step alpha_t = 1 - beta_t",
                lambda s, x, t, e: _step(s, x, t, e, cumulative=True)),
        Mistake("x_prev is scaled by 1 - beta_t itself: the mean of one step scales x_{t-1} "
                "by a square root (so that the variance stays bounded)",
                lambda s, x, t, e: _step(s, x, t, e, x_scale=lambda a: a)),
        Mistake("x_prev is not scaled at all: without the factor in front of x_{t-1} the "
                "variance grows at every step instead of staying near 1",
                lambda s, x, t, e: _step(s, x, t, e, x_scale=lambda a: torch.ones_like(a))),
        Mistake(_OFF_BY_ONE, lambda s, x, t, e: _step(s, x, t, e, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda s, x, t, e: _step(s, x, t, e, shift=1)),
        Mistake("check the sign of the noise term", lambda s, x, t, e: _step(s, x, t, e, sign=-1.0)),
        Mistake("the output does not use eps: the sample is the mean plus scaled noise",
                lambda s, x, t, e: _step(s, x, t, e, sign=0.0)),
        Mistake("the two coefficients are swapped: sqrt(1 - beta_t) scales x_{t-1} (most of the "
                "signal stays) and sqrt(beta_t) scales the noise",
                lambda s, x, t, e: _at(s.betas, t, x).sqrt() * x + _at(s.alphas, t, x).sqrt() * e),
        Mistake("the scale of x_{t-1} is sqrt(1 - beta_t), the square root of the difference, "
                "not 1 - sqrt(beta_t)",
                lambda s, x, t, e: (1 - _at(s.betas, t, x).sqrt()) * x + _at(s.betas, t, x).sqrt() * e),
    ]
    spec = Spec("check_q_step", lambda s, x, t, e: q_step(s, x, t, eps=e), _q_step_cases(),
                mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 3.3: the prior term KL( q(x_T | x_0) || N(0, I) )
def _prior_kl_cases() -> list[Case]:
    hand = Schedule(torch.tensor([0.05, 0.1, 0.2, 0.15, 0.3], dtype=_D), name="by hand")
    short = Schedule.linear(10, beta_1=1e-4, beta_T=0.02)  # alpha_bar_T ~ 0.9: far from noise
    mid = Schedule.linear(50, beta_T=0.05)
    return [
        Case((hand, _x((4, 2), 310)), "x0 of shape (4, 2), betas (0.05, 0.1, 0.2, 0.15, 0.3)"),
        Case((short, _x((3, 1, 6, 6), 311)),
             "images of shape (3, 1, 6, 6), a linear schedule with T = 10 (alpha_bar_T ~ 0.9)"),
        Case((mid, 2 * _x((5, 3), 312)),
             "x0 of shape (5, 3), a linear schedule with T = 50 and beta_T = 0.05"),
        Case((short, _x((3, 5, 2), 313)), "x0 of shape (3, 5, 2), the linear schedule with T = 10"),
    ]


def _prior(s: Schedule, x0: torch.Tensor, *, shift: int = 0, single: bool = False,
           mean_sq: Callable | None = None, var_fn: Callable | None = None, log_sign: float = -1.0,
           half: float = 0.5, reverse: bool = False, reduce: str = "sum") -> torch.Tensor:
    """Variants of sum_i half * (m_i^2 + v - 1 + log_sign * log v) with m = sqrt(ab) x0 and
    v = 1 - ab, ab = alpha_bar_{T + shift} (or alpha_T with ``single``)."""
    ab = float((s.alphas if single else s.alpha_bar)[s.T + shift])
    v = var_fn(ab) if var_fn is not None else 1 - ab
    m2 = mean_sq(ab, x0) if mean_sq is not None else ab * x0 ** 2
    if reverse:  # KL( N(0, I) || q ): the arguments swapped
        kl = 0.5 * (math.log(v) + (1 + m2) / v - 1)
    else:
        kl = half * (m2 + v - 1 + log_sign * math.log(v))
        kl = kl + 0.0 * x0  # keep x0's shape when m2 does not use x0
    kl = kl.reshape(x0.shape[0], -1)
    return kl.mean(1) if reduce == "mean" else kl.sum(1)


def check_prior_kl(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, x0) -> KL( q(x_T | x_0) || N(0, I) )`` per example, in nats,
    summed over all non-batch dimensions: shapes x0 (B, ...) -> (B,), with
    q(x_T | x_0) = N(sqrt(alpha_bar_T) x0, (1 - alpha_bar_T) I). Chapter 3, exercise 3.3."""
    from ...losses import prior_kl

    mistakes = [
        Mistake("the variance of q(x_T|x_0) in your KL is sqrt(1 - alpha_bar_T): that is the "
                "standard deviation (the slide writes it in the variance slot; see the "
                "Erratum). The KL formula takes variances",
                lambda s, x0: _prior(s, x0, var_fn=lambda ab: math.sqrt(1 - ab))),
        Mistake("the squared mean is off: the mean of q(x_T|x_0) is sqrt(alpha_bar_T) x0, so "
                "its square carries alpha_bar_T once (you have alpha_bar_T squared)",
                lambda s, x0: _prior(s, x0, mean_sq=lambda ab, x: ab ** 2 * x ** 2)),
        Mistake("the squared mean is off: square the whole mean sqrt(alpha_bar_T) x0, not "
                "only x0", lambda s, x0: _prior(s, x0, mean_sq=lambda ab, x: math.sqrt(ab) * x ** 2)),
        Mistake("you used alpha_T (the last single step) where q(x_T|x_0) needs alpha_bar_T, "
                "the product of all alphas", lambda s, x0: _prior(s, x0, single=True)),
        Mistake(_OFF_BY_ONE, lambda s, x0: _prior(s, x0, shift=-1)),
        Mistake("you averaged over the dimensions: the KL of a product of independent "
                "Gaussians is the SUM of the per-dimension KLs",
                lambda s, x0: _prior(s, x0, reduce="mean")),
        Mistake("your value is twice the KL: a factor 1/2 is missing",
                lambda s, x0: _prior(s, x0, half=1.0)),
        Mistake("the log term is missing (the KL of N(0, 1) to itself must be 0)",
                lambda s, x0: _prior(s, x0, log_sign=0.0)),
        Mistake("check the sign of the log term: it is log(sigma_p / sigma_q) with sigma_p = 1 "
                "for the standard normal", lambda s, x0: _prior(s, x0, log_sign=1.0)),
        Mistake("the log term is -1/2 log(1 - alpha_bar_T) per dimension (1/2 times the log of "
                "the variance, or the log of the standard deviation): you halved it twice",
                lambda s, x0: _prior(s, x0, log_sign=-0.5)),
        Mistake("KL is not symmetric: you computed KL( N(0, I) || q(x_T|x_0) ); the first "
                "argument is q, under which the expectation is taken",
                lambda s, x0: _prior(s, x0, reverse=True)),
    ]
    spec = Spec("check_prior_kl", lambda s, x0: prior_kl(s, x0), _prior_kl_cases(), mistakes,
                broadcast_hint="return one KL per example, shape (B,): sum the per-dimension "
                "KLs over every non-batch dimension (e.g. .reshape(B, -1).sum(1))")
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 3.4: the cosine schedule's alpha_bar_t in closed form
def _cosine(T: int, s: float, *, square: bool = True, normalise: bool = True,
            divide: bool = True, complement: bool = False, fn: Callable = torch.cos,
            scale: float = math.pi / 2) -> torch.Tensor:
    u = torch.arange(T + 1, dtype=_D) / T
    arg = (u + s) / (1 + s) if divide else u + s
    f = fn(arg * scale) ** (2 if square else 1)
    ab = f / f[0] if normalise else f
    return 1 - ab if complement else ab


def _capped(ab: torch.Tensor) -> torch.Tensor:
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=0.999)
    return torch.cat([ab[:1], torch.cumprod(1 - betas, 0)])


def check_cosine_alpha_bar(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(T, s) -> alpha_bar`` of shape (T + 1,), t = 0..T, with
    alpha_bar_t = f(t) / f(0) and f(t) = cos^2(pi/2 (t/T + s) / (1 + s)) (unclipped).
    Chapter 3, exercise 3.4."""
    from ...schedules import cosine_alpha_bar

    cases = [Case((10, 0.008), "T = 10, s = 0.008"), Case((1000, 0.008), "T = 1000, s = 0.008"),
             Case((50, 0.1), "T = 50, s = 0.1")]
    mistakes = [
        Mistake("alpha_bar_0 must be 1: divide f(t) by f(0) so the clean data keeps all "
                "its signal", lambda T, s: _cosine(T, s, normalise=False)),
        Mistake("the cosine must be squared (alpha_bar is a squared scale: cos^2 + sin^2 = 1 "
                "splits signal and noise variance)", lambda T, s: _cosine(T, s, square=False)),
        Mistake("the offset s is applied but the argument is not divided by (1 + s): at t = T "
                "the angle must be exactly pi/2", lambda T, s: _cosine(T, s, divide=False)),
        Mistake("the offset s is missing (your values match s = 0)",
                lambda T, s: _cosine(T, 0.0)),
        Mistake("you returned 1 - alpha_bar_t (the noise variance) instead of alpha_bar_t",
                lambda T, s: _cosine(T, s, complement=True)),
        Mistake("cos, not sin: alpha_bar_t starts at 1 (t = 0) and falls to about 0 at t = T",
                lambda T, s: _cosine(T, s, fn=torch.sin)),
        Mistake("the angle runs over a quarter turn, from about 0 to pi/2 at t = T: the factor "
                "is pi/2, not pi", lambda T, s: _cosine(T, s, scale=math.pi)),
        Mistake("the exercise asks for alpha_bar_t without the 0.999 cap on beta_t (the cap "
                "changes only the last steps): compute f(t) / f(0) directly",
                lambda T, s: _capped(_cosine(T, s))),
    ]
    spec = Spec("check_cosine_alpha_bar", cosine_alpha_bar, cases, mistakes,
                broadcast_hint="return T + 1 values, one per t = 0..T (entry 0 is "
                "alpha_bar_0 = 1), in a 1-D tensor", float32=None)
    return run_check(fn, spec, verbose)
