"""Tests for dmlib.metrics against independent references (scipy, linear programming,
brute-force double loops, closed forms)."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from scipy.stats import wasserstein_distance

from dmlib.metrics import (directions, mmd, sample_distance_report, sliced_wasserstein,
                           wasserstein_1d)


def _ot_lp(u: np.ndarray, v: np.ndarray, p: float) -> float:
    """W_p between uniform empirical measures by solving the transport LP (brute force)."""
    n, m = len(u), len(v)
    cost = np.abs(u[:, None] - v[None, :]) ** p
    a_eq = []
    for i in range(n):
        row = np.zeros((n, m)); row[i, :] = 1; a_eq.append(row.ravel())
    for j in range(m):
        col = np.zeros((n, m)); col[:, j] = 1; a_eq.append(col.ravel())
    b_eq = np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)])
    res = linprog(cost.ravel(), A_eq=np.array(a_eq), b_eq=b_eq, bounds=(0, None), method="highs")
    assert res.success
    return res.fun ** (1 / p)


@pytest.mark.parametrize("n,m", [(7, 7), (5, 8), (13, 4), (1, 6)])
def test_w1_matches_scipy(n, m):
    rng = np.random.default_rng(n * 100 + m)
    u, v = rng.normal(size=n), rng.normal(1.0, 2.0, size=m)
    got = float(wasserstein_1d(torch.tensor(u), torch.tensor(v), p=1))
    assert got == pytest.approx(wasserstein_distance(u, v), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("n,m,p", [(6, 6, 2), (5, 7, 2), (4, 9, 3), (8, 3, 1.5)])
def test_wp_matches_linear_program(n, m, p):
    rng = np.random.default_rng(7 * n + m)
    u, v = rng.normal(size=n), rng.exponential(size=m)
    got = float(wasserstein_1d(torch.tensor(u), torch.tensor(v), p=p))
    assert got == pytest.approx(_ot_lp(u, v, p), rel=1e-6)


def test_w1d_batched_rows_are_independent():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(3, 10, generator=g), torch.randn(3, 6, generator=g)
    batched = wasserstein_1d(u, v, p=2)
    assert batched.shape == (3,)
    for i in range(3):
        assert float(batched[i]) == pytest.approx(_ot_lp(u[i].double().numpy(), v[i].double().numpy(), 2), rel=1e-6)


def test_directions_2d_are_evenly_spaced_unit_vectors():
    th = directions(2, 8)
    assert th.shape == (8, 2)
    assert torch.allclose(th.norm(dim=1), torch.ones(8, dtype=th.dtype))
    angles = torch.atan2(th[:, 1], th[:, 0])
    assert torch.allclose(angles, torch.arange(8, dtype=th.dtype) * math.pi / 8)
    th5 = directions(5, 16, seed=3)
    assert th5.shape == (16, 5) and torch.allclose(th5.norm(dim=1), torch.ones(16, dtype=th5.dtype))
    assert torch.equal(th5, directions(5, 16, seed=3))


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_wasserstein_of_a_shift(p):
    # Y = X + c: on direction theta every 1-D W_p equals |<c, theta>| exactly, so
    # SW_p^p = mean_k |c|^p |cos(phi_k - psi)|^p; for K evenly spaced angles (K > p) that
    # mean is the continuous average: 2/pi (p = 1) and 1/2 (p = 2).
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 2, generator=g, dtype=torch.float64)
    c = torch.tensor([0.3, -0.4], dtype=torch.float64)  # |c| = 0.5
    got = sliced_wasserstein(x, x + c, p=p, n_directions=64)
    expected = 0.5 * ((2 / math.pi) if p == 1 else math.sqrt(0.5))
    assert got == pytest.approx(expected, rel=1e-9 if p == 2 else 2e-3)


def test_sliced_wasserstein_zero_and_symmetric():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(50, 2, generator=g), torch.randn(70, 2, generator=g) * 2
    assert sliced_wasserstein(x, x[torch.randperm(50, generator=g)]) == pytest.approx(0, abs=1e-12)
    assert sliced_wasserstein(x, y) == pytest.approx(sliced_wasserstein(y, x), rel=1e-12)
    # in 3-D against a brute-force loop over the same directions with scipy (p = 1)
    x3, y3 = torch.randn(40, 3, generator=g), torch.randn(30, 3, generator=g) + 0.5
    th = directions(3, 20, seed=4).numpy()
    ref = np.mean([wasserstein_distance(x3.double().numpy() @ d, y3.double().numpy() @ d) for d in th])
    assert sliced_wasserstein(x3, y3, p=1, n_directions=20, seed=4) == pytest.approx(ref, rel=1e-9)


def test_mmd_matches_double_loop():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(9, 2)), rng.normal(0.5, 1.0, size=(6, 2))
    h = 0.7

    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * h * h))

    kxx = sum(k(a, b) for a in x for b in x) / 81
    kyy = sum(k(a, b) for a in y for b in y) / 36
    kxy = sum(k(a, b) for a in x for b in y) / 54
    expected = math.sqrt(kxx + kyy - 2 * kxy)
    got = mmd(torch.tensor(x), torch.tensor(y), bandwidth=h, chunk=4)  # chunking exercised
    assert got == pytest.approx(expected, rel=1e-10)
    assert mmd(torch.tensor(x), torch.tensor(x), bandwidth=h) == pytest.approx(0, abs=1e-7)


def test_sample_distance_report_floor_and_ratio():
    def draw(n, seed):
        return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))

    same = sample_distance_report(draw(2000, 5), draw, "sw")
    assert same["ratio"] == pytest.approx(same["distance"] / same["floor"])
    assert 0.5 < same["ratio"] < 2.0  # a sample from the data itself sits at the floor
    shifted = sample_distance_report(draw(2000, 5) + 0.5, draw, "mmd", bandwidth=0.5)
    assert shifted["ratio"] > 5


def test_bad_inputs():
    x = torch.zeros(4, 2)
    with pytest.raises(TypeError, match="torch.Tensor"):
        sliced_wasserstein(np.zeros((4, 2)), x)
    with pytest.raises(ValueError, match="dimension"):
        sliced_wasserstein(x, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="shape"):
        mmd(torch.zeros(4), x)
    with pytest.raises(ValueError, match="NaN"):
        mmd(torch.full((3, 2), float("nan")), x)
    with pytest.raises(ValueError, match="p must be"):
        wasserstein_1d(torch.zeros(3), torch.zeros(3), p=0.5)
    with pytest.raises(ValueError, match="leading"):
        wasserstein_1d(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, bandwidth=0)
    with pytest.raises(ValueError, match="n_directions"):
        directions(2, 0)
    with pytest.raises(ValueError, match="metric"):
        sample_distance_report(x, lambda n, s: x, "kl")
    with pytest.raises(ValueError, match="seeds"):
        sample_distance_report(x, lambda n, s: x, "sw", seeds=(1, 1))
