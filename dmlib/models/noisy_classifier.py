"""A noise-aware classifier p_phi(y | x_t, t) for 2-D data (chapter 9).

Classifier guidance needs grad_x log p(y | x_t) at every noise level, so the classifier sees
the noisy x_t and the timestep t, exactly like the denoiser (it reuses the residual MLP
blocks of ``MLPDenoiser``):

    h_0 = W_in x_t,   h_{k+1} = h_k + W_2 SiLU(W_1 norm(h_k) + U_k e(t)),   logits = W_out h

Trained by cross-entropy on (x_t, y) with t ~ U{1..T} and x_t ~ q(x_t | x_0)
(``dmlib.guidance.noisy_classifier_loss``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .embedding import check_model_inputs, timestep_mlp
from .mlp import _ResidualBlock


@dataclass(frozen=True)
class NoisyClassifierConfig:
    """``NoisyClassifier(config)`` rebuilds the model. dim: data dimension; num_classes: C;
    hidden, depth, time_dim: as in ``MLPConfig``."""

    dim: int = 2
    num_classes: int = 3
    hidden: int = 128
    depth: int = 3
    time_dim: int = 64

    def __post_init__(self) -> None:
        for k in ("dim", "num_classes", "hidden", "depth", "time_dim"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"NoisyClassifierConfig.{k} must be a positive int, got {v!r}")
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {self.num_classes}")
        if self.time_dim % 2:
            raise ValueError(f"NoisyClassifierConfig.time_dim must be even, got {self.time_dim}")


class NoisyClassifier(nn.Module):
    """``classifier(xt, t)``: xt (B, dim), t (B,) long in 1..T -> logits (B, num_classes);
    log_softmax of the logits is log p_phi(y | x_t). Chapter 9."""

    def __init__(self, config: NoisyClassifierConfig | None = None) -> None:
        super().__init__()
        config = NoisyClassifierConfig() if config is None else config
        if not isinstance(config, NoisyClassifierConfig):
            raise TypeError(f"NoisyClassifier expects a NoisyClassifierConfig, got "
                            f"{type(config).__name__}")
        self.config = c = config
        self.time_mlp = timestep_mlp(c.time_dim, c.hidden)
        self.inp = nn.Linear(c.dim, c.hidden)
        self.blocks = nn.ModuleList(_ResidualBlock(c.hidden, "layer", 0.0) for _ in range(c.depth))
        self.out_norm = nn.LayerNorm(c.hidden)
        self.out = nn.Linear(c.hidden, c.num_classes)

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_model_inputs(xt, t, name="NoisyClassifier")
        if xt.dim() != 2 or xt.shape[1] != self.config.dim:
            raise ValueError(f"NoisyClassifier: xt must have shape (B, {self.config.dim}), got "
                             f"{tuple(xt.shape)}")
        temb = self.time_mlp(t)
        h = self.inp(xt)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))
