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
# # Chapter 0: start here
#
# A diffusion model makes new data, images for instance, by starting from pure noise and
# removing a little of it at a time. This course teaches how and why that works, following
# the lecture *Introduction to Diffusion Models* slide by slide, with every equation
# derived and then **checked by running code**. Where a slide is wrong (it happens: a
# missing minus sign, a standard deviation where a variance belongs) the chapter says so in
# an *Erratum* box and settles it with a number.
#
# **Objectives of this chapter.** After it you will
#
# * have seen a diffusion model generate 2-D points and handwritten digits, and know which
#   chapter explains each piece of what you saw;
# * know what the course expects of you, what you will be able to do at the end, how long
#   each chapter takes, and which chapters you may skip;
# * have checked your environment and met the tools every chapter uses: `dmlib`, the quick
#   switch, exercises with automatic checks, and widgets.
#
# Run the cells from top to bottom (Shift+Enter). Every chapter runs on its own: it never
# needs state from another chapter.
#
# ## What you will build: diffusion in one minute
#
# First the end result. Below, 1,000 points start as pure Gaussian noise at $t = 1000$ and
# are denoised step by step down to $t = 0$. The denoiser here is not trained: for this
# data, a mixture of Gaussians (the grey points), the best possible denoiser has a closed
# form, so we can watch a *perfect* diffusion model at work. It takes a second or two.

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import HTML

import dmlib
from dmlib.animation import trajectory_html
from dmlib.data import default_gmm2d
from dmlib.optimal import OptimalDenoiser
from dmlib.plotting import image_grid, scatter2d
from dmlib.sampling import ddpm_sample, sample
from dmlib.schedules import Schedule

gen = dmlib.seed_everything(0)  # every chapter starts like this: reproducible results
n_threads = torch.get_num_threads()
torch.set_num_threads(1)        # small models: one thread is fastest, even on a busy machine
gmm = default_gmm2d()           # the "data": a mixture of Gaussians in 2-D
data = gmm.sample(1000, generator=1)
sched = Schedule.linear(T=1000)                 # how much noise each of the T steps adds
denoiser = OptimalDenoiser(gmm, sched, "eps")   # the best denoiser for this data, in closed form
x0, traj = ddpm_sample(denoiser, sched, (1000, 2), generator=torch.Generator().manual_seed(0),
                       return_trajectory=True, trajectory_steps=range(0, 1001, 50))

shown = [1000, 600, 400, 250, 100, 0]
fig, axes = plt.subplots(1, len(shown), figsize=(2.2 * len(shown), 2.4))
for ax, t in zip(axes, shown):
    scatter2d(data, ax=ax, color="0.55", s=1)
    scatter2d(traj[t], ax=ax, title=f"t = {t}" + (" (noise)" if t == 1000 else " (samples)" if t == 0 else ""))
    ax.set(xticks=[], yticks=[], xlabel="", ylabel="")
