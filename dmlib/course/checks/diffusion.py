"""Checks for the forward process (chapter 3) and the posterior (chapter 4)."""

from __future__ import annotations

from typing import Callable

import torch

from ...schedules import Schedule
from ._core import (Case, CheckResult, Mistake, Spec, _at, _BROADCAST, _OFF_BY_ONE, _schedules, _t,
                    _x, run_check)


# --------------------------------------------------------------------------------------
# Chapter 3: the closed-form forward process q(x_t | x_0)
def _q_sample_cases() -> list[Case]:
    lin, cos = _schedules()
    return [
        Case((lin, _x((4, 2), 0), _t([1, 10, 500, 1000]), _x((4, 2), 1)),
             "x0 of shape (4, 2) with t = [1, 10, 500, 1000]"),
        Case((cos, _x((3, 1, 6, 6), 2), _t([50, 1, 25]), _x((3, 1, 6, 6), 3)),
             "images of shape (3, 1, 6, 6) with t = [50, 1, 25] (cosine, T=50)"),
        Case((lin, _x((5, 2), 4), 300, _x((5, 2), 5)), "x0 of shape (5, 2) with the int t = 300"),
        Case((lin, _x((3, 5, 2), 6), _t([1, 1000, 37]), _x((3, 5, 2), 7)),
             "x0 of shape (3, 5, 2) with t = [1, 1000, 37]"),
    ]


def check_q_sample(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, x0, t, eps) -> xt`` against
    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (shapes: x0, eps (B, ...); t () or (B,)).
    Chapter 3."""
    from ...forward import q_sample

    ab = lambda s: s.alpha_bar  # noqa: E731
    mistakes = [
        Mistake(_OFF_BY_ONE, lambda s, x0, t, e: _at(ab(s), t, x0, -1).sqrt() * x0
                + (1 - _at(ab(s), t, x0, -1)).sqrt() * e),
        Mistake(_OFF_BY_ONE, lambda s, x0, t, e: _at(ab(s), t, x0, 1).sqrt() * x0
                + (1 - _at(ab(s), t, x0, 1)).sqrt() * e),
        Mistake("you used alpha_t (one step) where the jump from x0 needs alpha_bar_t, the "
                "product of all alphas up to t", lambda s, x0, t, e: _at(s.alphas, t, x0).sqrt() * x0
                + (1 - _at(s.alphas, t, x0)).sqrt() * e),
        Mistake("the noise is scaled by a variance: eps must be multiplied by a standard "
                "deviation (the reparameterisation x = mean + std * eps)",
                lambda s, x0, t, e: _at(ab(s), t, x0).sqrt() * x0 + (1 - _at(ab(s), t, x0)) * e),
        Mistake("x0 is scaled by alpha_bar_t itself; the mean of q(x_t|x_0) scales x0 by a "
                "square root", lambda s, x0, t, e: _at(ab(s), t, x0) * x0
                + (1 - _at(ab(s), t, x0)).sqrt() * e),
        Mistake("check the sign of the noise term",
                lambda s, x0, t, e: _at(ab(s), t, x0).sqrt() * x0 - (1 - _at(ab(s), t, x0)).sqrt() * e),
        Mistake("the output does not use eps: the sample is the mean plus scaled noise",
                lambda s, x0, t, e: _at(ab(s), t, x0).sqrt() * x0),
        Mistake("the two coefficients are swapped: sqrt(alpha_bar_t) scales x0 (all signal at "
                "t = 0) and sqrt(1 - alpha_bar_t) scales the noise",
                lambda s, x0, t, e: (1 - _at(ab(s), t, x0)).sqrt() * x0 + _at(ab(s), t, x0).sqrt() * e),
        Mistake("the noise's standard deviation is sqrt(1 - alpha_bar_t), the square root of "
                "the difference, not 1 - sqrt(alpha_bar_t)",
                lambda s, x0, t, e: _at(ab(s), t, x0).sqrt() * x0 + (1 - _at(ab(s), t, x0).sqrt()) * e),
    ]
    spec = Spec("check_q_sample", lambda s, x0, t, e: q_sample(s, x0, t, eps=e),
                _q_sample_cases(), mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Chapter 4: the posterior mean of q(x_{t-1} | x_t, x_0)
def check_posterior_mean(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, x0, xt, t) -> mean`` of q(x_{t-1} | x_t, x_0):
    sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0 + sqrt(alpha_t)(1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t.
    Chapter 4."""
    from ...posterior import posterior_mean

    def formula(s, x0, xt, t, shift=0, swap=False, alpha_is_bar=False, no_sqrt=False,
                no_sqrt_abp=False, no_sqrt_a=False, den_prev=False):
        ab, abp = _at(s.alpha_bar, t, x0, shift), _at(s.alpha_bar_prev, t, x0, shift)
        b, a = _at(s.betas, t, x0, shift), _at(s.alphas, t, x0, shift)
        if alpha_is_bar:
            a = ab
        r = (lambda v: v) if no_sqrt else torch.sqrt
        r0 = (lambda v: v) if no_sqrt_abp else r
        rt = (lambda v: v) if no_sqrt_a else r
        den = (1 - abp) if den_prev else (1 - ab)
        c0, ct = r0(abp) * b / den, rt(a) * (1 - abp) / den
        return ct * x0 + c0 * xt if swap else c0 * x0 + ct * xt

    cases = [
        Case((s, _x((4, 2), 10 + k), _x((4, 2), 20 + k), _t([2, 3, s.T // 2, s.T])),
             f"x of shape (4, 2), t = [2, 3, {s.T // 2}, {s.T}] ({s.name}, T={s.T})")
        for k, s in enumerate(_schedules())
    ] + [Case((Schedule.linear(1000), _x((2, 1, 5, 5), 30), _x((2, 1, 5, 5), 31), 700),
              "images of shape (2, 1, 5, 5) with the int t = 700"),
          Case((Schedule.linear(1000), _x((3, 5, 2), 32), _x((3, 5, 2), 33), _t([1, 1000, 37])),
               "x of shape (3, 5, 2) with t = [1, 1000, 37] (t = 1: alpha_bar_0 = 1)")]
    mistakes = [
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=1)),
        Mistake("the two coefficients are swapped: which one carries beta_t (the new noise) "
                "and should multiply x0?", lambda *a: formula(*a, swap=True)),
        Mistake("in the coefficient of x_t the single-step alpha_t belongs, not alpha_bar_t",
                lambda *a: formula(*a, alpha_is_bar=True)),
        Mistake("a square root is missing on alpha_bar_{t-1} or alpha_t (they scale means, "
                "so they enter as square roots)", lambda *a: formula(*a, no_sqrt=True)),
        Mistake("a square root is missing on alpha_bar_{t-1} in the coefficient of x0 (it "
                "scales a mean, so it enters as a square root)",
                lambda *a: formula(*a, no_sqrt_abp=True)),
        Mistake("a square root is missing on alpha_t in the coefficient of x_t (it scales a "
                "mean, so it enters as a square root)", lambda *a: formula(*a, no_sqrt_a=True)),
        Mistake("both coefficients divide by 1 - alpha_bar_t, the noise level at t, not by "
                "1 - alpha_bar_{t-1}", lambda *a: formula(*a, den_prev=True)),
    ]
    spec = Spec("check_posterior_mean", lambda s, x0, xt, t: posterior_mean(s, x0, xt, t),
                cases, mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)
