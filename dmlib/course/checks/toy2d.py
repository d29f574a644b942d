"""Checks for chapter 6: Algorithm 1 (the training loss), Algorithm 2 (one ancestral step)
and one term of the negative ELBO.

Every check calls the student's function with a fixed, parameter-free stand-in for a
trained network (``toy_eps_model``), so the result is deterministic and the mistakes can
be told apart.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...schedules import Schedule
from ._core import (Case, CheckResult, Mistake, Spec, _at, _BROADCAST, _OFF_BY_ONE, _schedules, _t,
                    _x, run_check)

__all__: list[str] = ["check_simple_loss", "check_ancestral_step", "check_kl_term",
                      "toy_eps_model"]


def toy_eps_model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for eps_theta(x_t, t): tanh(0.8 x_t + 0.3 sqrt(t) / 10 - 0.1).

    Nonlinear in x_t and depends on t, so the checks can tell formulas apart. ``t`` must be
    a long tensor of shape (B,) (the model convention), ``xt`` (B, ...). Chapter 6.
    """
    if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != xt.shape[0]:
        raise ValueError("call the model as model(xt, t) with t a long tensor of shape (B,), "
                         "one timestep per example (torch.full((B,), t) for a single t)")
    if t.is_floating_point():
        raise ValueError("t must hold integer timesteps 1..T (a long tensor)")
    tt = t.to(xt.dtype).reshape(-1, *([1] * (xt.dim() - 1)))
    return torch.tanh(0.8 * xt + 0.03 * tt.sqrt() - 0.1)


def _batch_t(t: int | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.long)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


_ALPHA_NOT_BAR = ("you used the single-step alpha_t where x_t ~ q(x_t | x_0) needs alpha_bar_t, "
                  "the product of all alphas up to t")
_MODEL_T = ("the model is called at the wrong time: x_t was made with alpha_bar_t, so call "
            "model(x_t, t) with the same t (not t - 1 or t + 1)")
_ALGO2_SIGMA = ("sigma_t is a standard deviation: with sigma_t^2 = beta_t the noise is "
                "sqrt(beta_t) * z, not beta_t * z")


# --------------------------------------------------------------------------------------
# Exercise 6.1: Algorithm 1, the simple loss for given t and eps
def _loss_formula(s, x0, t, e, shift=0, alpha=False, no_sqrt=False, feed_x0=False,
                  target="eps", reduce="mean", power=2, model_shift=0, root=False):
    a = _at(s.alphas if alpha else s.alpha_bar, t, x0, shift)
    if no_sqrt:
        xt = a.sqrt() * x0 + (1 - a) * e
    else:
        xt = a.sqrt() * x0 + (1 - a).sqrt() * e
    pred = toy_eps_model(x0 if feed_x0 else xt, _batch_t(t, x0) + model_shift)
    tgt = {"eps": e, "x0": x0, "xt": xt}[target]
    err = (tgt - pred).abs() ** power
    if reduce == "mean":
        out = err.mean()
    elif reduce == "total":
        out = err.sum()
    else:
        out = err.reshape(x0.shape[0], -1).sum(1).mean()
    return out.sqrt() if root else out


