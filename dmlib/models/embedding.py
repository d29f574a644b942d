"""Sinusoidal time embedding and the input checks every dmlib model shares (chapter 6).

A denoiser is one network for all timesteps, so it must be told t. The integer t is
turned into a vector of sines and cosines at geometrically spaced frequencies (the
Transformer's positional encoding, used by DDPM):

    emb(t) = [sin(t w_0), ..., sin(t w_{h-1}), cos(t w_0), ..., cos(t w_{h-1})],
    w_i = max_period^(-i / h),   h = dim / 2,  i = 0..h-1.

Low i gives fast-varying features that tell neighbouring t apart, high i slow ones
that tell early from late; a small MLP then maps this into the network's width.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def check_model_inputs(xt: torch.Tensor, t: torch.Tensor, name: str = "model") -> None:
    """Validate the model calling convention ``model(xt, t)``.

    ``xt``: floating tensor (B, ...); ``t``: integer tensor of shape (B,) with the
    lecture's timesteps 1..T (the model does not know T, so only t >= 0 is checked).
    """
    if not isinstance(xt, torch.Tensor):
        raise TypeError(f"{name}: xt must be a torch.Tensor, got {type(xt).__name__}")
    if not xt.is_floating_point():
        raise TypeError(f"{name}: xt must be a floating tensor, got dtype {xt.dtype}; "
                        f"convert it with xt.float()")
    check_timesteps_tensor(t, name=name)
    if t.device != xt.device:
        raise ValueError(f"{name}: t is on {t.device} but xt is on {xt.device}; move t with "
                         f"t.to(xt.device)")
    if xt.dim() == 0 or t.shape[0] != xt.shape[0]:
        raise ValueError(f"{name}: t has {t.shape[0]} entries but xt has shape "
                         f"{tuple(xt.shape)}; pass one timestep per batch element, "
                         f"e.g. t = torch.full((xt.shape[0],), t_int)")


def check_timesteps_tensor(t: torch.Tensor, name: str = "time embedding") -> None:
    """``t`` must be an integer tensor of shape (B,) with non-negative entries."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: t must be a torch.long tensor of shape (B,), got "
                        f"{type(t).__name__}; use torch.full((B,), t_int, dtype=torch.long)")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name}: t must hold integer timesteps (torch.long), got dtype "
                        f"{t.dtype}; draw them with torch.randint(1, T + 1, (B,))")
    if t.dim() != 1:
        raise ValueError(f"{name}: t must have shape (B,), got shape {tuple(t.shape)}; "
                         f"for a single timestep use torch.full((B,), t_int)")
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"{name}: timesteps must be >= 0 (the lecture's t is 1..T), "
                         f"got {int(t.min())}")


class SinusoidalTimeEmbedding(nn.Module):
    """emb(t) = [sin(t w_i)]_i ++ [cos(t w_i)]_i with w_i = max_period^(-i/(dim/2)).

    Input t: long tensor (B,); output (B, dim) float32 (on t's device). No parameters.
    Chapter 6.
    """

    def __init__(self, dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 2 or dim % 2:
            raise ValueError(f"SinusoidalTimeEmbedding: dim must be an even int >= 2 "
                             f"(half sines, half cosines), got {dim!r}")
        if not max_period > 1:
            raise ValueError(f"SinusoidalTimeEmbedding: max_period must be > 1, got {max_period!r}")
        self.dim = dim
        self.max_period = float(max_period)
        half = dim // 2
        # w_i = exp(-ln(max_period) * i / half): the geometric ladder of frequencies.
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, dtype=torch.float64) / half)
        # A buffer so .to(device) moves it; not persistent: it is a function of (dim, max_period).
        self.register_buffer("freqs", freqs.float(), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        check_timesteps_tensor(t, name="SinusoidalTimeEmbedding")
        # float32 even under autocast: t * w_i reaches ~1000 and bf16 would blur the phase.
        args = t.to(torch.float32)[:, None] * self.freqs.to(t.device)[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}"


def embed_labels(label_emb: nn.Embedding | None, y: torch.Tensor | None, xt: torch.Tensor,
                 num_classes: int, name: str = "model", item: str = "example") -> torch.Tensor | None:
    """The label embedding E[y] (B, dim) of a class-conditional network (chapter 9), or None
    for an unconditional one (``num_classes = 0``). Labels y (B,) long in 0..K, K = the null
    label ("no label"); ``y=None`` means the null label for every example."""
    K = num_classes
    if not K:
        if y is not None:
            raise ValueError(f"{name}: this model is unconditional (num_classes=0) but labels y "
                             f"were passed; build it with num_classes=K in its config")
        return None
    if y is None:
        y = torch.full((xt.shape[0],), K, dtype=torch.long, device=xt.device)
    if not isinstance(y, torch.Tensor) or y.shape != (xt.shape[0],) or y.dtype != torch.long:
        got = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name}: y must be a long tensor of shape ({xt.shape[0]},) (one label "
                         f"per {item}), got {got}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > K):
        raise ValueError(f"{name}: labels must lie in 0..{K} ({K} = the null label), got "
                         f"{int(y.min())}..{int(y.max())}")
    return label_emb(y)


def timestep_mlp(dim: int, hidden: int, max_period: float = 10000.0) -> nn.Sequential:
    """t -> Linear(SiLU(Linear(emb(t)))): the learned time embedding of DDPM.

    Input t: long (B,); output (B, hidden). ``dim`` is the sinusoidal width. Chapter 6.
    """
    if not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"timestep_mlp: hidden must be a positive int, got {hidden!r}")
    return nn.Sequential(SinusoidalTimeEmbedding(dim, max_period), nn.Linear(dim, hidden),
                         nn.SiLU(), nn.Linear(hidden, hidden))
