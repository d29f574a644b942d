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
# # Chapter 8: diffusion is a continuous normalizing flow
#
# Chapter 2 built **continuous normalizing flows** (CNFs): an ODE $dz/dt=f(z,t)$ carries noise
# to data, and the instantaneous change of variables gives the exact log-likelihood. Chapters
# 3-7 built DDPM as a *stochastic* chain of 1,000 Gaussian steps. The lecture's punchline
# ("diffusion is a CNF at inference time, but trained in a more efficient way") is what this
# chapter makes concrete: a trained noise predictor $\epsilon_\theta$ defines an ODE that
# carries $\mathcal N(0,I)$ to the data with the same marginals as the chain. That gives
#
# 1. **deterministic sampling**: DDIM is Euler's method on that ODE, and better ODE solvers
#    (Heun, DPM-Solver++) need 10-20 network calls instead of 1,000;
# 2. **an exact encoding**: run the ODE backwards, data -> noise, and forwards again;
# 3. **an exact log-likelihood** (up to the solver), not just the ELBO's bound.
#
# **You will:** derive the probability-flow ODE from the forward chain; check that DDIM with
# $\eta=0$ *is* Euler's method on it and with $\eta=1$ *is* the DDPM step; verify everything
# first where the answer is known in closed form (a Gaussian mixture and its optimal
# denoiser); measure the likelihood of trained 2-D models and of the shipped MNIST U-Net (in
# bits per dimension); encode digits to noise and back; and compare fast samplers by
# quality against the number of network evaluations (NFE).
#
# Prerequisites: chapter 2 (CNFs, Euler/RK4, the trace, Hutchinson), chapter 6 (the 2-D models,
# the optimal denoiser, the sliced-W2 ratio), chapter 7 (the U-Net, respacing, quality scores).

# %%
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

import dmlib
from dmlib import checks
from dmlib.data import CHECKERBOARD_ENTROPY, default_gmm2d, make_toy, ring_gmm
from dmlib.data.mixture import GaussianMixture
from dmlib.likelihood import (bits_per_dim, dequantize, elbo_bits_per_dim, likelihood_grid,
                              ode_log_likelihood, pf_ode_drift, sigma_of)
from dmlib.losses import diffusion_loss, vlb_terms
from dmlib.metrics import sample_distance_report
from dmlib.models import MLPConfig, MLPDenoiser
from dmlib.ode import odeint
from dmlib.optimal import OptimalDenoiser
from dmlib.plotting import image_grid, plot_trajectories, scatter2d
from dmlib.respacing import respace
from dmlib.samplers import (ddim_decode, ddim_invert, ddim_step, log_sigma_timesteps, nfe,
                            ode_end, slerp, steps_for_nfe)
from dmlib.sampling import StepContext, ddpm_step, sample
from dmlib.schedules import Schedule
from dmlib.training import TrainConfig, train

gen = dmlib.seed_everything(0)
torch.set_num_threads(1)  # tiny models; robust on a busy CPU (see chapter 6)
plt.rcParams["figure.dpi"] = 70  # keeps the notebook small
print("quick mode:", dmlib.QUICK)

# %% [markdown]
# ## 0. The result first
#
# The 3 x 3 Gaussian mixture of chapter 6 has a known density $p(x)$ and a known optimal
# denoiser $\epsilon^*(x_t,t)=\mathbb E[\epsilon\mid x_t]$. Treat that denoiser as "the trained
# network", turn it into an ODE, and integrate the ODE backwards from each held-out point to
# noise, accumulating the divergence as in chapter 2. The result is $\log p(x)$, and it must
# equal the true log-density. It does, to a few thousandths of a nat:

