"""Checks for the exercises that need an idea, not a transcription (chapters 3, 5 and 6).

Each exercise asks for a formula the chapter has *not* written down: the student has to
derive it from what the chapter did derive (issue 18).

* Exercise 3.5, ``check_q_jump``: a jump from x_s to x_t, q(x_t | x_s) (chapter 3).
* Exercise 5.4, ``check_optimal_eps_std_normal``: E[eps | x_t] when the data is N(0, I)
  (chapter 5).
* Exercise 6.4, ``check_point_mass_eps``: the optimal eps-prediction when the data set is a
  single point c (chapter 6).
"""

from __future__ import annotations

from typing import Callable

import torch

from ._core import Case, CheckResult, Mistake, Spec, _at, _BROADCAST, _schedules, _t, _x, run_check

__all__: list[str] = ["check_q_jump", "check_optimal_eps_std_normal", "check_point_mass_eps"]

_NOT_BAR = ("you used the single-step alpha_t; the noise of all steps up to t has "
            "accumulated, so the formula needs the cumulative alpha_bar_t")


# --------------------------------------------------------------------------------------
# Exercise 3.5: q(x_t | x_s) for 0 <= s < t
def _ab(s, t, x):
    return _at(s.alpha_bar, t, x)


def _jump(sch, xs, s, t, eps, ratio=None, noise_var=None, sqrt=True):
    r = _ab(sch, t, xs) / _ab(sch, s, xs) if ratio is None else ratio
    nv = 1 - r if noise_var is None else noise_var
    if sqrt:
        return r.sqrt() * xs + nv.sqrt() * eps
    return r * xs + nv * eps


