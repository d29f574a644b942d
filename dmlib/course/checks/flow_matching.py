"""Checks for chapter 10 (flow matching): the conditional velocity of the straight path,
the flow-matching loss and one Euler step of the flow from noise (t = 1) towards data (t = 0).
Seeded tensors and fixed stand-in functions, so typical wrong formulas give different
numbers and a specific hint.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._core import Case, CheckResult, Mistake, Spec, run_check

__all__: list[str] = ["check_conditional_velocity", "check_fm_loss", "check_flow_euler_step",
                      "toy_velocity_model", "toy_flow"]


def _x(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _col(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


# --------------------------------------------------------------------------------------
# Exercise 10.1: the conditional velocity d x_t / dt of x_t = (1 - t) x0 + t eps
def check_conditional_velocity(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(x0, eps, t) -> d x_t / dt`` for the straight path x_t = (1 - t) x0 + t eps
    (data at t = 0, noise at t = 1): the answer is eps - x0, whatever t. ``x0``, ``eps``
    (B, ...), ``t`` (B,) floats in [0, 1]. Chapter 10.
    """
    cases = [Case((_x((4, 2), 1), _x((4, 2), 2), torch.tensor([0.1, 0.5, 0.9, 0.3], dtype=torch.float64)),
                  "a batch of 4 points in 2-D, t = [0.1, 0.5, 0.9, 0.3]"),
             Case((_x((3, 5), 3), _x((3, 5), 4), torch.tensor([0.0, 1.0, 0.25], dtype=torch.float64)),
                  "3 points in 5-D with the ends t = 0 and t = 1"),
             Case((_x((2, 1, 3, 3), 5), _x((2, 1, 3, 3), 6), torch.tensor([0.7, 0.2], dtype=torch.float64)),
                  "2 tiny 3 x 3 images, t = [0.7, 0.2]")]
    mistakes = [
        Mistake("that points from the noise to the data (chapter 2's direction, noise at t = 0); "
                "here data sit at t = 0 and noise at t = 1, so x_t moves from x0 towards eps: "
                "d x_t / dt = eps - x0", lambda x0, e, t: x0 - e),
        Mistake("eps alone is DDPM's target (the noise); the velocity of the straight path is "
                "the derivative of (1 - t) x0 + t eps in t", lambda x0, e, t: e),
        Mistake("the derivative of (1 - t) x0 + t eps in t does not depend on t: the path is a "
                "straight line run at constant speed; drop the factor t",
                lambda x0, e, t: _col(t, x0) * (e - x0)),
        Mistake("that is x_t itself, the point on the path; the exercise asks for its derivative "
                "in t", lambda x0, e, t: (1 - _col(t, x0)) * x0 + _col(t, x0) * e),
        Mistake("that is the velocity of the VP path sqrt(1 - t) x0 + sqrt(t) eps of chapter 3 "
                "(with alpha_bar = 1 - t); flow matching uses the straight path (1 - t) x0 + t eps",
                lambda x0, e, t: (e / (2 * _col(t, x0).clamp(min=1e-3).sqrt())
                                  - x0 / (2 * (1 - _col(t, x0)).clamp(min=1e-3).sqrt()))),
    ]
    spec = Spec("check_conditional_velocity", lambda x0, e, t: e - x0, cases, mistakes)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 10.2: the flow-matching loss with given eps and integer times k
