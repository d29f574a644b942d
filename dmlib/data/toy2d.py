"""2-D toy data sets (chapters 3, 6).

Every maker has the signature ``maker(n, seed=0) -> Tensor (n, 2), float32`` and is
reproducible: the same ``seed`` (an int, or a ``torch.Generator`` whose state is then
advanced) gives the same points.

Scaling: each set is mapped by a *fixed* affine map, worked out from the population
(not from the sample, so it does not depend on ``n``), to mean 0 and unit standard
deviation per coordinate:

==================  ===========================================================
name                construction and scaling
==================  ===========================================================
``moons``           ``sklearn.datasets.make_moons(noise=0.05)``, then
                    ((x1 - 1/2) / sqrt(3/4 + s^2), (x2 - 1/4) / sqrt(9/16 - 1/pi + s^2))
``swiss_roll``      ``sklearn.datasets.make_swiss_roll(noise=0.5)`` projected on its
                    (x, z) plane (t cos t, t sin t), standardised with the closed-form
                    moments of t ~ U[3 pi/2, 9 pi/2]
``eight_gaussians`` ``ring_gmm(8, std=0.1)``: modes on a circle of radius sqrt(2 * 0.99)
``checkerboard``    uniform on the 8 black cells of a 4 x 4 board covering
                    [-sqrt 3, sqrt 3]^2 (each marginal is U[-sqrt 3, sqrt 3])
``gmm``             ``default_gmm2d()``: 3 x 3 grid of modes with std 0.15
==================  ===========================================================

The checkerboard's density is known (``checkerboard_log_prob``), and so is its entropy,
``CHECKERBOARD_ENTROPY = log 6`` nats (the black cells cover area 6): chapter 6 compares a
model's NLL bound with it. ``eight_gaussians`` and ``gmm`` have known densities too
(``ring_gmm(8, 0.1).log_prob`` and ``default_gmm2d().log_prob``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .mixture import _as_generator, _check_n, default_gmm2d, ring_gmm

MOONS_NOISE = 0.05
SWISS_ROLL_NOISE = 0.5
#: Half-width of the checkerboard: U[-L, L] has unit variance when L = sqrt(3).
CHECKERBOARD_HALF_WIDTH = math.sqrt(3.0)
#: Side of one of the 4 x 4 cells.
CHECKERBOARD_CELL = 2 * CHECKERBOARD_HALF_WIDTH / 4
#: Entropy of the checkerboard in nats: log(area of the 8 black cells) = log(8 * (sqrt3/2)^2) = log 6.
CHECKERBOARD_ENTROPY = math.log(8 * CHECKERBOARD_CELL ** 2)


def _int_seed(seed: int | torch.Generator) -> int:
    """An int for scikit-learn's ``random_state``: the seed itself, or one drawn from a generator."""
    g = _as_generator(seed)
    if isinstance(seed, int):
        return seed
    return int(torch.randint(0, 2**31 - 1, (1,), generator=g))


def moons(n: int, seed: int | torch.Generator = 0, noise: float = MOONS_NOISE) -> torch.Tensor:
    """Two interleaving half circles (``sklearn.datasets.make_moons``), standardised.

    Raw moons: (cos th, sin th) and (1 - cos th, 1/2 - sin th), th ~ U[0, pi], plus N(0, s^2)
    noise. Population moments: E = (1/2, 1/4), Var = (3/4 + s^2, 9/16 - 1/pi + s^2); we
    return (x - E) / sqrt(Var). Shape (n, 2), float32. Chapter 6.
    """
    _check_n(n)
    from sklearn.datasets import make_moons  # lazy: importing sklearn takes a while

    x, _ = make_moons(n_samples=n, noise=noise, random_state=_int_seed(seed))
    x = torch.as_tensor(x, dtype=torch.float64)
    mean = torch.tensor([0.5, 0.25], dtype=torch.float64)
    std = torch.tensor([0.75 + noise**2, 9 / 16 - 1 / math.pi + noise**2],
                       dtype=torch.float64).sqrt()
    return ((x - mean) / std).float()


