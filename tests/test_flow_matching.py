"""Flow matching (chapter 10) against independent references: the noised mixture's
log-density (autograd), Monte Carlo posteriors with standard errors, the VP probability-flow
ODE of chapter 8 and the convergence order of fixed-step solvers."""

import math

import pytest
import torch

from dmlib.data import default_gmm2d
from dmlib.data.mixture import GaussianMixture
from dmlib.flow_matching import (EpsAsVelocity, VelocityAsEps, conditional_velocity,
                                 eps_from_velocity, fm_loss, fm_sample, gmm_velocity,
                                 straight_path, straight_schedule, straightness,
                                 velocity_from_eps, vp_times)
from dmlib.ode import odeint
from dmlib.optimal import OptimalDenoiser
from dmlib.sampling import sample
from dmlib.schedules import Schedule

G = default_gmm2d()


def _x(n, seed, d=2):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("t", [0.05, 0.3, 0.6, 0.95])
def test_gmm_velocity_is_minus_x_plus_t_score_over_1_minus_t(t):
    # x = (1-t) x0 + t eps: E[eps|x] = -t grad log p_t(x), so u = -(x + t grad log p_t) / (1-t)
    x = _x(50, 1).requires_grad_()
    pt = GaussianMixture(G.weights, (1 - t) * G.means, (1 - t) ** 2 * G.var + t ** 2)
    score, = torch.autograd.grad(pt.log_prob(x).sum(), x)
    ref = -(x.detach() + t * score) / (1 - t)
    assert torch.allclose(gmm_velocity(G, x.detach(), t), ref, atol=1e-10)