# %%
# NBVAL_CHECK_OUTPUT
sched = Schedule.linear(1000)  # the chapter-6 schedule, T = 1000 in both modes
gmm = default_gmm2d()
perfect = OptimalDenoiser(gmm, sched)
x_held = gmm.sample(500, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
lp_ode = ode_log_likelihood(perfect, sched, x_held, steps=200, solver="heun")
gap = (-lp_ode - (-gmm.log_prob(x_held)))
print(f"mean NLL by the ODE: {-lp_ode.mean():.3f} nats; true: {-gmm.log_prob(x_held).mean():.3f} nats")
print(f"|mean gap| <= 0.01 nats: {abs(float(gap.mean())) <= 0.01}")

# %% [markdown]
# The rest of the chapter explains why this works, what the ODE is, and what it buys.
#
# ## 1. From the chain to an ODE
#
# **The forward chain as an SDE.** The forward step is
# $x_t=\sqrt{1-\beta_t}\,x_{t-1}+\sqrt{\beta_t}\,z$. For small $\beta_t$,
# $\sqrt{1-\beta_t}\approx 1-\tfrac12\beta_t$, so $x_t-x_{t-1}\approx-\tfrac12\beta_t x_{t-1}+\sqrt{\beta_t}\,z$.
# Reading $\beta_t$ as $\beta(t)\,dt$ (one unit of $t$ per step) this is the Euler-Maruyama
# discretisation of the **variance-preserving (VP) SDE** (Song et al. 2021, eq. 11)
#
# $$dx=-\tfrac12\beta(t)\,x\,dt+\sqrt{\beta(t)}\,dw,$$
#
# where $dw$ is Brownian noise (a Gaussian increment with variance $dt$). Its marginals are
# the chain's $q(x_t)$ in the limit.
#
# **The probability-flow ODE.** A stochastic process and a deterministic one can share all
# their marginals. For this SDE, the ODE (Song et al. 2021, eq. 13)
#
# $$\frac{dx}{dt}=-\tfrac12\beta(t)\big[x+\nabla_x\log q_t(x)\big]$$
#
# moves every point so that the density evolves exactly like $q_t$ (the Fokker-Planck
# equation of the SDE is the continuity equation of this ODE: half of the diffusion is
# rewritten as a drift along the score). The **score** $\nabla_x\log q_t$ is what the network
# knows: chapter 5 showed $\mathbb E[\epsilon\mid x_t]=-\sqrt{1-\bar\alpha_t}\,\nabla\log q_t(x_t)$, so
# $\nabla\log q_t\approx-\epsilon_\theta(x_t,t)/\sqrt{1-\bar\alpha_t}$.
#
# **Exercise 8.1 (the probability-flow drift; ★ core).** Return $dx/dt$ from the noise
# prediction `eps`, the point `xt`, the rate `beta` $=\beta(t)$ and `alpha_bar` $=\bar\alpha_t$
# (floats).

# %%
def pf_drift(eps, xt, beta, alpha_bar):
    ### BEGIN SOLUTION
    score = -eps / math.sqrt(1 - alpha_bar)
    return -0.5 * beta * (xt + score)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_pf_ode_drift(pf_drift)

# %% [markdown]
# Check the ODE where its solution is known: for Gaussian data $\mathcal N(0,v)$ in 1-D,
# $q_t=\mathcal N(0,V_t)$ with $V_t=\bar\alpha_t v+1-\bar\alpha_t$, the exact eps is
# $\sqrt{1-\bar\alpha_t}\,x/V_t$, and the flow that keeps the marginals Gaussian is the scaling
# $x_t=\sqrt{V_t/V_s}\,x_s$. Chapter 2's RK4 solver (`dmlib.ode.odeint`) on `pf_ode_drift`, with a
# continuous linear $\beta(t)$ on $t\in[0,1]$, must land on it:

# %%
# NBVAL_CHECK_OUTPUT
v, b0, b1 = 0.3, 0.1, 20.0
beta_c = lambda t: b0 + t * (b1 - b0)  # noqa: E731   beta(t) of the continuous VP SDE
abar_c = lambda t: math.exp(-(b0 * t + 0.5 * (b1 - b0) * t * t))  # noqa: E731
V = lambda t: abar_c(t) * v + 1 - abar_c(t)  # noqa: E731


def exact_eps_field(x, t):
    eps = math.sqrt(1 - abar_c(t)) * x / V(t)
    return pf_ode_drift(eps, x, beta_c(t), abar_c(t))


x_s = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
x_end = odeint(exact_eps_field, x_s, 0.05, 1.0, n_steps=200, method="rk4")
err = (x_end - math.sqrt(V(1.0) / V(0.05)) * x_s).abs().max()
print(f"PF-ODE (RK4, 200 steps) vs exact transport map: max error < 1e-8: {float(err) < 1e-8}")

# %% [markdown]
# **DDIM's variables.** Divide by the signal scale: $\bar x=x/\sqrt{\bar\alpha}$ and
# $\sigma=\sqrt{(1-\bar\alpha)/\bar\alpha}$ (the noise-to-signal ratio; $\sigma$ grows from 0 at
# the data to about 157 at $t=T$ for this schedule). Then $\bar x_t=x_0+\sigma_t\epsilon$: in these
# variables the forward process just *adds* noise of standard deviation $\sigma$, and the
# probability-flow ODE becomes (Song, Meng, Ermon 2021, eq. 14)
#
# $$\frac{d\bar x}{d\sigma}=\epsilon_\theta(x,t),\qquad x=\sqrt{\bar\alpha}\,\bar x .$$
#
# *Derivation:* $d\sqrt{\bar\alpha}/dt=-\tfrac12\beta\sqrt{\bar\alpha}$, so
# $d\bar x/dt=\frac{1}{\sqrt{\bar\alpha}}\big(\frac{dx}{dt}+\tfrac12\beta x\big)=\frac{\beta\,\epsilon}{2\sqrt{\bar\alpha}\sqrt{1-\bar\alpha}}$,
# and $d\sigma/dt=\frac{1}{2\sigma}\frac{d(1/\bar\alpha)}{dt}=\frac{\beta}{2\sqrt{\bar\alpha}\sqrt{1-\bar\alpha}}$:
# the ratio is $\epsilon$. **The noise prediction is the velocity.**
#
# **DDIM** (eq. 12 of the paper) steps from $\bar\alpha=\bar\alpha_t$ to an earlier
# $\bar\alpha'$ (consecutive or respaced), with $\hat x_0=(x_t-\sqrt{1-\bar\alpha}\,\epsilon_\theta)/\sqrt{\bar\alpha}$:
#
# $$x'=\sqrt{\bar\alpha'}\,\hat x_0+\sqrt{1-\bar\alpha'-\sigma_\eta^2}\;\epsilon_\theta+\sigma_\eta z,\qquad
# \sigma_\eta=\eta\sqrt{\tfrac{1-\bar\alpha'}{1-\bar\alpha}}\sqrt{1-\tfrac{\bar\alpha}{\bar\alpha'}} .$$
#
# **Exercise 8.2 (a DDIM step; ★★ core).** Implement it for given `eps`, `xt`, floats
# `alpha_bar`, `alpha_bar_prev`, `eta` and noise `z`.

# %%
def ddim_update(eps, xt, alpha_bar, alpha_bar_prev, eta, z):
    ### BEGIN SOLUTION
    x0_hat = (xt - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)
    sigma = eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev))
    return (math.sqrt(alpha_bar_prev) * x0_hat
            + math.sqrt(1 - alpha_bar_prev - sigma ** 2) * eps + sigma * z)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_ddim_step(ddim_update)

# %% [markdown]
# `dmlib.samplers.ddim_step` is the same update as a step of the one sampler loop
# (`sample(model, spec, shape, "ddim", steps=S, eta=...)`). Two identities, checked in float64
# on every step of a 10-step respaced run of the mixture's optimal denoiser:
#
# * with $\eta=0$ the DDIM step **is Euler's method** on $d\bar x/d\sigma=\epsilon$:
#   $\bar x'=\bar x+(\sigma'-\sigma)\,\epsilon_\theta$ (substitute $\hat x_0$: the two lines are
#   algebraically equal);
# * with $\eta=1$, $\sigma_\eta^2=\frac{1-\bar\alpha'}{1-\bar\alpha}\big(1-\frac{\bar\alpha}{\bar\alpha'}\big)=\tilde\beta$
#   of the pair, and the step **is the DDPM step** with $\sigma_t^2=\tilde\beta_t$ (same noise $z$).

# %%
# NBVAL_CHECK_OUTPUT
s10, _ = respace(sched, 10)
opt10 = OptimalDenoiser(gmm, s10)  # the denoiser of the respaced chain (same alpha_bar)
x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
err_euler, err_ddpm = 0.0, 0.0
for k in range(10, 0, -1):
    ab, abp = float(s10.alpha_bar[k]), float(s10.alpha_bar_prev[k])
    sig, sigp = math.sqrt((1 - ab) / ab), math.sqrt((1 - abp) / abp)
    eps = opt10(x, torch.full((256,), k))
    euler = math.sqrt(abp) * (x / math.sqrt(ab) + (sigp - sig) * eps)
    x_next = ddim_step(opt10, s10, x, k, StepContext(eta=0.0))
    err_euler = max(err_euler, float((x_next - euler).abs().max()))
    a = ddim_step(opt10, s10, x, k, StepContext(eta=1.0, generator=torch.Generator().manual_seed(k)))
    b = ddpm_step(opt10, s10, x, k, StepContext(variance="beta_tilde",
                                                generator=torch.Generator().manual_seed(k)))
    err_ddpm = max(err_ddpm, float((a - b).abs().max()))
    x = x_next
