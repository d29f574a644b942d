"""DDPM ancestral sampling, Algorithm 2 (chapter 6).

    x_T ~ N(0, I)
    for t = T, ..., 1:
        z ~ N(0, I) if t > 1 else z = 0
        x_{t-1} = mu_theta(x_t, t) + sigma_t z
    return x_0

with the model's output converted to the posterior mean
mu_theta = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta) (for eps; any
prediction type goes through x_0, see ``dmlib.targets``), and sigma_t^2 = beta_t
(``variance="beta"``) or beta_tilde_t (``"beta_tilde"``); DDPM reports similar samples for both.
The lecture's slides say "convert back to x~_{t-1} prediction during sampling": that is
``p_mean_var``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ._validate import check_shape
from .forward import draw_noise
from .posterior import posterior_mean
from .schedules import Schedule
from .targets import check_prediction_type, convert, to_x0

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Choices for the reverse-process variance sigma_t^2.
VARIANCE_TYPES: tuple[str, ...] = ("beta", "beta_tilde")


def check_variance_type(variance: str, name: str = "variance") -> str:
    """Return ``variance`` if it is one of ``VARIANCE_TYPES``, else raise ValueError."""
    if not isinstance(variance, str) or variance not in VARIANCE_TYPES:
        raise ValueError(f"unknown {name} {variance!r}; valid ones are "
                         f"{', '.join(repr(v) for v in VARIANCE_TYPES)} (sigma_t^2 = beta_t "
                         f"or the posterior variance beta_tilde_t)")
    return variance


def reverse_variance(schedule: Schedule, variance: str = "beta") -> torch.Tensor:
    """sigma_t^2 of p_theta(x_{t-1} | x_t) for sampling, shape (T + 1,), float64 (chapter 6).

    ``"beta"``: sigma_t^2 = beta_t; ``"beta_tilde"``: sigma_t^2 = beta_tilde_t
    = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (so 0 at t = 1). Entry 0 is 0.
    """
    check_variance_type(variance)
    return schedule.betas if variance == "beta" else schedule.posterior_variance


def p_mean_var(schedule: Schedule, model_output: torch.Tensor, xt: torch.Tensor,
               t: int | torch.Tensor, prediction_type: str = "eps", variance: str = "beta",
               clip_x0: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of p_theta(x_{t-1} | x_t) from a model output (chapter 6).

        x0_hat   = the model output expressed as x_0, optionally clamped to [-clip_x0, clip_x0]
        mu_theta = mu_tilde_t(x_t, x0_hat)
                 = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0_hat
                   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
        var      = sigma_t^2 = beta_t or beta_tilde_t

    Without clipping mu_theta equals ``convert(..., prediction_type, "mu")``; for eps it is
    1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta). Clipping x0_hat (for
    images in [-1, 1], ``clip_x0=1``) is a sampling heuristic, not part of the model.

    Shapes: ``model_output``, ``xt`` (B, ...); returns ``(mean, var)`` shaped like ``xt``.
    t in 1..T.
    """
    check_prediction_type(prediction_type)
    check_variance_type(variance)
    if clip_x0 is None:
        mean = convert(schedule, model_output, xt, t, prediction_type, "mu")
    else:
        if isinstance(clip_x0, bool) or not isinstance(clip_x0, (int, float)) or not clip_x0 > 0:
            raise ValueError(f"clip_x0 must be None or a positive number (e.g. 1.0 for images "
                             f"in [-1, 1]), got {clip_x0!r}")
        x0_hat = to_x0(schedule, model_output, xt, t, prediction_type).clamp(-clip_x0, clip_x0)
        mean = posterior_mean(schedule, x0_hat, xt, t)
    var = schedule.extract(reverse_variance(schedule, variance), t, xt).expand_as(mean)
    return mean, var


def _check_int_t(schedule: Schedule, t) -> int:
    if isinstance(t, torch.Tensor) and t.dim() == 0 and not t.is_floating_point():
        t = int(t)
    if not isinstance(t, int) or isinstance(t, bool):
        raise TypeError(f"t must be an int timestep (one t for the whole batch), got "
                        f"{type(t).__name__}")
    schedule.timesteps(t)
    return t


