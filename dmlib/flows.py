"""Discrete normalizing flows: affine coupling layers and a RealNVP-style flow (chapter 2).

Notation of the lecture: a flow maps noise z_0 ~ N(0, I) to data x = z_K through K
invertible maps z_i = f_i(z_{i-1}) (the *generative* direction). The change of variables
gives the exact log-likelihood

    log p_x(x) = log p_z(f^{-1}(x)) - sum_{i=1}^K log |det df_i / dz_{i-1}|.

An affine coupling layer (Dinh et al., RealNVP) keeps the coordinates picked by a binary
``mask`` (m) and transforms the others with a scale and shift computed from the kept ones:

    f(z) = m * z + (1 - m) * (z * exp(s(m * z)) + b(m * z))

Its Jacobian is triangular, so log |det df/dz| = sum_j (1 - m_j) s_j(m * z): cheap, and
exact. The inverse is just as cheap: z = m * x + (1 - m) * (x - b(m * x)) * exp(-s(m * x)),
because m * x = m * z.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


def _check_batch(z: torch.Tensor, dim: int, name: str = "z") -> None:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, {dim}), got {type(z).__name__}")
    if z.dim() != 2 or z.shape[1] != dim:
        raise ValueError(f"{name} must have shape (B, {dim}), got {tuple(z.shape)}")


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) = -1/2 |z|^2 - d/2 log(2 pi) for z of shape (B, d); returns (B,). Chapter 2."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"z must be a torch.Tensor of shape (B, d), got {type(z).__name__}")
    if z.dim() != 2:
        raise ValueError(f"z must have shape (B, d), got {tuple(z.shape)}")
    return -0.5 * (z ** 2).sum(-1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def coupling_log_det(z: torch.Tensor, mask: torch.Tensor,
                     log_scale_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """log |det df/dz| of an affine coupling layer: sum_j (1 - m_j) s_j(m * z). Chapter 2.

    ``z``: (B, d); ``mask``: (d,) of 0/1 (1 = kept, conditions the others);
    ``log_scale_fn``: (B, d) -> (B, d), the log-scale s (only entries with m_j = 0 are used).
    Returns (B,).
    """
    if not isinstance(mask, torch.Tensor) or mask.dim() != 1:
        raise ValueError("mask must be a 1-D tensor of 0/1 of shape (d,)")
    _check_batch(z, mask.shape[0])
    s = log_scale_fn(mask * z)
    if not isinstance(s, torch.Tensor) or s.shape != z.shape:
        raise ValueError(f"log_scale_fn must return a tensor shaped like z {tuple(z.shape)}")
    return ((1 - mask) * s).sum(-1)


class AffineCoupling(nn.Module):
    """One affine coupling layer f(z) = m z + (1 - m)(z exp(s(m z)) + b(m z)). Chapter 2.

    ``mask``: (d,) of 0/1 with at least one 0 and one 1. s and b come from one MLP
    (``hidden`` units, ``depth`` hidden layers); s = c * tanh(raw) with a learnt c per
    coordinate keeps early training stable. The last layer starts at zero: f starts as
    the identity.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.dim() != 1 or not ((mask == 0) | (mask == 1)).all():
            raise ValueError("mask must be a 1-D tensor of zeros and ones")
        if mask.sum() == 0 or mask.sum() == mask.numel():
            raise ValueError("mask needs at least one 1 (kept) and one 0 (transformed) entry")
        if hidden < 1 or depth < 1:
            raise ValueError(f"hidden and depth must be positive, got {hidden}, {depth}")
        d = mask.numel()
        self.dim = d
        self.register_buffer("mask", mask)
        layers: list[nn.Module] = [nn.Linear(d, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        last = nn.Linear(hidden, 2 * d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.scale = nn.Parameter(torch.ones(d))

    def _s_b(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, b = self.net(kept).chunk(2, dim=-1)
        return self.scale * torch.tanh(raw_s), b

    def log_scale(self, kept: torch.Tensor) -> torch.Tensor:
        """s(m z), shape (B, d)."""
        return self._s_b(kept)[0]

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = f(z) and log |det df/dz|; z (B, d) -> ((B, d), (B,))."""
        _check_batch(z, self.dim)
        m = self.mask.to(z.dtype)
        s, b = self._s_b(m * z)
        x = m * z + (1 - m) * (z * torch.exp(s) + b)
        return x, ((1 - m) * s).sum(-1)

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = f^{-1}(x) and log |det df/dz| at that z (the forward log-det); ((B, d), (B,))."""
        _check_batch(x, self.dim, "x")
        m = self.mask.to(x.dtype)
        s, b = self._s_b(m * x)  # m * x = m * z: the kept half passes unchanged
        z = m * x + (1 - m) * (x - b) * torch.exp(-s)
        return z, ((1 - m) * s).sum(-1)


class RealNVP(nn.Module):
    """A stack of ``n_layers`` affine couplings with alternating masks. Chapter 2.

    Generation x = f_K o ... o f_1(z_0), z_0 ~ N(0, I); the likelihood runs the inverses:
    log p_x(x) = log N(f^{-1}(x); 0, I) - sum_i log |det df_i/dz_{i-1}|.
    """

    def __init__(self, dim: int = 2, n_layers: int = 8, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ValueError(f"dim must be an int >= 2 (a coupling needs two parts), got {dim!r}")
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
        self.dim = dim
        base = (torch.arange(dim) % 2).float()
        self.layers = nn.ModuleList(
            AffineCoupling(base if i % 2 == 0 else 1 - base, hidden, depth) for i in range(n_layers))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Generation: x = f(z) and sum_i log |det df_i/dz_{i-1}|; ((B, d), (B,))."""
        _check_batch(z, self.dim)
        log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for layer in self.layers:
            z, ld = layer(z)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoding: z_0 = f^{-1}(x) and sum_i log |det df_i/dz_{i-1}|; ((B, d), (B,))."""
        _check_batch(x, self.dim, "x")
        log_det = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in reversed(self.layers):
            x, ld = layer.inverse(x)
            log_det = log_det + ld
        return x, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_x(x) = log N(f^{-1}(x)) - sum_i log|det df_i/dz_{i-1}|; x (B, d) -> (B,)."""
        z, log_det = self.inverse(x)
        return standard_normal_log_prob(z) - log_det

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """x = f(z_0), z_0 ~ N(0, I) drawn with ``generator`` (CPU); returns (n, d)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int (number of samples), got {n!r}")
        p = next(self.parameters())
        z = torch.randn(n, self.dim, generator=generator).to(device=p.device, dtype=p.dtype)
        return self(z)[0]


def flow_nll_loss(model: nn.Module, batch: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Maximum likelihood: the mean of -log p(x) over the batch; for ``dmlib.training.train``."""
    return -model.log_prob(batch).mean()


__all__ = ["standard_normal_log_prob", "coupling_log_det", "AffineCoupling", "RealNVP",
           "flow_nll_loss"]