print(f"DDIM(eta=0) == Euler on d xbar/d sigma = eps, max difference < 1e-12: {err_euler < 1e-12}")
print(f"DDIM(eta=1) == DDPM step with beta_tilde,   max difference < 1e-10: {err_ddpm < 1e-10}")

# %% [markdown]
# **Thinking question.** DDPM's sampler adds fresh noise at every step; DDIM with $\eta=0$ adds
# none, yet both produce samples from (approximately) the same distribution. How can a
# deterministic map from $x_T$ produce a *distribution*? And what does DDIM lose that DDPM
# keeps?
#
# <details><summary>Answer</summary>
#
# The randomness is all in $x_T\sim\mathcal N(0,I)$: a deterministic, invertible map pushes that
# distribution forward to another one (exactly as a normalizing flow does). The ODE is built
# so that its push-forward at every $t$ equals $q(x_t)$. What DDIM loses is the *self-correction*
# of the stochastic sampler: fresh noise at every step lets errors of earlier steps be
# forgotten (the SDE contracts towards the right marginals), while the ODE carries every
# error to the end. With an imperfect network, DDPM with many steps can therefore be a little
# better than DDIM with the same steps; with few steps, the ODE wins easily (section 5).
# </details>
#
# ## 2. The exact case first
#
# With the optimal denoiser, the ODE is the exact probability flow of the mixture. Two claims
# to check: (a) the ODE's marginal at every $t$ is $q(x_t)$, known in closed form (the mixture
# with means $\sqrt{\bar\alpha_t}\mu_k$ and variances $\bar\alpha_t v_k+1-\bar\alpha_t$); (b) its
# log-likelihood is the true one, up to the solver's error, which shrinks with the solver's
# order.
#
# **(a) Marginals.** Start 4,000 points from $\mathcal N(0,I)$, run Heun's method (section 5) with
# 50 steps, and compare the cloud at several $t$ with fresh draws of $q(x_t)$ by the sliced-W2
# ratio of chapter 6 (distance / floor; about 1 for equal distributions):

