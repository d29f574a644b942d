"""Equivalent prediction targets: eps, x0, mu (the posterior mean) and v (chapter 5).

Given x_t and t, the forward process ties x_0 and eps together,

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,

so a network that predicts any one of the following determines the others exactly:

=========  ==============================================================  =================
name       quantity                                                        slide
=========  ==============================================================  =================
``eps``    the added noise eps                                             "the added noise"
``x0``     the clean data x_0                                              "clean image"
``mu``     the posterior mean mu_tilde_t(x_t, x_0) of q(x_{t-1}|x_t,x_0)   x~_{t-1}
``v``      v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0           "anything else?"
=========  ==============================================================  =================

(v is Salimans & Ho's "velocity"; the slide's "any linear combination, e.g. x_0 eps"
means a linear combination such as this one, not a product.) With a = sqrt(alpha_bar_t),
s = sqrt(1 - alpha_bar_t) and a^2 + s^2 = 1, (x_t, v) is a rotation of (x_0, eps):
x_0 = a x_t - s v and eps = s x_t + a v.

All conversions are exact for t in 1..T (1 - alpha_bar_t > 0 and coef_x0 > 0 there).

Any linear target y = c_x0 x_0 + c_eps eps (``target_coefficients``) relates to x_0 errors by
a factor k(t) for fixed x_t (``x0_error_factor``), which gives its ELBO weight
(``elbo_weight``); ``error_per_t`` measures a trained model's error at every t (chapter 5).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ._validate import check_same_shape, renamed_keywords
from .forward import q_sample
from .posterior import posterior_mean
from .schedules import Schedule, elbo_variance

#: The prediction targets dmlib supports (see the module docstring).
PREDICTION_TYPES: tuple[str, ...] = ("eps", "x0", "mu", "v")


def check_prediction_type(prediction_type: str, name: str = "prediction_type") -> str:
    """Return ``prediction_type`` if it is one of ``PREDICTION_TYPES``, else raise ValueError."""
    if not isinstance(prediction_type, str) or prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown {name} {prediction_type!r}; valid ones are "
                         f"{', '.join(repr(p) for p in PREDICTION_TYPES)}")
    return prediction_type


def _a_s(schedule: Schedule, t: int | torch.Tensor, x: torch.Tensor):
    """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) broadcast against x; t in 1..T."""
    return (schedule.extract(schedule.sqrt_alpha_bar, t, x),
            schedule.extract(schedule.sqrt_one_minus_alpha_bar, t, x))


def _check_t(schedule: Schedule, t: int | torch.Tensor, x: torch.Tensor) -> None:
    """Validate t (1..T, one per row of x) where no schedule value is needed."""
    schedule.extract(schedule.betas, t, x)


def x0_from_eps(schedule: Schedule, xt: torch.Tensor, eps: torch.Tensor,
                t: int | torch.Tensor) -> torch.Tensor:
    """x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)  (chapter 5, C5.1).

    Shapes: ``xt``, ``eps`` (B, ...); returns (B, ...). t in 1..T.
    """
    check_same_shape(xt=xt, eps=eps)
    a, s = _a_s(schedule, t, xt)
    return (xt - s * eps) / a


def eps_from_x0(schedule: Schedule, xt: torch.Tensor, x0: torch.Tensor,
                t: int | torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)  (chapter 5, C5.1).

    Shapes: ``xt``, ``x0`` (B, ...); returns (B, ...). t in 1..T.
    """
    check_same_shape(xt=xt, x0=x0)
    a, s = _a_s(schedule, t, xt)
    return (xt - a * x0) / s


def v_from_x0_eps(schedule: Schedule, x0: torch.Tensor, eps: torch.Tensor,
                  t: int | torch.Tensor) -> torch.Tensor:
    """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0  (chapter 5, C5.3).

    Shapes: ``x0``, ``eps`` (B, ...); returns (B, ...). t in 1..T.
    """
    check_same_shape(x0=x0, eps=eps)
    a, s = _a_s(schedule, t, x0)
    return a * eps - s * x0


