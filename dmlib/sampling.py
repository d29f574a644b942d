"""Sampling: one loop, pluggable steps (chapter 6; respacing chapter 7).

DDPM's ancestral sampling, Algorithm 2:

    x_T ~ N(0, I)
    for t = T, ..., 1:
        z ~ N(0, I) if t > 1 else z = 0
        x_{t-1} = mu_theta(x_t, t) + sigma_t z
    return x_0

with the model's output converted to the posterior mean mu_theta through x_0
(``p_mean_var``; the lecture's "convert back to x~_{t-1} prediction during sampling") and
sigma_t^2 = beta_t (``variance="beta"``) or beta_tilde_t (``"beta_tilde"``); DDPM reports
similar samples for both.

**The loop and its steps.** ``sample(model, spec, shape, sampler="ddpm", steps=None)`` runs
the loop for t = S, ..., 1 and calls one *step function* per t:

    step(model, schedule, x_t, t, ctx) -> x_{t-1}

``schedule`` is the schedule the loop runs on (the model's own, or the S-step respaced one
of ``dmlib.respacing`` when ``steps=S`` is given; the model is then wrapped so that it is
still called at its original times), ``ctx`` a ``StepContext`` (prediction type, variance,
generator, x_0 clipping, and a ``state`` dict for samplers that remember earlier steps).
``SAMPLERS`` maps names to step functions: adding a sampler is one function and one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ._validate import call_model, check_shape
from .forward import draw_noise
from .posterior import posterior_mean
from .respacing import RespacedModel, respace
from .samplers import ddim_step, dpmpp_2m_step, heun_step
from .schedules import Schedule, check_variance_type, reverse_variance
from .spec import DiffusionSpec, resolve
from .targets import check_prediction_type, convert, to_x0

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def p_mean_var(schedule: Schedule, model_output: torch.Tensor, xt: torch.Tensor,
               t: int | torch.Tensor, prediction_type: str = "eps", variance: str = "beta",
               clip_x0: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of p_theta(x_{t-1} | x_t) from a model output (chapter 6).

        x0_hat   = the model output expressed as x_0, optionally clamped to [-clip_x0, clip_x0]
        mu_theta = mu_tilde_t(x_t, x0_hat)     (``dmlib.posterior.posterior_mean``)
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


@dataclass
class StepContext:
    """What every step function receives besides (model, schedule, x_t, t) (chapter 6).

    prediction_type: what the model outputs; variance: sigma_t^2 choice of stochastic
    samplers; generator: for the noise z; clip_x0: clamp the predicted x_0 (None: off);
    state: scratch space kept across the steps of one run (multistep samplers); eta: DDIM's
    noise level (0: deterministic, 1: DDPM with beta_tilde; chapter 8).
    """

    prediction_type: str = "eps"
    variance: str = "beta"
    generator: torch.Generator | None = None
    clip_x0: float | None = None
    state: dict[str, Any] = field(default_factory=dict)
    eta: float = 0.0

    def __post_init__(self) -> None:
        check_prediction_type(self.prediction_type)
        check_variance_type(self.variance)
        if isinstance(self.eta, bool) or not isinstance(self.eta, (int, float)) or not self.eta >= 0:
            raise ValueError(f"eta must be a number >= 0 (DDIM: 0 deterministic, 1 DDPM-like), "
                             f"got {self.eta!r}")


StepFn = Callable[[Model, Schedule, torch.Tensor, int, StepContext], torch.Tensor]


@torch.no_grad()
def ddpm_step(model: Model, schedule: Schedule, xt: torch.Tensor, t: int,
              ctx: StepContext | None = None) -> torch.Tensor:
    """One step of Algorithm 2 (chapter 6): x_{t-1} = mu_theta(x_t, t) + sigma_t z.

    z ~ N(0, I) for t > 1; at t = 1 no noise is added (z = 0) and the mean is returned.
    The model is called as ``model(xt, t_batch)`` with ``t_batch`` a long (B,) tensor,
    under ``torch.no_grad()``. ``ctx`` defaults to ``StepContext()`` (eps, sigma_t^2 = beta_t).

    Shapes: ``xt`` (B, ...); returns x_{t-1} (B, ...). ``t``: an int in 1..T.
    """
    ctx = ctx if ctx is not None else StepContext()
    t = schedule.int_timestep(t)
    if not isinstance(xt, torch.Tensor) or xt.dim() < 1:
        raise ValueError("xt must be a tensor of shape (B, ...) with a batch dimension")
    t_batch = torch.full((xt.shape[0],), t, dtype=torch.long, device=xt.device)
    out = call_model(model, xt, t_batch)
    mean, var = p_mean_var(schedule, out, xt, t, ctx.prediction_type, ctx.variance, ctx.clip_x0)
    if t == 1:
        return mean  # Algorithm 2: z = 0 at the last step
    z = draw_noise(xt.shape, dtype=xt.dtype, device=xt.device, generator=ctx.generator)
    return mean + var.sqrt() * z


#: The samplers of ``sample``: name -> step function ``step(model, schedule, x_t, t, ctx)``.
#: ddim / heun / dpmpp_2m: the probability-flow ODE samplers of chapter 8 (``dmlib.samplers``).
SAMPLERS: dict[str, StepFn] = {"ddpm": ddpm_step, "ddim": ddim_step, "heun": heun_step,
                               "dpmpp_2m": dpmpp_2m_step}


def _initial_noise(shape: tuple[int, ...], x_T: torch.Tensor | None,
                   generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    if x_T is not None:
        check_shape(x_T, shape, "x_T")
        return x_T
    if device is None:
        device = generator.device if generator is not None else "cpu"
    return draw_noise(shape, dtype=dtype or torch.get_default_dtype(), device=device,
                      generator=generator)


def _kept_times(times: list[int], trajectory_steps: Sequence[int] | None) -> set[int]:
    """The visited times to record: all of them by default, else the requested ones."""
    if trajectory_steps is None:
        return set(times)
    keep = set()
    for s in trajectory_steps:
        if isinstance(s, bool) or not isinstance(s, int) or s not in times:
            raise ValueError(f"trajectory_steps must hold visited times (ints among "
                             f"{times[0]}, ..., {times[-1]}: the loop's timesteps and 0 for "
                             f"the samples), got {s!r}")
        keep.add(s)
    return keep


def _conditioned(model: Model, spec, y: torch.Tensor | None, guidance: float, B: int) -> Model:
    """The (xt, t) model the sampler calls: ``model`` itself for unconditional specs, else
    the conditional network with labels ``y`` and guidance scale ``guidance``."""
    num_classes = getattr(spec, "num_classes", 0)
    if not num_classes:
        if y is not None or guidance:
            raise ValueError("labels y and guidance need a class-conditional model (its "
                             "DiffusionSpec has num_classes > 0); this one is unconditional")
        return model
    from .guidance import guided

    if y is not None and (not isinstance(y, torch.Tensor) or y.shape != (B,)):
        raise ValueError(f"y must be a long tensor of shape ({B},) (one label per sample), got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
    return guided(model, y, guidance, num_classes)


@torch.no_grad()
def sample(model: Model, spec: DiffusionSpec | Schedule, shape: Sequence[int],
           sampler: str = "ddpm", steps: int | None = None, *,
           prediction_type: str | None = None, variance: str | None = None,
           generator: torch.Generator | None = None, device: torch.device | str | None = None,
           x_T: torch.Tensor | None = None, clip_x0: float | None = None,
           return_trajectory: bool = False, trajectory_steps: Sequence[int] | None = None,
           progress: bool = False, dtype: torch.dtype | None = None, eta: float = 0.0,
           y: torch.Tensor | None = None, guidance: float = 0.0):
    """Draw samples by running a sampler's step from x_T ~ N(0, I) down to x_0 (chapters 6, 7).

    ``spec``: the model's ``DiffusionSpec`` (it decides the schedule and the prediction type;
    see ``dmlib.spec.resolve``), or a bare ``Schedule`` with ``prediction_type`` given
    (chapters 4-6). ``sampler``: a name in ``SAMPLERS``. ``steps``: None runs all T steps;
    S < T runs the S-step respaced chain (``dmlib.respacing``: times tau_k = round(k T / S)),
    calling the model at the original times tau_k.

    ``shape`` is (B, ...) of the samples. ``x_T`` (optional) replaces the initial noise; it
    must have ``shape``, and fixes device and dtype. Otherwise noise is drawn with
    ``generator`` on ``device`` (default: the generator's device, else CPU) in ``dtype``
    (default ``torch.get_default_dtype()``).

    Returns x_0 of ``shape``, or ``(x_0, trajectory)`` with ``return_trajectory=True``:
    ``trajectory`` is a dict {t: x_t} (detached CPU copies, keys in the model's original
    times, from the initial noise at t = T to the samples at t = 0, descending) for t in
    ``trajectory_steps`` (default: every visited t). ``progress=True`` shows a tqdm bar.
    The model should be in eval mode; it is called under ``torch.no_grad()``. ``eta``: the
    noise level of the ``"ddim"`` sampler (chapter 8; ignored by the others).

    Class-conditional models (``spec.num_classes`` = K > 0, chapter 9): ``y`` (B,) long labels
    in 0..K-1 (K or None: the null label, i.e. the unconditional model) and ``guidance`` the
    classifier-free guidance scale w: the model called is (1 + w) net(x, t, y) - w net(x, t,
    null) (``dmlib.guidance``). Unconditional models take neither.
    """
    from tqdm.auto import tqdm

    model = _conditioned(model, spec, y, guidance, shape[0] if len(shape) else 0)
    schedule, prediction_type, variance = resolve(spec, prediction_type, variance)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1:
        raise ValueError("shape must be (B, ...) with a batch dimension")
    times = list(range(schedule.T, -1, -1))
    if steps is not None and steps != schedule.T:
        schedule, taus = respace(schedule, steps)
        model = RespacedModel(model, taus)
        times = [int(tau) for tau in taus.flip(0)] + [0]
    x = _initial_noise(shape, x_T, generator, device, dtype)
    keep = _kept_times(times, trajectory_steps) if return_trajectory else set()
    trajectory = {times[0]: x.detach().cpu().clone()} if times[0] in keep else {}
    ctx = StepContext(prediction_type, variance, generator, clip_x0, eta=eta)
    step = SAMPLERS[sampler]
    for k in tqdm(range(schedule.T, 0, -1), disable=not progress, desc=f"sampling ({sampler})",
                  leave=False):
        x = step(model, schedule, x, k, ctx)
        t_prev = times[schedule.T - k + 1]  # the original time of x_{k-1}
        if t_prev in keep:
            trajectory[t_prev] = x.detach().cpu().clone()
    return (x, trajectory) if return_trajectory else x


def ddpm_sample(model: Model, schedule: Schedule | DiffusionSpec, shape: Sequence[int],
                prediction_type: str | None = None, variance: str | None = None,
                **kwargs) -> torch.Tensor | tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Algorithm 2 of DDPM with all T steps (chapter 6): ``sample(model, schedule, shape,
    "ddpm", prediction_type=..., variance=..., **kwargs)`` (the same keyword arguments)."""
    return sample(model, schedule, shape, "ddpm", prediction_type=prediction_type,
                  variance=variance, **kwargs)


@torch.no_grad()
def sample_images(model: Model, spec: DiffusionSpec, n: int, steps: int | None = None,
                  sampler: str = "ddpm", shape: tuple[int, ...] = (1, 28, 28),
                  variance: str | None = None, generator: torch.Generator | None = None,
                  batch_size: int = 500, device: torch.device | str | None = None,
                  clip_x0: float | None = 1.0, progress: bool = False,
                  y: torch.Tensor | None = None, guidance: float = 0.0) -> torch.Tensor:
    """``n`` images by ``sample`` with the model's ``spec``, ``steps`` respaced steps (None:
    all T) and ``sampler``, drawn in batches of ``batch_size``. Returns (n, *shape) on the
    CPU, clamped to [-1, 1]. ``clip_x0`` clips the predicted x_0 inside each step (DDPM's
    code does; None disables). Chapter 7. ``y`` (n,) labels and ``guidance`` w: for
    class-conditional models (chapter 9; see ``sample``).
    """
    from tqdm.auto import tqdm

    if not isinstance(spec, DiffusionSpec):
        raise TypeError(f"sample_images needs the model's DiffusionSpec (from "
                        f"load_diffusion_model or the run), got {type(spec).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if device is None:
        p = next(model.parameters(), None) if isinstance(model, nn.Module) else None
        device = p.device if p is not None else "cpu"
    out = []
    bar = tqdm(total=n, disable=not progress, desc=f"sampling ({steps or spec.T} steps)")
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        x = sample(model, spec, (b, *shape), sampler, steps, variance=variance,
                   generator=generator, device=device, clip_x0=clip_x0,
                   y=None if y is None else y[start:start + b], guidance=guidance)
        out.append(x.clamp(-1, 1).cpu())
        bar.update(b)
    bar.close()
    return torch.cat(out)


__all__ = ["p_mean_var", "StepContext", "StepFn", "ddpm_step", "SAMPLERS", "sample",
           "ddpm_sample", "sample_images"]