# %%
# NBVAL_CHECK_OUTPUT
N_MARG = 4000
check_ts = [1000, 800, 500, 200, 100, 0]
xT = torch.randn(N_MARG, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
_, traj = sample(perfect, sched, (N_MARG, 2), "heun", steps=50, x_T=xT, return_trajectory=True,
                 trajectory_steps=check_ts)
marg_ratio = {}
for t in check_ts:
    q_t = gmm.noised(float(sched.alpha_bar[t])) if t > 0 else gmm
    rep = sample_distance_report(traj[t], lambda n, seed, q=q_t: q.sample(n, generator=seed), "sw")
    marg_ratio[t] = rep["ratio"]
print("SW ratio of the ODE's cloud to q(x_t):",
      ", ".join(f"t={t}: {r:.1f}" for t, r in marg_ratio.items()))
print("all ratios <= 1.5:", all(r <= 1.5 for r in marg_ratio.values()))

# %%
fig, axes = plt.subplots(1, 4, figsize=(11, 2.9))
for ax, t in zip(axes, [1000, 200, 100, 0]):
    ab = float(sched.alpha_bar[t])
    q_t = gmm.noised(ab) if t > 0 else gmm
    scatter2d(q_t.sample(1500, generator=9), ax=ax, color="0.7", label="q(x_t)")
    scatter2d(traj[t][:1500], ax=ax, title=f"t = {t}", label="ODE")
    ax.set(xlabel="x[0]", ylabel="x[1]")
    ax.legend(loc="upper right", fontsize=7, markerscale=4)
fig.suptitle("The probability-flow ODE (optimal denoiser) keeps the marginals q(x_t)", y=1.03)
plt.show()

# %% [markdown]
# **(b) The likelihood.** Run as a CNF from data to noise, the instantaneous change of
# variables of chapter 2 (with its sign) gives, for $f=d\bar x/d\sigma$,
#
# $$\log p_{\sigma_1}(\bar x_1)=\log p_{\sigma_T}(\bar x_T)+\int_{\sigma_1}^{\sigma_T}\operatorname{Tr}\frac{\partial f}{\partial\bar x}\,d\sigma,
# \qquad p_{\sigma_T}=\mathcal N\big(0,(1+\sigma_T^2)I\big)$$
#
# (the prior: $x_T\sim\mathcal N(0,I)$ and $\bar x_T=x_T/\sqrt{\bar\alpha_T}$ has variance $1/\bar\alpha_T=1+\sigma_T^2$).
# `dmlib.likelihood.ode_log_likelihood` integrates $(\bar x,\ \log\text{-density})$ with Euler or
# Heun on integer timesteps from $t=1$ to $T$ (the network is trained only there), spaced
# uniformly in $\log\sigma$ (`likelihood_grid`). Two honest details:
#
# * it starts at $t=1$, $\sigma_1=0.01$, not at $\sigma=0$: it computes the density of
#   $\bar x_1=x_0+\sigma_1\epsilon$, i.e. the data convolved with $\mathcal N(0,\sigma_1^2 I)$. For
#   the mixture that density is known too (variances $+\sigma_1^2$) and differs from $p$ by
#   about 0.004 nats per point here;
# * the trace is exact (2 backward passes in 2-D) or Hutchinson's estimate (section 3).
#
# The gap to the truth is the solver's, and it must shrink with the solver's order: halving
# the step divides Euler's error by 2 and Heun's by 4.

# %%
x_conv = x_held[:100]
s1 = float(sigma_of(sched)[1])
true_s1 = GaussianMixture(gmm.weights, gmm.means, gmm.var + s1 ** 2).log_prob(x_conv)  # density at sigma_1
STEP_LIST = [10, 25, 50, 100, 200]
conv = {"euler": [], "heun": []}
nfes = {"euler": [], "heun": []}
for solver in conv:
    for S in tqdm(STEP_LIST, desc=solver, leave=False):
        lp, n_eval = ode_log_likelihood(perfect, sched, x_conv, steps=S, solver=solver, return_nfe=True)
        conv[solver].append(abs(float((lp - true_s1).mean())))
        nfes[solver].append(n_eval)
fig, ax = plt.subplots(figsize=(5, 3.6))
for solver, mk in (("euler", "o"), ("heun", "s")):
    ax.loglog(nfes[solver], conv[solver], mk + "-", label=f"{solver}")
n_ref = np.array([20, 400])
ax.loglog(n_ref, 5 * conv["euler"][1] * nfes["euler"][1] / n_ref, "k:", lw=0.8, label="slope -1")
ax.loglog(n_ref, 0.2 * conv["heun"][1] * (nfes["heun"][1] / n_ref) ** 2, "k--", lw=0.8, label="slope -2")
ax.set(xlabel="network evaluations (NFE)", ylabel="|mean log p error| (nats)",
       title="ODE likelihood of the mixture: error vs cost")
ax.legend(fontsize=8)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
ratio_e = conv["euler"][-2] / conv["euler"][-1]
ratio_h = conv["heun"][-2] / conv["heun"][-1]
print(f"100 -> 200 steps: Euler's error / {ratio_e:.0f}, Heun's error / {ratio_h:.0f} (orders 1 and 2)")
print(f"Heun, 200 steps: |ODE - true log p_sigma1| = {conv['heun'][-1]:.3f} nats <= 0.01: "
      f"{conv['heun'][-1] <= 0.01}")

# %% [markdown]
# ## 3. Likelihood of trained models
#
# Now the chapter-6 networks (same recipe: `MLPDenoiser` 128 x 3, the simple eps loss, EMA)
# on the three data sets with a known density: the mixture, 8 Gaussians and the checkerboard.
# For each, on held-out points: the **ODE NLL** (Heun, 100 steps, exact trace), the **negative
# ELBO** of chapter 4 (`vlb_terms`, an upper bound), and the **true** NLL, with standard errors
# over the points. The ODE NLL is not a bound: it is the exact NLL of the model's own ODE
# density (up to the solver), which can be *below* the truth on a given set of points only
# by chance, since for any density $\mathbb E_p[-\log p_\theta]\ge H[p]$.

# %%
T_TRAIN = dmlib.quick(100, 1000)  # quick mode trains a 100-step model in seconds
sched_train = Schedule.linear(T_TRAIN)
MODEL = MLPConfig(hidden=128, depth=3)
STEPS = dmlib.quick(50, 1500)
RECIPE = dict(batch_size=dmlib.quick(128, 512), lr=2e-3, ema_decay=dmlib.quick(0.8, 0.995),
              warmup_steps=dmlib.quick(10, 100))
LIK_SETS = ["gmm", "eight_gaussians", "checkerboard"]
true_density = {"gmm": default_gmm2d(), "eight_gaussians": ring_gmm(8, std=0.1)}
models = {}
for name in tqdm(LIK_SETS, desc="training"):
    torch.manual_seed(0)
    res = train(MLPDenoiser(MODEL), lambda m, b, g: diffusion_loss(m, sched_train, b, generator=g),
                make_toy(name, 50_000, seed=1), TrainConfig(steps=STEPS, **RECIPE), progress=False)
    models[name] = res.ema_model.eval()
    print(f"{name:16s} trained {STEPS} steps in {res.seconds:.0f} s")


# %%
def true_nll(name, x):
    if name == "checkerboard":
        return torch.full((x.shape[0],), CHECKERBOARD_ENTROPY, dtype=torch.float64)
    return -true_density[name].log_prob(x)


def mean_se(v):
    v = v.double()
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


N_LIK = dmlib.quick(100, 500)
lik_rows = {}
for name in tqdm(LIK_SETS, desc="likelihoods"):
    x = make_toy(name, N_LIK, seed=2)
    nll_true = true_nll(name, x)
    lp = ode_log_likelihood(models[name], sched_train, x, steps=dmlib.quick(20, 100))
    with torch.no_grad():
        elbo = vlb_terms(models[name], sched_train, x, generator=torch.Generator().manual_seed(0)).sum(1)
    lik_rows[name] = {"ode": mean_se(-lp), "elbo": mean_se(elbo), "true": mean_se(nll_true),
                      "ode_gap": mean_se(-lp - nll_true), "elbo_gap": mean_se(elbo.double() - nll_true)}
print(f"{'data set':16s} {'ODE NLL':>15s} {'neg. ELBO':>15s} {'true NLL':>8s} "
      f"{'ODE gap':>15s} {'ELBO gap':>15s}   (nats, n = {N_LIK}, +- 1 s.e.)")
for name, r in lik_rows.items():
    f = lambda k: f"{r[k][0]:7.3f} +- {r[k][1]:.3f}"  # noqa: E731
    print(f"{name:16s} {f('ode'):>15s} {f('elbo'):>15s} {r['true'][0]:8.3f} {f('ode_gap'):>15s} {f('elbo_gap'):>15s}")

# %% [markdown]
# (Numbers of this run; in quick mode the models are barely trained.) Read the **gaps**: they
# are paired per point, so most of the point-to-point spread cancels. The benchmark
# (`bench/bench_cnf.py`: the mixture, 3,000 training steps, 2,000 held-out points) measured
# an ODE gap of **0.146 +- 0.012** nats (Heun, 200 steps; 0.134 with 100) against an ELBO gap
# of **0.085 +- 0.032**: the exact likelihood of the ODE is *worse* than the bound on the chain.
# That is not a contradiction. The ELBO bounds the likelihood of the *stochastic chain*
# $p_\theta(x_{0:T})$; the ODE defines a *different* density (a deterministic flow) that equals
# the chain's only when $\epsilon_\theta$ is exact. Errors of $\epsilon_\theta$ enter the ODE density
# through the divergence of the learned field, $\operatorname{Tr}\partial\epsilon_\theta/\partial\bar x$,
# which the simple loss never looks at (Lu et al. 2022, "Maximum likelihood training for
# score-based diffusion ODEs", bound this gap by errors of the score's *derivatives*). With the
# exact denoiser (section 2) the two agree to the solver's accuracy.
#
# **Hutchinson's trace.** In 2-D the exact trace costs 2 backward passes; for a $28\times28$ image
# it would cost 784. Hutchinson (chapter 2) replaces $\operatorname{Tr}J$ by $v^\top J v$ for a
# random probe $v$ with $\mathbb E[vv^\top]=I$: unbiased, one backward pass. With the probe held fixed
# along the path the integral is still unbiased; its variance for Rademacher probes
# ($v_i=\pm1$) is $2\sum_{i\ne j}$ of the products of the off-diagonal Jacobian entries,
# $\operatorname{Var}[v^\top Jv]=\tfrac12\sum_{i\ne j}(J_{ij}+J_{ji})^2$. The spread on 8 Gaussians:

# %%
ring_model = OptimalDenoiser(ring_gmm(8, std=0.1), sched)
x_r = make_toy("eight_gaussians", 100, seed=4).double()
lp_exact = ode_log_likelihood(ring_model, sched, x_r, steps=50)
lp_h = torch.stack([ode_log_likelihood(ring_model, sched, x_r, steps=50, trace="hutchinson",
                                       generator=torch.Generator().manual_seed(k))
                    for k in range(dmlib.quick(4, 16))])
print(f"8 Gaussians, 1 Rademacher probe: per-point std {lp_h.std(0).mean():.2f} nats; "
      f"mean over probes minus exact: {(lp_h.mean(0) - lp_exact).mean():+.3f} nats "
      f"(s.e. {(lp_h.mean(0) - lp_exact).std() / math.sqrt(len(x_r)):.3f})")
lp_hg = ode_log_likelihood(perfect, sched, x_held[:100], steps=50, trace="hutchinson",
                           generator=torch.Generator().manual_seed(0))
lp_eg = ode_log_likelihood(perfect, sched, x_held[:100], steps=50)
print(f"3 x 3 mixture, 1 probe: max |Hutchinson - exact| = {(lp_hg - lp_eg).abs().max():.1e} nats")

# %% [markdown]
# **Thinking question.** On the 3 x 3 mixture Hutchinson's estimate equals the exact trace to
# rounding error, with a single probe. Why?
#
# <details><summary>Answer</summary>
#
# The 3 x 3 grid mixture with equal weights and isotropic components is a *product* of two
# 1-D mixtures: $p(x)=p_1(x_1)p_2(x_2)$, and so is every noised $q_t$. Then $\log q_t$ is a sum of
# a function of $x_1$ and one of $x_2$, its Hessian (the Jacobian of the score, and of
# $\epsilon^*$) is diagonal, and $v^\top Jv=\sum_i J_{ii}v_i^2=\operatorname{Tr}J$ for Rademacher
# $v_i^2=1$. On the ring of 8 Gaussians the coordinates are dependent, $J$ has off-diagonal
# entries, and the estimate varies with the probe.
# </details>
#
# ### MNIST in bits per dimension
#
# Images are discrete: 8-bit pixels. A density on a continuum gives them no probability
# unless we **dequantize**: add $u\sim U[0,1)$ to each pixel value $n\in\{0..255\}$ and model
# $y=(n+u)/256$; in expectation over $u$, $-\log p(y)$ bounds the discrete NLL from above. The
# model sees $z=2y-1\in[-1,1]$, so the change of scale is counted:
# density on $[0,256)^D$ $=p_z\cdot2^D/256^D$, and
#
# $$\text{bits/dim}=\frac{-\log_2 p_y(y)}{D}+8=7-\frac{\log p_z(z)}{D\ln 2}.$$
#
# The ELBO with DDPM's discretised decoder (`vlb_terms(..., decoder="discretized")`) is a bound
# on the discrete NLL directly: bits/dim $=$ nats $/(D\ln2)$. Here, the ODE on a few test digits
# (Hutchinson, one probe per image) with `mnist_unet_eps`, the U-Net that chapter 7 shipped
# first ($\varepsilon$ target, 5,000 steps). Every MNIST benchmark of this chapter was measured
# on it, so the chapter keeps it; chapter 7's current `mnist_unet` predicts $v$ and is
# better trained.

# %%
from dmlib.data.mnist import load_mnist  # noqa: E402
from dmlib.pretrained import load_pretrained_diffusion  # noqa: E402

unet, spec = load_pretrained_diffusion("mnist_unet_eps")
x_test, y_test = load_mnist("test", limit=200)
N_BITS = dmlib.quick(2, 4)
z_deq = dequantize(x_test[:N_BITS], torch.Generator().manual_seed(0))
lp_mnist = ode_log_likelihood(unet, spec, z_deq, steps=dmlib.quick(8, 25), trace="hutchinson",
                              generator=torch.Generator().manual_seed(0))
bpd = bits_per_dim(lp_mnist, 784)
print(f"ODE bits/dim on {N_BITS} test digits: {bpd.mean():.3f} +- {bpd.std() / math.sqrt(N_BITS):.3f} (1 s.e.)")

# %% [markdown]
# Four digits and 25 steps only show the machinery: the solver is not converged at 25 steps
# (the benchmark's check below: on the same 8 digits and probes the estimate moves from 25 to
# 50 to 100 steps), and four digits give a large standard error. The benchmark measured more
# digits with 50 steps, and the ELBO (1,000 network calls per digit, too slow for the
# chapter), on the same checkpoint. For scale: **FFJORD 0.99** bits/dim and **Residual
# Flows 0.97** on MNIST (dedicated flows, trained by maximum likelihood; RealNVP 1.06).

# %%
def load_result(name):
    """A results file of bench/bench_cnf.py (in the repository's bench/results/), or None."""
    f = Path(dmlib.__file__).resolve().parents[1] / "bench" / "results" / name
    return json.loads(f.read_text()) if f.is_file() else None


mn, mo = load_result("cnf_mnist.json"), load_result("cnf_mnist_ode.json")
if mo is None:
    print("bench/results/cnf_mnist_ode.json not found (python bench/bench_cnf.py --part mnist-ode)")
else:
    o = mo["ode"]
    print(f"ODE  : {o['ode']['bits_per_dim'][0]:.3f} +- {o['ode']['bits_per_dim'][1]:.3f} bits/dim "
          f"(n = {o['n']} test digits, Heun {o['ode']['steps']} steps, Hutchinson)")
    print("       solver check, 8 digits, same probes: " + ", ".join(
        f"{k} steps {v[0]:.3f}" for k, v in o["ode_solver_check_8_digits_same_probe"].items()))
if mn is not None and "elbo" in mn.get("bits", {}):
    e = mn["bits"]["elbo"]
    print(f"ELBO : {e['bits_per_dim'][0]:.3f} +- {e['bits_per_dim'][1]:.3f} bits/dim "
          f"(n = {e['n']}, discretised decoder; its decoder term L_0 alone: "
          f"{e['decoder_L0_bits_per_dim']:.3f})")

# %% [markdown]
# ## 4. Encoding: data to noise and back
#
# An ODE can be run in both directions. **DDIM inversion** integrates from a digit $x_0$ *up* to
# $x_T$ with Euler steps ($\bar x\leftarrow\bar x+(\sigma'-\sigma)\epsilon_\theta$, the model evaluated at the current
# point and the next time, since it is not trained at $t=0$), and decoding with DDIM from that
# $x_T$ gives the digit back, up to the two solvers' errors.
#
# One catch, specific to the **cosine schedule** of the MNIST model: its last step (with
# $\beta_T$ clipped at 0.999) jumps from $\sigma=642$ to $\sigma=20{,}291$, i.e. $\bar\alpha_T\approx2\times10^{-9}$.
# One Euler step across that jump multiplies any error of $\epsilon_\theta$ by about $\sigma_T$: the
# code would be useless. But at $t_{\rm end}=996$ ($\sigma=160$, `ode_end`) $q(x_t)$ is already
# $\mathcal N(0,I)$ up to $\bar\alpha\approx4\times10^{-5}$, so we run the ODE between 0 and $t_{\rm end}$ only
# (`ode_end`). The likelihood of section 3 does the same. And as there, the steps are spaced
# uniformly in $\log\sigma$ (`log_sigma_timesteps`), not in $t$: the velocity changes on the scale of
# $\sigma$ itself, and equal steps in $t$ put a single step across $\sigma\in[3, 160]$ at the end
# (try it: the round trip then fails badly). The reconstruction error against the number of
# steps:

# %%
N_ENC = dmlib.quick(2, 8)
ENC_STEPS = dmlib.quick([5], [10, 20, 40])
x_enc = x_test[:N_ENC]
s_unet = spec.make_schedule()
print(f"the ODE runs on t = 1..{ode_end(s_unet)} (sigma <= 200) of T = {s_unet.T}")
recon, rec_err = {}, {}
for S in tqdm(ENC_STEPS, desc="invert + decode"):
    taus = log_sigma_timesteps(s_unet, S)
    xT_enc = ddim_invert(unet, s_unet, x_enc, taus)
    recon[S] = ddim_decode(unet, s_unet, xT_enc, taus)
    rec_err[S] = float((recon[S] - x_enc).pow(2).mean().sqrt())
    print(f"{S:3d} steps each way: RMS reconstruction error {rec_err[S]:.3f} (pixels in [-1, 1])")
fig, axes = plt.subplots(1, 2, figsize=(9, 3), gridspec_kw={"width_ratios": [1, 1.4]})
axes[0].plot(ENC_STEPS, [rec_err[S] for S in ENC_STEPS], "o-")
axes[0].set(xlabel="DDIM steps (each way)", ylabel="RMS error", title="Reconstruction error",
            xscale="log", yscale="log")
image_grid(torch.cat([x_enc, xT_enc.clamp(-3, 3) / 3, recon[ENC_STEPS[-1]].clamp(-1, 1)]),
           nrow=N_ENC, ax=axes[1], title=f"digits / x_T (scaled) / decoded ({ENC_STEPS[-1]} steps)")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Interpolation in $x_T$ space.** Encode two digits, interpolate their codes, decode. A straight
# line between two Gaussian vectors passes through points of too small a norm (the midpoint
# of two independent $\mathcal N(0,I)$ vectors has norm about $0.71\sqrt D$, never seen at $t=T$);
# **slerp** (spherical interpolation) keeps the norm:

# %%
S_INT = dmlib.quick(5, 25)
taus_int = log_sigma_timesteps(s_unet, S_INT)
codes = ddim_invert(unet, s_unet, x_test[[0, 1]], taus_int)
ws = torch.linspace(0, 1, 7)
z_path = torch.cat([slerp(codes[:1], codes[1:], float(w)) for w in ws])
frames = ddim_decode(unet, s_unet, z_path, taus_int).clamp(-1, 1)
ax = image_grid(frames, nrow=7, title="slerp between the codes of two test digits, decoded")
plt.show()

# %% [markdown]
# ## 5. Fast samplers
#
# Better ODE solvers need fewer network evaluations (NFE) for the same accuracy. Two second-order
# ones, both steps of the same loop (`sample(..., sampler=NAME, steps=S)`, on the respaced
# times of chapter 7):
#
# * **Heun** (Karras et al. 2022, Alg. 1), in $(\bar x,\sigma)$: an Euler step, then the slope at
#   its end point, and the average of the two slopes. At the last step ($\sigma'=0$, where the
#   network is not trained) it stays Euler. 2 NFE a step, $2S-1$ for $S$ steps. Karras et al.
#   start at $\sigma_{\max}=80$; the cosine schedule starts at $\sigma_T=20{,}291$, where the slope at
#   the far end of the first step cannot be averaged in meaningfully, so that step is Euler too
#   (`HEUN_SIGMA_MAX` $=200$; $2S-2$ NFE for MNIST).
# * **DPM-Solver++(2M)** (Lu et al. 2022, Alg. 2): the ODE written for the model's $\hat x_0$ in
#   $\lambda=\log(\sqrt{\bar\alpha}/\sqrt{1-\bar\alpha})$ has an exactly integrable linear part; the
#   rest is approximated linearly from the current and the previous $\hat x_0$ (remembered in
#   the loop's `ctx.state`): with $h=\lambda'-\lambda$, $r=h_{\text{prev}}/h$,
#   $D=(1+\tfrac1{2r})\hat x_0-\tfrac1{2r}\hat x_0^{\text{prev}}$ and
#   $x'=\tfrac{s'}{s}x-a'(e^{-h}-1)D$ ($a=\sqrt{\bar\alpha}$, $s=\sqrt{1-\bar\alpha}$). 1 NFE a step; the
#   first step uses $D=\hat x_0$, the last ($\lambda'=\infty$) returns $\hat x_0$.
#
# **Exercise 8.3 (a Heun step; ★★ core).** Given the velocity `f(xbar, sigma)`, return $\bar x$ at
# `sigma_next`: Euler, then the averaged slopes, except at `sigma_next == 0`.

# %%
def heun_update(f, xbar, sigma, sigma_next):
    ### BEGIN SOLUTION
    d = f(xbar, sigma)
    x_euler = xbar + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_euler
    return xbar + (sigma_next - sigma) * 0.5 * (d + f(x_euler, sigma_next))
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_heun_step(heun_update)

# %% [markdown]
# **Orders, measured.** With the optimal denoiser, the state at $t=500$ (on every grid below)
# against a 1,000-step Heun solution: halving the step halves DDIM's error and quarters the
# second-order solvers':

# %%
# NBVAL_CHECK_OUTPUT
xT_o = torch.randn(100, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
kw = dict(x_T=xT_o, return_trajectory=True, trajectory_steps=[500])
ref500 = sample(perfect, sched, xT_o.shape, "heun", steps=500, **kw)[1][500]
for name in ["ddim", "heun", "dpmpp_2m"]:
    e = [float((sample(perfect, sched, xT_o.shape, name, steps=S, **kw)[1][500] - ref500).norm())
         for S in (20, 40, 80)]
    print(f"{name:9s} error ratios for 20 -> 40 -> 80 steps: {e[0] / e[1]:.0f}, {e[1] / e[2]:.0f}")

# %% [markdown]
# **A trap: the ODE is neutrally stable.** Run DDIM with the trained mixture model as it is:

# %%
xT_q = torch.randn(dmlib.quick(500, 2000), 2, generator=torch.Generator().manual_seed(1))
for clip in (None, 3.0):
    xs, tr = sample(models["gmm"], sched_train, xT_q.shape, "ddim", steps=20, x_T=xT_q,
                    clip_x0=clip, return_trajectory=True)
    print(f"DDIM, 20 steps, clip_x0={clip}: std of x along the path " +
          ", ".join(f"t={t}: {tr[t].std():.2f}" for t in sorted(tr, reverse=True)[::5]) +
          f"; largest |x_0| {xs.abs().max():.1f}")

# %% [markdown]
# Without clipping the cloud grows steadily on the way down. Per step at large $t$ (where
# $\sqrt{1-\bar\alpha}\approx1$ and $\epsilon\approx x$), DDPM's update is
# $x'\approx(1+\tfrac\beta2)x-\beta\,\epsilon_\theta+\sqrt\beta z\approx(1-\tfrac\beta2)x+\sqrt\beta z$: it *contracts*
# and the fresh noise refills the variance. The ODE's update is
# $x'\approx(1+\tfrac\beta2)x-\tfrac\beta2\,\epsilon_\theta\approx x$: *neutral*, exactly preserving $\mathcal N(0,I)$
# with the right $\epsilon$. If the network predicts $\epsilon_\theta=c\,x$ with $c$ a little below 1, the
# ODE expands by $\exp(\tfrac12\int\beta(1-c)\,dt)$; once $x$ leaves the region the network was trained
# on, its prediction saturates, $c$ drops further, and the path runs away. DDPM forgets such
# errors, the ODE accumulates them. The cure used for images (chapter 7) works here too:
# **clip the model's $\hat x_0$ to the data's range** (here $[-3,3]$; the standardised data lie
# within about $\pm2$) and take $\epsilon$ from the clipped $\hat x_0$, which every sampler step in
# `dmlib.samplers` does when `clip_x0` is given. A better-trained network needs it less; the
# exact denoiser does not need it at all.
#
# **Quality against NFE, 2-D.** The trained mixture model, 2,000 samples (in full mode) from one
# fixed batch of $x_T$ for every setting, $\hat x_0$ clipped to $[-3,3]$ for all samplers,
# sliced-W2 ratio to the floor; the dashed line is DDPM with all $T$ steps:

# %%
CLIP = 3.0
NFE_LIST = dmlib.quick([5, 10], [5, 10, 20, 50, 100])
draw_gmm = lambda n, seed: make_toy("gmm", n, seed=seed)  # noqa: E731
quality = {}
for name in tqdm(["ddim", "heun", "dpmpp_2m"], desc="samplers"):
    for budget in NFE_LIST:
        S = steps_for_nfe(name, budget)
        xs = sample(models["gmm"], sched_train, xT_q.shape, name, steps=S, x_T=xT_q, clip_x0=CLIP)
        quality[name, nfe(name, S)] = sample_distance_report(xs, draw_gmm, "sw")["ratio"]
xs_ddpm = sample(models["gmm"], sched_train, xT_q.shape, "ddpm", x_T=xT_q, clip_x0=CLIP,
                 generator=torch.Generator().manual_seed(2))
ddpm_ratio = sample_distance_report(xs_ddpm, draw_gmm, "sw")["ratio"]
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for name, mk in (("ddim", "o"), ("heun", "s"), ("dpmpp_2m", "^")):
    pts = sorted((n, r) for (s, n), r in quality.items() if s == name)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], mk + "-", label=name)