@pytest.mark.parametrize("t", [0.3, 0.7])
def test_gmm_velocity_matches_monte_carlo_posterior(t):
    # self-normalised importance sampling of E[eps - x0 | x_t = x]: x0 ~ data, weights N(x; (1-t) x0, t^2 I)
    x0 = G.sample(400_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for x in _x(3, 4):
        logw = -((x - (1 - t) * x0) ** 2).sum(1) / (2 * t * t)
        w = torch.softmax(logw, 0)
        f = (x - (1 - t) * x0) / t - x0  # eps - x0 given x0 and x_t = x
        est = (w[:, None] * f).sum(0)
        se = ((w[:, None] ** 2) * (f - est) ** 2).sum(0).sqrt()
        u = gmm_velocity(G, x[None], t)[0]
        assert ((u - est).abs() <= 5 * se + 1e-4).all(), (u, est, se)


def test_gmm_velocity_ends():
    x = _x(10, 5)
    assert torch.allclose(gmm_velocity(G, x, 0.0), -x)  # E[eps - x0 | x0 = x] = -x
    assert torch.allclose(gmm_velocity(G, x, 1.0), x - G.mean())  # eps = x, E[x0] = mean
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gmm_velocity(G, x, 1.5)


class _Lin(torch.nn.Module):
    """v(x, k) = W [x, t, 1]: few parameters, so a Monte Carlo gradient has a small s.e."""

    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(torch.randn(2, 4, generator=torch.Generator().manual_seed(0),
                                                dtype=torch.float64))

    def forward(self, x, k):
        t = (k.double() / 1000)[:, None]
        return torch.cat([x, t, torch.ones_like(t)], 1) @ self.W.T


def _grad_diff(target_kind, n_chunks=40, chunk=2000):
    """Per chunk: grad of the conditional loss minus grad of the marginal loss, on the same
    (x0, eps, k): both are unbiased for their loss, so the difference has mean 0 iff the two
    losses have the same gradient."""
    model, g = _Lin(), torch.Generator().manual_seed(7)
    diffs = []
    for _ in range(n_chunks):
        x0 = G.sample(chunk, generator=g, dtype=torch.float64)
        eps = torch.randn(chunk, 2, generator=g, dtype=torch.float64)
        k = 100 * torch.randint(0, 10, (chunk,), generator=g)  # any law of t will do; t < 1
        t = k.double() / 1000
        xt = straight_path(x0, eps, t)
        u = _u_batched(xt, t)
        cond = eps - x0 if target_kind == "cond" else eps
        v = model(xt, k)
        gc, = torch.autograd.grad((v - cond).pow(2).mean(), model.W)
        gm, = torch.autograd.grad((model(xt, k) - u).pow(2).mean(), model.W)
        diffs.append((gc - gm).flatten())
    d = torch.stack(diffs)
    return d.mean(0), d.std(0) / math.sqrt(n_chunks)


def _u_batched(xt, t):
    out = torch.empty_like(xt)
    for tv in t.unique():
        m = t == tv
        out[m] = gmm_velocity(G, xt[m], float(tv))
    return out


def test_conditional_and_marginal_losses_have_the_same_gradient():
    mean, se = _grad_diff("cond")
    z = (mean / se).abs()
    assert (z < 4.5).all(), z
    # and the test can fail: a wrong conditional target (eps alone) is far off
    mean_w, se_w = _grad_diff("eps", n_chunks=10)
    assert (mean_w / se_w).abs().max() > 20


def test_eps_velocity_round_trip_and_optimal_models():
    x, eps = _x(20, 8), _x(20, 9)
    t = torch.rand(20, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.98
    v = velocity_from_eps(eps, x, t)
    assert torch.allclose(eps_from_velocity(v, x, t), eps, atol=1e-12)
    # on the straight path with the true (x0, eps) the formula gives the conditional velocity
    x0 = _x(20, 10)
    xt = straight_path(x0, eps, t)
    assert torch.allclose(velocity_from_eps(eps, xt, t), conditional_velocity(x0, eps), atol=1e-10)
    # the optimal VP eps-model, seen as a velocity field, is the closed-form marginal velocity
    lin = Schedule.linear(1000)
    opt, tk = OptimalDenoiser(G, lin), vp_times(lin)
    for k in (1, 250, 700, 1000):
        kk = torch.full((20,), k)
        assert torch.allclose(EpsAsVelocity(opt, lin)(x, kk), gmm_velocity(G, x, float(tk[k])),
                              atol=1e-8), k
    # a v-prediction model gives the same field once converted
    opt_v = EpsAsVelocity(OptimalDenoiser(G, lin, "v"), lin, prediction_type="v")
    kk = torch.full((20,), 400)
    assert torch.allclose(opt_v(x, kk), gmm_velocity(G, x, float(tk[400])), atol=1e-8)
    # and back: the exact velocity as an eps-model on the straight schedule is the optimal eps
    sch = straight_schedule(1000)
    back, opt_s = VelocityAsEps(_Exact(), sch), OptimalDenoiser(G, sch)
    for k in (1, 250, 700, 999):
        kk = torch.full((20,), k)
        assert torch.allclose(back(x, kk), opt_s(x, kk), atol=1e-8), k


def test_straight_schedule_times():
    sch = straight_schedule(1000)
    tk = vp_times(sch)
    assert torch.allclose(tk[:1000], torch.arange(1000, dtype=torch.float64) / 1000, atol=1e-12)
    assert 0.9999 < float(tk[1000]) < 1.0


class _Exact(torch.nn.Module):
    def __init__(self, T=1000):
        super().__init__()
        self.T = T

    def forward(self, x, k):
        out = torch.empty_like(x)
        for kv in k.unique():
            m = k == kv
            out[m] = gmm_velocity(G, x[m], float(kv) / self.T)
        return out


@pytest.mark.parametrize("S", [1, 5, 20])
def test_ddim_in_the_sampler_loop_is_euler_in_t(S):
    sch, vm, x1 = straight_schedule(1000), _Exact(), _x(300, 11)
    euler = fm_sample(vm, x1, S, method="euler")
    ddim = sample(VelocityAsEps(vm, sch), sch, x1.shape, "ddim", steps=S, x_T=x1)
    # only difference: the loop starts at t_T = 1 - 3e-5 (beta_T capped), Euler at t = 1
    assert (euler - ddim).abs().max() < 5e-4
    assert (euler - fm_sample(vm, x1, S + 1, method="euler")).abs().max() > 1e-3  # not vacuous


def test_flow_ode_agrees_with_the_vp_probability_flow_ode():
    # chapter 8's PF-ODE with the optimal eps (Heun in sigma) and the closed-form velocity on the
    # straight path (RK4 in t), started from the same point: the same ODE on two clocks
    lin = Schedule.linear(1000)
    xT = _x(200, 12)
    vp = sample(OptimalDenoiser(G, lin), lin, xT.shape, "heun", steps=400, x_T=xT)
    tT = float(vp_times(lin)[1000])
    a, s = float(lin.sqrt_alpha_bar[1000]), float(lin.sqrt_one_minus_alpha_bar[1000])
    t1 = float(vp_times(lin)[1])
    x_fm = odeint(lambda x, t: gmm_velocity(G, x, t), xT / (a + s), tT, t1, 400, "rk4")
    a1, s1 = float(lin.sqrt_alpha_bar[1]), float(lin.sqrt_one_minus_alpha_bar[1])
    # the VP loop's last step jumps from t = 1 to 0 with x0_hat; compare x at t = 1 mapped back
    vp1 = sample(OptimalDenoiser(G, lin), lin, xT.shape, "heun", steps=400, x_T=xT,
                 return_trajectory=True)[1]
    k_last = min(k for k in vp1 if k > 0)
    x_vp_at = vp1[k_last] / (float(lin.sqrt_alpha_bar[k_last]) + float(lin.sqrt_one_minus_alpha_bar[k_last]))
    x_fm_at = odeint(lambda x, t: gmm_velocity(G, x, t), xT / (a + s), tT,
                     float(vp_times(lin)[k_last]), 400, "rk4")
    err = (x_vp_at - x_fm_at).abs().max()
    assert err < 2e-3, err
    assert (vp - x_fm).abs().max() < 2e-2
    # a different ODE (half the velocity) is far away: the comparison can fail
    x_bad = odeint(lambda x, t: 0.5 * gmm_velocity(G, x, t), xT / (a + s), tT,
                   float(vp_times(lin)[k_last]), 400, "rk4")
    assert (x_vp_at - x_bad).abs().max() > 0.1
    del a1, s1


@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2)])
def test_solver_convergence_order_on_the_exact_flow(method, order):
    f = lambda x, t: gmm_velocity(G, x, t)  # noqa: E731
    x1 = _x(100, 13)
    ref = odeint(f, x1, 1.0, 0.2, 512, "rk4")
    errs = [float((odeint(f, x1, 1.0, 0.2, n, method) - ref).norm()) for n in (32, 64, 128)]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - order) < 0.25 for r in rates), rates


