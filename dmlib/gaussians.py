"""Closed forms for Gaussians: sums, KL divergence, products, log-densities (chapter 1).

The 1-D functions are elementwise and broadcast like ordinary torch arithmetic; a
diagonal d-dimensional Gaussian is d independent 1-D ones, so its KL / log-density is the
sum of the elementwise values (``normal_kl_diag``, ``normal_kl_isotropic`` and
``gaussian_product_diag`` do that sum over the last dimension).

=========================  ===========================================================  =====
function                   identity                                                     item
=========================  ===========================================================  =====
``gaussian_sum``           x + y ~ N(mu_x + mu_y, var_x + var_y + 2 cov)                 C1.1
``normal_kl``              KL(N(mu1, var1) || N(mu2, var2)), elementwise                 C1.2
``normal_kl_diag``         the same for diagonal Gaussians in d dimensions               C1.2
``normal_kl_isotropic``    the same for N(mu, var I) in d dimensions                     C1.2
``normal_kl_monte_carlo``  the Monte Carlo estimate E_p[log p - log q] with error bar    C1.2
``gaussian_product``       N(x; m1, v1) N(x; m2, v2) = Z N(x; m, v), elementwise         C1.4
``gaussian_product_diag``  the same for diagonal Gaussians in d dimensions               C1.4
``gaussian_log_prob``      log N(x; mu, var)                                             C1.2
=========================  ===========================================================  =====

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
    (DDPM's decoder p(x_0 | x_1) for L_0 on 8-bit images, available as
    ``vlb_terms(..., decoder="discretized")``; no chapter uses it: the chapters' bounds use
    the continuous Gaussian decoder).

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


# --------------------------------------------------------------------------------------
# C1.1: sums
def gaussian_sum(mean1: torch.Tensor | float, var1: torch.Tensor | float,
                 mean2: torch.Tensor | float, var2: torch.Tensor | float,
                 cov: torch.Tensor | float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of x + y for jointly Gaussian x ~ N(mean1, var1), y ~ N(mean2, var2)
    with Cov(x, y) = ``cov`` (chapter 1, C1.1).

        x + y ~ N(mean1 + mean2, var1 + var2 + 2 cov)

    Independent x and y (``cov = 0``, the default) give the lecture's
    N(mu_x + mu_y, sigma_x^2 + sigma_y^2): adding Gaussian noise twice is adding one larger
    Gaussian noise (chapter 3). The formula for the variance holds for any two random
    variables; that the sum is *Gaussian* needs x and y to be jointly Gaussian (chapter 1
    shows two Gaussian variables whose sum is not).

    Shapes: any, broadcast together; returns ``(mean, var)`` in the broadcast shape.
    ``var1``, ``var2`` must be > 0 and |cov| <= sqrt(var1 var2) (Cauchy-Schwarz); the
    result's variance can be 0 (y = -x), a point mass.
    """
    like = _first_tensor(mean1, var1, mean2, var2, cov)
    named = ((mean1, "mean1"), (var1, "var1"), (mean2, "mean2"), (var2, "var2"), (cov, "cov"))
    mean1, var1, mean2, var2, cov = (_as_tensor(v, like, n) for v, n in named)
    check_positive_var(var1, "var1")
    check_positive_var(var2, "var2")
    if not torch.isfinite(cov).all():
        raise ValueError("cov contains NaN or inf values")
    if (cov.abs() > (var1 * var2).sqrt() * (1 + 1e-12)).any():
        raise ValueError("|cov| must be <= sqrt(var1 * var2) (a correlation lies in [-1, 1]); "
                         "did you pass a correlation coefficient times the variances, or a "
                         "standard deviation as a variance?")
    var = (var1 + var2 + 2 * cov).clamp(min=0.0)  # clamp: rounding at cov = -sqrt(var1 var2)
    return mean1 + mean2, var


