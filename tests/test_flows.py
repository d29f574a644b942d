"""dmlib.flows: coupling layers against brute-force Jacobians, RealNVP densities against
numerical integration."""

import math

import numpy as np
import pytest
import torch

from dmlib.flows import (AffineCoupling, RealNVP, coupling_log_det, flow_nll_loss,
                         standard_normal_log_prob)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _randomise(model, seed=0, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def test_standard_normal_log_prob_matches_scipy():
    from scipy.stats import multivariate_normal
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z.numpy())
    assert np.allclose(standard_normal_log_prob(z).numpy(), ref)


@pytest.mark.parametrize("mask", [[1.0, 0.0], [0.0, 1.0]])
def test_coupling_inverse_and_log_det_vs_brute_force_jacobian(mask):
    layer = _randomise(AffineCoupling(torch.tensor(mask), hidden=16)).double()
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x, ld = layer(z)
    back, ld_inv = layer.inverse(x)
    assert torch.allclose(back, z, atol=1e-10) and torch.allclose(ld, ld_inv, atol=1e-10)
    for i in range(6):  # log|det| of the full 2x2 Jacobian, by autograd
        J = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], z[i])
        assert abs(float(torch.linalg.slogdet(J.detach())[1]) - float(ld[i].detach())) < 1e-10
    assert torch.allclose(coupling_log_det(z, layer.mask.double(), layer.log_scale), ld)


def test_coupling_starts_as_identity():
    layer = AffineCoupling(torch.tensor([1.0, 0.0]))
    z = torch.randn(4, 2)
    x, ld = layer(z)
    assert torch.equal(x, z) and torch.equal(ld, torch.zeros(4))


def test_realnvp_density_integrates_to_one_and_matches_change_of_variables():
    flow = _randomise(RealNVP(2, n_layers=4, hidden=16), seed=3, scale=0.4).double()

    # numerical integration: the midpoint rule on a fine grid (the density is smooth)
    g = torch.linspace(-10, 10, 401, dtype=torch.float64)
    with torch.no_grad():
        p = flow.log_prob(torch.cartesian_prod(g, g)).exp()
    total = float(p.sum()) * float(g[1] - g[0]) ** 2
    assert abs(total - 1) < 2e-3
    # the log-det equals the brute-force log|det df/dz| of the whole stack
    z = torch.randn(3, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x, ld = flow(z)
    for i in range(3):
        J = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[i])
        assert abs(float(torch.linalg.slogdet(J.detach())[1]) - float(ld[i].detach())) < 1e-9
    lp = flow.log_prob(x)
    assert torch.allclose(lp, standard_normal_log_prob(z) - ld, atol=1e-9)


def test_realnvp_sample_shape_and_seed():
    flow = _randomise(RealNVP(2, n_layers=2, hidden=8))
    a = flow.sample(7, torch.Generator().manual_seed(0))
    b = flow.sample(7, torch.Generator().manual_seed(0))
    assert a.shape == (7, 2) and torch.equal(a, b)


def test_training_reduces_nll():
    torch.manual_seed(0)
    x = torch.randn(512, 2) * torch.tensor([2.0, 0.5]) + 1.0
    flow = RealNVP(2, n_layers=4, hidden=16)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)
    with torch.no_grad():
        start = float(flow_nll_loss(flow, x))
    for _ in range(150):
        opt.zero_grad()
        flow_nll_loss(flow, x).backward()
        opt.step()
    # the true entropy of N(1, diag(4, 0.25)) is 1 + log(2 pi) + log(2 * 0.5)
    target = 1 + math.log(2 * math.pi)
    with torch.no_grad():
        end = float(flow_nll_loss(flow, x))
    assert end < start and end < target + 0.1


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one 1"):
        AffineCoupling(torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="zeros and ones"):
        AffineCoupling(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="dim"):
        RealNVP(dim=1)
    with pytest.raises(ValueError, match="n_layers"):
        RealNVP(n_layers=0)
    flow = RealNVP(2, 2, 8)
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        flow.log_prob(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        flow.log_prob([[0.0, 0.0]])
    with pytest.raises(ValueError, match="positive int"):
        flow.sample(0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        standard_normal_log_prob([0.0, 1.0])
    with pytest.raises(ValueError, match=r"shape \(B, d\)"):
        standard_normal_log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        coupling_log_det(torch.zeros(2, 2), torch.zeros(2, 2), lambda h: h)
    with pytest.raises(ValueError, match="shaped like z"):
        coupling_log_det(torch.zeros(2, 2), torch.tensor([1.0, 0.0]), lambda h: h[:, :1])
