"""dmlib.cnf: traces against brute-force Jacobians and closed-form variances, the CNF
likelihood against a linear flow's Gaussian density and against numerical integration."""

import math

import numpy as np
import pytest
import torch
from scipy.linalg import expm
from scipy.stats import multivariate_normal
from torch import nn

from dmlib.cnf import (CNF, VectorField, cnf_nll_loss, draw_probes, exact_trace,
                       hutchinson_divergence, hutchinson_trace)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

A = np.array([[0.3, -0.8], [0.5, -0.6]])  # Tr(A) = -0.3


class LinearField(nn.Module):
    """f(z, t) = A z: z_1 = expm(A) z_0, a Gaussian density with a closed form."""

    dim = 2

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.tensor(A))

    def forward(self, z, t):
        return z @ self.A.T


def _field(seed=0):
    torch.manual_seed(seed)
    return VectorField(2, hidden=16, depth=2).double()


def _z(n, seed=1, d=2):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_exact_trace_matches_brute_force_jacobian():
    f, z = _field(), _z(5)
    out, tr = exact_trace(f, z, 0.4)
    assert torch.allclose(out, f(z, 0.4))
    for i in range(5):
        J = torch.autograd.functional.jacobian(lambda v: f(v[None], 0.4)[0], z[i])
        assert abs(float(torch.trace(J)) - float(tr[i])) < 1e-12


def test_hutchinson_is_unbiased_with_the_closed_form_variance():
    # one fixed matrix J, many probes: mean -> Tr(J); variance: Gaussian 2||S||_F^2,
    # Rademacher 2(||S||_F^2 - sum_i S_ii^2), S = (J + J^T) / 2
    J = torch.tensor([[1.0, 2.0, 0.0], [-0.5, 0.3, 1.0], [0.4, 0.0, -2.0]], dtype=torch.float64)
    S = (J + J.T) / 2
    K, n = 200_000, 1
    vjp = lambda v: v @ J  # noqa: E731  (B, d) -> v^T J
    for kind, var in [("gaussian", 2 * (S ** 2).sum()),
                      ("rademacher", 2 * ((S ** 2).sum() - (S.diag() ** 2).sum()))]:
        eps = draw_probes((K, n, 3), kind, torch.Generator().manual_seed(0), torch.float64)
        single = (eps @ J * eps).sum(-1)[:, 0]  # K one-probe estimates
        se = math.sqrt(float(var) / K)
        assert abs(float(single.mean()) - float(torch.trace(J))) < 4 * se
        assert abs(float(single.var()) / float(var) - 1) < 0.03
        assert torch.allclose(hutchinson_trace(vjp, eps[:10]), single[:10].mean().reshape(1))


def test_hutchinson_divergence_uses_autograd_vjp():
    f, z = _field(2), _z(4, 3)
    # 5000 single-probe estimates per point in one batch (z repeated), then averaged
    eps = draw_probes((1, 5000 * 4, 2), "gaussian", torch.Generator().manual_seed(1), torch.float64)
    _, est = hutchinson_divergence(f, z.repeat(5000, 1), 0.2, eps)
    _, tr = exact_trace(f, z, 0.2)
    # Monte Carlo with 5000 probes: well within 0.1 for this small field
    assert (est.reshape(5000, 4).mean(0) - tr).abs().max() < 0.1
    eps = draw_probes((1, 4, 2), "gaussian", torch.Generator().manual_seed(1), torch.float64)
    e1 = eps
    _, one = hutchinson_divergence(f, z, 0.2, e1)
    J = [torch.autograd.functional.jacobian(lambda v: f(v[None], 0.2)[0], z[i]) for i in range(4)]
    ref = torch.stack([e1[0, i] @ J[i] @ e1[0, i] for i in range(4)])
    assert torch.allclose(one, ref, atol=1e-12)


@pytest.mark.parametrize("method, n_steps", [("rk4", 20), ("euler", 2000)])
def test_linear_cnf_log_prob_and_sample_match_closed_form(method, n_steps):
    M = expm(A)
    cnf = CNF(LinearField(), n_steps=n_steps, method=method)
    x = _z(6, 5)
    with torch.no_grad():
        lp = cnf.log_prob(x).numpy()
    ref = multivariate_normal(np.zeros(2), M @ M.T).logpdf(x.numpy())
    assert np.abs(lp - ref).max() < (1e-7 if method == "rk4" else 2e-3)
    # sampling 0 -> 1 from the same seed maps z_0 to expm(A) z_0
    z0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(7)).double()
    xs = cnf.sample(3, torch.Generator().manual_seed(7))
    assert np.allclose(xs.numpy(), z0.numpy() @ M.T, atol=1e-8 if method == "rk4" else 2e-3)


def test_cnf_density_integrates_to_one():
    torch.manual_seed(0)
    cnf = CNF(_field(4), n_steps=8)
    with torch.no_grad():
        for p in cnf.parameters():
            p.mul_(2.0)  # a visibly non-Gaussian flow
    g = torch.linspace(-7, 7, 141, dtype=torch.float64)
    xy = torch.cartesian_prod(g, g)
    with torch.no_grad():
        p = cnf.log_prob(xy).exp()
    mass = float(p.sum()) * float(g[1] - g[0]) ** 2
    assert abs(mass - 1) < 5e-3


def test_hutchinson_log_prob_is_unbiased_and_training_gradient_flows():
    cnf = CNF(_field(5), n_steps=4)
    x = _z(3, 6)
    with torch.no_grad():
        exact = cnf.log_prob(x)
        # 2000 independent single-probe likelihoods per point, in one batch
        est = cnf.log_prob(x.repeat(2000, 1), trace="hutchinson", n_probes=1, probe="gaussian",
                           generator=torch.Generator().manual_seed(0)).reshape(2000, 3).mean(0)
    assert (est - exact).abs().max() < 0.05
    loss = cnf_nll_loss(cnf, x)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in cnf.parameters())
    assert not cnf.log_prob(x).requires_grad or torch.is_grad_enabled()
    with torch.no_grad():
        assert not cnf.log_prob(x).requires_grad


def test_bad_inputs():
    with pytest.raises(ValueError, match="hidden"):
        VectorField(2, hidden=0)
    f = VectorField(2)
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        f(torch.zeros(3, 3), 0.0)
    with pytest.raises(ValueError, match="scalar time"):
        f(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="method"):
        CNF(f, method="dopri5")
    cnf = CNF(f)
    with pytest.raises(ValueError, match="trace"):
        cnf.log_prob(torch.zeros(2, 2), trace="approx")
    with pytest.raises(ValueError, match="kind"):
        draw_probes((1, 2, 2), "uniform")
    with pytest.raises(ValueError, match=r"\(K, B, d\)"):
        hutchinson_trace(lambda v: v, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="positive int"):
        cnf.sample(0)
    with pytest.raises(ValueError, match="n_steps"):
        cnf.log_prob(torch.zeros(2, 2), n_steps=-1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        cnf.log_prob([[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"shape \(B, d\)"):
        cnf.log_prob(torch.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cnf.log_prob(torch.zeros(2, 2), t=1.5)
