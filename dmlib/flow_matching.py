"""Flow matching and rectified flow: regress the velocity of a straight path (chapter 10).

**Convention.** Data at t = 0, noise at t = 1 (the diffusion direction of chapters 3-8; the
path of rectified flow, Liu et al. 2023):

    x_t = (1 - t) x_0 + t eps,    t in [0, 1],   eps ~ N(0, I)
    d x_t / d t = eps - x_0       (the conditional velocity, constant along each line)

Chapter 2 ran its CNF the other way (z_0 noise, z_1 data); its time is s = 1 - t and its
velocity f = -(eps - x_0) = x_0 - eps. Lipman et al. (2023) also put noise at t = 0.

**The loss** (conditional flow matching): E_{t, x_0, eps} || v_theta(x_t, t) - (eps - x_0) ||^2.
Its minimiser is the marginal velocity u_t(x) = E[eps - x_0 | x_t = x], which carries
N(0, I) at t = 1 to the data at t = 0 (Lipman et al., Theorem 1), and the conditional and
marginal losses have the same gradient in theta (their Theorem 2).

**Time input of the course's networks.** ``MLPDenoiser`` and the U-Net take integer
timesteps. A flow-matching model here has T levels: continuous t in [0, 1] is fed as the
integer k = round(t T), and training draws k ~ Uniform{0, ..., T} and t = k / T (so t = 0,
the data end, is trained too). ``T_FM = 1000`` by default.

**The same model on another clock.** The VP path x = a x_0 + s eps (a = sqrt(alpha_bar),
s = sqrt(1 - alpha_bar)) divided by a + s is the straight path at t = s / (a + s):

    x_VP = (a + s) x_FM,     t = s / (a + s)

so an eps-model is a velocity model, v = (eps - x_FM) / (1 - t) (``EpsAsVelocity``), and a
velocity model is an eps-model, eps = x_FM + (1 - t) v (``VelocityAsEps``). With
``straight_schedule`` (alpha_bar_k = (1 - k/T)^2 / ((1 - k/T)^2 + (k/T)^2)) a flow-matching
model runs in the course's one sampler loop (``dmlib.sampling.sample``): DDIM on it is
Euler's method in t (both keep (x0_hat, eps_hat) and move them to the next time).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ._validate import call_model
from .data.mixture import GaussianMixture
from .ode import odeint
from .schedules import Schedule
from .targets import check_prediction_type, convert

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Default number of time levels of a flow-matching network: t = k / T_FM, k = 0..T_FM.
T_FM = 1000


def _bt(t: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """t as a tensor broadcasting against x: a float, a 0-d tensor or a (B,) tensor."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 1:
        if t.shape[0] != x.shape[0]:
            raise ValueError(f"t has {t.shape[0]} entries but x has batch size {x.shape[0]}")
        t = t.reshape(-1, *([1] * (x.dim() - 1)))
    elif t.dim() != 0:
        raise ValueError(f"t must be a float, a 0-d tensor or a (B,) tensor, got shape {tuple(t.shape)}")
    return t