ax.axhline(ddpm_ratio, color="k", ls="--", lw=0.8, label=f"DDPM, {T_TRAIN} steps")
ax.axhline(1.0, color="0.6", lw=0.8)
ax.set(xscale="log", xlabel="network evaluations (NFE)", ylabel="SW ratio (1 = floor)",
       title="Mixture, trained model: quality vs cost")
ax.legend(fontsize=8)
plt.show()
print(f"{'NFE':>5s} " + " ".join(f"{s:>9s}" for s in ("ddim", "heun", "dpmpp_2m")))
for budget in NFE_LIST:
    row = []
    for s in ("ddim", "heun", "dpmpp_2m"):
        n = nfe(s, steps_for_nfe(s, budget))
        row.append(f"{quality[s, n]:5.2f}({n:3d})")
    print(f"{budget:5d} " + " ".join(f"{r:>9s}" for r in row))
print(f"DDPM with {T_TRAIN} steps: {ddpm_ratio:.2f}   (NFE actually used in parentheses)")

# %% [markdown]
# Read the table against the DDPM line. The second-order solvers reach their plateau with
# about 10-20 evaluations, DDIM needs about 20-50, and none of them is better than its
# plateau: more steps converge to the solution of *this network's* ODE, not to the data. On
# this small 2-D model that plateau (a ratio near 1.9 in the benchmark, 3,000 training
# steps) is worse than 1000-step DDPM (1.24 there): the ODE carries every error of
# $\epsilon_\theta$ to the end, DDPM's noise washes them out (the thinking question of section 1).
# On MNIST below the ranking differs: in the benchmark (200 samples) DPM-Solver++ with 20
# evaluations has FD 58.9 against 66.8 for DDPM respaced to 20 steps.

