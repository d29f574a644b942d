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
"""

from __future__ import annotations

import torch

from ._validate import check_same_shape
from .posterior import posterior_mean
from .schedules import Schedule

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
    """Invert the posterior mean (chapter 5, C5.1): mu = coef_x0 x_0 + coef_xt x_t, so

        x_0 = (mu - coef_xt(t) x_t) / coef_x0(t),
        coef_x0 = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t),
        coef_xt = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t).

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
