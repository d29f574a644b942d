"""Checks for chapter 0 (and the schedule exercises of chapter 3)."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import Case, CheckResult, Mistake, Spec, _schedules, run_check


# --------------------------------------------------------------------------------------
# Chapter 0: alpha_bar from betas
def _ref_alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1 - betas, 0)


def check_alpha_bar(fn: Callable[[torch.Tensor], torch.Tensor], verbose: bool = True) -> CheckResult:
    """Check ``fn(betas) -> alpha_bar`` with betas (T,) -> alpha_bar (T,),
    alpha_bar_t = prod_{s=1}^t (1 - beta_s). Chapter 0 (warm-up) and chapter 3."""
    rand = 0.001 + 0.2 * torch.rand(7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cases = [Case((s.betas[1:].clone(),), f"the {s.name} schedule with T={s.T}") for s in _schedules()]
    cases.append(Case((rand,), "7 random betas"))
    mistakes = [
        Mistake("you multiplied the betas themselves; each factor is alpha_s = 1 - beta_s",
                lambda b: torch.cumprod(b, 0)),
        Mistake("you returned alpha_t = 1 - beta_t; alpha_bar_t is the running product of "
                "the alphas up to and including t", lambda b: 1 - b),
        Mistake("you used a running sum; alpha_bar_t is a running product",
                lambda b: torch.cumsum(1 - b, 0)),
        Mistake("your product stops one step early (it excludes alpha_t itself)",
                lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]])),
        Mistake("you took a square root: alpha_bar_t itself is the product, its square root "
                "comes later as the scale of x0", lambda b: torch.cumprod(1 - b, 0).sqrt()),
        Mistake("you returned T + 1 entries; return one entry per beta (t = 1..T)",
                lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)])),
    ]
    return run_check(fn, Spec("check_alpha_bar", _ref_alpha_bar, cases, mistakes,
                              atol=1e-9, rtol=1e-7), verbose)


