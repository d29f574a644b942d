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
        Mistake("you computed 1 - (product of the betas); alpha_bar_t is the product of the "
                "factors 1 - beta_s", lambda b: 1 - torch.cumprod(b, 0)),
        Mistake("1 - (sum of the betas) is only the first-order approximation of the product "
                "of the (1 - beta_s); compute the product itself (torch.cumprod)",
                lambda b: 1 - torch.cumsum(b, 0)),
        Mistake("you returned T + 1 entries; return one entry per beta (t = 1..T)",
                lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)])),
    ]
    return run_check(fn, Spec("check_alpha_bar", _ref_alpha_bar, cases, mistakes, elementwise=True),
                     verbose)




# --------------------------------------------------------------------------------------
# Chapter 0: pixels to the model's range, and the signal-to-noise ratio
def _ref_to_model_range(images: torch.Tensor) -> torch.Tensor:
    return images.to(torch.float32) / 127.5 - 1


def check_to_model_range(fn: Callable[[torch.Tensor], torch.Tensor],
                         verbose: bool = True) -> CheckResult:
    """Check ``fn(images) -> x`` mapping uint8 pixels {0..255} of any shape to float32 in
    [-1, 1]: x = p / 127.5 - 1 (0 -> -1, 255 -> 1). Chapter 0."""
    g = torch.Generator().manual_seed(7)
    cases = [Case((torch.randint(0, 256, (4, 1, 28, 28), generator=g, dtype=torch.uint8),),
                  "uint8 images of shape (4, 1, 28, 28)"),
             Case((torch.tensor([0, 1, 127, 128, 254, 255], dtype=torch.uint8),),
                  "the pixel values [0, 1, 127, 128, 254, 255]")]
    f = lambda p: p.to(torch.float32)  # noqa: E731
    mistakes = [
        Mistake("your values lie in [0, 1]: that is the first half of the job; the model "
                "expects [-1, 1], so stretch and shift", lambda p: f(p) / 255),
        Mistake("0 maps to -1 but 255 does not reach 1: divide by 255 / 2, not 128",
                lambda p: f(p) / 128 - 1),
        Mistake("the shift goes the other way: 0 must map to -1 (subtract 1 after scaling)",
                lambda p: f(p) / 127.5 + 1),
        Mistake("the range is reversed: 0 must map to -1 and 255 to +1",
                lambda p: 1 - f(p) / 127.5),
        Mistake("the result is centred but spans [-0.5, 0.5]: scale by 2 as well",
                lambda p: f(p) / 255 - 0.5),
        Mistake("you still have integers in 0..255 (convert to float and rescale)", f),
        Mistake("some pixels came out wrong because uint8 arithmetic wraps around above 255 "
                "(200 * 2 = 144): convert to float before multiplying", lambda p: (p * 2) / 255 - 1),
    ]
    spec = Spec("check_to_model_range", _ref_to_model_range, cases, mistakes, float32=None)
    return run_check(fn, spec, verbose)


def check_snr(fn: Callable[[torch.Tensor], torch.Tensor], verbose: bool = True) -> CheckResult:
    """Check ``fn(alpha_bar) -> snr`` with SNR_t = alpha_bar_t / (1 - alpha_bar_t), shapes (T,).
    Chapter 0 (warm-up); chapter 3 plots it."""
    cases = [Case((s.alpha_bar[1:].clone(),), f"alpha_bar of the {s.name} schedule, T={s.T}")
             for s in _schedules()]
    mistakes = [
        Mistake("you divided the noise variance by the signal variance: SNR puts the signal "
                "(alpha_bar_t) on top", lambda a: (1 - a) / a),
        Mistake("you used standard deviations; SNR is a ratio of variances",
                lambda a: a.sqrt() / (1 - a).sqrt()),
        Mistake("you returned log SNR; return the ratio itself", lambda a: torch.log(a / (1 - a))),
        Mistake("the denominator is the noise variance 1 - alpha_bar_t, not 1 + alpha_bar_t",
                lambda a: a / (1 + a)),
        Mistake("the numerator is the signal variance alpha_bar_t, not 1",
                lambda a: 1 / (1 - a)),
        Mistake("a square root on one factor only: SNR is a ratio of two variances, "
                "alpha_bar_t and 1 - alpha_bar_t, with no square roots",
                lambda a: a / (1 - a).sqrt()),
        Mistake("a square root on one factor only: SNR is a ratio of two variances, "
                "alpha_bar_t and 1 - alpha_bar_t, with no square roots",
                lambda a: a.sqrt() / (1 - a)),
    ]
    spec = Spec("check_snr", lambda a: a / (1 - a), cases, mistakes, elementwise=True)
    return run_check(fn, spec, verbose)