fig.suptitle("From noise to data: 1,000 points denoised by the optimal denoiser (grey: the data)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The same run as an animation (press play):

# %%
HTML(trajectory_html(traj, reference=data, title="denoising"))

# %% [markdown]
# Now images. The course ships a small network (a U-Net, 0.7 M parameters) trained on
# MNIST digits for an hour on a 2-core CPU. Starting from 16 images of pure noise, 20
# denoising steps turn them into digits, in about a second:

# %%
from dmlib.pretrained import load_pretrained_diffusion

model, spec = load_pretrained_diffusion("mnist_unet")  # checked against its sha256, then loaded
digits, img_traj = sample(model, spec, (16, 1, 28, 28), steps=20, clip_x0=1.0,
                          generator=torch.Generator().manual_seed(0), return_trajectory=True)
ax = image_grid(digits.clamp(-1, 1), nrow=8, value_range=(-1, 1),
                title="16 digits sampled from pure noise in 20 steps")
ts = sorted(img_traj, reverse=True)[::4]  # t = 1000, 800, ..., 0
rows = torch.cat([img_traj[t][:4] for t in ts])  # 4 digits, one column per step shown
idx = torch.arange(len(rows)).view(len(ts), 4).T.reshape(-1)  # one row per digit
ax = image_grid(rows[idx].clamp(-1, 1), nrow=len(ts), value_range=(-1, 1),
                title="four of them on their way: t = " + ", ".join(map(str, ts)))
torch.set_num_threads(n_threads)  # back to the default for the rest of the chapter

# %% [markdown]
# **Which chapter explains each piece.** The noise added step by step, and the *schedule*
# that says how much, are chapter 3 (built on the Gaussian facts of chapter 1). Why learning
# to *denoise* is the right training goal, and which loss does it, is chapter 4 (the ELBO
# becomes a squared error) and chapter 5 (predict the noise $\epsilon$, or $x_0$, or a mix).
# The closed-form optimal denoiser of the 2-D picture is met in chapter 4 and raced against
# a trained network in chapter 6, where you also write the sampling loop (`ddpm_sample`,
# the lecture's Algorithm 2) and train on five 2-D data sets. The U-Net, how it was
# trained, and why 20 steps can stand in for 1,000 are chapter 7.
#
# ## The course at a glance
#
# **Prerequisites.** Linear algebra (matrix products, determinants, traces), probability
# (Gaussian densities, expectation and variance, independence, Bayes' rule), calculus (the
# chain rule, a first-order Taylor step) and basic PyTorch (tensors and broadcasting,
# autograd, an `nn.Module` trained with an optimizer). Everything else, from the KL
# divergence to the ELBO, is defined where it is first used. No GPU is needed.
#
# **What you will be able to do at the end (learning outcomes).**
#
# 1. Derive the forward process's closed form $q(x_t \mid x_0)$ from the sum of Gaussians,
#    and say what a noise schedule controls (the signal-to-noise ratio).
# 2. Derive the diffusion model's training loss: from the VAE's evidence lower bound
#    (ELBO) through the Gaussian posterior $q(x_{t-1} \mid x_t, x_0)$ to a weighted squared
#    error.
# 3. Convert between the prediction targets $\epsilon$, $x_0$, the posterior mean and $v$,
#    and explain how the choice reweights the loss over time.
# 4. Implement training (Algorithm 1) and ancestral sampling (Algorithm 2), and train
#    working models on 2-D data and on MNIST on a laptop CPU.
# 5. Measure sample quality (a likelihood bound, sample distances, a classifier-based
#    Fréchet distance) against an honest floor, and diagnose the usual failures.
# 6. Check a claim, including a slide's, by computing both sides numerically.
# 7. *(Optional path)* Explain normalizing flows and continuous normalizing flows, the
#    model family diffusion is compared with, and which chapter 8 connects to diffusion.
#
# **The path and the time.** The core path, 0 → 1 → 3 → 4 (part 1) → 5 → 6 → 7, takes
# about 12 hours; everything optional (chapter 2, chapter 4's part 2, the sections marked
# *Optional depth ▸*) adds about 3 more. Chapter 2 (flows) is not needed for chapters 3 to
# 7: skip it on a DDPM-only path and come back before chapter 8, which builds on it.
#
# ```
#   0 start here ──► 1 Gaussians ──► 3 forward process ──► 4 ELBO → L2 ──► 5 targets ──► 6 2-D ──► 7 MNIST
#                        │                                  (part 1 core,                   │
#                        │                                   part 2 optional)               │
#                        └──► 2 flows and CNFs (optional here) ─────────────────────────────┴──► 8 diffusion is a CNF
#                                                                                                       ├──► 9 guidance
#                                                                                                       └──► 10 flow matching
# ```
#
# | # | chapter | core path | with optional depth | runs (full mode, 2-core CPU) | exercises |
# |---|---|---|---|---|---|
# | 0 | start here | 1.0 h | 1.0 h | about 10 s | ★ ×3 |
# | 1 | Gaussian identities | 1.5 h | 1.75 h | 9 s | ★, ★★ ×3 |
# | 2 | flows and CNFs | optional | 1.5 h | 76 s | ★, ★★ ×2 |
# | 3 | the forward process | 2.1 h | 2.3 h | 14 s | ★, ★★ ×3, ★★★ |
# | 4 | from the ELBO to an L2 loss | 1.3 h (part 1) | 2.3 h | 26 s | ★, ★★ ×2; ★★★ in part 2 |
# | 5 | three targets | 1.9 h | 1.9 h | 3.5 min | ★ ×2, ★★, ★★★ |
# | 6 | training and sampling on 2-D data | 2.4 h | 2.4 h | 3.7 min | ★★ ×3, ★★★ |
# | 7 | MNIST | 1.7 h | 1.8 h | 8 min | ★, ★★ ×2 |
# | 8 | diffusion is a CNF (after 2 and 7) | optional | 2.0 h | 7 min | ★, ★★ ×2 |
# | 9 | conditional generation and guidance (after 6 and 7; uses 8's samplers) | not on the core path | 1.4 h | 7.5 min | ★ ×2, ★★ |
# | 10 | flow matching and rectified flow (after 8) | optional | 1.2 h | 3.5 min CPU | ★ ×3 |
# | | **total** | **about 12 h** | **about 20 h** | | |
#
# These times are **estimates, not measurements on students**, computed from each
# chapter's source: careful reading of the text at 100 words a minute, reading and running
# the code at 15 lines a minute, the measured full-mode run time, 5 minutes per ★ exercise,
# 15 per ★★, 30 per ★★★, and 5 per thinking question. A lab session of 90 minutes covers
# about one chapter. Tell us what you measure.
#
# **How each chapter is built.**
#
# * **Objectives** at the top say what you will be able to do after it; a **"You can
#   now"** checklist at the end lets you test yourself against them.
# * **Think first** questions ask you to predict, derive or explain something *before* the
#   next cell shows it. Write your answer down (a sentence, a sketch, a formula), then
#   unfold the answer below the question.
# * **Exercises** (★ warm-up, ★★ core, ★★★ stretch, rated by the ideas they need, not by the
#   typing) are checked automatically; see section 4 below.
# * **Optional depth ▸** in a heading marks a detour: a second independent check, a
#   benchmark, a proof of a side fact. The line under it says what you miss if you skip
#   it; nothing later on the core path depends on its *ideas*. Skipping means not reading:
#   still run its cells (Shift+Enter through them), since later cells may use a variable
#   defined there. Chapter 4 is split the same way into a core part 1 and an optional
#   part 2.
#
# **From the lecture's slides to the chapters.**
#
# | slide (in lecture order) | where |
# |---|---|
# | Recap: Normalizing Flows | 2 §1 |
# | Continuous Normalizing Flows (the ODE, the instantaneous change of variables) | 2 §2–4 (erratum: a minus sign) |
# | Pros and Cons | 2 §5 |
# | Diffusion Models: image, video and text generation | this chapter; 6; 7 |
# | Perspectives on Diffusion Models (2015, 2020, 2021, 2023 papers) | 7, *Further reading* |
# | Refresh: properties of Gaussian | 1 (erratum: the equal-variance KL) |
# | Diffusion Model is Iterative Denoising: the forward process | 3 §1, §3 (erratum: variance, not standard deviation) |
# | Diffusion Model is Iterative Denoising: the reverse process, "a neural network!" | 4 §2; 6 §2–3; 7 §2 |
# | Diffusion Model is a VAE: the ELBO, all noisy images as the latent | 4 §1–3 (erratum: a minus sign) |
# | Diffusion Model is a VAE: the posterior is Gaussian, KL = L2 distance, the loss | 1 §4; 4 §4–5 (erratum: the weight belongs inside the sum) |
# | "Do we have to compute 1000 loss terms?" No | 4 §6 |
# | Training: One step at a time, $q(x_t \mid x_0)$ | 1 §1; 3 §2 (erratum: $\alpha_t$ for $\bar\alpha_t$) |
# | 2 equations, 3 unknowns; the equivalent targets; "Anything else?" | 5 §1–3 |
# | the three losses with $w(t), w'(t), w''(t)$ | 5 §2, §4 |
# | Sampling | 6 §3; 7 §4 |
# | Summary: denoising objective, iterative inference, a hierarchical VAE, three targets | 5; 6 |
# | "Is it the full story?" | 7, *Further reading*; chapters 8–10 |
# | (beyond the slides) the probability-flow ODE, DDIM, exact likelihoods, fast samplers | 8 |
# | (beyond the slides) classifier guidance, classifier-free guidance | 9 |
# | (beyond the slides) flow matching, rectified flow | 10 |
#
# ## 1. The environment
#
# **Versions.** The course needs Python 3.10 or newer; `make lab` installed the pinned
# packages of `requirements.txt` into `.venv/` and registered the kernel
# *Python (diffusion course)*, which this notebook uses.

# %%
import os
import platform
import sys

import matplotlib
import numpy as np

gen = dmlib.seed_everything(0)  # re-seed: loading the U-Net above drew random initial weights
print(f"Python     {platform.python_version()}")
print(f"torch      {torch.__version__}")
print(f"numpy      {np.__version__}")
print(f"matplotlib {matplotlib.__version__}")
print(f"dmlib      {dmlib.__version__} ({os.path.relpath(dmlib.__file__)})")  # this clone's

# %%
# NBVAL_CHECK_OUTPUT
ok = sys.version_info >= (3, 10)
print("Python >= 3.10:", ok)
print("torch >= 2.0:", int(torch.__version__.split(".")[0]) >= 2)

# %% [markdown]
# **The device.** `dmlib.training.pick_device()` picks a CUDA GPU if there is one, then
# Apple's MPS, then the CPU (set the environment variable `DMLIB_DEVICE=cpu` to force one).
# Every chapter runs on a laptop CPU; chapter 7 trains much faster on a GPU.

# %%
from dmlib.training import pick_device

device = pick_device()
print("device:", device)
print("CPU threads torch uses:", torch.get_num_threads())
if device.type == "cuda":
    print("GPU:", torch.cuda.get_device_name(0))

# %% [markdown]
# **The data.** MNIST lives in `data/mnist/` as the four original IDX files, committed to
# the repository, so nothing is downloaded. Every load verifies their SHA-256 checksums
# against the values published in `data/mnist/README.md`; a corrupted or truncated copy
# stops with an error that names the file and how to restore it.

# %%
# NBVAL_CHECK_OUTPUT
from dmlib.data import load_mnist, verify_mnist

digests = verify_mnist()
for name, digest in sorted(digests.items()):
    print(f"{name:28s} sha256 {digest[:16]}... ok")
images, labels = load_mnist("train", scale="[0,1]")
print("train images:", tuple(images.shape), images.dtype)
print("first ten labels:", labels[:10].tolist())
print(f"pixel mean {images.mean():.4f}, std {images.std():.4f}")

# %% [markdown]
# Those are MNIST's well-known facts (labels 5 0 4 1 9 2 1 3 1 4, mean 0.1307, std 0.3081):
# the files are the real thing. A first look:

# %%
from dmlib.plotting import image_grid

ax = image_grid(images[:32], nrow=8, value_range=(0, 1),
                title="The first 32 MNIST training digits")

# %% [markdown]
# ## 2. `dmlib`: the library behind every chapter
#
# Each chapter builds a concept inline, as the lesson, then imports dmlib's tested version
# and checks that the two agree. Later chapters use dmlib's version directly. The library
# is small, one concept per module:

# %%
import importlib
import pkgutil

for mod in sorted(m.name for m in pkgutil.iter_modules(dmlib.__path__)):
    if mod.startswith("_") or mod == "tools":
        continue
    doc = (importlib.import_module(f"dmlib.{mod}").__doc__ or "").strip().splitlines()
    print(f"dmlib.{mod:11s} {doc[0] if doc else ''}")

# %% [markdown]
# ### Notation and the timestep convention
#
# We use the lecture's notation throughout, with the DDPM conventions:
#
# * $\beta_t$: the variance of the noise added at step $t$;
# * $\alpha_t = 1 - \beta_t$;
# * $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$: how much of the signal remains after $t$ steps.
#
# The slides write $\alpha_t$ for the cumulative product on some slides; here the cumulative
# product is always $\bar\alpha_t$, `alpha_bar` in code.
#
# **Timesteps are the lecture's $t = 1, \dots, T$.** A `Schedule` stores every quantity in a
# tensor of length $T+1$ indexed by $t$ itself, so `sched.alpha_bar[t]` *is* $\bar\alpha_t$.
# Index 0 stands for $t=0$, the clean data: $\beta_0 = 0$ and $\bar\alpha_0 = 1$.

# %%
# NBVAL_CHECK_OUTPUT
from dmlib.schedules import Schedule

sched = Schedule.linear(T=1000)
print(sched)
for t in [0, 1, 2, 500, 1000]:
    print(f"t={t:4d}  beta_t={sched.betas[t]:.6f}  alpha_bar_t={sched.alpha_bar[t]:.6f}")

# %% [markdown]
# A timestep outside $1..T$ is refused with an error that explains the convention. The
# most common slip is drawing $t$ 0-based, as many code bases do:

# %%
from dmlib.forward import q_sample, q_step

x = torch.zeros(3, 2)
for bad_t in [torch.tensor([0, 5, 999]), torch.tensor([1, 5, 1001])]:
    try:
        q_step(sched, x, bad_t)  # one noising step x_{t-1} -> x_t needs 1 <= t <= T
    except ValueError as err:
        print("ValueError:", err)

# %% [markdown]
# ## 3. The quick switch
#
# Training a model to good samples takes minutes on a CPU. Every size that only affects
# run time (training steps, Monte Carlo sample sizes) goes through
# `dmlib.quick(quick_value, full_value)`. **You run the full setting** unless the environment
# variable `DMLIB_QUICK=1` is set: the numbers you see are then the ones the chapters
# discuss. Quick mode, for slow machines, shrinks only those sizes: the trained models get
# worse, but every exact check prints the same result.
#
# **On a slow machine**, use quick mode in the lab too. Chapters 5 to 7 take several
# minutes each in full mode on a 2-core laptop (every step that runs longer than a few
# seconds shows a progress bar); in quick mode each takes well under a minute, with rougher
# figures and the same checked numbers. Stop JupyterLab (Ctrl+C twice in its terminal) and
# start it with
#
# ```bash
# make lab QUICK=1        # the same as: DMLIB_QUICK=1 make lab
# ```
#
# Every kernel it starts then runs the quick setting. The cell below says which one this
# kernel runs.

# %%
steps = dmlib.quick(200, 5000)
print("quick mode:", dmlib.QUICK, "-> training steps:", steps)

# %% [markdown]
# Long loops show a progress bar (`tqdm.auto`, which draws a widget in JupyterLab):

# %%
from tqdm.auto import tqdm

total = 0.0
for k in tqdm(range(dmlib.quick(100, 2000)), desc="a long loop"):
    total += k ** 0.5

# %% [markdown]
# ## 4. Exercises and their checks
#
# Each chapter has exercises. You write a function between the markers
# `### BEGIN SOLUTION` and `### END SOLUTION`; the next cell **checks** it against dmlib's
# reference on seeded inputs (several shapes and timesteps) and prints `PASS`, or `FAIL`
# with a hint about what is wrong (a shape, a scale, the wrong $\alpha$, $t$ off by one).
# In the version you work on, the solution is replaced by
# `raise NotImplementedError()`; the check then says `NOT IMPLEMENTED YET`, and the
# chapter carries on with dmlib's reference, so it still runs to the end.
#
# Each exercise carries a difficulty label, rated by the ideas it needs: ★ warm-up (one
# formula shown just above, a few minutes), ★★ core (the chapter's main idea, 10 to 20
# minutes), ★★★ stretch (the formula is not on the page: you derive it first; good
# homework).
#
# **Exercise 0.1 (★ warm-up).** Write `alpha_bar_from_betas(betas)`: given the betas
# $\beta_1..\beta_T$ (shape `(T,)`), return $\bar\alpha_1..\bar\alpha_T$ (shape `(T,)`),
# where $\bar\alpha_t = \prod_{s=1}^{t}(1-\beta_s)$.

# %%
def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return torch.cumprod(1 - betas, dim=0)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
from dmlib import checks

checks.check_alpha_bar(alpha_bar_from_betas)

# %% [markdown]
# A check catches the usual slips. Here is what it says to three wrong versions (a product
# of the betas, a running sum, and a product that stops one step early):

# %%
# NBVAL_CHECK_OUTPUT
wrong_versions = {
    "product of betas": lambda b: torch.cumprod(b, 0),
    "running sum": lambda b: torch.cumsum(1 - b, 0),
    "one step early": lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]]),
}
for name, fn in wrong_versions.items():
    print(f"[{name}]", end=" ")
    checks.check_alpha_bar(fn)

