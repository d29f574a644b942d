"""Deterministic (ODE) samplers as steps of the one sampler loop (chapter 8).

A trained eps-model defines the probability-flow ODE of the VP diffusion. In DDIM's
variables (Song, Meng, Ermon 2021, eq. 14)

    x_bar = x / sqrt(alpha_bar),     sigma = sqrt((1 - alpha_bar) / alpha_bar)

it reads d x_bar / d sigma = eps_theta(x, t): the noise prediction *is* the velocity.
Each step below moves x from the loop's time k to k - 1, i.e. from alpha_bar =
``schedule.alpha_bar[k]`` to alpha_bar' = ``schedule.alpha_bar_prev[k]`` (the two ends of the
step, respaced or not; alpha_bar' = 1 at the last step). With a = sqrt(alpha_bar),
s = sqrt(1 - alpha_bar) and the model's x_0 guess D = x0_hat(x_t, t) (optionally clipped),
the matching eps = (x_t - a D) / s:

* ``ddim_step`` (eq. 12 of DDIM): x' = a' D + sqrt(1 - alpha_bar' - sigma_eta^2) eps + sigma_eta z,
  sigma_eta = eta sqrt((1 - alpha_bar') / (1 - alpha_bar)) sqrt(1 - alpha_bar / alpha_bar').
  eta = 0 is Euler's method on the ODE (1 network call a step); eta = 1 is the DDPM step with
  sigma_t^2 = beta_tilde of the pair.
* ``heun_step`` (Karras et al. 2022, Alg. 1, in (x_bar, sigma)): an Euler step, then the
  average of the slopes at both ends; the last step (to sigma = 0) stays Euler. 2 calls a step,
  2S - 1 for S steps. Second order.
* ``dpmpp_2m_step`` (DPM-Solver++(2M), Lu et al. 2022, Alg. 2): with lambda = log(a / s),
  h = lambda' - lambda, r = h_prev / h,
  D_2 = (1 + 1/(2r)) D - 1/(2r) D_prev (first step: D_2 = D), x' = (s'/s) x - a' (e^{-h} - 1) D_2.
  One call a step, second order through the remembered D_prev (``ctx.state``). The last step
  (lambda' = +inf at t = 0) is first order: x_0 = D.

``sampling.SAMPLERS`` registers them as ``"ddim"``, ``"heun"``, ``"dpmpp_2m"``. ``nfe(sampler,
S)`` is the number of network evaluations of an S-step run.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ._validate import call_model
from .forward import draw_noise
from .schedules import Schedule
from .targets import to_x0

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def denoise(model: Model, schedule: Schedule, xt: torch.Tensor, t: int,
            prediction_type: str = "eps", clip_x0: float | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(D, eps) at (x_t, t): the model's x_0 guess D = x0_hat (clamped to [-clip_x0, clip_x0]
    when given) and the noise that goes with it, eps = (x_t - sqrt(alpha_bar_t) D) /
    sqrt(1 - alpha_bar_t). One network call. Shapes: ``xt`` (B, ...) -> two tensors like it.
    Chapter 8.
    """
    if not isinstance(xt, torch.Tensor) or xt.dim() < 1:
        raise ValueError("xt must be a tensor of shape (B, ...) with a batch dimension")
    t_batch = torch.full((xt.shape[0],), t, dtype=torch.long, device=xt.device)
    x0 = to_x0(schedule, call_model(model, xt, t_batch), xt, t, prediction_type)
    if clip_x0 is not None:
        x0 = x0.clamp(-clip_x0, clip_x0)
    ab = float(schedule.alpha_bar[t])
    eps = (xt - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    return x0, eps


def _ends(schedule: Schedule, t: int) -> tuple[float, float]:
    return float(schedule.alpha_bar[t]), float(schedule.alpha_bar_prev[t])


def ddim_sigma(alpha_bar: float, alpha_bar_prev: float, eta: float) -> float:
    """sigma_eta = eta sqrt((1 - alpha_bar') / (1 - alpha_bar)) sqrt(1 - alpha_bar / alpha_bar')
    (DDIM eq. 16); at eta = 1, sigma_eta^2 = beta_tilde of the pair (alpha_bar, alpha_bar').
    Chapter 8."""
    return eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)
                           * (1 - alpha_bar / alpha_bar_prev))