def check_q_jump(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, xs, s, t, eps) -> x_t`` against a draw of q(x_t | x_s):
    x_t = sqrt(alpha_bar_t / alpha_bar_s) x_s + sqrt(1 - alpha_bar_t / alpha_bar_s) eps
    for 0 <= s < t <= T (shapes: xs, eps (B, ...); s, t int or (B,)). Chapter 3."""
    lin, cos = _schedules()
    cases = [
        Case((lin, _x((4, 2), 70), _t([1, 100, 400, 999]), _t([2, 300, 900, 1000]), _x((4, 2), 71)),
             "x_s of shape (4, 2) with s = [1, 100, 400, 999], t = [2, 300, 900, 1000] (linear, T=1000)"),
        Case((cos, _x((3, 1, 4, 4), 72), _t([10, 20, 48]), _t([30, 21, 50]), _x((3, 1, 4, 4), 73)),
             "images of shape (3, 1, 4, 4) with s = [10, 20, 48], t = [30, 21, 50] (cosine, T=50)"),
        Case((lin, _x((5, 2), 74), 0, 500, _x((5, 2), 75)),
             "x_s of shape (5, 2) with the ints s = 0 (clean data) and t = 500"),
        Case((lin, _x((5, 2), 76), 250, 700, _x((5, 2), 77)),
             "x_s of shape (5, 2) with the ints s = 250 and t = 700"),
    ]

    def at(sch, v, t, x, shift=0):
        return _at(v, t, x, shift)

    mistakes = [
        Mistake("you jumped as if from x_0: the signal left between s and t is the product of "
                "the alphas from s + 1 to t only, alpha_bar_t / alpha_bar_s",
                lambda sch, xs, s, t, e: _jump(sch, xs, s, t, e, ratio=_ab(sch, t, xs))),
        Mistake("the noise variance is wrong: (1 - alpha_bar_t) - (1 - alpha_bar_s) is the growth "
                "of the noise measured in units of x_0; measured against x_s, whose own noise is "
                "scaled down too, the new noise has variance 1 - alpha_bar_t / alpha_bar_s",
                lambda sch, xs, s, t, e: _jump(sch, xs, s, t, e,
                                               noise_var=_ab(sch, s, xs) - _ab(sch, t, xs))),
        Mistake("the signal that survives from s to t is a ratio of alpha_bars, not a difference",
                lambda sch, xs, s, t, e: _jump(sch, xs, s, t, e,
                                               ratio=1 - (_ab(sch, s, xs) - _ab(sch, t, xs)))),
        Mistake("square roots are missing: x_s is scaled by a standard deviation "
                "sqrt(alpha_bar_t / alpha_bar_s), and the noise by sqrt(1 - ...)",
                lambda sch, xs, s, t, e: _jump(sch, xs, s, t, e, sqrt=False)),
        Mistake("your product of alphas starts one step early: it should run over the steps "
                "s + 1, ..., t, which is alpha_bar_t / alpha_bar_s",
                lambda sch, xs, s, t, e: _jump(sch, xs, s, t, e,
                                               ratio=_ab(sch, t, xs) / at(sch, sch.alpha_bar, s, xs, -1))),
        Mistake("your product of alphas starts one step late: it should include alpha_{s+1}, "
                "so it is alpha_bar_t / alpha_bar_s",
                lambda sch, xs, s, t, e: _jump(sch, xs, s, t, e,
                                               ratio=_ab(sch, t, xs) / at(sch, sch.alpha_bar, s, xs, 1))),
        Mistake("you used single-step alphas: alpha_t / alpha_s is not the signal kept over the "
                "t - s steps between s and t; use the cumulative alpha_bar",
                lambda sch, xs, s, t, e: _jump(sch, xs, s, t, e,
                                               ratio=at(sch, sch.alphas, t, xs) / at(sch, sch.alphas, s, xs))),
    ]
    spec = Spec("check_q_jump", lambda sch, xs, s, t, e: _jump(sch, xs, s, t, e), cases, mistakes,
                broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Shared cases for the two optimal-prediction exercises: fn(schedule, xt, t[, c])
def _xt_cases(with_point: bool) -> list[Case]:
    lin, cos = _schedules()
    c2, c_img = torch.tensor([1.5, -0.5], dtype=torch.float64), _x((1, 4, 4), 83)
    rows = [
        (lin, _x((4, 2), 80), _t([1, 10, 500, 1000]), c2,
         "x_t of shape (4, 2) with t = [1, 10, 500, 1000] (linear, T=1000)", ", c = (1.5, -0.5)"),
        (cos, _x((3, 1, 4, 4), 81), _t([5, 1, 49]), c_img,
         "images of shape (3, 1, 4, 4) with t = [5, 1, 49] (cosine, T=50)", ", c of shape (1, 4, 4)"),
        (lin, _x((5, 2), 82), 300, c2, "x_t of shape (5, 2) with the int t = 300", ", c = (1.5, -0.5)"),
    ]
    if with_point:
        return [Case((s, x, t, c), desc + cdesc) for s, x, t, c, desc, cdesc in rows]
    return [Case((s, x, t), desc) for s, x, t, _c, desc, _cd in rows]


# --------------------------------------------------------------------------------------
# Exercise 5.4: E[eps | x_t] for data x_0 ~ N(0, I)
def check_optimal_eps_std_normal(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, xt, t) -> E[eps | x_t]`` for data x_0 ~ N(0, I):
    x_t ~ N(0, I) and Cov(eps, x_t) = sqrt(1 - alpha_bar_t) I, so
    E[eps | x_t] = sqrt(1 - alpha_bar_t) x_t (shapes: xt (B, ...); t int or (B,)). Chapter 5."""
    def ab(s, xt, t):
        return _at(s.alpha_bar, t, xt)

    mistakes = [
        Mistake("you solved x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps as if x0 were "
                "0; but x0 is random, and x_t carries information about it too. Use the joint "
                "Gaussian of (eps, x_t): E[eps | x_t] = Cov(eps, x_t) Var(x_t)^-1 x_t",
                lambda s, xt, t: xt / (1 - ab(s, xt, t)).sqrt()),
        Mistake("that is E[x0 | x_t], the optimal x0-prediction; the noise's share of x_t goes "
                "with the noise's coefficient", lambda s, xt, t: ab(s, xt, t).sqrt() * xt),
        Mistake("a square root is missing: Cov(eps, x_t) is the coefficient of eps in x_t, "
                "sqrt(1 - alpha_bar_t), and Var(x_t) = 1", lambda s, xt, t: (1 - ab(s, xt, t)) * xt),
        Mistake("you returned x_t itself: for standard normal data Var(x_t) = 1, but only part of "
                "x_t is noise", lambda s, xt, t: xt.clone()),
        Mistake(_NOT_BAR, lambda s, xt, t: (1 - _at(s.alphas, t, xt)).sqrt() * xt),
    ]
    spec = Spec("check_optimal_eps_std_normal",
                lambda s, xt, t: (1 - ab(s, xt, t)).sqrt() * xt, _xt_cases(False), mistakes,
                broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 6.4: the optimal eps-prediction when all the data is one point c
def check_point_mass_eps(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, xt, t, c) -> eps`` for data that is always the point c (shape
    xt.shape[1:]): x_0 = c is known, so eps = (x_t - sqrt(alpha_bar_t) c) / sqrt(1 - alpha_bar_t)
    exactly (shapes: xt (B, ...); t int or (B,)). Chapter 6."""
    def ab(s, xt, t):
        return _at(s.alpha_bar, t, xt)

    def ref(s, xt, t, c):
        return (xt - ab(s, xt, t).sqrt() * c) / (1 - ab(s, xt, t)).sqrt()

    mistakes = [
        Mistake("you subtracted c itself: in x_t the clean point is scaled by sqrt(alpha_bar_t)",
                lambda s, xt, t, c: (xt - c) / (1 - ab(s, xt, t)).sqrt()),
        Mistake("you forgot to divide by the noise's scale sqrt(1 - alpha_bar_t): x_t minus the "
                "signal is sqrt(1 - alpha_bar_t) eps, not eps",
                lambda s, xt, t, c: xt - ab(s, xt, t).sqrt() * c),
        Mistake("square roots are missing: x0 and eps are scaled by sqrt(alpha_bar_t) and "
                "sqrt(1 - alpha_bar_t)",
                lambda s, xt, t, c: (xt - ab(s, xt, t) * c) / (1 - ab(s, xt, t))),
        Mistake("check the sign: eps points from the scaled data point towards x_t",
                lambda s, xt, t, c: (ab(s, xt, t).sqrt() * c - xt) / (1 - ab(s, xt, t)).sqrt()),
        Mistake(_NOT_BAR, lambda s, xt, t, c: (xt - _at(s.alphas, t, xt).sqrt() * c)
                / (1 - _at(s.alphas, t, xt)).sqrt()),
        Mistake("you returned the x0-prediction (the point c); the exercise asks for eps",
                lambda s, xt, t, c: c.expand_as(xt).clone()),
    ]
    spec = Spec("check_point_mass_eps", ref, _xt_cases(True), mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)
