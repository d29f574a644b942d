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
# # Chapter 6: training and sampling on 2-D toy data
#
# Chapters 3-5 built every piece of DDPM: the forward process, the bound, the simple loss and
# the conversion between targets. Here we put them together and **train a diffusion model**,
# on 2-D data where we can see everything and, for some data sets, know the right answer.
#
# 1. **Algorithm 1** (training) and **Algorithm 2** (sampling) written inline as in the
#    lecture, then the same through `dmlib`, checked to agree on a fixed seed;
# 2. five data sets: moons, swiss roll, 8 Gaussians, checkerboard, and a **Gaussian mixture**
#    whose optimal denoiser $\mathbb E[x_0\mid x_t]$ is known in closed form: the "perfect
#    model" we compare the network with;
# 3. the sampler's variance, $\sigma_t^2=\beta_t$ vs $\tilde\beta_t$;
# 4. **quality, measured**: the negative ELBO (an upper bound on the NLL, in nats) against the
#    true entropy, and a sample distance against its floor;
# 5. the reverse trajectory, animated, and a widget to explore data sets, $T$ and the variance;
# 6. **what goes wrong**: too few steps, too small a network, too short training, a bad schedule.
#
# Everything runs on a laptop CPU in a few minutes (in seconds in quick mode).
#
# **Objectives.** After this chapter you can
#
# * implement Algorithm 1 (one training loss) and Algorithm 2 (one ancestral sampling step)
#   and train a working diffusion model on 2-D data;
# * compare a trained network with the optimal denoiser, and derive the optimal prediction
#   for the simplest data set, a single point;
# * measure sample quality with a likelihood bound against the data's entropy and with a
#   sample distance against its floor;
# * recognise the four usual failures (too few steps, too small a network, too short
#   training, a bad schedule) in a picture and in a number.
#
# Sections marked **Optional depth ▸** can be skipped (chapter 0 explains the markers).

# %%
import json
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML, display

import dmlib
from dmlib import checks
from dmlib.data import CHECKERBOARD_ENTROPY, default_gmm2d, make_toy, ring_gmm
from dmlib.losses import diffusion_loss, prior_kl, vlb_terms
from dmlib.metrics import sample_distance_report
from dmlib.models import MLPConfig, MLPDenoiser, count_parameters
from dmlib.optimal import OptimalDenoiser
from dmlib.plotting import plot_curve, plot_trajectories, scatter2d, scatter_grid
from dmlib.sampling import ddpm_sample
from dmlib.schedules import Schedule
from dmlib.training import TrainConfig, train
from tqdm.auto import tqdm

gen = dmlib.seed_everything(0)
# One thread: these models are tiny, a second thread gains little on an idle CPU and, on a
# busy one (CI, a laptop doing other work), thread contention slowed training 20-fold.
torch.set_num_threads(1)
plt.rcParams["figure.dpi"] = 70  # keeps the notebook small
print("quick mode:", dmlib.QUICK)

# %% [markdown]
# ## 1. The data
#
# Five 2-D data sets from `dmlib.data.make_toy`, each scaled to mean 0 and unit standard
# deviation per coordinate (the scale the forward process expects: $x_T\approx\mathcal N(0,I)$
# has unit variance too). Three have a **known density**: the 3 x 3 Gaussian mixture (`gmm`),
# the 8 Gaussians (a mixture too) and the checkerboard (uniform on 8 cells, entropy
# $\log 6$). For those we can compare a model's likelihood bound with the truth.

# %%
SETS = ["moons", "swiss_roll", "eight_gaussians", "checkerboard", "gmm"]
data = {name: make_toy(name, 50_000, seed=1) for name in SETS}  # training sets
fig = scatter_grid([data[n][:3000] for n in SETS], titles=SETS, size=2.6)
fig.suptitle("The five toy data sets (3,000 points each)", y=1.02)
for ax in fig.axes:
    ax.set(xlabel="x[0]", ylabel="x[1]")
plt.show()

# %% [markdown]
# ## 2. Algorithm 1: training
#
# DDPM's training loop (Ho et al. 2020, Algorithm 1) draws **one random timestep per
# example**, noises the example in one jump with the closed form of chapter 3, and regresses
# the noise (chapter 5's simple loss):
#
# > **repeat**
# > &nbsp;&nbsp; $x_0 \sim q(x_0)$, $\quad t \sim \mathrm{Uniform}\{1,\dots,T\}$, $\quad \epsilon\sim\mathcal N(0, I)$
# > &nbsp;&nbsp; $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$
# > &nbsp;&nbsp; take a gradient step on $\nabla_\theta \,\|\epsilon - \epsilon_\theta(x_t, t)\|^2$
# > **until** converged
#
# This is the bound of chapter 4 with its weights $w(t)$ set to 1 and the sum over $t$ replaced
# by one random $t$ per example (an unbiased estimate of the sum, up to the factor $T$). Inline,
# one step on a batch:

# %%
T = dmlib.quick(100, 1000)  # quick mode (CI) trains and samples with 100 steps
sched = Schedule.linear(T)  # beta_1 = 1e-4 ... beta_T = 0.02 for T = 1000
sched_ref = Schedule.linear(1000)  # for checked, closed-form results: the same in both modes


def algorithm1_loss(model, x0, generator):
    B = x0.shape[0]
    t = torch.randint(1, T + 1, (B,), generator=generator)          # t ~ U{1..T}, one per example
    eps = torch.randn(x0.shape, generator=generator)                 # eps ~ N(0, I)
    ab = sched.alpha_bar[t].float()[:, None]                         # alpha_bar_t, shape (B, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps                      # q(x_t | x_0) in one jump
    return ((eps - model(xt, t)) ** 2).mean()                        # ||eps - eps_theta||^2


# %% [markdown]
# `dmlib.losses.diffusion_loss` is the same loss (it also covers the other targets and the
# ELBO weights). On the same batch, model and random numbers the two agree:

# %%
# checked by the assert below (the printed numbers depend on the quick switch)
torch.manual_seed(0)
net = MLPDenoiser(MLPConfig(hidden=64, depth=2))
torch.nn.init.normal_(net.out.weight, std=0.1)  # the output layer starts at 0; make it non-trivial
x0 = data["moons"][:256]
mine = algorithm1_loss(net, x0, torch.Generator().manual_seed(5))
ref = diffusion_loss(net, sched, x0, generator=torch.Generator().manual_seed(5))
print(f"inline Algorithm 1: loss {mine.item():.5f} | dmlib.diffusion_loss: {ref.item():.5f} | "
      f"difference {abs(mine - ref).item():.1e}")
assert torch.allclose(mine, ref, rtol=1e-5), "the inline loss and dmlib's disagree"

# %% [markdown]
# **Exercise 6.1 (the training loss; ★★ core).** Given a batch `x0` (B, d), its timesteps `t` (a long
# tensor (B,)) and its noise `eps` (like `x0`), return the scalar loss of Algorithm 1:
# the mean over the batch and the dimensions of $(\epsilon - \epsilon_\theta(x_t, t))^2$ with
# $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon$. Call the network as
# `model(xt, t)`; `schedule.alpha_bar[t]` is $\bar\alpha_t$.

