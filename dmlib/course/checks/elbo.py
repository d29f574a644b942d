"""Checks for chapter 4: from the ELBO to an L2 loss.

* ``check_posterior_variance``: beta_tilde_t, the variance of q(x_{t-1} | x_t, x_0) (C4.4);
* ``check_equal_variance_kl``: the equal-variance KL term ||mu_tilde - mu_theta||^2 / (2 sigma_t^2) (C4.5);
* ``check_gaussian_denoiser``: the optimal denoiser E[x_0 | x_t] for Gaussian data (C4.7).

(The posterior mean's check, ``check_posterior_mean``, lives in ``diffusion``.)
"""

from __future__ import annotations

from typing import Callable

import torch

from ...schedules import Schedule
from ._core import (Case, CheckResult, Mistake, Spec, _at, _BROADCAST, _OFF_BY_ONE, _schedules, _t,
                    _x, run_check)

__all__ = ["check_posterior_variance", "check_equal_variance_kl", "check_gaussian_denoiser"]


# --------------------------------------------------------------------------------------
# C4.4: the posterior variance beta_tilde_t
def _gather(v: torch.Tensor, t: int | torch.Tensor, shift: int = 0) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.long) + shift
    if int(t.min()) < 0 or int(t.max()) >= v.numel():
        raise IndexError("shifted t out of range")
    return v[t]


def _beta_tilde(s: Schedule, t, shift: int = 0, swap: bool = False, use_alpha: bool = False,
                std: bool = False) -> torch.Tensor:
    ab = _gather(s.alphas if use_alpha else s.alpha_bar, t, shift)
    abp = _gather(s.alphas, t, shift - 1) if use_alpha else _gather(s.alpha_bar_prev, t, shift)
    num, den = (1 - ab, 1 - abp) if swap else (1 - abp, 1 - ab)
    var = num / den * _gather(s.betas, t, shift)
    return var.sqrt() if std else var


