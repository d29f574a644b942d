"""The optimal denoiser for data whose distribution is known (chapters 4 and 6).

For data x_0 ~ p_data and x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, the
network that minimises the squared error ||x_0 - x0_theta(x_t, t)||^2 (or the eps / mu / v
version, chapter 5) is the posterior mean

    x0*(x_t, t) = E[x_0 | x_t],    eps*(x_t, t) = E[eps | x_t]
                                                = (x_t - sqrt(alpha_bar_t) E[x_0 | x_t]) / sqrt(1 - alpha_bar_t).

It is known in closed form in two cases (a = sqrt(alpha_bar_t), s^2 = 1 - alpha_bar_t):

* **Gaussian data** N(m, diag(v)) (``GaussianData``): x_0 and x_t are jointly Gaussian, so
  (product of Gaussians, chapter 1)

      E[x_0 | x_t]   = m + a v / (a^2 v + s^2) * (x_t - a m)
      Var[x_0 | x_t] = v s^2 / (a^2 v + s^2)            (does not depend on x_t)

* **A Gaussian mixture** sum_k w_k N(mu_k, diag(v_k)) (``dmlib.data.mixture.GaussianMixture``):
  the same formula inside each component, weighted by the responsibilities of the noised
  mixture q(x_t) = ``gmm.noised(alpha_bar_t)``:

      E[x_0 | x_t] = sum_k r_k(x_t) ( mu_k + a v_k / (a^2 v_k + s^2) * (x_t - a mu_k) ).

  It equals Tweedie's formula E[x_0 | x_t] = (x_t + s^2 grad log q(x_t)) / a (tested).

``OptimalDenoiser`` wraps either as a ``model(xt, t)`` with a ``prediction_type``, so every
dmlib function that takes a model (``vlb_terms``, ``diffusion_loss``, ``ddpm_sample``) can
use the best possible network. ``nll`` gives the exact -log p_data(x_0), and
``gaussian_vlb_terms`` the exact expected terms of the bound of the optimal model on
Gaussian data (chapter 4, C4.7: how tight is the ELBO?).

Everything is computed in float64; model outputs are cast back to x_t's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import torch

from .data.mixture import GaussianMixture
from ._validate import renamed_keywords
from .schedules import Schedule, check_variance_type, elbo_variance
from .targets import check_prediction_type, convert

_DT = torch.float64
_LOG_2PI = math.log(2 * math.pi)

__all__ = ["GaussianData", "KnownData", "posterior_x0", "optimal_x0", "optimal_eps",
           "OptimalDenoiser", "nll", "gaussian_vlb_terms"]


@dataclass(frozen=True, eq=False)
class GaussianData:
    """Data distributed as N(mean, diag(var)) in d dimensions (chapter 4).

    ``mean``: (d,); ``var``: (d,) or a scalar (isotropic), positive. Variances, not
    standard deviations. Stored as float64. The API mirrors ``GaussianMixture``
    (``dim``, ``sample``, ``log_prob``, ``entropy``, ``noised``).
    """

    mean: torch.Tensor
    var: torch.Tensor

    def __post_init__(self) -> None:
        m = torch.as_tensor(self.mean, dtype=_DT).clone()
        v = torch.as_tensor(self.var, dtype=_DT).clone()
        if m.dim() != 1 or m.numel() == 0:
            raise ValueError(f"mean must be a non-empty 1-D tensor of shape (d,), got shape "
                             f"{tuple(m.shape)}")
        if v.dim() == 0:
            v = v.expand(m.shape).clone()
        if v.shape != m.shape:
            raise ValueError(f"var must be a scalar or have the shape of mean {tuple(m.shape)}, "
                             f"got {tuple(v.shape)}")
        if not (torch.isfinite(m).all() and torch.isfinite(v).all()):
            raise ValueError("mean and var must be finite")
        if (v <= 0).any():
            raise ValueError(f"var must be positive (a variance, sigma^2), got min "
                             f"{float(v.min()):.6g}")
        object.__setattr__(self, "mean", m)
        object.__setattr__(self, "var", v)

    @property
    def dim(self) -> int:
        """d, the dimension of x."""
        return self.mean.numel()

    def sample(self, n: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """x = mean + sqrt(var) * eps, eps ~ N(0, I); shape (n, d) in ``dtype``."""
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive int (number of samples), got {n!r}")
        eps = torch.randn(n, self.dim, generator=generator, dtype=_DT)
        return (self.mean + self.var.sqrt() * eps).to(dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log N(x; mean, diag(var)) = -1/2 sum_i [ (x_i - m_i)^2 / v_i + log(2 pi v_i) ].

        ``x``: (n, d); returns (n,), float64.
        """
        x = _check_x(x, self.dim)
        return -0.5 * ((x - self.mean) ** 2 / self.var + torch.log(self.var) + _LOG_2PI).sum(-1)

    def entropy(self) -> float:
        """H = 1/2 sum_i log(2 pi e v_i) in nats (exact)."""
        return float(0.5 * (torch.log(2 * math.pi * math.e * self.var)).sum())

    def noised(self, alpha_bar: float | torch.Tensor) -> "GaussianData":
        """q(x_t) = N(sqrt(alpha_bar) mean, diag(alpha_bar var + 1 - alpha_bar)); alpha_bar in [0, 1]."""
        ab = _check_alpha_bar(alpha_bar)
        return GaussianData(ab.sqrt() * self.mean, ab * self.var + (1 - ab))

    def as_mixture(self) -> GaussianMixture:
        """The same distribution as a one-component ``GaussianMixture``."""
        return GaussianMixture(torch.ones(1, dtype=_DT), self.mean[None], self.var[None])


