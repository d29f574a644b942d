"""Noise schedules and the ``Schedule`` dataclass (chapter 3).

Timestep convention
-------------------
``t`` is always the lecture's integer timestep, t = 1..T (t = 1 is the first noising
step, x_T is pure noise). Every per-timestep tensor of a ``Schedule`` has length T + 1
and is indexed by t itself; index 0 stands for t = 0, the clean data x_0, with
beta_0 = 0 and alpha_bar_0 = 1. So ``sched.alpha_bar[t]`` is the lecture's alpha_bar_t,
with no ``t - 1`` anywhere. Functions that take ``t`` reject 0 (or T + 1) with an error
that explains the convention.

Schedules: ``Schedule.linear`` (Ho et al.), ``Schedule.cosine`` (Nichol & Dhariwal; its
closed-form alpha_bar is ``cosine_alpha_bar``) and ``Schedule.sigmoid`` (Jabri et al.,
Chen); ``make_schedule(name, T)`` builds any of them by name.

Notation (DDPM): beta_t the variance added at step t, alpha_t = 1 - beta_t,
alpha_bar_t = prod_{s=1}^t alpha_s. The slides write alpha_t for the cumulative
product on some slides; here the cumulative product is always ``alpha_bar``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._validate import as_timesteps

_DT = torch.float64  # schedules are computed in float64; ``extract`` casts to x's dtype


def linear_betas(T: int, beta_1: float | None = None, beta_T: float | None = None) -> torch.Tensor:
    """DDPM's linear schedule beta_t = beta_1 + (t - 1) / (T - 1) * (beta_T - beta_1), t = 1..T.

    Defaults follow Ho et al. (2020): beta_1 = 1e-4 and beta_T = 0.02 at T = 1000, scaled by
    1000 / T for other T (as in Nichol & Dhariwal) so that alpha_bar_T stays near 0; for
    T < 21 that scaling would pass 1, so the default beta_T is capped at 0.999.

    Returns shape (T,), float64: entry ``i`` is beta_{i+1}. Chapter 3.
    """
    _check_T(T)
    scale = 1000.0 / T
    b1 = scale * 1e-4 if beta_1 is None else beta_1
    bT = min(scale * 0.02, 0.999) if beta_T is None else beta_T
    if T == 1:
        return torch.tensor([bT], dtype=_DT)
    return torch.linspace(b1, bT, T, dtype=_DT)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule.

    alpha_bar(t) = f(t) / f(0),  f(t) = cos^2(pi/2 * (t/T + s) / (1 + s)),
    beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), max_beta), t = 1..T.

    Returns shape (T,), float64. Chapter 3.
    """
    alpha_bar = cosine_alpha_bar(T, s)
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def cosine_alpha_bar(T: int, s: float = 0.008) -> torch.Tensor:
    """The cosine schedule's alpha_bar in closed form, before any clipping of the betas.

        alpha_bar_t = f(t) / f(0),   f(t) = cos^2( pi/2 * (t/T + s) / (1 + s) ),   t = 0..T

    The offset ``s`` keeps beta_1 from being tiny (Nichol & Dhariwal, 2021). Returns shape
    (T + 1,), float64, indexed by t (entry 0 is alpha_bar_0 = 1). ``Schedule.cosine`` clips
    beta_t at 0.999, which changes only the last entries. Chapter 3 (exercise).
    """
    _check_T(T)
    if not (isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s >= 0):
        raise ValueError(f"the cosine offset s must be a finite float >= 0, got {s!r}")
    steps = torch.arange(T + 1, dtype=_DT) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return f / f[0]