def toy_velocity_model(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in for v_theta(x, k): tanh(0.6 x - 0.4) (1 + k / 1000) - 0.2. Nonlinear in
    x and depends on the integer time k (a long tensor (B,)). Chapter 10."""
    if not isinstance(k, torch.Tensor) or k.dim() != 1 or k.shape[0] != x.shape[0]:
        raise ValueError("call the model as model(x_t, k) with k a long tensor of shape (B,)")
    if k.is_floating_point():
        raise TypeError("the network takes the INTEGER time k (a long tensor), not t = k / T")
    return torch.tanh(0.6 * x - 0.4) * (1 + _col(k, x) / 1000) - 0.2


def _loss(x0, e, k, T, target="v", swap=False, feed="xt", reduce="mean", t_scale=True):
    t = _col(k, x0) / (T if t_scale else 1)
    xt = (t * x0 + (1 - t) * e) if swap else ((1 - t) * x0 + t * e)
    tgt = {"v": e - x0, "minus": x0 - e, "eps": e}[target]
    err = (toy_velocity_model(x0 if feed == "x0" else xt, k) - tgt) ** 2
    return err.mean() if reduce == "mean" else err.reshape(x0.shape[0], -1).sum(1).mean()


def check_fm_loss(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(model, x0, eps, k, T) -> loss`` (a scalar) against the flow-matching loss

        t = k / T,  x_t = (1 - t) x0 + t eps,
        loss = mean over the batch and the dimensions of (model(x_t, k) - (eps - x0))^2

    ``k`` a long tensor (B,) in 0..T (the network's integer time), ``eps`` like ``x0``. Chapter 10.
    """
    m = toy_velocity_model
    cases = [Case((m, _x((6, 2), 10), _x((6, 2), 11), torch.tensor([0, 1, 250, 500, 999, 1000]), 1000),
                  "6 points in 2-D, k = [0, 1, 250, 500, 999, 1000], T = 1000"),
             Case((m, _x((4, 3), 12), _x((4, 3), 13), torch.tensor([10, 50, 90, 30]), 100),
                  "4 points in 3-D, T = 100"),
             Case((m, _x((2, 1, 4, 4), 14), _x((2, 1, 4, 4), 15), torch.tensor([300, 700]), 1000),
                  "2 tiny 4 x 4 images")]
    mistakes = [
        Mistake("the target is the velocity eps - x0 (data at t = 0, noise at t = 1); you "
                "regressed x0 - eps, the velocity of the opposite direction",
                lambda m, x0, e, k, T: _loss(x0, e, k, T, target="minus")),
        Mistake("the target of flow matching is the velocity eps - x0, not the noise eps (that "
                "is DDPM's simple loss)", lambda m, x0, e, k, T: _loss(x0, e, k, T, target="eps")),
        Mistake("the ends of the path are swapped: x_t = (1 - t) x0 + t eps is the DATA at t = 0",
                lambda m, x0, e, k, T: _loss(x0, e, k, T, swap=True)),
        Mistake("the network must see the point on the path: call model(x_t, k), not model(x0, k)",
                lambda m, x0, e, k, T: _loss(x0, e, k, T, feed="x0")),
        Mistake("you summed over the data dimensions; the loss is the MEAN over the batch and "
                "the dimensions (like F.mse_loss)",
                lambda m, x0, e, k, T: _loss(x0, e, k, T, reduce="sum")),
    ]
    spec = Spec("check_fm_loss", lambda m, x0, e, k, T: _loss(x0, e, k, T), cases, mistakes)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 10.3: one Euler step of the flow from t to t_next < t
def toy_flow(x: torch.Tensor, t: float) -> torch.Tensor:
    """A fixed stand-in velocity field v(x, t) = tanh(0.7 x + 0.2) (1 + 0.5 t) - 0.3 t. Chapter 10."""
    return torch.tanh(0.7 * x + 0.2) * (1 + 0.5 * t) - 0.3 * t


def _euler(v, x, t, tn, kind="euler"):
    if kind == "sign":
        return x + (t - tn) * v(x, t)
    if kind == "end":
        return x + (tn - t) * v(x, tn)
    if kind == "jump":
        return x - t * v(x, t)
    if kind == "unit":
        return x - v(x, t)
    return x + (tn - t) * v(x, t)


def check_flow_euler_step(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(v, x, t, t_next) -> x_next`` against one Euler step of dx/dt = v(x, t) from
    t down to t_next < t (towards the data at t = 0):

        x_next = x + (t_next - t) v(x, t)

    ``v(x, t)`` a velocity field (t a float), ``x`` (B, d), ``t``, ``t_next`` floats. Chapter 10.
    """
    v = toy_flow
    cases = [Case((v, _x((4, 2), 20), 0.8, 0.7), "t = 0.8 -> 0.7"),
             Case((v, _x((3, 4), 21), 0.5, 0.25), "t = 0.5 -> 0.25"),
             Case((v, _x((4, 2), 22), 0.2, 0.0), "the last step, t = 0.2 -> 0")]
    mistakes = [
        Mistake("the step goes the wrong way: t decreases (t_next < t), so x moves by "
                "(t_next - t) v = -|dt| v; you moved towards the noise",
                lambda v, x, t, tn: _euler(v, x, t, tn, "sign")),
        Mistake("Euler evaluates the velocity at the START of the step, v(x, t), not at t_next",
                lambda v, x, t, tn: _euler(v, x, t, tn, "end")),
        Mistake("that jumps all the way to t = 0 (the x0 estimate x - t v); one Euler step "
                "moves by (t_next - t) v(x, t)", lambda v, x, t, tn: _euler(v, x, t, tn, "jump")),
        Mistake("the step size is missing: multiply the velocity by t_next - t",
                lambda v, x, t, tn: _euler(v, x, t, tn, "unit")),
    ]
    spec = Spec("check_flow_euler_step", lambda v, x, t, tn: _euler(v, x, t, tn), cases, mistakes)
    return run_check(fn, spec, verbose)

