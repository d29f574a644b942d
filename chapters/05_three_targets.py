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
# # Chapter 5: three (or four) equivalent targets
#
# Chapter 4 ended with a regression loss: the network $\mu_\theta(x_t, t)$ should match the
# posterior mean $\tilde x_{t-1}$ of $q(x_{t-1} \mid x_t, x_0)$. The lecture then asks:
# *what should the network predict?* Its answer: the slightly less noisy image
# $\tilde x_{t-1}$, the clean image $x_0$, or the added noise $\epsilon$, "anything else?",
# "any linear combination of the above". This chapter
#
# 1. derives the **exact conversions** between $\tilde x_{t-1}$ (we write $\mu$,
#    `prediction_type="mu"`), $x_0$ and $\epsilon$ from the lecture's two equations, and
#    checks that round trips are identities (C5.1);
# 2. derives the **weights** that make the three losses equal and checks them numerically
#    (C5.2);
# 3. adds a fourth target, $v$, a linear combination of $x_0$ and $\epsilon$, and finds the
#    weight of *any* linear target (C5.3);
# 4. trains **the same network on each target**, with the ELBO's weights and with the simple
#    loss, on 2-D data, and compares loss per $t$, samples and the NLL bound: equivalent in
#    principle, different in practice (C5.4).
#
# Notation: $\alpha_t = 1 - \beta_t$, $\bar\alpha_t = \prod_{s \le t} \alpha_s$, $t = 1..T$,
# and `sched.alpha_bar[t]` is $\bar\alpha_t$ (chapter 0).
#
# **Objectives.** After this chapter you can
#
# * convert a prediction of any one of $\tilde x_{t-1}$, $x_0$, $\epsilon$ and $v$ into the
#   others, given $x_t$ and $t$;
# * derive the weights that make the losses on the different targets equal, and explain
#   why they span many orders of magnitude;
# * say which linear combinations of $x_0$ and $\epsilon$ can serve as a target;
# * find the optimal prediction for simple data by an argument, not a formula;
# * explain, with measured numbers, why equivalent targets still train differently.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import dmlib
from dmlib import checks
from dmlib import targets as tg
from dmlib.losses import diffusion_loss, loss_weights, vlb_terms
from dmlib.schedules import elbo_variance
from dmlib.posterior import posterior_mean, posterior_mean_from_eps
from dmlib.schedules import Schedule

gen = dmlib.seed_everything(0)
D = torch.float64  # conversions are checked in float64
COLORS = {"x0": "tab:blue", "mu": "tab:green", "eps": "tab:red", "v": "tab:purple"}  # one per target

# %% [markdown]
# ## 1. Two equations, three unknowns (C5.1)
#
# The lecture's slide "what should the network predict?" puts two equations side by side:
#
# $$\tilde x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\epsilon\Big)
# \qquad (1)$$
#
# $$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon \qquad (2)$$
#
# and says "2 equations, 3 unknown variables ($x_t$ is known)". The slide writes
# $\frac{1}{\sqrt{1-\beta_t}}$ for $\frac{1}{\sqrt{\alpha_t}}$ (the same thing) and, as on
# several slides, $\alpha_t$ for the cumulative $\bar\alpha_t$: in (1) and (2) the square
# roots $\sqrt{1-\alpha_t}$ and $\sqrt{\alpha_t}\,x_0$ must be read with $\bar\alpha_t$.
# With $x_t$ and $t$ given, (1) and (2) are two linear equations in the three unknowns
# $\tilde x_{t-1}, x_0, \epsilon$: fix any one and the other two follow.
#
# **From $\epsilon$.** (2) solved for $x_0$, and (1) as it stands:
#
# $$x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\epsilon}{\sqrt{\bar\alpha_t}}, \qquad
# \mu = \tilde x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon\Big).$$
#
# **From $x_0$.** (2) solved for $\epsilon = (x_t - \sqrt{\bar\alpha_t}x_0)/\sqrt{1-\bar\alpha_t}$,
# put into (1):
#
# $$\mu = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{1-\bar\alpha_t}(x_t - \sqrt{\bar\alpha_t}x_0)\Big)
# = \underbrace{\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}}_{\text{coef}_{x_0}(t)} x_0
# + \underbrace{\frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}}_{\text{coef}_{x_t}(t)} x_t,$$
#
# using $\sqrt{\bar\alpha_t}/\sqrt{\alpha_t} = \sqrt{\bar\alpha_{t-1}}$ and
# $1 - \bar\alpha_t - \beta_t = \alpha_t - \bar\alpha_t = \alpha_t(1-\bar\alpha_{t-1})$.
# That is chapter 4's posterior mean in its coefficient form: the two routes agree.
#
# **From $\mu$.** (1) solved for $\epsilon$, or the coefficient form solved for $x_0$:
#
# $$\epsilon = \frac{\sqrt{1-\bar\alpha_t}}{\beta_t}\big(x_t - \sqrt{\alpha_t}\,\mu\big), \qquad
# x_0 = \frac{\mu - \text{coef}_{x_t}(t)\,x_t}{\text{coef}_{x_0}(t)}.$$
#
# Every map divides only by $\sqrt{\bar\alpha_t}$, $\sqrt{1-\bar\alpha_t}$, $\beta_t$ or
# $\text{coef}_{x_0}(t)$, all positive for $t = 1..T$: the conversions are exact.
#
# **Exercise 5.1 (★ warm-up).** Write `x0_from_eps(schedule, xt, eps, t)`: the $x_0$ that goes with a
# noise $\epsilon$ for the given $x_t$. Shapes: `xt`, `eps` `(B, ...)`; `t` an int or a
# `(B,)` long tensor. `schedule.extract(schedule.alpha_bar, t, xt)` returns $\bar\alpha_t$
# shaped to broadcast against `xt`.