def sigmoid_betas(T: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0,
                  max_beta: float = 0.999) -> torch.Tensor:
    """The sigmoid schedule of Jabri et al. (2022) and Chen (2023).

    alpha_bar(t) = (sigmoid(end / tau) - sigmoid(((t/T)(end - start) + start) / tau))
                   / (sigmoid(end / tau) - sigmoid(start / tau)),
    beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), max_beta), t = 1..T.

    alpha_bar(0) = 1 and alpha_bar(T) = 0 (so beta_T = ``max_beta``); ``tau`` > 0 sets how
    sharp the drop in the middle is (a larger tau is closer to linear in alpha_bar). The
    defaults (start, end, tau) = (-3, 3, 1) are Chen's. Returns shape (T,), float64. Chapter 3.
    """
    _check_T(T)
    if not (math.isfinite(start) and math.isfinite(end) and start < end):
        raise ValueError(f"sigmoid schedule needs finite start < end, got start={start!r}, "
                         f"end={end!r}")
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"sigmoid schedule needs a temperature tau > 0, got tau={tau!r}")
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must lie in (0, 1), got {max_beta!r}")
    u = torch.arange(T + 1, dtype=_DT) / T
    v_start, v_end = (torch.sigmoid(torch.tensor(v / tau, dtype=_DT)) for v in (start, end))
    alpha_bar = (v_end - torch.sigmoid((u * (end - start) + start) / tau)) / (v_end - v_start)
    alpha_bar = alpha_bar.clamp(min=0.0)
    # alpha_bar(T) = 0 exactly: 1 - 0 / alpha_bar(T-1) = 1, capped at max_beta like cosine.
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    if not torch.isfinite(betas).all():  # alpha_bar hit 0 before t = T (0 / 0)
        raise ValueError(f"sigmoid schedule with tau={tau!r} saturates: alpha_bar reaches 0 "
                         f"before t = T; use a larger tau or a narrower [start, end]")
    return betas.clamp(min=1e-12, max=max_beta)


def _check_T(T: int) -> None:
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"T (number of diffusion steps) must be a positive int, got {T!r}")


def check_betas(betas: torch.Tensor) -> torch.Tensor:
    """Validate a beta schedule: 1-D, finite, every beta_t strictly inside (0, 1)."""
    betas = torch.as_tensor(betas, dtype=_DT)
    if betas.dim() != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor of shape (T,), got shape "
                         f"{tuple(betas.shape)}")
    if not torch.isfinite(betas).all():
        raise ValueError("betas contain NaN or inf")
    bad = ((betas <= 0) | (betas >= 1)).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(
            f"betas must lie strictly inside (0, 1) (beta_t is a variance and 1 - beta_t a "
            f"squared scale); beta_{i + 1} = {float(betas[i]):.6g}")
    return betas