# %% [markdown]
# **MNIST.** The $\varepsilon$ U-Net (`mnist_unet_eps`), the same 8 starting noises for every
# sampler at 10 NFE (DDPM respaced to 10 steps for comparison):

# %%
xT_m = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
grids = []
for name in ["ddpm", "ddim", "heun", "dpmpp_2m"]:
    S = steps_for_nfe(name, 10)
    g = torch.Generator().manual_seed(1)
    grids.append(sample(unet, spec, xT_m.shape, name, steps=S, x_T=xT_m, generator=g,
                        clip_x0=1.0).clamp(-1, 1))
image_grid(torch.cat(grids), nrow=8, title="10 NFE: DDPM / DDIM / Heun (8) / DPM-Solver++(2M), rows")
plt.show()

# %% [markdown]
# And the scores measured by the benchmark (`dmlib.quality`: Fréchet distance to the test set
# on the classifier's features, share of confidently classified samples, class entropy / ln 10),
# every setting on the same checkpoint and the same $x_T$ batch (seed 0):

# %%
mn, dd = load_result("cnf_mnist.json"), load_result("cnf_mnist_ddpm.json")
more = load_result("cnf_mnist_ddim_heun_dpmpp_2m.json")  # the ODE samplers at NFE 50 and 100
if mn is None or "samplers" not in mn:
    print("bench/results/cnf_mnist.json has no sampler rows yet")
