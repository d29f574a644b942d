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
# # Chapter 3: the forward process
#
# A diffusion model learns to undo a **fixed** noising process. This chapter builds that
# process, the *forward process* $q$, and checks every claim the lecture makes about it:
#
# 1. **One step** $q(x_t \mid x_{t-1})$ and its reparameterisation (C3.1), with an
#    *Erratum*: the slide puts a standard deviation where a variance belongs.
# 2. **The closed form** $q(x_t \mid x_0)$: $t$ small steps equal one big jump (C3.2). We
#    derive it with the sum of Gaussians of chapter 1, then test it on 2-D data and on MNIST
#    digits (means, covariances, a two-sample test).
# 3. **$q(x_T) \approx \mathcal N(0, I)$** whatever the data (C3.3): the KL to the standard
#    normal per schedule and per $T$, and why $T$ is large.
# 4. **Noise schedules** (C3.4): linear, cosine and sigmoid; $\bar\alpha_t$, the
#    signal-to-noise ratio, and what each does to a digit and to 2-D data.
#
# Five exercises along the way: one noising step, the one-jump sampler, the prior KL, the
# cosine schedule, and a jump between two noisy times (which you derive yourself). Widgets
# at the end let you scrub through $t$ and compare schedules.
#
# **Objectives.** After this chapter you can
#
# * write one noising step $q(x_t \mid x_{t-1})$ with its reparameterisation, with the
#   variance (not the standard deviation) in the covariance slot;
# * derive the closed form $q(x_t \mid x_0)$ from the sum of independent Gaussians, and
#   adapt the derivation to a jump from any $x_s$ to $x_t$;
# * compute how close $q(x_T \mid x_0)$ is to $\mathcal N(0, I)$, and explain why $T$ is
#   large for the *reverse* process's sake;
# * compare noise schedules by $\bar\alpha_t$ and the signal-to-noise ratio, and predict
#   what they do to data.
#
# Sections marked **Optional depth ▸** are second checks you can skip (chapter 0 explains
# the markers).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import integrate, stats
from scipy.special import logsumexp

import dmlib
from dmlib import checks
from dmlib.data import load_mnist, make_toy
from dmlib.forward import q_iterate, q_sample, q_step
from dmlib.losses import prior_kl
from dmlib.plotting import image_grid, plot_curve, scatter2d
from dmlib.schedules import Schedule, make_schedule

dmlib.seed_everything(0)
torch.set_num_threads(1)  # this chapter's tensors are small: one thread avoids threading overhead
plt.rcParams["figure.dpi"] = 72  # keeps the stored notebook small


def seeded(seed: int) -> torch.Generator:
    """A fresh seeded generator. Each cell that draws noise makes its own, so its numbers
    depend neither on what earlier cells drew nor on the quick switch."""
    return torch.Generator().manual_seed(seed)


print("quick mode:", dmlib.QUICK)

# %% [markdown]
# ## 1. One step: $q(x_t \mid x_{t-1})$
#
# The forward process is a Markov chain that adds a little Gaussian noise at every step,
# $t = 1, \dots, T$:
#
# $$q(x_{0:T}) = q(x_0)\prod_{t=1}^T q(x_t \mid x_{t-1}), \qquad
#   q(x_t \mid x_{t-1}) = \mathcal N\!\left(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I\right).$$
#
# The **noise schedule** $\beta_1, \dots, \beta_T \in (0, 1)$ says how much noise step $t$
# adds; we write $\alpha_t = 1 - \beta_t$. To *sample* a step we use the
# reparameterisation (as in a VAE): a Gaussian is its mean plus its standard deviation
# times standard noise,
#
# $$x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon, \qquad \epsilon \sim \mathcal N(0, I).$$
#
# **Why shrink $x_{t-1}$ by $\sqrt{1-\beta_t}$?** Because then the variance stays put: if
# $\operatorname{Var}(x_{t-1}) = 1$, then
# $\operatorname{Var}(x_t) = (1-\beta_t)\cdot 1 + \beta_t = 1$. Data scaled to unit variance
# keeps unit variance all the way to $x_T$ (a *variance-preserving* process), while the
# signal fades and the noise takes over.
#
# > **Erratum (slide "Diffusion Model is Iterative Denoising").** The slide writes
# > $$q(x_t \mid x_{t-1}) = \mathcal N\!\left(\sqrt{1-\beta_t}\,x_{t-1},\ \sqrt{\beta_t}\,I\right).$$
# > The second slot of $\mathcal N(\cdot, \cdot)$ is the **covariance**, so it must be
# > $\beta_t I$: the slide's own reparameterisation
# > $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon$ adds noise with standard
# > deviation $\sqrt{\beta_t}$, i.e. variance $\beta_t$. The cell below settles it by
# > measuring the variance of many one-step samples from a fixed $x_{t-1}$.

# %%
# NBVAL_CHECK_OUTPUT
sched = Schedule.linear(1000)  # DDPM: beta_1 = 1e-4 ... beta_T = 0.02
g = seeded(1)
n = 200_000  # one-step samples from the same x_{t-1}
print(f"{'t':>5} {'beta_t (correct)':>17} {'sqrt(beta_t) (slide)':>21} {'measured var':>13}")
for t in [1, 500, 1000]:
    x_prev = torch.full((n, 1), 0.7)
    xt = q_step(sched, x_prev, t, generator=g)  # x_t | x_{t-1} = 0.7
    beta = float(sched.betas[t])
    print(f"{t:5d} {beta:17.2e} {math.sqrt(beta):21.2e} {xt.var().item():13.2e}")

# %% [markdown]
# The measured variance is $\beta_t$, not $\sqrt{\beta_t}$ (which is 7 to 100 times
# larger here). `dmlib.forward.q_step_mean_var` returns the correct mean and variance.
#
# The factor $\sqrt{1-\beta_t}$ is what keeps the variance at 1. Below, the 2-D "moons"
# data (unit variance per coordinate) noised for $T = 1000$ steps, once with the correct
# step and once without shrinking $x_{t-1}$ (variance $1 + \sum_s \beta_s$, about 11).

