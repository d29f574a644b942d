# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python (diffusion course)
#     language: python
#     name: dmlib-course
# ---

# %% [markdown]
# # Chapter 2: normalizing flows and continuous normalizing flows
#
# The lecture opens with a recap of **normalizing flows**: push simple noise through an
# invertible map, and the *change of variables* formula gives the exact likelihood of the
# data. It then lets the number of maps go to infinity, which turns the flow into an ODE:
# a **continuous normalizing flow** (CNF). Diffusion models, the subject of the rest of the
# course, are CNFs at inference time; this chapter builds the pieces that statement needs.
#
# 1. the change of variables, checked on maps whose density we know, then a small
#    discrete flow (affine coupling layers) trained by maximum likelihood (C2.1, C2.2);
# 2. the ODE $dz/dt = f(z_t, t)$ and two solvers, Euler and RK4, with their convergence
#    orders measured (C2.3);
# 3. the instantaneous change of variables, **with the sign the slide drops**, the exact
#    trace, and Hutchinson's estimator (C2.4);
# 4. a CNF trained by maximum likelihood on the same data, and which direction to integrate
#    for what (C2.5);
# 5. the pros and cons of the slide, *measured*: time per step and test log-likelihood of
#    both models, against the true entropy of the data (C2.6).
#
# Notation, as on the slides: $z_0$ is noise, $z_0 \sim \mathcal N(0, I)$, and the flow maps
# it to data $x$ ($= z_K$ for a discrete flow, $= z_1$ for a CNF).
#
# **Where this chapter sits.** It follows the lecture's opening recap. Chapters 3 to 7 do
# not need it: on a DDPM-only path, skip to chapter 3 and come back before chapter 8, which
# reads diffusion as a flow. Sections 4 and 5 (training a CNF, the measured pros and cons)
# take the most computing time.
#
# **Objectives.** After this chapter you can
#
# * compute the exact log-likelihood of a normalizing flow with the change of variables,
#   and the log-determinant of an affine coupling layer;
# * solve an ODE with Euler's method and RK4, and measure their orders of convergence;
# * state the instantaneous change of variables with the right sign, and estimate a trace
#   with Hutchinson's estimator;
# * train a continuous normalizing flow by maximum likelihood, integrate it in the right
#   direction for sampling and for likelihood, and weigh its cost against a discrete flow's.

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

import dmlib
from dmlib import checks

gen = dmlib.seed_everything(0)
# The models here are tiny (2-D inputs, 64 hidden units): one thread is as fast as two and
# does not fight other processes for the cores.
torch.set_num_threads(1)
print("quick mode:", dmlib.QUICK)

# %% [markdown]
# ## 1. The change of variables
#
# Let $z \sim p_z$ and $x = f(z)$ with $f$ invertible and differentiable. Probability mass is
# conserved, $p_x(x)\,|dx| = p_z(z)\,|dz|$, so
#
# $$\log p_x(x) = \log p_z\!\left(f^{-1}(x)\right) - \log\left|\det \frac{\partial f}{\partial z}\right|_{z = f^{-1}(x)}.$$
#
# For a composition $x = z_K = f_K \circ \dots \circ f_1(z_0)$ the log-determinants add up,
# which is the slide's formula:
#
# $$\log p_x(x) = \log p_z\!\left(f^{-1}(x)\right) - \sum_{i=1}^K \log\left|\det \frac{\partial f_i}{\partial z_{i-1}}\right|.$$
#
# ### 1.1 An affine map of a Gaussian
#
# $x = W z + b$ with $z \sim \mathcal N(0, I)$ is Gaussian, $\mathcal N(b, W W^\top)$, and
# $\log|\det \partial f/\partial z| = \log|\det W|$. The formula must reproduce scipy's
# Gaussian density:

# %%
# NBVAL_CHECK_OUTPUT
from scipy.stats import multivariate_normal

from dmlib.flows import standard_normal_log_prob

W = torch.tensor([[1.5, 0.4], [-0.3, 0.6]], dtype=torch.float64)
b = torch.tensor([0.5, -1.0], dtype=torch.float64)
x = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2

z = torch.linalg.solve(W, (x - b).T).T  # f^{-1}(x) = W^{-1} (x - b)
log_px = standard_normal_log_prob(z) - torch.linalg.slogdet(W)[1]  # change of variables
ref = multivariate_normal(b.numpy(), (W @ W.T).numpy()).logpdf(x.numpy())
print(f"log|det W| = {torch.linalg.slogdet(W)[1]:.4f}")
err = np.abs(log_px.numpy() - ref).max()
print(f"change of variables vs scipy's log-density at 1000 points: max error {err:.1e} "
      f"(< 1e-10: {bool(err < 1e-10)})")

# %% [markdown]
# ### 1.2 A nonlinear bijection
#
# An affine map only moves and stretches a Gaussian. A nonlinear $f$ changes its shape: take
# $x = \sinh(z)$ in 1-D, so $f^{-1}(x) = \operatorname{asinh}(x)$ and
# $df/dz = \cosh z = \sqrt{1 + x^2}$:
#
# $$p_x(x) = \mathcal N\!\left(\operatorname{asinh} x; 0, 1\right) / \sqrt{1 + x^2}.$$
#
# Two independent checks: the density integrates to one (scipy's adaptive quadrature), and
# it matches a histogram of samples $\sinh(z)$.