# --------------------------------------------------------------------------------------
# C1.2: KL in d dimensions, and its Monte Carlo estimate
def normal_kl_diag(mean1: torch.Tensor, var1: torch.Tensor | float,
                   mean2: torch.Tensor | float, var2: torch.Tensor | float) -> torch.Tensor:
    """KL(N(mean1, diag(var1)) || N(mean2, diag(var2))) for d-dimensional diagonal Gaussians
    (chapter 1, C1.2; the KL terms of the ELBO in chapter 4):

        KL = sum_i 1/2 * ( log(var2_i / var1_i) + (var1_i + (mean1_i - mean2_i)^2) / var2_i - 1 )

    A diagonal Gaussian is d independent 1-D Gaussians, and KL adds over independent
    coordinates. Shapes: all arguments broadcast to (..., d); returns (...) (the sum over
    the last dimension). ``mean1`` must be a tensor with at least one dimension.
    """
    if not isinstance(mean1, torch.Tensor) or mean1.dim() == 0:
        raise ValueError("mean1 must be a tensor of shape (..., d) with the d coordinates last; "
                         "for 1-D Gaussians use normal_kl")
    return normal_kl(mean1, var1, mean2, var2).sum(-1)


def normal_kl_isotropic(mean1: torch.Tensor, var1: torch.Tensor | float,
                        mean2: torch.Tensor | float, var2: torch.Tensor | float) -> torch.Tensor:
    """KL(N(mean1, var1 I) || N(mean2, var2 I)) for d-dimensional isotropic Gaussians
    (chapter 1, C1.2; chapter 4 turns it into the L2 loss):

        KL = 1/2 * ( d log(var2 / var1) + d var1 / var2 + ||mean1 - mean2||^2 / var2 - d )

    With var1 == var2 == sigma^2 this is ||mean1 - mean2||^2 / (2 sigma^2): the KL between
    the posterior and the model is a squared L2 distance between their means.

    Shapes: ``mean1``, ``mean2`` broadcast to (..., d) (coordinates last); ``var1``,
    ``var2`` are one variance per Gaussian: floats or tensors broadcastable to (...) (not
    to (..., d): pass per-coordinate variances to ``normal_kl_diag``). Returns (...).
    """
    if not isinstance(mean1, torch.Tensor) or mean1.dim() == 0:
        raise ValueError("mean1 must be a tensor of shape (..., d) with the d coordinates last; "
                         "for 1-D Gaussians use normal_kl")
    mean2 = _as_tensor(mean2, mean1, "mean2")
    var1 = _as_tensor(var1, mean1, "var1")
    var2 = _as_tensor(var2, mean1, "var2")
    check_positive_var(var1, "var1")
    check_positive_var(var2, "var2")
    try:
        diff = mean1 - mean2
    except RuntimeError as e:
        raise ValueError(f"mean1 {tuple(mean1.shape)} and mean2 {tuple(mean2.shape)} do not "
                         f"broadcast: {e}") from None
    batch = diff.shape[:-1]
    for v, name in ((var1, "var1"), (var2, "var2")):
        try:
            ok = torch.broadcast_shapes(v.shape, batch) == batch
        except RuntimeError:
            ok = False
        if not ok:  # e.g. (B, 1) against batch (B,) would silently broadcast to (B, B)
            raise ValueError(
                f"{name} has shape {tuple(v.shape)}, which does not fit the batch shape "
                f"{tuple(batch)} (the means are (..., d) = {tuple(diff.shape)}); an isotropic "
                f"Gaussian has one variance, for per-coordinate variances use normal_kl_diag")
    d = diff.shape[-1]
    sq = (diff ** 2).sum(-1)
    return 0.5 * (d * (torch.log(var2) - torch.log(var1)) + d * var1 / var2 + sq / var2 - d)


