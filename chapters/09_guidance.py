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
# # Chapter 9: conditional generation and guidance
#
# Every model so far draws *some* sample. This chapter asks for a *particular* one: "a 7",
# "a point of class 2". The network gets the label $y$ as an extra input and learns the
# conditional noise $\epsilon(x_t,y)$, i.e. the score of $p(x_t\mid y)$. Then come the two tricks
# that made conditional diffusion models work in practice, **classifier guidance** and
# **classifier-free guidance (CFG)**: both exaggerate the label's pull by a scale $w$, and both
# trade diversity for fidelity. We measure that trade, and we find out exactly what guided
# sampling draws from (it is *not* the distribution people usually write down).
#
# **You will:** derive Bayes' rule for scores and check it in closed form on a labelled
# Gaussian mixture; train a noise-aware classifier and steer an unconditional model with it;
# train one network with a dropped label (the null label) and combine its two predictions;
# compare guided samples with the "sharpened" target $p(x\mid y)^{1+w}p(x)^{-w}$ and see, with a
# number, where they differ; and sweep $w$ on MNIST with a class-conditional U-Net, measuring
# accuracy, FD and within-class diversity.
#
# Prerequisites: chapter 5 (eps is a scaled score), chapter 6 (the 2-D mixture, its optimal
# denoiser, the sliced-W2 ratio), chapter 7 (the U-Net, the quality scores), chapter 8 (DDIM and
# DPM-Solver++).
#
# **Notation.** $a_t=\sqrt{\bar\alpha_t}$, $s_t=\sqrt{1-\bar\alpha_t}$; $q_t$ is the noised marginal;
# $y\in\{0,\dots,K-1\}$ a class label and $\varnothing=K$ the **null label** ("no label");
# $w\ge0$ the guidance scale, with $w=0$ meaning *no* guidance (the plain conditional model).

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
from dmlib.class_quality import real_class_diversity, score_conditional
from dmlib.data.mnist import load_mnist
from dmlib.guidance import (ClassifierGuidedModel, GuidedModel, conditional_diffusion_loss,
                            guided, noisy_classifier_loss)
from dmlib.labelled_mixture import (ExactNoisyClassifier, OptimalConditionalDenoiser,
                                    labelled_gmm2d, noised_grid_score, overlapping_mixture,
                                    sample_grid, sharpened_grid)
from dmlib.metrics import sample_distance_report, sliced_wasserstein
from dmlib.models import MLPConfig, MLPDenoiser, NoisyClassifier, NoisyClassifierConfig
from dmlib.plotting import image_grid, scatter2d
from dmlib.pretrained import load_pretrained, load_pretrained_diffusion
from dmlib.quality import classify, gaussian_stats
from dmlib.sampling import sample, sample_images
from dmlib.schedules import Schedule
from dmlib.training import TrainConfig, train

gen = dmlib.seed_everything(0)
torch.set_num_threads(1)  # small models; robust on a busy CPU (see chapter 6)
plt.rcParams["figure.dpi"] = 70  # keeps the notebook small
print("quick mode:", dmlib.QUICK)

# %% [markdown]
# ## 0. The result first
#
# A class-conditional U-Net (chapter 7's network plus a label embedding, shipped with the
# course) asked for the digits 0 to 9, from the same starting noise, without guidance ($w=0$)
# and with classifier-free guidance $w=3$ (DPM-Solver++(2M), chapter 8). The shipped classifier
# reads each sample; the printed line says how many it recognised as the requested digit.

# %%
cunet, cspec = load_pretrained_diffusion("mnist_cond_unet")
judge = load_pretrained("mnist_classifier")
print(cspec)
NFE_M = dmlib.quick(4, 20)
digits = torch.arange(10)
xT_first = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
first = {}
for w in (0.0, 3.0):
    first[w] = sample(cunet, cspec, xT_first.shape, "dpmpp_2m", steps=NFE_M, x_T=xT_first,
                      clip_x0=1.0, y=digits, guidance=w).clamp(-1, 1)
    with torch.no_grad():
        pred = judge(first[w]).argmax(1)
    print(f"w = {w}: {int((pred == digits).sum())} of 10 classified as the requested digit")
image_grid(torch.cat([first[0.0], first[3.0]]), nrow=10,
           title="requested 0..9; top: w = 0 (conditional), bottom: w = 3 (guided)")
plt.show()

