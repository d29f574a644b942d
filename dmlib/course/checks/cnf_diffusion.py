"""Checks for chapter 8 (diffusion is a CNF): the probability-flow drift, a DDIM step and a
Heun step. Each check feeds fixed, seeded tensors and deterministic stand-in functions, so
typical wrong formulas give different numbers and a specific hint.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ._core import Case, CheckResult, Mistake, Spec, run_check

__all__: list[str] = ["check_pf_ode_drift", "check_ddim_step", "check_heun_step", "toy_velocity"]


def _x(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------------------
# Exercise 8.1: the probability-flow drift from eps
def _drift(eps, x, beta, ab, half=0.5, sign=-1.0, score_pow=0.5, drop_x=False):
    score = sign * eps / (1 - ab) ** score_pow
    return -half * beta * ((0 if drop_x else x) + score)


def check_pf_ode_drift(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(eps, xt, beta, alpha_bar) -> dx/dt`` against the VP probability-flow ODE

        dx/dt = -1/2 beta (x + grad log q_t(x)),   grad log q_t(x) = -eps / sqrt(1 - alpha_bar)

    ``eps``, ``xt`` tensors (B, d); ``beta``, ``alpha_bar`` floats. Chapter 8.
    """
    from ...likelihood import pf_ode_drift

    cases = [Case((_x((4, 2), 1), _x((4, 2), 2), 0.02, 0.3), "beta = 0.02, alpha_bar = 0.3, (4, 2)"),
             Case((_x((3, 5), 3), _x((3, 5), 4), 5.0, 0.9), "beta = 5, alpha_bar = 0.9, (3, 5)"),
             Case((_x((2, 2), 5), _x((2, 2), 6), 0.7, 0.05), "beta = 0.7, alpha_bar = 0.05")]
    mistakes = [
        Mistake("the score is MINUS eps / sqrt(1 - alpha_bar): eps points away from the data "
                "(x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps), the score towards it",
                lambda e, x, b, a: _drift(e, x, b, a, sign=1.0)),
        Mistake("that is the drift of the REVERSE SDE, -1/2 beta x - beta * score; the "
                "probability-flow ODE has half the score term: -1/2 beta (x + score)",
                lambda e, x, b, a: -0.5 * b * x + b * e / math.sqrt(1 - a)),
        Mistake("the score divides eps by the standard deviation sqrt(1 - alpha_bar), not by "
                "the variance 1 - alpha_bar",
                lambda e, x, b, a: _drift(e, x, b, a, score_pow=1.0)),
        Mistake("the factor 1/2 is missing: dx/dt = -1/2 beta(t) (x + score)",
                lambda e, x, b, a: _drift(e, x, b, a, half=1.0)),
        Mistake("the drift has two parts: the forward SDE's -1/2 beta x and the score term; "
                "you kept only the score term",
                lambda e, x, b, a: _drift(e, x, b, a, drop_x=True)),
    ]
    spec = Spec("check_pf_ode_drift", lambda e, x, b, a: pf_ode_drift(e, x, b, a), cases,
                mistakes)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 8.2: one DDIM step with given eps and z
def _ddim(eps, xt, ab, abp, eta, z, x0_pow=0.5, coef_ab="prev", dir_sigma=True,
          sig_std=True, swap=False):
    x0 = (xt - (1 - ab) ** x0_pow * eps) / math.sqrt(ab)
    a, b = (abp, ab) if not swap else (ab, abp)
    var = max(eta ** 2 * (1 - a) / (1 - b) * (1 - b / a), 0.0)
    sigma = math.sqrt(var) if sig_std else var
    c = math.sqrt(abp if coef_ab == "prev" else ab)
    d = math.sqrt(max(1 - abp - (sigma ** 2 if dir_sigma else 0.0), 0.0))
    return c * x0 + d * eps + sigma * z