@torch.no_grad()
def ddim_step(model: Model, schedule: Schedule, xt: torch.Tensor, t: int, ctx: Any) -> torch.Tensor:
    """One DDIM step from t to t - 1 of the loop's schedule (chapter 8):

        x_{t-1} = sqrt(alpha_bar') D + sqrt(1 - alpha_bar' - sigma_eta^2) eps + sigma_eta z

    with (D, eps) from ``denoise``, sigma_eta = ``ddim_sigma(alpha_bar_t, alpha_bar', ctx.eta)``
    and z ~ N(0, I) drawn with ``ctx.generator`` only when sigma_eta > 0. ``ctx.eta``
    (default 0: deterministic, Euler on the probability-flow ODE). Shapes: (B, ...).
    """
    t = schedule.int_timestep(t)
    eta = float(getattr(ctx, "eta", 0.0))
    ab, ab_prev = _ends(schedule, t)
    x0, eps = denoise(model, schedule, xt, t, ctx.prediction_type, ctx.clip_x0)
    sigma = ddim_sigma(ab, ab_prev, eta)
    out = math.sqrt(ab_prev) * x0 + math.sqrt(max(1 - ab_prev - sigma ** 2, 0.0)) * eps
    if sigma > 0:
        out = out + sigma * draw_noise(xt.shape, dtype=xt.dtype, device=xt.device,
                                       generator=ctx.generator)
    return out


#: Heun takes a plain Euler step from sigma above this (the cosine schedule's t = T).
HEUN_SIGMA_MAX = 200.0


@torch.no_grad()
def heun_step(model: Model, schedule: Schedule, xt: torch.Tensor, t: int, ctx: Any) -> torch.Tensor:
    """One Heun step (Karras et al. 2022, Alg. 1) on d x_bar / d sigma = eps (chapter 8):

        x_bar = x_t / a,  d = eps(x_t, t),  x_bar_E = x_bar + (sigma' - sigma) d   (Euler)
        x_bar' = x_bar + (sigma' - sigma) (d + d_E) / 2,  d_E = eps(a' x_bar_E, t - 1)

    and x_{t-1} = a' x_bar'. At the last step (t = 1 of the loop, sigma' = 0) only the Euler
    step: x_0 = D. Also only the Euler step when sigma > ``HEUN_SIGMA_MAX`` = 200: the cosine
    schedule's first step starts at sigma_T = 20,291 (alpha_bar_T ~ 2e-9), where the solution
    x_bar ~ sigma x_T / sigma_T is reproduced exactly by Euler (eps = x_bar / sigma) but the
    average with the slope at the far end point is not (Karras et al. start at sigma = 80).
    Two network calls a step, one at those steps (``nfe``). Shapes: (B, ...).
    """
    t = schedule.int_timestep(t)
    ab, ab_prev = _ends(schedule, t)
    x0, eps = denoise(model, schedule, xt, t, ctx.prediction_type, ctx.clip_x0)
    if ab_prev >= 1.0:
        return x0
    a, a_prev = math.sqrt(ab), math.sqrt(ab_prev)
    sig, sig_prev = math.sqrt(1 - ab) / a, math.sqrt(1 - ab_prev) / a_prev
    xbar = xt / a
    xbar_e = xbar + (sig_prev - sig) * eps
    if sig > HEUN_SIGMA_MAX:
        return a_prev * xbar_e
    _, eps_e = denoise(model, schedule, a_prev * xbar_e, t - 1, ctx.prediction_type, ctx.clip_x0)
    return a_prev * (xbar + (sig_prev - sig) * 0.5 * (eps + eps_e))


@torch.no_grad()
def dpmpp_2m_step(model: Model, schedule: Schedule, xt: torch.Tensor, t: int,
                  ctx: Any) -> torch.Tensor:
    """One DPM-Solver++(2M) step (Lu et al. 2022, Alg. 2) from t to t - 1 (chapter 8):

        lambda = log(a / s),  h = lambda' - lambda,  r = h_prev / h
        D_2 = (1 + 1/(2r)) D - 1/(2r) D_prev        (first step of a run: D_2 = D)
        x_{t-1} = (s' / s) x_t - a' (exp(-h) - 1) D_2

    ``ctx.state`` keeps D_prev and h_prev between steps (cleared at t = T, the first step of
    a run). The last step (to t = 0, lambda' = +inf) returns D. Shapes: (B, ...).
    """
    t = schedule.int_timestep(t)
    if t == schedule.T:
        ctx.state.pop("dpmpp_D", None)
        ctx.state.pop("dpmpp_h", None)
    ab, ab_prev = _ends(schedule, t)
    x0, _ = denoise(model, schedule, xt, t, ctx.prediction_type, ctx.clip_x0)
    if ab_prev >= 1.0:
        return x0
    a, s = math.sqrt(ab), math.sqrt(1 - ab)
    a_prev, s_prev = math.sqrt(ab_prev), math.sqrt(1 - ab_prev)
    h = math.log(a_prev / s_prev) - math.log(a / s)
    D = x0
    if "dpmpp_D" in ctx.state:
        r = ctx.state["dpmpp_h"] / h
        D = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * ctx.state["dpmpp_D"]
    ctx.state["dpmpp_D"], ctx.state["dpmpp_h"] = x0, h
    return (s_prev / s) * xt - a_prev * math.expm1(-h) * D