# %% [markdown]
# After an exercise the chapter goes on with dmlib's reference, whatever you wrote:

# %%
alpha_bar = sched.alpha_bar[1:]  # dmlib's reference, t = 1..T
print(f"alpha_bar_T = {alpha_bar[-1]:.2e}: after T = 1000 steps almost no signal is left")

# %% [markdown]
# **Exercise 0.2 (★ warm-up).** Diffusion models work on data in $[-1, 1]$, so that the
# clean data and the pure noise $\mathcal N(0, I)$ have the same scale. Write
# `to_model_range(pixels)`: map MNIST's `uint8` pixels $p \in \{0, \dots, 255\}$ (any shape)
# to `float32` values $x \in [-1, 1]$, with $0 \mapsto -1$ and $255 \mapsto 1$.

# %%
def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return pixels.to(torch.float32) / 127.5 - 1
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_to_model_range(to_model_range)

# %% [markdown]
# dmlib's loader does this for you: `load_mnist(split, scale="[-1,1]")`.

# %%
# NBVAL_CHECK_OUTPUT
x_model, _ = load_mnist("test", scale="[-1,1]", limit=100)
print(f"min {x_model.min():.1f}, max {x_model.max():.1f}, dtype {x_model.dtype}")

# %% [markdown]
# **Exercise 0.3 (★ warm-up).** The *signal-to-noise ratio* of $x_t$ is the variance of its
# signal part over the variance of its noise part,
# $\mathrm{SNR}_t = \bar\alpha_t / (1 - \bar\alpha_t)$ (chapter 3 plots it for several
# schedules). Write `snr(alpha_bar)`: shape `(T,)` in, shape `(T,)` out.

