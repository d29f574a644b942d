"""Checks for chapter 9 (guidance): the classifier-free guidance combination, the
classifier-guidance eps, and the label dropout inside the CFG training loss. Each check feeds
fixed, seeded tensors (and a deterministic stand-in network), so typical wrong versions give
different numbers and a specific hint.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ._core import Case, CheckResult, Mistake, Spec, run_check

__all__: list[str] = ["check_cfg_combination", "check_classifier_guidance", "check_cfg_loss",
                      "toy_conditional_net"]


def _x(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------------------
# Exercise 9.1: the CFG combination
def check_cfg_combination(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(eps_cond, eps_uncond, w) -> eps_w`` against Ho & Salimans (2022), eq. 6:

        eps_w = (1 + w) eps(x_t, y) - w eps(x_t, null)

    ``eps_cond``, ``eps_uncond``: tensors (B, ...); ``w`` a float >= 0. Chapter 9."""
    cases = [Case((_x((4, 2), 1), _x((4, 2), 2), 2.0), "w = 2, (4, 2)"),
             Case((_x((2, 1, 3, 3), 3), _x((2, 1, 3, 3), 4), 0.5), "w = 0.5, images (2, 1, 3, 3)"),
             Case((_x((3, 2), 5), _x((3, 2), 6), 0.0), "w = 0 (the conditional model)")]
    mistakes = [
        Mistake("that is the 'guidance_scale' convention of many libraries, eps_u + s (eps_c - "
                "eps_u), with s = w: here w = 0 must give the CONDITIONAL model, so the "
                "scale is s = 1 + w", lambda c, u, w: u + w * (c - u)),
        Mistake("conditional and unconditional are swapped: the guided eps moves AWAY from "
                "the unconditional prediction, towards (and past) the conditional one",
                lambda c, u, w: (1 + w) * u - w * c),
        Mistake("the unconditional term is SUBTRACTED: eps_w = (1 + w) eps_c - w eps_u",
                lambda c, u, w: (1 + w) * c + w * u),
        Mistake("the conditional term has weight 1 + w, not 1: the weights must sum to 1 so "
                "that equal predictions are left unchanged", lambda c, u, w: c - w * u),
        Mistake("this is an average of the two predictions; guidance EXTRAPOLATES beyond the "
                "conditional one: (1 + w) eps_c - w eps_u", lambda c, u, w: (c + w * u) / (1 + w)),
    ]
    spec = Spec("check_cfg_combination", lambda c, u, w: (1 + w) * c - w * u, cases, mistakes)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 9.2: classifier guidance as an eps correction
def _cg(eps, g, ab, w, sign=-1.0, scale="1+w", s_pow=0.5, div=False):
    s = (1 - ab) ** s_pow
    k = (1 + w) if scale == "1+w" else w
    return eps + sign * k * (g / s if div else s * g)


