"""Exact log-likelihood of a diffusion model through its probability-flow ODE (chapter 8).

**The ODE.** The forward chain x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z is, for small
beta, the VP SDE dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw (Song et al. 2021). Its
probability-flow ODE has the same marginals q(x_t):

    dx/dt = -1/2 beta(t) [x + grad_x log q_t(x)],   grad_x log q_t(x) = -eps(x, t) / sqrt(1 - alpha_bar_t)

(``pf_ode_drift``). With x_bar = x / sqrt(alpha_bar) and sigma = sqrt((1 - alpha_bar) / alpha_bar)
it becomes d x_bar / d sigma = eps(x, t) (DDIM, eq. 14), and x_bar_t = x_0 + sigma_t eps: in
these variables the marginal at sigma is the data convolved with N(0, sigma^2 I).

**The likelihood.** Run as a CNF (chapter 2) from the data to the noise, the instantaneous
change of variables gives, with f = d x_bar / d sigma,

    log p_{sigma_1}(x_bar_1) = log p_{sigma_T}(x_bar_T) + int_{sigma_1}^{sigma_T} Tr(df/dx_bar) d sigma,
    p_{sigma_T} = N(0, (1 + sigma_T^2) I)     (x_T ~ N(0, I), x_bar_T = x_T / sqrt(alpha_bar_T)),

with T replaced by the last t with sigma_t <= 200 for schedules that end far beyond it
(cosine; ``likelihood_grid``), where q(x_t) is already N(0, I) to about 1e-5 nats a dimension.

``ode_log_likelihood`` integrates (x_bar, log-density) from t = 1 (sigma_1, e.g. 0.01 for the
linear schedule; the smallest noise the model knows) to t = T (or t_end) with Euler or Heun's method on
a grid of integer timesteps (the model is only trained there), spaced uniformly in log sigma.
The data point is taken as x_bar at sigma_1, so the result is the log-density of the data
convolved with N(0, sigma_1^2 I) (the score-SDE convention of stopping at a small time); for
known data that density is known exactly (``GaussianMixture`` with variances + sigma_1^2).
The trace is exact (d backward passes: 2-D) or Hutchinson's estimate with probes held fixed
along the path (``dmlib.cnf``): unbiased for the integral, with variance
2 sum_{i != j} J_ij^2-type terms (Rademacher probes) that grows with d.

**Bits per dimension** (``bits_per_dim``): 8-bit images x in {0..255}^D, uniformly
dequantised y = (x + u) / 256, modelled as z = 2y - 1 in [-1, 1]:

    bits/dim = -log2 p_y(y) / D + 8 = 7 - log p_z(z) / (D ln 2)

(density on [0, 256)^D = p_z 2^D / 256^D); its expectation over u bounds the discrete NLL.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ._validate import call_model
from .cnf import draw_probes, exact_trace, hutchinson_divergence
from .samplers import log_sigma_timesteps
from .schedules import Schedule
from .spec import DiffusionSpec, resolve
from .targets import to_x0

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SOLVERS = ("euler", "heun")


def pf_ode_drift(eps: torch.Tensor, xt: torch.Tensor, beta: float, alpha_bar: float) -> torch.Tensor:
    """The VP probability-flow drift dx/dt = -1/2 beta (x - eps / sqrt(1 - alpha_bar)) (chapter 8).

    ``eps`` the noise prediction at (x_t, t), ``beta`` = beta(t) (per unit of t: the chain's
    beta_t), ``alpha_bar`` = alpha_bar_t. Uses score = -eps / sqrt(1 - alpha_bar). Shapes like ``xt``.
    """
    return -0.5 * beta * (xt - eps / math.sqrt(1 - alpha_bar))


def sigma_of(schedule: Schedule) -> torch.Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) for t = 0..T (a per-t table, float64;
    sigma_0 = 0). DDIM's noise level: x_bar_t = x_0 + sigma_t eps. Chapter 8."""
    ab = schedule.alpha_bar
    return ((1 - ab) / ab).sqrt()


def likelihood_grid(schedule: Schedule, steps: int, sigma_max: float = 200.0) -> torch.Tensor:
    """The integration grid: ``dmlib.samplers.log_sigma_timesteps`` (integer timesteps from 1
    to ``ode_end``, uniform in log sigma). Long (S'+1,). Chapter 8."""
    return log_sigma_timesteps(schedule, steps, sigma_max)