# %% [markdown]
# The rest of the chapter builds the pieces on data where every quantity is known exactly,
# then comes back to MNIST to measure what $w$ buys and costs.
#
# ## 1. Bayes' rule for scores
#
# Bayes' rule, $p(x_t\mid y)=p(y\mid x_t)\,p(x_t)/p(y)$, in logarithms and differentiated in $x_t$
# (the prior $p(y)$ does not depend on $x_t$):
#
# $$\nabla_{x_t}\log p(x_t\mid y)=\nabla_{x_t}\log p(x_t)+\nabla_{x_t}\log p(y\mid x_t).$$
#
# A conditional score is the unconditional score plus the gradient of a **noise-aware
# classifier** $p(y\mid x_t)$: a classifier of *noisy* inputs, one for every $t$. Multiplying by
# $-s_t$ turns scores into noise predictions (chapter 5: $\epsilon^*=-s_t\nabla\log q_t$), so
#
# $$\epsilon(x_t,y)=\epsilon(x_t)-s_t\,\nabla_{x_t}\log p(y\mid x_t).$$
#
# **The labelled mixture.** Give each component of a Gaussian mixture a class. Here the
# 3 x 3 mixture of chapter 6 with the class of a mode being its *column* (`labelled_gmm2d`).
# Everything is closed form, at every $t$, because $q_t$ is again a labelled mixture (means
# $a_t\mu_k$, variances $a_t^2v_k+s_t^2$):
#
# * $p(x_t,y)=\sum_{k:\,c(k)=y}w_k\,\mathcal N(x_t;a_t\mu_k,\ a_t^2v_k+s_t^2)$, $\;p(y\mid x_t)=p(x_t,y)/p(x_t)$;
# * $\nabla\log p(x_t\mid y)=\sum_k r^y_k(x_t)\,\dfrac{a_t\mu_k-x_t}{a_t^2v_k+s_t^2}$, with $r^y$ the responsibilities
#   *within* class $y$ (zero outside it).
#
# Check Bayes' rule for scores with autograd on $\log p(y\mid x_t)$, at several $t$:

# %%
sched = Schedule.linear(1000)
lm = labelled_gmm2d()
x_chk = 1.5 * torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
worst = 0.0
for t in (1, 100, 300, 600, 1000):
    q = lm.noised(float(sched.alpha_bar[t]))
    for c in range(3):
        xr = x_chk.clone().requires_grad_(True)
        g_post = torch.autograd.grad(q.class_log_posterior(xr)[:, c].sum(), xr)[0]
        lhs = q.score(x_chk, torch.full((500,), c))
        rhs = q.score(x_chk) + g_post
        worst = max(worst, float((lhs - rhs).abs().max()))
print(f"max |grad log p(x_t|y) - grad log p(x_t) - grad log p(y|x_t)| over 5 t x 3 classes: {worst:.1e}")
assert worst < 1e-9

# %%
x_show, y_show = lm.sample(3000, generator=2)
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
colors = np.array(["tab:blue", "tab:orange", "tab:green"])
axes[0].scatter(x_show[:, 0], x_show[:, 1], s=2, c=colors[y_show])
axes[0].set(title="data, coloured by class", xlabel="x[0]", ylabel="x[1]", xlim=(-3, 3), ylim=(-3, 3))
g1 = torch.linspace(-3, 3, 121, dtype=torch.float64)
grid2 = torch.cartesian_prod(g1, g1)
for ax, t in zip(axes[1:], (50, 250, 500)):
    post = lm.noised(float(sched.alpha_bar[t])).class_log_posterior(grid2).exp()[:, 0]
    im = ax.imshow(post.reshape(121, 121).T, origin="lower", extent=(-3, 3, -3, 3), vmin=0, vmax=1,
                   cmap="Blues")
    ax.set(title=f"p(y = 0 | x_t), t = {t}", xlabel="x_t[0]", ylabel="x_t[1]")
fig.colorbar(im, ax=axes[1:], shrink=0.8)
plt.show()

# %% [markdown]
# At small $t$ the class is certain almost everywhere; as noise grows, $p(y\mid x_t)$ blurs
# towards the prior $1/3$: a noisy point says little about its class.
#
# **A noise-aware classifier.** In practice $p(y\mid x_t)$ is not known: train a classifier
# $p_\phi(y\mid x_t,t)$ on noisy inputs by cross-entropy, with $t\sim U\{1..T\}$ and
# $x_t\sim q(x_t\mid x_0)$ (`noisy_classifier_loss`). Its minimiser is the exact $p(y\mid x_t)$.
# The network is chapter 6's residual MLP with class logits as output (`NoisyClassifier`).
# Compare it with the exact posterior by the mean total-variation distance
# $\tfrac12\sum_y|p_\phi(y\mid x_t)-p(y\mid x_t)|$ on fresh noisy points:

# %%
x_train, y_train = lm.sample(50_000, generator=3)
STEPS = dmlib.quick(100, 1500)
RECIPE = dict(batch_size=dmlib.quick(256, 512), lr=2e-3, ema_decay=dmlib.quick(0.8, 0.995),
              warmup_steps=dmlib.quick(10, 100))
torch.manual_seed(0)
res_clf = train(NoisyClassifier(NoisyClassifierConfig(num_classes=3, hidden=128, depth=3)),
                lambda m, b, g: noisy_classifier_loss(m, sched, b[0], b[1], g),
                (x_train, y_train), TrainConfig(steps=STEPS, **RECIPE), progress=False)
clf = res_clf.ema_model.eval()
exact_clf = ExactNoisyClassifier(lm, sched)
print(f"classifier: {STEPS} steps in {res_clf.seconds:.0f} s")
tv = {}
for t in (10, 100, 300, 600):
    x0, _ = lm.sample(2000, generator=4)
    xt = math.sqrt(sched.alpha_bar[t]) * x0 + math.sqrt(1 - sched.alpha_bar[t]) * torch.randn(
        x0.shape, generator=torch.Generator().manual_seed(t))
    tt = torch.full((2000,), t)
    with torch.no_grad():
        p_hat = torch.softmax(clf(xt, tt), -1).double()
        p_true = exact_clf(xt.double(), tt).exp()
    tv[t] = float(0.5 * (p_hat - p_true).abs().sum(1).mean())