def check_simple_loss(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(model, schedule, x0, t, eps) -> loss`` (a scalar) against Algorithm 1's

        x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps,
        loss = mean over the batch and the data dimensions of (eps - model(x_t, t))^2

    with ``t`` a long tensor (B,) and ``eps`` like ``x0`` (B, ...). Chapter 6.
    """
    from ...losses import diffusion_loss

    lin, cos = _schedules()
    cases = [
        Case((toy_eps_model, lin, _x((6, 2), 60), _t([1, 2, 10, 300, 999, 1000]), _x((6, 2), 61)),
             "a batch of 6 points in 2-D with t = [1, 2, 10, 300, 999, 1000] (linear, T=1000)"),
        Case((toy_eps_model, cos, _x((4, 2), 62), _t([50, 1, 25, 7]), _x((4, 2), 63)),
             "a batch of 4 points with t = [50, 1, 25, 7] (cosine, T=50)"),
        Case((toy_eps_model, lin, _x((3, 5), 64), _t([40, 400, 800]), _x((3, 5), 65)),
             "a batch of 3 points in 5-D with t = [40, 400, 800]"),
    ]
    mistakes = [
        Mistake("the network must see the NOISED point: call model(x_t, t), not model(x0, t)",
                lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, feed_x0=True)),
        Mistake("the target of the simple loss is the noise eps that was added, not x0",
                lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, target="x0")),
        Mistake("the target of the simple loss is the noise eps, not x_t",
                lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, target="xt")),
        Mistake("the noise is scaled by a variance: x_t = sqrt(alpha_bar_t) x0 + "
                "sqrt(1 - alpha_bar_t) eps multiplies eps by a standard deviation",
                lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, no_sqrt=True)),
        Mistake(_ALPHA_NOT_BAR, lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, alpha=True)),
        Mistake(_OFF_BY_ONE, lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, shift=1)),
        Mistake("you summed the squared error over the data dimensions; the simple loss (like "
                "F.mse_loss) takes the MEAN over the batch and the dimensions",
                lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, reduce="sum")),
        Mistake("the error is not squared: the loss is the mean SQUARED error",
                lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, power=1)),
        Mistake("you summed the squared errors over the batch and the dimensions; the simple "
                "loss takes their MEAN (like F.mse_loss)",
                lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, reduce="total")),
        Mistake(_MODEL_T, lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, model_shift=-1)),
        Mistake(_MODEL_T, lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, model_shift=1)),
        Mistake("you took a square root (an RMS error): the loss is the mean squared error "
                "itself", lambda m, s, x0, t, e: _loss_formula(s, x0, t, e, root=True)),
    ]
    spec = Spec("check_simple_loss",
                lambda m, s, x0, t, e: diffusion_loss(m, s, x0, "eps", "simple", t=t, eps=e),
                cases, mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 6.2: Algorithm 2, one ancestral step with given z
def _step_formula(s, xt, t, z, shift=0, inv_sqrt="alpha", eps_coef="sqrt", noise="std",
                  noise_at_1=False, var="beta", sign=1.0, model_shift=0):
    tb = _batch_t(t, xt) + model_shift
    eps = toy_eps_model(xt, tb)
    a, ab, b = (_at(v, t, xt, shift) for v in (s.alphas, s.alpha_bar, s.betas))
    c = {"sqrt": b / (1 - ab).sqrt(), "none": b / (1 - ab), "x0": (1 - ab).sqrt()}[eps_coef]
    inner = xt - c * eps
    mean = {"alpha": inner / a.sqrt(), "bar": inner / ab.sqrt(), "none": inner}[inv_sqrt]
    if int(t) == 1 and not noise_at_1:
        return mean
    v = b if var == "beta" else _at(s.posterior_variance, t, xt, shift)
    return mean + sign * (v.sqrt() if noise == "std" else v) * z


def check_ancestral_step(fn: Callable, verbose: bool = True) -> CheckResult:  # long: the mistake list
    """Check ``fn(model, schedule, xt, t, z) -> x_{t-1}`` against one step of Algorithm 2
    with sigma_t^2 = beta_t:

        x_{t-1} = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_theta(x_t, t))
                  + sigma_t z        (for t > 1; at t = 1 no noise is added)

    ``t`` is an int (one timestep for the batch); the model is called with a long (B,)
    tensor. ``xt``, ``z`` (B, ...). Chapter 6.
    """
    from ...sampling import p_mean_var

    def reference(m, s, xt, t, z):
        tb = torch.full((xt.shape[0],), t, dtype=torch.long)
        mean, var = p_mean_var(s, m(xt, tb), xt, t, "eps", "beta")
        return mean if t == 1 else mean + var.sqrt() * z

    lin, cos = _schedules()
    cases = [
        Case((toy_eps_model, lin, _x((5, 2), 70), 1000, _x((5, 2), 71)),
             "x_t of shape (5, 2) at t = T = 1000 (linear)"),
        Case((toy_eps_model, lin, _x((5, 2), 72), 500, _x((5, 2), 73)), "t = 500 (linear, T=1000)"),
        Case((toy_eps_model, cos, _x((4, 3), 74), 2, _x((4, 3), 75)),
             "x_t of shape (4, 3) at t = 2 (cosine, T=50)"),
        Case((toy_eps_model, lin, _x((5, 2), 76), 1, _x((5, 2), 77)),
             "the last step, t = 1 (linear, T=1000)"),
    ]
    F = _step_formula
    mistakes = [
        Mistake("at the last step (t = 1) Algorithm 2 adds no noise: z = 0, return the mean",
                lambda m, s, xt, t, z: F(s, xt, t, z, noise_at_1=True)),
        Mistake(_ALGO2_SIGMA, lambda m, s, xt, t, z: F(s, xt, t, z, noise="var")),
        Mistake("the mean is 1/sqrt(alpha_t) (x_t - ...): the factor 1/sqrt(alpha_t) is missing",
                lambda m, s, xt, t, z: F(s, xt, t, z, inv_sqrt="none")),
        Mistake("the mean is divided by sqrt(alpha_t), the single step, not sqrt(alpha_bar_t)",
                lambda m, s, xt, t, z: F(s, xt, t, z, inv_sqrt="bar")),
        Mistake("the coefficient of eps_theta is beta_t / sqrt(1 - alpha_bar_t): a square root "
                "is missing in the denominator",
                lambda m, s, xt, t, z: F(s, xt, t, z, eps_coef="none")),
        Mistake("the coefficient of eps_theta is beta_t / sqrt(1 - alpha_bar_t), not "
                "sqrt(1 - alpha_bar_t): one step removes only a little of the noise",
                lambda m, s, xt, t, z: F(s, xt, t, z, eps_coef="x0")),
        Mistake("this exercise uses sigma_t^2 = beta_t; you used the posterior variance "
                "beta_tilde_t (a valid choice, but not the one asked for)",
                lambda m, s, xt, t, z: F(s, xt, t, z, var="beta_tilde")),
        Mistake("check the sign of the noise term: x_{t-1} = mean + sigma_t z",
                lambda m, s, xt, t, z: F(s, xt, t, z, sign=-1.0)),
        Mistake(_OFF_BY_ONE, lambda m, s, xt, t, z: F(s, xt, t, z, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda m, s, xt, t, z: F(s, xt, t, z, shift=1)),
        Mistake(_MODEL_T.replace("x_t was made with alpha_bar_t", "the step starts from x_t"),
                lambda m, s, xt, t, z: F(s, xt, t, z, model_shift=-1)),
        Mistake(_MODEL_T.replace("x_t was made with alpha_bar_t", "the step starts from x_t"),
                lambda m, s, xt, t, z: F(s, xt, t, z, model_shift=1)),
        Mistake("you returned the estimate of x0 (x_t - sqrt(1 - alpha_bar_t) eps_theta) / "
                "sqrt(alpha_bar_t); one step of Algorithm 2 goes only from x_t to x_{t-1}",
                lambda m, s, xt, t, z: (xt - (1 - _at(s.alpha_bar, t, xt)).sqrt()
                                        * toy_eps_model(xt, _batch_t(t, xt)))
                / _at(s.alpha_bar, t, xt).sqrt()),
    ]
    spec = Spec("check_ancestral_step", reference, cases, mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 6.3: one KL term L_{t-1} of the negative ELBO
def _kl_formula(s, x0, xt, t, shift=0, const=True, sigma="var", var="beta", half=True,
                reverse=False, reduce="sum", model_shift=0, pre_bar=False, const_once=False):
    from ...posterior import posterior_mean

    tb = _batch_t(t, x0) + model_shift
    eps = toy_eps_model(xt, tb)
    a, ab, b = (_at(v, t, xt, shift) for v in (s.alphas, s.alpha_bar, s.betas))
    bt = _at(s.posterior_variance, t, xt, shift)
    mu_theta = (xt - b / (1 - ab).sqrt() * eps) / (ab if pre_bar else a).sqrt()
    mu_q = posterior_mean(s, x0, xt, t) if shift == 0 else (
        _at(s.posterior_mean_coef_x0, t, xt, shift) * x0 + _at(s.posterior_mean_coef_xt, t, xt, shift) * xt)
    s2 = b if var == "beta" else bt
    sq = (mu_q - mu_theta) ** 2
    if reverse:  # KL(p || q)
        kl = 0.5 * (torch.log(bt / s2) + s2 / bt - 1) + sq / (2 * bt)
    else:
        den = s2 if sigma == "var" else s2.sqrt()
        quad = sq / (2 * den) if half else sq / den
        cst = 0.5 * (torch.log(s2 / bt) + bt / s2 - 1)
        if const_once:
            return quad.reshape(x0.shape[0], -1).sum(1) + cst.reshape(-1)
        kl = quad + (cst if const else 0.0)
    kl = kl.reshape(x0.shape[0], -1)
    return kl.sum(1) if reduce == "sum" else kl.mean(1)


def check_kl_term(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(model, schedule, x0, xt, t) -> L_{t-1}`` (shape (B,), nats) against

        L_{t-1} = KL( q(x_{t-1} | x_t, x0) || p_theta(x_{t-1} | x_t) )
                = sum_dims [ 1/2 ( log(sigma_t^2 / beta_tilde_t) + beta_tilde_t / sigma_t^2 - 1 )
                             + (mu_tilde_t(x_t, x0) - mu_theta(x_t, t))^2 / (2 sigma_t^2) ]

    with sigma_t^2 = beta_t and mu_theta = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t)
    eps_theta). ``t`` a long (B,) tensor in 2..T. Chapter 6 (the bound of chapter 4).
    """
    from ...gaussians import normal_kl
    from ...posterior import posterior_mean_var
    from ...targets import convert

    def reference(m, s, x0, xt, t):
        mu_q, var_q, _ = posterior_mean_var(s, x0, xt, t)
        mu_p = convert(s, m(xt, t), xt, t, "eps", "mu")
        var_p = s.extract(s.betas, t, xt)
        return normal_kl(mu_q, var_q, mu_p, var_p).reshape(x0.shape[0], -1).sum(1)

    lin, cos = _schedules()
    cases = [
        Case((toy_eps_model, lin, _x((5, 2), 80), _x((5, 2), 81), _t([2, 3, 100, 999, 1000])),
             "x0, x_t of shape (5, 2) with t = [2, 3, 100, 999, 1000] (linear, T=1000)"),
        Case((toy_eps_model, cos, _x((4, 3), 82), _x((4, 3), 83), _t([50, 2, 25, 10])),
             "x0, x_t of shape (4, 3) with t = [50, 2, 25, 10] (cosine, T=50)"),
    ]
    K = _kl_formula
    mistakes = [
        Mistake("the constant term 1/2 (log(sigma_t^2 / beta_tilde_t) + beta_tilde_t / sigma_t^2 "
                "- 1) is missing: with sigma_t^2 = beta_t the two variances differ, so the KL "
                "is not only the squared distance of the means",
                lambda m, s, x0, xt, t: K(s, x0, xt, t, const=False)),
        Mistake("the squared distance is divided by 2 sigma_t (a standard deviation); the KL "
                "divides by 2 sigma_t^2, a variance",
                lambda m, s, x0, xt, t: K(s, x0, xt, t, sigma="std")),
        Mistake("this exercise uses sigma_t^2 = beta_t for p_theta; you used beta_tilde_t",
                lambda m, s, x0, xt, t: K(s, x0, xt, t, var="beta_tilde")),
        Mistake("the factor 1/2 in front of the squared distance is missing",
                lambda m, s, x0, xt, t: K(s, x0, xt, t, half=False)),
        Mistake("the KL is the wrong way round: L_{t-1} = KL(q || p_theta), with q's variance "
                "beta_tilde_t in the first slot and sigma_t^2 in the second",
                lambda m, s, x0, xt, t: K(s, x0, xt, t, reverse=True)),
        Mistake("the KL of a d-dimensional isotropic Gaussian is the SUM over the dimensions, "
                "not the mean", lambda m, s, x0, xt, t: K(s, x0, xt, t, reduce="mean")),
        Mistake(_OFF_BY_ONE, lambda m, s, x0, xt, t: K(s, x0, xt, t, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda m, s, x0, xt, t: K(s, x0, xt, t, shift=1)),
        Mistake(_MODEL_T.replace("x_t was made with alpha_bar_t", "mu_theta is the mean at t"),
                lambda m, s, x0, xt, t: K(s, x0, xt, t, model_shift=-1)),
        Mistake(_MODEL_T.replace("x_t was made with alpha_bar_t", "mu_theta is the mean at t"),
                lambda m, s, x0, xt, t: K(s, x0, xt, t, model_shift=1)),
        Mistake("mu_theta divides by sqrt(alpha_t), the single step, not by sqrt(alpha_bar_t)",
                lambda m, s, x0, xt, t: K(s, x0, xt, t, pre_bar=True)),
        Mistake("the constant term is per dimension: sum it over the d dimensions like the "
                "squared distance (you added it once per example)",
                lambda m, s, x0, xt, t: K(s, x0, xt, t, const_once=True)),
    ]
    spec = Spec("check_kl_term", reference, cases, mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)