# %%
x0_moons = make_toy("moons", 5000, seed=1)
g = seeded(2)
var_vp, var_no = [float(x0_moons.var(0).mean())], [float(x0_moons.var(0).mean())]
x_vp, x_no = x0_moons, x0_moons
for t in range(1, sched.T + 1):
    x_vp = q_step(sched, x_vp, t, generator=g)
    x_no = x_no + float(sched.betas[t].sqrt()) * torch.randn(x_no.shape, generator=g)
    var_vp.append(float(x_vp.var(0).mean()))
    var_no.append(float(x_no.var(0).mean()))
ax = plot_curve(np.arange(sched.T + 1), {"x_t = sqrt(1-beta_t) x_{t-1} + sqrt(beta_t) eps": var_vp,
                                         "x_t = x_{t-1} + sqrt(beta_t) eps (no shrinking)": var_no},
                title="Variance of x_t on 2-D moons (linear schedule)", xlabel="t",
                ylabel="mean variance per coordinate")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print(f"variance at t = T: with sqrt(1 - beta_t): {var_vp[-1]:.1f};  without: {var_no[-1]:.0f} "
      f"(1 + sum beta = {1 + float(sched.betas.sum()):.1f})")

# %% [markdown]
# ### Exercise 3.1: one noising step (★ warm-up)
#
# Write `q_step_mine(schedule, x_prev, t, eps)` that returns
# $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon$.
#
# * `schedule.betas` has length $T+1$ and is indexed by the lecture's $t$ directly
#   (`schedule.betas[t]` is $\beta_t$; `schedule.alphas[t]` is $\alpha_t = 1 - \beta_t$).
# * `t` is an `int` or a long tensor of shape `(B,)` (one timestep per example); `x_prev`
#   and `eps` have shape `(B, ...)`. With a tensor `t` the gathered coefficient has shape
#   `(B,)`: reshape it to `(B, 1, ..., 1)` so it broadcasts, or use
#   `schedule.extract(schedule.betas, t, x_prev)`, which does that for you.

