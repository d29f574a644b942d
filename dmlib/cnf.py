"""Continuous normalizing flows (chapter 2).

A CNF moves noise z_0 ~ N(0, I) to data z_1 along the ODE dz/dt = f(z_t, t), 0 <= t <= 1,
with f a free-form neural network. The density along the path obeys the *instantaneous
change of variables* (note the minus sign, which the lecture slide drops):

    d log p(z_t) / dt = -Tr(df/dz_t)   =>   log p(z_1) = log p(z_0) - int_0^1 Tr(df/dz_t) dt.

Directions (z_0 noise, z_1 data):
* sampling integrates 0 -> 1 from z_0 ~ N(0, I);
* the likelihood of a data point x = z_1 integrates the *augmented* state (z_t, l_t) from
  t = 1 back to t = 0 with dz/dt = f, dl/dt = -Tr(df/dz), l_1 = 0; then l_0 =
  int_0^1 Tr(df/dz_t) dt and log p(x) = log N(z_0; 0, I) - l_0.

The trace is exact here (d backward passes: cheap in 2-D), or Hutchinson's unbiased
estimate Tr(J) = E_eps[eps^T J eps] for probes with E[eps eps^T] = I (Gaussian or
Rademacher), which costs one vector-Jacobian product whatever d is.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .flows import standard_normal_log_prob
from .ode import METHODS, odeint

TRACES = ("exact", "hutchinson")
PROBES = ("gaussian", "rademacher")


def _time_column(z: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
    if t.numel() != 1:
        raise ValueError(f"t must be a scalar time, got shape {tuple(t.shape)}")
    return t.reshape(1, 1).expand(z.shape[0], 1)


class VectorField(nn.Module):
    """An MLP vector field f(z, t): (B, d) x scalar t -> (B, d). Chapter 2.

    Every layer sees t (concatenated to its input), so one network describes the whole
    flow: h_1 = tanh(W_1 [z, t]), h_{k+1} = tanh(W_{k+1} [h_k, t]), f = W_out [h_K, t].
    tanh keeps f smooth, so fixed-step solvers (and the trace) are accurate.
    """

    def __init__(self, dim: int = 2, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        for name, v in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.dim = dim
        sizes = [dim] + [hidden] * depth
        self.hidden = nn.ModuleList(nn.Linear(a + 1, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(hidden + 1, dim)

    def forward(self, z: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.dim:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must have shape (B, {self.dim}), got {got}")
        tt = _time_column(z, t)
        h = z
        for layer in self.hidden:
            h = torch.tanh(layer(torch.cat([h, tt], dim=1)))
        return self.out(torch.cat([h, tt], dim=1))


def exact_trace(f: Callable, z: torch.Tensor, t: float, create_graph: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """f(z, t) and the exact Tr(df/dz) = sum_i d f_i / d z_i by autograd. Chapter 2.

    ``z``: (B, d); returns ((B, d), (B,)). Costs d backward passes (fine in 2-D).
    ``create_graph=True`` keeps the graph so the trace can be differentiated (training).
    """
    with torch.enable_grad():
        z = z if z.requires_grad else z.detach().requires_grad_(True)
        out = f(z, t)
        tr = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for i in range(z.shape[1]):
            g = torch.autograd.grad(out[:, i].sum(), z, create_graph=create_graph,
                                    retain_graph=True)[0]
            tr = tr + g[:, i]  # row i of the Jacobian, diagonal entry i
    return out, tr


def hutchinson_trace(vjp: Callable[[torch.Tensor], torch.Tensor], eps: torch.Tensor
                     ) -> torch.Tensor:
    """Hutchinson's estimate of Tr(J) from K probes: (1/K) sum_k eps_k^T J eps_k. Chapter 2.

    ``vjp(v)``: v (B, d) -> v^T J (B, d) (one vector-Jacobian product per batch element);
    ``eps``: (K, B, d) probes with E[eps eps^T] = I. Returns (B,). Deterministic given eps;
    unbiased over random eps: E[eps^T J eps] = Tr(J E[eps eps^T]) = Tr(J).
    """
    if not isinstance(eps, torch.Tensor) or eps.dim() != 3:
        raise ValueError("eps must be a tensor of probes of shape (K, B, d)")
    # the probe is used twice: once inside the product, once in the dot product
    return torch.stack([(vjp(e) * e).sum(-1) for e in eps]).mean(0)


def draw_probes(shape: tuple[int, ...], kind: str = "rademacher",
                generator: torch.Generator | None = None,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Probe vectors with E[eps eps^T] = I: "gaussian" N(0, I) or "rademacher" (+-1). Chapter 2."""
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, dtype=dtype)
    if kind == "rademacher":
        return torch.randint(0, 2, shape, generator=generator).to(dtype) * 2 - 1
    raise ValueError(f"kind must be one of {PROBES}, got {kind!r}")