def check_posterior_variance(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, t) -> beta_tilde_t``, the variance of q(x_{t-1} | x_t, x_0):

        beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t

    ``t``: an int or a long tensor of shape (B,); the result has t's shape (() or (B,)),
    float64 like the schedule. Chapter 4, C4.4.
    """
    lin, cos = _schedules()
    cases = [
        Case((lin, _t([2, 3, 10, 500, 999])), "t = [2, 3, 10, 500, 999] (linear, T=1000)"),
        Case((cos, _t([2, 7, 25, 49])), "t = [2, 7, 25, 49] (cosine, T=50)"),
        Case((lin, 700), "the int t = 700 (linear, T=1000): return a 0-d tensor"),
        Case((cos, _t([1, 50])), "t = [1, 50], the first and last steps (cosine, T=50)"),
    ]
    mistakes = [
        Mistake("the ratio is upside down: beta_tilde_t is SMALLER than beta_t (knowing x_0 "
                "removes uncertainty); which of alpha_bar_{t-1} and alpha_bar_t belongs in "
                "the numerator?", lambda s, t: _beta_tilde(s, t, swap=True)),
        Mistake("you returned a standard deviation: the exercise asks for the variance "
                "beta_tilde_t (no square root)", lambda s, t: _beta_tilde(s, t, std=True)),
        Mistake(_OFF_BY_ONE, lambda s, t: _beta_tilde(s, t, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda s, t: _beta_tilde(s, t, shift=1)),
        Mistake("that is beta_t itself, the forward step's variance (DDPM's other choice of "
                "sigma_t^2); the posterior's variance multiplies it by a ratio of noise levels",
                lambda s, t: _gather(s.betas, t)),
        Mistake("the ratio uses the single-step alpha_{t-1}, alpha_t; the noise levels of "
                "q(x_{t-1}|x_0) and q(x_t|x_0) are 1 - alpha_bar (cumulative products)",
                lambda s, t: _beta_tilde(s, t, use_alpha=True)),
        Mistake("beta_t is missing: the ratio of noise levels (1 - alpha_bar_{t-1}) / "
                "(1 - alpha_bar_t) multiplies beta_t",
                lambda s, t: _gather(s.alpha_bar_prev, t).neg().add(1) / _gather(s.alpha_bar, t).neg().add(1)),
        Mistake("beta is taken at t - 1: all three factors are at the same t (beta_t, with "
                "alpha_bar_{t-1} = schedule.alpha_bar_prev[t])",
                lambda s, t: (1 - _gather(s.alpha_bar_prev, t)) / (1 - _gather(s.alpha_bar, t))
                * _gather(s.betas, t, -1)),
    ]
    spec = Spec("check_posterior_variance", lambda s, t: s.posterior_variance[s.timesteps(t)],
                cases, mistakes, broadcast_hint="index the schedule's tensors with t "
                "(schedule.alpha_bar[t]); the result has t's shape", float32=None,
                elementwise=True)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# C4.5: the KL term between two Gaussians with the same variance sigma_t^2
def _sq(mu_a: torch.Tensor, mu_b: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
    d = (mu_a - mu_b).pow(2).reshape(mu_a.shape[0], -1)
    return d.sum(1) if reduce == "sum" else d.mean(1)


def _kl_cases() -> list[Case]:
    lin = Schedule.linear(1000)
    cases = []
    for k, (shape, t) in enumerate([((4, 2), [2, 10, 500, 1000]), ((3, 1, 5, 5), [3, 200, 900]),
                                    ((5, 3), [2, 2, 50, 600, 999]), ((3, 5, 2), [1, 1000, 37])]):
        mu_tilde = _x(shape, 40 + k)
        mu_theta = mu_tilde + 0.1 * _x(shape, 50 + k)
        var = lin.posterior_variance[_t(t)] if k == 1 else lin.betas[_t(t)]
        cases.append(Case((mu_tilde, mu_theta, var),
                          f"mu of shape {shape} with sigma_t^2 of shape ({len(t)},)"))
    return cases


def check_equal_variance_kl(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(mu_tilde, mu_theta, var) -> kl``, the KL term of equal-variance Gaussians:

        KL( N(mu_tilde, sigma_t^2 I) || N(mu_theta, sigma_t^2 I) ) = ||mu_tilde - mu_theta||^2 / (2 sigma_t^2)

    summed over the data dimensions. Shapes: ``mu_tilde``, ``mu_theta`` (B, ...); ``var``
    (B,) holds sigma_t^2 per example (a variance). Returns (B,). Chapter 4, C4.5.
    """
    mistakes = [
        Mistake("the factor 1/2 is missing: KL = (squared distance) / (2 sigma_t^2)",
                lambda a, b, v: _sq(a, b) / v),
        Mistake("var already holds sigma_t^2 (a variance): you divided by sigma_t, a standard "
                "deviation", lambda a, b, v: _sq(a, b) / (2 * v.sqrt())),
        Mistake("var already holds sigma_t^2: you squared it again", lambda a, b, v: _sq(a, b) / (2 * v ** 2)),
        Mistake("you averaged over the data dimensions: the KL of isotropic Gaussians is the SUM "
                "of the per-dimension KLs", lambda a, b, v: _sq(a, b, "mean") / (2 * v)),
        Mistake("the slide's '- 1/2' does not belong here: for equal variances the log-ratio and "
                "the constants cancel (chapter 1's erratum)",
                lambda a, b, v: _sq(a, b) / (2 * v) - 0.5),
        Mistake("the numerator is the SQUARED distance ||mu_tilde - mu_theta||^2, not the "
                "distance", lambda a, b, v: _sq(a, b).sqrt() / (2 * v)),
        Mistake("for equal variances the constant terms cancel: only the squared distance over "
                "2 sigma_t^2 remains (you added a constant per dimension)",
                lambda a, b, v: _sq(a, b) / (2 * v) + 0.5 * a[0].numel()),
    ]
    spec = Spec("check_equal_variance_kl", lambda a, b, v: _sq(a, b) / (2 * v), _kl_cases(), mistakes,
                broadcast_hint="return one KL per example, shape (B,): sum the squared "
                "differences over every non-batch dimension, then divide by 2 var (shape (B,))")
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# C4.7: the optimal denoiser for Gaussian data
def _denoiser(s: Schedule, xt, t, mean: float, var: float, shift: int = 0, no_sqrt: bool = False,
              no_signal_in_denom: bool = False, no_mean: bool = False, a_sq: bool = False,
              sub_mean: bool = True, add_mean: bool = True, std_noise: bool = False) -> torch.Tensor:
    ab = _at(s.alpha_bar, t, xt, shift)
    a = ab if no_sqrt else ab.sqrt()
    noise = (1 - ab).sqrt() if std_noise else 1 - ab
    denom = (var + noise) if no_signal_in_denom else ((a ** 2 if a_sq else ab) * var + noise)
    if no_mean:
        return a * var / denom * xt
    return (mean if add_mean else 0.0) + a * var / denom * (xt - (a * mean if sub_mean else 0.0))