# %%
def q_step_mine(schedule: Schedule, x_prev: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    beta = schedule.extract(schedule.betas, t, x_prev)  # beta_t, shaped to broadcast
    return torch.sqrt(1 - beta) * x_prev + torch.sqrt(beta) * eps
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_q_step(q_step_mine)

# %% [markdown]
# What the check says to the slide's version, read literally (variance $\sqrt{\beta_t}$,
# so the noise gets the standard deviation $\beta_t^{1/4}$):

# %%
# NBVAL_CHECK_OUTPUT
def q_step_slide(schedule, x_prev, t, eps):
    beta = schedule.extract(schedule.betas, t, x_prev)
    return torch.sqrt(1 - beta) * x_prev + beta.sqrt().sqrt() * eps  # std = sqrt(variance) = beta^(1/4)


checks.check_q_step(q_step_slide)

# %% [markdown]
# From here on the chapter uses dmlib's `q_step`, whatever you wrote above.
#
# ## 2. Many small steps = one big jump: $q(x_t \mid x_0)$
#
# Noising step by step is slow: to train on $x_t$ with $t = 900$ we would draw 900 noise
# vectors. The lecture's claim: *adding Gaussian noise many times = adding one (larger)
# Gaussian noise*, because a sum of independent Gaussians is Gaussian (chapter 1, C1.1).
#
# **Derivation.** Write two consecutive steps with independent
# $\epsilon_{t-1}, \epsilon_t \sim \mathcal N(0, I)$:
#
# $$\begin{aligned}
# x_t &= \sqrt{\alpha_t}\,x_{t-1} + \sqrt{1-\alpha_t}\,\epsilon_t
#      = \sqrt{\alpha_t}\left(\sqrt{\alpha_{t-1}}\,x_{t-2} + \sqrt{1-\alpha_{t-1}}\,\epsilon_{t-1}\right) + \sqrt{1-\alpha_t}\,\epsilon_t \\
#     &= \sqrt{\alpha_t\alpha_{t-1}}\,x_{t-2}
#        + \underbrace{\sqrt{\alpha_t(1-\alpha_{t-1})}\,\epsilon_{t-1} + \sqrt{1-\alpha_t}\,\epsilon_t}_{\text{sum of independent Gaussians}}.
# \end{aligned}$$
#
# The noise part is Gaussian with mean 0 and variance
# $\alpha_t(1-\alpha_{t-1}) + (1-\alpha_t) = 1 - \alpha_t\alpha_{t-1}$ (variances add), so
# $x_t = \sqrt{\alpha_t\alpha_{t-1}}\,x_{t-2} + \sqrt{1-\alpha_t\alpha_{t-1}}\,\bar\epsilon$.
# By induction (the same step with $\alpha_t\alpha_{t-1}$ in place of $\alpha_{t-1}$), with
# $\bar\alpha_t = \prod_{s=1}^t \alpha_s$:
#
# $$q(x_t \mid x_0) = \mathcal N\!\left(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t)\,I\right),
#   \qquad x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon.$$
#
# $\bar\alpha_t$ is *how much of the signal still remains* after $t$ steps (as variance
# fraction); $1-\bar\alpha_t$ is the noise variance, and the two add up to 1.
#
# > **Erratum (slide "Training: One step at a time").** The slide writes
# > $q(x_t \mid x_0) = (\sqrt{\alpha_t}\,x_0, \sqrt{1-\alpha_t}\,I)$ with
# > $\alpha_t = \prod_{s=1}^t(1-\beta_s)$. Two things differ from the standard notation used
# > here: (i) the slide's $\alpha_t$ is the *cumulative* product, which DDPM and this course
# > call $\bar\alpha_t$ (our $\alpha_t$ is the single step $1-\beta_t$); (ii) the second slot
# > again holds a standard deviation, $\sqrt{1-\bar\alpha_t}$, where the covariance
# > $(1-\bar\alpha_t)\,I$ belongs. The next cell measures the variance of $x_t$ for a fixed
# > $x_0$, reached by $t$ single steps.

# %%
# NBVAL_CHECK_OUTPUT
def run_chain(x0: torch.Tensor, ts: list[int], step) -> dict[int, torch.Tensor]:
    """Run x_s = step(x_{s-1}, s) for s = 1..max(ts) once; return {t: x_t} for t in ts."""
    x, out = x0, {}
    for s in range(1, max(ts) + 1):
        x = step(x, s)
        if s in ts:
            out[s] = x
    return out


x0_point = torch.full((50_000, 1), 0.7)  # one x_0, many noise paths
g = seeded(3)
chain_pt = run_chain(x0_point, [10, 100, 300], lambda x, s: q_step(sched, x, s, generator=g))
print(f"{'t':>5} {'1 - alpha_bar_t (correct)':>26} {'sqrt(1 - alpha_bar_t) (slide)':>30} {'measured var':>13}")
for t, xt in chain_pt.items():  # x_t reached by t single steps
    ab = float(sched.alpha_bar[t])
    print(f"{t:5d} {1 - ab:26.3f} {math.sqrt(1 - ab):30.3f} {xt.var().item():13.3f}")

# %% [markdown]
# ### Exercise 3.2: the one-jump sampler (★★ core)
#
# Write `q_sample_mine(schedule, x0, t, eps)` returning
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ (`schedule.alpha_bar[t]`
# is $\bar\alpha_t$). Same conventions for `t` as in exercise 3.1. This one line is how
# every diffusion model makes its training inputs (Algorithm 1 of DDPM).

# %%
def q_sample_mine(schedule: Schedule, x0: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    alpha_bar = schedule.extract(schedule.alpha_bar, t, x0)
    return torch.sqrt(alpha_bar) * x0 + torch.sqrt(1 - alpha_bar) * eps
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_q_sample(q_sample_mine)

# %% [markdown]
# ### Optional depth ▸ Checking the closed form on 2-D data
#
# *The derivation above is a proof; this and the next subsection re-verify it by
# simulation, in 2-D and on MNIST. Skip to section 3 and you miss only the statistics.*
#
# Now the claim itself, in distribution: we take two *independent* samples of the moons
# data, noise one by $t$ single steps (`q_step` $t$ times: the Markov chain) and the other by one
# jump (`q_sample`), and compare them at several $t$:
#
# * **means and covariances** against the closed form: if
#   $x_0 \sim q(x_0)$ has mean $\mu_0$ and covariance $\Sigma_0$, then
#   $\mathbb E[x_t] = \sqrt{\bar\alpha_t}\,\mu_0$ and
#   $\operatorname{Cov}(x_t) = \bar\alpha_t\Sigma_0 + (1-\bar\alpha_t) I$;
# * **a two-sample test** of the whole distribution: the Kolmogorov-Smirnov (KS) test
#   (`scipy.stats.ks_2samp`) on 1-D projections $u^\top x$ along 12 fixed directions $u$.
#   The KS test compares two samples of numbers through their empirical distribution
#   functions: its statistic is the largest vertical gap between the two, and its p-value
#   the probability of a gap at least that large if both samples came from the same law
#   (a small p-value means "different"). Equal laws in 2-D have equal projections. Running
#   12 tests multiplies the chances of a false alarm, so each must pass at the level
#   $0.01/12$ instead of $0.01$ (a *Bonferroni correction*); a p-value above it on every
#   direction means *no detectable difference*.
#
# To show that the test can tell laws apart, the last verdict runs it against a chain
# built with the slide's variance ($\sqrt{\beta_t}$ as variance).

# %%
def ks_same_law(a: torch.Tensor, b: torch.Tensor, n_dirs: int = 12, seed: int = 0) -> float:
    """Smallest KS p-value over n_dirs fixed random projections of a and b, shapes (N, D)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], n_dirs, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0)  # unit directions u
    pa, pb = (a.double() @ dirs).numpy(), (b.double() @ dirs).numpy()
    return min(stats.ks_2samp(pa[:, k], pb[:, k]).pvalue for k in range(n_dirs))


def slide_step(x: torch.Tensor, s: int, generator: torch.Generator) -> torch.Tensor:
    """One step with the slide's covariance sqrt(beta_s) I, i.e. noise std beta_s^(1/4)."""
    return (float(sched.alphas[s].sqrt()) * x
            + float(sched.betas[s]) ** 0.25 * torch.randn(x.shape, generator=generator, dtype=x.dtype))


# %%
# NBVAL_CHECK_OUTPUT
n2 = 10_000  # the same in quick and full mode: the printed verdicts must not change
xa = make_toy("moons", n2, seed=11)  # two independent data samples
xb = make_toy("moons", n2, seed=12)
mu0, cov0 = torch.cat([xa, xb]).mean(0), torch.cov(torch.cat([xa, xb]).T)
ts_2d = [10, 100, 300, 1000]
bonferroni = 0.01 / 12
g = seeded(4)
iterated_2d = run_chain(xa, ts_2d, lambda x, s: q_step(sched, x, s, generator=g))
slide_2d = run_chain(xa, ts_2d, lambda x, s: slide_step(x, s, g))  # shows the test's power
jumped_2d = {t: q_sample(sched, xb, t, generator=g) for t in ts_2d}
fmt_m = lambda m: f"({m[0]:+.2f}, {m[1]:+.2f})"  # noqa: E731
fmt_c = lambda c: f"[{c[0, 0]:.2f} {c[0, 1]:+.2f} {c[1, 1]:.2f}]"  # noqa: E731
for t in ts_2d:
    ab = float(sched.alpha_bar[t])
    m_th, c_th = math.sqrt(ab) * mu0, ab * cov0 + (1 - ab) * torch.eye(2)
    print(f"t = {t:4d}  mean  theory {fmt_m(m_th)}   chain {fmt_m(iterated_2d[t].mean(0))}   "
          f"jump {fmt_m(jumped_2d[t].mean(0))}")
    print(f"{'':11s}cov   theory {fmt_c(c_th)}   chain {fmt_c(torch.cov(iterated_2d[t].T))}   "
          f"jump {fmt_c(torch.cov(jumped_2d[t].T))}")
    same = ks_same_law(iterated_2d[t], jumped_2d[t]) > bonferroni
    slide_same = ks_same_law(slide_2d[t], jumped_2d[t]) > bonferroni
    print(f"{'':11s}KS test: chain vs jump: {'same law' if same else 'DIFFERENT'};  "
          f"slide's chain vs jump: {'same law' if slide_same else 'DIFFERENT'}")

# %% [markdown]
# The chain and the jump agree with the closed form in mean and covariance (the standard
# error of a mean of 10,000 points is 0.01 here), and the KS test finds no difference,
# while the slide's chain is rejected at every $t$. By eye:

# %%
fig, axes = plt.subplots(2, len(ts_2d) + 1, figsize=(2.6 * (len(ts_2d) + 1), 5.4))
n_show = dmlib.quick(1500, 4000)
for row, (name, xs, x0s) in enumerate([("chain (t single steps)", iterated_2d, xa),
                                       ("one jump q(x_t|x_0)", jumped_2d, xb)]):
    scatter2d(x0s[:n_show], ax=axes[row, 0], title=f"{name}\nt = 0", s=1)
    for k, t in enumerate(ts_2d):
        scatter2d(xs[t][:n_show], ax=axes[row, k + 1], title=f"{name}\nt = {t}", s=1)
for ax in axes.flat:
    ax.set(xlabel="x[0]", ylabel="x[1]")
fig.suptitle("Moons noised step by step (top) and in one jump (bottom), linear schedule")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Optional depth ▸ Checking the closed form on MNIST
#
# *Skip it and you miss the same check in 784 dimensions.*
#
# Same test in 784 dimensions, on digits scaled to $[-1, 1]$ (the range DDPM trains on).
# First **one digit** $x_0$, noised 2000 times: per pixel, the chain's mean must be
# $\sqrt{\bar\alpha_t}\,x_0$ and its covariance $(1-\bar\alpha_t) I$ (independent pixels).
# Then **the whole data set**: two disjoint sets of 2000 digits, one noised by the chain,
# one by the jump, compared by the KS test on 12 random directions in pixel space.

# %%
digits, labels = load_mnist("test", scale="[-1,1]", limit=5000)
t_mnist, n_copies = 200, 2000
x0_digit = digits[:1]  # a seven
g = seeded(5)
chain = q_iterate(sched, x0_digit.expand(n_copies, -1, -1, -1), t_mnist, generator=g)
jump = q_sample(sched, x0_digit.expand(n_copies, -1, -1, -1), t_mnist, generator=g)
ab = float(sched.alpha_bar[t_mnist])

# %%
# NBVAL_CHECK_OUTPUT
def moments_report(name: str, xs: torch.Tensor) -> None:
    """Per-pixel mean and covariance of xs (n, 1, 28, 28) against q(x_t | x_0), in standard errors."""
    flat = xs.reshape(xs.shape[0], -1).double()
    mean_th = math.sqrt(ab) * x0_digit.reshape(-1)
    z_mean = (flat.mean(0) - mean_th) / math.sqrt((1 - ab) / n_copies)  # ~ N(0, 1) per pixel
    cov = torch.cov(flat.T)
    err = cov - (1 - ab) * torch.eye(flat.shape[1], dtype=cov.dtype)
    se_diag, se_off = (1 - ab) * math.sqrt(2 / n_copies), (1 - ab) / math.sqrt(n_copies)
    z_var = (err.diagonal().abs().max() / se_diag).item()
    z_cov = ((err - torch.diag(err.diagonal())).abs().max() / se_off).item()
    z_m = z_mean.abs().max().item()
    # the largest deviation over 784 (or 306,936) values, in standard errors: about 3.2
    # (or 4.5) is what pure chance gives; 6 would be a real error
    print(f"{name:6s}: largest deviation in SE: mean {z_m:.1f}, variance {z_var:.1f}, "
          f"covariance {z_cov:.1f}; all below 6: {max(z_m, z_var, z_cov) < 6}")


print(f"t = {t_mnist}: alpha_bar_t = {ab:.3f}, so per pixel mean = {math.sqrt(ab):.3f} x0 "
      f"and variance = {1 - ab:.3f}")
moments_report("chain", chain)
moments_report("jump", jump)
print("mean of the per-pixel variance: chain", f"{chain.var(0).mean():.2f}", "jump",
      f"{jump.var(0).mean():.2f}")

# %%
# NBVAL_CHECK_OUTPUT
set_a, set_b = digits[:2000], digits[2000:4000]  # disjoint digits: independent samples of q(x_0)
g = seeded(6)
chains_all = run_chain(set_a, [50, 200], lambda x, s: q_step(sched, x, s, generator=g))
slides_all = run_chain(set_a, [50, 200], lambda x, s: slide_step(x, s, g))
for t in [50, 200]:
    chain_all, slide_all = chains_all[t].reshape(2000, -1), slides_all[t].reshape(2000, -1)
    jump_all = q_sample(sched, set_b, t, generator=g).reshape(2000, -1)
    print(f"t = {t:3d}: KS chain vs jump: "
          f"{'same law' if ks_same_law(chain_all, jump_all) > bonferroni else 'DIFFERENT'}; "
          f"KS slide chain vs jump: "
          f"{'same law' if ks_same_law(slide_all, jump_all) > bonferroni else 'DIFFERENT'}")

# %%
fig, axes = plt.subplots(2, 1, figsize=(8, 2.6))
image_grid(chain[:8], nrow=8, ax=axes[0], title=f"8 chain samples of x_t, t = {t_mnist}")
image_grid(jump[:8], nrow=8, ax=axes[1], title=f"8 one-jump samples of x_t, t = {t_mnist}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. $q(x_T) \approx \mathcal N(0, I)$, whatever $x_0$
#
# The reverse process starts from $x_T \sim \mathcal N(0, I)$, so the forward process
# must end there. How close does it get? $q(x_T \mid x_0)$ is Gaussian, so its KL to the
# standard normal has a closed form (chapter 1, C1.2, summed over the $d$ independent
# dimensions):
#
# $$\mathrm{KL}\!\left(q(x_T \mid x_0)\,\|\,\mathcal N(0, I)\right)
#   = \frac12\sum_{i=1}^{d}\left(\bar\alpha_T\,x_{0,i}^2 + (1-\bar\alpha_T) - 1 - \log(1-\bar\alpha_T)\right)
#   \approx \frac{\bar\alpha_T}{2}\,\lVert x_0\rVert^2 \quad (\bar\alpha_T \ll 1).$$
#
# It vanishes only as $\bar\alpha_T \to 0$: then $x_T$ forgets $x_0$, and
# $q(x_T) = \int q(x_T \mid x_0)\,q(x_0)\,dx_0$ is the same standard normal *regardless of
# the input*. This KL is the term $L_T$ of the ELBO (chapter 4); DDPM treats it as a
# constant because it has no parameters.
#
# ### Exercise 3.3: the prior KL (★★ core)
#
# Write `prior_kl_mine(schedule, x0)` returning
# $\mathrm{KL}(q(x_T \mid x_0)\,\|\,\mathcal N(0, I))$ in nats for every example of the
# batch: `x0` has shape `(B, ...)`, the result shape `(B,)` (sum over all other
# dimensions). $\bar\alpha_T$ is `schedule.alpha_bar[schedule.T]`.

# %%
def prior_kl_mine(schedule: Schedule, x0: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    ab = schedule.alpha_bar[schedule.T].to(x0.dtype)
    mean_sq, var = ab * x0 ** 2, 1 - ab  # q(x_T | x0) = N(sqrt(ab) x0, (1 - ab) I)
    kl = 0.5 * (mean_sq + var - 1 - torch.log(var))  # per dimension, against N(0, 1)
    return kl.reshape(x0.shape[0], -1).sum(1)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_prior_kl(prior_kl_mine)

# %% [markdown]
# ### The prior KL per schedule and per $T$
#
# We average it over 1000 MNIST test digits (nats per image, 784 dimensions) for four
# schedules and several $T$:
#
# * **linear, fixed betas**: DDPM's $\beta_t$ from $10^{-4}$ to $0.02$ whatever $T$ (small
#   steps; a short chain then simply does not reach noise);
# * **linear** (dmlib's default): those betas scaled by $1000/T$, so that
#   $\sum_t \beta_t$, and with it $\bar\alpha_T \approx e^{-\sum\beta_t}$, stays about the
#   same for every $T$;
# * **cosine** and **sigmoid** (section 4), which reach $\bar\alpha_T = 0$ by construction
#   (up to the cap $\beta_t \le 0.999$).

# %%
# NBVAL_CHECK_OUTPUT
x0_kl = digits[:1000].double()
Ts = [10, 50, 100, 250, 1000, 4000]
makers = {
    "linear, fixed betas": lambda T: Schedule.linear(T, beta_1=1e-4, beta_T=0.02),
    "linear": Schedule.linear, "cosine": Schedule.cosine, "sigmoid": Schedule.sigmoid,
}
kl_table = {name: [prior_kl(make(T), x0_kl).mean().item() for T in Ts] for name, make in makers.items()}
print("mean KL( q(x_T|x_0) || N(0, I) ) over 1000 MNIST digits, nats per image")
print(f"{'T':>20}" + "".join(f"{T:>10d}" for T in Ts))
for name, row in kl_table.items():
    print(f"{name:>20}" + "".join(f"{v:10.2g}" if v >= 1e-12 else f"{'< 1e-12':>10}" for v in row))
half_sq = float((x0_kl.reshape(1000, -1) ** 2).sum(1).mean() / 2)  # mean ||x0||^2 / 2
ab_T = float(Schedule.linear(1000).alpha_bar[-1])
print(f"small-alpha_bar_T approximation, linear T = 1000: alpha_bar_T * ||x0||^2 / 2 = "
      f"{ab_T:.2e} * {half_sq:.0f} = {ab_T * half_sq:.2g} nats")

# %%
ax = plot_curve(np.array(Ts, dtype=float), kl_table, logy=True, xlabel="T (number of steps)",
                ylabel="KL (nats per image)",
                title="KL(q(x_T|x_0) || N(0, I)), mean over 1000 MNIST digits")
ax.set_xscale("log")
plt.show()

# %% [markdown]
# **Reading the table.** With DDPM's small fixed steps, $T = 10$ or $100$ leaves much of
# the digit in $x_T$, with too little noise (KL in the hundreds of nats): starting the
# reverse process from $\mathcal N(0, I)$ would be badly wrong. At $T = 1000$ the KL is
# 0.015 nats per *image* ($\bar\alpha_T = 4\cdot 10^{-5}$): $x_T$ is noise, for
# every digit. At $T = 4000$ it is below float64 resolution. The rescaled linear schedule
# and the cosine and sigmoid schedules reach noise at *every* $T$ by taking bigger steps
# when $T$ is small (for $T < 21$ the rescaled linear betas would pass 1 and are capped at
# 0.999, hence its tiny KL at $T = 10$).
#
# ### So why is $T$ large?
#
# Not only to reach noise: a few big steps do that too. The reason is the **reverse**
# process. DDPM models each reverse step $p_\theta(x_{t-1} \mid x_t)$ as a Gaussian, and the
# true reverse step $q(x_{t-1} \mid x_t)$ is close to Gaussian only when $\beta_t$ is small
# (Sohl-Dickstein et al., 2015; Feller, 1949). We can measure this exactly in 1-D, with
# data $x_0 = \pm 1$ (two points, equally likely): then $q(x_{t-1})$ is a mixture of two
# Gaussians, and Bayes' rule with the Gaussian $q(x_t \mid x_{t-1})$ gives $q(x_{t-1} \mid x_t)$
# as a mixture of two Gaussians too (the product of Gaussians, chapter 1, C1.4). We compute
# its KL to the best Gaussian (same mean and variance), averaged over $x_t \sim q(x_t)$,
# by numerical integration on a grid; 0 means the reverse step *is* Gaussian.

# %%
def log_normal(x: np.ndarray, mean, var) -> np.ndarray:
    """log N(x; mean, var), elementwise (broadcasting)."""
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def reverse_gaussian_gap(schedule: Schedule, t: int, n_xt: int = 201, n_grid: int = 801) -> float:
    """E_{x_t}[ KL( q(x_{t-1}|x_t) || Gaussian with its mean and variance ) ] for x0 = +-1, nats."""
    ab_prev, a, b = float(schedule.alpha_bar[t - 1]), float(schedule.alphas[t]), float(schedule.betas[t])
    mus, v = np.array([-1.0, 1.0]) * math.sqrt(ab_prev), 1 - ab_prev  # q(x_{t-1}): two components
    xt = np.linspace(-5, 5, n_xt)[:, None]  # grid over x_t
    log_r = log_normal(xt, math.sqrt(a) * mus, a * v + b)  # (n_xt, 2): q(x_t | component k)
    w_xt = np.exp(logsumexp(log_r, axis=1))  # proportional to q(x_t): weights of the x_t grid
    # posterior component k: N(m_k, s2) with weight r_k (a product of two Gaussians in x_{t-1})
    s2 = 1 / (1 / v + a / b)
    m = s2 * (mus[None, :] / v + math.sqrt(a) * xt / b)  # (n_xt, 2)
    log_w = log_r - logsumexp(log_r, axis=1, keepdims=True)
    r = np.exp(log_w)
    mean = (r * m).sum(1, keepdims=True)
    var = (r * (s2 + m ** 2)).sum(1, keepdims=True) - mean ** 2
    x = mean + 8 * np.sqrt(var) * np.linspace(-1, 1, n_grid)[None, :]  # x_{t-1} grid per x_t
    log_p = np.logaddexp(log_w[:, :1] + log_normal(x, m[:, :1], s2),
                         log_w[:, 1:] + log_normal(x, m[:, 1:], s2))
    kl = integrate.trapezoid(np.exp(log_p) * (log_p - log_normal(x, mean, var)), x, axis=1)
    return float((kl * w_xt).sum() / w_xt.sum())


# %%
# NBVAL_CHECK_OUTPUT
print("worst reverse step: max over t of E[KL(q(x_{t-1}|x_t) || best Gaussian)], x0 = +-1, nats")
print(f"{'T':>8} {'max beta_t':>11} {'max KL':>10}")
gap_T = [5, 10, 25, 100, 1000]
for T in gap_T:
    s_T = Schedule.linear(T)
    t_grid = sorted(set(np.linspace(2, T, min(T - 1, 60)).round().astype(int).tolist()))
    worst = max(reverse_gaussian_gap(s_T, t) for t in t_grid)
    print(f"{T:8d} {float(s_T.betas.max()):11.3f} {worst:10.1e}")

# %% [markdown]
# With $T = 1000$ small steps every true reverse step is Gaussian to within about
# $10^{-6}$ nats, so a Gaussian $p_\theta$ can match it; with $T = 5$ or $10$ big steps some
# reverse steps are far from Gaussian (bimodal: "which of the two points did $x_t$ come
# from?" is still open) and no Gaussian fits them. That is the price a short chain pays,
# and why DDPM uses $T = 1000$ small steps.
#
# ## 4. Noise schedules
#
# The schedule $\beta_1..\beta_T$ is a design choice. Three common ones, all with
# $\bar\alpha_0 = 1$ and $\bar\alpha_T \approx 0$:
#
# * **linear** (Ho et al., 2020): $\beta_t$ evenly spaced from $10^{-4}$ to $0.02$ ($T = 1000$);
# * **cosine** (Nichol & Dhariwal, 2021): defined through $\bar\alpha_t$,
#   $$\bar\alpha_t = \frac{f(t)}{f(0)}, \qquad f(t) = \cos^2\!\left(\frac{\pi}{2}\cdot\frac{t/T + s}{1+s}\right), \quad s = 0.008,$$
#   then $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$, capped at $0.999$;
# * **sigmoid** (Jabri et al., 2022; Chen, 2023): $\bar\alpha_t$ falls along a sigmoid,
#   $\bar\alpha_t = \dfrac{\sigma(3) - \sigma(6t/T - 3)}{\sigma(3) - \sigma(-3)}$.
#
# A useful single number per step is the **signal-to-noise ratio**
# $\mathrm{SNR}_t = \bar\alpha_t / (1 - \bar\alpha_t)$: the signal's variance over the
# noise's in $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$. It spans many
# orders of magnitude, so we plot $\log \mathrm{SNR}_t$.
#
# ### Exercise 3.4: the cosine schedule (★★ core)
#
# Write `cosine_alpha_bar_mine(T, s)` returning $\bar\alpha_0, \dots, \bar\alpha_T$ of the
# cosine schedule (shape `(T + 1,)`, float64, **without** the $0.999$ cap). Hint:
# `torch.arange(T + 1) / T` gives all $t/T$ at once.

# %%
def cosine_alpha_bar_mine(T: int, s: float = 0.008) -> torch.Tensor:
    ### BEGIN SOLUTION
    u = torch.arange(T + 1, dtype=torch.float64) / T  # t / T for t = 0..T
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
    return f / f[0]  # alpha_bar_0 = 1
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_cosine_alpha_bar(cosine_alpha_bar_mine)

# %% [markdown]
# dmlib's `Schedule.cosine` clips $\beta_t \le 0.999$, which only changes the last step
# (the closed form gives $\bar\alpha_T = 0$ exactly, i.e. $\beta_T = 1$, and a step that
# destroys everything is numerically awkward). From here on: `make_schedule(name, T)`.
#
# > **Think first.** From the formulas above, without plotting: which of the linear and the
# > cosine schedule (both $T = 1000$) keeps $\mathrm{SNR}_t \ge 1$ for longer, that is,
# > crosses $\mathrm{SNR} = 1$ ($\bar\alpha_t = 1/2$) at a later $t$? Roughly where does
# > each cross? The table below prints the answer in its column "first t: SNR<1".
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# The cosine schedule, near the middle. Its $\bar\alpha_t \approx \cos^2(\frac\pi2 \frac tT)$
# equals $1/2$ where $\frac\pi2\frac tT = \frac\pi4$, i.e. $t \approx T/2$ (the offset $s$
# moves it slightly earlier: $t = 497$). The linear schedule's $\log\bar\alpha_t \approx
# -\sum_{s \le t}\beta_s \approx -10^{-5}t^2$ reaches $-\ln 2$ at $t \approx 263$ (chapter 0's
# question): it destroys the signal twice as early and then spends hundreds of steps on
# nearly pure noise, which is the motivation Nichol & Dhariwal give for the cosine
# schedule.
#
# </details>

# %%
# NBVAL_CHECK_OUTPUT
T = 1000
schedules = {name: make_schedule(name, T) for name in ["linear", "cosine", "sigmoid"]}
# the closed form, written out in float64 (independent of dmlib): f(t) / f(0)
f_cos = [math.cos(math.pi / 2 * (t / T + 0.008) / (1 + 0.008)) ** 2 for t in range(T + 1)]
cos_closed = torch.tensor([f / f_cos[0] for f in f_cos], dtype=torch.float64)
rel = ((schedules["cosine"].alpha_bar[:T] - cos_closed[:T]).abs() / cos_closed[:T]).max().item()
print(f"cosine: Schedule.cosine vs the closed form for t < T: max relative error {rel:.1e} "
      f"(< 1e-12: {rel < 1e-12})")
print(f"{'':>8} {'alpha_bar at t/T = 0.25':>24} {'0.5':>6} {'0.75':>6} | "
      f"{'first t: SNR<1':>14} | {'log SNR_1':>9} {'log SNR_T':>9} | {'steps with alpha_bar < 0.01':>28}")
for name, s in schedules.items():
    ab = s.alpha_bar
    t_snr1 = int((s.snr[1:] < 1).nonzero()[0]) + 1
    frac = float((ab[1:] < 0.01).double().mean())
    print(f"{name:>8} {ab[250]:24.3f} {ab[500]:6.3f} {ab[750]:6.3f} | {t_snr1:14d} | "
          f"{math.log(s.snr[1]):9.2f} {math.log(s.snr[T]):9.2f} | {frac:27.1%}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
t_axis = np.arange(T + 1)
plot_curve(t_axis, {n: s.alpha_bar for n, s in schedules.items()}, ax=axes[0],
           title="alpha_bar_t: signal left", xlabel="t", ylabel="alpha_bar_t")
plot_curve(t_axis[1:], {n: s.snr[1:].log() for n, s in schedules.items()}, ax=axes[1],
           title="log SNR_t = log(alpha_bar_t / (1 - alpha_bar_t))", xlabel="t", ylabel="log SNR_t")
axes[1].axhline(0, color="gray", lw=0.8, ls="--")
plot_curve(t_axis[1:], {n: s.betas[1:] for n, s in schedules.items()}, ax=axes[2], logy=True,
           title="beta_t: noise added per step", xlabel="t", ylabel="beta_t (log scale)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **What the table and the curves say.** The linear schedule destroys the signal early:
# $\mathrm{SNR}_t$ drops below 1 at $t = 260$, and a third of its steps are spent on
# almost pure noise ($\bar\alpha_t < 0.01$), which teaches a model little. Cosine and
# sigmoid keep the signal about twice as long and cross $\mathrm{SNR} = 1$ in the middle;
# cosine's $\log\mathrm{SNR}$ is nearly a straight line over most of the range. The same
# noise $\epsilon$ applied to one digit under each schedule shows it:

# %%
ts_show = [0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 1000]
x0_one = digits[3:4]  # a zero
eps_one = torch.randn(x0_one.shape, generator=seeded(7))
fig, axes = plt.subplots(3, 1, figsize=(10, 3.8))
for ax, (name, s) in zip(axes, schedules.items()):
    row = torch.cat([q_sample(s, x0_one, t, eps=eps_one) for t in ts_show])
    image_grid(row, nrow=len(ts_show), ax=ax, title=f"{name}: t = " + ", ".join(map(str, ts_show)))
fig.tight_layout()
plt.show()

# %% [markdown]
# And on 2-D data (the checkerboard, whose structure is fine-grained):

# %%
x0_cb = make_toy("checkerboard", dmlib.quick(1500, 3000), seed=3)
ts_2d_show = [0, 100, 250, 500, 750]
fig, axes = plt.subplots(3, len(ts_2d_show), figsize=(2.5 * len(ts_2d_show), 7.5))
for r, (name, s) in enumerate(schedules.items()):
    eps_cb = torch.randn(x0_cb.shape, generator=seeded(9))
    for c, t in enumerate(ts_2d_show):
        scatter2d(q_sample(s, x0_cb, t, eps=eps_cb), ax=axes[r, c], s=1,
                  title=f"{name}, t = {t}\nalpha_bar = {float(s.alpha_bar[t]):.2f}")
        axes[r, c].set(xlabel="x[0]", ylabel="x[1]")
fig.suptitle("Checkerboard under three schedules (same noise)")
fig.tight_layout()
plt.show()

# %% [markdown]
# A quantitative version of "how long does the structure survive": the fraction of the
# data's structure left is $\bar\alpha_t$, and the pixels of a noised digit correlate with
# the clean ones by $\operatorname{corr}(x_t, x_0) = \sqrt{\bar\alpha_t}\,\sigma_0 / \sqrt{\bar\alpha_t\sigma_0^2 + 1 - \bar\alpha_t}$
# (per pixel, $\sigma_0^2$ the data variance). We check that formula on the digits:

# %%
# NBVAL_CHECK_OUTPUT
x0_c = digits[:2000]
var0 = float(x0_c.var())
eps_c = torch.randn(x0_c.shape, generator=seeded(8))
print(f"{'':>8}" + "".join(f"{'t=' + str(t):>16}" for t in [100, 300, 500, 700]))
for name, s in schedules.items():
    cells = []
    for t in [100, 300, 500, 700]:
        xt_c = q_sample(s, x0_c, t, eps=eps_c)
        measured = float(torch.corrcoef(torch.stack([xt_c.flatten(), x0_c.flatten()]))[0, 1])
        ab = float(s.alpha_bar[t])
        theory = math.sqrt(ab * var0) / math.sqrt(ab * var0 + 1 - ab)
        cells.append(f"{theory:.2f} / {measured:.2f}")
    print(f"{name:>8}" + "".join(f"{c:>16}" for c in cells))
print("(correlation of x_t with x_0 over all pixels: theory / measured)")

# %% [markdown]
# ### Exercise 3.5: a jump between two noisy times (★★★ stretch: derive it first)
#
# Back to section 2 for a last exercise. Sampling with fewer steps (chapter 7) needs a jump that starts from a *noisy* $x_s$, not
# from $x_0$: a draw of $q(x_t \mid x_s)$ for $0 \le s < t \le T$. This formula is not on
# the page; derive it the way the closed form above was derived, then write
# `q_jump(schedule, xs, s, t, eps)`: `xs` and `eps` of shape `(B, ...)`, `s` and `t` ints or
# long tensors of shape `(B,)`, returning $x_t$ built from `xs` and the standard normal
# `eps`. A check of your formula: $s = 0$ must give `q_sample`.
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# The steps $s+1, \dots, t$ are the same chain as before, started at $x_s$ instead of
# $x_0$. Repeating the induction, the signal factor is the product of the alphas of those
# steps only, $\alpha_{s+1}\cdots\alpha_t = \bar\alpha_t / \bar\alpha_s$, and the independent
# noises add up to variance $1 - \bar\alpha_t/\bar\alpha_s$:
# $$q(x_t \mid x_s) = \mathcal N\!\left(\sqrt{\bar\alpha_t/\bar\alpha_s}\,x_s,\ (1 - \bar\alpha_t/\bar\alpha_s)\,I\right).$$
# A tempting wrong answer subtracts the noise variances, $(1-\bar\alpha_t) - (1-\bar\alpha_s)$:
# that is the new noise measured against $x_0$'s scale, but $x_s$'s own noise is also
# shrunk by $\sqrt{\bar\alpha_t/\bar\alpha_s}$ on the way.
#
# </details>

# %%
def q_jump(schedule: Schedule, xs: torch.Tensor, s, t, eps: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    ratio = schedule.extract(schedule.alpha_bar, t, xs) / schedule.extract(schedule.alpha_bar, s, xs, allow_zero=True)
    return ratio.sqrt() * xs + (1 - ratio).sqrt() * eps
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_q_jump(q_jump)

# %% [markdown]
# ## 5. Explore
#
# The figures above are static so that the chapter reads well without a kernel. With a
# running kernel, the widgets below let you scrub through $t$ and compare schedules.
#
# **A $t$ slider** over noised digits and noised 2-D data (same noise for all $t$, so you
# see the signal fade rather than the noise change):

# %%
import ipywidgets as widgets

x0_grid = digits[:8]
eps_grid = torch.randn(x0_grid.shape, generator=seeded(10))
x0_w = make_toy("moons", dmlib.quick(1000, 3000), seed=6)
eps_w = torch.randn(x0_w.shape, generator=seeded(11))


def show_t(t: int = 200, schedule: str = "linear") -> None:
    s = schedules[schedule]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw=dict(width_ratios=[2.6, 1]))
    image_grid(q_sample(s, x0_grid, t, eps=eps_grid), nrow=4, ax=axes[0],
               title=f"{schedule}: x_t at t = {t}, alpha_bar_t = {float(s.alpha_bar[t]):.3f}")
    scatter2d(q_sample(s, x0_w, t, eps=eps_w), ax=axes[1], s=2, title=f"moons, t = {t}")
    axes[1].set(xlabel="x[0]", ylabel="x[1]")
    fig.tight_layout()
    plt.show()


widgets.interact(show_t, t=widgets.IntSlider(200, 0, T, 10), schedule=list(schedules));

# %% [markdown]
# **A schedule picker**: $\bar\alpha_t$ and $\log\mathrm{SNR}_t$ for a schedule and $T$ of
# your choice, against DDPM's linear schedule with $T = 1000$ (on the axis $t/T$, so that
# different $T$ compare):

# %%
def show_schedule(schedule: str = "cosine", T_steps: int = 1000) -> None:
    s, ref = make_schedule(schedule, T_steps), schedules["linear"]
    u, u_ref = np.arange(T_steps + 1) / T_steps, np.arange(ref.T + 1) / ref.T
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].plot(u_ref, ref.alpha_bar, "k--", lw=1, label="linear, T = 1000")
    axes[0].plot(u, s.alpha_bar, label=f"{schedule}, T = {T_steps}")
    axes[0].set(title="alpha_bar_t", xlabel="t / T", ylabel="alpha_bar_t")
    axes[1].plot(u_ref[1:], ref.snr[1:].log(), "k--", lw=1, label="linear, T = 1000")
    axes[1].plot(u[1:], s.snr[1:].log(), label=f"{schedule}, T = {T_steps}")
    axes[1].set(title="log SNR_t", xlabel="t / T", ylabel="log SNR_t")
    for ax in axes:
        ax.legend()
    kl = prior_kl(s, x0_kl[:100]).mean().item()
    fig.suptitle(f"{schedule}, T = {T_steps}: alpha_bar_T = {float(s.alpha_bar[-1]):.2e}, "
                 f"prior KL on MNIST = {kl:.2e} nats")
    fig.tight_layout()
    plt.show()


widgets.interact(show_schedule, schedule=["linear", "cosine", "sigmoid"],
                 T_steps=widgets.IntSlider(1000, 10, 4000, 10));

# %% [markdown]
# ## Summary
#
# | claim (lecture) | checked here by |
# |---|---|
# | $q(x_t \mid x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)$ (slide: $\sqrt{\beta_t}$, erratum) | the variance of 200,000 one-step samples |
# | $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I)$ (slide: $\alpha_t$, std in the variance slot) | derivation; chain vs jump on moons and MNIST: means, covariances, KS tests |
# | $q(x_T) \approx \mathcal N(0, I)$ regardless of $x_0$, $T$ large | the prior KL per schedule and $T$; the Gaussianity of the true reverse step |
# | schedules: $\bar\alpha_t$, $\mathrm{SNR}_t$ | linear vs cosine vs sigmoid: curves, digits, 2-D data, correlations |
#
# dmlib's versions: `dmlib.forward` (`q_step`, `q_step_mean_var`, `q_sample`, `q_mean_var`,
# `q_iterate`), `dmlib.schedules` (`Schedule.linear/cosine/sigmoid`, `cosine_alpha_bar`,
# `make_schedule`) and `dmlib.losses.prior_kl`.
#
# ### You can now
#
# * [ ] write one noising step and say why the slide's $\sqrt{\beta_t}\,I$ cannot be the
#   covariance;
# * [ ] derive $q(x_t \mid x_0)$ by induction with the sum of Gaussians, and $q(x_t \mid x_s)$
#   by the same argument;
# * [ ] sample $x_t$ for a batch with per-example $t$ in one line, broadcasting the
#   schedule's coefficients;
# * [ ] compute the prior KL $\mathrm{KL}(q(x_T \mid x_0)\,\|\,\mathcal N(0, I))$ and say
#   why $T$ is large even though a few big steps also reach noise;
# * [ ] predict where a schedule's SNR crosses 1 from its formula, and compare linear, cosine
#   and sigmoid schedules by what they do to a digit.
#
# Chapter 4 turns the forward process into a training objective: the ELBO, with this
# chapter's KL as its term $L_T$.