KnownData = Union[GaussianData, GaussianMixture]


def _check_alpha_bar(alpha_bar: float | torch.Tensor) -> torch.Tensor:
    ab = torch.as_tensor(alpha_bar, dtype=_DT)
    if ab.numel() != 1:
        raise ValueError(f"alpha_bar must be a scalar, got shape {tuple(ab.shape)}")
    ab = ab.reshape(())
    if not torch.isfinite(ab) or ab < 0 or ab > 1:
        raise ValueError(f"alpha_bar must lie in [0, 1], got {float(ab):.6g}")
    return ab


def _check_x(x: torch.Tensor, d: int, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, {d}), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != d:
        raise ValueError(f"wrong shape for {name}: expected (n, {d}) to match the data's "
                         f"dimension d = {d}, got {tuple(x.shape)}")
    return x.to(_DT)


def _check_data(data: KnownData) -> KnownData:
    if not isinstance(data, (GaussianData, GaussianMixture)):
        raise TypeError(f"data must be a GaussianData or a GaussianMixture (a distribution with "
                        f"a closed-form denoiser), got {type(data).__name__}")
    return data


def posterior_x0(data: GaussianData, alpha_bar: float | torch.Tensor,
                 xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[x_0 | x_t] and Var[x_0 | x_t] for Gaussian data N(m, diag(v)) at one noise level.

        E[x_0 | x_t]   = m + a v / (a^2 v + s^2) (x_t - a m),   a = sqrt(alpha_bar), s^2 = 1 - alpha_bar
        Var[x_0 | x_t] = v s^2 / (a^2 v + s^2)

    (precisions add: 1 / Var = 1 / v + a^2 / s^2.) ``alpha_bar`` a scalar in [0, 1];
    ``xt`` (n, d). Returns ``(mean, var)``, both (n, d), float64. Chapter 4.
    """
    if not isinstance(data, GaussianData):
        raise TypeError(f"data must be a GaussianData, got {type(data).__name__}")
    return _gauss_x0(data, _check_alpha_bar(alpha_bar), _check_x(xt, data.dim, "xt"))


def _gauss_x0(data: GaussianData, ab: torch.Tensor,
              xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[x_0 | x_t], Var[x_0 | x_t]; ab a scalar or one value per row (n, 1); xt (n, d)."""
    a, s2, m, v = ab.sqrt(), 1 - ab, data.mean, data.var
    denom = ab * v + s2
    mean = m + a * v / denom * (xt - a * m)
    return mean, (v * s2 / denom).expand_as(mean)


def _gmm_x0(gmm: GaussianMixture, alpha_bar: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    """sum_k r_k(x_t) E[x_0 | x_t, k] with one alpha_bar per row: alpha_bar (n, 1), xt (n, d).

    The responsibilities are those of ``gmm.noised(alpha_bar)`` (components
    N(a mu_k, diag(a^2 v_k + s^2))), evaluated for all rows at once.
    """
    ab = alpha_bar[:, :, None]                                          # (n, 1, 1)
    a, s2 = ab.sqrt(), 1 - ab
    var_t = ab * gmm.var[None] + s2                                     # (n, K, d)
    mean_t = a * gmm.means[None]                                        # (n, K, d)
    diff = xt[:, None, :] - mean_t
    log_n = -0.5 * (diff ** 2 / var_t + torch.log(var_t) + _LOG_2PI).sum(-1)   # (n, K)
    r = torch.softmax(torch.log(gmm.weights) + log_n, dim=-1)           # responsibilities
    per_k = gmm.means[None] + a * gmm.var[None] / var_t * diff          # E[x_0 | x_t, k]
    return torch.einsum("nk,nkd->nd", r, per_k)


def optimal_x0(data: KnownData, schedule: Schedule, xt: torch.Tensor,
               t: int | torch.Tensor) -> torch.Tensor:
    """The optimal x_0 prediction E[x_0 | x_t] at timestep t (chapter 4; reused in chapter 6).

    Gaussian data: ``posterior_x0``. Mixture: sum_k r_k(x_t) E[x_0 | x_t, k] with r_k the
    responsibilities of ``gmm.noised(alpha_bar_t)`` (see the module docstring). Each row
    uses its own t, all rows at once.

    Shapes: ``xt`` (B, d); ``t`` an int or a long tensor () or (B,) in 1..T. Returns (B, d)
    in float64, on xt's device (computed on the CPU: the data are low-dimensional).
    """
    _check_data(data)
    device = xt.device if isinstance(xt, torch.Tensor) else None
    xt = _check_x(xt, data.dim, "xt").cpu()  # the data's parameters live on the CPU
    ab = schedule.extract(schedule.alpha_bar, t, xt)                    # (B, 1) or ()
    ab = ab.reshape(1, 1).expand(xt.shape[0], 1) if ab.dim() == 0 else ab.reshape(-1, 1)
    if isinstance(data, GaussianData):
        return _gauss_x0(data, ab, xt)[0].to(device)
    return _gmm_x0(data, ab, xt).to(device)


def optimal_eps(data: KnownData, schedule: Schedule, xt: torch.Tensor,
                t: int | torch.Tensor) -> torch.Tensor:
    """The optimal eps prediction E[eps | x_t] (chapter 4):

        E[eps | x_t] = (x_t - sqrt(alpha_bar_t) E[x_0 | x_t]) / sqrt(1 - alpha_bar_t)
                     = -sqrt(1 - alpha_bar_t) grad log q(x_t)

    Shapes: ``xt`` (B, d), ``t`` int, () or (B,); returns (B, d), float64.
    """
    x0 = optimal_x0(data, schedule, xt, t)
    return convert(schedule, x0, xt.to(_DT), t, "x0", "eps")


class OptimalDenoiser(torch.nn.Module):
    """The optimal network for known data as a ``model(xt, t)`` (chapter 4; chapter 6 reuses it).

        OptimalDenoiser(data, schedule, prediction_type)(x_t, t)
            = E[target | x_t],  target in {eps, x0, mu, v}

    (all four are linear in (x_0, eps) given x_t, so each optimum is the conversion of
    E[x_0 | x_t]; chapter 5). ``t`` is a long tensor of shape (B,) (or an int) in 1..T;
    ``xt`` (B, d). Returns a tensor shaped like ``xt`` in its dtype (computed in float64).
    It has no parameters; it is an ``nn.Module`` so it plugs in wherever a network does.
    """

    def __init__(self, data: KnownData, schedule: Schedule, prediction_type: str = "eps"):
        super().__init__()
        self.data = _check_data(data)
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a dmlib Schedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.prediction_type = check_prediction_type(prediction_type)

    def forward(self, xt: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        x0 = optimal_x0(self.data, self.schedule, xt, t)
        out = convert(self.schedule, x0, xt.to(_DT), t, "x0", self.prediction_type)
        return out.to(xt.dtype)

    def extra_repr(self) -> str:
        kind = type(self.data).__name__
        return f"data={kind}(d={self.data.dim}), T={self.schedule.T}, prediction_type={self.prediction_type!r}"


def nll(data: KnownData, x0: torch.Tensor) -> torch.Tensor:
    """The exact negative log-likelihood -log p_data(x_0) in nats, shape (n,), float64.

    Gaussian: 1/2 sum_i [ (x_i - m_i)^2 / v_i + log(2 pi v_i) ]; mixture: -gmm.log_prob.
    ``x0``: (n, d). Its mean over data samples estimates the entropy H[p_data], the best
    any model can reach (chapter 4, C4.7).
    """
    return -_check_data(data).log_prob(_check_x(x0, data.dim, "x0"))


@renamed_keywords(sigma="variance")
def gaussian_vlb_terms(data: GaussianData, schedule: Schedule,
                       variance: str = "beta") -> torch.Tensor:
    """Exact expected terms of the negative ELBO of the optimal model on Gaussian data (ch4, C4.7).

    The same columns as ``dmlib.losses.vlb_terms`` (indexed by t: column t holds L_{t-1},
    column 0 holds L_T; nats summed over the d dimensions), averaged over x_0 ~ N(m, diag(v))
    and the forward process, for the model mu_theta(x_t, t) = mu_tilde_t(x_t, E[x_0 | x_t])
    with sigma_t^2 from ``elbo_variance(schedule, variance)``. With P_t = Var[x_0 | x_t] (``posterior_x0``):

        L_T     = 1/2 sum_i ( alpha_bar_T (v_i + m_i^2) - alpha_bar_T - log(1 - alpha_bar_T) )
        L_{t-1} = sum_i [ 1/2 ( log(sigma_t^2 / beta_tilde_t) + beta_tilde_t / sigma_t^2 - 1 )
                          + coef_x0(t)^2 P_{t,i} / (2 sigma_t^2) ],       t = 2..T
        L_0     = sum_i [ 1/2 log(2 pi beta_1) + P_{1,i} / (2 beta_1) ]

    since mu_tilde_t - mu_theta = coef_x0(t) (x_0 - E[x_0 | x_t]) and E||x_0 - E[x_0|x_t]||^2
    = sum_i P_{t,i}. ``terms.sum() - data.entropy()`` is the exact expected gap of the bound.
    Returns shape (T + 1,), float64.
    """
    if not isinstance(data, GaussianData):
        raise TypeError(f"data must be a GaussianData, got {type(data).__name__}")
    check_variance_type(variance)
    T = schedule.T
    ab = schedule.alpha_bar
    v, m = data.var, data.mean
    P = v[None] * (1 - ab[:, None]) / (ab[:, None] * v[None] + 1 - ab[:, None])  # (T + 1, d)
    var_p = elbo_variance(schedule, variance)
    terms = torch.zeros(T + 1, dtype=_DT)
    b1 = schedule.betas[1]
    terms[1] = (0.5 * torch.log(2 * math.pi * b1) + P[1] / (2 * b1)).sum()
    if T >= 2:
        t = torch.arange(2, T + 1)
        bt, s2 = schedule.posterior_variance[t], var_p[t]
        const = 0.5 * (torch.log(s2 / bt) + bt / s2 - 1) * data.dim
        quad = (schedule.posterior_mean_coef_x0[t] ** 2 / (2 * s2))[:, None] * P[t]
        terms[2:] = const + quad.sum(1)
    abT = ab[T]
    terms[0] = 0.5 * (abT * (v + m ** 2) - abT - torch.log(1 - abT)).sum()
    return terms