def check_gaussian_denoiser(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, xt, t, mean, var) -> E[x_0 | x_t]`` for data x_0 ~ N(mean, var I):

        E[x_0 | x_t] = mean + sqrt(alpha_bar_t) var / (alpha_bar_t var + 1 - alpha_bar_t)
                              * (x_t - sqrt(alpha_bar_t) mean)

    ``mean``, ``var``: Python floats (the data's mean and variance, every dimension);
    ``xt`` (B, ...); ``t`` an int or (B,). Returns (B, ...). Chapter 4, C4.7.
    """
    lin, cos = _schedules()
    cases = [
        Case((lin, _x((4, 2), 60), _t([2, 10, 400, 999]), 0.5, 0.3),
             "x_t of shape (4, 2), t = [2, 10, 400, 999], data N(0.5, 0.3)"),
        Case((cos, _x((3, 1, 4, 4), 61), _t([2, 25, 49]), -1.0, 2.0),
             "x_t of shape (3, 1, 4, 4), t = [2, 25, 49] (cosine, T=50), data N(-1, 2)"),
        Case((lin, _x((5, 2), 62), 300, 0.0, 0.25), "the int t = 300, data N(0, 0.25)"),
        Case((lin, _x((2, 3), 63), _t([1, 1000]), 0.2, 1.5),
             "t = [1, 1000], the first and last steps, data N(0.2, 1.5)"),
        Case((lin, _x((3, 5, 2), 64), _t([1, 1000, 37]), 0.3, 0.7),
             "x_t of shape (3, 5, 2) with t = [1, 1000, 37], data N(0.3, 0.7)"),
    ]
    mistakes = [
        Mistake(_OFF_BY_ONE, lambda *a: _denoiser(*a, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda *a: _denoiser(*a, shift=1)),
        Mistake("a square root is missing: x_t carries sqrt(alpha_bar_t) x_0, so the signal "
                "scale is sqrt(alpha_bar_t)", lambda *a: _denoiser(*a, no_sqrt=True)),
        Mistake("the variance of x_t is alpha_bar_t var + (1 - alpha_bar_t): the data variance "
                "is scaled by alpha_bar_t in the denominator",
                lambda *a: _denoiser(*a, no_signal_in_denom=True)),
        Mistake("the data mean is missing: shrink x_t toward sqrt(alpha_bar_t) mean, then add "
                "the mean back", lambda *a: _denoiser(*a, no_mean=True)),
        Mistake("a square root is missing: x_t carries sqrt(alpha_bar_t) x_0, so the signal "
                "scale is a = sqrt(alpha_bar_t) (and a^2 = alpha_bar_t)",
                lambda *a: _denoiser(*a, no_sqrt=True, a_sq=True)),
        Mistake("inside the bracket subtract the mean of x_t, sqrt(alpha_bar_t) mean: shrink "
                "x_t - a m toward 0, then add the mean back", lambda *a: _denoiser(*a, sub_mean=False)),
        Mistake("the data mean is not added back: E[x_0 | x_t] = mean + (shrunk deviation)",
                lambda *a: _denoiser(*a, add_mean=False)),
        Mistake("the denominator is the VARIANCE of x_t, alpha_bar_t var + (1 - alpha_bar_t): "
                "the noise enters with its variance, not its standard deviation",
                lambda *a: _denoiser(*a, std_noise=True)),
        Mistake("that is x_t / sqrt(alpha_bar_t), which ignores the noise; the posterior mean "
                "weighs x_t against the prior N(mean, var)",
                lambda s, xt, t, m, v: xt / _at(s.alpha_bar, t, xt).sqrt()),
    ]
    spec = Spec("check_gaussian_denoiser", lambda s, xt, t, m, v: _denoiser(s, xt, t, m, v),
                cases, mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)