@torch.no_grad()
def ddpm_step(model: Model, schedule: Schedule, xt: torch.Tensor, t: int,
              prediction_type: str = "eps", variance: str = "beta",
              generator: torch.Generator | None = None,
              clip_x0: float | None = None) -> torch.Tensor:
    """One step of Algorithm 2 (chapter 6): x_{t-1} = mu_theta(x_t, t) + sigma_t z.

    z ~ N(0, I) for t > 1; at t = 1 no noise is added (z = 0) and the mean is returned.
    The model is called as ``model(xt, t_batch)`` with ``t_batch`` a long (B,) tensor,
    under ``torch.no_grad()``.

    Shapes: ``xt`` (B, ...); returns x_{t-1} (B, ...). ``t``: an int in 1..T.
    """
    t = _check_int_t(schedule, t)
    check_prediction_type(prediction_type)
    check_variance_type(variance)
    if not isinstance(xt, torch.Tensor) or xt.dim() < 1:
        raise ValueError("xt must be a tensor of shape (B, ...) with a batch dimension")
    t_batch = torch.full((xt.shape[0],), t, dtype=torch.long, device=xt.device)
    out = model(xt, t_batch)
    if not isinstance(out, torch.Tensor) or out.shape != xt.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must return a tensor shaped like x_t {tuple(xt.shape)}, "
                         f"got {got}")
    mean, var = p_mean_var(schedule, out, xt, t, prediction_type, variance, clip_x0)
    if t == 1:
        return mean  # Algorithm 2: z = 0 at the last step
    z = draw_noise(xt.shape, dtype=xt.dtype, device=xt.device, generator=generator)
    return mean + var.sqrt() * z


@torch.no_grad()
def ddpm_sample(model: Model, schedule: Schedule, shape: Sequence[int],
                prediction_type: str = "eps", variance: str = "beta",
                generator: torch.Generator | None = None,
                device: torch.device | str | None = None, x_T: torch.Tensor | None = None,
                clip_x0: float | None = None, return_trajectory: bool = False,
                trajectory_steps: Sequence[int] | None = None, progress: bool = False,
                dtype: torch.dtype | None = None):
    """Ancestral sampling, Algorithm 2 of DDPM (chapter 6): x_T ~ N(0, I), then
    ``ddpm_step`` for t = T, ..., 1.

    ``shape`` is (B, ...) of the samples. ``x_T`` (optional) replaces the initial noise; it
    must have ``shape``, and fixes device and dtype. Otherwise noise is drawn with
    ``generator`` on ``device`` (default: the generator's device, else CPU) in ``dtype``
    (default ``torch.get_default_dtype()``).

    Returns x_0 of ``shape``, or ``(x_0, trajectory)`` with ``return_trajectory=True``:
    ``trajectory`` is a dict {t: x_t} (detached copies on the CPU) for t in
    ``trajectory_steps`` (ignored without ``return_trajectory``; default: every t from T
    down to 0; t = T is the initial noise,
    t = 0 the returned samples). ``progress=True`` shows a tqdm bar. The model should be in
    eval mode; it is called under ``torch.no_grad()``.
    """
    check_prediction_type(prediction_type)
    check_variance_type(variance)
    T = schedule.T
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1:
        raise ValueError("shape must be (B, ...) with a batch dimension")
    if x_T is not None:
        check_shape(x_T, shape, "x_T")
        x = x_T
    else:
        if device is None:
            device = generator.device if generator is not None else "cpu"
        x = draw_noise(shape, dtype=dtype or torch.get_default_dtype(), device=device,
                       generator=generator)
    if not return_trajectory:
        keep = set()
    elif trajectory_steps is None:
        keep = set(range(T + 1))
    else:
        keep = set()
        for s in trajectory_steps:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= T:
                raise ValueError(f"trajectory_steps must hold ints in 0..T={T} (T is the "
                                 f"initial noise, 0 the samples), got {s!r}")
            keep.add(s)
    trajectory: dict[int, torch.Tensor] = {}
    if T in keep:
        trajectory[T] = x.detach().cpu().clone()

    from tqdm.auto import tqdm

    for t in tqdm(range(T, 0, -1), disable=not progress, desc="sampling", leave=False):
        x = ddpm_step(model, schedule, x, t, prediction_type, variance, generator, clip_x0)
        if t - 1 in keep:
            trajectory[t - 1] = x.detach().cpu().clone()
    if return_trajectory:
        return x, dict(sorted(trajectory.items(), reverse=True))
    return x