def normal_kl_monte_carlo(mean1: torch.Tensor | float, var1: torch.Tensor | float,
                          mean2: torch.Tensor | float, var2: torch.Tensor | float,
                          eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo estimate of KL(N(mean1, var1) || N(mean2, var2)) and its standard error
    (chapter 1, C1.2):

        x_k = mean1 + sqrt(var1) eps_k,   eps_k ~ N(0, 1)     (samples from p, reparameterised)
        KL  ~ 1/n sum_k [ log N(x_k; mean1, var1) - log N(x_k; mean2, var2) ]
        stderr = std_k(log-ratio) / sqrt(n)

    Shapes: ``eps`` is (n, ...) standard-normal draws (n samples first); the parameters
    broadcast against ``eps[0]``. Returns ``(estimate, stderr)`` of the shape of ``eps[0]``.
    Unbiased; passing ``eps`` (rather than a generator) makes the estimate deterministic.
    """
    if not isinstance(eps, torch.Tensor) or not eps.is_floating_point():
        raise TypeError("eps must be a floating-point torch.Tensor of standard-normal draws "
                        "of shape (n, ...)")
    if eps.dim() == 0 or eps.shape[0] < 2:
        raise ValueError(f"eps must have shape (n, ...) with n >= 2 samples, got {tuple(eps.shape)}")
    like = eps
    named = ((mean1, "mean1"), (var1, "var1"), (mean2, "mean2"), (var2, "var2"))
    mean1, var1, mean2, var2 = (_as_tensor(v, like, n) for v, n in named)
    check_positive_var(var1, "var1")
    check_positive_var(var2, "var2")
    x = mean1 + var1.sqrt() * eps
    log_ratio = gaussian_log_prob(x, mean1, var1) - gaussian_log_prob(x, mean2, var2)
    n = eps.shape[0]
    return log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)


# --------------------------------------------------------------------------------------
# C1.4: products of densities
def gaussian_product(mean1: torch.Tensor | float, var1: torch.Tensor | float,
                     mean2: torch.Tensor | float, var2: torch.Tensor | float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The product of two Gaussian densities in x is an unnormalised Gaussian (chapter 1, C1.4):

        N(x; mean1, var1) N(x; mean2, var2) = exp(log_scale) N(x; mean, var)

        1 / var   = 1 / var1 + 1 / var2                    (precisions add)
        mean      = var (mean1 / var1 + mean2 / var2)      (precision-weighted mean)
        log_scale = log N(mean1; mean2, var1 + var2)       (the integral of the product)

    This is why q(x_{t-1} | x_t, x_0) is Gaussian (chapter 4). Elementwise; shapes
    broadcast together; returns ``(mean, var, log_scale)`` in the broadcast shape.
    """
    like = _first_tensor(mean1, var1, mean2, var2)
    named = ((mean1, "mean1"), (var1, "var1"), (mean2, "mean2"), (var2, "var2"))
    mean1, var1, mean2, var2 = (_as_tensor(v, like, n) for v, n in named)
    check_positive_var(var1, "var1")
    check_positive_var(var2, "var2")
    total = var1 + var2
    var = var1 * var2 / total                    # = 1 / (1/var1 + 1/var2), no 1/0 overflow
    mean = (mean1 * var2 + mean2 * var1) / total  # = var * (mean1/var1 + mean2/var2)
    log_scale = gaussian_log_prob(mean1, mean2, total)
    return mean, var, log_scale


def gaussian_product_diag(mean1: torch.Tensor, var1: torch.Tensor | float,
                          mean2: torch.Tensor | float, var2: torch.Tensor | float
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``gaussian_product`` for d-dimensional diagonal Gaussians (chapter 1, C1.4):

        N(x; m1, diag v1) N(x; m2, diag v2) = exp(log_scale) N(x; m, diag v)

    with m, v per coordinate as in ``gaussian_product`` and
    log_scale = sum_i log N(m1_i; m2_i, v1_i + v2_i). Shapes: arguments broadcast to
    (..., d) (coordinates last); returns mean (..., d), var (..., d), log_scale (...).
    """
    if not isinstance(mean1, torch.Tensor) or mean1.dim() == 0:
        raise ValueError("mean1 must be a tensor of shape (..., d) with the d coordinates last; "
                         "for 1-D Gaussians use gaussian_product")
    mean, var, log_scale = gaussian_product(mean1, var1, mean2, var2)
    shape = torch.broadcast_shapes(mean.shape, var.shape)
    return mean.expand(shape), var.expand(shape), log_scale.expand(shape).sum(-1)