def check_ddim_step(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(eps, xt, alpha_bar, alpha_bar_prev, eta, z) -> x_prev`` against DDIM's eq. 12:

        x0_hat = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)
        sigma  = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) sqrt(1 - alpha_bar / alpha_bar_prev)
        x_prev = sqrt(alpha_bar_prev) x0_hat + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z

    ``eps``, ``xt``, ``z`` tensors (B, d); the rest floats. Chapter 8.
    """
    def reference(e, x, ab, abp, eta, z):
        return _ddim(e, x, ab, abp, eta, z)

    cases = [Case((_x((4, 2), 10), _x((4, 2), 11), 0.2, 0.5, 0.0, _x((4, 2), 12)),
                  "eta = 0 (deterministic), alpha_bar 0.2 -> 0.5"),
             Case((_x((4, 2), 13), _x((4, 2), 14), 0.3, 0.6, 0.5, _x((4, 2), 15)),
                  "eta = 0.5, alpha_bar 0.3 -> 0.6"),
             Case((_x((3, 3), 16), _x((3, 3), 17), 0.05, 0.4, 1.0, _x((3, 3), 18)),
                  "eta = 1, alpha_bar 0.05 -> 0.4")]
    mistakes = [
        Mistake("x0_hat divides out the noise with the standard deviation: x_t - sqrt(1 - "
                "alpha_bar) eps, not (1 - alpha_bar) eps",
                lambda e, x, ab, abp, eta, z: _ddim(e, x, ab, abp, eta, z, x0_pow=1.0)),
        Mistake("x0_hat is re-noised to the EARLIER time: multiply it by sqrt(alpha_bar_prev), "
                "not sqrt(alpha_bar)",
                lambda e, x, ab, abp, eta, z: _ddim(e, x, ab, abp, eta, z, coef_ab="now")),
        Mistake("with eta > 0 part of the noise is fresh: the eps direction has variance "
                "1 - alpha_bar_prev - sigma^2, not 1 - alpha_bar_prev",
                lambda e, x, ab, abp, eta, z: _ddim(e, x, ab, abp, eta, z, dir_sigma=False)),
        Mistake("sigma is a standard deviation: take the square root of eta^2 (1 - a') / (1 - a) "
                "(1 - a / a')",
                lambda e, x, ab, abp, eta, z: _ddim(e, x, ab, abp, eta, z, sig_std=False)),
        Mistake("in sigma, alpha_bar_prev and alpha_bar are swapped",
                lambda e, x, ab, abp, eta, z: _ddim(e, x, ab, abp, eta, z, swap=True)),
    ]
    return run_check(fn, Spec("check_ddim_step", reference, cases, mistakes), verbose)


# --------------------------------------------------------------------------------------
# Exercise 8.3: one Heun step on d x_bar / d sigma = f(x_bar, sigma)
def toy_velocity(xbar: torch.Tensor, sigma: float) -> torch.Tensor:
    """A fixed stand-in for the velocity eps(x, t(sigma)): tanh(0.7 x_bar + 0.2)(1 + 0.3 sigma).
    Defined at sigma = 0 too, so a wrong last step shows. Chapter 8."""
    return torch.tanh(0.7 * xbar + 0.2) * (1 + 0.3 * sigma)


def _heun(f, x, s, sn, kind="heun", last_euler=True):
    d = f(x, s)
    xe = x + (sn - s) * d
    if kind == "euler" or (sn == 0 and last_euler):
        return xe
    if kind == "end":
        return x + (sn - s) * f(xe, sn)
    if kind == "same_point":
        return x + (sn - s) * 0.5 * (d + f(x, sn))
    if kind == "midpoint":
        return x + (sn - s) * f(x + 0.5 * (sn - s) * d, 0.5 * (s + sn))
    return x + (sn - s) * 0.5 * (d + f(xe, sn))


def check_heun_step(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(f, xbar, sigma, sigma_next) -> xbar_next`` against Heun's method (Karras et
    al. 2022, Alg. 1):

        d = f(xbar, sigma);  xbar_E = xbar + (sigma_next - sigma) d
        if sigma_next == 0: return xbar_E
        return xbar + (sigma_next - sigma) (d + f(xbar_E, sigma_next)) / 2

    ``f(xbar, sigma)`` the velocity, ``xbar`` (B, d), ``sigma``, ``sigma_next`` floats. Chapter 8.
    """
    f = toy_velocity
    cases = [Case((f, _x((4, 2), 20), 2.0, 1.2), "sigma 2.0 -> 1.2"),
             Case((f, _x((3, 4), 21), 0.5, 0.1), "sigma 0.5 -> 0.1"),
             Case((f, _x((4, 2), 22), 0.3, 0.0), "the last step, sigma 0.3 -> 0")]
    mistakes = [
        Mistake("that is Euler's step (DDIM): Heun then re-evaluates the slope at the Euler "
                "point and averages the two slopes",
                lambda f, x, s, sn: _heun(f, x, s, sn, "euler")),
        Mistake("Heun AVERAGES the slopes at both ends, (d + d_E) / 2; you used only the "
                "slope at the end",
                lambda f, x, s, sn: _heun(f, x, s, sn, "end")),
        Mistake("the second slope is taken at the Euler point xbar_E, not at the starting "
                "point xbar",
                lambda f, x, s, sn: _heun(f, x, s, sn, "same_point")),
        Mistake("that is the midpoint method (also second order); Heun averages the slopes "
                "at the start and at the Euler end point",
                lambda f, x, s, sn: _heun(f, x, s, sn, "midpoint")),
        Mistake("at the last step (sigma_next = 0) Karras et al. keep the Euler step: the "
                "model is not trained at sigma = 0",
                lambda f, x, s, sn: _heun(f, x, s, sn, last_euler=False)),
    ]
    spec = Spec("check_heun_step", lambda f, x, s, sn: _heun(f, x, s, sn), cases, mistakes)
    return run_check(fn, spec, verbose)
