"""A labelled Gaussian mixture: every guidance quantity in closed form (chapter 9).

Each component k of a mixture sum_k w_k N(mu_k, diag(v_k)) carries a class label c(k) in
0..C-1. Then, for the data and for every noised marginal q(x_t) (``noised``, chapter 4):

    p(x, y)      = sum_{k: c(k) = y} w_k N(x; mu_k, v_k),     p(y) = sum_{k: c(k) = y} w_k
    p(y | x)     = p(x, y) / p(x)                              (``class_log_posterior``)
    p(x | y)     = p(x, y) / p(y)                              (``log_prob(x, y)``)
    grad log p(x | y) = sum_k r_k^y(x) (mu_k - x) / v_k,  r^y = responsibilities within class y

and Bayes' rule for scores, grad log p(x_t | y) = grad log p(x_t) + grad log p(y | x_t)
(the class prior does not depend on x). With s_t = sqrt(1 - alpha_bar_t), the exact
conditional eps is eps*(x_t, y) = -s_t grad log q_t(x_t | y) (``OptimalConditionalDenoiser``).

The "sharpened" distribution that guidance is often said to sample from,

    p_w(x | y)  proportional to  p(x | y)^(1 + w) p(x)^(-w) = p(x | y) p(y | x)^w / p(y)^w,

has no closed-form normaliser; ``sharpened_grid`` normalises it numerically on a grid.
Everything is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .data.mixture import GaussianMixture, default_gmm2d
from .schedules import Schedule

_DT = torch.float64


@dataclass(frozen=True, eq=False)
class LabelledMixture:
    """A ``GaussianMixture`` whose component k has class ``labels[k]`` in 0..num_classes-1
    (every class owns at least one component). Chapter 9."""

    mixture: GaussianMixture
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if not isinstance(self.mixture, GaussianMixture):
            raise TypeError(f"mixture must be a GaussianMixture, got {type(self.mixture).__name__}")
        lab = torch.as_tensor(self.labels).long()
        if lab.shape != (self.mixture.n_components,):
            raise ValueError(f"labels must have shape ({self.mixture.n_components},) (one per "
                             f"component), got {tuple(lab.shape)}")
        C = self.num_classes
        if isinstance(C, bool) or not isinstance(C, int) or C < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {C!r}")
        if int(lab.min()) < 0 or int(lab.max()) >= C or len(lab.unique()) != C:
            raise ValueError(f"labels must lie in 0..{C - 1} and use every class, got {lab.tolist()}")
        object.__setattr__(self, "labels", lab)

    @property
    def dim(self) -> int:
        """d, the dimension of x."""
        return self.mixture.dim

    def _mask(self) -> torch.Tensor:
        """(C, K): 0 where component k belongs to class c, -inf elsewhere."""
        onehot = self.labels[None, :] == torch.arange(self.num_classes)[:, None]
        return torch.where(onehot, 0.0, -math.inf).to(_DT)

    def class_prior(self) -> torch.Tensor:
        """p(y) = sum of the weights of class y's components, shape (C,)."""
        return torch.zeros(self.num_classes, dtype=_DT).index_add_(0, self.labels,
                                                                    self.mixture.weights)

    def conditional(self, y: int) -> GaussianMixture:
        """p(x | y) as a ``GaussianMixture`` (class y's components, weights renormalised)."""
        keep = self.labels == int(y)
        w = self.mixture.weights[keep]
        return GaussianMixture(w / w.sum(), self.mixture.means[keep], self.mixture.var[keep])

    def noised(self, alpha_bar: float | torch.Tensor) -> "LabelledMixture":
        """q(x_t, y): every component noised as in ``GaussianMixture.noised``; labels kept."""
        return LabelledMixture(self.mixture.noised(alpha_bar), self.labels, self.num_classes)

    def sample(self, n: int, generator: torch.Generator | int | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y): k ~ Categorical(w), x ~ N(mu_k, v_k), y = labels[k]; (n, d) and (n,) long."""
        g = torch.Generator().manual_seed(generator) if isinstance(generator, int) else generator
        m = self.mixture
        k = torch.multinomial(m.weights, n, replacement=True, generator=g)
        eps = torch.randn(n, m.dim, generator=g, dtype=_DT)
        return (m.means[k] + m.var[k].sqrt() * eps).to(dtype), self.labels[k]

    def joint_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, y) for every class, shape (n, C) (differentiable in x)."""
        comp = self.mixture.component_log_prob(x)                     # (n, K)
        return torch.logsumexp(comp[:, None, :] + self._mask()[None], dim=-1)

    def class_log_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """log p(y | x) for every class, shape (n, C); rows of exp sum to 1."""
        return torch.log_softmax(self.joint_log_prob(x), dim=-1)

    def _labels_or_null(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if y is None:
            return None
        if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.dtype != torch.long:
            raise ValueError(f"y must be a long tensor of shape ({n},), got {y!r:.60}")
        if int(y.min()) < 0 or int(y.max()) > self.num_classes:
            raise ValueError(f"labels must lie in 0..{self.num_classes} "
                             f"({self.num_classes} = the null label: no conditioning)")
        return y

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x | y) (n,), for labels y (n,) long; y None (or the null label C in a row):
        the marginal log p(x)."""
        marg = self.mixture.log_prob(x)
        y = self._labels_or_null(y, x.shape[0])
        if y is None:
            return marg
        cond = self.joint_log_prob(x).gather(1, y.clamp(max=self.num_classes - 1)[:, None])[:, 0] \
            - self.class_prior().log()[y.clamp(max=self.num_classes - 1)]
        return torch.where(y == self.num_classes, marg, cond)

    def score(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """grad_x log p(x | y) = sum_k r_k^y(x) (mu_k - x) / v_k, shape (n, d); y None or the
        null label C: the marginal score (all components)."""
        m = self.mixture
        comp = m.component_log_prob(x)                                 # (n, K)
        y = self._labels_or_null(y, x.shape[0])
        if y is not None:
            mask = torch.cat([self._mask(), torch.zeros(1, m.n_components, dtype=_DT)])
            comp = comp + mask[y]                                      # null row: no mask
        r = torch.softmax(comp, dim=-1)
        return torch.einsum("nk,nkd->nd", r, (m.means[None] - x.to(_DT)[:, None, :]) / m.var)


def labelled_gmm2d(std: float = 0.15) -> LabelledMixture:
    """The course's 3 x 3 mixture (chapter 6, ``default_gmm2d`` for std 0.15) with 3 classes:
    the class of a mode is its column (0: left, 1: middle, 2: right). Chapter 9."""
    base = default_gmm2d()
    gmm = GaussianMixture(base.weights, base.means, torch.full((9,), std ** 2, dtype=_DT))
    col = torch.bucketize(base.means[:, 0].contiguous(), torch.tensor([-0.5, 0.5], dtype=_DT))
    return LabelledMixture(gmm, col, 3)


def _per_t(schedule: Schedule, t: int | torch.Tensor, n: int) -> torch.Tensor:
    t = schedule.timesteps(t)
    return t.expand(n) if t.dim() == 0 else t


class OptimalConditionalDenoiser(torch.nn.Module):
    """The exact eps of a labelled mixture as a conditional network ``net(xt, t, y)``
    (chapter 9): eps*(x_t, t, y) = -sqrt(1 - alpha_bar_t) grad log q_t(x_t | y), with y the
    null label C (or None) giving the unconditional eps*. xt (B, d), t int or (B,) in 1..T;
    returns (B, d) in xt's dtype. Plugs into ``GuidedModel`` / ``guided`` like a trained net."""

    def __init__(self, data: LabelledMixture, schedule: Schedule) -> None:
        super().__init__()
        self.data, self.schedule = data, schedule

    def forward(self, xt: torch.Tensor, t: int | torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        tt = _per_t(self.schedule, t, xt.shape[0]).cpu()
        out = torch.empty(xt.shape, dtype=_DT)
        x = xt.detach().cpu().to(_DT)
        for tv in tt.unique():
            rows = tt == tv
            ab = float(self.schedule.alpha_bar[int(tv)])
            yy = None if y is None else y.cpu()[rows]
            out[rows] = -math.sqrt(1 - ab) * self.data.noised(ab).score(x[rows], yy)
        return out.to(device=xt.device, dtype=xt.dtype)


class ExactNoisyClassifier(torch.nn.Module):
    """The exact noise-aware classifier of a labelled mixture, ``classifier(xt, t)`` ->
    log p(y | x_t) (B, C) used as logits (chapter 9); differentiable in xt."""

    def __init__(self, data: LabelledMixture, schedule: Schedule) -> None:
        super().__init__()
        self.data, self.schedule = data, schedule

    def forward(self, xt: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        tt = _per_t(self.schedule, t, xt.shape[0]).cpu()
        rows_out = []
        order = []
        for tv in tt.unique():
            rows = (tt == tv).nonzero()[:, 0]
            ab = float(self.schedule.alpha_bar[int(tv)])
            rows_out.append(self.data.noised(ab).class_log_posterior(xt[rows.to(xt.device)]))
            order.append(rows)
        out = torch.cat(rows_out)[torch.argsort(torch.cat(order))]
        return out.to(xt.dtype)


def sharpened_log_density(data: LabelledMixture, x: torch.Tensor, y: int, w: float) -> torch.Tensor:
    """The unnormalised log p_w(x | y) = (1 + w) log p(x | y) - w log p(x), shape (n,)."""
    yy = torch.full((x.shape[0],), int(y), dtype=torch.long)
    return (1 + w) * data.log_prob(x, yy) - w * data.log_prob(x)


def sharpened_grid(data: LabelledMixture, y: int, w: float, lim: float = 3.0, n: int = 300
                   ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """p_w(x | y) normalised numerically on an n x n grid over [-lim, lim]^2 (chapter 9).

    Returns (centres (n*n, 2), probabilities (n*n,) summing to 1, cell side h): cell i has
    probability exp(log p_w(c_i)) h^2 / Z with Z the same sum over all cells (the midpoint
    rule; the mass outside the box is ignored)."""
    if data.dim != 2:
        raise ValueError(f"sharpened_grid is for 2-D data, got d = {data.dim}")
    h = 2 * lim / n
    c = torch.linspace(-lim + h / 2, lim - h / 2, n, dtype=_DT)
    centres = torch.cartesian_prod(c, c)
    logp = sharpened_log_density(data, centres, y, w)
    return centres, torch.softmax(logp, dim=0), h


def noised_grid_score(centres: torch.Tensor, probs: torch.Tensor, alpha_bar: float,
                      x: torch.Tensor) -> torch.Tensor:
    """The score of a gridded density after noising (chapter 9):

        q_t(x) = sum_i P_i N(x; sqrt(alpha_bar) c_i, (1 - alpha_bar) I),   returns grad_x log q_t

    (each cell's mass placed at its centre c_i; the in-cell spread, variance alpha_bar h^2 / 12
    per axis, is ignored). centres (M, d), probs (M,), x (n, d); returns (n, d) float64 by
    autograd. Used to show that guided scores are not the scores of the noised p_w."""
    if not 0.0 <= alpha_bar < 1.0:
        raise ValueError(f"alpha_bar must lie in [0, 1) (t >= 1), got {alpha_bar!r}")
    keep = probs > 1e-12
    c, lp = centres[keep].to(_DT), probs[keep].to(_DT).log()
    with torch.enable_grad():
        xr = x.detach().to(_DT).requires_grad_(True)
        d2 = ((xr[:, None, :] - math.sqrt(alpha_bar) * c[None]) ** 2).sum(-1)
        logq = torch.logsumexp(lp[None] - d2 / (2 * (1 - alpha_bar)), dim=1)
        return torch.autograd.grad(logq.sum(), xr)[0]


def overlapping_mixture() -> LabelledMixture:
    """Two classes whose supports overlap (three components; class 0 owns the outer two):
    where guidance changes the target, p_w != p(x | y). Chapter 9 and its benchmark."""
    gmm = GaussianMixture([0.3, 0.4, 0.3], [[-0.8, 0.0], [0.4, 0.3], [0.9, -0.6]],
                          [[0.25, 0.3], [0.2, 0.2], [0.15, 0.25]])
    return LabelledMixture(gmm, torch.tensor([0, 1, 0]), 2)


def sample_grid(centres: torch.Tensor, probs: torch.Tensor, h: float, n: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws from a gridded density: a cell by its probability, then uniform inside it
    (chapter 9). centres (M, d), probs (M,); returns (n, d) float64."""
    idx = torch.multinomial(probs, n, replacement=True, generator=generator)
    u = torch.rand(n, centres.shape[1], generator=generator, dtype=_DT) - 0.5
    return centres[idx] + h * u


__all__ = ["LabelledMixture", "labelled_gmm2d", "overlapping_mixture",
           "OptimalConditionalDenoiser", "ExactNoisyClassifier", "sharpened_log_density",
           "sharpened_grid", "sample_grid", "noised_grid_score"]