print("mean TV(trained, exact p(y | x_t)):", ", ".join(f"t={t}: {v:.3f}" for t, v in tv.items()))
TV_MAX = dmlib.quick(0.3, 0.05)
assert max(tv.values()) < TV_MAX, f"the classifier is off by more than {TV_MAX}"

# %% [markdown]
# **Thinking question.** Why not take an ordinary classifier trained on *clean* data and
# evaluate it on $x_t$?
#
# <details><summary>Answer</summary>
#
# Guidance needs $\nabla\log p(y\mid x_t)$ at *every* noise level, and $x_t$ at large $t$ looks
# nothing like the clean data the classifier was trained on: its output there is arbitrary,
# and its gradient points anywhere. The quantity we need is the posterior of the *noisy*
# variable, which blurs towards the prior as $t$ grows (the figure above). A clean-data
# classifier is at best $p(y\mid x_0)$ evaluated at the wrong point. (One could use
# $p(y\mid\hat x_0(x_t))$ with the denoiser's $\hat x_0$, a popular approximation; it is exact only when
# $x_0$ given $x_t$ is certain.)
# </details>
#
# ## 2. Classifier guidance
#
# Dhariwal & Nichol (2021) sample with an *amplified* classifier term. In eps form (their
# Algorithm 2), with their scale written $1+w$ so that $w=0$ is the plain conditional model:
#
# $$\hat\epsilon(x_t,y)=\epsilon_\theta(x_t)-(1+w)\,s_t\,\nabla_{x_t}\log p_\phi(y\mid x_t).$$
#
# The score it follows is $\nabla\log p(x_t)+(1+w)\nabla\log p(y\mid x_t)$: the classifier's vote
# counts $1+w$ times.
#
# **Exercise 9.1 (classifier guidance; ★ core).** Return $\hat\epsilon$ from `eps`
# $=\epsilon_\theta(x_t)$, `grad_log_py` $=\nabla_{x_t}\log p(y\mid x_t)$, the float `alpha_bar` $=\bar\alpha_t$ and `w`.

# %%
def cg_eps(eps, grad_log_py, alpha_bar, w):
    ### BEGIN SOLUTION
    return eps - (1 + w) * math.sqrt(1 - alpha_bar) * grad_log_py
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_classifier_guidance(cg_eps)

# %% [markdown]
# `dmlib.guidance.ClassifierGuidedModel(model, classifier, schedule, y, w)` (its formula is
# `classifier_guided_eps`, your function) wraps an
# unconditional eps model and a classifier into a model that any sampler can call; the
# gradient comes from autograd (`class_log_prob_grad`). First the exact claim: with the
# **exact** classifier and $w=0$ it reproduces the exact conditional eps, at every $t$:

