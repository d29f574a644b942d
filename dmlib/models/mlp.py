"""A residual MLP denoiser for 2-D toy data (chapter 6).

    h_0     = W_in x_t
    h_{k+1} = h_k + W_2 SiLU(W_1 norm(h_k) + U_k e(t)),   k = 0..depth-1
    out     = W_out SiLU(norm(h_depth))

with e(t) = MLP(sinusoidal(t)) shared by all blocks and U_k a per-block projection:
every block sees the timestep, so one network can denoise at every noise level.
W_out starts at zero, so the untrained model predicts 0 (the mean of eps).

Class-conditional (``num_classes = K > 0``, chapter 9): ``model(xt, t, y)`` with y in 0..K,
K the null label, and e(t) replaced by e(t) + E[y]; the label table E starts at zero, so
labels begin as "no information" (as in the U-Net).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .embedding import check_model_inputs, embed_labels, timestep_mlp


@dataclass(frozen=True)
class MLPConfig:
    """Hyper-parameters of ``MLPDenoiser``; ``MLPDenoiser(config)`` rebuilds the model.

    dim: data dimension (2 for the toy sets); hidden: width; depth: residual blocks;
    time_dim: width of the sinusoidal embedding; norm: ``"layer"`` or ``"none"``;
    dropout: inside each block; max_period: of the sinusoidal embedding; num_classes: 0 for
    an unconditional model, else K labels 0..K-1 plus the null label K (chapter 9).
    """

    dim: int = 2
    hidden: int = 128
    depth: int = 4
    time_dim: int = 64
    norm: str = "layer"
    dropout: float = 0.0
    max_period: float = 10000.0
    num_classes: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) \
                or self.num_classes < 0:
            raise ValueError(f"MLPConfig.num_classes must be an int >= 0 (0: unconditional), "
                             f"got {self.num_classes!r}")
        for k in ("dim", "hidden", "depth", "time_dim"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"MLPConfig.{k} must be a positive int, got {v!r}")
        if self.time_dim % 2:
            raise ValueError(f"MLPConfig.time_dim must be even (sines and cosines), got {self.time_dim}")
        if self.norm not in ("layer", "none"):
            raise ValueError(f"MLPConfig.norm must be 'layer' or 'none', got {self.norm!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"MLPConfig.dropout must be in [0, 1), got {self.dropout!r}")


class _ResidualBlock(nn.Module):
    """h + W_2 Dropout(SiLU(W_1 norm(h) + U e(t)))."""

    def __init__(self, hidden: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden) if norm == "layer" else nn.Identity()
        self.lin1 = nn.Linear(hidden, hidden)
        self.time_proj = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(dropout)
        self.lin2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        z = self.lin1(self.norm(h)) + self.time_proj(temb)
        return h + self.lin2(self.drop(self.act(z)))


class MLPDenoiser(nn.Module):
    """``model(xt, t)``: xt (B, dim) float, t (B,) long in 1..T -> (B, dim). Chapter 6.

    Predicts whatever target it is trained on (eps, x0, mu or v); the loss decides.
    With ``num_classes = K > 0`` (chapter 9): ``model(xt, t, y)``, y (B,) long in 0..K
    (K, or y=None: the null label).
    """

    def __init__(self, config: MLPConfig | None = None) -> None:
        super().__init__()
        config = MLPConfig() if config is None else config
        if not isinstance(config, MLPConfig):
            raise TypeError(f"MLPDenoiser expects an MLPConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.time_mlp = timestep_mlp(c.time_dim, c.hidden, c.max_period)
        # K classes + the null label K; zero at the start: labels begin as "no information"
        self.label_emb = nn.Embedding(c.num_classes + 1, c.hidden) if c.num_classes else None
        if self.label_emb is not None:
            nn.init.zeros_(self.label_emb.weight)
        self.inp = nn.Linear(c.dim, c.hidden)
        self.blocks = nn.ModuleList(_ResidualBlock(c.hidden, c.norm, c.dropout) for _ in range(c.depth))
        self.out_norm = nn.LayerNorm(c.hidden) if c.norm == "layer" else nn.Identity()
        self.out = nn.Linear(c.hidden, c.dim)
        nn.init.zeros_(self.out.weight)  # start by predicting 0 = E[eps]
        nn.init.zeros_(self.out.bias)

    def forward(self, xt: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        check_model_inputs(xt, t, name="MLPDenoiser")
        if xt.dim() != 2 or xt.shape[1] != self.config.dim:
            raise ValueError(f"MLPDenoiser: xt must have shape (B, {self.config.dim}), got "
                             f"{tuple(xt.shape)}; flatten the data or set MLPConfig(dim=...)")
        temb = self.time_mlp(t)
        lab = embed_labels(self.label_emb, y, xt, self.config.num_classes, "MLPDenoiser")
        if lab is not None:
            temb = temb + lab.to(temb.dtype)
        h = self.inp(xt)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))