else:
    mn["samplers"] = sorted(mn["samplers"] + (more["samplers"] if more else []),
                            key=lambda r: (r["nfe"], r["sampler"]))
    rows = list(mn["samplers"]) + ([dd["ddpm_1000"]] if dd else [])
    print(f"{'sampler':10s} {'steps':>5s} {'NFE':>5s} {'n':>5s} {'FD':>7s} {'confident':>9s} {'entropy':>8s}")
    for r in rows:
        print(f"{r['sampler']:10s} {r['steps'] or 1000:5d} {r['nfe']:5d} {r['n']:5d} {r['fd']:7.2f} "
              f"{100 * r['confident']:8.1f}% {r['entropy_ratio']:8.3f}")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, mk in (("ddim", "o"), ("heun", "s"), ("dpmpp_2m", "^"), ("ddpm", "x")):
        pts = sorted((r["nfe"], r["fd"]) for r in mn["samplers"] if r["sampler"] == name)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], mk + "-", label=name)
    if dd:
        ax.axhline(dd["ddpm_1000"]["fd"], color="k", ls="--", lw=0.8, label="DDPM, 1000 steps")
    ax.set(xscale="log", xlabel="network evaluations (NFE)", ylabel=f"FD (n = {rows[0]['n']})",
           title="MNIST, shipped U-Net: FD vs cost")
    ax.legend(fontsize=8)
    plt.show()