# %%
# NBVAL_CHECK_OUTPUT
from scipy import integrate
from scipy.stats import norm


def p_sinh(x):
    return norm.pdf(np.arcsinh(x)) / np.sqrt(1 + x ** 2)


mass, _ = integrate.quad(p_sinh, -np.inf, np.inf)
samples = np.sinh(np.random.default_rng(0).standard_normal(200_000))
edges = np.linspace(-4, 4, 41)
hist, _ = np.histogram(samples, bins=edges)
hist = hist / (len(samples) * np.diff(edges))  # empirical density per bin
centres = 0.5 * (edges[1:] + edges[:-1])
bin_mass = np.array([integrate.quad(p_sinh, a, c)[0] for a, c in zip(edges[:-1], edges[1:])])
print(f"integral of p_x over the real line: {mass:.6f}")
print(f"histogram vs bin-averaged density: max |diff| = {np.abs(hist - bin_mass / np.diff(edges)).max():.2f}")

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.bar(centres, hist, width=np.diff(edges), alpha=0.4, label="histogram of sinh(z), 200k samples")
xs = np.linspace(-4, 4, 400)
ax.plot(xs, p_sinh(xs), "r", label="change of variables: N(asinh x) / sqrt(1 + x^2)")
ax.plot(xs, norm.pdf(xs), "k--", lw=1, label="p_z = N(0, 1), for comparison")
ax.set(title="x = sinh(z): the density predicted by the change of variables",
       xlabel="x", ylabel="density")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ### 1.3 Affine coupling layers
#
# A flow needs maps that are (i) invertible, (ii) expressive and (iii) have a cheap
# log-determinant: a general $d \times d$ determinant costs $O(d^3)$. The *affine coupling
# layer* (RealNVP) gets all three. A binary mask $m$ splits the coordinates; the kept ones
# ($m_j = 1$) pass unchanged and set a log-scale $s$ and a shift $b$ for the others:
#
# $$f(z) = m \odot z + (1 - m) \odot \left(z \odot e^{s(m \odot z)} + b(m \odot z)\right).$$
#
# The Jacobian is triangular (the kept coordinates do not depend on the transformed ones),
# with diagonal $1$ on kept coordinates and $e^{s_j}$ on the others, so
#
# $$\log\left|\det \frac{\partial f}{\partial z}\right| = \sum_j (1 - m_j)\, s_j(m \odot z).$$
#
# $s$ and $b$ are arbitrary networks: they never need to be inverted, since the inverse only
# re-uses them on $m \odot x = m \odot z$.
#
# **Exercise 2.1 (★★ core).** Write `coupling_log_det(z, mask, log_scale_fn)`: `z` has shape `(B, d)`,
# `mask` shape `(d,)` (ones and zeros), `log_scale_fn` maps `(B, d)` to `(B, d)`.
# Return the log-determinant above, shape `(B,)`.

# %%
def coupling_log_det(z: torch.Tensor, mask: torch.Tensor, log_scale_fn) -> torch.Tensor:
    ### BEGIN SOLUTION
    s = log_scale_fn(mask * z)  # the log-scale sees the kept coordinates only
    return ((1 - mask) * s).sum(dim=-1)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_coupling_log_det(coupling_log_det)

# %% [markdown]
# dmlib's `AffineCoupling` is that layer, and `RealNVP` stacks them with alternating masks.
# A brute-force check: the log-determinant of the whole stack, computed by autograd as
# $\log|\det J|$ of the full $2\times 2$ Jacobian, equals the sum of the layers' cheap
# formulas, and the inverse undoes the forward map.

# %%
# NBVAL_CHECK_OUTPUT
from dmlib.flows import RealNVP

torch.manual_seed(0)
probe_flow = RealNVP(dim=2, n_layers=4, hidden=16).double()
with torch.no_grad():  # random weights, so the check is not trivially the identity
    for p in probe_flow.parameters():
        p.normal_(0, 0.5)
z = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
x_f, log_det = probe_flow(z)
brute = torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(
    lambda v: probe_flow(v[None])[0][0], zi))[1] for zi in z])
print("sum of coupling log-dets:", [round(v, 4) for v in log_det.tolist()])
err_ld = (brute - log_det).abs().max().item()
err_inv = (probe_flow.inverse(x_f)[0] - z).abs().max().item()
print(f"brute-force log|det J| vs the sum of the layers' formulas: max error {err_ld:.1e} "
      f"(< 1e-10: {err_ld < 1e-10})")
print(f"f^-1(f(z)) vs z: max error {err_inv:.1e} (< 1e-10: {err_inv < 1e-10})")

# %% [markdown]
# ### 1.4 A discrete flow trained by maximum likelihood
#
# The data: `dmlib.data.default_gmm2d()`, nine Gaussians on a $3\times3$ grid (std 0.15,
# unit variance per coordinate). Its density is known, so the best achievable test NLL is
# its entropy $H[p] = -\mathbb E_p[\log p(x)]$; every model's **gap** = test NLL $- H[p]
# \ge 0$ (it is a KL divergence, $\mathrm{KL}(p\,\|\,p_\theta)$) says how far it is from the
# truth.
#
# Training maximises $\log p_\theta(x)$ of the slide: encode $x$ to $z_0 = f^{-1}(x)$, add the
# log-determinants, back-propagate. We use the course's training loop `dmlib.training.train`
# (AdamW, and an *exponential moving average* (EMA) of the weights: a second copy
# $\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta$ updated after every step, with decay
# $d = 0.995$ here, which averages out the last few hundred steps' noise; we evaluate that
# copy, `ema_model`).

