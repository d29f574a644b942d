"""The forward-process posterior q(x_{t-1} | x_t, x_0) (chapter 4, C4.4).

Given x_0, Bayes' rule q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0) multiplies
two Gaussian densities in x_{t-1}, which gives a Gaussian (C1.4):

    q(x_{t-1} | x_t, x_0) = N( mu_tilde_t(x_t, x_0), beta_tilde_t I )
    mu_tilde_t   = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                 + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t
    beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t

Substituting x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) gives the slide's

    mu_tilde_t = 1 / sqrt(alpha_t) * ( x_t - beta_t / sqrt(1 - alpha_bar_t) eps )

(the lecture's x~_{t-1}). The slide "Training: one step at a time" writes 1/sqrt(1 - beta_t)
(the same thing) and sqrt(1 - alpha_t) where it means sqrt(1 - alpha_bar_t). The slide calls
sigma_t "the standard deviation of q(x_{t-1}|x_t,x_0)": that is sqrt(beta_tilde_t), one of
DDPM's two choices for the reverse-process sigma_t (the other is sqrt(beta_t)).

t in 1..T. At t = 1, beta_tilde_1 = 0 and mu_tilde_1 = x_0 (the posterior is a point mass).
"""

from __future__ import annotations

import torch

from ._validate import check_same_shape
from .schedules import Schedule


def posterior_mean(schedule: Schedule, x0: torch.Tensor, xt: torch.Tensor,
                   t: int | torch.Tensor) -> torch.Tensor:
    """Mean of q(x_{t-1} | x_t, x_0) from x_0 and x_t (chapter 4, C4.4).

        mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) * x_0
                   + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * x_t

    Shapes: ``x0``, ``xt`` (B, ...), equal; returns (B, ...). t in 1..T.
    """
    check_same_shape(x0=x0, xt=xt)
    c0 = schedule.extract(schedule.posterior_mean_coef_x0, t, xt)
    ct = schedule.extract(schedule.posterior_mean_coef_xt, t, xt)
    return c0 * x0 + ct * xt


def posterior_mean_var(schedule: Schedule, x0: torch.Tensor, xt: torch.Tensor,
                       t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (chapter 4, C4.4).

        mean = mu_tilde_t(x_t, x_0)            (see ``posterior_mean``)
        var  = beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t
        log_var_clipped = log beta_tilde_t, except at t = 1 where beta_tilde_1 = 0 and
                          log beta_tilde_2 is used instead (DDPM's code convention)

    Shapes: ``x0``, ``xt`` (B, ...); returns three tensors shaped like ``xt``. t in 1..T.
    """
    mean = posterior_mean(schedule, x0, xt, t)
    var = schedule.extract(schedule.posterior_variance, t, xt).expand_as(mean)
    log_var = schedule.extract(schedule.posterior_log_variance_clipped, t, xt).expand_as(mean)
    return mean, var, log_var


def posterior_mean_from_eps(schedule: Schedule, xt: torch.Tensor, eps: torch.Tensor,
                            t: int | torch.Tensor) -> torch.Tensor:
    """Posterior mean written with the noise eps instead of x_0 (chapter 4, the slide's x~_{t-1}).

        mu_tilde_t = 1 / sqrt(alpha_t) * ( x_t - beta_t / sqrt(1 - alpha_bar_t) * eps )

    where x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps. Shapes: ``xt``, ``eps``
    (B, ...), equal; returns (B, ...). t in 1..T.
    """
    check_same_shape(xt=xt, eps=eps)
    alpha = schedule.extract(schedule.alphas, t, xt)
    beta = schedule.extract(schedule.betas, t, xt)
    s1m = schedule.extract(schedule.sqrt_one_minus_alpha_bar, t, xt)
    return (xt - beta / s1m * eps) / torch.sqrt(alpha)
