"""dmlib.ode: Euler and RK4 against closed forms and scipy's solve_ivp (tight tolerances)."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from dmlib.ode import euler_step, odeint, rk4_step


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _f(z, t):  # dz/dt = -z + sin(t), a linear ODE with a time-dependent forcing
    return -z + math.sin(t)


def _scipy(z0, t0, t1):
    sol = solve_ivp(lambda t, y: -y + np.sin(t), (t0, t1), z0, rtol=1e-12, atol=1e-12)
    return sol.y[:, -1]


def test_euler_step_is_one_explicit_step():
    z = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    out = euler_step(lambda z, t: 3 * z + t, z, 0.5, 0.1)
    assert torch.allclose(out, z + 0.1 * (3 * z + 0.5))


def test_rk4_is_exact_for_cubic_in_t():
    # dz/dt = 4 t^3: RK4 (Simpson's rule for z-independent f) integrates it exactly
    z = odeint(lambda z, t: torch.full_like(z, 4 * t ** 3), torch.zeros(1, 1, dtype=torch.float64),
               0.0, 1.0, 1, "rk4")
    assert abs(float(z) - 1.0) < 1e-12


@pytest.mark.parametrize("method, n, tol", [("euler", 2000, 1e-3), ("rk4", 100, 5e-9)])
def test_odeint_matches_solve_ivp(method, n, tol):
    z0 = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    got = odeint(_f, z0, 0.0, 2.0, n, method)[0].numpy()
    assert np.abs(got - _scipy(z0[0].numpy(), 0.0, 2.0)).max() < tol


@pytest.mark.parametrize("method, order", [("euler", 1), ("rk4", 4)])
def test_convergence_order(method, order):
    z0 = torch.tensor([[1.0]], dtype=torch.float64)
    ref = _scipy([1.0], 0.0, 1.0)[0]
    ns = [8, 16, 32, 64]
    errs = [abs(float(odeint(_f, z0, 0.0, 1.0, n, method)) - ref) for n in ns]
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.15


def test_backward_integration_inverts_forward():
    z0 = torch.tensor([[0.3, 0.7]], dtype=torch.float64)
    z1 = odeint(_f, z0, 0.0, 1.0, 50, "rk4")
    back = odeint(_f, z1, 1.0, 0.0, 50, "rk4")
    assert torch.allclose(back, z0, atol=1e-8)


def test_return_path_shape_and_endpoints():
    z0 = torch.zeros(4, 2, dtype=torch.float64)
    path = odeint(_f, z0, 0.0, 1.0, 5, "euler", return_path=True)
    assert path.shape == (6, 4, 2)
    assert torch.equal(path[0], z0)
    assert torch.allclose(path[-1], odeint(_f, z0, 0.0, 1.0, 5, "euler"))


def test_linear_system_matches_expm():
    from scipy.linalg import expm
    A = np.array([[-0.5, 1.0], [-1.0, -0.2]])
    At = torch.tensor(A)
    z0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    z1 = odeint(lambda z, t: z @ At.T, z0, 0.0, 1.0, 40, "rk4")
    assert np.allclose(z1[0].numpy(), expm(A) @ z0[0].numpy(), atol=1e-9)


def test_bad_inputs():
    z = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="method"):
        odeint(_f, z, method="midpoint")
    with pytest.raises(ValueError, match="n_steps"):
        odeint(_f, z, n_steps=0)
    with pytest.raises(ValueError, match="n_steps"):
        odeint(_f, z, n_steps=2.5)
    with pytest.raises(TypeError, match="callable"):
        odeint(3, z)
    with pytest.raises(TypeError, match="z must be a torch.Tensor"):
        euler_step(_f, [1.0, 2.0], 0.0, 0.1)
    with pytest.raises(ValueError, match="shaped like z"):
        rk4_step(lambda z, t: z[:, :1], z, 0.0, 0.1)
    with pytest.raises(TypeError, match="t1"):
        odeint(_f, z, 0.0, float("nan"))