# %%
def snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    return alpha_bar / (1 - alpha_bar)
    ### END SOLUTION


# %%
# NBVAL_CHECK_OUTPUT
checks.check_snr(snr)

# %% [markdown]
# The reference is `sched.snr` (indexed by $t$).
#
# > **Think first.** The linear schedule adds noise of variance $\beta_t$, growing evenly
# > from $\beta_1 = 10^{-4}$ to $\beta_{1000} = 0.02$. Before you run the next cell: at
# > roughly which $t$ does the SNR fall below 1 (signal and noise equally strong)? Near
# > $t = 500$, earlier, or later? One line of reasoning is enough.
#
# <details><summary>Answer (unfold after you have written yours)</summary>
#
# Much earlier, near $t = 260$. $\mathrm{SNR}_t = 1$ means $\bar\alpha_t = 1/2$, and
# $\log\bar\alpha_t = \sum_{s \le t}\log(1-\beta_s) \approx -\sum_{s\le t}\beta_s
# \approx -10^{-5}\,t^2$ (the betas grow linearly, so their sum grows like $t^2$). Setting
# $10^{-5} t^2 = \ln 2$ gives $t \approx 263$; the exact count is $\mathrm{SNR}_t \ge 1$ for
# $t \le 259$. The last three quarters of the chain are spent mostly on noise, one reason
# chapter 3 meets gentler schedules.
#
# </details>
#
# The SNR falls by eight orders of magnitude over the linear schedule: at $t = T$ the data
# is buried in noise.

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(range(1, sched.T + 1), sched.snr[1:].numpy(), label="linear schedule")
ax.axhline(1, color="gray", ls="--", label="SNR = 1")
ax.set(title="Signal-to-noise ratio of x_t", xlabel="t", ylabel="SNR_t (log scale)")
ax.legend()
plt.show()

