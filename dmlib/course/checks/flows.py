"""Checks for chapter 2: normalizing flows and CNFs.

* ``check_euler_step``: one Euler step z + dt f(z, t);
* ``check_coupling_log_det``: log |det| of an affine coupling layer;
* ``check_hutchinson``: Hutchinson's trace estimate with given probes.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ._core import Case, CheckResult, Mistake, Spec, _x, run_check

__all__ = ["check_euler_step", "check_coupling_log_det", "check_hutchinson"]


# --------------------------------------------------------------------------------------
# Euler step: z_{t+dt} = z_t + dt f(z_t, t)
def _time_dependent_field(seed: int, d: int) -> Callable:
    """f(z, t) = A z cos(3t) + b t: depends on t, so a wrong time argument shows."""
    A, b = _x((d, d), seed), _x((d,), seed + 1)

    def f(z: torch.Tensor, t: float) -> torch.Tensor:
        return z @ A.to(z.dtype).T * math.cos(3 * t) + b.to(z.dtype) * t
    return f


def check_euler_step(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(f, z, t, dt) -> z_next`` against z + dt * f(z, t) (z: (B, d); t, dt floats).
    Chapter 2."""
    from ...ode import euler_step

    cases = [
        Case((_time_dependent_field(0, 2), _x((5, 2), 2), 0.3, 0.1),
             "z of shape (5, 2), t = 0.3, dt = 0.1"),
        Case((_time_dependent_field(3, 3), _x((4, 3), 4), 0.0, 0.25),
             "z of shape (4, 3), t = 0, dt = 0.25"),
        Case((_time_dependent_field(5, 2), _x((6, 2), 6), 1.0, -0.2),
             "z of shape (6, 2), t = 1, dt = -0.2 (integrating backwards in time)"),
        Case((_time_dependent_field(7, 2), _x((2, 3, 2), 8), 0.5, 0.05),
             "z of shape (2, 3, 2) (a batch of point sets), t = 0.5, dt = 0.05"),
    ]
    mistakes = [
        Mistake("dt is missing: the step moves z by the velocity f(z, t) times the step "
                "size dt", lambda f, z, t, dt: z + f(z, t)),
        Mistake("f is evaluated at the end of the step (t + dt); explicit Euler uses the "
                "slope at the start, time t", lambda f, z, t, dt: z + dt * f(z, t + dt)),
        Mistake("f is evaluated at time 0 (or t was not passed on); f depends on t",
                lambda f, z, t, dt: z + dt * f(z, 0.0 * t)),
        Mistake("check the sign: a step of size dt moves along +f", lambda f, z, t, dt: z - dt * f(z, t)),
        Mistake("you returned the increment dt f(z, t) only; the new state starts from z",
                lambda f, z, t, dt: dt * f(z, t)),
        Mistake("dt is squared (or applied twice)", lambda f, z, t, dt: z + dt ** 2 * f(z, t)),
        Mistake("that is Heun's method (the average of the slopes at the start and at a "
                "predicted end point); this exercise is one explicit Euler step, with the single "
                "slope f(z, t)", lambda f, z, t, dt: z + dt / 2 * (f(z, t) + f(z + dt * f(z, t), t + dt))),
        Mistake("that is the midpoint method (the slope at z + dt/2 f(z, t), t + dt/2); this "
                "exercise is one explicit Euler step, with the single slope f(z, t)",
                lambda f, z, t, dt: z + dt * f(z + dt / 2 * f(z, t), t + dt / 2)),
        Mistake("the slope is taken at a predicted end point (z + dt f(z, t), t + dt): explicit "
                "Euler uses the slope at the start, f(z, t)",
                lambda f, z, t, dt: z + dt * f(z + dt * f(z, t), t + dt)),
        Mistake("f is called with the step size dt as its time argument: pass the current "
                "time t", lambda f, z, t, dt: z + dt * f(z, dt)),
        Mistake("f is evaluated at z + dt (dt added to the state): the slope is f(z, t), at the "
                "current state", lambda f, z, t, dt: z + dt * f(z + dt, t)),
    ]
    spec = Spec("check_euler_step", lambda f, z, t, dt: euler_step(f, z, t, dt), cases, mistakes)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Affine coupling: log |det df/dz| = sum_j (1 - m_j) s_j(m * z)
