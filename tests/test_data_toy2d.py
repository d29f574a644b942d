"""Tests for dmlib.data.toy2d: scaling, reproducibility, shapes and the checkerboard density."""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons, make_swiss_roll

from dmlib.data.mixture import default_gmm2d, ring_gmm
from dmlib.data.toy2d import (CHECKERBOARD_ENTROPY, TOY_DATASETS, checkerboard,
                              checkerboard_log_prob, make_toy, moons, swiss_roll)

NAMES = ["moons", "swiss_roll", "eight_gaussians", "checkerboard", "gmm"]


def test_registry_names():
    assert sorted(TOY_DATASETS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_seed(name):
    x = make_toy(name, 500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x, make_toy(name, 500, seed=3))
    assert not torch.equal(x, make_toy(name, 500, seed=4))
    # A generator works too, and the same generator state gives the same points.
    a = make_toy(name, 100, torch.Generator().manual_seed(5))
    b = make_toy(name, 100, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_unit_scale(name):
    # The fixed affine maps come from population moments: a large sample must have mean ~0
    # and std ~1 per coordinate (tolerance ~ 5 standard errors at n = 100k).
    x = make_toy(name, 100_000, seed=11).double()
    assert torch.all(x.mean(0).abs() < 0.02), x.mean(0)
    assert torch.all((x.std(0) - 1).abs() < 0.02), x.std(0)


def test_moons_is_an_affine_map_of_sklearn():
    raw, _ = make_moons(n_samples=300, noise=0.05, random_state=7)
    x = moons(300, seed=7).double().numpy()
    # Per coordinate, x = a * raw + b for constants a > 0, b: fit on two points, check all.
    for i in range(2):
        a = (x[1, i] - x[0, i]) / (raw[1, i] - raw[0, i])
        b = x[0, i] - a * raw[0, i]
        assert a > 0
        np.testing.assert_allclose(x[:, i], a * raw[:, i] + b, atol=1e-5)


def test_swiss_roll_is_the_projected_sklearn_roll():
    raw, _ = make_swiss_roll(n_samples=300, noise=0.5, random_state=2)
    x = swiss_roll(300, seed=2).double().numpy()
    for col, i in ((0, 0), (2, 1)):
        a = (x[1, i] - x[0, i]) / (raw[1, col] - raw[0, col])
        b = x[0, i] - a * raw[0, col]
        np.testing.assert_allclose(x[:, i], a * raw[:, col] + b, atol=1e-5)


def test_swiss_roll_moments_by_quadrature():
    # Independent check of the closed-form moments: numerical integration over t.
    from scipy.integrate import quad
    from dmlib.data.toy2d import _swiss_roll_moments

    a, b = 1.5 * math.pi, 4.5 * math.pi
    E = lambda f: quad(f, a, b, limit=200)[0] / (b - a)  # noqa: E731
    m1, m2 = E(lambda t: t * math.cos(t)), E(lambda t: t * math.sin(t))
    v1 = E(lambda t: (t * math.cos(t) - m1) ** 2) + 0.25
    v2 = E(lambda t: (t * math.sin(t) - m2) ** 2) + 0.25
    mean, std = _swiss_roll_moments(0.5)
    np.testing.assert_allclose(mean.numpy(), [m1, m2], rtol=1e-9)
    np.testing.assert_allclose(std.numpy() ** 2, [v1, v2], rtol=1e-9)


def test_eight_gaussians_and_gmm_sample_their_mixtures():
    x = make_toy("eight_gaussians", 4000, seed=0).double()
    ring = ring_gmm(8, std=0.1)
    # Every point lies near one of the 8 ring modes, and each mode gets ~1/8 of the points.
    d, k = torch.cdist(x, ring.means).min(1)
    assert float(d.max()) < 0.6
    counts = torch.bincount(k, minlength=8).double()
    assert torch.all((counts / 4000 - 1 / 8).abs() < 4 * math.sqrt(1 / 8 * 7 / 8 / 4000))
    y = make_toy("gmm", 4000, seed=0).double()
    d, k = torch.cdist(y, default_gmm2d().means).min(1)
    assert float(d.max()) < 0.9 and torch.bincount(k, minlength=9).min() > 300


def test_checkerboard_cells_and_density():
    x = checkerboard(80_000, seed=0).double()
    L = math.sqrt(3)
    assert float(x.abs().max()) <= L
    # Brute-force cell counts on the 4 x 4 board: black cells (i + j even) get 1/8 each,
    # white cells none.
    h = 2 * L / 4
    i = ((x[:, 0] + L) / h).floor().clamp(0, 3).long()
    j = ((x[:, 1] + L) / h).floor().clamp(0, 3).long()
    counts = torch.bincount(i * 4 + j, minlength=16).reshape(4, 4)
    for a in range(4):
        for b in range(4):
            frac = counts[a, b] / len(x)
            if (a + b) % 2:
                assert frac == 0
            else:
                assert abs(frac - 1 / 8) < 4 * math.sqrt(1 / 8 * 7 / 8 / len(x))
    # Correlation of the coordinates is 3/16 (from the cell centres).
    assert abs(float(torch.corrcoef(x.T)[0, 1]) - 3 / 16) < 0.02


def test_checkerboard_log_prob_normalised_and_entropy():
    assert CHECKERBOARD_ENTROPY == pytest.approx(math.log(6))
    # Midpoint rule on a fine grid: the density integrates to 1.
    h = 0.01
    u = torch.arange(-2.0, 2.0, h, dtype=torch.float64) + h / 2
    grid = torch.cartesian_prod(u, u)
    p = checkerboard_log_prob(grid).exp()
    assert float(p.sum() * h * h) == pytest.approx(1.0, abs=0.01)
    # Samples all have log p = -log 6, so -E[log p] = log 6 exactly.
    lp = checkerboard_log_prob(checkerboard(1000, seed=1))
    assert torch.allclose(lp, torch.full_like(lp, -math.log(6)))
    # Known points: the lower-left cell is black, its right neighbour white, outside -inf.
    L = math.sqrt(3)
    pts = torch.tensor([[-L + 0.1, -L + 0.1], [-L + 1.0, -L + 0.1], [2.0, 0.0]])
    out = checkerboard_log_prob(pts)
    assert out[0] == pytest.approx(-math.log(6)) and out[1] == -math.inf and out[2] == -math.inf


def test_errors():
    with pytest.raises(ValueError, match=r"unknown toy data set 'spiral'.*checkerboard.*moons"):
        make_toy("spiral", 10)
    for n in (0, -5):
        with pytest.raises(ValueError, match="positive int"):
            make_toy("moons", n)
    with pytest.raises(TypeError, match="positive int"):
        make_toy("gmm", 10.0)
    with pytest.raises(ValueError, match="non-negative"):
        make_toy("checkerboard", 10, seed=-1)
    with pytest.raises(ValueError, match=r"expected \(n, 2\)"):
        checkerboard_log_prob(torch.zeros(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        checkerboard_log_prob(np.zeros((3, 2)))