@dataclass(frozen=True, eq=False)
class Schedule:
    """All per-timestep quantities of a DDPM forward process, indexed by t = 0..T.

    Built from ``betas`` of shape (T,) (beta_1..beta_T). Every derived tensor has shape
    (T + 1,) and float64; entry 0 is t = 0 (clean data). Chapter 3 builds these by hand,
    chapter 4 uses the posterior quantities.

    ======================  ======================================================
    field                   equation (t = 1..T)
    ======================  ======================================================
    betas                   beta_t (beta_0 = 0)
    alphas                  alpha_t = 1 - beta_t (alpha_0 = 1)
    alpha_bar               alpha_bar_t = prod_{s<=t} alpha_s (alpha_bar_0 = 1)
    alpha_bar_prev          alpha_bar_{t-1} (entry 0: the empty product, 1)
    sqrt_alpha_bar          sqrt(alpha_bar_t)
    sqrt_one_minus_alpha_bar  sqrt(1 - alpha_bar_t)
    posterior_variance      beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t
    posterior_log_variance_clipped  log beta_tilde_t, with t = 1 (where beta_tilde_1 = 0)
                            using log beta_tilde_2 (as in DDPM's code)
    posterior_mean_coef_x0  sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t)
    posterior_mean_coef_xt  sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)
    snr                     SNR_t = alpha_bar_t / (1 - alpha_bar_t) (SNR_0 = inf)
    ======================  ======================================================

    **Entry 0** (one convention for every per-t table in dmlib): the value at t = 0 where
    the formula has one (beta_0 = 0, alpha_bar_0 = 1, SNR_0 = inf), and NaN where it has
    none (the posterior quantities above, ``reverse_variance``, ``elbo_variance``, loss
    weights, errors per t), so that a stray use of t = 0 shows up instead of passing as a
    plausible number.
    """

    betas_in: torch.Tensor = field(repr=False)
    name: str = "custom"
    betas: torch.Tensor = field(init=False, repr=False)
    alphas: torch.Tensor = field(init=False, repr=False)
    alpha_bar: torch.Tensor = field(init=False, repr=False)
    alpha_bar_prev: torch.Tensor = field(init=False, repr=False)
    sqrt_alpha_bar: torch.Tensor = field(init=False, repr=False)
    sqrt_one_minus_alpha_bar: torch.Tensor = field(init=False, repr=False)
    posterior_variance: torch.Tensor = field(init=False, repr=False)
    posterior_log_variance_clipped: torch.Tensor = field(init=False, repr=False)
    posterior_mean_coef_x0: torch.Tensor = field(init=False, repr=False)
    posterior_mean_coef_xt: torch.Tensor = field(init=False, repr=False)
    snr: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        b = check_betas(self.betas_in)
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        betas = torch.cat([torch.zeros(1, dtype=_DT), b])
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=_DT), alpha_bar[:-1]])
        one_m = 1 - alpha_bar
        # t = 0 has 1 - alpha_bar_0 = 0: the posterior quantities have no value there (NaN).
        safe = torch.where(one_m > 0, one_m, torch.ones_like(one_m))
        nan = torch.full_like(one_m, math.nan)
        post_var = torch.where(one_m > 0, (1 - alpha_bar_prev) / safe * betas, nan)
        T = b.numel()
        clip_from = post_var[2] if T >= 2 else betas[1]
        post_logvar = torch.cat([nan[:1], torch.log(clip_from).reshape(1), torch.log(post_var[2:])])
        coef_x0 = torch.where(one_m > 0, alpha_bar_prev.sqrt() * betas / safe, nan)
        coef_xt = torch.where(one_m > 0, alphas.sqrt() * (1 - alpha_bar_prev) / safe, nan)
        snr = torch.where(one_m > 0, alpha_bar / safe, torch.full_like(one_m, math.inf))
        for k, v in dict(betas=betas, alphas=alphas, alpha_bar=alpha_bar,
                         alpha_bar_prev=alpha_bar_prev, sqrt_alpha_bar=alpha_bar.sqrt(),
                         sqrt_one_minus_alpha_bar=one_m.sqrt(), posterior_variance=post_var,
                         posterior_log_variance_clipped=post_logvar,
                         posterior_mean_coef_x0=coef_x0, posterior_mean_coef_xt=coef_xt,
                         snr=snr).items():
            set_(k, v)

    # -- constructors ---------------------------------------------------------------
    @classmethod
    def linear(cls, T: int = 1000, beta_1: float | None = None,
               beta_T: float | None = None) -> "Schedule":
        """The DDPM linear schedule (see ``linear_betas``)."""
        return cls(linear_betas(T, beta_1, beta_T), name="linear")

    @classmethod
    def cosine(cls, T: int = 1000, s: float = 0.008) -> "Schedule":
        """The cosine schedule of Nichol & Dhariwal (see ``cosine_betas``)."""
        return cls(cosine_betas(T, s), name="cosine")

    @classmethod
    def sigmoid(cls, T: int = 1000, start: float = -3.0, end: float = 3.0,
                tau: float = 1.0) -> "Schedule":
        """The sigmoid schedule of Jabri et al. / Chen (see ``sigmoid_betas``). Chapter 3."""
        return cls(sigmoid_betas(T, start, end, tau), name="sigmoid")

    # -- helpers ------------------------------------------------------------------------
    @property
    def T(self) -> int:
        """Number of diffusion steps."""
        return self.betas.numel() - 1

    def timesteps(self, t: int | torch.Tensor, *, allow_zero: bool = False) -> torch.Tensor:
        """Validate ``t`` against this schedule (1 <= t <= T) and return it as a long tensor."""
        return as_timesteps(t, self.T, allow_zero=allow_zero)

    def int_timestep(self, t: int | torch.Tensor) -> int:
        """One timestep for the whole batch (a sampler step), as an int in 1..T: an int or a
        0-d integer tensor; anything else raises TypeError, out of range ValueError."""
        if isinstance(t, torch.Tensor) and t.dim() == 0 and not t.is_floating_point():
            t = int(t)
        if not isinstance(t, int) or isinstance(t, bool):
            raise TypeError(f"t must be an int timestep (one t for the whole batch), got "
                            f"{type(t).__name__}")
        self.timesteps(t)
        return t

    def extract(self, values: torch.Tensor, t: int | torch.Tensor, x: torch.Tensor,
                *, allow_zero: bool = False) -> torch.Tensor:
        """Gather ``values[t]`` and shape it to broadcast against ``x``.

        ``values``: (T + 1,) schedule tensor; ``t``: int, () or (B,); ``x``: (B, ...).
        Returns shape (B, 1, ..., 1) (or () for scalar t) in x's dtype and device.
        """
        from ._validate import check_batch

        t = self.timesteps(t, allow_zero=allow_zero)
        check_batch(x, t)
        out = values.to(x.device)[t.to(x.device)].to(x.dtype)
        if t.dim() == 1:
            out = out.reshape(-1, *([1] * (x.dim() - 1)))
        return out

    def sample_timesteps(self, batch_size: int, generator: torch.Generator | None = None,
                         device: torch.device | str | None = None) -> torch.Tensor:
        """Draw t ~ Uniform{1, ..., T}, shape (batch_size,), as in Algorithm 1 (training)."""
        t = torch.randint(1, self.T + 1, (batch_size,), generator=generator)
        return t.to(device) if device is not None else t

    def __repr__(self) -> str:
        return (f"Schedule(name={self.name!r}, T={self.T}, beta_1={float(self.betas[1]):.3g}, "
                f"beta_T={float(self.betas[-1]):.3g}, alpha_bar_T={float(self.alpha_bar[-1]):.3g})")


