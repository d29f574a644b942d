"""Checks for chapter 5: three equivalent targets (eps -> x0, eps -> posterior mean, v)."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import (Case, CheckResult, Mistake, Spec, _at, _BROADCAST, _OFF_BY_ONE, _schedules, _t,
                    _x, run_check)

__all__: list[str] = ["check_x0_from_eps", "check_mu_from_eps", "check_v"]

_ALPHA_NOT_BAR = ("you used the single-step alpha_t where the closed form x_t = sqrt(alpha_bar_t) "
                  "x0 + sqrt(1 - alpha_bar_t) eps has alpha_bar_t, the product of all alphas up "
                  "to t (the slide writes alpha_t for alpha_bar_t)")
_NO_SQRT = ("a square root is missing: x0 and eps are scaled by standard deviations "
            "sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t), not by alpha_bar_t and 1 - alpha_bar_t")


def _cases(kind: str) -> list[Case]:
    """Seeded float64 inputs: per-example t (first case avoids t = 1, where t - 1 = 0 makes
    some off-by-one formulas divide by zero), images, and an int t; t = 1 and T included."""
    lin, cos = _schedules()
    return [
        Case((lin, _x((4, 2), 40), _x((4, 2), 41), _t([2, 10, 500, 1000])),
             f"{kind} of shape (4, 2) with t = [2, 10, 500, 1000] (linear, T=1000)"),
        Case((cos, _x((3, 1, 5, 5), 42), _x((3, 1, 5, 5), 43), _t([50, 1, 25])),
             f"images of shape (3, 1, 5, 5) with t = [50, 1, 25] (cosine, T=50)"),
        Case((lin, _x((5, 2), 44), _x((5, 2), 45), 300),
             f"{kind} of shape (5, 2) with the int t = 300"),
        Case((lin, _x((3, 5, 2), 46), _x((3, 5, 2), 47), _t([1, 1000, 37])),
             f"{kind} of shape (3, 5, 2) with t = [1, 1000, 37] (linear, T=1000)"),
    ]


# --------------------------------------------------------------------------------------
# Exercise 5.1: x0 from (x_t, eps)
def check_x0_from_eps(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, xt, eps, t) -> x0`` against
    x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)
    (shapes: xt, eps (B, ...); t () or (B,)). Chapter 5."""
    from ...targets import x0_from_eps

    def formula(s, xt, e, t, shift=0, alpha=False, sqrt_num=True, sqrt_den=True, sign=-1.0,
                divide=True, den_noise=False):
        ab = _at(s.alphas if alpha else s.alpha_bar, t, xt, shift)
        num = (1 - ab).sqrt() if sqrt_num else (1 - ab)
        den = ab.sqrt() if sqrt_den else ab
        den = (1 - ab).sqrt() if den_noise else den
        inner = xt + sign * num * e
        return inner / den if divide else inner * den

    mistakes = [
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=1)),
        Mistake(_ALPHA_NOT_BAR, lambda *a: formula(*a, alpha=True)),
        Mistake(_NO_SQRT, lambda *a: formula(*a, sqrt_num=False)),
        Mistake(_NO_SQRT, lambda *a: formula(*a, sqrt_den=False)),
        Mistake(_NO_SQRT, lambda *a: formula(*a, sqrt_num=False, sqrt_den=False)),
        Mistake("check the sign of the noise term: x_t is the scaled x0 PLUS the scaled "
                "noise, so removing the noise is a subtraction", lambda *a: formula(*a, sign=1.0)),
        Mistake("you multiplied by sqrt(alpha_bar_t) at the end; solving x_t = sqrt(alpha_bar_t) "
                "x0 + ... for x0 divides by it", lambda *a: formula(*a, divide=False)),
        Mistake("you divided by sqrt(1 - alpha_bar_t), the noise's scale; x0 is scaled by "
                "sqrt(alpha_bar_t) in x_t, so divide by that", lambda *a: formula(*a, den_noise=True)),
        Mistake("you removed the noise but did not undo the scaling of x0 in x_t",
                lambda s, xt, e, t: xt - (1 - _at(s.alpha_bar, t, xt)).sqrt() * e),
    ]
    spec = Spec("check_x0_from_eps", lambda s, xt, e, t: x0_from_eps(s, xt, e, t),
                _cases("x_t"), mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 5.2: the posterior mean (the lecture's x~_{t-1}) from (x_t, eps)
def check_mu_from_eps(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, xt, eps, t) -> mu`` against the lecture's
    x~_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps)
    (shapes: xt, eps (B, ...); t () or (B,)). Chapter 5."""
    from ...posterior import posterior_mean_from_eps

    def formula(s, xt, e, t, shift=0, pre_bar=False, den_single=False, sqrt_den=True,
                sqrt_pre=True, sign=-1.0, sqrt_beta=False, no_pre=False):
        b, a = _at(s.betas, t, xt, shift), _at(s.alphas, t, xt, shift)
        ab = _at(s.alpha_bar, t, xt, shift)
        pre = ab if pre_bar else a
        den = a if den_single else ab
        den = (1 - den).sqrt() if sqrt_den else (1 - den)
        out = xt + sign * (b.sqrt() if sqrt_beta else b) / den * e
        return out if no_pre else out / (pre.sqrt() if sqrt_pre else pre)

    mistakes = [
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=1)),
        Mistake("the prefactor undoes ONE step of the forward process, x_t = sqrt(alpha_t) "
                "x_{t-1} + ...: it needs the single-step alpha_t, not alpha_bar_t",
                lambda *a: formula(*a, pre_bar=True)),
        Mistake("the noise eps was added over all t steps: its coefficient divides by "
                "sqrt(1 - alpha_bar_t), the cumulative alpha_bar_t (the slide writes "
                "sqrt(1 - alpha_t) meaning alpha_bar_t)", lambda *a: formula(*a, den_single=True)),
        Mistake("a square root is missing in the eps coefficient: the noise in x_t has "
                "standard deviation sqrt(1 - alpha_bar_t)", lambda *a: formula(*a, sqrt_den=False)),
        Mistake("a square root is missing in the prefactor: one forward step scales x_{t-1} "
                "by sqrt(alpha_t)", lambda *a: formula(*a, sqrt_pre=False)),
        Mistake("check the sign of the eps term: going back one step removes part of the noise",
                lambda *a: formula(*a, sign=1.0)),
        Mistake("the eps coefficient has beta_t itself on top (a variance over a standard "
                "deviation), not sqrt(beta_t)", lambda *a: formula(*a, sqrt_beta=True)),
        Mistake("the factor 1/sqrt(alpha_t) in front is missing: it undoes the scaling of "
                "x_{t-1} by sqrt(alpha_t) in one forward step", lambda *a: formula(*a, no_pre=True)),
        Mistake("you returned x0, the clean data; the posterior mean x~_{t-1} is only one "
                "step less noisy than x_t",
                lambda s, xt, e, t: (xt - (1 - _at(s.alpha_bar, t, xt)).sqrt() * e)
                / _at(s.alpha_bar, t, xt).sqrt()),
    ]
    spec = Spec("check_mu_from_eps", lambda s, xt, e, t: posterior_mean_from_eps(s, xt, e, t),
                _cases("x_t"), mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 5.3: v from (x0, eps)
def check_v(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, x0, eps, t) -> v`` against
    v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0
    (shapes: x0, eps (B, ...); t () or (B,)). Chapter 5."""
    from ...targets import v_from_x0_eps

    def formula(s, x0, e, t, shift=0, alpha=False, sqrt=True, swap=False, sign=1.0,
                sqrt_a=None, sqrt_b=None, x_sign=-1.0):
        ab = _at(s.alphas if alpha else s.alpha_bar, t, x0, shift)
        a = ab.sqrt() if (sqrt if sqrt_a is None else sqrt_a) else ab
        b = (1 - ab).sqrt() if (sqrt if sqrt_b is None else sqrt_b) else 1 - ab
        return sign * (a * x0 + x_sign * b * e) if swap else sign * (a * e + x_sign * b * x0)

    mistakes = [
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=1)),
        Mistake(_ALPHA_NOT_BAR, lambda *a: formula(*a, alpha=True)),
        Mistake(_NO_SQRT, lambda *a: formula(*a, sqrt=False)),
        Mistake("the two coefficients are swapped: at t = T (alpha_bar_T ~ 0) v should be "
                "almost -x0, and at small t almost eps", lambda *a: formula(*a, swap=True)),
        Mistake("the coefficients are swapped (sqrt(alpha_bar_t) goes with eps) and the sign "
                "is flipped: at small t, v is almost +eps",
                lambda *a: formula(*a, swap=True, sign=-1.0)),
        Mistake("the overall sign is flipped: we use the convention v = (+ ... eps) - ( ... x0)",
                lambda *a: formula(*a, sign=-1.0)),
        Mistake("the x0 term enters with a minus sign: v = sqrt(alpha_bar_t) eps - "
                "sqrt(1 - alpha_bar_t) x0", lambda *a: formula(*a, x_sign=1.0)),
        Mistake("that is x_t, the noised sample (x0 and eps with the same coefficients, both "
                "added), not v", lambda *a: formula(*a, swap=True, x_sign=1.0)),
        Mistake(_NO_SQRT.replace("a square root is missing", "a square root is missing on one "
                "factor"), lambda *a: formula(*a, sqrt_b=False)),
        Mistake(_NO_SQRT.replace("a square root is missing", "a square root is missing on one "
                "factor"), lambda *a: formula(*a, sqrt_a=False)),
        Mistake("the slide's 'x_0 eps' means a LINEAR combination a x0 + b eps, not the "
                "elementwise product x0 * eps",
                lambda s, x0, e, t: _at(s.alpha_bar, t, x0).sqrt()
                * (1 - _at(s.alpha_bar, t, x0)).sqrt() * x0 * e),
        Mistake("the slide's 'x_0 eps' means a LINEAR combination a x0 + b eps, not the "
                "elementwise product x0 * eps", lambda s, x0, e, t: x0 * e),
    ]
    spec = Spec("check_v", lambda s, x0, e, t: v_from_x0_eps(s, x0, e, t), _cases("x0"),
                mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)

