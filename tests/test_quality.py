"""Tests for dmlib.quality: the Fréchet distance against scipy and closed forms, the
confident share and class entropy, and the shipped classifier's accuracy."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from dmlib.models import ClassifierConfig, MnistClassifier
from dmlib.quality import (LN10, class_entropy, classify, confident_share, frechet_distance,
                           frechet_from_stats, gaussian_stats)


def _spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("d", [1, 3, 16])
def test_frechet_matches_scipy_sqrtm(d):
    c1, c2 = _spd(d, 1), _spd(d, 2)
    m1, m2 = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    covmean = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real  # the FID reference recipe
    ref = float(((m1 - m2) ** 2).sum()) + np.trace(c1.numpy() + c2.numpy() - 2 * covmean)
    assert frechet_from_stats(m1, c1, m2, c2) == pytest.approx(ref, rel=1e-8, abs=1e-10)


def test_frechet_closed_forms():
    # 1-D Gaussians: W2^2 = (m1 - m2)^2 + (s1 - s2)^2
    one = torch.ones(1, 1, dtype=torch.float64)
    assert frechet_from_stats(torch.tensor([0.5]), 4 * one, torch.tensor([-1.0]), 9 * one) \
        == pytest.approx(1.5 ** 2 + 1.0, rel=1e-12)
    # a pure shift: FD = ||shift||^2
    g = torch.Generator().manual_seed(0)
    f = torch.randn(500, 4, generator=g)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0])
    assert frechet_distance(f, f + shift) == pytest.approx(5.25, rel=1e-6)
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)


def test_gaussian_stats_unbiased():
    f = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, cov = gaussian_stats(f)
    assert torch.allclose(mu, torch.tensor([2.0, 4.0], dtype=torch.float64))
    assert torch.allclose(cov, torch.from_numpy(np.cov(f.numpy().T)).double())
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        gaussian_stats(torch.zeros(5))


def test_confident_share_and_entropy():
    p = torch.tensor([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.2, 0.8]])
    assert confident_share(p) == pytest.approx(0.5)
    assert class_entropy(p) == pytest.approx(math.log(2))  # labels 0, 0, 1, 1
    uniform = torch.eye(10).repeat(3, 1)
    assert class_entropy(uniform) == pytest.approx(LN10)
    assert class_entropy(torch.eye(10)[[3] * 7]) == pytest.approx(0.0)


def test_classifier_shapes_and_errors():
    torch.manual_seed(0)
    m = MnistClassifier(ClassifierConfig(channels=(4, 8), feature_dim=16)).eval()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    feats, probs = classify(m, x, batch_size=2)
    assert feats.shape == (5, 16) and probs.shape == (5, 10)
    assert torch.allclose(probs.sum(1), torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        classify(m, torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        classify(m, torch.full((2, 1, 28, 28), 255.0))
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        m(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        ClassifierConfig(channels=(4,))
