"""The forward (noising) process q (chapter 3).

One step:      q(x_t | x_{t-1}) = N( sqrt(1 - beta_t) x_{t-1}, beta_t I ),  t = 1..T
Closed form:   q(x_t | x_0)     = N( sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I )

``q_step`` draws one step, ``q_iterate`` t of them (the slow Markov chain), ``q_sample``
jumps straight to x_t; chapter 3 checks that the last two have the same law.

Errata (chapter 3, C3.1/C3.2): the slides write ``N(sqrt(1-beta_t) x_{t-1}, sqrt(beta_t) I)``
and ``q(x_t|x_0) = (sqrt(alpha_t) x_0, sqrt(1 - alpha_t) I)``: the second slot of N(., .) is
a *variance* (their own reparameterisation x_t = sqrt(1-beta_t) x_{t-1} + sqrt(beta_t) eps
has variance beta_t), and the slides' alpha_t there is the cumulative product that dmlib
calls ``alpha_bar``.

``t`` follows dmlib's convention (an int, or a long tensor of shape () or (B,) with
B == x.shape[0]); the schedule validates it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ._validate import check_same_shape
from .schedules import Schedule


def draw_noise(shape: Sequence[int], *, dtype: torch.dtype, device: torch.device | str,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """eps ~ N(0, I) of ``shape`` on ``device``, drawn with ``generator`` (chapter 3).

    The noise is drawn on the generator's own device and then moved, so a CPU generator
    also drives sampling on a GPU (and gives the same numbers on both).
    """
    if generator is None:
        return torch.randn(tuple(shape), dtype=dtype, device=device)
    eps = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=generator.device)
    return eps.to(device)


def _noise_like(x: torch.Tensor, eps: torch.Tensor | None, generator: torch.Generator | None,
                name: str) -> torch.Tensor:
    """Return ``eps`` (checked to have x's shape) or fresh N(0, I) noise shaped like ``x``."""
    if eps is None:
        return draw_noise(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    check_same_shape(**{name: x, "eps": eps})
    return eps


def q_step_mean_var(schedule: Schedule, x_prev: torch.Tensor,
                    t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of one forward step q(x_t | x_{t-1}) (chapter 3, C3.1).

        q(x_t | x_{t-1}) = N( sqrt(1 - beta_t) x_{t-1}, beta_t I )

    The variance is beta_t, NOT sqrt(beta_t) as the slide writes (erratum).

    Shapes: ``x_prev`` (B, ...); returns ``(mean, var)`` both shaped like ``x_prev``.
    t in 1..T.
    """
    beta = schedule.extract(schedule.betas, t, x_prev)
    mean = torch.sqrt(1 - beta) * x_prev
    return mean, beta.expand_as(mean)


def q_step(schedule: Schedule, x_prev: torch.Tensor, t: int | torch.Tensor,
           eps: torch.Tensor | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_{t-1}) by reparameterisation (chapter 3, C3.1).

        x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps,   eps ~ N(0, I),  alpha_t = 1 - beta_t

    Shapes: ``x_prev`` (B, ...), ``eps`` like ``x_prev`` (drawn with ``generator`` when
    None); returns x_t like ``x_prev``. t in 1..T.
    """
    alpha = schedule.extract(schedule.alphas, t, x_prev)  # validates t before drawing noise
    beta = schedule.extract(schedule.betas, t, x_prev)
    eps = _noise_like(x_prev, eps, generator, "x_prev")
    return torch.sqrt(alpha) * x_prev + torch.sqrt(beta) * eps


def q_mean_var(schedule: Schedule, x0: torch.Tensor,
               t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_t | x_0) (chapter 3, C3.2).

        q(x_t | x_0) = N( sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I )

    (The slide writes sqrt(1 - alpha_t) in the variance slot and alpha_t for alpha_bar_t.)
    Shapes: ``x0`` (B, ...); returns ``(mean, var)`` both shaped like ``x0``.
    t in 0..T (t = 0 gives mean x0, variance 0).
    """
    ab = schedule.extract(schedule.alpha_bar, t, x0, allow_zero=True)
    mean = torch.sqrt(ab) * x0
    return mean, (1 - ab).expand_as(mean)


def q_sample(schedule: Schedule, x0: torch.Tensor, t: int | torch.Tensor,
             eps: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) in one jump (chapter 3, C3.2; Algorithm 1 of DDPM).

        x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I)

    Shapes: ``x0`` (B, ...), ``eps`` must have x0's shape (drawn with ``generator`` when
    None); returns x_t like ``x0``. t in 0..T; t = 0 returns x0 (alpha_bar_0 = 1).
    """
    sab = schedule.extract(schedule.sqrt_alpha_bar, t, x0, allow_zero=True)  # validates t first
    s1m = schedule.extract(schedule.sqrt_one_minus_alpha_bar, t, x0, allow_zero=True)
    eps = _noise_like(x0, eps, generator, "x0")
    return sab * x0 + s1m * eps


def q_iterate(schedule: Schedule, x0: torch.Tensor, t: int,
              generator: torch.Generator | None = None,
              return_all: bool = False) -> torch.Tensor:
    """Reach x_t from x_0 by t single steps of q(x_s | x_{s-1}), s = 1..t (chapter 3, C3.2).

        x_s = sqrt(alpha_s) x_{s-1} + sqrt(beta_s) eps_s,   eps_s ~ N(0, I) independent

    The slow path that ``q_sample`` jumps over: its law is q(x_t | x_0), which the chapter
    checks. ``t`` is one int in 0..T for the whole batch (t = 0 returns x0 unchanged).
    Shapes: ``x0`` (B, ...); returns x_t like ``x0``, or with ``return_all`` the whole path
    x_0..x_t stacked, shape (t + 1, B, ...).
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"t must be a single int (one t for the whole batch), got "
                        f"{type(t).__name__}; for per-example t use q_sample")
    schedule.timesteps(t, allow_zero=True)  # 0 <= t <= T, with dmlib's message otherwise
    x, path = x0, [x0]
    for s in range(1, t + 1):
        x = q_step(schedule, x, s, generator=generator)
        if return_all:
            path.append(x)
    return torch.stack(path) if return_all else x
