"""Gaussian mixtures with diagonal covariances (chapters 1, 4, 6).

A mixture is the one kind of data whose every diffusion quantity is known in closed form:
its density, its score, and -- because the forward process q(x_t | x_0) is Gaussian --
the noised marginal q(x_t) (``GaussianMixture.noised``), which makes the optimal denoiser
computable. Chapter 1 samples and evaluates one, chapter 4 compares a bound with its true
log-likelihood, chapter 6 trains on ``default_gmm2d()``.

    p(x) = sum_k w_k N(x; mu_k, diag(var_k)),   w_k > 0,  sum_k w_k = 1

Parameters are stored in float64 (densities of well-separated modes underflow quickly in
float32); ``sample`` returns float32 unless asked otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

_DT = torch.float64
_LOG_2PI = math.log(2 * math.pi)


def _as_generator(seed: int | torch.Generator | None) -> torch.Generator | None:
    """An ``int`` seeds a fresh CPU generator; a ``Generator`` (or ``None``) passes through."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be a non-negative int or a torch.Generator, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return torch.Generator().manual_seed(seed)


def _check_n(n: int, name: str = "n") -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be a positive int (number of samples), got {n!r}")
    if n <= 0:
        raise ValueError(f"{name} must be a positive int (number of samples), got {n}")


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """p(x) = sum_k w_k N(x; mu_k, diag(var_k)). Chapter 1.

    ``weights``: (K,), positive, summing to 1 (within 1e-6).
    ``means``: (K, d).
    ``var``: per-component variances, (K, d) (diagonal covariance) or (K,) (isotropic,
    expanded to (K, d)). All positive. Variances, not standard deviations.

    Inputs may be lists, NumPy arrays or tensors; they are stored as float64 tensors.
    """

    weights: torch.Tensor
    means: torch.Tensor
    var: torch.Tensor

    def __post_init__(self) -> None:
        w = torch.as_tensor(self.weights, dtype=_DT).clone()
        mu = torch.as_tensor(self.means, dtype=_DT).clone()
        var = torch.as_tensor(self.var, dtype=_DT).clone()
        if w.dim() != 1 or w.numel() == 0:
            raise ValueError(f"weights must be a non-empty 1-D tensor of shape (K,), got shape "
                             f"{tuple(w.shape)}")
        K = w.numel()
        if mu.dim() != 2 or mu.shape[0] != K or mu.shape[1] == 0:
            raise ValueError(f"means must have shape (K, d) = ({K}, d) to match weights of shape "
                             f"({K},), got {tuple(mu.shape)}")
        d = mu.shape[1]
        if var.dim() == 1 and var.shape[0] == K:
            var = var[:, None].expand(K, d).clone()  # isotropic: one variance per component
        if tuple(var.shape) != (K, d):
            raise ValueError(f"var must have shape (K, d) = ({K}, {d}) (diagonal) or ({K},) "
                             f"(isotropic), got {tuple(var.shape)}")
        for name, v in (("weights", w), ("means", mu), ("var", var)):
            if not torch.isfinite(v).all():
                raise ValueError(f"{name} contains NaN or inf")
        if (w <= 0).any():
            raise ValueError(f"weights must all be positive (drop empty components instead), "
                             f"got min {float(w.min()):.6g}")
        if abs(float(w.sum()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got {float(w.sum()):.8g}; "
                             f"normalise them with weights / weights.sum()")
        if (var <= 0).any():
            raise ValueError(f"var (component variances) must be positive, got min "
                             f"{float(var.min()):.6g}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "means", mu)
        object.__setattr__(self, "var", var)

    # -- shape ----------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        """K, the number of components."""
        return self.weights.numel()

    @property
    def dim(self) -> int:
        """d, the dimension of x."""
        return self.means.shape[1]

    def mean(self) -> torch.Tensor:
        """E[x] = sum_k w_k mu_k, shape (d,), float64."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """Cov[x] = sum_k w_k (diag(var_k) + mu_k mu_k^T) - E[x] E[x]^T, shape (d, d)."""
        m = self.mean()
        second = (torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)
                  + torch.diag(self.weights @ self.var))
        return second - torch.outer(m, m)

    # -- sampling and density ---------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | int | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw x ~ p: k ~ Categorical(w), then x = mu_k + sqrt(var_k) * eps, eps ~ N(0, I).

        Returns shape (n, d) in ``dtype`` (float32 by default). ``generator`` may be an int
        seed. Chapter 1.
        """
        _check_n(n)
        g = _as_generator(generator)
        k = torch.multinomial(self.weights, n, replacement=True, generator=g)
        eps = torch.randn(n, self.dim, generator=g, dtype=_DT)
        return (self.means[k] + self.var[k].sqrt() * eps).to(dtype)

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (n, {self.dim}), "
                            f"got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"wrong shape for x: expected (n, {self.dim}), got {tuple(x.shape)}")
        return x.to(_DT)

    def component_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log w_k + log N(x; mu_k, diag(var_k)) for every k, shape (n, K), float64.

        log N = -1/2 sum_i [ (x_i - mu_ki)^2 / var_ki + log(2 pi var_ki) ].
        """
        x = self._check_x(x)
        diff2 = (x[:, None, :] - self.means[None]) ** 2  # (n, K, d)
        log_n = -0.5 * (diff2 / self.var + torch.log(self.var) + _LOG_2PI).sum(-1)
        return torch.log(self.weights) + log_n

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = logsumexp_k [ log w_k + log N(x; mu_k, diag(var_k)) ].

        ``x``: (n, d). Returns (n,), float64 (logsumexp keeps far-away points finite).
        Chapter 1.
        """
        return torch.logsumexp(self.component_log_prob(x), dim=-1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior over components r_k(x) = w_k N(x; mu_k, var_k) / p(x), shape (n, K).

        Rows sum to 1. Used for the optimal denoiser E[x_0 | x_t] (chapters 4, 6).
        """
        return torch.softmax(self.component_log_prob(x), dim=-1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The score grad_x log p(x) = sum_k r_k(x) (mu_k - x) / var_k, shape (n, d), float64.

        Chapter 5 (eps = -sqrt(1 - alpha_bar_t) * score of q(x_t)).
        """
        r = self.responsibilities(x)  # (n, K)
        xd = x.to(_DT)
        return torch.einsum("nk,nkd->nd", r, (self.means[None] - xd[:, None, :]) / self.var)

    def entropy(self, n_mc: int = 100_000, seed: int | torch.Generator = 0) -> tuple[float, float]:
        """Monte Carlo entropy H[p] = -E_p[log p(x)] in nats (no closed form for K > 1).

        Returns ``(estimate, standard_error)`` with standard_error = std(log p(x)) / sqrt(n_mc).
        Chapters 4, 6 compare a model's NLL bound with it.
        """
        _check_n(n_mc, "n_mc")
        if n_mc < 2:
            raise ValueError("n_mc must be at least 2 to estimate a standard error")
        lp = self.log_prob(self.sample(n_mc, _as_generator(seed), dtype=_DT))
        return float(-lp.mean()), float(lp.std() / math.sqrt(n_mc))

    # -- the forward process ------------------------------------------------------------
    def noised(self, alpha_bar: float | torch.Tensor) -> "GaussianMixture":
        """The marginal q(x_t) of the forward process started from this mixture. Chapter 4.

        x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps keeps each component Gaussian:

            q(x_t) = sum_k w_k N(x_t; sqrt(alpha_bar_t) mu_k,
                                 diag(alpha_bar_t var_k + (1 - alpha_bar_t)))

        ``alpha_bar`` is a scalar in [0, 1] (e.g. ``schedule.alpha_bar[t]``); 1 returns the
        mixture itself, 0 gives N(0, I).
        """
        ab = torch.as_tensor(alpha_bar, dtype=_DT)
        if ab.numel() != 1:
            raise ValueError(f"alpha_bar must be a scalar, got shape {tuple(ab.shape)}; "
                             f"call noised once per timestep")
        ab = ab.reshape(())
        if not torch.isfinite(ab) or ab < 0 or ab > 1:
            raise ValueError(f"alpha_bar must lie in [0, 1], got {float(ab):.6g}")
        return GaussianMixture(self.weights, ab.sqrt() * self.means, ab * self.var + (1 - ab))


def default_gmm2d() -> GaussianMixture:
    """The course's 2-D mixture: 9 equal modes on a 3 x 3 grid, std 0.15 each. Chapter 6.

    Means at {-a, 0, a}^2 with a = sqrt(1.5 (1 - 0.15^2)) ~ 1.211, so that each coordinate
    has exactly unit variance: Var[x_i] = 2 a^2 / 3 + 0.15^2 = 1, and mean 0.
    """
    std = 0.15
    a = math.sqrt(1.5 * (1 - std ** 2))
    grid = torch.tensor([-a, 0.0, a], dtype=_DT)
    means = torch.cartesian_prod(grid, grid)
    return GaussianMixture(torch.full((9,), 1 / 9, dtype=_DT), means,
                           torch.full((9,), std ** 2, dtype=_DT))


def ring_gmm(n_modes: int = 8, std: float = 0.1) -> GaussianMixture:
    """``n_modes`` equal modes on a circle, each isotropic with standard deviation ``std``.

    Mode k sits at r (cos 2 pi k / n, sin 2 pi k / n) with r = sqrt(2 (1 - std^2)), so each
    coordinate has unit variance when n_modes >= 3 (Var = r^2 / 2 + std^2 = 1). The density
    behind ``eight_gaussians`` (chapter 6).
    """
    if isinstance(n_modes, bool) or not isinstance(n_modes, int) or n_modes < 3:
        raise ValueError(f"n_modes must be an int >= 3, got {n_modes!r}")
    if not (0 < std < 1):
        raise ValueError(f"std must lie in (0, 1) so the ring radius is real, got {std!r}")
    r = math.sqrt(2 * (1 - std ** 2))
    angle = 2 * math.pi * torch.arange(n_modes, dtype=_DT) / n_modes
    means = r * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return GaussianMixture(torch.full((n_modes,), 1 / n_modes, dtype=_DT), means,
                           torch.full((n_modes,), std ** 2, dtype=_DT))