def straight_path(x0: torch.Tensor, eps: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps (data at t = 0, noise at t = 1). Chapter 10.

    Shapes: ``x0``, ``eps`` (B, ...); ``t`` a float or (B,); returns (B, ...)."""
    if x0.shape != eps.shape:
        raise ValueError(f"x0 and eps must have the same shape, got {tuple(x0.shape)} and {tuple(eps.shape)}")
    t = _bt(t, x0)
    return (1 - t) * x0 + t * eps


def conditional_velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u(x_t | x_0, eps) = d x_t / dt = eps - x_0, the same at every t. Shapes (B, ...). Chapter 10."""
    if x0.shape != eps.shape:
        raise ValueError(f"x0 and eps must have the same shape, got {tuple(x0.shape)} and {tuple(eps.shape)}")
    return eps - x0


def fm_time(k: torch.Tensor | int, T: int = T_FM) -> torch.Tensor | float:
    """t = k / T: the continuous time of the network's integer input k in 0..T. Chapter 10."""
    return k / T if isinstance(k, int) else k.to(torch.get_default_dtype()) / T


def fm_loss(model: Model, batch: torch.Tensor | tuple[torch.Tensor, torch.Tensor], T: int = T_FM,
            generator: torch.Generator | None = None, k: torch.Tensor | None = None) -> torch.Tensor:
    """The conditional flow-matching loss, one Monte Carlo draw per example (chapter 10):

        k ~ Uniform{0, ..., T},  t = k / T,  x_t = (1 - t) x_0 + t eps,
        loss = mean over batch and dims of (model(x_t, k) - (eps - x_0))^2

    ``batch``: x_0 (B, ...) with eps ~ N(0, I) drawn here (with ``generator``, on the CPU),
    or a pair (x_0, eps) of coupled tensors (reflow). ``k`` (B,) long fixes the times.
    Called as ``loss_fn(model, batch, generator)`` by ``dmlib.training.train`` through a
    lambda. Returns a scalar.
    """
    if isinstance(batch, (tuple, list)):
        x0, eps = batch
    else:
        x0 = batch
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    B = x0.shape[0]
    if k is None:
        k = torch.randint(0, T + 1, (B,), generator=generator)
    k = k.to(x0.device)
    xt = straight_path(x0, eps, k.to(x0.dtype) / T)
    err = call_model(model, xt, k) - conditional_velocity(x0, eps)
    return err.pow(2).mean()


def gmm_velocity(gmm: GaussianMixture, x: torch.Tensor, t: float) -> torch.Tensor:
    """The marginal velocity u_t(x) = E[eps - x_0 | x_t = x] for mixture data (chapter 10).

    Along the straight path component k stays Gaussian, x_t | k ~ N((1 - t) mu_k, V_k) with
    V_k = (1 - t)^2 var_k + t^2, and per component (Gaussian conditioning)

        E[eps | x, k] = t (x - (1 - t) mu_k) / V_k,
        E[x_0 | x, k] = mu_k + (1 - t) var_k (x - (1 - t) mu_k) / V_k,

    averaged with the responsibilities r_k(x) of the noised mixture. t in [0, 1].
    Shapes: ``x`` (B, d) -> (B, d), in x's dtype.
    """
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1] (0: data, 1: noise), got {t}")
    xd = x.to(torch.float64)
    var = gmm.var.expand_as(gmm.means)
    m = (1 - t) * gmm.means
    V = (1 - t) ** 2 * var + t ** 2
    r = GaussianMixture(gmm.weights, m, V).responsibilities(xd)  # (B, K)
    diff = xd[:, None, :] - m[None]  # (B, K, d)
    e_eps = t * diff / V
    e_x0 = gmm.means + (1 - t) * var * diff / V
    return (r[..., None] * (e_eps - e_x0)).sum(1).to(x.dtype)