def check_classifier_guidance(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(eps, grad_log_py, alpha_bar, w) -> eps_hat`` against classifier guidance
    (Dhariwal & Nichol 2021, Alg. 2, eps form, with their scale = 1 + w):

        eps_hat = eps - (1 + w) sqrt(1 - alpha_bar) grad_x log p(y | x_t)

    ``eps``, ``grad_log_py`` tensors (B, ...); ``alpha_bar``, ``w`` floats. Chapter 9."""
    cases = [Case((_x((4, 2), 7), _x((4, 2), 8), 0.3, 1.0), "alpha_bar = 0.3, w = 1"),
             Case((_x((3, 2), 9), _x((3, 2), 10), 0.8, 0.0), "alpha_bar = 0.8, w = 0"),
             Case((_x((2, 1, 2, 2), 11), _x((2, 1, 2, 2), 12), 0.05, 3.0), "alpha_bar = 0.05, w = 3")]
    mistakes = [
        Mistake("the sign: eps = -sqrt(1 - alpha_bar) * score, so ADDING to the score "
                "(grad log p(y | x_t)) means SUBTRACTING from eps",
                lambda e, g, a, w: _cg(e, g, a, w, sign=1.0)),
        Mistake("the classifier term has weight 1 + w: with w = 0 it must still be there, "
                "because eps(x_t) alone is the UNconditional model; Bayes: grad log p(x_t | y) "
                "= grad log p(x_t) + grad log p(y | x_t)", lambda e, g, a, w: _cg(e, g, a, w, scale="w")),
        Mistake("the factor is the standard deviation sqrt(1 - alpha_bar), not the variance "
                "1 - alpha_bar", lambda e, g, a, w: _cg(e, g, a, w, s_pow=1.0)),
        Mistake("a score becomes an eps by MULTIPLYING by -sqrt(1 - alpha_bar) "
                "(eps = -sqrt(1 - alpha_bar) grad log p), not dividing",
                lambda e, g, a, w: _cg(e, g, a, w, div=True)),
        Mistake("the score must be converted to the eps scale: multiply grad log p(y | x_t) by "
                "sqrt(1 - alpha_bar)", lambda e, g, a, w: _cg(e, g, a, w, s_pow=0.0)),
    ]
    spec = Spec("check_classifier_guidance", lambda e, g, a, w: _cg(e, g, a, w), cases, mistakes)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 9.3: label dropout in the CFG loss
def toy_conditional_net(xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for a conditional network ``net(xt, t, y)`` whose output depends on
    all three inputs (the label through a per-label offset; the null label has its own)."""
    d = xt.shape[1]
    phase = 0.01 * t.to(xt.dtype)[:, None] + torch.arange(d, dtype=xt.dtype)
    return 0.3 * xt + 0.4 * (y.to(xt.dtype)[:, None] + 1) * torch.sin(phase)


def _loss(net, x0, y, eps, t, ab, u, p, null, drop="lt", xt_pow=0.5, null_as=None):
    if drop == "lt":
        y_in = torch.where(u < p, torch.full_like(y, null if null_as is None else null_as), y)
    elif drop == "gt":
        y_in = torch.where(u > p, torch.full_like(y, null), y)
    else:
        y_in = y
    a = ab[t].reshape(-1, *([1] * (x0.dim() - 1)))
    xt = a ** xt_pow * x0 + (1 - a) ** xt_pow * eps
    sq = (net(xt, t, y_in) - eps) ** 2
    if drop == "skip":  # the dropped examples removed from the loss instead of relabelled
        keep = (u >= p).to(sq.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
        return (sq * keep).sum() / (keep.sum() * sq[0].numel())
    return sq.mean()


def check_cfg_loss(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(net, x0, y, eps, t, alpha_bar, u, p_uncond, null_label) -> loss``: the CFG
    training loss with label dropout, for given draws (t, eps and u ~ U[0, 1) per example):

        y'   = null_label where u < p_uncond, else y
        x_t  = sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) eps
        loss = mean (net(x_t, t, y') - eps)^2

    ``alpha_bar``: (T + 1,) tensor indexed by t. Chapter 9."""
    from ...schedules import Schedule

    ab = Schedule.linear(100).alpha_bar
    t = torch.tensor([3, 50, 97, 20, 71, 8])
    y = torch.tensor([0, 2, 1, 1, 0, 2])
    u = torch.tensor([0.05, 0.7, 0.25, 0.9, 0.5, 0.15], dtype=torch.float64)
    cases = [Case((toy_conditional_net, _x((6, 2), 13), y, _x((6, 2), 14), t, ab, u, 0.3, 3),
                  "p_uncond = 0.3, null label 3"),
             Case((toy_conditional_net, _x((6, 2), 15), y, _x((6, 2), 16), t, ab, u, 0.0, 3),
                  "p_uncond = 0 (never dropped)"),
             Case((toy_conditional_net, _x((6, 3), 17), y, _x((6, 3), 18), t, ab, u, 0.6, 5),
                  "p_uncond = 0.6, null label 5")]
    mistakes = [
        Mistake("the label is dropped when u > p_uncond, i.e. with probability 1 - p_uncond: "
                "drop it when u < p_uncond", lambda *a: _loss(*a, drop="gt")),
        Mistake("the labels are never replaced: without the null label the network never "
                "learns eps(x_t, null), which the guided sampler needs", lambda *a: _loss(*a, drop="none")),
        Mistake("the dropped examples were removed from the loss; they must stay in it with "
                "the NULL label: they are what trains the unconditional model",
                lambda *a: _loss(*a, drop="skip")),
        Mistake("the null label is its own label (null_label = K, one past the classes), not "
                "class 0: replacing by 0 teaches the network that digit 0 means 'no label'",
                lambda *a: _loss(*a, null_as=0)),
        Mistake("x_t uses the square roots: sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps",
                lambda *a: _loss(*a, xt_pow=1.0)),
    ]
    spec = Spec("check_cfg_loss", lambda *a: _loss(*a), cases, mistakes)
    return run_check(fn, spec, verbose)
