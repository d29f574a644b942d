"""Respacing: sample with S << T steps from a model trained with T steps (chapter 7).

A model trained on T = 1000 steps knows eps_theta(x_t, t) for every t, and the forward
process at any subset of times tau_1 < ... < tau_S = T is itself a Markov chain:

    q(x_{tau_k} | x_{tau_{k-1}}) = N(sqrt(alpha_bar_{tau_k} / alpha_bar_{tau_{k-1}}) x, beta'_k I),
    beta'_k = 1 - alpha_bar_{tau_k} / alpha_bar_{tau_{k-1}}     (tau_0 = 0, alpha_bar_0 = 1)

because alpha_bar'_k = prod_{j<=k} (1 - beta'_j) = alpha_bar_{tau_k}: the respaced chain has
the same marginals q(x_{tau_k} | x_0). So Algorithm 2 runs unchanged on the S-step schedule
with betas beta'_k, calling the model at the original time tau_k (``RespacedModel``). This
is the respacing of Nichol & Dhariwal (2021); it trades a little quality for T / S times
fewer network calls. ``dmlib.sampling.sample(..., steps=S)`` uses it for every sampler.

**One convention.** tau_k = round(k T / S), k = 1..S: the last time is always T (the loop
starts from pure noise) and the times are as evenly spaced as integers allow. In
diffusers' vocabulary this is ``timestep_spacing="trailing"`` (diffusers' 0-based t is
our t - 1). Its other spacings, "leading" and "linspace", include t = 1 but may stop short
of T; chapter 6 compares them with this one.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .schedules import Schedule

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def respaced_timesteps(T: int, steps: int) -> torch.Tensor:
    """tau_1 < ... < tau_S = T, evenly spaced in 1..T: tau_k = round(k T / S).

    Returns a long tensor (S,). ``steps`` must be in 1..T. Chapter 7.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in 1..T={T}, got {steps!r}")
    k = torch.arange(1, steps + 1, dtype=torch.float64)
    taus = torch.round(k * T / steps).long()
    assert taus[-1] == T and bool((taus[1:] > taus[:-1]).all())
    return taus


def respace(schedule: Schedule, steps: int) -> tuple[Schedule, torch.Tensor]:
    """The S-step schedule on the times ``respaced_timesteps(T, S)`` and those times.

    beta'_k = 1 - alpha_bar_{tau_k} / alpha_bar_{tau_{k-1}}, so alpha_bar'_k =
    alpha_bar_{tau_k} (same marginals). Returns ``(schedule_S, taus)``: a ``Schedule``
    with T = S, and the long tensor taus (S,). ``steps = T`` returns an equal schedule.
    Chapter 7.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a dmlib Schedule, got {type(schedule).__name__}")
    taus = respaced_timesteps(schedule.T, steps)
    ab = schedule.alpha_bar[taus]
    ab_prev = torch.cat([schedule.alpha_bar[:1], ab[:-1]])  # alpha_bar_{tau_0} = alpha_bar_0 = 1
    betas = 1 - ab / ab_prev
    return Schedule(betas, name=f"{schedule.name}-respaced{steps}"), taus


class RespacedModel(nn.Module):
    """``RespacedModel(model, taus)(x, k) = model(x, taus[k - 1])``: the trained model seen
    from the respaced chain, whose step k (1..S) is the original time tau_k. x: (B, ...),
    k: (B,) long in 1..S. Chapter 7."""

    def __init__(self, model: Model, taus: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("taus", torch.as_tensor(taus, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if k.dtype != torch.long or bool((k < 1).any()) or bool((k > self.taus.numel()).any()):
            raise ValueError(f"RespacedModel: k must be a long tensor in 1..S={self.taus.numel()}")
        return self.model(x, self.taus.to(k.device)[k - 1])


__all__ = ["respaced_timesteps", "respace", "RespacedModel"]