# %% [markdown]
# FD on a few hundred samples is biased upwards (the covariance of a small sample is noisy),
# so compare the rows with each other, not with chapter 7's 10,000-sample figure. Measured
# honestly against 1000-step DDPM on the same checkpoint and starting noise (FD 29.1): the
# best deterministic sampler, DPM-Solver++(2M), reaches 78.7 at 10 NFE (2.7 times) and 58.9
# at 20 NFE (2.0 times), short of the 1.5 and 1.2 times the course aimed for. At equal
# budgets it beats DDPM respaced to the same number of steps (113.2 and 66.8).
#
# More steps do not close the gap: at 50 and 100 NFE all three ODE samplers level off at FD
# 46-50, about 1.6 times the 1000-step DDPM. A solver's error would keep shrinking with the
# steps; this does not, so it is the *network's* error: the ODE built from an imperfect
# $\varepsilon_\theta$ is a different, worse sampler than the stochastic chain, whose fresh noise
# at every step corrects part of the error instead of carrying it to $x_0$ (Karras et al. 2022
# make the same observation). For
# CIFAR-10 the papers report FID 4.16 for DDIM at 100 steps and 6.84 at 20, DPM-Solver 4.70 at
# 10 NFE and 1.97 for EDM's Heun sampler at 35 NFE (with its own network and schedule).
#
# ## 6. Explore: samplers and trajectories
#
# Pick a sampler and an NFE: the trained mixture model's samples (left) and 60 trajectories
# from $x_T$ to $x_0$ (right; every visited step), from the same starting noise ($\hat x_0$
# clipped to $[-3,3]$ as above).

# %%
import ipywidgets as widgets  # noqa: E402

N_W = dmlib.quick(300, 1500)
xT_w = torch.randn(N_W, 2, generator=torch.Generator().manual_seed(5))
W_NFES = dmlib.quick([5, 10], [5, 10, 20, 50])
widget_runs = {}
for name in ["ddim", "heun", "dpmpp_2m", "ddpm"]:
    for budget in W_NFES:
        S = steps_for_nfe(name, budget)
        widget_runs[name, budget] = sample(models["gmm"], sched_train, xT_w.shape, name, steps=S,
                                           x_T=xT_w, return_trajectory=True, clip_x0=CLIP,
                                           generator=torch.Generator().manual_seed(6))


def show_sampler(sampler="dpmpp_2m", nfe_budget=10):
    xs, traj = widget_runs[sampler, nfe_budget]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    scatter2d(make_toy("gmm", 1500, seed=7), ax=axes[0], color="0.8", label="data")
    scatter2d(xs, ax=axes[0], label="samples",
              title=f"{sampler}, {nfe(sampler, steps_for_nfe(sampler, nfe_budget))} NFE")
    axes[0].legend(loc="upper right", fontsize=7, markerscale=4)
    plot_trajectories({t: v[:60] for t, v in traj.items()}, ax=axes[1], n_paths=60,
                      title="trajectories x_T -> x_0")
    for ax in axes:
        ax.set(xlabel="x[0]", ylabel="x[1]")
    plt.show()


widgets.interact(show_sampler, sampler=["ddim", "heun", "dpmpp_2m", "ddpm"], nfe_budget=W_NFES);

# %% [markdown]
# DDPM's trajectories are jagged (fresh noise at every step) and with few steps its samples are
# blurred; the ODE samplers' paths are smooth curves, and the second-order ones resolve the
# modes with 10-20 evaluations.
#
# ## Summary
#
# * The forward chain is the discretisation of the VP SDE; its probability-flow ODE
#   $dx/dt=-\tfrac12\beta(t)[x+\nabla\log q_t]$ has the same marginals, and in DDIM's variables it
#   reads $d\bar x/d\sigma=\epsilon_\theta$: a trained diffusion model is a CNF.
# * DDIM with $\eta=0$ is Euler's method on it; with $\eta=1$ it is DDPM with $\tilde\beta$.
# * With the exact denoiser the ODE reproduces the marginals and the true log-likelihood, with
#   errors that shrink as the solver's order predicts.
# * The ODE gives exact likelihoods of trained models (no bound), an invertible encoding, and
#   second-order samplers that need 10-20 network calls.
#
# **You can now**
#
# - [ ] derive the probability-flow ODE from the forward chain and rewrite it as $d\bar x/d\sigma=\epsilon$;
# - [ ] implement DDIM for any $\eta$ and say what $\eta=0$ and $\eta=1$ are;
# - [ ] compute a diffusion model's log-likelihood by the instantaneous change of variables,
#       with an exact or a Hutchinson trace, and convert it to bits/dim with dequantization;
# - [ ] encode data to noise with DDIM inversion and interpolate in $x_T$ space with slerp;
# - [ ] choose a sampler for a budget of network evaluations, and measure the choice.
#
# **Exercises** in this chapter: 8.1 the probability-flow drift (★), 8.2 a DDIM step (★★),
# 8.3 a Heun step (★★). Further ideas: sample the MNIST model with `eta=0.5`; compute the ODE
# NLL with `solver="euler"` and see how many more steps it needs; try a grid uniform in $t$
# instead of $\log\sigma$ in `likelihood_grid`.