def x0_eps_from_v(schedule: Schedule, xt: torch.Tensor, v: torch.Tensor,
                  t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert v (chapter 5, C5.3): the rotation (x_0, eps) -> (x_t, v) is orthogonal, so

        x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v
        eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v

    Shapes: ``xt``, ``v`` (B, ...); returns ``(x0, eps)``, each (B, ...). t in 1..T.
    """
    check_same_shape(xt=xt, v=v)
    a, s = _a_s(schedule, t, xt)
    return a * xt - s * v, s * xt + a * v


def x0_from_mu(schedule: Schedule, xt: torch.Tensor, mu: torch.Tensor,
               t: int | torch.Tensor) -> torch.Tensor:
    """Invert the posterior mean (chapter 5, C5.1): mu = coef_x0 x_0 + coef_xt x_t
    (``dmlib.posterior.posterior_mean``; the coefficients are the schedule's
    ``posterior_mean_coef_x0`` / ``_xt``), so

        x_0 = (mu - coef_xt(t) x_t) / coef_x0(t).

    Shapes: ``xt``, ``mu`` (B, ...); returns (B, ...). t in 1..T (at t = 1, mu = x_0).
    """
    check_same_shape(xt=xt, mu=mu)
    c0 = schedule.extract(schedule.posterior_mean_coef_x0, t, xt)
    ct = schedule.extract(schedule.posterior_mean_coef_xt, t, xt)
    return (mu - ct * xt) / c0


def to_x0(schedule: Schedule, pred: torch.Tensor, xt: torch.Tensor, t: int | torch.Tensor,
          source: str) -> torch.Tensor:
    """Express a prediction of type ``source`` as a prediction of x_0 (chapter 5).

    Shapes: ``pred``, ``xt`` (B, ...); returns (B, ...). t in 1..T.
    """
    check_prediction_type(source, "source")
    if source == "x0":
        check_same_shape(xt=xt, pred=pred)
        _check_t(schedule, t, xt)
        return pred
    if source == "eps":
        return x0_from_eps(schedule, xt, pred, t)
    if source == "v":
        return x0_eps_from_v(schedule, xt, pred, t)[0]
    return x0_from_mu(schedule, xt, pred, t)


def convert(schedule: Schedule, pred: torch.Tensor, xt: torch.Tensor, t: int | torch.Tensor,
            source: str, target: str) -> torch.Tensor:
    """Re-express a prediction ``pred`` of type ``source`` as type ``target`` (chapter 5, C5.1).

    Any of ``PREDICTION_TYPES`` to any other, given x_t and t:
    source -> (x_0, eps) with the inverse formulas above, then
    eps: eps,  x0: x_0,  v: sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0,
    mu: coef_x0 x_0 + coef_xt x_t. Round trips are identities up to rounding.

    Shapes: ``pred``, ``xt`` (B, ...); returns (B, ...). t in 1..T.
    """
    check_prediction_type(source, "source")
    check_prediction_type(target, "target")
    check_same_shape(xt=xt, pred=pred)
    if source == target:
        _check_t(schedule, t, xt)  # still validate t, for consistent errors
        return pred
    if source == "v":
        x0, eps = x0_eps_from_v(schedule, xt, pred, t)
    elif source == "eps":
        x0, eps = x0_from_eps(schedule, xt, pred, t), pred
    else:
        x0 = to_x0(schedule, pred, xt, t, source)
        eps = None
    if target == "x0":
        return x0
    if target == "mu":
        return posterior_mean(schedule, x0, xt, t)
    if eps is None:
        eps = eps_from_x0(schedule, xt, x0, t)
    if target == "eps":
        return eps
    return v_from_x0_eps(schedule, x0, eps, t)


class ConvertedModel(nn.Module):
    """A trained model seen through ``convert``: ``ConvertedModel(model, schedule, "v",
    "eps")(xt, t)`` returns eps where ``model(xt, t)`` returns v (chapter 7, where code
    written for eps samples a v-trained checkpoint). For v -> eps that is
    eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v; every pair uses ``convert``'s exact
    formulas. Shapes: xt (B, ...) and the output (B, ...); t: (B,) long in 1..T of
    ``schedule`` (the schedule the model was trained with, not a respaced one: wrap this
    inside ``RespacedModel``, not around it). Extra keyword arguments (e.g. class labels)
    go to the model."""

    def __init__(self, model: nn.Module | Callable[..., torch.Tensor], schedule: Schedule,
                 source: str, target: str) -> None:
        super().__init__()
        self.model = model
        self.schedule = schedule
        self.source = check_prediction_type(source, "source")
        self.target = check_prediction_type(target, "target")

    def forward(self, xt: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        return convert(self.schedule, self.model(xt, t, **kwargs), xt, t, self.source, self.target)


def target_for(prediction_type: str, schedule: Schedule, x0: torch.Tensor, eps: torch.Tensor,
               xt: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    """The regression target of a given type, for Algorithm 1 (chapter 5).

        eps -> eps,   x0 -> x_0,   mu -> mu_tilde_t(x_t, x_0),
        v   -> sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0

    ``xt`` must be q_sample(schedule, x0, t, eps) (only ``mu`` uses it). Shapes: all
    (B, ...); returns (B, ...). t in 1..T.
    """
    check_prediction_type(prediction_type)
    check_same_shape(x0=x0, eps=eps, xt=xt)
    if prediction_type == "eps":
        _check_t(schedule, t, xt)
        return eps
    if prediction_type == "x0":
        _check_t(schedule, t, xt)
        return x0
    if prediction_type == "mu":
        return posterior_mean(schedule, x0, xt, t)
    return v_from_x0_eps(schedule, x0, eps, t)


# --------------------------------------------------------------------------------------
# "Anything else?" (C5.3): every target is a linear combination y = c_x0 x_0 + c_eps eps.
def target_coefficients(schedule: Schedule, prediction_type: str
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_x0(t), c_eps(t)) with target_t = c_x0(t) x_0 + c_eps(t) eps  (chapter 5, C5.3).

        eps: (0, 1)            x0: (1, 0)
        v:   (-sqrt(1 - alpha_bar_t), sqrt(alpha_bar_t))
        mu:  (coef_x0 + coef_xt sqrt(alpha_bar_t), coef_xt sqrt(1 - alpha_bar_t))
             (substitute x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps into
             mu = coef_x0 x_0 + coef_xt x_t)

    Returns two tensors of shape (T + 1,), float64, indexed by t (entry 0 is t = 0).
    """
    check_prediction_type(prediction_type)
    a, s = schedule.sqrt_alpha_bar, schedule.sqrt_one_minus_alpha_bar
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    if prediction_type == "eps":
        return zero, one
    if prediction_type == "x0":
        return one, zero
    if prediction_type == "v":
        return -s, a.clone()
    c0, ct = schedule.posterior_mean_coef_x0, schedule.posterior_mean_coef_xt
    return c0 + ct * a, ct * s


def x0_error_factor(schedule: Schedule, coef_x0: torch.Tensor,
                    coef_eps: torch.Tensor) -> torch.Tensor:
    """k(t) such that, for a fixed x_t, an error in y = c_x0 x_0 + c_eps eps is k(t) times
    the error in x_0 (chapter 5, C5.2-C5.3):

        eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)
        => y = (c_x0 - c_eps sqrt(alpha_bar_t) / sqrt(1 - alpha_bar_t)) x_0 + (terms in x_t)
        => y - y_theta = k(t) (x_0 - x0_theta),  k = c_x0 - c_eps sqrt(SNR_t)

    k = 1 (x0), -sqrt(SNR_t) (eps), -1/sqrt(1 - alpha_bar_t) (v), coef_x0(t) (mu).
    k(t) = 0 means y is a multiple of x_t: it carries no information and cannot be a target.

    ``coef_x0``, ``coef_eps``: shape (T + 1,) (e.g. from ``target_coefficients``); returns
    (T + 1,), float64, entry 0 (t = 0, SNR = inf) NaN.
    """
    T1 = schedule.T + 1
    for name, c in (("coef_x0", coef_x0), ("coef_eps", coef_eps)):
        if not isinstance(c, torch.Tensor) or c.shape != (T1,):
            got = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise ValueError(f"{name} must be a tensor of shape (T + 1,) = ({T1},) indexed by "
                             f"t, got {got}")
    a, s = schedule.sqrt_alpha_bar[1:], schedule.sqrt_one_minus_alpha_bar[1:]
    k = coef_x0[1:].double() - coef_eps[1:].double() * a / s
    return torch.cat([torch.full((1,), float("nan"), dtype=torch.float64), k])


@renamed_keywords(sigma="variance")
def elbo_weight(schedule: Schedule, coef_x0: torch.Tensor, coef_eps: torch.Tensor,
                variance: str = "beta") -> torch.Tensor:
    """ELBO weight of ANY linear target y = c_x0 x_0 + c_eps eps (chapter 5, C5.2-C5.3):

        ||mu_tilde - mu_theta||^2 / (2 sigma_t^2) = w(t) ||y - y_theta||^2,
        w(t) = c_x0^ELBO(t) / k(t)^2,   c_x0^ELBO = coef_x0(t)^2 / (2 sigma_t^2)

    with k(t) from ``x0_error_factor`` (mu - mu_theta = coef_x0 (x_0 - x0_theta) for fixed
    x_t). This is the one implementation of the ELBO weights: ``dmlib.losses.loss_weights``
    calls it with the named targets' coefficients. ``variance``: sigma_t^2 = beta_t or
    beta_tilde_t (at t = 1 both use beta_1, see ``dmlib.schedules.elbo_variance``).

    Shapes: ``coef_x0``, ``coef_eps`` (T + 1,); returns (T + 1,), float64, entry 0 NaN.
    Raises ValueError where k(t) = 0 (y a multiple of x_t: no information about x_0).
    """
    k = x0_error_factor(schedule, coef_x0, coef_eps)
    bad = (k[1:].abs() < 1e-12).nonzero()
    if bad.numel():
        raise ValueError(f"the target is a multiple of x_t at t = {int(bad[0]) + 1} (k(t) = 0): "
                         f"it carries no information about x_0 and cannot be trained on")
    var = elbo_variance(schedule, variance)
    return schedule.posterior_mean_coef_x0 ** 2 / (2 * var) / k ** 2


def error_per_t(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: Schedule, x0: torch.Tensor, prediction_type: str,
                generator: torch.Generator | None = None, max_batch: int = 65536
                ) -> torch.Tensor:
    """Mean squared error of a model's prediction at every t, shape (T + 1,) (chapter 5, C5.4).

        err(t) = mean_{i, dims} ( target_t(x0_i, eps_i) - model(x_t,i, t)_i )^2,
        x_t,i = sqrt(alpha_bar_t) x0_i + sqrt(1 - alpha_bar_t) eps_i,  eps_i ~ N(0, I)

    in the model's own units (``prediction_type``: what it was trained to predict), called
    as ``model(xt, t)`` with several t per call (at most ``max_batch`` rows). Fresh noise
    per t, drawn on the CPU with ``generator``; runs under ``torch.no_grad()``. Entry 0
    (t = 0) is NaN.
    Shapes: ``x0`` (B, ...); returns (T + 1,), float64.
    """
    check_prediction_type(prediction_type)
    if not isinstance(x0, torch.Tensor) or x0.dim() < 1:
        raise ValueError("x0 must be a tensor of shape (B, ...) with a batch dimension")
    T, B = schedule.T, x0.shape[0]
    out = torch.full((T + 1,), float("nan"), dtype=torch.float64)
    per_call = max(1, max_batch // max(B, 1))
    with torch.no_grad():
        for i in range(1, T + 1, per_call):
            ts = list(range(i, min(T, i + per_call - 1) + 1))
            tt = torch.tensor(ts, dtype=torch.long, device=x0.device).repeat_interleave(B)
            xx0 = x0.repeat(len(ts), *([1] * (x0.dim() - 1)))
            eps = torch.randn(xx0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
            xt = q_sample(schedule, xx0, tt, eps)
            target = target_for(prediction_type, schedule, xx0, eps, xt, tt)
            sq = (model(xt, tt) - target).pow(2).reshape(len(ts), -1).mean(1)
            out[ts] = sq.double().cpu()
    return out