# %%
def simple_loss(model, schedule, x0, t, eps):
    ### BEGIN SOLUTION
    ab = schedule.alpha_bar[t].to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps  # q(x_t | x0), one jump
    return ((eps - model(x_t, t)) ** 2).mean()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_simple_loss(simple_loss)

# %% [markdown]
# The check knows the usual slips. What it says to four of them (the network fed $x_0$, the
# noise scaled by a variance, a sum over dimensions, $\bar\alpha$ read one step early):

# %%
# NBVAL_CHECK_OUTPUT
def _xt(s, x0, t, eps, var=False, shift=0):
    ab = s.alpha_bar[t + shift].to(x0.dtype)[:, None]
    return ab.sqrt() * x0 + ((1 - ab) if var else (1 - ab).sqrt()) * eps


wrong_losses = {
    "model(x0, t)": lambda m, s, x0, t, e: ((e - m(x0, t)) ** 2).mean(),
    "variance as std": lambda m, s, x0, t, e: ((e - m(_xt(s, x0, t, e, var=True), t)) ** 2).mean(),
    "sum over dims": lambda m, s, x0, t, e: ((e - m(_xt(s, x0, t, e), t)) ** 2).sum(1).mean(),
    "alpha_bar[t - 1]": lambda m, s, x0, t, e: ((e - m(_xt(s, x0, t, e, shift=-1), t)) ** 2).mean(),
}
for name, fn in wrong_losses.items():
    print(f"[{name}]", end=" ")
    checks.check_simple_loss(fn)

# %% [markdown]
# ### Training on all five data sets
#
# `dmlib.training.train` runs the loop (AdamW, gradient clipping, an exponential moving
# average (EMA) of the weights, which we sample from). The network is `MLPDenoiser`: a
# residual MLP that sees the timestep through a *sinusoidal embedding* in every block: the
# integer $t$ becomes the vector $(\sin(t\,\omega_k), \cos(t\,\omega_k))_k$ for geometrically
# spaced frequencies $\omega_k$, so that nearby timesteps get similar vectors while distant
# ones stay distinguishable (the position encoding of transformers, used for time). $T=1000$,
# the linear schedule, batches of 512. Each data set gets the same recipe.

# %%
MODEL = MLPConfig(hidden=128, depth=3)
STEPS = dmlib.quick(50, 1500)
RECIPE = dict(batch_size=dmlib.quick(128, 512), lr=2e-3, ema_decay=dmlib.quick(0.8, 0.995), warmup_steps=dmlib.quick(10, 100))


def loss_fn(model, batch, generator):
    return diffusion_loss(model, sched, batch, generator=generator)  # Algorithm 1


models, histories, train_seconds = {}, {}, {}
for name in SETS:
    torch.manual_seed(0)
    res = train(MLPDenoiser(MODEL), loss_fn, data[name], TrainConfig(steps=STEPS, **RECIPE))
    models[name], histories[name], train_seconds[name] = res.ema_model, res.history, res.seconds
    print(f"{name:16s} {STEPS} steps in {res.seconds:5.1f} s, final loss "
          f"{np.mean(res.history[-100:]):.3f}")
print(f"parameters per model: {count_parameters(MLPDenoiser(MODEL)):,}")