# %%
def x0_from_eps(schedule: Schedule, xt: torch.Tensor, eps: torch.Tensor,
                t: int | torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    alpha_bar = schedule.extract(schedule.alpha_bar, t, xt)
    return (xt - torch.sqrt(1 - alpha_bar) * eps) / torch.sqrt(alpha_bar)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_x0_from_eps(x0_from_eps)

# %% [markdown]
# **Exercise 5.2 (★★ core).** Write `mu_from_eps(schedule, xt, eps, t)`: the posterior mean
# $\tilde x_{t-1}$ of equation (1), the lecture's "slightly less noisy image". Mind which
# $\alpha$ is cumulative: `schedule.alphas` holds $\alpha_t$, `schedule.alpha_bar` holds
# $\bar\alpha_t$, `schedule.betas` holds $\beta_t$.

# %%
def mu_from_eps(schedule: Schedule, xt: torch.Tensor, eps: torch.Tensor,
                t: int | torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    alpha = schedule.extract(schedule.alphas, t, xt)
    beta = schedule.extract(schedule.betas, t, xt)
    alpha_bar = schedule.extract(schedule.alpha_bar, t, xt)
    return (xt - beta / torch.sqrt(1 - alpha_bar) * eps) / torch.sqrt(alpha)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_mu_from_eps(mu_from_eps)

# %% [markdown]
# From here on the chapter uses dmlib's versions (`dmlib.targets.x0_from_eps`,
# `dmlib.posterior.posterior_mean_from_eps`) so it runs whatever you wrote above.
# `dmlib.targets.convert(schedule, pred, xt, t, source, target)` converts between all four
# targets (the fourth, $v$, comes in section 3). First: the eps form (1) of $\mu$ and the
# coefficient form agree, and every one of the $4 \times 4$ round trips
# source $\to$ target $\to$ source is the identity, for *arbitrary* predictions (not only
# the true ones), in float64, at 200 random timesteps including $t = 1$ and $t = T$.

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(1)
for sched in [Schedule.linear(1000), Schedule.cosine(1000)]:
    t = torch.cat([torch.tensor([1, 2, sched.T]), torch.randint(1, sched.T + 1, (197,), generator=g)])
    x0 = torch.randn(200, 2, generator=g, dtype=D)
    eps = torch.randn(200, 2, generator=g, dtype=D)
    xt = sched.extract(sched.sqrt_alpha_bar, t, x0) * x0 + sched.extract(sched.sqrt_one_minus_alpha_bar, t, x0) * eps
    two_forms = (posterior_mean_from_eps(sched, xt, eps, t) - posterior_mean(sched, x0, xt, t)).abs().max()
    worst = 0.0
    pred = torch.randn(200, 2, generator=g, dtype=D)  # an arbitrary "network output"
    for src in tg.PREDICTION_TYPES:
        for dst in tg.PREDICTION_TYPES:
            back = tg.convert(sched, tg.convert(sched, pred, xt, t, src, dst), xt, t, dst, src)
            worst = max(worst, (back - pred).abs().max().item())
    print(f"{sched.name:6s}: eps form vs coefficient form of mu agree to 12 digits: "
          f"{'yes' if two_forms.item() < 1e-12 else 'NO'}; 16 round trips exact to 10 digits: "
          f"{'yes' if worst < 1e-10 else 'NO'}")

# %% [markdown]
# The conversions are exact in exact arithmetic, but not equally well conditioned. Going
# from $\mu$ to $x_0$ divides by $\text{coef}_{x_0}(t)$, which is tiny at large $t$ (one step
# of denoising says little about $x_0$); going from $\epsilon$ to $x_0$ divides by
# $\sqrt{\bar\alpha_t}$, also tiny at large $t$. A small error in the source becomes a large
# error in the target: the factor is the ratio of the two targets' sensitivities. We will
# meet these factors again as loss weights.

# %%
# NBVAL_CHECK_OUTPUT
sched = Schedule.linear(1000)
print("   t   coef_x0(t)   1/sqrt(alpha_bar_t)   (error amplification mu->x0, eps->x0)")
for t in [1, 10, 100, 500, 1000]:
    print(f"{t:4d}   {sched.posterior_mean_coef_x0[t]:10.2e}   {1 / sched.sqrt_alpha_bar[t]:10.2e}")

# %% [markdown]
# ## 2. The weights that make the losses equal (C5.2)
#
# Fix $x_t$ and $t$. A network that predicts $\epsilon_\theta$ implies
# $x_{0,\theta}$ and $\mu_\theta$ through the *same* linear maps as the true values, so the
# errors are proportional. Subtracting (1) for $\mu_\theta, \epsilon_\theta$ from (1) for
# $\mu, \epsilon$, and (2) likewise ($x_t$ cancels):
#
# $$\mu - \mu_\theta = -\frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1-\bar\alpha_t}}(\epsilon - \epsilon_\theta),
# \qquad \mu - \mu_\theta = \text{coef}_{x_0}(t)\,(x_0 - x_{0,\theta}).$$
#
# Squaring:
#
# $$\|\mu - \mu_\theta\|^2 = c_{x_0}(t)\,\|x_0 - x_{0,\theta}\|^2 = c_\epsilon(t)\,\|\epsilon - \epsilon_\theta\|^2,
# \qquad c_{x_0}(t) = \frac{\bar\alpha_{t-1}\beta_t^2}{(1-\bar\alpha_t)^2}, \quad
# c_\epsilon(t) = \frac{\beta_t^2}{\alpha_t(1-\bar\alpha_t)}.$$
#
# Dividing them, $c_{x_0}/c_\epsilon = \bar\alpha_t/(1-\bar\alpha_t) = \mathrm{SNR}_t$: that is
# (2) again, $x_0 - x_{0,\theta} = -\sqrt{1-\bar\alpha_t}/\sqrt{\bar\alpha_t}\,(\epsilon - \epsilon_\theta)$.
# The ELBO's term $L_{t-1} = \|\mu - \mu_\theta\|^2 / (2\sigma_t^2) + \text{const}$ (chapter 4)
# then has the weights $c(t) / (2\sigma_t^2)$ in each parameterization; this is
# `dmlib.losses.loss_weights(schedule, prediction_type, "elbo", sigma)` (here with
# $\sigma_t^2 = \tilde\beta_t$, the posterior variance, and $\sigma_1^2 = \beta_1$).
#
# Numerically: an arbitrary $\epsilon_\theta$, converted to $x_{0,\theta}$ and $\mu_\theta$,
# gives three weighted losses that agree, at every $t$:

# %%
# NBVAL_CHECK_OUTPUT
for sched in [Schedule.linear(1000), Schedule.cosine(1000)]:
    T = sched.T
    t = torch.arange(1, T + 1)
    x0 = torch.randn(T, 2, generator=g, dtype=D)
    eps = torch.randn(T, 2, generator=g, dtype=D)
    xt = sched.extract(sched.sqrt_alpha_bar, t, x0) * x0 + sched.extract(sched.sqrt_one_minus_alpha_bar, t, x0) * eps
    eps_hat = eps + 0.3 * torch.randn(T, 2, generator=g, dtype=D)  # a wrong prediction
    ab, ab_prev, beta, alpha = (sched.alpha_bar[1:], sched.alpha_bar_prev[1:], sched.betas[1:],
                                sched.alphas[1:])
    # independent of dmlib.targets: mu from chapter 4's posterior mean, written out, once with
    # the true x0 and once with the x0 that goes with eps_hat
    col = lambda v: v[:, None]  # noqa: E731
    post = lambda x0_: (col(ab_prev.sqrt() * beta / (1 - ab)) * x0_  # noqa: E731
                        + col(alpha.sqrt() * (1 - ab_prev) / (1 - ab)) * xt)
    x0_hat = (xt - col((1 - ab).sqrt()) * eps_hat) / col(ab.sqrt())
    sq = {"eps": (eps - eps_hat).pow(2).sum(1), "x0": (x0 - x0_hat).pow(2).sum(1),
          "mu": (post(x0) - post(x0_hat)).pow(2).sum(1)}
    c_x0 = ab_prev * beta ** 2 / (1 - ab) ** 2       # the derivation above, written out
    c_eps = beta ** 2 / (alpha * (1 - ab))
    rel = lambda a, b: ((a - b).abs() / b.abs()).max().item()  # noqa: E731
    print(f"{sched.name} schedule: the measured ratios of squared errors are the derived weights")
    print(f"     t   ||mu err||^2 / ||x0 err||^2     c_x0(t)   ||mu err||^2 / ||eps err||^2    c_eps(t)")
    for t_ in (1, 10, 100, 500, 1000):
        i = t_ - 1
        print(f"  {t_:4d}   {float(sq['mu'][i] / sq['x0'][i]):22.4e}  {float(c_x0[i]):10.4e}   "
              f"{float(sq['mu'][i] / sq['eps'][i]):23.4e}  {float(c_eps[i]):10.4e}")
    ok_w = rel(c_x0 * sq['x0'], sq['mu']) < 1e-10 and rel(c_eps * sq['eps'], sq['mu']) < 1e-10
    two_var = 2 * elbo_variance(sched, "beta_tilde")[1:]  # 2 sigma_t^2, sigma_1^2 = beta_1
    ok_l = all(rel(loss_weights(sched, p, "elbo", variance="beta_tilde")[1:], c / two_var) < 1e-10
               for p, c in [("mu", torch.ones_like(c_x0)), ("x0", c_x0), ("eps", c_eps)])
    print(f"  at all {T} t to 10 digits: weights {'yes' if ok_w else 'NO'}; "
          f"loss_weights(p, 'elbo') = c_p(t) / (2 sigma_t^2) for mu, x0, eps: {'yes' if ok_l else 'NO'}")

# %% [markdown]
# How different are these weights? Plotted against $t$ on a log scale, for the linear and
# the cosine schedule ($T = 1000$):

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, sched in zip(axes, [Schedule.linear(1000), Schedule.cosine(1000)]):
    t = np.arange(1, sched.T + 1)
    for p, style in [("mu", "-"), ("x0", "-"), ("eps", "-"), ("v", "--")]:
        w = loss_weights(sched, p, "elbo", variance="beta_tilde")[1:].numpy()
        ax.plot(t, w, style, color=COLORS[p], label=f"{p}: w(t) on ||{p} - {p}_theta||^2")
    ax.set_yscale("log")
    ax.set(title=f"ELBO weights, {sched.name} schedule (T = 1000)", xlabel="t",
           ylabel="weight w(t)")
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
print("range of the ELBO weight over t = 1..T, max / min (orders of magnitude):")
for sched in [Schedule.linear(1000), Schedule.cosine(1000)]:
    row = []
    for p in tg.PREDICTION_TYPES:
        w = loss_weights(sched, p, "elbo", variance="beta_tilde")[1:]
        row.append(f"{p}: 1e{round(math.log10(w.max() / w.min()))}")
    print(f"  {sched.name:6s}  " + ", ".join(row))

# %% [markdown]
# The ELBO asks for wildly different emphases depending on *what* the network outputs:
# on $x_0$ errors it puts about $10^{10}$ times more weight at small $t$ than at large
# $t$ (at small $t$, an error in $x_0$ is an error in $\mu$ almost one for one; at large $t$
# one step of denoising barely depends on $x_0$). On $\epsilon$ errors the weight is much
# flatter (for the linear schedule within a factor of about a hundred).
# This is the first reason the "equivalent" targets train differently: a loss whose
# per-$t$ weights span many orders of magnitude gives gradient estimates dominated by a few
# timesteps, i.e. high variance when $t$ is sampled uniformly.
#
# ## 3. "Anything else?": $v$ and any linear combination (C5.3)
#
# The lecture's answer to "anything else?" is "any linear combination of the above three
# (e.g., $x_0\,\epsilon$)". The example means a *linear combination* $a\,x_0 + b\,\epsilon$,
# not the product $x_0 \epsilon$ (a product is not linear: it cannot be converted back).
# A popular one is Salimans & Ho's $v$ ("velocity"):
#
# $$v = \sqrt{\bar\alpha_t}\,\epsilon - \sqrt{1-\bar\alpha_t}\,x_0 .$$
#
# With $\sqrt{\bar\alpha_t} = \cos\phi_t$ and $\sqrt{1-\bar\alpha_t} = \sin\phi_t$, (2) and
# the definition of $v$ read
#
# $$\begin{pmatrix} x_t \\ v \end{pmatrix} = \begin{pmatrix} \cos\phi_t & \sin\phi_t \\ -\sin\phi_t & \cos\phi_t \end{pmatrix}
# \begin{pmatrix} x_0 \\ \epsilon \end{pmatrix},$$
#
# a rotation, inverted by its transpose: $x_0 = \cos\phi_t\,x_t - \sin\phi_t\,v$ and
# $\epsilon = \sin\phi_t\,x_t + \cos\phi_t\,v$. For fixed $x_t$,
# $x_0 - x_{0,\theta} = -\sin\phi_t\,(v - v_\theta)$, so the ELBO weight on the $v$ error is
# $c_v(t) = (1-\bar\alpha_t)\,c_{x_0}(t) = \bar\alpha_t\,c_\epsilon(t)$ (divided by
# $2\sigma_t^2$ as before): between the two, the dashed line in the plot above.
#
# **Exercise 5.3 (★ warm-up).** Write `v_from_x0_eps(schedule, x0, eps, t)`.

# %%
def v_from_x0_eps(schedule: Schedule, x0: torch.Tensor, eps: torch.Tensor,
                  t: int | torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    alpha_bar = schedule.extract(schedule.alpha_bar, t, x0)
    return torch.sqrt(alpha_bar) * eps - torch.sqrt(1 - alpha_bar) * x0
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_v(v_from_x0_eps)

# %% [markdown]
# **Any linear target.** Write a target as $y = c_{x_0}(t)\,x_0 + c_\epsilon(t)\,\epsilon$
# (`dmlib.targets.target_coefficients`; for $\mu$ substitute (2) into the coefficient form).
# For fixed $x_t$, eliminate $\epsilon$ with (2):
# $y = \big(c_{x_0} - c_\epsilon\sqrt{\mathrm{SNR}_t}\big)x_0 + (\text{terms in } x_t)$, so
#
# $$y - y_\theta = k(t)\,(x_0 - x_{0,\theta}), \quad k(t) = c_{x_0}(t) - c_\epsilon(t)\sqrt{\mathrm{SNR}_t},
# \qquad w_y(t) = \frac{w_{x_0}(t)}{k(t)^2}.$$
#
# Any $y$ with $k(t) \neq 0$ works as a target. $k(t) = 0$ exactly when $y$ is a multiple of
# $x_t$, which the network already knows: such a "target" carries no information.
# `dmlib.targets.x0_error_factor` and `dmlib.targets.elbo_weight` compute $k$ and $w_y$;
# for the four named targets $w_y$ reproduces `loss_weights`:

# %%
# NBVAL_CHECK_OUTPUT
print("ELBO weight w_y(t) from the coefficients (elbo_weight) and from section 2 (loss_weights)")
print("                     t = 10                      t = 500          agree at all t")
for sched in [Schedule.linear(1000), Schedule.cosine(1000)]:
    for p in tg.PREDICTION_TYPES:
        w = tg.elbo_weight(sched, *tg.target_coefficients(sched, p), variance="beta_tilde")[1:]
        ref = loss_weights(sched, p, "elbo", variance="beta_tilde")[1:]
        ok = ((w - ref).abs() / ref).max().item() < 1e-10
        print(f"{sched.name:6s} {p:3s}   {float(w[9]):.4e} / {float(ref[9]):.4e}   "
              f"{float(w[499]):.4e} / {float(ref[499]):.4e}   {'yes' if ok else 'NO'}")
sched = Schedule.linear(1000)
a, s = sched.sqrt_alpha_bar, sched.sqrt_one_minus_alpha_bar
try:
    tg.elbo_weight(sched, a.clone(), s.clone())  # y = sqrt(ab) x0 + sqrt(1-ab) eps = x_t
except ValueError as err:
    print("y = x_t:", err)

# %% [markdown]
# What do the four targets look like? For 300 points of a 2-D data set (a Gaussian mixture
# on a $3 \times 3$ grid, chapter 6) and one draw of noise, the grey cloud is $x_t$ (what the
# network sees) and the coloured cloud the target it must output, at several $t$ ($T = 100$,
# linear schedule).
#
# > **Think first.** Before you look: the network sees only $x_t$. For the $x_0$ target and
# > for the $\epsilon$ target, is its job easy or hard at small $t$ (little noise)? At large
# > $t$ (almost pure noise)? And how far is the $\mu$ target from $x_t$? Write one line per
# > target; the paragraph under the figure answers.

# %%
from dmlib.data import default_gmm2d, make_toy
from dmlib.forward import q_sample

sched = Schedule.linear(100)
x0_demo = make_toy("gmm", 300, seed=3).double()
eps_demo = torch.randn(x0_demo.shape, generator=torch.Generator().manual_seed(4), dtype=D)


def four_targets(sched, t):
    xt = q_sample(sched, x0_demo, t, eps_demo)
    return xt, {p: tg.target_for(p, sched, x0_demo, eps_demo, xt, t) for p in COLORS}


ts_demo = [1, 10, 30, 60, 100]
fig, axes = plt.subplots(4, len(ts_demo), figsize=(2.3 * len(ts_demo), 9.4))
for j, t in enumerate(ts_demo):
    xt, tgts = four_targets(sched, t)
    for i, (p, col) in enumerate(COLORS.items()):
        ax = axes[i, j]
        ax.scatter(*xt.T, s=3, color="0.7", label="x_t")
        ax.scatter(*tgts[p].T, s=3, color=col, label=p)
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), xticks=[], yticks=[], aspect="equal")
        if i == 0:
            ax.set_title(f"t = {t}")
        if j == 0:
            ax.set_ylabel(f"target {p}")
            ax.legend(loc="lower left", fontsize=7, markerscale=3)
fig.suptitle("The four targets (colour) for the same x_t (grey), linear schedule, T = 100")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read it column by column. The $x_0$ target is always the data: easy at small $t$ (it is
# almost $x_t$), hard at large $t$, where $x_t$ is nearly pure noise and the best prediction
# is a blurry average. The $\epsilon$ target is the mirror image: hard at small $t$ (the
# noise is a tiny part of $x_t$) and easy at large $t$ ($\epsilon \approx x_t$). $v$ rotates
# from $\epsilon$ (small $t$) to $-x_0$ (large $t$), so its magnitude stays near 1 at every
# $t$. And $\mu$, the slide's $\tilde x_{t-1}$, is **almost $x_t$ at every $t$**: one step
# of denoising moves each point by little (rms of $\mu - x_t$ between 0.03 and 0.11 below).
# A network trained on $\mu$ spends its effort reproducing $x_t$. The part that carries
# information about $x_0$, $\text{coef}_{x_0}(t)\,x_0$, is a small correction from
# $t \approx 10$ on (rms 0.19 at $t = 10$, 0.03 at $t = 50$); at the first steps it is most of
# $\mu$ (rms 0.97 at $t = 1$, where $\mu = x_0$), but there $x_t$ is itself almost $x_0$:

# %%
# NBVAL_CHECK_OUTPUT
print("   t   rms(x_t)   rms(mu - x_t)   rms(coef_x0 * x0)")
rms = lambda z: z.pow(2).mean().sqrt().item()  # noqa: E731
for t in [1, 2, 10, 50, 100]:
    xt, tgts = four_targets(sched, t)
    print(f"{t:4d}   {rms(xt):8.2f}   {rms(tgts['mu'] - xt):13.2f}   "
          f"{rms(sched.posterior_mean_coef_x0[t] * x0_demo):17.2f}")

# %% [markdown]
# Explore with the slider (the static figure above is what the widget draws):

# %%
import ipywidgets as widgets


def show_targets(t: int = 30, schedule: str = "linear") -> None:
    s = Schedule.linear(100) if schedule == "linear" else Schedule.cosine(100)
    xt, tgts = four_targets(s, t)
    fig, axes = plt.subplots(1, 4, figsize=(11, 3))
    for ax, (p, col) in zip(axes, COLORS.items()):
        ax.scatter(*xt.T, s=3, color="0.7", label="x_t")
        ax.scatter(*tgts[p].T, s=3, color=col, label=p)
        ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), aspect="equal", title=f"target {p}, t = {t}",
               xlabel="$x_1$", ylabel="$x_2$")
        ax.legend(loc="lower left", fontsize=7, markerscale=3)
    plt.tight_layout()
    plt.show()