# %%
from dmlib.data import default_gmm2d
from dmlib.flows import flow_nll_loss
from dmlib.training import TrainConfig, train

gmm = default_gmm2d()
H_true, H_se = gmm.entropy(n_mc=200_000, seed=0)
x_train = gmm.sample(50_000, generator=1)
x_test = gmm.sample(dmlib.quick(2_000, 20_000), generator=2)
print(f"true entropy H[p] = {H_true:.4f} +- {H_se:.4f} nats (Monte Carlo)")

flow_steps = dmlib.quick(60, 2000)
flow = RealNVP(dim=2, n_layers=8, hidden=128)
flow_cfg = TrainConfig(steps=flow_steps, batch_size=512, lr=3e-3, ema_decay=0.995,
                       grad_clip=None, log_every=50, device="cpu")
flow_run = train(flow, flow_nll_loss, x_train, flow_cfg)
flow_model = flow_run.ema_model
with torch.no_grad():
    flow_nll = -flow_model.log_prob(x_test).mean().item()
print(f"RealNVP ({sum(p.numel() for p in flow.parameters())} parameters, {flow_steps} steps, "
      f"{flow_run.seconds / flow_steps * 1e3:.0f} ms/step): test NLL {flow_nll:.3f}, "
      f"gap {flow_nll - H_true:.3f} nats")

# %% [markdown]
# The change of variables holds for the *trained* flow too, whatever its quality: its
# density integrates to one (a Riemann sum on a fine grid), and the log-determinant the
# layers report equals the brute-force $\log|\det J|$ of the whole map at test points.

# %%
# NBVAL_CHECK_OUTPUT
g6 = torch.linspace(-6, 6, 301)
with torch.no_grad():
    mass6 = flow_model.log_prob(torch.cartesian_prod(g6, g6)).exp().sum().item() * (g6[1] - g6[0]).item() ** 2
flow64 = copy.deepcopy(flow_model).double()  # float64: the formulas, not float32 round-off
z_te, ld_te = flow64.inverse(x_test[:5].double())
brute_te = torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(
    lambda v: flow64(v[None])[0][0], zi))[1] for zi in z_te.detach()])
print(f"trained RealNVP: integral of p_x over [-6, 6]^2 = {mass6:.2f}")
err_te = (brute_te - ld_te.detach()).abs().max().item()
print(f"log-det of the layers vs brute-force log|det J| (float64): max error {err_te:.1e} "
      f"(< 1e-10: {err_te < 1e-10})")

# %%
def density_grid(log_prob_fn, lim=3.0, n=120):
    """Evaluate exp(log_prob_fn) on an n x n grid over [-lim, lim]^2."""
    g = torch.linspace(-lim, lim, n)
    xy = torch.cartesian_prod(g, g)  # (n*n, 2), x varies slowest
    with torch.no_grad():
        lp = log_prob_fn(xy).reshape(n, n).T
    return g.numpy(), lp.exp().numpy(), float(lp.exp().sum()) * float(g[1] - g[0]) ** 2


n_grid = dmlib.quick(50, 120)
g, p_true, _ = density_grid(lambda v: gmm.log_prob(v).float(), n=n_grid)
_, p_flow, mass_flow = density_grid(flow_model.log_prob, n=n_grid)
flow_samples = flow_model.sample(2000, torch.Generator().manual_seed(3))