# %%
k = max(1, STEPS // 100)  # smooth the noisy per-batch loss over windows of k steps
ax = plot_curve(np.arange(STEPS // k) * k,
                {n: np.convolve(histories[n], np.ones(k) / k, mode="valid")[::k][:STEPS // k]
                 for n in SETS},
                title="Training loss (simple eps loss, smoothed)", xlabel="step",
                ylabel="mean (eps - eps_theta)^2", logy=True)
plt.show()

# %% [markdown]
# The loss does not go to zero, and should not: at large $t$ the noise cannot be recovered
# from $x_t$ (there is almost no signal left), so even the optimal network has an error near 1
# per coordinate there. Section 4 compares it with that optimum.
#
# ## 3. Algorithm 2: sampling
#
# > $x_T \sim \mathcal N(0, I)$
# > **for** $t = T, \dots, 1$:
# > &nbsp;&nbsp; $z \sim \mathcal N(0, I)$ if $t > 1$, else $z = 0$
# > &nbsp;&nbsp; $x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\epsilon_\theta(x_t, t)\Big) + \sigma_t z$
# > **return** $x_0$
#
# The bracket is the posterior mean $\tilde\mu_t(x_t, \hat x_0)$ of chapter 4 written with the
# predicted noise (the lecture's "convert back to $\tilde x_{t-1}$ prediction during
# sampling"); $\sigma_t z$ puts back fresh noise of the right size. **No noise at the last
# step**: $x_0$ is the mean of $p_\theta(x_0\mid x_1)$. Inline:

# %%
@torch.no_grad()
def algorithm2(model, schedule, n, generator, variance="beta"):
    x = torch.randn(n, 2, generator=generator)                                  # x_T ~ N(0, I)
    var = schedule.betas if variance == "beta" else schedule.posterior_variance  # sigma_t^2
    for t in range(schedule.T, 0, -1):
        eps = model(x, torch.full((n,), t, dtype=torch.long))
        a, ab = float(schedule.alphas[t]), float(schedule.alpha_bar[t])
        mean = (x - (1 - a) / math.sqrt(1 - ab) * eps) / math.sqrt(a)           # beta_t = 1 - alpha_t
        if t > 1:
            x = mean + math.sqrt(float(var[t])) * torch.randn(x.shape, generator=generator)
        else:
            x = mean                                                             # z = 0 at t = 1
    return x


# %% [markdown]
# For the Gaussian mixture, the **optimal denoiser** is known in closed form (chapter 4,
# `dmlib.optimal`): with $a=\sqrt{\bar\alpha_t}$, $s^2 = 1-\bar\alpha_t$ and the
# *responsibilities* of the noised mixture $q(x_t)$, the probabilities that component $k$
# (weight $w_k$, mean $\mu_k$, variance $v_k$) produced $x_t$, by Bayes' rule:
# $r_k(x_t) = w_k\,\mathcal N(x_t; a\mu_k, a^2v_k + s^2) / \sum_j w_j\,\mathcal N(x_t; a\mu_j, a^2v_j + s^2)$,
#
# $$\mathbb E[x_0\mid x_t] = \sum_k r_k(x_t)\Big(\mu_k + \frac{a v_k}{a^2 v_k + s^2}(x_t - a\mu_k)\Big),
# \qquad \epsilon^*(x_t,t) = \mathbb E[\epsilon\mid x_t] = \frac{x_t - a\,\mathbb E[x_0\mid x_t]}{s}.$$
#
# It is the network that minimises the loss of Algorithm 1 exactly, so sampling with it shows
# what DDPM can do with a *perfect* model. `dmlib.sampling.ddpm_sample` runs Algorithm 2; on
# the same random numbers it agrees with the inline loop:

# %%
# checked by the assert below (the printed numbers depend on the quick switch)
gmm = default_gmm2d()
perfect = OptimalDenoiser(gmm, sched, "eps")  # model(xt, t) -> E[eps | x_t]
mine = algorithm2(perfect, sched, 500, torch.Generator().manual_seed(3))
ref = ddpm_sample(perfect, sched, (500, 2), generator=torch.Generator().manual_seed(3))
for name, xs in (("inline Algorithm 2", mine), ("dmlib.ddpm_sample", ref)):
    print(f"{name:18s}: 500 points, mean ({xs[:, 0].mean():+.3f}, {xs[:, 1].mean():+.3f}), "
          f"std ({xs[:, 0].std():.3f}, {xs[:, 1].std():.3f})")
d = (mine - ref).abs().max().item()  # float32 round-off, summed over 1,000 steps
print("largest coordinate difference:", "below 2e-4" if d < 2e-4 else f"{d:.1e} (too large)")
assert torch.allclose(mine, ref, atol=2e-4), "the inline sampler and dmlib's disagree"

# %% [markdown]
# **Exercise 6.2 (one ancestral step; ★★ core).** Given $x_t$ (B, d), an int `t` and the noise `z`
# (like $x_t$), return $x_{t-1}$ of Algorithm 2 with $\sigma_t^2 = \beta_t$ (and no noise at
# $t=1$). Call the network with a long tensor of shape (B,): `model(xt, torch.full((B,), t))`.

# %%
def ancestral_step(model, schedule, xt, t, z):
    ### BEGIN SOLUTION
    eps = model(xt, torch.full((xt.shape[0],), t, dtype=torch.long))
    beta, alpha, ab = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
    mean = (xt - beta / (1 - ab).sqrt() * eps) / alpha.sqrt()
    return mean if t == 1 else mean + beta.sqrt() * z
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_ancestral_step(ancestral_step)

# %% [markdown]
# Three classic slips and what the check says (noise added at the last step, $\sigma_t^2$
# used as $\sigma_t$, the eps coefficient $\beta_t/(1-\bar\alpha_t)$ without its square root):

# %%
# NBVAL_CHECK_OUTPUT
def _step(m, s, xt, t, z, last=False, var=False, coef_pow=0.5):
    eps = m(xt, torch.full((xt.shape[0],), t, dtype=torch.long))
    mean = (xt - s.betas[t] / (1 - s.alpha_bar[t]) ** coef_pow * eps) / s.alphas[t].sqrt()
    return mean if (t == 1 and not last) else mean + (s.betas[t] if var else s.betas[t].sqrt()) * z


for name, fn in {"noise at t = 1": lambda *a: _step(*a, last=True),
                 "sigma^2 as sigma": lambda *a: _step(*a, var=True),
                 "beta / (1 - alpha_bar)": lambda *a: _step(*a, coef_pow=1.0)}.items():
    print(f"[{name}]", end=" ")
    checks.check_ancestral_step(fn)

# %% [markdown]
# ### Samples
#
# The network trained in section 2 against the perfect model and the data, on the Gaussian
# mixture (1,000 samples each in full mode):

# %%
N_SHOW = dmlib.quick(300, 1000)
t0 = time.perf_counter()
samples = {name: ddpm_sample(models[name], sched, (N_SHOW, 2), generator=torch.Generator().manual_seed(1))
           for name in tqdm(SETS, desc="sampling")}
samples_perfect = ddpm_sample(perfect, sched, (N_SHOW, 2), generator=torch.Generator().manual_seed(1))
print(f"sampled {len(SETS) + 1} x {N_SHOW} points with T = {T} steps in {time.perf_counter() - t0:.1f} s")
fig = scatter_grid([make_toy("gmm", N_SHOW, seed=7), samples_perfect, samples["gmm"]],
                   titles=["data", "optimal denoiser (perfect model)", "trained network"], size=3)
for ax in fig.axes:
    ax.set(xlabel="x[0]", ylabel="x[1]")
plt.show()

# %% [markdown]
# ### $\sigma_t^2 = \beta_t$ or $\tilde\beta_t$?
#
# The reverse process' variance is not learned in DDPM; two choices are natural (Ho et al.):
# $\sigma_t^2=\beta_t$, the right variance if $x_0\sim\mathcal N(0,I)$, and
# $\sigma_t^2=\tilde\beta_t=\frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$, the right one if
# $x_0$ is a single point (it is the variance of $q(x_{t-1}\mid x_t,x_0)$). They are the two
# extremes; they differ only at small $t$, where $\tilde\beta_t < \beta_t$ ($\tilde\beta_1=0$):

# %%
# NBVAL_CHECK_OUTPUT
for t in [1, 2, 5, 20, 100, 1000]:  # T = 1000, linear
    b, bt = float(sched_ref.betas[t]), float(sched_ref.posterior_variance[t])
    print(f"t={t:4d}  beta_t={b:.3e}  beta_tilde_t={bt:.3e}  ratio={bt / b:.4f}")

# %% [markdown]
# The DDPM paper reports similar samples for both. Here, with the same starting noise:

# %%
samples_bt = ddpm_sample(models["gmm"], sched, (N_SHOW, 2), variance="beta_tilde",
                         generator=torch.Generator().manual_seed(1), progress=True)
draw_gmm = lambda n, seed: make_toy("gmm", n, seed=seed)  # noqa: E731
for label, xs in [("sigma^2 = beta      ", samples["gmm"]), ("sigma^2 = beta_tilde", samples_bt)]:
    r = sample_distance_report(xs, draw_gmm, "sw")
    print(f"{label}: sliced Wasserstein {r['distance']:.4f}, floor {r['floor']:.4f}, ratio {r['ratio']:.2f}")
fig = scatter_grid([samples["gmm"], samples_bt], titles=["sigma_t^2 = beta_t", "sigma_t^2 = beta_tilde_t"], size=3)
for ax in fig.axes:
    ax.set(xlabel="x[0]", ylabel="x[1]")
plt.show()

# %% [markdown]
# (The sample distance and its "ratio to the floor" are explained in section 5.) Within the
# noise of the measurement the two samplers are equally good on 2-D data with $T=1000$; the
# difference matters with few steps, where $\sum_t\sigma_t^2$ differs more (section 7).
#
# ## 4. The network against the optimal denoiser
#
# For the Gaussian mixture we can ask directly how far the network's prediction is from the
# best possible one, at every noise level. We compare the $x_0$-predictions
# $\hat x_0(x_t,t) = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta)/\sqrt{\bar\alpha_t}$
# (chapter 5) with $\mathbb E[x_0\mid x_t]$, and put the **irreducible** error
# $\mathbb E\|x_0 - \mathbb E[x_0\mid x_t]\|^2$ (what even the perfect model gets wrong: $x_t$
# does not determine $x_0$) beside it:

# %%
from dmlib.optimal import optimal_x0
from dmlib.targets import to_x0

ts = torch.unique(torch.logspace(0, math.log10(T), 30).round().long())
x0_eval = gmm.sample(dmlib.quick(500, 4000), torch.Generator().manual_seed(11))
g_eval = torch.Generator().manual_seed(12)
err_net, err_min = [], []
with torch.no_grad():
    for t in ts.tolist():
        tt = torch.full((len(x0_eval),), t, dtype=torch.long)
        eps = torch.randn(x0_eval.shape, generator=g_eval)
        ab = float(sched.alpha_bar[t])
        xt = math.sqrt(ab) * x0_eval + math.sqrt(1 - ab) * eps
        x0_opt = optimal_x0(gmm, sched, xt, tt)  # E[x0 | x_t] in closed form, float64
        x0_net = to_x0(sched, models["gmm"](xt, tt).double(), xt.double(), tt, "eps")
        err_net.append(((x0_net - x0_opt) ** 2).sum(1).mean().item())
        err_min.append(((x0_eval.double() - x0_opt) ** 2).sum(1).mean().item())
ax = plot_curve(ts.numpy(), {"network vs optimal: E||x0_theta - E[x0|x_t]||^2": err_net,
                             "irreducible: E||x0 - E[x0|x_t]||^2": err_min},
                title="x0-prediction error per timestep (Gaussian mixture)", xlabel="t",
                ylabel="squared error (sum over 2 dims)", logy=True)
ax.set_xscale("log")
plt.show()
i_small, i_mid = 0, len(ts) // 2
print(f"t={int(ts[i_small])}: network excess {err_net[i_small]:.2e} vs irreducible {err_min[i_small]:.2e}")
print(f"t={int(ts[i_mid])}: network excess {err_net[i_mid]:.2e} vs irreducible {err_min[i_mid]:.2e}")

# %% [markdown]
# At every $t$ the network's excess error is well below the irreducible one (in full mode):
# the network has nearly learned the optimal denoiser. Small $t$ is the hard end in *relative*
# terms: there the irreducible error is tiny, so a small absolute mistake matters, and the
# likelihood bound weighs those steps heavily (next section).
#
# **Exercise 6.4 (★★★ stretch: an idea, not a formula).** The simplest data set of all is a
# single point: every $x_0$ equals $c$. What is the optimal noise prediction
# $\epsilon^*(x_t, t)$ for it? Write `point_mass_eps(schedule, xt, t, c)` (`xt` of shape
# `(B, ...)`, `c` of shape `xt.shape[1:]`, `t` an int or `(B,)`). Then predict what
# Algorithm 2 with this model and $\sigma_t^2 = \beta_t$ returns, and check it below.

# %%
def point_mass_eps(schedule: Schedule, xt: torch.Tensor, t, c: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    ab = schedule.extract(schedule.alpha_bar, t, xt)
    return (xt - ab.sqrt() * c) / (1 - ab).sqrt()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_point_mass_eps(point_mass_eps)

# %% [markdown]
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# With one data point, $x_0 = c$ is known, so $\epsilon$ is no longer random given
# $x_t$: solving $x_t = \sqrt{\bar\alpha_t}\,c + \sqrt{1-\bar\alpha_t}\,\epsilon$ gives
# $\epsilon^* = (x_t - \sqrt{\bar\alpha_t}\,c)/\sqrt{1-\bar\alpha_t}$ exactly, and the optimal
# model's loss is 0. Sampling: whatever happens before, the last step ($t = 1$, no noise) puts
# every sample on $c$ exactly, because with $1-\bar\alpha_1 = \beta_1$ the mean
# $\frac{1}{\sqrt{\alpha_1}}\big(x_1 - \frac{\beta_1}{\sqrt{\beta_1}}\epsilon^*\big)$ simplifies to
# $c$. This data set is also where $\tilde\beta_t$ is the exact reverse variance (chapter 4).
#
# </details>

# %%
# NBVAL_CHECK_OUTPUT
c_point = torch.tensor([1.0, -0.5])


def point_model(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The optimal eps-model for the data set {c_point} (the reference, whatever you wrote)."""
    ab = sched_ref.extract(sched_ref.alpha_bar, t, xt)
    return (xt - ab.sqrt() * c_point) / (1 - ab).sqrt()


xs_point = ddpm_sample(point_model, sched_ref, (500, 2), generator=torch.Generator().manual_seed(5))
print(f"500 samples of the single-point model: largest distance from c = {(xs_point - c_point).norm(dim=1).max():.4f}")

# %% [markdown]
# ## 5. Quality, measured
#
# ### The likelihood bound
#
# Chapter 4's bound, in nats per example, with every term evaluated exactly
# (`dmlib.losses.vlb_terms`; one Monte Carlo draw of $x_t$ per term and example):
#
# $$-\log p_\theta(x_0) \le \underbrace{\mathrm{KL}(q(x_T\mid x_0)\,\|\,\mathcal N(0,I))}_{L_T}
# + \sum_{t=2}^{T}\underbrace{\mathrm{KL}(q(x_{t-1}\mid x_t,x_0)\,\|\,p_\theta(x_{t-1}\mid x_t))}_{L_{t-1}}
# \underbrace{-\log p_\theta(x_0\mid x_1)}_{L_0}.$$
#
# The decoder $L_0$ is a Gaussian density $\mathcal N(x_0;\mu_\theta(x_1,1),\beta_1 I)$ (2-D
# data are real-valued). Averaged over data, the bound is at least the data's entropy
# $H[p]=-\mathbb E\log p(x_0)$: the **gap** to the entropy measures the model (and the bound's
# own slack). We measure the gap *per point* against the true $-\log p(x_0)$ of the same
# held-out points, which removes the data's own spread from the error bar.
#
# **Exercise 6.3 (one term of the bound; ★★ core).** Return $L_{t-1}$ per example, shape (B,), for
# $t\ge2$, with $p_\theta(x_{t-1}\mid x_t)=\mathcal N(\mu_\theta, \sigma_t^2 I)$, $\sigma_t^2=\beta_t$,
# $\mu_\theta=\frac{1}{\sqrt{\alpha_t}}(x_t-\frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon_\theta(x_t,t))$
# and $q(x_{t-1}\mid x_t,x_0) = \mathcal N(\tilde\mu_t,\tilde\beta_t I)$ (chapter 4):
#
# $$L_{t-1} = \sum_{i=1}^{d}\Big[\tfrac12\Big(\log\frac{\sigma_t^2}{\tilde\beta_t} + \frac{\tilde\beta_t}{\sigma_t^2} - 1\Big)
# + \frac{(\tilde\mu_{t,i} - \mu_{\theta,i})^2}{2\sigma_t^2}\Big].$$
#
# `schedule.posterior_mean_coef_x0[t]`, `schedule.posterior_mean_coef_xt[t]` and
# `schedule.posterior_variance[t]` hold $\tilde\mu_t$'s coefficients and $\tilde\beta_t$; `t` is
# a long tensor (B,).

# %%
def kl_term(model, schedule, x0, xt, t):
    ### BEGIN SOLUTION
    col = lambda v: v[t].to(xt.dtype).reshape(-1, *([1] * (xt.dim() - 1)))  # noqa: E731
    beta, alpha, ab, bt = (col(v) for v in (schedule.betas, schedule.alphas, schedule.alpha_bar,
                                            schedule.posterior_variance))
    mu_q = col(schedule.posterior_mean_coef_x0) * x0 + col(schedule.posterior_mean_coef_xt) * xt
    mu_p = (xt - beta / (1 - ab).sqrt() * model(xt, t)) / alpha.sqrt()
    kl = 0.5 * (torch.log(beta / bt) + bt / beta - 1) + (mu_q - mu_p) ** 2 / (2 * beta)
    return kl.reshape(x0.shape[0], -1).sum(1)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_kl_term(kl_term)

# %% [markdown]
# Two slips: dropping the constant (it is not zero, since $\sigma_t^2=\beta_t\ne\tilde\beta_t$),
# and dividing by $2\sigma_t$ instead of $2\sigma_t^2$:

# %%
# NBVAL_CHECK_OUTPUT
def _kl(m, s, x0, xt, t, const=True, std=False):
    col = lambda v: v[t].to(xt.dtype)[:, None]  # noqa: E731
    beta, bt = col(s.betas), col(s.posterior_variance)
    mu_q = col(s.posterior_mean_coef_x0) * x0 + col(s.posterior_mean_coef_xt) * xt
    mu_p = (xt - beta / (1 - col(s.alpha_bar)).sqrt() * m(xt, t)) / col(s.alphas).sqrt()
    kl = (mu_q - mu_p) ** 2 / (2 * (beta.sqrt() if std else beta))
    return (kl + (0.5 * (torch.log(beta / bt) + bt / beta - 1) if const else 0)).sum(1)


for name, fn in {"no constant": lambda *a: _kl(*a, const=False),
                 "sigma for sigma^2": lambda *a: _kl(*a, std=True)}.items():
    print(f"[{name}]", end=" ")
    checks.check_kl_term(fn)

# %% [markdown]
# The perfect model first: its bound on held-out Gaussian-mixture points (in float64, so the
# printed value is reproducible) against the mixture's entropy. Its gap is what the bound
# itself costs with $T=1000$ steps, whatever the network:

# %%
# NBVAL_CHECK_OUTPUT
x_held64 = gmm.sample(2000, torch.Generator().manual_seed(2), dtype=torch.float64)
with torch.no_grad():  # T = 1000 in both modes
    terms_ref = vlb_terms(OptimalDenoiser(gmm, sched_ref), sched_ref, x_held64, variance="beta",
                          generator=torch.Generator().manual_seed(0))
gap_opt = terms_ref.sum(1) + gmm.log_prob(x_held64)  # per point: bound - (-log p)
H_gmm, H_se = gmm.entropy(n_mc=200_000)
print(f"entropy of the mixture H[p] = {H_gmm:.1f} nats")
print(f"optimal denoiser (T = 1000): bound {terms_ref.sum(1).mean():.1f} nats; "
      f"gap to -log p below 0.15 nats: {abs(gap_opt.mean().item()) < 0.15}")

# %%
print(f"(more digits, unchecked) optimal gap = {gap_opt.mean():.4f} +- "
      f"{gap_opt.std() / math.sqrt(len(gap_opt)):.4f} nats, H = {H_gmm:.4f} +- {H_se:.4f}")

# %% [markdown]
# So the bound of the perfect model is tight to within a few hundredths of a nat (about
# $0.05\pm0.03$ here; the discretisation into $T=1000$ Gaussian steps costs little). Now the
# trained networks, on 1,000 held-out points per data set (in full mode); the gap where the
# density is known:

# %%
N_HELD = dmlib.quick(200, 1000)
true_nll = {"gmm": lambda x: -gmm.log_prob(x),
            "eight_gaussians": lambda x: -ring_gmm(8, std=0.1).log_prob(x),
            "checkerboard": lambda x: torch.full((len(x),), CHECKERBOARD_ENTROPY, dtype=torch.float64)}
vlb_table, terms_net = {}, {}
for name in tqdm(SETS, desc="NLL bounds"):
    x_held = make_toy(name, N_HELD, seed=2)
    with torch.no_grad():
        terms = vlb_terms(models[name], sched, x_held, variance="beta",
                          generator=torch.Generator().manual_seed(0)).double()
    terms_net[name] = terms
    bound = terms.sum(1)
    line = f"{name:16s} bound {bound.mean():6.3f} +- {bound.std() / math.sqrt(N_HELD):.3f} nats"
    if name in true_nll:
        gap = bound - true_nll[name](x_held)
        vlb_table[name] = (bound.mean().item(), gap.mean().item(), (gap.std() / math.sqrt(N_HELD)).item())
        line += f"   gap to -log p: {gap.mean():6.3f} +- {gap.std() / math.sqrt(N_HELD):.3f}"
    print(line)

# %% [markdown]
# After 1,500 steps the network's gap on the mixture is roughly 0.2 nats (the benchmark
# below, with 3,000 steps, gets it under 0.1). Where does the bound lose? Each term, averaged over the held-out points, the network
# against the optimal denoiser (Gaussian mixture; the $L_0$ term is off the chart's scale, as
# it is a log-density rather than a KL, and printed below):

# %%
if T == 1000:
    terms_opt = terms_ref
else:  # quick mode: the optimal denoiser on the same T as the network
    with torch.no_grad():
        terms_opt = vlb_terms(perfect, sched, x_held64, variance="beta", generator=torch.Generator().manual_seed(0))
kl_net = terms_net["gmm"][:, 2:].mean(0).numpy()  # columns are indexed by t: L_{t-1} at t = 2..T
kl_opt = terms_opt[:, 2:].mean(0).numpy()
ax = plot_curve(np.arange(2, T + 1), {"network": kl_net, "optimal denoiser": kl_opt},
                title="KL terms L_{t-1} of the bound (Gaussian mixture)", xlabel="t",
                ylabel="nats", logy=True)
ax.set_xscale("log")
plt.show()
print(f"L_0: network {terms_net['gmm'][:, 1].mean():.3f}, optimal {terms_opt[:, 1].mean():.3f} nats;"
      f"  L_T: {terms_opt[:, 0].mean():.2e} nats")
for lo, hi in [(2, 10), (11, 100), (101, T)]:
    if lo <= T:
        sl = slice(lo - 2, min(hi, T) - 1)  # kl_*[k] is the term at t = k + 2
        print(f"sum of the KL terms for t in {lo}..{min(hi, T)}: network {kl_net[sl].sum():.3f}, "
              f"optimal {kl_opt[sl].sum():.3f} nats")

# %% [markdown]
# ### A sample distance, and its floor
#
# The bound needs a model with a density; the samples can be judged directly. We use the
# **sliced Wasserstein distance** (`dmlib.metrics.sliced_wasserstein`): project both point
# sets on 128 evenly spaced directions $\theta_k$, and average the 1-D optimal-transport costs,
#
# $$SW_2(X, Y) = \Big(\frac1K\sum_k W_2^2(\langle X,\theta_k\rangle, \langle Y,\theta_k\rangle)\Big)^{1/2},$$
#
# in data units. Even two independent draws of the **same** data are not at distance 0, so we
# report the ratio to that **floor**, $SW_2(\text{data}_b, \text{data}_a)$ with the same number
# of points: ~1 is as good as a fresh draw of the data. A second distance, the Gaussian-kernel
# MMD with bandwidth $h=0.2$ (`dmlib.metrics.mmd`), looks at finer scales.

# %%
ratios = {}
for name in SETS:
    draw = lambda n, seed, name=name: make_toy(name, n, seed=seed)  # noqa: E731
    sw = sample_distance_report(samples[name], draw, "sw")
    mm = sample_distance_report(samples[name], draw, "mmd", bandwidth=0.2)
    ratios[name] = sw["ratio"]
    print(f"{name:16s} SW2 {sw['distance']:.4f} (floor {sw['floor']:.4f}, ratio {sw['ratio']:.2f})   "
          f"MMD {mm['distance']:.4f} (floor {mm['floor']:.4f}, ratio {mm['ratio']:.2f})")
sw_opt = sample_distance_report(samples_perfect, draw_gmm, "sw")
print(f"{'gmm, optimal':16s} SW2 {sw_opt['distance']:.4f} (floor {sw_opt['floor']:.4f}, ratio {sw_opt['ratio']:.2f})")

# %%
fig = scatter_grid([samples[n] for n in SETS], titles=[f"{n}\nSW ratio {ratios[n]:.2f}" for n in SETS],
                   size=2.6)
fig.suptitle(f"Samples of the five trained models ({N_SHOW} each, T = {T})", y=1.06)
for ax in fig.axes:
    ax.set(xlabel="x[0]", ylabel="x[1]")
plt.show()

# %% [markdown]
# ### Optional depth ▸ The measured figures (benchmark)
#
# *Skip to section 6 and you miss the same measurements with a longer recipe and more
# samples, read from the course's benchmark files.*
#
# `bench/bench_toy2d.py` runs a longer recipe (3,000 steps, 2,000 held-out points for the
# bound, 5,000 samples for the distances) on each data set and writes
# `bench/results/toy2d.json`. Its figures, as committed (targets: training $\le$ 2 minutes on
# a 2-core CPU, sample-distance ratio $\le 1.5$, gap $\le 0.15$ nats on the GMM):

# %%
bench_file = Path(dmlib.__file__).resolve().parents[1] / "bench" / "results" / "toy2d.json"
if bench_file.is_file():
    bench = json.loads(bench_file.read_text())
    steps0 = bench["recipe"]["train"]["steps"]
    print(f"{'data set':16s} {'steps':>5s} {'train s':>8s} {'cpu s':>7s} {'bound':>7s} {'gap':>14s} {'SW ratio':>9s} {'MMD ratio':>10s}")
    for name, row in bench["sets"].items():
        gap = (f"{row['gap_nats']:.3f}+-{row['gap_se']:.3f}" if "gap_nats" in row else "-")
        print(f"{name:16s} {row.get('steps', steps0):5d} {row['train_seconds']:8.1f} {row.get('train_cpu_seconds', float('nan')):7.1f} "
              f"{row['vlb_nats']:7.3f} {gap:>14s} {row['sw2']['ratio']:9.2f} {row['mmd']['ratio']:10.2f}")
        if "optimal_denoiser" in row:
            o = row["optimal_denoiser"]
            print(f"{'  optimal':16s} {'':5s} {'':8s} {'':7s} {o['vlb_nats']:7.3f} "
                  f"{o['gap_nats']:.3f}+-{o['gap_se']:.3f} {o['sw2']['ratio']:9.2f} {o['mmd']['ratio']:10.2f}")
else:
    print("no benchmark results yet: run .venv/bin/python bench/bench_toy2d.py")

# %% [markdown]
# How to read it:
#
# * **Sample distances.** A ratio near 1 means that at 5,000 points the samples are as close
#   to the data as a second draw of the data is; the floor is itself random, so ratios
#   wobble by about $\pm0.2$ (the swiss roll's 0.7 is luck, not better than perfect). The
#   optimal denoiser shows what the sampler itself reaches. The sliced Wasserstein ratio is
#   at most about 1.4 everywhere **except the moons** (1.90 for this notebook's run above,
#   2.32 for the benchmark's run of 8,000 steps, so longer training is not the cure): the moons are thin curves (width about 0.06
#   in the scaled units), and a small spread of the samples across them, invisible in the
#   scatter plot, is already twice the floor. The MMD with $h=0.2$ looks at finer scales and
#   is stricter (1.4-1.9 for the trained networks, 1.04 for the optimal denoiser).
# * **The bound.** On the Gaussian mixture the gap is below 0.1 nats (target: 0.15), and the
#   optimal denoiser's is $0.02\pm0.03$: the network is close to optimal. The
#   **checkerboard**'s gap is much larger (about 0.4): its density jumps from $1/6$ to 0 at
#   the cell edges, a smooth model cannot jump, and a likelihood punishes every point near an
#   edge. Its samples still look right (SW ratio 1.3): a good sample distance and a good
#   likelihood are different things.
# * **Time.** The training time is wall-clock on a 2-core machine that other jobs shared
#   while it ran (one torch thread); the CPU time, about 35 s per 3,000 steps, says what the
#   work costs on an idle machine.
#
# ## 6. The reverse trajectory
#
# Particles travel from $\mathcal N(0,I)$ to the data. A static picture first: the paths of
# 60 particles (circles: $x_T$; crosses: $x_0$):

# %%
traj_steps = sorted({round(T * f) for f in (1, .8, .6, .4, .3, .2, .15, .1, .07, .05, .03, .02, .01, .005, 0)},
                    reverse=True)  # T, 800, 600, ..., 5, 0 for T = 1000
_, traj = ddpm_sample(models["moons"], sched, (600, 2), generator=torch.Generator().manual_seed(4),
                      return_trajectory=True, trajectory_steps=traj_steps)
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
plot_trajectories({t: x[:60] for t, x in traj.items()}, ax=axes[0], n_paths=60,
                  title="60 reverse paths (moons)")
scatter2d(traj[0], ax=axes[1], title="x_0 of the 600 particles", label="samples")
for ax in axes:
    ax.set(xlabel="x[0]", ylabel="x[1]")
plt.tight_layout()
plt.show()

# %% [markdown]
# The same as an animation (15 frames; press play). Most of the structure appears in the
# last few hundred steps. At $t = 400$ the signal is weak but not gone ($\bar\alpha_{400}
# = 0.195$: $x_0$ enters with weight $\sqrt{\bar\alpha_{400}} = 0.44$); from
# $t \approx 700$ on ($\sqrt{\bar\alpha_t} < 0.1$) $x_t$ is nearly pure noise.

# %%
from dmlib.animation import trajectory_html

display(HTML(trajectory_html(traj, n_frames=15, title="moons", reference=data["moons"][:1500])))

# %% [markdown]
# ### Explore: data set, number of steps, variance
#
# A network trained with $T=1000$ can also be sampled with fewer steps by **respacing**
# (Nichol & Dhariwal 2021): keep $K$ of the timesteps, $\tau_1<\dots<\tau_K=T$, and use the
# schedule with the same $\bar\alpha$ at those steps,
# $\beta'_k = 1 - \bar\alpha_{\tau_k}/\bar\alpha_{\tau_{k-1}}$ ($\tau_0=0$), calling the
# network at $\tau_k$. With $K=T$ nothing changes. Chapter 7 derives why the marginals stay
# the same; here we use dmlib's `respace` (the $K$-step schedule and the times) and
# `RespacedModel` (the network called at $\tau_k$ when the loop is at step $k$). Each reverse
# step then has to bridge a bigger jump in noise:

# %%
from dmlib.respacing import RespacedModel, respace, respaced_timesteps


def respaced(schedule, model, K):
    """The K-step schedule and the model seen from it (step k of the new chain = time tau_k)."""
    s_k, taus = respace(schedule, K)
    return s_k, RespacedModel(model, taus)


# %%
# NBVAL_CHECK_OUTPUT
for K in [10, 100, 1000]:
    s_k, _ = respaced(sched_ref, perfect, K)
    same = torch.allclose(s_k.alpha_bar[-1], sched_ref.alpha_bar[-1], rtol=1e-12)
    print(f"K={K:4d}: alpha_bar_K = alpha_bar_T: {same},  largest beta' = {float(s_k.betas[1:].max()):.4f}")

# %% [markdown]
# **Which $K$ times?** There is more than one convention. dmlib uses
# $\tau_k = \mathrm{round}(kT/K)$ (diffusers calls it "trailing" spacing): the first step
# always starts at $T$, from pure noise, and the last jumps from $\tau_1 = T/K$ straight to
# $x_0$. Another common choice spreads the $K$ times evenly over $1..T$ *including* $t=1$
# ("linspace"), so that the last step is as small as in the original chain. Side by side:

# %%
# NBVAL_CHECK_OUTPUT
for K in [5, 10]:
    print(f"K = {K:2d}  dmlib (trailing): {respaced_timesteps(1000, K).tolist()}")
    print(f"        linspace over 1..T: {torch.linspace(1, 1000, K).round().long().tolist()}")

# %% [markdown]
# Both end at $T$; they differ in where the few steps are spent. Lin et al. (2024, "Common
# diffusion noise schedules and sample steps are flawed") found the trailing rule better at
# few steps, which is why dmlib (and chapter 7) use it.

# %% [markdown]
# The options are computed once here, so the widget below only redraws. First the static
# version: the final samples for each number of steps and variance, on the 8 Gaussians:

# %%
N_W = dmlib.quick(80, 300)
K_OPTIONS = [K for K in (10, 100, 1000) if K <= T]
frames_of = {}
for name, K in tqdm([(n, K) for n in SETS for K in K_OPTIONS], desc="trajectories"):
    s_k, m_k = respaced(sched, models[name], K)
    steps_k = sorted({int(round(v)) for v in np.linspace(0, K, 16)}, reverse=True)
    for var in ["beta", "beta_tilde"]:
        _, tr = ddpm_sample(m_k, s_k, (N_W, 2), variance=var, generator=torch.Generator().manual_seed(6),
                            return_trajectory=True, trajectory_steps=steps_k)
        frames_of[name, K, var] = [(k, tr[k].numpy()) for k in steps_k]
fig, axes = plt.subplots(2, 3, figsize=(8, 5.6))
for i, var in enumerate(["beta", "beta_tilde"]):
    for j, K in enumerate(K_OPTIONS):
        scatter2d(frames_of["eight_gaussians", K, var][-1][1], ax=axes[i, j],
                  title=f"K = {K} steps, sigma^2 = {var}")
        axes[i, j].set(xlabel="x[0]", ylabel="x[1]")
fig.suptitle("Final samples, 8 Gaussians: fewer steps blur the modes", y=1.0)
plt.tight_layout()
plt.show()

# %%
import ipywidgets as widgets


def show_frame(data_set="eight_gaussians", K=K_OPTIONS[-1], variance="beta", frame=15):
    frames = frames_of[data_set, K, variance]
    k, x = frames[min(frame, len(frames) - 1)]  # K = 10 has only 11 frames
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(data[data_set][:1500, 0], data[data_set][:1500, 1], s=1, c="0.85", label="data")
    ax.scatter(x[:, 0], x[:, 1], s=3, label=f"x at step {k} of {K}")
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xlabel="x[0]", ylabel="x[1]",
           title=f"{data_set}, K = {K}, sigma^2 = {variance}")
    ax.legend(loc="upper right", fontsize=7)
    plt.show()


widgets.interact(show_frame, data_set=SETS, K=K_OPTIONS, variance=["beta", "beta_tilde"],
                 frame=widgets.IntSlider(15, 0, 15, 1, description="frame (t -> 0)",
                                         style={"description_width": "initial"}));

# %% [markdown]
# ## 7. What goes wrong, and how to see it
#
# Four ways to get bad samples, each with a picture and a number (the sliced Wasserstein
# ratio on the Gaussian mixture; 1 is perfect). To separate the sampler from the network we
# use the optimal denoiser where only the sampler is at fault.
#
# > **Think first.** Sample the *perfect* denoiser with only $K = 5$ steps instead of 1000
# > (each step then jumps over 200 of the original ones; section 6's `respaced` does this).
# > Before running the next cell, sketch what the 5,000 samples look like, and say why.
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# A blurred cloud with the nine modes barely resolved, although the denoiser is perfect.
# Each reverse step of Algorithm 2 is a Gaussian around the predicted mean. From a very
# noisy $x_t$, the true reverse distribution over a jump of 200 steps is a mixture spread
# over several modes, and a single Gaussian, centred between them, cannot represent it: the
# samples land between the modes. With many small steps each true reverse step is nearly
# Gaussian (chapter 3's "why is $T$ large?"), and the modes appear from about 25 steps.
#
# </details>
#
# **(a) Too few steps.** Each reverse step $p_\theta(x_{t-1}\mid x_t)$ is a Gaussian. That is
# accurate when the step is small ($\beta_t\to0$), and wrong when one step must undo a lot of
# noise: the true reverse step from a noisy $x_t$ to a mixture is itself multi-modal. Even the
# perfect denoiser fails with few steps (5,000 samples each: the closed form is cheap, and
# the ratio is less noisy with more points; with 1,000 it wobbles by about $\pm0.3$):

# %%
N_BAD = dmlib.quick(300, 1000)
few = {}
for K in tqdm([K for K in (2, 5, 10, 25, 100, 1000) if K <= T], desc="K steps"):
    s_k, m_k = respaced(sched, perfect, K)
    xs = ddpm_sample(m_k, s_k, (dmlib.quick(300, 5000), 2), generator=torch.Generator().manual_seed(8))
    few[K] = (xs, sample_distance_report(xs, draw_gmm, "sw")["ratio"])
    print(f"K = {K:4d} steps: SW ratio {few[K][1]:.2f}")
fig = scatter_grid([few[K][0] for K in few], titles=[f"K={K}: ratio {r:.2f}" for K, (_, r) in few.items()],
                   size=2.2)
fig.suptitle("(a) the optimal denoiser sampled with K steps", y=1.08)
plt.show()

# %% [markdown]
# **(b) Too small a network**, **(c) too short training.** The same recipe with a tiny
# network (8 hidden units, 1 block), and the full network stopped after 5% of the steps.
# Watch for samples that **blow up**: every reverse step divides by $\sqrt{\alpha_t}$, in all
# $\prod_t 1/\sqrt{\alpha_t} = 1/\sqrt{\bar\alpha_T}\approx 157$ for this schedule, and only a
# good noise prediction keeps $x$ at the data's scale:

# %%
def train_and_score(config, steps, schedule=sched, name="gmm"):
    torch.manual_seed(0)
    lf = lambda m, b, g: diffusion_loss(m, schedule, b, generator=g)  # noqa: E731
    res = train(MLPDenoiser(config), lf, data[name], TrainConfig(steps=steps, **RECIPE))
    xs = ddpm_sample(res.ema_model, schedule, (N_BAD, 2), generator=torch.Generator().manual_seed(8))
    return res.ema_model, xs, sample_distance_report(xs, draw_gmm, "sw")["ratio"]


tiny_cfg = MLPConfig(hidden=8, depth=1, time_dim=8)
_, xs_tiny, r_tiny = train_and_score(tiny_cfg, STEPS)
_, xs_short, r_short = train_and_score(MODEL, max(20, STEPS // 20))
print(f"(b) tiny network ({count_parameters(MLPDenoiser(tiny_cfg))} parameters, {STEPS} steps): SW ratio {r_tiny:.2f}")
print(f"(c) full network, {max(20, STEPS // 20)} steps: SW ratio {r_short:.2f}, "
      f"largest |x_0| {xs_short.abs().max():.1f}")
print(f"    full network, {STEPS} steps (section 2): SW ratio {ratios['gmm']:.2f}")

# %% [markdown]
# **(d) A bad schedule.** If $\beta_t$ stays too small, $\bar\alpha_T$ is far from 0: $x_T$ still
# carries the data, yet sampling starts from $\mathcal N(0, I)$. The prior term of the bound
# shows it without any training; for data with unit variance per coordinate its average is
# $\mathbb E\,L_T = \tfrac d2\big(\bar\alpha_T\,\mathbb E x_0^2 - \bar\alpha_T - \log(1-\bar\alpha_T)\big) = -\log(1-\bar\alpha_T)$ for $d=2$:

# %%
# NBVAL_CHECK_OUTPUT
bad_ref = Schedule.linear(1000, beta_1=1e-4, beta_T=2e-4)  # beta_T a hundred times too small
for label, s in [("linear 1e-4..0.02 (DDPM)", sched_ref), ("linear 1e-4..2e-4 (bad)", bad_ref)]:
    abT = float(s.alpha_bar[-1])  # T = 1000
    print(f"{label}: alpha_bar_T = {abT:.2e}, E L_T = -log(1 - alpha_bar_T) = {-math.log(1 - abT):.3e} nats")

# %%
x_unit = make_toy("gmm", 4000, seed=9).double()
print("Monte Carlo check of E L_T on 4,000 points (unchecked):",
      f"{prior_kl(sched_ref, x_unit).mean():.2e}, {prior_kl(bad_ref, x_unit).mean():.4f} nats")
bad = Schedule.linear(T, beta_1=float(sched.betas[1]), beta_T=float(sched.betas[T]) / 100)  # = bad_ref at T = 1000
_, xs_bad, r_bad = train_and_score(MODEL, STEPS, schedule=bad)
print(f"(d) bad schedule, {STEPS} steps: SW ratio {r_bad:.2f}")
data_show = make_toy("gmm", N_BAD, seed=7)  # grey: the data, for comparison
lim_c = float(max(3.0, math.ceil(float(xs_short.abs().max()))))  # (c) blows up: zoom out to see it
fig, axes = plt.subplots(1, 4, figsize=(4 * 2.7, 3.0))
panels = [(xs_tiny, 3.0, f"(b) tiny net: {r_tiny:.2f}"),
          (xs_short, lim_c, f"(c) short training: {r_short:.2f}\n(axes zoomed out to +-{lim_c:.0f})"),
          (xs_bad, 3.0, f"(d) bad schedule: {r_bad:.2f}"),
          (samples["gmm"], 3.0, f"recipe: {ratios['gmm']:.2f}")]
for ax, (xs, lim, title) in zip(axes, panels):
    scatter2d(data_show, ax=ax, lim=lim, color="0.75", s=1)
    scatter2d(xs, ax=ax, lim=lim, title=title)
    ax.set(xlabel="x[0]", ylabel="x[1]")
fig.suptitle("What goes wrong (samples in blue, data in grey; SW ratio to the floor, 1 is perfect)", y=1.04)
plt.tight_layout()
plt.show()

# %% [markdown]
# Panel (d) looks deceptively fine. The next figure shows what is wrong: where the
# forward process of the bad schedule *ends* (the distribution the network learned to
# denoise from) and where sampling *starts*.

# %%
from dmlib.forward import q_sample

xT_bad = q_sample(bad, data["gmm"][:N_BAD], T, generator=torch.Generator().manual_seed(10))
fig, axes = plt.subplots(1, 2, figsize=(2 * 2.9, 3.0))
scatter2d(xT_bad, ax=axes[0], title=f"q(x_T), bad schedule\n(alpha_bar_T = {float(bad.alpha_bar[T]):.2f}): data still visible")
scatter2d(torch.randn(N_BAD, 2, generator=torch.Generator().manual_seed(11)), ax=axes[1],
          title="N(0, I): where sampling starts")
for ax in axes:
    ax.set(xlabel="x[0]", ylabel="x[1]")
plt.tight_layout()
plt.show()

# %% [markdown]
# What to look for:
#
# * **too few steps**: with 2-10 steps the modes are not resolved at all, the samples stay a
#   blurred cloud; from about 25 steps they appear, even with the perfect model (a);
# * **too small a network**: 434 parameters cannot represent the sharp switch between modes
#   of $\mathbb E[x_0\mid x_t]$; the samples stay a shapeless cloud, some far outside it (b);
# * **too short training**: the noise prediction is still poor, nothing cancels the
#   $1/\sqrt{\alpha_t}$ growth, and the samples blow up to hundreds (c: its axes are zoomed
#   out to show them; the data is the grey speck in the middle);
# * **a bad schedule**: $x_T$ is not $\mathcal N(0,I)$, so sampling starts from the wrong
#   distribution, and the network never saw such $x_T$ in training; the large $L_T$ tells you
#   before any training (d). The picture is deceptive here: the network pulls every starting
#   point to a nearby mode, so the samples look like the data at a glance, and only the
#   ratio (worse than the recipe's) and $L_T$ show the damage; the second figure shows the
#   mismatch itself. Check $\bar\alpha_T\approx0$ first. (A milder mistake, $\beta_T$
#   ten times too small, gives $\bar\alpha_T=0.35$ and hardly hurts these samples: for data
#   with unit variance, $q(x_T)$ then has the mean and variance of $\mathcal N(0,I)$ already;
#   the bound still pays $L_T=0.43$ nats for it.)
#
# ## Summary
#
# * Algorithm 1 trains with one random $t$ per example and the noise as target; Algorithm 2
#   starts from noise and applies $T$ Gaussian steps, with no noise at the last one.
# * On data with a known density, the bound of a well-trained network comes within about a
#   tenth of a nat of the entropy on the Gaussian mixture (0.085 after 3,000 steps), the
#   optimal denoiser's within a few hundredths; sharp edges (checkerboard) cost much more.
# * Samples are judged against a floor: the same distance between two draws of the data. Four
#   of five data sets reach a sliced Wasserstein ratio of at most 1.4; thin structures (moons)
#   are the hardest.
# * $\sigma_t^2=\beta_t$ and $\tilde\beta_t$ give similar samples with many steps.
# * Few steps, a tiny network, short training or $\bar\alpha_T\not\approx0$ each leave a clear
#   mark in the samples and in a number.
#
# ### You can now
#
# * [ ] write the loss of Algorithm 1 for a batch and one step of Algorithm 2, with no noise
#   at the last step;
# * [ ] train a diffusion model on 2-D data and sample from it with `ddpm_sample`;
# * [ ] compare a network with the optimal denoiser per timestep, and derive the optimal
#   prediction for a single-point data set;
# * [ ] compute the likelihood bound of a model and read its gap to the entropy;
# * [ ] judge samples by a distance against its floor rather than by eye;
# * [ ] diagnose too few steps, a tiny network, short training and a bad schedule from
#   samples, a ratio and $L_T$.
#
# Chapter 7 trains the same objective with a U-Net on MNIST.