# %% [markdown]
# ## 5. Figures first, then widgets
#
# Each chapter draws a static figure first, so it reads well on the web without a running
# kernel, and then offers a widget to explore. Here: a digit noised by the closed form
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$ (chapter 3 derives it).

# %%
x0 = images[:1] * 2 - 1  # scale to [-1, 1], the range diffusion models use
ts = [0, 50, 100, 200, 400, 600, 800, 1000]
eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
noised = torch.cat([q_sample(sched, x0, t, eps=eps) for t in ts])
ax = image_grid(noised, nrow=len(ts), value_range=(-1, 1),
                title="x_t for t = " + ", ".join(map(str, ts)) + " (linear schedule)")

# %%
import ipywidgets as widgets


def show_noised(t: int = 200, schedule: str = "linear") -> None:
    s = Schedule.linear(1000) if schedule == "linear" else Schedule.cosine(1000)
    xt = q_sample(s, x0, t, eps=eps)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3))
    axes[0].imshow(xt[0, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
    axes[0].set_title(f"x_t, t={t}")
    axes[0].axis("off")
    axes[1].plot(s.alpha_bar.numpy(), label="alpha_bar_t")
    axes[1].axvline(t, color="red", ls="--", label=f"t={t}")
    axes[1].set(title=f"{schedule} schedule", xlabel="t", ylabel="alpha_bar_t")
    axes[1].legend()
    plt.tight_layout()
    plt.show()


widgets.interact(show_noised, t=widgets.IntSlider(200, 0, 1000, 10),
                 schedule=["linear", "cosine"]);

# %% [markdown]
# ## Where to go next
#
# | chapter | topic |
# |---|---|
# | 1 | Gaussian identities: sums, KL, products |
# | 2 | Normalizing flows and continuous normalizing flows (optional on the DDPM path) |
# | 3 | The forward process and noise schedules |
# | 4 | From the ELBO to an L2 loss |
# | 5 | Three equivalent targets: posterior mean, $x_0$, $\epsilon$ |
# | 6 | Training and sampling on 2-D data |
# | 7 | MNIST on a GPU (or a CPU) |
#
# The code behind every chapter is in `dmlib/`; read any function's source with `??`, e.g.
# `dmlib.forward.q_sample??` in a cell. Found a mistake, or want to improve a chapter? See
# `CONTRIBUTING.md`.
#
# ## You can now
#
# * [ ] say in one sentence what a diffusion model does, and name the chapter that explains
#   the schedule (3), the loss (4, 5), the sampling loop (6) and the image model (7);
# * [ ] plan your path through the course: the core path, the optional parts, and the time
#   each chapter takes;
# * [ ] run a chapter, switch to quick mode on a slow machine, and read a check's
#   `PASS` / `FAIL` line and its hint;
# * [ ] compute $\bar\alpha_t$ and the signal-to-noise ratio of a schedule, and say where
#   the linear schedule's SNR crosses 1.