def hutchinson_divergence(f: Callable, z: torch.Tensor, t: float, eps: torch.Tensor,
                          create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """f(z, t) and Hutchinson's estimate of Tr(df/dz) with the probes ``eps`` (K, B, d).

    The vector-Jacobian products come from autograd: v^T J = grad_z (f(z, t) . v).
    Returns ((B, d), (B,)). Chapter 2.
    """
    with torch.enable_grad():
        z = z if z.requires_grad else z.detach().requires_grad_(True)
        out = f(z, t)

        def vjp(v: torch.Tensor) -> torch.Tensor:
            return torch.autograd.grad(out, z, v, create_graph=create_graph, retain_graph=True)[0]

        return out, hutchinson_trace(vjp, eps)


class CNF(nn.Module):
    """A continuous normalizing flow with vector field ``field`` (a ``VectorField``). Chapter 2.

    ``log_prob`` integrates data -> noise (t: 1 -> 0), ``sample`` noise -> data (0 -> 1),
    both with a fixed-step solver (``dmlib.ode``): ``n_steps`` steps of ``method``.
    """

    def __init__(self, field: nn.Module, n_steps: int = 8, method: str = "rk4") -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.field = field
        self.n_steps = n_steps
        self.method = method

    def log_prob(self, x: torch.Tensor, n_steps: int | None = None, method: str | None = None,
                 trace: str = "exact", probe: str = "rademacher", n_probes: int = 1,
                 generator: torch.Generator | None = None, t: float = 1.0) -> torch.Tensor:
        """log p(x) = log N(z_0; 0, I) - int_0^1 Tr(df/dz_t) dt, integrating (z, l) from 1 to 0.

        ``x``: (B, d) -> (B,). With ``t`` < 1: the density p_t of z_t at time t (integrating
        from t to 0; t = 0 gives N(0, I)). ``trace``: "exact" or "hutchinson" (``n_probes`` probes of kind
        ``probe``, drawn once and held fixed along the path, as an ODE needs).
        Differentiable when grad is enabled (training), detached otherwise.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, d), got {type(x).__name__}")
        if x.dim() != 2:
            raise ValueError(f"x must have shape (B, d), got {tuple(x.shape)}")
        if trace not in TRACES:
            raise ValueError(f"trace must be one of {TRACES}, got {trace!r}")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise ValueError(f"t must be a number in [0, 1] (0 = noise, 1 = data), got {t!r}")
        graph = torch.is_grad_enabled()
        d = x.shape[1]
        if t == 0:
            return standard_normal_log_prob(x)
        if trace == "hutchinson":
            eps = draw_probes((n_probes, x.shape[0], d), probe, generator, x.dtype).to(x.device)

        def augmented(state: torch.Tensor, t: float) -> torch.Tensor:
            z = state[:, :d]
            if trace == "exact":
                dz, tr = exact_trace(self.field, z, t, create_graph=graph)
            else:
                dz, tr = hutchinson_divergence(self.field, z, t, eps, create_graph=graph)
            out = torch.cat([dz, -tr[:, None]], dim=1)  # d/dt (z, l) = (f, -Tr df/dz)
            return out if graph else out.detach()

        state = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)  # l_1 = 0
        state = odeint(augmented, state, float(t), 0.0, n_steps or self.n_steps,
                       method or self.method)
        z0, l0 = state[:, :d], state[:, d]  # l_0 = int_0^1 Tr(df/dz_t) dt
        return standard_normal_log_prob(z0) - l0

    def sample(self, n: int, generator: torch.Generator | None = None, n_steps: int | None = None,
               method: str | None = None, return_path: bool = False) -> torch.Tensor:
        """z_1 = z_0 + int_0^1 f(z_t, t) dt with z_0 ~ N(0, I); returns (n, d), or the path
        (n_steps + 1, n, d) with ``return_path=True``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int (number of samples), got {n!r}")
        p = next(self.parameters())
        z0 = torch.randn(n, self.field.dim, generator=generator).to(device=p.device, dtype=p.dtype)
        with torch.no_grad():
            return odeint(self.field, z0, 0.0, 1.0, n_steps or self.n_steps,
                          method or self.method, return_path=return_path)


def cnf_nll_loss(model: CNF, batch: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Maximum likelihood with the exact trace: mean of -log p(x); for ``dmlib.training.train``."""
    return -model.log_prob(batch).mean()


__all__ = ["VectorField", "exact_trace", "hutchinson_trace", "hutchinson_divergence",
           "draw_probes", "CNF", "cnf_nll_loss", "TRACES", "PROBES"]