def show_model(p_model, mass: float, samples, name: str) -> None:
    """True density | model density on the grid | data and model samples."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    axes[0].imshow(p_true, origin="lower", extent=[-3, 3, -3, 3], cmap="viridis")
    axes[0].set(title="true density p(x)", xlabel="x_1", ylabel="x_2")
    axes[1].imshow(p_model, origin="lower", extent=[-3, 3, -3, 3], cmap="viridis")
    axes[1].set(title=f"{name} density (mass on grid {mass:.3f})", xlabel="x_1")
    axes[2].scatter(*x_test[:2000].T, s=2, alpha=0.4, label="data")
    axes[2].scatter(*samples.T, s=2, alpha=0.4, label=f"{name} samples")
    axes[2].set(title="samples", xlabel="x_1", xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
    axes[2].legend(markerscale=5, fontsize=8)
    plt.tight_layout()
    plt.show()


show_model(p_flow, mass_flow, flow_samples, "RealNVP")

# %% [markdown]
# In the full run (a minute or two of training) the coupling flow finds the nine modes but
# leaves bridges between them, and its gap stays large: about 0.3 nats, where the CNF of
# section 4 gets under 0.05 in a similar training time (the table in section 5). Two reasons, both
# consequences of the restricted architecture: a smooth invertible map cannot tear the
# single Gaussian blob into nine pieces, so some mass stays on the way from one mode to the
# next; and each coupling layer is *affine* in the coordinate it transforms, so it cannot by
# itself turn a one-bump marginal into three bumps: only the alternation of many layers can.
# More layers and longer training help, slowly. That is the "cons" column of the slide for
# discrete flows.
#
# ## 2. From many steps to an ODE
#
# The slide lets the number of layers grow while each layer does less: $z_{i} = z_{i-1} +
# f(z_{i-1}, t)\,\Delta t$. In the limit the flow is an ordinary differential equation,
#
# $$\frac{dz_t}{dt} = f(z_t, t),\quad 0 \le t \le 1, \qquad z_1 = z_0 + \int_0^1 f(z_t, t)\,dt,$$
#
# and the discrete update is exactly **Euler's method**, $z_{t+\Delta t} \approx z_t +
# f(z_t, t)\,\Delta t$.
#
# > **Think first.** Euler's method makes an error of order $\Delta t^2$ in each step. Over
# > $[0, 1]$ with $n$ steps, how does the final error scale with $n$? So if you double $n$,
# > by what factor should the error of Euler shrink? RK4's local error is of order
# > $\Delta t^5$: what factor for RK4? (The plot below measures both.)
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# The $n$ local errors of order $\Delta t^2 = 1/n^2$ add up (to first order) to a global
# error of order $n \cdot 1/n^2 = 1/n$: Euler is a *first-order* method, and doubling $n$
# halves its error. RK4 is fourth order: a local error of order $\Delta t^5$, a global one of
# order $\Delta t^4$, so doubling $n$ divides the error by $2^4 = 16$, until it reaches the
# floating-point floor. On a log-log plot of error against $n$ the slopes are $-1$ and $-4$.
#
# </details>
#
# **Exercise 2.2 (★ warm-up).** Write one Euler step `euler_step(f, z, t, dt)`: `f(z, t)` returns a tensor
# shaped like `z`; `t` and `dt` are floats (`dt` may be negative).

# %%
def euler_step(f, z: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    return z + dt * f(z, t)  # the slope at the start of the step, times the step size
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_euler_step(euler_step)

# %% [markdown]
# Euler's error over a fixed interval is $O(\Delta t)$: halve the step, halve the error. The
# classical **Runge-Kutta** method (RK4) evaluates $f$ four times per step and combines the
# slopes so that the error is $O(\Delta t^4)$:
#
# $$k_1 = f(z, t),\ k_2 = f(z + \tfrac{\Delta t}{2} k_1, t + \tfrac{\Delta t}{2}),\ k_3 = f(z + \tfrac{\Delta t}{2} k_2, t + \tfrac{\Delta t}{2}),\ k_4 = f(z + \Delta t\, k_3, t + \Delta t),$$
# $$z_{t + \Delta t} = z_t + \tfrac{\Delta t}{6}(k_1 + 2 k_2 + 2 k_3 + k_4).$$
#
# Here it is written out as the lesson; dmlib's `rk4_step` and `odeint` (Euler or RK4 with
# `n_steps` equal steps) are the tested versions used from here on.

# %%
def rk4_step_lesson(f, z, t, dt):
    k1 = f(z, t)
    k2 = f(z + dt / 2 * k1, t + dt / 2)
    k3 = f(z + dt / 2 * k2, t + dt / 2)
    k4 = f(z + dt * k3, t + dt)
    return z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def solve_lesson(step, f, z0, n_steps, t0=0.0, t1=1.0):
    dt, z = (t1 - t0) / n_steps, z0
    for k in range(n_steps):
        z = step(f, z, t0 + k * dt, dt)
    return z


# %% [markdown]
# A test problem with a known, non-trivial solution: a damped rotation with a time-dependent
# forcing, $\frac{dz}{dt} = A z + (\sin 3t, \cos t)$ with $A = \begin{pmatrix} -0.3 & 2 \\ -2 &
# -0.3\end{pmatrix}$, from $z_0 = (1, 0)$ on $[0, 2]$. The reference is scipy's `solve_ivp`
# with tolerances $10^{-12}$.

# %%
# NBVAL_CHECK_OUTPUT
from scipy.integrate import solve_ivp

from dmlib.ode import euler_step as euler_step_ref  # dmlib's reference, whatever you wrote above
from dmlib.ode import odeint

A_np = np.array([[-0.3, 2.0], [-2.0, -0.3]])
A_t = torch.tensor(A_np)


def f_test(z, t):
    return z @ A_t.T + torch.tensor([math.sin(3 * t), math.cos(t)], dtype=z.dtype)


z0_test = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
ref = solve_ivp(lambda t, y: A_np @ y + np.array([np.sin(3 * t), np.cos(t)]), (0, 2), [1.0, 0.0],
                method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
n_list = [8, 16, 32, 64, 128, 256]
errors = {"euler": [], "rk4": []}
lib_gap = 0.0  # the lesson's solvers against dmlib.ode.odeint
for n in n_list:
    for name, step in [("euler", euler_step_ref), ("rk4", rk4_step_lesson)]:
        z1 = solve_lesson(step, f_test, z0_test, n, 0.0, 2.0)
        errors[name].append(float(np.abs(z1[0].numpy() - ref).max()))
        lib_gap = max(lib_gap, (z1 - odeint(f_test, z0_test, 0.0, 2.0, n, name)).abs().max().item())
dts = 2.0 / np.array(n_list)
slopes = {k: np.polyfit(np.log(dts), np.log(v), 1)[0] for k, v in errors.items()}
print(f"fitted order (slope of log error vs log dt): Euler {slopes['euler']:.1f}, "
      f"RK4 {slopes['rk4']:.1f}")
assert lib_gap < 1e-6, lib_gap
print(f"the lesson's solvers vs dmlib.ode.odeint: max difference {lib_gap:.1e} (< 1e-6: True)")

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.8))
for name, marker in [("euler", "o"), ("rk4", "s")]:
    ax.loglog(dts, errors[name], marker=marker,
              label=f"{name}: slope {slopes[name]:.2f} (f evals per step: {1 if name == 'euler' else 4})")
ax.loglog(dts, errors["euler"][0] * (dts / dts[0]), "k:", lw=1, label="slope 1 (reference)")
ax.loglog(dts, errors["rk4"][0] * (dts / dts[0]) ** 4, "k--", lw=1, label="slope 4 (reference)")
ax.set(title="Error at t = 2 against solve_ivp (rtol = atol = 1e-12)", xlabel="step size dt",
       ylabel="max abs error")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Per evaluation of $f$ (the expensive part when $f$ is a network), RK4 wins by orders of
# magnitude as soon as modest accuracy is wanted: 8 RK4 steps (32 evaluations) beat 256
# Euler steps. That is why the CNF below uses RK4 with few steps.
#
# ## 3. The instantaneous change of variables
#
# What happens to the density along the ODE? One Euler step $z \mapsto z + \Delta t\, f(z, t)$
# is a map with Jacobian $I + \Delta t\, \partial f/\partial z$, and
# $\log\det(I + \Delta t\, J) = \Delta t\, \operatorname{Tr}(J) + O(\Delta t^2)$. The change of
# variables then gives $\log p(z_{t+\Delta t}) = \log p(z_t) - \Delta t\,\operatorname{Tr}(J) +
# O(\Delta t^2)$, so in the limit
#
# $$\frac{d \log p(z_t)}{dt} = -\operatorname{Tr}\left(\frac{\partial f}{\partial z_t}\right),
# \qquad \log p(z_1) = \log p(z_0) - \int_0^1 \operatorname{Tr}\left(\frac{\partial f}{\partial z_t}\right) dt.$$
#
# The trace replaces the determinant: no $O(d^3)$ cost and no restriction on $f$.
#
# > **Erratum (slides "Continuous Normalizing Flows", training objective).**
# > The slide writes $\log p(z_1) = \log p(z_0)\int_0^1 \operatorname{Trace}(\partial f/\partial z_t)\,dt$:
# > the minus sign is missing (read literally, it even multiplies).
# > **Correct:** $\log p(z_1) = \log p(z_0) - \int_0^1 \operatorname{Tr}(\partial f/\partial z_t)\,dt$.
# > A flow that expands volume ($\operatorname{Tr} > 0$) spreads the mass and *lowers* the density.
#
# The number that settles it: a **linear** field $f(z, t) = A z$, where everything is closed
# form. $z_1 = e^{A} z_0$, so $z_1 \sim \mathcal N(0, e^{A} e^{A^\top})$; $\operatorname{Tr}(\partial f/\partial z) = \operatorname{Tr}(A)$
# at every point and time. The two versions of the formula differ by $2\operatorname{Tr}(A)$.

# %%
# NBVAL_CHECK_OUTPUT
from scipy.linalg import expm

A_lin = np.array([[0.4, -1.0], [0.7, 0.2]])  # Tr(A) = 0.6: the flow expands volume
M = expm(A_lin)
z0_lin = np.array([0.3, -0.5])
z1_lin = M @ z0_lin
truth = multivariate_normal(np.zeros(2), M @ M.T).logpdf(z1_lin)
log_p0 = multivariate_normal(np.zeros(2), np.eye(2)).logpdf(z0_lin)
trace_integral = np.trace(A_lin) * 1.0  # int_0^1 Tr(A) dt
print(f"true log p(z_1) (Gaussian N(0, e^A e^A^T)):  {truth:.6f}")
print(f"correct: log p(z_0) - int Tr = {log_p0 - trace_integral:.6f}")
print(f"slide:   log p(z_0) + int Tr = {log_p0 + trace_integral:.6f}")
print(f"slide - truth = {log_p0 + trace_integral - truth:.6f} = 2 Tr(A) = {2 * np.trace(A_lin):.6f}")

# %% [markdown]
# The same number from the ODE itself: dmlib's `CNF` integrates the augmented state
# $(z_t, \ell_t)$ with $\frac{d}{dt}(z, \ell) = (f, -\operatorname{Tr}\,\partial f/\partial z)$
# from the data point back to noise, with the exact trace (by autograd). For the linear
# field it must land on the closed form.

# %%
# NBVAL_CHECK_OUTPUT
from torch import nn

from dmlib.cnf import CNF, exact_trace


class LinearField(nn.Module):
    """f(z, t) = A z."""

    dim = 2

    def __init__(self, A):
        super().__init__()
        self.A = nn.Parameter(torch.as_tensor(A))

    def forward(self, z, t):
        return z @ self.A.T


lin_cnf = CNF(LinearField(A_lin), n_steps=20, method="rk4")
with torch.no_grad():
    lp = lin_cnf.log_prob(torch.tensor(z1_lin)[None])
print(f"CNF log p(z_1), RK4 with 20 steps: {lp.item():.6f} (truth {truth:.6f})")
_, tr = exact_trace(lin_cnf.field, torch.randn(3, 2, dtype=torch.float64), 0.5)
print("exact trace by autograd at 3 random points:", [round(v, 6) for v in tr.tolist()])

# %% [markdown]
# ### 3.1 Hutchinson's trace estimator
#
# In 2-D the exact trace costs two backward passes; in $d$ dimensions it costs $d$. Hutchinson's
# estimator needs one: for any random probe $\epsilon$ with $\mathbb E[\epsilon\epsilon^\top] = I$,
#
# $$\mathbb E_\epsilon\left[\epsilon^\top J \epsilon\right] = \operatorname{Tr}\left(J\,\mathbb E[\epsilon\epsilon^\top]\right) = \operatorname{Tr}(J),$$
#
# and $\epsilon^\top J$ is one vector-Jacobian product, which autograd computes for the cost of
# one backward pass. Average $K$ probes for less variance. The probe appears **twice**: in the
# product $\epsilon^\top J$ and again in the dot product with it.
#
# **Exercise 2.3 (★★ core).** Write `hutchinson(vjp, eps)`: `vjp(v)` maps `v` of shape `(B, d)` to
# $v^\top J$ (shape `(B, d)`, one Jacobian per batch element); `eps` holds `K` probes, shape
# `(K, B, d)`. Return $\frac1K\sum_k \epsilon_k^\top J \epsilon_k$, shape `(B,)`.

# %%
def hutchinson(vjp, eps: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return torch.stack([(vjp(e) * e).sum(dim=-1) for e in eps]).mean(dim=0)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_hutchinson(hutchinson)

# %% [markdown]
# **Unbiased, but noisy.** Take one fixed $3\times3$ matrix $J$ and many probes. The mean of the
# single-probe estimates converges to $\operatorname{Tr}(J)$; their variance depends on the
# probe. With $S = (J + J^\top)/2$: Gaussian probes give $2\|S\|_F^2$, Rademacher probes
# ($\pm 1$) give $2(\|S\|_F^2 - \sum_i S_{ii}^2)$: never more, since a Rademacher probe has no
# randomness in $\epsilon_i^2 = 1$.

# %%
# NBVAL_CHECK_OUTPUT
from dmlib.cnf import draw_probes, hutchinson_trace

J = torch.tensor([[1.0, 2.0, 0.0], [-0.5, 0.3, 1.0], [0.4, 0.0, -2.0]], dtype=torch.float64)
S = (J + J.T) / 2
var_theory = {"gaussian": 2 * (S ** 2).sum().item(),
              "rademacher": 2 * ((S ** 2).sum() - (S.diag() ** 2).sum()).item()}
K = 100_000
single = {}
print(f"Tr(J) = {torch.trace(J).item():.3f}")
for kind in ["gaussian", "rademacher"]:
    eps = draw_probes((K, 1, 3), kind, torch.Generator().manual_seed(0), torch.float64)
    single[kind] = (eps @ J * eps).sum(-1)[:, 0]  # K single-probe estimates eps^T J eps
    mean = hutchinson_trace(lambda v: v @ J, eps).item()
    print(f"{kind:10s}: mean of {K} probes {mean:.2f}, variance {single[kind].var().item():.2f} "
          f"(theory {var_theory[kind]:.2f})")

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ks = np.arange(1, 2001)
for kind in ["gaussian", "rademacher"]:
    run = np.cumsum(single[kind][:2000].numpy()) / ks
    ax.plot(ks, run, label=f"{kind} probes: running mean (var {var_theory[kind]:.1f})")
ax.axhline(torch.trace(J).item(), color="k", ls="--", label="exact Tr(J)")
ax.set(xscale="log", title="Hutchinson's estimator: running mean over probes",
       xlabel="number of probes K", ylabel="estimate of Tr(J)")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# For training in 2-D we use the exact trace: it costs two backward passes instead of one, but
# has no variance. Hutchinson's estimator is what makes CNFs (FFJORD) affordable in high
# dimension; the timing table at the end measures both.
#
# ## 4. A continuous normalizing flow
#
# **The network.** The slide's "unrestricted architecture": any network $f(z_t, t)$. dmlib's
# `VectorField` is an MLP with `tanh` activations (smooth, so fixed-step solvers stay
# accurate) that sees $t$ at every layer.
#
# **Which way to integrate.** With $z_0$ noise and $z_1$ data:
#
# * **sampling** draws $z_0 \sim \mathcal N(0, I)$ and integrates **forward, $0 \to 1$**:
#   $z_1 = z_0 + \int_0^1 f(z_t, t)\,dt$;
# * **the likelihood** of a data point $x = z_1$ needs $z_0$, so it integrates **backward,
#   $1 \to 0$**, the augmented state $(z_t, \ell_t)$ with $\ell_1 = 0$; then
#   $\ell_0 = \int_0^1 \operatorname{Tr}(\partial f/\partial z_t)\,dt$ and
#   $\log p(x) = \log\mathcal N(z_0; 0, I) - \ell_0$.
#
# > **Note on the slide's labels.** The slide says "Solve the forward ODE to compute
# > log-likelihood" and "Sampling: solve the backward ODE". With its own convention ($z_0$
# > noise, $z_1$ data) it is the other way round: the likelihood runs backward in time
# > ($1 \to 0$), sampling runs forward ($0 \to 1$), as its own formula
# > $z_1 = z_0 + \int_0^1 f\,dt$ says. (The labels match the opposite convention, data at
# > $t = 0$, used by some papers.)
#
# Training: maximum likelihood, back-propagating through the RK4 solver
# ("discretise then optimise"), with the exact 2-D trace.

# %%
from dmlib.cnf import VectorField, cnf_nll_loss

torch.manual_seed(0)
cnf_steps = dmlib.quick(15, 400)
cnf = CNF(VectorField(dim=2, hidden=64, depth=2), n_steps=8, method="rk4")
cnf_cfg = TrainConfig(steps=cnf_steps, batch_size=512, lr=3e-3, ema_decay=None,
                      grad_clip=None, log_every=10, device="cpu")
cnf_run = train(cnf, cnf_nll_loss, x_train, cnf_cfg)
cnf_model = cnf_run.model
with torch.no_grad():
    cnf_nll = -cnf_model.log_prob(x_test).mean().item()
    cnf_nll_fine = -cnf_model.log_prob(x_test, n_steps=32).mean().item()
print(f"CNF ({sum(p.numel() for p in cnf.parameters())} parameters, {cnf_steps} steps, "
      f"{cnf_run.seconds / cnf_steps * 1e3:.0f} ms/step, {cnf_run.seconds:.0f} s): "
      f"test NLL {cnf_nll:.3f}, gap {cnf_nll - H_true:.3f} nats")
print(f"  the same with RK4 in 32 steps instead of 8: test NLL {cnf_nll_fine:.3f} "
      f"(solver error of the likelihood: {abs(cnf_nll_fine - cnf_nll):.3f} nats)")

# %%
_, p_cnf, mass_cnf = density_grid(cnf_model.log_prob, n=n_grid)
cnf_samples = cnf_model.sample(2000, torch.Generator().manual_seed(3))  # integrated 0 -> 1
show_model(p_cnf, mass_cnf, cnf_samples, "CNF")

# %% [markdown]
# **The flow in time.** Particles start as Gaussian noise at $t = 0$ and are carried by $f$ to
# the nine modes at $t = 1$; the density $p_t$ at each time is the likelihood integrated
# from $t$ back to $0$ (`log_prob(..., t=t)`).

# %%
path = cnf_model.sample(1000, torch.Generator().manual_seed(4), n_steps=8, return_path=True)
times = [0.0, 0.25, 0.5, 0.75, 1.0]
n_small = dmlib.quick(30, 70)
fig, axes = plt.subplots(2, len(times), figsize=(13, 5.4))
for j, t in enumerate(times):
    _, p_t, _ = density_grid(lambda v: cnf_model.log_prob(v, t=t, n_steps=max(1, round(8 * t))),
                             n=n_small)
    axes[0, j].imshow(p_t, origin="lower", extent=[-3, 3, -3, 3], cmap="viridis")
    axes[0, j].set(title=f"density p_t, t = {t}", xticks=[], yticks=[])
    axes[1, j].scatter(*path[round(8 * t)].T, s=2)
    axes[1, j].set(title=f"particles z_t, t = {t}", xlim=(-3, 3), ylim=(-3, 3), xticks=[], yticks=[])
axes[1, 0].set(xlabel="first coordinate", ylabel="second coordinate")
fig.suptitle("A trained CNF carries noise (t = 0) to data (t = 1)")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Widget.** Scrub the time $t$, and pick the solver and its number of steps: with few Euler
# steps the particles miss the modes, which is the solver error of section 2 showing up in
# samples (the network was trained with RK4 in 8 steps).

# %%
import ipywidgets as widgets


def show_flow(t: float = 1.0, solver: str = "rk4", n_steps: int = 8) -> None:
    gen_w = torch.Generator().manual_seed(4)
    zs = cnf_model.sample(1000, gen_w, n_steps=n_steps, method=solver, return_path=True)
    k = round(t * n_steps)
    steps_t = max(1, k)
    _, p_t, _ = density_grid(lambda v: cnf_model.log_prob(v, t=k / n_steps, n_steps=steps_t,
                                                          method=solver), n=40)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    axes[0].imshow(p_t, origin="lower", extent=[-3, 3, -3, 3], cmap="viridis")
    axes[0].set(title=f"density p_t at t = {k / n_steps:.2f}", xlabel="x_1", ylabel="x_2")
    axes[1].scatter(*x_test[:1000].T, s=2, alpha=0.2, color="gray", label="data")
    axes[1].scatter(*zs[k].T, s=2, label=f"particles ({solver}, {n_steps} steps)")
    axes[1].set(title="particles z_t", xlim=(-3, 3), ylim=(-3, 3), xlabel="x_1")
    axes[1].legend(markerscale=5, fontsize=8, loc="upper right")
    plt.tight_layout()
    plt.show()


widgets.interact(show_flow, t=widgets.FloatSlider(1.0, min=0.0, max=1.0, step=0.05),
                 solver=["rk4", "euler"], n_steps=widgets.IntSlider(8, 1, 32));

# %% [markdown]
# ## 5. Pros and cons, measured
#
# The slide lists the trade-offs; here they are as numbers, on the same data, the same CPU
# (one thread), batch 512. "Time per step" is one training step (forward, backward, Adam)
# timed afresh here, not the whole run; the gap is test NLL minus the true entropy $H[p]$.

# %%
def time_step(model, loss_fn, n=dmlib.quick(3, 10)):
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    batch = x_train[:512]
    t0 = time.perf_counter()
    for _ in range(n):
        opt.zero_grad()
        loss_fn(model, batch).backward()
        opt.step()
    return (time.perf_counter() - t0) / n


def cnf_hutch_loss(model, batch, generator=None):
    return -model.log_prob(batch, trace="hutchinson", generator=generator).mean()


def time_sampling(sample_fn, n=5):
    t0 = time.perf_counter()
    for _ in range(n):
        sample_fn()
    return (time.perf_counter() - t0) / n


rows = [
    ("RealNVP, 8 coupling layers", flow_model, flow_nll_loss, flow_nll,
     lambda: flow_model.sample(2000)),
    ("CNF, RK4 8 steps, exact trace", cnf_model, cnf_nll_loss, cnf_nll,
     lambda: cnf_model.sample(2000)),
    ("CNF, RK4 8 steps, Hutchinson", cnf_model, cnf_hutch_loss, None, None),
]
print(f"{'model':32s} {'params':>7s} {'ms/train step':>14s} {'ms/2000 samples':>16s} "
      f"{'test NLL':>9s} {'gap (nats)':>10s}")
timings = {}
for name, model, loss_fn, nll, sampler in rows:
    ms = 1e3 * time_step(model, loss_fn)
    timings[name] = ms
    ms_s = f"{1e3 * time_sampling(sampler):16.1f}" if sampler else f"{'(same)':>16s}"
    nll_s = f"{nll:9.3f} {nll - H_true:10.3f}" if nll is not None else f"{'-':>9s} {'-':>10s}"
    print(f"{name:32s} {sum(p.numel() for p in model.parameters()):7d} {ms:14.1f} {ms_s} {nll_s}")
print(f"true entropy H[p] = {H_true:.3f} nats; the CNF step costs "
      f"{timings[rows[1][0]] / timings[rows[0][0]]:.0f}x the coupling flow's")

# %% [markdown]
# What the numbers say about the slide's list:
#
# * **Discrete flow**: *different parameters at different steps*, a *restricted*
#   architecture (each layer invertible, triangular Jacobian) and a cheap, exact log-det.
#   A training step is a single pass through the layers, so it is fast; the restriction
#   shows in the density (bridges between the modes) and in the gap.
# * **CNF**: *the same parameters at every step*, an *unrestricted* network, exact
#   likelihood up to solver error (RK4 with 8 steps and with 32 steps give the same test
#   NLL to three decimals). Every training step solves an ODE (here 8 RK4 steps = 32
#   evaluations of $f$, each with a trace) and back-propagates through all of them: in the
#   full run a step costs several times the coupling flow's (the table above), although
#   the CNF has 30 times fewer parameters. Per unit of *training time* it still won here:
#   in a similar training time (steps times ms/step, printed after each training cell) the
#   CNF reached a gap under 0.05 nats, the coupling flow about 0.3. The slide's "small $f$ is not expressive, large $f$ is slow to train" is
#   this per-step cost multiplied by the size of $f$.
# * **Hutchinson vs exact trace**: in 2-D the saving is small (one backward pass instead
#   of two, while the ODE's forward passes cost the same); in $d$ dimensions the exact
#   trace costs $d$ backward passes and Hutchinson still one, at the price of a noisy loss.
#
# ## Where this goes: "diffusion is a CNF at inference time"
#
# The slide closes with: *Diffusion is a CNF at inference time! (but trained in a more
# efficient way)*. Keep the question open until chapter 8, which answers it: a trained
# diffusion model also defines a vector field $f(z_t, t)$ that carries noise to data, and it
# can be sampled by the same ODE solvers as here. What it does **not** do is what made this chapter's CNF
# slow: it never integrates an ODE or computes a trace during training. Each training step
# of a diffusion model draws *one* time $t$, noises the data in closed form and regresses a
# network on a target: a single forward and backward pass, like the discrete flow, for a
# free-form network, like the CNF. Chapters 3 to 5 build that training objective, and
# chapter 6 trains it on the same kind of 2-D data (the same mixture, with its true entropy
# as the floor, so the gaps of chapter 6 can be set beside this chapter's). Chapter 8 takes
# a trained diffusion model, writes its sampler as an ODE, and compares it with the CNF
# directly.
#
# **Exercises in this chapter:** 2.1 `coupling_log_det`, 2.2 `euler_step`, 2.3 `hutchinson`.
#
# ## You can now
#
# * [ ] compute a flow's exact log-likelihood by the change of variables, and the
#   log-determinant of an affine coupling layer from its scales alone;
# * [ ] explain why a coupling layer is invertible and has a triangular Jacobian;
# * [ ] implement an Euler step, and predict and measure how Euler's and RK4's errors shrink
#   with the number of steps;
# * [ ] state the instantaneous change of variables with its minus sign, and explain it by
#   volume: a flow that spreads mass lowers the density;
# * [ ] estimate a trace with Hutchinson's estimator, and say what it saves in $d$
#   dimensions;
# * [ ] say which way to integrate a CNF for sampling and which for the likelihood, and why
#   a CNF's training step costs so much more than a coupling flow's.