def _field(model: Model, schedule: Schedule, prediction_type: str) -> Callable:
    """f(x_bar, t) = eps_theta(a_t x_bar, t): the velocity d x_bar / d sigma at integer t."""
    def f(xbar: torch.Tensor, t: int) -> torch.Tensor:
        ab = float(schedule.alpha_bar[t])
        x = math.sqrt(ab) * xbar
        tb = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0 = to_x0(schedule, call_model(model, x, tb), x, t, prediction_type)
        return (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    return f


def _flat(f: Callable, shape: tuple[int, ...]) -> Callable:
    return lambda z, t: f(z.reshape(shape), t).reshape(z.shape[0], -1)


def ode_log_likelihood(model: Model, spec: DiffusionSpec | Schedule, x: torch.Tensor,  # long: one integrator, two solvers, two traces
                       steps: int = 50, solver: str = "heun", trace: str = "exact",
                       n_probes: int = 1, probe: str = "rademacher",
                       generator: torch.Generator | None = None,
                       prediction_type: str | None = None, return_nfe: bool = False):
    """log p(x) in nats, per example, by the probability-flow ODE (see the module docstring).

    ``spec``: the model's ``DiffusionSpec`` (or a ``Schedule`` with ``prediction_type``).
    ``x`` (B, ...): data points, taken as x_bar at sigma_1 (t = 1). ``steps``: intervals of the
    log-sigma grid (``likelihood_grid``); ``solver``: "euler" (1 evaluation a step) or "heun"
    (2; the trapezoidal rule for the log-density). ``trace``: "exact" (d backward passes per
    evaluation) or "hutchinson" (``n_probes`` probes of kind ``probe`` drawn once with
    ``generator`` and held fixed along the path). Returns (B,) float64, or
    ``(log_p, nfe)`` with ``return_nfe=True``. No gradient flows out (evaluation only).
    """
    schedule, prediction_type, _ = resolve(spec, prediction_type)
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if trace not in ("exact", "hutchinson"):
        raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError("x must be a tensor of shape (B, ...) with a batch dimension and data dims")
    B, shape = x.shape[0], tuple(x.shape)
    D = x[0].numel()
    f = _flat(_field(model, schedule, prediction_type), shape)
    if trace == "hutchinson":
        probes = draw_probes((n_probes, B, D), probe, generator, x.dtype).to(x.device)

    def velocity_and_div(z: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        if trace == "exact":
            v, div = exact_trace(f, z, t)
        else:
            v, div = hutchinson_divergence(f, z, t, probes)
        return v.detach(), div.detach().double()

    sig = sigma_of(schedule)
    ts = [int(t) for t in likelihood_grid(schedule, steps)]
    z = x.reshape(B, -1).detach()
    logdet = torch.zeros(B, dtype=torch.float64, device=x.device)
    n_eval = 0
    v, div = velocity_and_div(z, ts[0])
    n_eval += 1
    for t, t_next in zip(ts[:-1], ts[1:]):
        ds = float(sig[t_next] - sig[t])
        z_e = z + ds * v
        if solver == "euler":
            z, logdet = z_e, logdet + ds * div
            if t_next != ts[-1]:
                v, div = velocity_and_div(z, t_next)
                n_eval += 1
            continue
        v_e, div_e = velocity_and_div(z_e, t_next)
        n_eval += 1
        z = z + ds * 0.5 * (v + v_e)
        logdet = logdet + ds * 0.5 * (div + div_e)
        if t_next != ts[-1]:
            v, div = velocity_and_div(z, t_next)
            n_eval += 1
    var_T = 1 + float(sig[ts[-1]]) ** 2
    zz = z.double()
    log_prior = -0.5 * (zz ** 2 / var_T + math.log(2 * math.pi * var_T)).sum(1)
    log_p = log_prior + logdet
    return (log_p, n_eval) if return_nfe else log_p


def dequantize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation of images in [-1, 1] on the 8-bit grid (x = u / 127.5 - 1,
    as ``load_mnist``): z = 2 (n + v) / 256 - 1 with n = round((x + 1) 127.5) in {0..255} and
    v ~ U[0, 1) per pixel. Returns a float tensor like ``images``, in (-1, 1). Chapter 8."""
    n = ((images.double() + 1) * 127.5).round().clamp(0, 255)
    v = torch.rand(images.shape, generator=generator, dtype=torch.float64)
    return (2 * (n + v.to(images.device)) / 256 - 1).to(images.dtype)


def bits_per_dim(log_p_z: torch.Tensor, dim: int) -> torch.Tensor:
    """Bits per dimension of 8-bit data from log p_z(z) in nats of the dequantised z in
    [-1, 1]^D (``dequantize``): 7 - log p_z / (D ln 2). Shape of ``log_p_z``. Chapter 8."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int (pixels per image), got {dim!r}")
    return 7.0 - log_p_z / (dim * math.log(2))


def elbo_bits_per_dim(neg_elbo_nats: torch.Tensor, dim: int) -> torch.Tensor:
    """The negative ELBO with the discretised decoder (``vlb_terms(..., decoder="discretized")
    .sum(1)``, nats of the 8-bit image) in bits per dimension: nats / (D ln 2). Chapter 8."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive int (pixels per image), got {dim!r}")
    return neg_elbo_nats / (dim * math.log(2))


__all__ = ["pf_ode_drift", "sigma_of", "likelihood_grid", "ode_log_likelihood", "dequantize",
           "bits_per_dim", "elbo_bits_per_dim", "SOLVERS"]