def make_schedule(name: str, T: int = 1000) -> Schedule:
    """Build a named schedule: ``"linear"``, ``"cosine"`` or ``"sigmoid"``, each with its
    defaults (see ``SCHEDULES``). Chapter 3."""
    makers = SCHEDULES
    if name not in makers:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(makers)}")
    return makers[name](T)


#: The named schedules of ``make_schedule``: name -> constructor ``f(T) -> Schedule``.
SCHEDULES = {"linear": Schedule.linear, "cosine": Schedule.cosine, "sigmoid": Schedule.sigmoid}


# -- the variance of the reverse process p_theta(x_{t-1} | x_t) ---------------------------
#: Choices for sigma_t^2, the variance of p_theta(x_{t-1} | x_t): ``variance=`` everywhere.
VARIANCE_TYPES: tuple[str, ...] = ("beta", "beta_tilde")


def check_variance_type(variance: str) -> str:
    """Return ``variance`` if it is one of ``VARIANCE_TYPES``, else raise ValueError."""
    if not isinstance(variance, str) or variance not in VARIANCE_TYPES:
        raise ValueError(f"unknown variance {variance!r}; valid ones are "
                         f"{', '.join(repr(v) for v in VARIANCE_TYPES)} (sigma_t^2 = beta_t "
                         f"or the posterior variance beta_tilde_t)")
    return variance


def reverse_variance(schedule: Schedule, variance: str = "beta") -> torch.Tensor:
    """sigma_t^2 of p_theta(x_{t-1} | x_t) for sampling, shape (T + 1,), float64 (chapter 6).

    ``"beta"``: sigma_t^2 = beta_t; ``"beta_tilde"``: sigma_t^2 = beta_tilde_t
    = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t (so 0 at t = 1). Entry 0 is NaN.
    """
    check_variance_type(variance)
    var = (schedule.betas if variance == "beta" else schedule.posterior_variance).clone()
    var[0] = math.nan
    return var


def elbo_variance(schedule: Schedule, variance: str = "beta") -> torch.Tensor:
    """sigma_t^2 of p_theta(x_{t-1} | x_t) as used in the bound, shape (T + 1,), float64 (ch4).

    As ``reverse_variance``, except sigma_1^2 = beta_1 for both choices (beta_tilde_1 = 0
    would make the decoder p(x_0 | x_1) a point mass). Entry 0 is NaN.
    """
    var = reverse_variance(schedule, variance)
    var[1] = schedule.betas[1]
    return var