def _swiss_roll_moments(noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form mean and std of (t cos t, t sin t) + noise for t ~ U[a, b], a = 3pi/2, b = 9pi/2.

    With L = b - a: E[t cos t] = [t sin t + cos t]_a^b / L = 2, E[t sin t] = [sin t - t cos t]_a^b / L
    = 2/(3 pi), E[t^2 cos^2 t] = (b^3 - a^3)/(6L) - 1/4, E[t^2 sin^2 t] = (b^3 - a^3)/(6L) + 1/4.
    """
    a, b = 1.5 * math.pi, 4.5 * math.pi
    L = b - a
    m = (2.0, 2 / (3 * math.pi))
    s2 = (b**3 - a**3) / (6 * L)
    var = (s2 - 0.25 - m[0] ** 2 + noise**2, s2 + 0.25 - m[1] ** 2 + noise**2)
    return (torch.tensor(m, dtype=torch.float64),
            torch.tensor(var, dtype=torch.float64).sqrt())


def swiss_roll(n: int, seed: int | torch.Generator = 0,
               noise: float = SWISS_ROLL_NOISE) -> torch.Tensor:
    """The swiss roll (``sklearn.datasets.make_swiss_roll``) seen from above, standardised.

    sklearn draws t ~ U[3 pi/2, 9 pi/2] and returns (t cos t, 21 u, t sin t) + noise; we keep
    the spiral plane (t cos t, t sin t) and subtract / divide by its closed-form mean / std
    (see ``_swiss_roll_moments``). Shape (n, 2), float32. Chapter 6.
    """
    _check_n(n)
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n_samples=n, noise=noise, random_state=_int_seed(seed))
    x = torch.as_tensor(x[:, [0, 2]], dtype=torch.float64)
    mean, std = _swiss_roll_moments(noise)
    return ((x - mean) / std).float()


def eight_gaussians(n: int, seed: int | torch.Generator = 0) -> torch.Tensor:
    """Eight equal Gaussians on a ring: samples of ``ring_gmm(8, std=0.1)``.

    Modes at r (cos k pi/4, sin k pi/4), r = sqrt(2 * 0.99), std 0.1: unit variance per
    coordinate. Shape (n, 2), float32. Chapter 6.
    """
    _check_n(n)
    return ring_gmm(8, std=0.1).sample(n, _as_generator(seed))


def gmm(n: int, seed: int | torch.Generator = 0) -> torch.Tensor:
    """Samples of ``default_gmm2d()`` (3 x 3 grid, std 0.15, unit variance per coordinate).

    Its optimal denoiser is known in closed form. Shape (n, 2), float32. Chapter 6.
    """
    _check_n(n)
    return default_gmm2d().sample(n, _as_generator(seed))


def _checkerboard_cells(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell indices (i, j) in 0..3 of each point and whether it lies on the board."""
    L, h = CHECKERBOARD_HALF_WIDTH, CHECKERBOARD_CELL
    inside = (x.abs() <= L).all(dim=1)
    ij = ((x + L) / h).floor().long().clamp(0, 3)  # x = L exactly belongs to the last cell
    return ij[:, 0], ij[:, 1], inside


def checkerboard(n: int, seed: int | torch.Generator = 0) -> torch.Tensor:
    """Uniform samples on the black cells of a 4 x 4 checkerboard on [-sqrt 3, sqrt 3]^2.

    Cell (i, j) (i along x1, j along x2, 0-based from the lower-left) is black when i + j is
    even: 8 cells of side h = sqrt(3)/2. Pick a black cell uniformly, then a uniform point in
    it. Each coordinate is marginally U[-sqrt 3, sqrt 3]: mean 0, variance 1 (the two
    coordinates are correlated, corr = 3/16). Shape (n, 2), float32. Chapter 6.
    """
    _check_n(n)
    g = _as_generator(seed)
    black = torch.tensor([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0],
                         dtype=torch.float64)  # (8, 2)
    cell = black[torch.randint(0, 8, (n,), generator=g)]
    u = torch.rand(n, 2, generator=g, dtype=torch.float64)
    x = -CHECKERBOARD_HALF_WIDTH + (cell + u) * CHECKERBOARD_CELL
    return x.float()


def checkerboard_log_prob(x: torch.Tensor) -> torch.Tensor:
    """The checkerboard's true log-density: log p(x) = -log 6 on a black cell, -inf elsewhere.

    ``x``: (n, 2). Returns (n,), float64. Its entropy is ``CHECKERBOARD_ENTROPY`` = log 6.
    Chapter 6.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (n, 2), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"wrong shape for x: expected (n, 2), got {tuple(x.shape)}")
    x = x.to(torch.float64)
    i, j, inside = _checkerboard_cells(x)
    on_black = inside & ((i + j) % 2 == 0)
    return torch.where(on_black, torch.full_like(x[:, 0], -CHECKERBOARD_ENTROPY),
                       torch.full_like(x[:, 0], -math.inf))


#: name -> maker(n, seed) for every 2-D toy set.
TOY_DATASETS: dict[str, Callable[..., torch.Tensor]] = {
    "moons": moons,
    "swiss_roll": swiss_roll,
    "eight_gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "gmm": gmm,
}


def make_toy(name: str, n: int, seed: int | torch.Generator = 0) -> torch.Tensor:
    """Draw ``n`` points of the toy set ``name`` (a key of ``TOY_DATASETS``).

    Returns (n, 2), float32, mean ~0 and std ~1 per coordinate. Chapters 3, 6.
    """
    if name not in TOY_DATASETS:
        raise ValueError(f"unknown toy data set {name!r}; choose one of {sorted(TOY_DATASETS)}")
    _check_n(n)
    return TOY_DATASETS[name](n, seed)
