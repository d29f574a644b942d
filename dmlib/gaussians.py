"""Closed forms for Gaussians: KL divergence and log-densities (chapter 1).

Everything is elementwise and broadcasts like ordinary torch arithmetic; callers sum over
the data dimensions themselves (an isotropic d-dimensional Gaussian is d independent 1-D
ones, so its KL / log-density is the sum of the elementwise values).

Variances are called ``var`` (never a standard deviation), as everywhere in dmlib.

Erratum (chapter 1, C1.3): for equal variances the slide writes
KL = (mu_x - mu_y)^2 / 2 - 1/2. The correct value is (mu_x - mu_y)^2 / (2 sigma^2):
the log-ratio and the "- 1/2" cancel, and the squared distance is divided by the variance.
``normal_kl`` gives it with ``var1 == var2``.
"""

from __future__ import annotations

import math

import torch

_LOG_2PI = math.log(2 * math.pi)


def _as_tensor(x: torch.Tensor | float, like: torch.Tensor | None, name: str) -> torch.Tensor:
    """Accept Python numbers next to tensors, adopting the dtype/device of ``like``."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        if like is None:
            return torch.tensor(float(x), dtype=torch.get_default_dtype())
        return torch.tensor(float(x), dtype=like.dtype, device=like.device)
    raise TypeError(f"{name} must be a torch.Tensor or a float, got {type(x).__name__}")


def _first_tensor(*xs) -> torch.Tensor | None:
    for x in xs:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x
    return None


def check_positive_var(var: torch.Tensor, name: str = "var") -> None:
    """``var`` must be finite and strictly positive (a variance, the square of a std)."""
    if not torch.isfinite(var).all():
        raise ValueError(f"{name} contains NaN or inf values; a variance must be finite")
    if (var <= 0).any():
        raise ValueError(
            f"{name} must be > 0 (it is a variance sigma^2), got min {float(var.min()):.6g}; "
            f"a zero variance is a point mass with no density (at t = 1 use beta_1, not "
            f"beta_tilde_1 = 0)")


def normal_kl(mean1: torch.Tensor | float, var1: torch.Tensor | float,
              mean2: torch.Tensor | float, var2: torch.Tensor | float) -> torch.Tensor:
    """Elementwise KL(N(mean1, var1) || N(mean2, var2)) in nats (chapter 1, C1.2).

        KL = 1/2 * ( log(var2 / var1) + (var1 + (mean1 - mean2)^2) / var2 - 1 )

    which is the slide's (sigma_x^2 + (mu_x - mu_y)^2) / (2 sigma_y^2) + log(sigma_y / sigma_x)
    - 1/2. With var1 == var2 == sigma^2 it reduces to (mean1 - mean2)^2 / (2 sigma^2)
    (the slide's equal-variance version is wrong, see the module docstring).

    Shapes: any, broadcast together; returns the broadcast shape. Sum over the data
    dimensions for the KL of isotropic (diagonal) Gaussians. Both variances must be > 0.
    """
    like = _first_tensor(mean1, var1, mean2, var2)
    named = ((mean1, "mean1"), (var1, "var1"), (mean2, "mean2"), (var2, "var2"))
    mean1, var1, mean2, var2 = (_as_tensor(v, like, n) for v, n in named)
    check_positive_var(var1, "var1")
    check_positive_var(var2, "var2")
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def gaussian_log_prob(x: torch.Tensor | float, mean: torch.Tensor | float,
                      var: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(x; mean, var) (chapter 1).

        log N(x; mu, sigma^2) = -1/2 * ( log(2 pi sigma^2) + (x - mu)^2 / sigma^2 )

    Shapes: any, broadcast together; returns the broadcast shape. ``var`` must be > 0.
    """
    like = _first_tensor(x, mean, var)
    x, mean, var = (_as_tensor(v, like, n) for v, n in ((x, "x"), (mean, "mean"), (var, "var")))
    check_positive_var(var, "var")
    return -0.5 * (_LOG_2PI + torch.log(var) + (x - mean) ** 2 / var)


def _log_diff_ndtr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(Phi(b) - Phi(a)) for a <= b, accurate in both tails.

    In the upper tail Phi(b) - Phi(a) is a difference of two numbers close to 1; use the
    mirror identity Phi(b) - Phi(a) = Phi(-a) - Phi(-b) there so that nothing cancels.
    """
    upper = (a + b) > 0
    lo = torch.where(upper, -b, a)
    hi = torch.where(upper, -a, b)
    log_hi = torch.special.log_ndtr(hi)
    log_lo = torch.special.log_ndtr(lo)
    # log(e^u - e^l) = u + log(1 - e^(l - u)); clamp keeps log1p away from -1 (empty bin).
    return log_hi + torch.log1p(-torch.exp(log_lo - log_hi).clamp(max=1 - 1e-15))


def discretized_gaussian_log_likelihood(x0: torch.Tensor, mean: torch.Tensor,
                                        log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise log-probability of 8-bit image data under a discretised Gaussian
    (DDPM's decoder p(x_0 | x_1) for L_0; used for MNIST in chapter 7, introduced in ch4).

    Pixels in {0, ..., 255} are scaled to [-1, 1], so the 256 values sit at
    x = -1 + 2k/255 and each owns a bin of width 2/255 around it. With s = exp(log_var / 2):

        P(x) = Phi((x + 1/255 - mean) / s) - Phi((x - 1/255 - mean) / s)
        P(-1) = Phi((-1 + 1/255 - mean) / s)            (edge bins are open-ended,
        P(+1) = 1 - Phi((1 - 1/255 - mean) / s)          so the 256 bins sum to 1)

    Shapes: ``x0`` (any), ``mean`` and ``log_var`` broadcast against it; returns the
    broadcast shape, in nats (sum over pixels for log p(x_0 | x_1) of an image).
    ``x0`` must lie in [-1, 1] (values between grid points are scored with the bin that
    would contain them after rounding to the grid).
    """
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    mean = _as_tensor(mean, x0, "mean")
    log_var = _as_tensor(log_var, x0, "log_var")
    if not torch.isfinite(log_var).all():
        raise ValueError("log_var contains NaN or inf values; pass the log of a positive variance")
    if x0.numel() and (float(x0.min()) < -1 - 1e-6 or float(x0.max()) > 1 + 1e-6):
        raise ValueError(
            f"x0 must be image data scaled to [-1, 1] (pixel / 127.5 - 1), got values in "
            f"[{float(x0.min()):.4g}, {float(x0.max()):.4g}]")
    inv_std = torch.exp(-0.5 * log_var)
    centered = x0 - mean
    upper = (centered + 1.0 / 255) * inv_std
    lower = (centered - 1.0 / 255) * inv_std
    log_cdf_upper = torch.special.log_ndtr(upper)            # log P(-1) for the lowest bin
    log_one_minus_cdf_lower = torch.special.log_ndtr(-lower)  # log(1 - Phi(lower)) for +1
    log_mid = _log_diff_ndtr(lower, upper)
    # Thresholds half a bin from the edges, as in DDPM's code.
    return torch.where(x0 < -0.999, log_cdf_upper,
                       torch.where(x0 > 0.999, log_one_minus_cdf_lower, log_mid))
