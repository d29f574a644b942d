"""Distances between two samples of points, for judging generated 2-D data (chapter 6).

A generative model is good when its samples are hard to tell from fresh data. Two
sample-based distances, each reported next to its **floor**: the same distance between two
independent draws of the data of the same sizes. Even a perfect model scores the floor
(finite samples never match exactly), so the number to read is the ratio distance / floor
(~1 for a perfect model).

``sliced_wasserstein``: SW_p(X, Y) = ( mean_k W_p(<X, theta_k>, <Y, theta_k>)^p )^(1/p)
over K directions theta_k. In 2-D we use K evenly spaced angles kpi/K (deterministic, no
Monte Carlo noise), in d > 2 random unit directions from a seeded generator. The 1-D
W_p between empirical distributions is the L_p distance of their quantile functions,
``wasserstein_1d``.

``mmd``: the (biased, V-statistic) maximum mean discrepancy with a Gaussian kernel
k(x, y) = exp(-||x - y||^2 / (2 h^2)):

    MMD^2 = mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)  >= 0.

``sample_distance_report`` computes a distance, its floor and the ratio.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

_DT = torch.float64


def _check_points(x, name: str, dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, d), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1, got {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]} but the other sample has {dim}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf (did sampling diverge?)")
    return x.detach().to("cpu", _DT)


def _check_p(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not p >= 1 or not math.isfinite(p):
        raise ValueError(f"p must be a finite number >= 1 (the order of W_p), got {p!r}")
    return float(p)


def wasserstein_1d(u: torch.Tensor, v: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """W_p between the empirical distributions of 1-D samples, along the last dimension.

        W_p(u, v)^p = int_0^1 |F_u^{-1}(s) - F_v^{-1}(s)|^p ds

    with F^{-1} the empirical quantile functions (step functions); the integral is exact
    (a sum over the merged breakpoints i/n and j/m). Equal sizes reduce to
    mean_i |u_(i) - v_(i)|^p of the sorted values.

    Shapes: ``u`` (..., n), ``v`` (..., m) with the same leading dimensions; returns (...),
    float64. Chapter 6.
    """
    p = _check_p(p)
    for name, a in (("u", u), ("v", v)):
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(a).__name__}")
        if a.dim() < 1 or a.shape[-1] < 1:
            raise ValueError(f"{name} must have at least one value along its last dimension")
    if u.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"u and v must share their leading dimensions, got {tuple(u.shape)} "
                         f"and {tuple(v.shape)}")
    u, _ = u.detach().to(_DT).sort(-1)
    v, _ = v.detach().to(_DT).sort(-1)
    n, m = u.shape[-1], v.shape[-1]
    if n == m:
        return ((u - v).abs() ** p).mean(-1) ** (1 / p)
    # Merge the breakpoints of both step functions: on each piece (s_{k-1}, s_k] both
    # quantile functions are constant.
    s = torch.cat([torch.arange(1, n + 1, dtype=_DT) / n, torch.arange(1, m + 1, dtype=_DT) / m])
    s = torch.unique(s)  # sorted, ends at 1
    widths = torch.diff(s, prepend=torch.zeros(1, dtype=_DT))
    mid = s - widths / 2
    iu = (mid * n).floor().long().clamp(max=n - 1)  # F_u^{-1}(s) = u_(ceil(s n)) on (i/n, (i+1)/n]
    iv = (mid * m).floor().long().clamp(max=m - 1)
    diff = (u[..., iu] - v[..., iv]).abs() ** p
    return (diff * widths).sum(-1) ** (1 / p)


def directions(d: int, n_directions: int = 128, seed: int = 0) -> torch.Tensor:
    """Unit vectors theta_k for slicing, shape (K, d), float64 (chapter 6).

    d = 2: the evenly spaced angles kpi/K, k = 0..K-1 (a half circle suffices since W_p of
    <x, -theta> equals that of <x, theta>). d != 2: K random directions, normalised Gaussians
    from a generator seeded with ``seed``.
    """
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be a positive int, got {d!r}")
    if isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 1:
        raise ValueError(f"n_directions must be a positive int, got {n_directions!r}")
    if d == 2:
        angle = torch.arange(n_directions, dtype=_DT) * math.pi / n_directions
        return torch.stack([angle.cos(), angle.sin()], dim=1)
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(n_directions, d, generator=g, dtype=_DT)
    return theta / theta.norm(dim=1, keepdim=True)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, p: float = 2.0, n_directions: int = 128,
                       seed: int = 0) -> float:
    """Sliced Wasserstein distance SW_p(x, y) = ( mean_k W_p(x theta_k, y theta_k)^p )^(1/p).

    ``x`` (n, d) and ``y`` (m, d): two samples (sizes may differ); directions from
    ``directions(d, n_directions, seed)``. Same units as the data. Chapter 6.
    """
    p = _check_p(p)
    x = _check_points(x, "x")
    y = _check_points(y, "y", x.shape[1])
    theta = directions(x.shape[1], n_directions, seed)
    w = wasserstein_1d((x @ theta.T).T, (y @ theta.T).T, p)  # (K,)
    return float((w ** p).mean() ** (1 / p))


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 0.2, chunk: int = 2048) -> float:
    """Biased (V-statistic) MMD with the Gaussian kernel k(a, b) = exp(-||a - b||^2 / (2 h^2)).

        MMD^2 = mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)

    Returns MMD = sqrt(max(MMD^2, 0)) (>= 0; 0 iff the samples coincide as multisets, for
    this characteristic kernel). ``bandwidth`` h is in data units (the course's toy sets
    have unit std, so h = 0.2 looks at the scale of the modes). ``x`` (n, d), ``y`` (m, d);
    kernel sums are computed in row blocks of ``chunk``. Chapter 6.
    """
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0:
        raise ValueError(f"bandwidth must be a positive number (the kernel width h), got {bandwidth!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    x = _check_points(x, "x")
    y = _check_points(y, "y", x.shape[1])

    def mean_kernel(a: torch.Tensor, b: torch.Tensor) -> float:
        total = 0.0
        for i in range(0, a.shape[0], chunk):
            d2 = torch.cdist(a[i:i + chunk], b).pow(2)
            total += float(torch.exp(-d2 / (2 * bandwidth ** 2)).sum())
        return total / (a.shape[0] * b.shape[0])

    mmd2 = mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y)
    return math.sqrt(max(mmd2, 0.0))


def sample_distance_report(samples: torch.Tensor, draw_data: Callable[[int, int], torch.Tensor],
                           metric: str = "sw", seeds: tuple[int, int] = (1001, 1002),
                           **kwargs) -> dict[str, float]:
    """A sample distance, its floor and their ratio (chapter 6).

        distance = D(samples, data_a),   floor = D(data_b, data_a),   ratio = distance / floor

    with ``data_a = draw_data(n, seeds[0])`` and ``data_b = draw_data(n, seeds[1])`` two
    independent fresh draws of the size n of ``samples``. ``metric``: ``"sw"``
    (``sliced_wasserstein``) or ``"mmd"``; ``kwargs`` go to it. Returns a dict with keys
    ``distance``, ``floor``, ``ratio``.
    """
    fns = {"sw": sliced_wasserstein, "mmd": mmd}
    if metric not in fns:
        raise ValueError(f"unknown metric {metric!r}; choose 'sw' or 'mmd'")
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        raise ValueError(f"seeds must be two different ints (two independent draws), got {seeds!r}")
    samples = _check_points(samples, "samples")
    n = samples.shape[0]
    data_a, data_b = draw_data(n, seeds[0]), draw_data(n, seeds[1])
    dist = fns[metric](samples, data_a, **kwargs)
    floor = fns[metric](data_b, data_a, **kwargs)
    return {"distance": dist, "floor": floor, "ratio": dist / floor if floor > 0 else math.inf}


__all__ = ["wasserstein_1d", "directions", "sliced_wasserstein", "mmd", "sample_distance_report"]