# %%
exact_net = OptimalConditionalDenoiser(lm, sched)       # eps*(x_t, t, y); y = 3: unconditional
uncond = lambda x, t: exact_net(x, t)                   # noqa: E731
y_all = torch.randint(0, 3, (400,), generator=torch.Generator().manual_seed(5))
x_c = 1.5 * torch.randn(400, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
t_c = torch.randint(1, 1001, (400,), generator=torch.Generator().manual_seed(7))
err_cg0 = float((ClassifierGuidedModel(uncond, exact_clf, sched, y_all, 0.0)(x_c, t_c)
                 - exact_net(x_c, t_c, y_all)).abs().max())
print(f"classifier guidance (exact classifier, w = 0) vs exact conditional eps: max |diff| = {err_cg0:.1e}")
assert err_cg0 < 1e-9

# %% [markdown]
# Now sample class 0 (the left column) with DDPM, guided by the exact and by the trained
# classifier, for several $w$. Two numbers per run: the sliced-W2 ratio (chapter 6: distance
# over its floor, about 1 for equal distributions) to the true $p(x\mid y=0)$, and the mean
# horizontal position $\bar x[0]$ of the samples (the class-0 modes sit at $x[0]=-1.21$; the
# neighbouring class at $0$).

# %%
N2 = dmlib.quick(300, 2000)
S2 = dmlib.quick(50, None)  # DDPM steps: respaced in quick mode, all 1000 in full mode
W_CG = [0.0, 1.0, 4.0]
xT2 = torch.randn(N2, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
y0 = torch.zeros(N2, dtype=torch.long)
p_y0 = lm.conditional(0)
draw_y0 = lambda n, seed: p_y0.sample(n, generator=seed)  # noqa: E731
cg_samples = {}
for kind, c in (("exact", exact_clf), ("trained", clf)):
    for w in W_CG:
        m = ClassifierGuidedModel(uncond, c if kind == "exact" else lambda x, t: c(x.float(), t).double(),
                                  sched, y0, w)
        cg_samples[kind, w] = sample(m, sched, xT2.shape, "ddpm", steps=S2, x_T=xT2,
                                     generator=torch.Generator().manual_seed(9))
print(f"{'classifier':>10s} {'w':>4s} {'SW ratio to p(x|y=0)':>21s} {'mean x[0]':>10s}")
cg_ratio = {}
for (kind, w), xs in cg_samples.items():
    cg_ratio[kind, w] = sample_distance_report(xs.float(), draw_y0, "sw")["ratio"]
    print(f"{kind:>10s} {w:4.1f} {cg_ratio[kind, w]:21.2f} {float(xs[:, 0].mean()):10.3f}")
assert cg_ratio["exact", 0.0] < 1.5, "exact classifier guidance at w = 0 must sample p(x | y)"

# %%
fig, axes = plt.subplots(2, 3, figsize=(10, 6.5))
for i, kind in enumerate(("exact", "trained")):
    for j, w in enumerate(W_CG):
        ax = axes[i, j]
        scatter2d(x_show, ax=ax, color="0.85", label="data")
        scatter2d(cg_samples[kind, w][:1000], ax=ax, label="guided, y = 0",
                  title=f"{kind} classifier, w = {w}")
        ax.set(xlabel="x[0]", ylabel="x[1]")
        ax.legend(loc="upper right", fontsize=7, markerscale=4)
plt.tight_layout()
plt.show()

# %% [markdown]
# With $w=0$ both runs land on the three left modes (the exact run with an SW ratio near 1:
# it *is* $p(x\mid y)$). With $w>0$ the samples stay in class 0 but drift *away from class 1*,
# to the left ($\bar x[0]$ decreases with $w$), where the classifier is most certain. The drift
# is small on this data set because the columns are far apart: $\nabla\log p(y\mid x_t)$ is large
# only between the columns, at middle noise levels. Section 4 takes classes that overlap,
# where the effect is large, and asks what distribution guidance samples.
#
# ## 3. Classifier-free guidance
#
# Ho & Salimans (2022) drop the classifier. Train **one** network $\epsilon_\theta(x_t,t,y)$ on
# labelled data, replacing the label by the null label $\varnothing$ a fraction $p_{\rm uncond}$
# (0.1-0.2) of the time: the same weights learn the conditional $\epsilon(x_t,y)$ and the
# unconditional $\epsilon(x_t,\varnothing)$. By Bayes, $-\frac{1}{s_t}[\epsilon(x_t,y)-\epsilon(x_t,\varnothing)]$ *is*
# an (implicit) classifier gradient $\nabla\log p(y\mid x_t)$, so classifier guidance becomes
#
# $$\epsilon_w(x_t,y)=\epsilon(x_t,\varnothing)+(1+w)\big[\epsilon(x_t,y)-\epsilon(x_t,\varnothing)\big]
# =(1+w)\,\epsilon(x_t,y)-w\,\epsilon(x_t,\varnothing)$$
#
# (Ho & Salimans, eq. 6). Many libraries (diffusers, for one) write the same thing with
# `guidance_scale` $=1+w$, so their scale 1 is our $w=0$ and their 7.5 is our 6.5.
#
# **Exercise 9.2 (the CFG combination; ★ core).**

# %%
def cfg_eps(eps_cond, eps_uncond, w):
    ### BEGIN SOLUTION
    return (1 + w) * eps_cond - w * eps_uncond
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_cfg_combination(cfg_eps)

# %% [markdown]
# **Exercise 9.3 (label dropout in the loss; ★★ core).** The CFG training loss for given draws:
# `t` (B,), noise `eps` like `x0`, and `u` (B,) uniform in $[0,1)$; the label of example $i$ is
# replaced by `null_label` when $u_i<p_{\rm uncond}$. `alpha_bar` is the (T+1,) table indexed by $t$,
# and `net(xt, t, y)` the conditional network. Return the mean squared error of its eps.

# %%
def cfg_loss(net, x0, y, eps, t, alpha_bar, u, p_uncond, null_label):
    ### BEGIN SOLUTION
    y_in = torch.where(u < p_uncond, torch.full_like(y, null_label), y)
    ab = alpha_bar[t].reshape(-1, *([1] * (x0.dim() - 1)))
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    return ((net(xt, t, y_in) - eps) ** 2).mean()
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_cfg_loss(cfg_loss)

# %% [markdown]
# Train a conditional `MLPDenoiser` (`MLPConfig(num_classes=3)`: a label embedding, zero at
# the start, added to the time embedding; label 3 is the null label) with
# `conditional_diffusion_loss` (the same loss, drawing t, eps and the dropout itself),
# $p_{\rm uncond}=0.2$:

# %%
STEPS_CFG = dmlib.quick(100, 3000)
torch.manual_seed(0)
res_cfg = train(MLPDenoiser(MLPConfig(hidden=128, depth=3, num_classes=3)),
                lambda m, b, g: conditional_diffusion_loss(m, sched, b[0], b[1], 0.2, 3, g),
                (x_train, y_train), TrainConfig(steps=STEPS_CFG, **RECIPE), progress=False)
cnet = res_cfg.ema_model.eval()
print(f"conditional MLP: {STEPS_CFG} steps in {res_cfg.seconds:.0f} s")
x_c32, t_c32 = x_c.float(), t_c
with torch.no_grad():
    d0 = float((guided(cnet, y_all, 0.0, 3)(x_c32, t_c32) - cnet(x_c32, t_c32, y_all)).abs().max())
    d2 = float(((3.0 * cnet(x_c32, t_c32, y_all) - 2.0 * cnet(x_c32, t_c32))
                - GuidedModel(cnet, y_all, 2.0, 3)(x_c32, t_c32)).abs().max())
print(f"CFG at w = 0 vs the conditional network: max |diff| = {d0:.1e}")
print(f"3 eps(x, y) - 2 eps(x, null) vs dmlib.guidance.GuidedModel at w = 2: max |diff| = {d2:.1e}")
assert d0 == 0.0 and d2 < 1e-5

# %% [markdown]
# With the **exact** conditional and unconditional eps, CFG and classifier guidance with the
# exact classifier are the same field at every $w$ (Bayes' rule, once more), so the exact
# guided samples below are *the* guided distribution of the mixture. The trained network's
# samples are compared with them, with $\hat x_0$ clipped to $[-3,3]$ in every step (chapter 8,
# section 5: without it a few trajectories of a trained 2-D network run away):

# %%
d_cfg_cg = max(float((GuidedModel(exact_net, y_all, w, 3)(x_c, t_c)
                      - ClassifierGuidedModel(uncond, exact_clf, sched, y_all, w)(x_c, t_c)).abs().max())
               for w in (0.5, 2.0, 5.0))
print(f"exact CFG vs exact classifier guidance, w in (0.5, 2, 5): max |diff| = {d_cfg_cg:.1e}")
assert d_cfg_cg < 1e-9

# %%
W_CFG = [0.0, 1.0, 4.0]
CLIP = 3.0  # x0_hat clipped to [-3, 3] in every step, as in chapter 8 (a trained net runs away without)
cfg_samples, cfg_ratio = {}, {}
for w in W_CFG:
    cfg_samples["trained", w] = sample(GuidedModel(cnet, y0, w, 3), sched, xT2.shape, "ddpm", steps=S2,
                                       x_T=xT2.float(), clip_x0=CLIP, generator=torch.Generator().manual_seed(9))
    cfg_samples["exact", w] = sample(GuidedModel(exact_net, y0, w, 3), sched, xT2.shape, "ddpm",
                                     steps=S2, x_T=xT2, clip_x0=CLIP, generator=torch.Generator().manual_seed(9))
    ref_draw = lambda n, seed, w=w: sample(GuidedModel(exact_net, torch.zeros(n, dtype=torch.long), w, 3),  # noqa: E731
                                           sched, (n, 2), "ddpm", steps=S2, clip_x0=CLIP,
                                           generator=torch.Generator().manual_seed(seed)).float()
    cfg_ratio[w] = sample_distance_report(cfg_samples["trained", w].float(), ref_draw, "sw")["ratio"]
print("trained CFG vs exact guided samples (SW ratio, 1 = as close as two exact draws):")
print(", ".join(f"w={w}: {r:.2f}" for w, r in cfg_ratio.items()))
assert cfg_ratio[0.0] < dmlib.quick(100.0, 3.0)  # quick mode: 100 training steps, no claim

# %% [markdown]
# ## 4. What does guidance sample from, exactly?
#
# A common reading: since guidance follows the score $\nabla\log p(x_t)+(1+w)\nabla\log p(y\mid x_t)$, it
# samples the **sharpened** distribution
#
# $$p_w(x\mid y)\ \propto\ p(x)\,p(y\mid x)^{1+w}\ \propto\ p(x\mid y)^{1+w}\,p(x)^{-w}.$$
#
# It does not, except at $w=0$. The guided field at time $t$ is built from the *noised*
# marginals, $(1+w)\nabla\log q_t(x\mid y)-w\nabla\log q_t(x)$, and that is **not** the score of the
# noised sharpened distribution $q_t^{(w)}=p_w*\mathcal N(0,s_t^2)$ (after scaling by $a_t$):
# noising a product is not the product of the noised factors. So the sampler follows a
# family of fields that is not the score of any single diffusion process.
#
# To see it with numbers, take a mixture where the classes *overlap* (on the 3 x 3 grid the
# classes are far apart and $p_w=p(x\mid y)$ for every $w$, nothing to compare): two classes,
# three components. $p_w$ has no closed-form normaliser; `sharpened_grid` normalises it
# numerically on a $300\times300$ grid (`sample_grid` draws from it); the data are
# `overlapping_mixture()`.

# %%
lm2 = overlapping_mixture()
print("components (class, mean, variances):", [(int(c), m.tolist(), v.tolist()) for c, m, v in
                                               zip(lm2.labels, lm2.mixture.means, lm2.mixture.var)])
exact2 = OptimalConditionalDenoiser(lm2, sched)
W_SHARP = dmlib.quick([0.0, 1.0, 3.0], [0.0, 0.5, 1.0, 2.0, 3.0, 5.0])
N4 = dmlib.quick(600, 4000)
sharp = {w: sharpened_grid(lm2, 0, w, lim=4.0, n=300) for w in W_SHARP}
xT4 = torch.randn(N4, 2, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
guided4, sharp_ratio, guided_vs_sharp = {}, {}, {}
for w in tqdm(W_SHARP, desc="guided vs sharpened"):
    guided4[w] = sample(GuidedModel(exact2, torch.zeros(N4, dtype=torch.long), w, 2), sched,
                        xT4.shape, "ddpm", steps=S2, x_T=xT4, generator=torch.Generator().manual_seed(11))
    draw_sharp = lambda n, seed, w=w: sample_grid(*sharp[w], n, torch.Generator().manual_seed(seed)).float()  # noqa: E731
    rep = sample_distance_report(guided4[w].float(), draw_sharp, "sw")
    guided_vs_sharp[w], sharp_ratio[w] = rep["distance"], rep["ratio"]
print(f"{'w':>4s} {'SW(guided, sharpened)':>22s} {'floor':>7s} {'ratio':>6s}")
for w in W_SHARP:
    rep_floor = guided_vs_sharp[w] / sharp_ratio[w]
    print(f"{w:4.1f} {guided_vs_sharp[w]:22.4f} {rep_floor:7.4f} {sharp_ratio[w]:6.2f}")
assert sharp_ratio[0.0] < 2.5, "at w = 0 guided sampling must sample p(x | y)"
assert sharp_ratio[W_SHARP[-1]] > 2 * sharp_ratio[0.0], "guided samples should differ from p_w"

# %% [markdown]
# The benchmark (`bench/bench_guidance.py --part toy`: 5,000 samples per $w$, DDPM with all
# 1,000 steps and DDIM with 200; `--part toy-null`: the ratio at $w=0$ for several seeds, its
# noise band):

# %%
def load_bench():
    """bench/results/guidance.json as a dict ({} when it does not exist yet)."""
    f = Path(dmlib.__file__).resolve().parents[1] / "bench" / "results" / "guidance.json"
    return json.loads(f.read_text()) if f.is_file() else {}


bench = load_bench()
if "toy" in bench:
    print(f"{'w':>4s} {'ratio DDPM':>10s} {'ratio DDIM':>10s} {'field diff, t=200':>18s}")
    for r in bench["toy"]["rows"]:
        print(f"{r['w']:4.1f} {r['ratio_ddpm']:10.2f} {r['ratio_ddim']:10.2f} {100 * r['field_rel_diff_t200']:17.1f}%")
if "toy_null" in bench:
    print("w = 0, other seeds (noise band of the ratio):",
          ", ".join(f"{r['ratio_ddpm']:.2f}" for r in bench["toy_null"]["rows"]))
if not bench:
    print("bench/results/guidance.json not found (python bench/bench_guidance.py --part toy)")

# %%
def plot_guided_vs_target(ax, w, title):
    """The sharpened target p_w(x | y=0) on its grid (grey) and 800 guided samples (red)."""
    ax.imshow(sharp[w][1].reshape(300, 300).T, origin="lower", extent=(-4, 4, -4, 4), cmap="Greys")
    ax.scatter(guided4[w][:800, 0], guided4[w][:800, 1], s=2, c="tab:red", label="guided samples")
    ax.set(title=title, xlabel="x[0]", ylabel="x[1]", xlim=(-3, 3), ylim=(-3, 3))
    ax.legend(loc="upper right", fontsize=7, markerscale=4)


fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
for ax, w in zip(axes, (0.0, 1.0, 3.0)):
    plot_guided_vs_target(ax, w, f"w = {w}: p_w(x | y=0) (grey) vs guided")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Where they differ, as a field.** The noised sharpened density can be computed from the
# grid too: $q^{(w)}_t(x)=\sum_i P_i\,\mathcal N(x;\,a_t c_i,\ s_t^2I)$ over the grid cells $c_i$ with masses
# $P_i$ (`noised_grid_score`). Its score (by autograd), against the guided score
# $(1+w)\nabla\log q_t(x\mid y)-w\nabla\log q_t(x)$, at points of $q_t$, for a middle noise level:

# %%
T_FIELD = 200
ab_f = float(sched.alpha_bar[T_FIELD])
x_f, _ = lm2.noised(ab_f).sample(400, generator=12, dtype=torch.float64)
field_err = {}
for w in (0.0, 1.0, 3.0):
    q = lm2.noised(ab_f)
    g_guided = (1 + w) * q.score(x_f, torch.zeros(400, dtype=torch.long)) - w * q.score(x_f)
    g_sharp = noised_grid_score(*sharp[w][:2], ab_f, x_f)
    field_err[w] = float((g_guided - g_sharp).norm(dim=1).mean() / g_sharp.norm(dim=1).mean())
print(f"t = {T_FIELD}: mean |guided score - score of noised p_w| / mean |score of noised p_w|: "
      + ", ".join(f"w={w}: {e:.3f}" for w, e in field_err.items()))
assert field_err[0.0] < 0.01 and field_err[3.0] > 5 * max(field_err[0.0], 0.01)

# %% [markdown]
# At $w=0$ the two fields agree to the grid's accuracy; at $w>0$ they differ by a sizeable
# fraction of the score itself. (A caution on the table above: on this two-mode class the SW
# ratio is noisy even when nothing differs, because the share of samples in each mode
# fluctuates; the benchmark measured ratios from 1.1 to 1.7 at $w=0$ over five seeds with
# 5,000 samples. The growth with $w$, to about 5 at $w\ge3$, is far beyond that band.) Guided samples are *concentrated*, like $p_w$, but not
# distributed like it: the table above measures the gap as a distance. What guidance does
# reliably is move samples to where the (implicit) classifier is confident; the sampled law is
# defined only by the sampler and the path it takes.
#
# **Thinking question.** At large $t$, $p(y\mid x_t)$ is nearly flat (the prior), so the classifier
# term is small, and at small $t$ it is nearly 0 or 1 in most places (gradient near 0 again).
# Where, in $t$, does guidance do its work, and what does that suggest about applying it
# only on part of the trajectory?
#
# <details><summary>Answer</summary>
#
# The gradient $\nabla\log p(y\mid x_t)$ is large where the posterior *changes*: in the middle
# noise levels, where classes are starting to separate (the figures of section 1, $t\approx$
# 100-500 for this mixture). That is where the sample's class is decided; late steps only
# refine details inside a class. Practitioners indeed apply guidance on a limited interval of
# noise levels (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval"), which
# keeps most of the fidelity gain and loses less diversity.
# </details>
#
# ### Optional depth ▸ the sampler matters once guided
#
# For $w=0$, DDPM (stochastic) and DDIM (the probability-flow ODE) sample the same
# distribution. For $w>0$ they need not: the guided fields are not the scores of one
# diffusion, so the SDE and the ODE built from them no longer share their marginals (the
# benchmark above: at $w=3$ DDIM's samples are 8.9 floors away from $p_w$, DDPM's 5.0; at $w=0$,
# 2.0 and 1.7). Measured here
# on the overlapping mixture: the distance between DDIM's and DDPM's samples, over the distance
# between two DDPM runs with different noise (about 1 when the two samplers agree, up to
# their discretisation errors):

# %%
for w in (0.0, 3.0):
    m = GuidedModel(exact2, torch.zeros(N4, dtype=torch.long), w, 2)
    xd = sample(m, sched, xT4.shape, "ddim", steps=dmlib.quick(50, 200), x_T=xT4)
    xp = sample(m, sched, xT4.shape, "ddpm", steps=S2, generator=torch.Generator().manual_seed(13))
    sw = float(sliced_wasserstein(xd.float(), guided4[w].float()))
    sw_floor = float(sliced_wasserstein(xp.float(), guided4[w].float()))
    print(f"w = {w}: SW(DDIM, DDPM) = {sw:.4f}; SW(DDPM, DDPM with other noise) = {sw_floor:.4f}; "
          f"ratio {sw / sw_floor:.2f}")

# %% [markdown]
# ## 5. MNIST: what guidance buys and costs
#
# The conditional U-Net of section 0 is chapter 7's network with a label embedding (11
# entries: digits 0-9 and the null label 10, zero at the start) added to the time embedding,
# trained with $p_{\rm uncond}=0.1$ (`python -m dmlib.train mnist-cond`; how it was made is in
# `data/checkpoints/README.md`). The sweep: for each $w$, 100 samples (10 per digit in full
# mode), DPM-Solver++(2M) with 20 steps (40 network calls per sample for $w>0$: CFG evaluates
# the network twice), the same starting noise for every $w$. Scores from the shipped
# classifier (`dmlib.class_quality`):
#
# * **accuracy**: share of samples classified as the requested digit;
# * **FD** to the test set (chapter 7; biased upwards at n = 100, compare rows with each other);
# * **within-class diversity**: mean pairwise distance of the classifier's features among the
#   samples of one digit, averaged over digits, against the same for real test digits.

# %%
W_MNIST = dmlib.quick([0.0, 2.0], [0.0, 0.5, 1.0, 2.0, 3.0, 5.0])
N_PER_W = dmlib.quick(20, 100)
N_REF = dmlib.quick(300, 10000)  # test digits for FD's reference statistics
x_test, _ = load_mnist("test", limit=N_REF)
ref_stats = gaussian_stats(classify(judge, x_test)[0])
y_req = torch.arange(N_PER_W) % 10
mnist_samples, mnist_rows = {}, {}
for w in tqdm(W_MNIST, desc="MNIST sweep over w"):
    mnist_samples[w] = sample_images(cunet, cspec, N_PER_W, steps=NFE_M, sampler="dpmpp_2m",
                                     generator=torch.Generator().manual_seed(0), y=y_req, guidance=w)
    mnist_rows[w] = score_conditional(mnist_samples[w], y_req, judge, ref_stats)
real_div = real_class_diversity(judge, per_class=dmlib.quick(20, 100))
print(f"{'w':>4s} {'accuracy':>9s} {'FD':>7s} {'confident':>9s} {'diversity':>9s}   (n = {N_PER_W} per w)")
for w, r in mnist_rows.items():
    print(f"{w:4.1f} {100 * r['accuracy']:8.1f}% {r['fd']:7.1f} {100 * r['confident']:8.1f}% {r['diversity']:9.2f}")
print(f"real test digits: within-class diversity {real_div:.2f}")
best_w = max(mnist_rows, key=lambda w: mnist_rows[w]["accuracy"])
assert mnist_rows[best_w]["accuracy"] >= mnist_rows[0.0]["accuracy"]

# %%
conf = np.array(mnist_rows[0.0]["confusion"])
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
axes[0].imshow(conf, cmap="Blues")
for i in range(10):
    for j in range(10):
        if conf[i, j]:
            axes[0].text(j, i, conf[i, j], ha="center", va="center", fontsize=7)
axes[0].set(title="w = 0: requested (rows) vs classified (cols)", xlabel="classified as",
            ylabel="requested digit", xticks=range(10), yticks=range(10))
ws = list(mnist_rows)
axes[1].plot(ws, [100 * mnist_rows[w]["accuracy"] for w in ws], "o-", label="accuracy (%)")
axes[1].set(xlabel="guidance scale w", ylabel="accuracy (%)", title="Fidelity vs w")
axes[1].legend(fontsize=8)
axes[2].plot([mnist_rows[w]["diversity"] for w in ws], [mnist_rows[w]["fd"] for w in ws], "o-",
             label="samples, w = " + ", ".join(f"{w:g}" for w in ws))
for w in ws:
    axes[2].annotate(f"w={w:g}", (mnist_rows[w]["diversity"], mnist_rows[w]["fd"]), fontsize=7)
axes[2].axvline(real_div, color="k", ls="--", lw=0.8, label="real digits' diversity")
axes[2].set(xlabel="within-class diversity", ylabel=f"FD (n = {N_PER_W})",
            title="The trade-off: diversity vs FD")
axes[2].legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the table from top to bottom: as $w$ grows, more samples are recognised as the
# requested digit and the classifier is more confident, while the within-class diversity
# falls: guided samples of one digit look more alike (thick, centred, "prototypical"). Compare
# the diversity with the real digits' line: above it, the samples vary *more* than real digits
# do, which for a model means malformed samples (a partly trained model at $w=0$ shows this);
# below it, guidance has collapsed the variety of a class. FD penalises both wrong classes and
# missing variety, so it typically improves at first and then worsens: the best FD and the
# best accuracy are at different $w$. The benchmark repeats this with 1,000 samples per $w$ (the
# numbers
# below, when `bench/results/guidance.json` exists: `python bench/bench_guidance.py`).

# %%
bench = load_bench()
if "mnist" not in bench:
    print("no MNIST rows in bench/results/guidance.json yet (python bench/bench_guidance.py --part mnist)")
else:
    mb = bench["mnist"]
    print(f"benchmark: n = {mb['n_per_w']} per w, {mb['sampler']} {mb['steps']} steps, "
          f"checkpoint sha256 {mb['checkpoint_sha256'][:12]}")
    print(f"{'w':>4s} {'accuracy':>9s} {'FD':>7s} {'diversity':>9s}")
    for r in mb["rows"]:
        print(f"{r['w']:4.1f} {100 * r['accuracy']:8.1f}% {r['fd']:7.2f} {r['diversity']:9.2f}")
    print(f"real digits' diversity {mb['real_diversity']:.2f}; unconditional shipped U-Net FD "
          f"{mb.get('uncond_fd', float('nan')):.2f} (same n, sampler)")

# %% [markdown]
# ## 6. Explore
#
# **MNIST:** choose a digit and $w$ to see the sweep's samples of that digit (10 in full mode).
# **2-D:** move the slider over $w$: exact guided samples of class 0 on the overlapping
# mixture (same starting noise for every $w$), over the sharpened target $p_w$ (grey).

# %%
import ipywidgets as widgets  # noqa: E402


def show_digit(digit=7, w=W_MNIST[-1]):
    imgs = mnist_samples[w][y_req == digit]
    image_grid(imgs, nrow=len(imgs), title=f"digit {digit}, w = {w}: "
               f"{int((torch.softmax(judge(imgs), 1).argmax(1) == digit).sum())}/{len(imgs)} recognised")
    plt.show()


widgets.interact(show_digit, digit=list(range(10)), w=W_MNIST);

# %%
def show_w2d(w=W_SHARP[-1]):
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    plot_guided_vs_target(ax, w, f"w = {w}: SW ratio to p_w = {sharp_ratio[w]:.2f}")
    plt.show()


widgets.interact(show_w2d, w=W_SHARP);

# %% [markdown]
# ## You can now
#
# - [ ] write Bayes' rule for scores and turn a classifier gradient into an eps correction;
# - [ ] say why guidance needs a *noise-aware* classifier, and train one;
# - [ ] implement classifier guidance and classifier-free guidance, and translate between
#   $w$ and a library's `guidance_scale` $=1+w$;
# - [ ] train one network for both $\epsilon(x_t,y)$ and $\epsilon(x_t,\varnothing)$ by label dropout;
# - [ ] explain, with a measured number, why guided samples are not samples of
#   $p(x\mid y)^{1+w}p(x)^{-w}$;
# - [ ] measure the fidelity-diversity trade-off of $w$ on images (accuracy, FD, within-class
#   diversity) and pick a $w$ for a purpose.