def ode_end(schedule: Schedule, sigma_max: float = 200.0) -> int:
    """The last timestep t_end at which the ODE is used: T, or the last t with
    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) <= ``sigma_max`` when sigma_T is larger.

    There alpha_bar_t <= 1 / (1 + sigma_max^2) = 2.5e-5, so q(x_t) is N(0, I) up to a KL of
    about alpha_bar_t E|x_0|^2 / 2 (< 2e-5 nats a dimension for data in [-1, 1]). The cosine
    schedule needs it: its last step (beta clipped at 0.999) jumps from sigma = 642 to 20,291,
    which no fixed-step solver crosses accurately (chapter 8).
    """
    ab = schedule.alpha_bar
    sig = ((1 - ab) / ab).sqrt()
    if float(sig[schedule.T]) <= sigma_max:
        return schedule.T
    return max(2, int((sig <= sigma_max).nonzero().max()))


def ode_schedule(schedule: Schedule, sigma_max: float = 200.0) -> Schedule:
    """The schedule cut at ``ode_end``: betas 1..t_end, so alpha_bar_t is unchanged for
    t <= t_end and a model is called at its own times. Sampling or inverting with it starts
    (or ends) at t_end, where x ~ N(0, I). Chapter 8."""
    t_end = ode_end(schedule, sigma_max)
    if t_end == schedule.T:
        return schedule
    return Schedule(schedule.betas[1:t_end + 1], name=f"{schedule.name}-to{t_end}")


def log_sigma_timesteps(schedule: Schedule, steps: int, sigma_max: float = 200.0) -> torch.Tensor:
    """Integer timesteps 1 = t_0 < t_1 < ... < t_S' = ``ode_end(schedule, sigma_max)``, about
    ``steps`` intervals spaced uniformly in log sigma_t (duplicates after rounding dropped, so
    S' <= steps). Long (S'+1,). The ODE's velocity changes on the scale of sigma itself, so
    equal steps in log sigma suit it far better than equal steps in t. Chapter 8."""
    T = schedule.T
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= T - 1:
        raise ValueError(f"steps must be an int in 1..T-1={T - 1}, got {steps!r}")
    ab = schedule.alpha_bar
    sig = ((1 - ab) / ab).sqrt()
    t_end = ode_end(schedule, sigma_max)
    logs = sig[1:t_end + 1].log()  # t = 1..t_end, increasing
    targets = torch.linspace(float(logs[0]), float(logs[-1]), steps + 1, dtype=torch.float64)
    idx = torch.searchsorted(logs, targets).clamp(max=len(logs) - 1)
    lo = (idx - 1).clamp(min=0)
    pick = torch.where((targets - logs[lo]).abs() < (logs[idx] - targets).abs(), lo, idx)
    ts = torch.unique(pick + 1)
    ts[0], ts[-1] = 1, t_end
    return torch.unique(ts)


def on_timesteps(schedule: Schedule, taus: torch.Tensor) -> Schedule:
    """The chain on the increasing times ``taus`` (tau_1 < ... < tau_S): betas
    1 - alpha_bar_{tau_k} / alpha_bar_{tau_{k-1}} (tau_0 = 0), the respacing of chapter 7 on
    any set of times. Use it with ``RespacedModel(model, taus)``. Chapter 8."""
    taus = torch.as_tensor(taus, dtype=torch.long)
    ab = schedule.alpha_bar[taus]
    ab_prev = torch.cat([schedule.alpha_bar[:1], ab[:-1]])
    return Schedule(1 - ab / ab_prev, name=f"{schedule.name}-on{len(taus)}")


