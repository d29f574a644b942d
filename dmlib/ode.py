"""Fixed-step ODE solvers for dz/dt = f(z, t) (chapter 2).

The lecture's CNF slide writes the Euler step

    z_{t + dt} ~ z_t + f(z_t, t) dt,        z_1 = z_0 + int_0^1 f(z_t, t) dt.

Euler's error after integrating over a fixed interval is O(dt) (first order); Heun's method
(explicit trapezoid, chapter 10) evaluates f twice per step and is O(dt^2),

    z_E = z + dt f(z, t),   z_{t+dt} = z + dt/2 (f(z, t) + f(z_E, t + dt));

the classical Runge-Kutta method RK4 evaluates f four times per step and is O(dt^4):

    k1 = f(z, t)
    k2 = f(z + dt/2 k1, t + dt/2)
    k3 = f(z + dt/2 k2, t + dt/2)
    k4 = f(z + dt k3,   t + dt)
    z_{t+dt} = z + dt/6 (k1 + 2 k2 + 2 k3 + k4)

``f(z, t)`` takes the state ``z`` (a tensor of any shape, e.g. (B, d)) and the time ``t``
(a Python float) and returns a tensor shaped like ``z``. ``dt`` may be negative: the
solvers then integrate backwards in time (a CNF's likelihood runs from t = 1 to t = 0).
Everything stays differentiable, so a loss on the result can be backpropagated through
the solver ("discretise, then optimise").
"""

from __future__ import annotations

import math
from typing import Callable

import torch

VectorField = Callable[[torch.Tensor, float], torch.Tensor]
METHODS = ("euler", "heun", "rk4")


def _check_f_z(f: VectorField, z: torch.Tensor) -> None:
    if not callable(f):
        raise TypeError(f"f must be callable as f(z, t) -> dz/dt, got {type(f).__name__}")
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"z must be a torch.Tensor (the ODE state), got {type(z).__name__}")


def _eval(f: VectorField, z: torch.Tensor, t: float) -> torch.Tensor:
    out = f(z, t)
    if not isinstance(out, torch.Tensor) or out.shape != z.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"f(z, t) must return a tensor shaped like z {tuple(z.shape)}, got {got}")
    return out


def euler_step(f: VectorField, z: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """One explicit Euler step: z_{t+dt} = z_t + dt * f(z_t, t). Shape of ``z``. Chapter 2."""
    _check_f_z(f, z)
    return z + dt * _eval(f, z, t)


def heun_step(f: VectorField, z: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """One Heun step (second order): z_E = z + dt f(z, t), then
    z_{t+dt} = z + dt/2 (f(z, t) + f(z_E, t + dt)). Shape of ``z``. Chapter 10."""
    _check_f_z(f, z)
    k1 = _eval(f, z, t)
    k2 = _eval(f, z + dt * k1, t + dt)
    return z + 0.5 * dt * (k1 + k2)


def rk4_step(f: VectorField, z: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """One classical Runge-Kutta step (4th order), see the module docstring. Chapter 2."""
    _check_f_z(f, z)
    k1 = _eval(f, z, t)
    k2 = _eval(f, z + 0.5 * dt * k1, t + 0.5 * dt)
    k3 = _eval(f, z + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = _eval(f, z + dt * k3, t + dt)
    return z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


STEPS = {"euler": euler_step, "heun": heun_step, "rk4": rk4_step}


def odeint(f: VectorField, z0: torch.Tensor, t0: float = 0.0, t1: float = 1.0,
           n_steps: int = 10, method: str = "rk4", return_path: bool = False
           ) -> torch.Tensor:
    """Integrate dz/dt = f(z, t) from ``z(t0) = z0`` to ``t1`` with ``n_steps`` equal steps.

    dt = (t1 - t0) / n_steps (negative when t1 < t0: backwards in time); step k starts at
    t_k = t0 + k dt. ``method``: "euler" (1 evaluation of f per step, error O(dt)),
    "heun" (2 evaluations, O(dt^2)) or "rk4" (4 evaluations, error O(dt^4)).

    Returns z(t1), shaped like ``z0``; with ``return_path=True`` the whole path, shape
    (n_steps + 1, *z0.shape), path[k] = z(t_k). Chapter 2.
    """
    _check_f_z(f, z0)
    if method not in STEPS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int (number of solver steps), got {n_steps!r}")
    for name, v in (("t0", t0), ("t1", t1)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TypeError(f"{name} must be a finite Python number, got {v!r}")
    step = STEPS[method]
    dt = (t1 - t0) / n_steps
    z, path = z0, [z0]
    for k in range(n_steps):
        z = step(f, z, t0 + k * dt, dt)
        if return_path:
            path.append(z)
    return torch.stack(path) if return_path else z


__all__ = ["euler_step", "heun_step", "rk4_step", "odeint", "METHODS", "STEPS", "VectorField"]