def test_fm_loss_matches_the_formula_and_pairs():
    torch.manual_seed(0)
    model = _Lin()
    x0, eps = _x(8, 14), _x(8, 15)
    k = torch.tensor([0, 1, 10, 100, 500, 900, 999, 1000])
    t = k.double() / 1000
    xt = (1 - t)[:, None] * x0 + t[:, None] * eps
    ref = ((model(xt, k) - (eps - x0)) ** 2).mean()
    assert torch.allclose(fm_loss(model, (x0, eps), 1000, k=k), ref)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    eps_g = torch.randn(x0.shape, generator=g2, dtype=x0.dtype)
    assert torch.allclose(fm_loss(model, x0, 1000, generator=g1, k=k),
                          fm_loss(model, (x0, eps_g), 1000, k=k))


def test_straightness():
    ts = torch.linspace(1, 0, 11, dtype=torch.float64)
    x0, eps = _x(5, 16), _x(5, 17)
    line = torch.stack([straight_path(x0, eps, float(t)) for t in ts])
    assert straightness(line) < 1e-20
    # a quarter circle of radius 1 at constant speed: |v| = pi/2, chord sqrt 2
    th = (1 - ts) * math.pi / 2
    arc = torch.stack([torch.cos(th), torch.sin(th)], -1)[:, None, :]
    r_v, r_c = math.pi / 2, math.sqrt(2)
    exact = r_v ** 2 - r_c ** 2  # int |c - v|^2 dt = |v|^2 - 2 c . int v dt + |c|^2, int v dt = c
    ts2 = torch.linspace(1, 0, 2001, dtype=torch.float64)
    th2 = (1 - ts2) * math.pi / 2
    arc_fine = torch.stack([torch.cos(th2), torch.sin(th2)], -1)[:, None, :]
    assert abs(straightness(arc_fine) - exact) < 1e-3 * exact
    assert straightness(arc) > 0.1
    with pytest.raises(ValueError):
        straightness(torch.zeros(1, 2, 2))