@torch.no_grad()
def ddim_invert(model: Model, schedule: Schedule, x0: torch.Tensor, timesteps: torch.Tensor,
                prediction_type: str = "eps") -> torch.Tensor:
    """DDIM inversion (chapter 8): the eta = 0 ODE from the data up to x at the last time.

    On the times 0 = tau_0 < tau_1 < ... < tau_S (``timesteps``, increasing, e.g.
    ``log_sigma_timesteps``), Euler steps in (x_bar, sigma) *upwards*:

        x_bar_{k+1} = x_bar_k + (sigma_{k+1} - sigma_k) eps(x_k, tau_{k+1}),   x_{k+1} = a_{k+1} x_bar_{k+1}

    with the model evaluated at the current point and the *next* time (the model is not
    trained at t = 0; the usual DDIM-inversion convention). ``ddim_decode`` runs it back.
    Shapes: ``x0`` (B, ...) -> (B, ...).
    """
    taus = [0] + [int(t) for t in timesteps]
    ab = schedule.alpha_bar
    x = x0
    for t, t_next in zip(taus[:-1], taus[1:]):
        a, a_n = float(ab[t].sqrt()), float(ab[t_next].sqrt())
        sig, sig_n = math.sqrt(1 - a * a) / a, math.sqrt(1 - a_n * a_n) / a_n
        tb = torch.full((x.shape[0],), t_next, dtype=torch.long, device=x.device)
        x0_hat = to_x0(schedule, call_model(model, x, tb), x, t_next, prediction_type)
        eps = (x - a_n * x0_hat) / math.sqrt(1 - a_n * a_n)  # the model's eps at (x, t_next)
        x = a_n * (x / a + (sig_n - sig) * eps)
    return x


@torch.no_grad()
def ddim_decode(model: Model, schedule: Schedule, x_top: torch.Tensor, timesteps: torch.Tensor,
                prediction_type: str = "eps", clip_x0: float | None = None) -> torch.Tensor:
    """The inverse of ``ddim_invert``: ``ddim_step`` (eta = 0) from x at tau_S down to x_0 on
    the same times (``on_timesteps`` + ``RespacedModel``, as ``sample`` does for respacing).
    Chapter 8."""
    from types import SimpleNamespace

    from .respacing import RespacedModel

    taus = torch.as_tensor(timesteps, dtype=torch.long)
    chain, wrapped = on_timesteps(schedule, taus), RespacedModel(model, taus)
    ctx = SimpleNamespace(eta=0.0, prediction_type=prediction_type, clip_x0=clip_x0,
                          generator=None, state={})
    x = x_top
    for k in range(chain.T, 0, -1):
        x = ddim_step(wrapped, chain, x, k, ctx)
    return x


def slerp(z0: torch.Tensor, z1: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (per example, over all dims):
    sin((1-w) theta) / sin(theta) z0 + sin(w theta) / sin(theta) z1, cos(theta) = <z0, z1> /
    (|z0| |z1|). Keeps the norm typical of N(0, I) samples, which a straight line does not.
    Shapes (B, ...) or (...). Chapter 8."""
    a, b = z0.reshape(-1), z1.reshape(-1)
    theta = torch.arccos((a @ b / (a.norm() * b.norm())).clamp(-1, 1))
    if float(theta) < 1e-6:
        return (1 - w) * z0 + w * z1
    return (torch.sin((1 - w) * theta) * z0 + torch.sin(w * theta) * z1) / torch.sin(theta)


def nfe(sampler: str, steps: int, schedule: Schedule | None = None) -> int:
    """Network evaluations of an S-step run: 2S - 1 for ``"heun"`` (one less when the
    ``schedule``'s sigma_T > ``HEUN_SIGMA_MAX``, e.g. cosine), S otherwise. Chapter 8."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if sampler != "heun":
        return steps
    big = schedule is not None and steps > 1 and float(
        (1 - schedule.alpha_bar[-1]) / schedule.alpha_bar[-1]) > HEUN_SIGMA_MAX ** 2
    return 2 * steps - 1 - int(big)


def steps_for_nfe(sampler: str, budget: int) -> int:
    """The most steps S whose run costs at most ``budget`` evaluations (``nfe``). Chapter 8."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive int, got {budget!r}")
    return max(1, (budget + 1) // 2) if sampler == "heun" else budget


__all__ = ["denoise", "ddim_sigma", "ddim_step", "heun_step", "dpmpp_2m_step", "ode_end",
           "ode_schedule", "log_sigma_timesteps", "on_timesteps", "ddim_invert", "ddim_decode",
           "slerp", "nfe", "steps_for_nfe", "HEUN_SIGMA_MAX"]