widgets.interact(show_targets, t=widgets.IntSlider(30, 1, 100, 1), schedule=["linear", "cosine"]);

# %% [markdown]
# **Exercise 5.4 (★★★ stretch: an idea, not a formula).** Suppose the data is itself
# standard normal, $x_0 \sim \mathcal N(0, I)$. What is the *best possible* $\epsilon$-prediction
# $\mathbb E[\epsilon \mid x_t]$? No formula above gives it. Write
# `optimal_eps_std_normal(schedule, xt, t)` (shapes as in exercise 5.1). Hint: by (2),
# $(\epsilon, x_t)$ is jointly Gaussian, and for jointly Gaussian $(u, w)$ with mean zero,
# $\mathbb E[u \mid w] = \frac{\mathrm{Cov}(u, w)}{\mathrm{Var}(w)}\,w$.
#
# Then, without code: what is the best $v$-prediction for this data?

# %%
def optimal_eps_std_normal(schedule: Schedule, xt: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    alpha_bar = schedule.extract(schedule.alpha_bar, t, xt)
    return torch.sqrt(1 - alpha_bar) * xt
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_optimal_eps_std_normal(optimal_eps_std_normal)

# %% [markdown]
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ with independent standard
# normal $x_0$ and $\epsilon$, so $\mathrm{Var}(x_t) = \bar\alpha_t + 1 - \bar\alpha_t = 1$ and
# $\mathrm{Cov}(\epsilon, x_t) = \sqrt{1-\bar\alpha_t}$:
# $$\mathbb E[\epsilon \mid x_t] = \sqrt{1-\bar\alpha_t}\;x_t,\qquad
# \mathbb E[x_0 \mid x_t] = \sqrt{\bar\alpha_t}\;x_t .$$
# The tempting answer $x_t/\sqrt{1-\bar\alpha_t}$ pretends $x_0 = 0$; but $x_0$ is random, and
# $x_t$ is evidence about it too. The best $v$-prediction is
# $\sqrt{\bar\alpha_t}\,\mathbb E[\epsilon\mid x_t] - \sqrt{1-\bar\alpha_t}\,\mathbb E[x_0\mid x_t] = 0$
# at every $t$: for this data $v$ is independent of $x_t$ (the rotation of section 3 maps
# the standard normal pair $(x_0, \epsilon)$ to a standard normal pair $(x_t, v)$).
#
# </details>

# %% [markdown]
# ## 4. Equivalent in principle, different in practice (C5.4)
#
# Now the experiment. The same network, `dmlib.models.MLPDenoiser` (a residual MLP, 3 blocks
# of width 128), the same data (20 000 points of the $3\times3$ Gaussian mixture), the same
# optimiser, steps and seed; only the loss changes:
#
# * **target**: $\epsilon$, $x_0$, $\mu$ or $v$ (`prediction_type`);
# * **weighting**: `"simple"` ($w(t) = 1$, DDPM's $L_\text{simple}$, mean over dimensions) or
#   `"elbo"` (the weights of section 2, sum over dimensions: the negative ELBO itself, up to
#   constants).
#
# With ELBO weights all four losses are *the same function* of the implied $\mu_\theta$: only
# the parameterization differs. With simple weights they are different objectives. Which
# weight on the $\epsilon$ error does $w = 1$ on target $y$ imply? By section 3, $\|y - y_\theta\|^2 =
# (k_y/k_\epsilon)^2 \|\epsilon - \epsilon_\theta\|^2$: $1$ for $\epsilon$, $1/\mathrm{SNR}_t$
# for $x_0$, $1/\bar\alpha_t = 1 + 1/\mathrm{SNR}_t$ for $v$, $c_\epsilon(t)$ for $\mu$.
# Together with the ELBO's weight $c_\epsilon(t)/(2\sigma_t^2)$, all in the same units
# (weight on the $\epsilon$ error; only the *shape* of each curve matters, since Adam is
# nearly blind to a constant factor in the loss):

# %%
sched = Schedule.linear(100)
t = np.arange(1, sched.T + 1)
k_eps = tg.x0_error_factor(sched, *tg.target_coefficients(sched, "eps"))[1:]
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for p in tg.PREDICTION_TYPES:
    k = tg.x0_error_factor(sched, *tg.target_coefficients(sched, p))[1:]
    implied = (k / k_eps) ** 2  # ||y - y_theta||^2 = (k_y / k_eps)^2 ||eps - eps_theta||^2
    ax.plot(t, implied.numpy(), color=COLORS[p], label=f"simple loss on {p}")
ax.plot(t, loss_weights(sched, "eps", "elbo", variance="beta_tilde")[1:].numpy(), "k:",
        label="ELBO (any target)")
ax.set_yscale("log")
ax.set(title="Weight on ||eps - eps_theta||^2 implied by each loss\n(linear schedule, T = 100)",
       xlabel="t", ylabel="weight on the eps error")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# Against the ELBO (dotted), simple $\epsilon$ (DDPM's choice, flat) gives up to 25 times
# less relative weight to the first few timesteps, where the ELBO's weight peaks, and is
# otherwise within a factor of about 5 of it. Simple $x_0$ ($1/\mathrm{SNR}_t$) shifts the
# weight to large $t$ by eight orders of magnitude: at $t = 1$ its weight is $10^{-3}$.
# Simple $v$ ($1 + 1/\mathrm{SNR}_t$) is simple $\epsilon$ at small $t$ plus the large-$t$
# emphasis of $x_0$. Simple $\mu$ is the ELBO times $2\sigma_t^2$: it under-weights small $t$,
# where $\sigma_t^2$ is small. Now train all eight
# combinations. `dmlib.training.train` takes a `loss_fn(model, batch, generator)`; the
# quick switch shortens training in quick mode (the text discusses the full run).

# %%
from dmlib.models import MLPConfig, MLPDenoiser
from dmlib.plotting import scatter2d
from dmlib.sampling import ddpm_sample
from dmlib.training import TrainConfig, train
from tqdm.auto import tqdm

# The 2-D MLP is tiny: on a CPU one thread trains it faster than several, whose
# synchronisation costs more than the matrix products (on a busy 2-core machine we measured
# 2 threads 30x slower than 1). Restored at the end of the chapter.
n_threads = torch.get_num_threads()
torch.set_num_threads(1)

T = 100
sched = Schedule.linear(T)
x_train = make_toy("gmm", 20_000, seed=0)
x_test = make_toy("gmm", dmlib.quick(500, 2000), seed=1)  # held out, for the NLL bound
STEPS = dmlib.quick(100, 3000)
RUNS = [(p, w) for w in ("simple", "elbo") for p in ("eps", "x0", "mu", "v")]


def make_loss_fn(p: str, w: str):
    # Algorithm 1 with the chosen target and weighting; sigma_t^2 = beta_tilde_t as in the bound
    return lambda m, x0, g: diffusion_loss(m, sched, x0, prediction_type=p, weighting=w,
                                           generator=g, variance="beta_tilde")


results = {}
for p, w in tqdm(RUNS, desc="8 training runs"):
    torch.manual_seed(0)  # the same initial weights for every run
    model = MLPDenoiser(MLPConfig(dim=2, hidden=128, depth=3))
    cfg = TrainConfig(steps=STEPS, batch_size=256, lr=2e-3, warmup_steps=100, ema_decay=0.995,
                      seed=0, device="cpu")
    res = train(model, make_loss_fn(p, w), x_train, cfg, progress=False)
    results[(p, w)] = {"model": res.ema_model, "history": res.history, "seconds": res.seconds}
    print(f"{p:3s} {w:6s}: {STEPS} steps in {res.seconds:5.1f} s, final loss "
          f"{np.mean(res.history[-100:]):.4g}")

# %% [markdown]
# **Evaluation**, on held-out data, for each trained model (its EMA weights):
#
# * its error per $t$ in its *own* units, $\mathbb E\,\|y - y_\theta\|^2$ per dimension
#   (`dmlib.targets.error_per_t`);
# * the terms $L_{t-1}$ of the negative ELBO per $t$, in nats (`dmlib.losses.vlb_terms`):
#   a common currency, whatever the target;
# * their sum, the NLL bound $-\log p_\theta(x_0) \le L$ in nats per point, next to the
#   data's true NLL (its entropy, computable because the mixture density is known);
# * 2000 samples (`dmlib.sampling.ddpm_sample` with the matching `prediction_type`), and
#   their average log-density under the *true* mixture (closer to the data's value is
#   better: samples off the modes score low).

# %%
gmm = default_gmm2d()
true_nll = -gmm.log_prob(x_test).mean().item()
data_logp = -true_nll
N_SAMPLES = dmlib.quick(500, 2000)
for (p, w), r in tqdm(results.items(), total=len(results), desc="bounds and samples"):
    m = r["model"]
    with torch.no_grad():
        r["err"] = tg.error_per_t(m, sched, x_test, p, generator=torch.Generator().manual_seed(5))
        terms = vlb_terms(m, sched, x_test, p, variance="beta_tilde",
                          generator=torch.Generator().manual_seed(6))
    r["vlb_t"] = terms.mean(0)  # indexed by t: column t is L_{t-1}, column 0 is L_T
    r["nll"] = terms.sum(1).mean().item()
    r["samples"] = ddpm_sample(m, sched, (N_SAMPLES, 2), prediction_type=p, variance="beta_tilde",
                               generator=torch.Generator().manual_seed(7))
    r["sample_logp"] = gmm.log_prob(r["samples"]).clamp(min=-50).mean().item()
print(f"data (held out): true NLL {true_nll:.3f} nats, mean log p_data {data_logp:.3f}")
print("target weighting  NLL bound (nats)  mean log p_data(samples)")
for (p, w), r in results.items():
    print(f"{p:6s} {w:9s} {r['nll']:14.3f} {r['sample_logp']:20.3f}")

# %%
BINS = 10  # t = 1..T in 10 bins of T/10 steps


def binned(per_t: torch.Tensor) -> np.ndarray:
    """Mean over each bin of timesteps; per_t has one entry per t = 1..T."""
    return per_t.reshape(BINS, -1).mean(1).numpy()


t_mid = binned(torch.arange(1, T + 1, dtype=D))
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for (p, w), r in results.items():
    style = "-" if w == "simple" else "--"
    axes[0].plot(t_mid, binned(r["err"][1:]), style, color=COLORS[p], label=f"{p}, {w}")
    axes[1].plot(t_mid, binned(r["vlb_t"][1:]), style, color=COLORS[p], label=f"{p}, {w}")
axes[0].set(yscale="log", title="Own-target error per t (held out)", xlabel="t (binned)",
            ylabel="E ||y - y_theta||^2 per dim")
axes[1].set(yscale="log", title="ELBO term L_{t-1} per t (held out)", xlabel="t (binned)",
            ylabel="nats per point")
labels = [f"{p}\n{w}" for p, w in results]
nlls = [r["nll"] for r in results.values()]
bars = axes[2].bar(range(len(nlls)), nlls, color=[COLORS[p] for p, _ in results], alpha=0.8,
                   label="NLL bound (hatched: ELBO weights)")
axes[2].bar_label(bars, fmt="%.2f", fontsize=7)
for i, (_, w) in enumerate(results):
    if w == "elbo":
        axes[2].patches[i].set_hatch("//")
axes[2].axhline(true_nll, color="k", ls=":", label=f"true NLL of the data ({true_nll:.2f})")
axes[2].set_xticks(range(len(nlls)), labels, fontsize=8)
axes[2].set(title="NLL bound, nats per point (lower is better)", ylabel="nats",
            ylim=(0, 1.1 * max(nlls)))
for ax in axes[:2]:
    ax.legend(fontsize=7, ncol=2)
axes[2].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(2, 5, figsize=(14, 5.8))
for row, w in enumerate(["simple", "elbo"]):
    scatter2d(x_test, ax=axes[row, 0], lim=3, s=2, color="0.4",
                             title="data (held out)")
    for j, p in enumerate(["eps", "x0", "mu", "v"]):
        r = results[(p, w)]
        scatter2d(r["samples"], ax=axes[row, j + 1], lim=3, s=2, color=COLORS[p],
                                 title=f"{p}, {w}: log p {r['sample_logp']:.2f}")
fig.suptitle(f"Samples of the same network trained on each target (T = {T}, "
             f"{STEPS} steps); mean log p_data of the data: {data_logp:.2f}")
plt.tight_layout()
plt.show()

# %% [markdown]
# **What the full run shows.** The numbers quoted here are from the full run on the course
# machine, recorded in `bench/results/targets.json` by `bench/bench_targets.py`, which runs
# this same experiment; the tables above reproduce them when you run the full setting.
#
# | target, weighting | eps, simple | x0, simple | mu, simple | v, simple | eps, ELBO | x0, ELBO | mu, ELBO | v, ELBO | data |
# |---|---|---|---|---|---|---|---|---|---|
# | NLL bound (nats) | 3.19 | 10.34 | 3.98 | **3.16** | 3.49 | 4.51 | 4.27 | 4.29 | 1.20 (true NLL) |
# | mean log p_data(samples) | -1.44 | -0.95 | -3.29 | **-1.35** | -2.10 | -3.72 | -3.58 | -3.96 | -1.20 |
#
# * **Own-target error per $t$** (left). Each curve is small where its target is easy. The
#   $\epsilon$ error falls from about 0.65 per dimension at small $t$ to $5\cdot 10^{-4}$ at
#   large $t$; the $x_0$ error rises from 0.03 to 1.0, the data's variance: at large $t$ the
#   best guess of $x_0$ is the mean. The $v$ error is of order one everywhere. The $\mu$
#   error is $10^{-3}$ to $10^{-5}$: the $\mu$ target is almost $x_t$, so a network that
#   copies its input already scores well, and the loss says little about what matters.
# * **ELBO terms per $t$** (middle), a common currency. The first two bins ($t = 1..20$, the
#   first with the decoder term $L_0$) carry most of the bound (for simple $\epsilon$ and $v$,
#   1.0 and 1.1 of their 3.2 nats: the second bin is slightly the larger), and the first bin
#   is where the runs differ most, from 1.0 nats (simple $\epsilon$, $v$) to 8.2 (simple
#   $x_0$): simple $x_0$ weights $t = 1$ by $1/\mathrm{SNR}_1 \approx 10^{-3}$, leaves a small
#   $x_0$ error there (0.03), and the ELBO multiplies it by $1/(2\beta_1) = 500$; its bound is
#   10 nats.
# * **The NLL bound** (right). Simple $\epsilon$ and simple $v$ are best, 3.2 nats against
#   the data's true 1.2 (the rest is the price of 100 Gaussian steps and a small network
#   trained for 3000 steps). The ELBO-weighted runs optimise the bound *directly*, yet end
#   worse (3.5 to 4.5): with $t$ drawn uniformly, the per-example loss varies by orders of
#   magnitude with $t$, so the gradient is noisy and dominated by a few small $t$.
#   Nichol & Dhariwal (2021) report the same and sample $t$ by importance to fix it.
# * **Samples** (the mean log-density of the samples under the true mixture; the data's own
#   value is -1.20). Simple $\epsilon$ (-1.44) and simple $v$ (-1.35) put their samples on
#   the nine modes with about the right spread. Simple $x_0$ scores *higher* than the data
#   (-0.95): most of its samples sit too tightly on the mode centres, the rest on thin
#   filaments between them, and its bound (10.3 nats) says its model of the fine detail,
#   the small-$t$ steps its weight ignored, is poor. Simple $\mu$ and all ELBO runs leave mass between the modes.
#
# Equivalent in principle: every target determines the others exactly, and with ELBO
# weights every loss is the same function. Different in practice: what the network has to
# output (a copy of its input, a blurry mean, or well-scaled noise), how the implied weights
# spread over $t$ (orders of magnitude), and how errors are amplified by the conversion
# when sampling. That is why DDPM trains $\epsilon$ with the simple loss, and why $v$ (well
# scaled at every $t$) is popular.

# %% [markdown]
# Pick a trained model to inspect its samples and its per-$t$ error (the static figures
# above show all eight):

# %%
def show_run(target: str = "eps", weighting: str = "simple") -> None:
    r = results[(target, weighting)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    scatter2d(x_test, ax=axes[0], lim=3, s=2, color="0.7", label="data")
    scatter2d(r["samples"], ax=axes[0], lim=3, s=2, color=COLORS[target],
                             label="samples", title=f"{target}, {weighting}")
    axes[1].plot(np.arange(1, T + 1), r["vlb_t"][1:].numpy(), color=COLORS[target],
                 label=f"NLL bound {r['nll']:.2f} nats")
    axes[1].set(yscale="log", xlabel="t", ylabel="L_{t-1} (nats)", title="ELBO terms per t")
    axes[1].legend()
    plt.tight_layout()
    plt.show()


widgets.interact(show_run, target=["eps", "x0", "mu", "v"], weighting=["simple", "elbo"]);
torch.set_num_threads(n_threads)  # back to the default set before section 4

# %% [markdown]
# ## Summary
#
# * Given $x_t$ and $t$, the lecture's two equations tie $\tilde x_{t-1}$, $x_0$ and
#   $\epsilon$ together: predicting one determines the others exactly
#   (`dmlib.targets.convert`; round trips are identities).
# * $\|\mu - \mu_\theta\|^2 = c_{x_0}(t)\|x_0 - x_{0,\theta}\|^2 = c_\epsilon(t)\|\epsilon - \epsilon_\theta\|^2$
#   with $c_{x_0} = \bar\alpha_{t-1}\beta_t^2/(1-\bar\alpha_t)^2$ and
#   $c_\epsilon = \beta_t^2/(\alpha_t(1-\bar\alpha_t))$; the ELBO divides by $2\sigma_t^2$.
# * "Anything else?": any linear combination $y = c_{x_0}x_0 + c_\epsilon\epsilon$ that is not a
#   multiple of $x_t$, with weight $w_{x_0}/k^2$; $v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0$
#   is a rotation of $(x_0, \epsilon)$.
# * In practice the choice matters: the implied weights span many orders of magnitude over
#   $t$, and the targets differ in how hard they are at each $t$.
#
# ### You can now
#
# * [ ] convert an $\epsilon$-prediction into $x_0$ and into the posterior mean, and back,
#   at any $t$, and say which conversions amplify errors at large $t$;
# * [ ] derive $c_{x_0}(t)$ and $c_\epsilon(t)$ from the two equations of the slide, and
#   read their ratio as the SNR;
# * [ ] decide whether a linear combination of $x_0$ and $\epsilon$ is a usable target
#   (it must not be a multiple of $x_t$), and find its ELBO weight;
# * [ ] find the best possible prediction for standard normal data by conditioning a
#   joint Gaussian;
# * [ ] explain, with the measured losses and bounds of section 4, why $\epsilon$ with the
#   simple loss is DDPM's default.
#
# Chapter 6 trains DDPM's choice ($\epsilon$, simple loss) on several 2-D data sets and
# measures the samples' quality.
