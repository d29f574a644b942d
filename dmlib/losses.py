"""Training losses and the exact variational bound (chapters 4 and 5).

The negative ELBO of DDPM splits into one term per timestep (chapter 4, C4.3):

    -log p_theta(x_0) <= L_T + sum_{t=2}^T L_{t-1} + L_0          (in nats)
    L_T     = KL( q(x_T | x_0) || N(0, I) )                          (no parameters)
    L_{t-1} = E_q KL( q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t) ),   t = 2..T
    L_0     = -E_q log p_theta(x_0 | x_1)

With p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I), each KL is (C4.5)

    L_{t-1} = E_q ||mu_tilde_t - mu_theta||^2 / (2 sigma_t^2) + C_t,
    C_t     = d/2 * ( log(sigma_t^2 / beta_tilde_t) + beta_tilde_t / sigma_t^2 - 1 )

(C_t = 0 when sigma_t^2 = beta_tilde_t; d = number of data dimensions).

Erratum (chapter 4): the slide writes L = 1/(2 sigma_t^2) sum_{t=1}^T ||...||^2 with the
weight outside the sum; sigma_t depends on t, so it belongs inside. Algorithm 1 draws one
t ~ U{1..T} per example instead of summing all T terms (C4.6).

Chapter 5 rewrites ||mu_tilde - mu_theta||^2 in terms of the other targets (C5.2); see
``loss_weights``.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._validate import call_model, check_same_shape, renamed_keywords
from .forward import draw_noise, q_mean_var, q_sample
from .gaussians import discretized_gaussian_log_likelihood, gaussian_log_prob, normal_kl
from .posterior import posterior_mean_var
from .schedules import Schedule, check_variance_type, elbo_variance
from .spec import DiffusionSpec, resolve
from .targets import (check_prediction_type, convert, elbo_weight, target_coefficients,
                      target_for, x0_error_factor)

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

WEIGHTINGS: tuple[str, ...] = ("simple", "elbo", "min_snr")
DECODERS: tuple[str, ...] = ("gaussian", "discretized")


def _check_choice(value, valid: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid ones are "
                         f"{', '.join(repr(v) for v in valid)}")
    return value


@renamed_keywords(sigma="variance")
def loss_weights(schedule: Schedule, prediction_type: str, weighting: str = "simple",
                 variance: str = "beta", gamma: float = 5.0) -> torch.Tensor:
    """Per-timestep weights w(t), shape (T + 1,), float64; entry 0 NaN (no t = 0). Ch4/ch5, C5.2.

    ``"simple"``: w(t) = 1 (DDPM's L_simple).
    ``"elbo"``: w(t) such that, for the squared error summed over the data dimensions,

        w(t) * ||target - pred||^2 = ||mu_tilde_t - mu_theta||^2 / (2 sigma_t^2),

    i.e. the KL term L_{t-1} without its parameter-free constant C_t (see the module
    docstring). Writing mu in terms of each target (C5.2):

        c_mu(t)  = 1 / (2 sigma_t^2)
        c_x0(t)  = coef_x0(t)^2 / (2 sigma_t^2)
        c_eps(t) = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t))
        c_v(t)   = alpha_bar_t * c_eps(t)

    computed by ``dmlib.targets.elbo_weight`` (the one implementation) from each target's
    coefficients. ``variance`` picks sigma_t^2 = beta_t or beta_tilde_t; at t = 1 both use
    beta_1 (then w(1)||.||^2 is L_0 of the Gaussian decoder up to a constant).

    ``"min_snr"`` (Min-SNR-gamma, Hang et al. 2023; issue 17's ablation): the x_0 error is
    weighted by min(SNR_t, gamma), i.e. for a target whose error is k(t) times the x_0 error
    (``dmlib.targets.x0_error_factor``)

        w(t) = min(SNR_t, gamma) / k(t)^2:  eps: min(SNR, gamma) / SNR,  x0: min(SNR, gamma),
                                            v: min(SNR, gamma) / (SNR + 1).
    """
    check_prediction_type(prediction_type)
    _check_choice(weighting, WEIGHTINGS, "weighting")
    check_variance_type(variance)
    if weighting == "elbo":
        return elbo_weight(schedule, *target_coefficients(schedule, prediction_type), variance)
    if weighting == "min_snr":
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0 (Min-SNR-gamma uses 5), got {gamma!r}")
        k = x0_error_factor(schedule, *target_coefficients(schedule, prediction_type))
        w = schedule.snr.double().clamp(max=gamma) / k.pow(2)
        w[0] = float("nan")
        return w
    w = torch.ones(schedule.T + 1, dtype=torch.float64)
    w[0] = float("nan")
    return w


def _weights(schedule: Schedule, prediction_type: str, weighting: str | torch.Tensor,
             variance: str) -> tuple[torch.Tensor, bool]:
    """(w(t) table, whether R sums over dims) for ``diffusion_loss``."""
    if isinstance(weighting, torch.Tensor):
        if weighting.shape != (schedule.T + 1,):
            raise ValueError(f"a weighting tensor must have shape (T + 1,) = ({schedule.T + 1},) "
                             f"indexed by t, got {tuple(weighting.shape)}")
        return weighting, False
    _check_choice(weighting, WEIGHTINGS, "weighting")
    return loss_weights(schedule, prediction_type, weighting, variance), weighting == "elbo"


def _timesteps_for(schedule: Schedule, t: int | torch.Tensor | None, B: int,
                   generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """t of shape (B,): drawn t ~ U{1..T} when None (on the generator's device, like the
    noise, then moved), else validated and broadcast."""
    if t is None:
        gen_device = generator.device if generator is not None else "cpu"
        return torch.randint(1, schedule.T + 1, (B,), generator=generator,
                             device=gen_device).to(device)
    t = schedule.timesteps(t).to(device)
    return t.expand(B) if t.dim() == 0 else t


@renamed_keywords(sigma="variance")
def diffusion_loss(model: Model, schedule: Schedule | DiffusionSpec, x0: torch.Tensor,
                   prediction_type: str | None = None,
                   weighting: str | torch.Tensor = "simple",
                   t: int | torch.Tensor | None = None, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, reduction: str = "mean",
                   variance: str | None = None) -> torch.Tensor:
    """DDPM's training loss, Algorithm 1 (chapters 4-5).

        t ~ U{1..T} (one per example),  eps ~ N(0, I),
        x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,
        loss_i = w(t_i) * R(target_i - model(x_t, t)_i)^2

    where target is ``target_for(prediction_type, ...)`` and R reduces over the non-batch
    dimensions:

    * ``weighting="simple"``: w = 1 and R = MEAN over dims (DDPM's L_simple for eps; the
      usual ``F.mse_loss``).
    * ``weighting="elbo"``: w = ``loss_weights(schedule, prediction_type, "elbo", variance)``
      and R = SUM over dims, so that for t >= 2 loss_i equals the KL term
      ||mu_tilde - mu_theta||^2 / (2 sigma_t^2) exactly (its constant C_t dropped), and at
      t = 1 the Gaussian decoder's -log p(x_0|x_1) up to a constant.
    * a tensor of shape (T + 1,): custom w(t) (entry t used), R = MEAN over dims.

    ``schedule`` is a ``Schedule`` (then ``prediction_type`` defaults to ``"eps"`` and
    ``variance`` to ``"beta"``) or a ``DiffusionSpec``, which decides both
    (``dmlib.spec.resolve``). Shapes: ``x0`` (B, ...); ``t`` None, an int or (B,) long;
    ``eps`` like x0 or None. Returns a scalar (``reduction="mean"``, the batch mean) or
    (B,) (``"none"``).
    """
    schedule, prediction_type, variance = resolve(schedule, prediction_type, variance)
    if not isinstance(x0, torch.Tensor) or x0.dim() < 1:
        raise ValueError("x0 must be a tensor of shape (B, ...) with a batch dimension")
    _check_choice(reduction, ("mean", "none"), "reduction")
    B = x0.shape[0]
    weights, use_sum = _weights(schedule, prediction_type, weighting, variance)
    t = _timesteps_for(schedule, t, B, generator, x0.device)
    if eps is None:
        eps = draw_noise(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
    check_same_shape(x0=x0, eps=eps)
    xt = q_sample(schedule, x0, t, eps)
    target = target_for(prediction_type, schedule, x0, eps, xt, t)
    pred = call_model(model, xt, t)
    sq = (target - pred).pow(2).reshape(B, -1)
    per_example = sq.sum(1) if use_sum else sq.mean(1)
    per_example = per_example * weights.to(device=x0.device, dtype=per_example.dtype)[t]
    return per_example.mean() if reduction == "mean" else per_example


def prior_kl(schedule: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL( q(x_T | x_0) || N(0, I) ) summed over dims, shape (B,) (chapter 3 C3.3, ch4).

        KL = sum_i 1/2 * ( alpha_bar_T x0_i^2 + (1 - alpha_bar_T) - 1 - log(1 - alpha_bar_T) )

    Shapes: ``x0`` (B, ...); returns (B,) in nats.
    """
    mean, var = q_mean_var(schedule, x0, schedule.T)
    kl = normal_kl(mean, var, torch.zeros_like(mean), torch.ones_like(var))
    return kl.reshape(x0.shape[0], -1).sum(1)


@renamed_keywords(sigma="variance")
def vlb_terms(model: Model, schedule: Schedule | DiffusionSpec, x0: torch.Tensor,
              prediction_type: str | None = None, variance: str | None = None,
              decoder: str = "gaussian", generator: torch.Generator | None = None,
              max_batch: int = 4096) -> torch.Tensor:
    """Every term of the negative ELBO, indexed by t like every per-t table: shape (B, T + 1),
    nats (ch4, C4.3).

    ==========  ==========================================================  ==================
    column      term                                                        sample used
    ==========  ==========================================================  ==================
    t = 1       L_0 = -log p_theta(x_0 | x_1)                               x_1 ~ q(x_1|x_0)
    t = 2..T    L_{t-1} = KL( q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t) )  x_t ~ q(.|x_0)
    0           L_T = KL( q(x_T | x_0) || N(0, I) )  (= ``prior_kl``; no model)   none
    ==========  ==========================================================  ==================

    So column t is the term that calls the model at timestep t, and column 0 (t = 0 has no
    model term) holds the parameter-free prior term. Each column draws its own
    x_t ~ q(x_t | x_0) (one sample, independent across columns), so each entry is an
    unbiased one-sample estimate and ``terms.sum(1)`` is an unbiased estimate of the
    negative ELBO of each example in nats (divide by d ln 2 for bits per dimension).

    p_theta(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I), mu_theta from the model output via
    ``convert(..., prediction_type, "mu")``, sigma_t^2 from ``elbo_variance(schedule,
    variance)``; KLs are the closed-form Gaussian KL summed over dims. The decoder L_0 uses
    mean mu_theta(x_1, 1) (= the model's x_0 prediction) and variance sigma_1^2 := beta_1:
    ``"gaussian"`` is a continuous Gaussian density (for real-valued data), ``"discretized"``
    the 256-bin likelihood for images in [-1, 1] (``discretized_gaussian_log_likelihood``).
    ``schedule``: a ``Schedule`` (defaults ``"eps"``, ``"beta"``) or a ``DiffusionSpec``.

    The model runs in batches of at most ``max_batch`` rows. Gradients flow (wrap the call
    in ``torch.no_grad()`` for evaluation). Shapes: ``x0`` (B, ...); returns (B, T + 1).
    """
    schedule, prediction_type, variance = resolve(schedule, prediction_type, variance)
    _check_choice(decoder, DECODERS, "decoder")
    if not isinstance(x0, torch.Tensor) or x0.dim() < 1:
        raise ValueError("x0 must be a tensor of shape (B, ...) with a batch dimension")
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
    T, B = schedule.T, x0.shape[0]
    columns = [None] * (T + 1)
    columns[0] = prior_kl(schedule, x0)
    columns[1] = _decoder_nll(model, schedule, x0, prediction_type, decoder, generator)
    var_table = elbo_variance(schedule, variance)
    per_call = max(1, max_batch // max(B, 1))  # several t per model call
    ts = list(range(2, T + 1))
    for i in range(0, len(ts), per_call):
        chunk = ts[i:i + per_call]
        tt = torch.tensor(chunk, dtype=torch.long, device=x0.device).repeat_interleave(B)
        xx0 = x0.repeat(len(chunk), *([1] * (x0.dim() - 1)))  # (len(chunk) * B, ...)
        xt = q_sample(schedule, xx0, tt, generator=generator)
        mu_q, var_q, _ = posterior_mean_var(schedule, xx0, xt, tt)
        mu_p = convert(schedule, call_model(model, xt, tt), xt, tt, prediction_type, "mu")
        var_p = schedule.extract(var_table, tt, xt)
        kl = normal_kl(mu_q, var_q, mu_p, var_p).reshape(len(chunk), B, -1).sum(2)
        for j, t in enumerate(chunk):
            columns[t] = kl[j]
    return torch.stack(columns, dim=1)


def _decoder_nll(model: Model, schedule: Schedule, x0: torch.Tensor, prediction_type: str,
                 decoder: str, generator: torch.Generator | None) -> torch.Tensor:
    """L_0 = -log p_theta(x_0 | x_1) summed over dims, shape (B,), one draw of x_1."""
    B = x0.shape[0]
    t1 = torch.ones(B, dtype=torch.long, device=x0.device)
    x1 = q_sample(schedule, x0, t1, generator=generator)
    mean0 = convert(schedule, call_model(model, x1, t1), x1, t1, prediction_type, "mu")
    var1 = torch.full_like(mean0, float(schedule.betas[1]))
    if decoder == "gaussian":
        logp = gaussian_log_prob(x0, mean0, var1)
    else:
        logp = discretized_gaussian_log_likelihood(x0, mean0, var1.log())
    return -logp.reshape(B, -1).sum(1)