def velocity_from_eps(eps: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """v = (eps - x) / (1 - t): with x = (1 - t) x_0 + t eps, x_0 = (x - t eps) / (1 - t) and
    v = eps - x_0. t < 1. Shapes like ``x``. Chapter 10."""
    return (eps - x) / (1 - _bt(t, x))


def eps_from_velocity(v: torch.Tensor, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """eps = x + (1 - t) v, the inverse of ``velocity_from_eps``. Shapes like ``x``. Chapter 10."""
    return x + (1 - _bt(t, x)) * v


def vp_times(schedule: Schedule) -> torch.Tensor:
    """t_k = s_k / (a_k + s_k) with a = sqrt(alpha_bar_k), s = sqrt(1 - alpha_bar_k): the time on
    the straight path of the VP step k (x_VP = (a + s) x_FM). (T + 1,) float64, t_0 = 0. Chapter 10."""
    a, s = schedule.sqrt_alpha_bar, schedule.sqrt_one_minus_alpha_bar
    return s / (a + s)


def straight_schedule(T: int = T_FM) -> Schedule:
    """The straight path as a VP schedule: alpha_bar_k = (1 - k/T)^2 / ((1 - k/T)^2 + (k/T)^2),
    so that ``vp_times`` gives t_k = k / T, except at k = T, where beta_T is capped at 0.999
    (alpha_bar_T = 0 would need beta_T = 1; as for the cosine schedule), t_T = 1 - O(1e-5)
    for T = 1000. Chapter 10."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an int >= 2, got {T!r}")
    t = torch.arange(T + 1, dtype=torch.float64) / T
    ab = (1 - t) ** 2 / ((1 - t) ** 2 + t ** 2)
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=0.999)
    return Schedule(betas, name="straight")


class VelocityAsEps(nn.Module):
    """A flow-matching velocity model seen as an eps-model on a VP schedule (chapter 10):

        (x_VP, k) -> t = t_k (``vp_times``), x = x_VP / (a_k + s_k), eps = x + (1 - t) v(x, round(t T_v))

    ``T_v``: the velocity model's time levels (default ``schedule.T``). With
    ``straight_schedule(T)`` and T_v = T the model is called at its own k. Use it with
    ``dmlib.sampling.sample(..., prediction_type="eps")`` and ``dmlib.likelihood``.
    """

    def __init__(self, velocity_model: Model, schedule: Schedule, T_v: int | None = None) -> None:
        super().__init__()
        self.velocity_model, self.schedule = velocity_model, schedule
        self.T_v = schedule.T if T_v is None else T_v

    def forward(self, x_vp: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        sch = self.schedule
        a, s = (sch.extract(v, k, x_vp) for v in (sch.sqrt_alpha_bar, sch.sqrt_one_minus_alpha_bar))
        t = s / (a + s)
        x = x_vp / (a + s)
        kv = torch.round(vp_times(sch)[k.cpu()] * self.T_v).long().to(x_vp.device)
        return x + (1 - t) * call_model(self.velocity_model, x, kv)


class EpsAsVelocity(nn.Module):
    """Any trained VP model seen as a velocity field on the straight path (chapter 10):

        (x_FM, k) -> v = (eps_theta((a_k + s_k) x_FM, k) - x_FM) / (1 - t_k),  t_k = ``vp_times``[k]

    k is the model's own integer time (1..T); its time on the straight path is t_k. A model
    that predicts x0, mu or v (``prediction_type``) is converted to eps first
    (``dmlib.targets.convert``).
    """

    def __init__(self, eps_model: Model, schedule: Schedule, prediction_type: str = "eps") -> None:
        super().__init__()
        self.eps_model, self.schedule = eps_model, schedule
        self.prediction_type = check_prediction_type(prediction_type)

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        sch = self.schedule
        a, s = (sch.extract(v, k, x) for v in (sch.sqrt_alpha_bar, sch.sqrt_one_minus_alpha_bar))
        x_vp = (a + s) * x
        eps = convert(sch, call_model(self.eps_model, x_vp, k), x_vp, k, self.prediction_type, "eps")
        return velocity_from_eps(eps, x, (s / (a + s)).reshape(-1))


def velocity_field(model: Model, T: int = T_FM) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """f(x, t) = model(x, round(t T)): a network with integer times as an ODE right-hand side
    for ``dmlib.ode`` (t a float in [0, 1]). Chapter 10."""
    def f(x: torch.Tensor, t: float) -> torch.Tensor:
        k = torch.full((x.shape[0],), int(round(t * T)), dtype=torch.long, device=x.device)
        return call_model(model, x, k)
    return f


@torch.no_grad()
def fm_sample(model: Model, x1: torch.Tensor, steps: int, T: int = T_FM, method: str = "euler",
              return_path: bool = False) -> torch.Tensor:
    """Integrate dx/dt = v_theta(x, t) from noise x_1 at t = 1 down to t = 0 with ``steps``
    equal steps of ``dmlib.ode`` (``method`` "euler": 1 evaluation a step, "heun": 2, "rk4": 4).
    The network sees k = round(t T): pick ``steps`` dividing T for exact grid times.
    Shapes: ``x1`` (B, ...) -> x_0 (B, ...), or the path (steps + 1, B, ...). Chapter 10."""
    return odeint(velocity_field(model, T), x1, 1.0, 0.0, steps, method, return_path)


def fm_nfe(method: str, steps: int) -> int:
    """Network evaluations of ``fm_sample``: steps x (1, 2, 4) for euler, heun, rk4. Chapter 10."""
    return steps * {"euler": 1, "heun": 2, "rk4": 4}[method]


@torch.no_grad()
def reflow_pairs(model: Model, eps: torch.Tensor, steps: int = 100, T: int = T_FM,
                 method: str = "heun") -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified flow's coupling (Liu et al. 2023): (x_0, eps) with x_0 the first flow's ODE
    image of the noise ``eps``. Training ``fm_loss`` on these pairs (instead of independent
    x_0 and eps) straightens the paths. Shapes: ``eps`` (B, ...) -> two (B, ...). Chapter 10."""
    return fm_sample(model, eps, steps, T, method), eps


def straightness(path: torch.Tensor) -> float:
    """S = E int_0^1 || (x_1 - x_0) - dx/dt ||^2 dt (Liu et al. 2023) from a path on a uniform
    grid from t = 1 (path[0], noise) to t = 0 (path[-1]): dx/dt over step j is
    (path[j] - path[j+1]) S_steps. 0 exactly when every path is a straight line run at constant
    speed. Shapes: ``path`` (S + 1, B, ...); returns a float (summed over dims, averaged over
    the batch and the steps). Chapter 10."""
    if not isinstance(path, torch.Tensor) or path.dim() < 3 or path.shape[0] < 2:
        raise ValueError("path must be a tensor (S + 1, B, ...) with S >= 1 steps")
    n = path.shape[0] - 1
    chord = path[0] - path[-1]
    v = (path[:-1] - path[1:]) * n
    return float((v - chord).pow(2).flatten(2).sum(-1).mean())


__all__ = ["T_FM", "straight_path", "conditional_velocity", "fm_time", "fm_loss", "gmm_velocity",
           "velocity_from_eps", "eps_from_velocity", "vp_times", "straight_schedule",
           "VelocityAsEps", "EpsAsVelocity", "velocity_field", "fm_sample", "fm_nfe",
           "reflow_pairs", "straightness"]