def _log_scale_net(seed: int, d: int) -> Callable:
    """A fixed small 'network' s(.) whose output depends on every input entry."""
    W1, W2 = _x((8, d), seed), _x((d, 8), seed + 1)

    def s(h: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(h @ W1.to(h.dtype).T) @ W2.to(h.dtype).T + 0.1
    return s


def check_coupling_log_det(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(z, mask, log_scale_fn) -> log_det`` (B,) against
    sum_j (1 - m_j) s_j(m * z), for z (B, d), mask (d,) of 0/1, s: (B, d) -> (B, d). Chapter 2."""
    from ...flows import coupling_log_det

    m2 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    m4 = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    cases = [
        Case((_x((5, 2), 10), m2, _log_scale_net(11, 2)), "z of shape (5, 2), mask [1, 0]"),
        Case((_x((3, 2), 12), 1 - m2, _log_scale_net(13, 2)), "z of shape (3, 2), mask [0, 1]"),
        Case((_x((4, 4), 14), m4, _log_scale_net(15, 4)), "z of shape (4, 4), mask [0, 1, 1, 0]"),
    ]
    s_ = lambda z, m, s: s(m * z)  # noqa: E731
    mistakes = [
        Mistake("the sign is flipped: the forward map multiplies by exp(s), so its "
                "log|det| is +sum s (the minus belongs to the inverse)",
                lambda z, m, s: -((1 - m) * s_(z, m, s)).sum(-1)),
        Mistake("you summed exp(s), the scale itself; the log-det is the sum of the "
                "log-scales s", lambda z, m, s: ((1 - m) * s_(z, m, s).exp()).sum(-1)),
        Mistake("you took the log of s; s is already a log-scale",
                lambda z, m, s: ((1 - m) * s_(z, m, s).abs().log()).sum(-1)),
        Mistake("the mask is not applied to the sum: the kept coordinates (m = 1) pass "
                "unchanged and contribute log 1 = 0",
                lambda z, m, s: s_(z, m, s).sum(-1)),
        Mistake("the mask is the wrong way round: only the transformed coordinates "
                "(m = 0) contribute", lambda z, m, s: (m * s_(z, m, s)).sum(-1)),
        Mistake("s must be computed from the kept part m * z only (that is what makes "
                "the Jacobian triangular); you fed it the whole z",
                lambda z, m, s: ((1 - m) * s(z)).sum(-1)),
        Mistake("s must see the kept part m * z, not the transformed part (1 - m) * z",
                lambda z, m, s: ((1 - m) * s((1 - m) * z)).sum(-1)),
        Mistake("the log-dets of the coordinates are summed, not averaged",
                lambda z, m, s: ((1 - m) * s_(z, m, s)).mean(-1)),
    ]
    spec = Spec("check_coupling_log_det", lambda z, m, s: coupling_log_det(z, m, s), cases,
                mistakes, broadcast_hint="mask has shape (d,) and broadcasts against z (B, d); "
                "sum over the last dimension to get one log-det per example (B,)")
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Hutchinson: Tr(J) ~ (1/K) sum_k eps_k^T J eps_k
def _vjp(seed: int, b: int, d: int) -> Callable:
    """v -> v^T J_b for a fixed non-symmetric Jacobian J_b per batch element (B, d, d)."""
    J = _x((b, d, d), seed)

    def vjp(v: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bi,bij->bj", v, J.to(v.dtype))
    return vjp


def check_hutchinson(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(vjp, eps) -> estimate`` (B,) against (1/K) sum_k eps_k . vjp(eps_k), with
    ``vjp(v) = v^T J`` (B, d) -> (B, d) and probes ``eps`` (K, B, d). Chapter 2."""
    from ...cnf import draw_probes, hutchinson_trace

    def probes(shape, kind, seed):
        return draw_probes(shape, kind, torch.Generator().manual_seed(seed), torch.float64)

    cases = [
        Case((_vjp(20, 4, 2), probes((3, 4, 2), "gaussian", 21)), "B = 4, d = 2, K = 3 Gaussian probes"),
        Case((_vjp(22, 5, 3), probes((2, 5, 3), "rademacher", 23)),
             "B = 5, d = 3, K = 2 Rademacher probes"),
        Case((_vjp(24, 3, 2), probes((1, 3, 2), "gaussian", 25)), "B = 3, d = 2, K = 1 probe"),
    ]
    mistakes = [
        Mistake("the probe must be used twice: eps^T J eps is the dot product of the "
                "vector-Jacobian product eps^T J with eps again",
                lambda vjp, e: torch.stack([vjp(k).sum(-1) for k in e]).mean(0)),
        Mistake("you summed over the probes; the estimate is their mean",
                lambda vjp, e: torch.stack([(vjp(k) * k).sum(-1) for k in e]).sum(0)),
        Mistake("|eps^T J|^2 estimates Tr(J J^T), not Tr(J): dot the product with eps, not "
                "with itself", lambda vjp, e: torch.stack([(vjp(k) ** 2).sum(-1) for k in e]).mean(0)),
        Mistake("you used only the first probe; average over all K",
                lambda vjp, e: (vjp(e[0]) * e[0]).sum(-1)),
        Mistake("eps^T eps does not involve J: the vector-Jacobian product is missing",
                lambda vjp, e: (e * e).sum(-1).mean(0)),
        Mistake("eps_k^T J eps_k is a dot product: SUM over the d coordinates (only the K "
                "probes are averaged)",
                lambda vjp, e: torch.stack([(vjp(k) * k).mean(-1) for k in e]).mean(0)),
        Mistake("each probe's product eps_k^T J is dotted with the same probe eps_k, not with "
                "another one", lambda vjp, e: torch.stack([(vjp(k) * e[-1]).sum(-1) for k in e]).mean(0)),
        Mistake("each probe's product eps_k^T J is dotted with the same probe eps_k, not with "
                "another one", lambda vjp, e: torch.stack([(vjp(k) * e[0]).sum(-1) for k in e]).mean(0)),
    ]
    spec = Spec("check_hutchinson", lambda vjp, e: hutchinson_trace(vjp, e), cases, mistakes,
                broadcast_hint="eps has shape (K, B, d): loop over (or vectorise across) the "
                "K probes, each of shape (B, d), and return one number per batch element (B,)")
    return run_check(fn, spec, verbose)
