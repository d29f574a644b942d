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
# # Chapter 0: set-up and a tour of the course
#
# This course follows the lecture *Introduction to Diffusion Models* slide by slide. Every
# equation on the slides is derived here in markdown and then **checked by running code**;
# where a slide is wrong (it happens: a missing minus sign, a standard deviation where a
# variance belongs) the chapter says so in an *Erratum* box and settles it with a number.
#
# This chapter checks that your environment works and shows how the course works:
#
# 1. the environment: versions, the device, the MNIST files and their checksums;
# 2. `dmlib`, the small library every chapter imports, and its timestep convention;
# 3. the **quick switch** that shrinks training in CI;
# 4. **exercises** and their **checks**;
# 5. **widgets**, and how each chapter draws a static figure first.
#
# Run the cells from top to bottom (Shift+Enter). Every chapter runs on its own: it never
# needs state from another chapter.

# %%
import os
import platform
import sys

import matplotlib
import numpy as np
import torch

import dmlib

gen = dmlib.seed_everything(0)  # every chapter starts like this: reproducible results
print(f"Python     {platform.python_version()}")
print(f"torch      {torch.__version__}")
print(f"numpy      {np.__version__}")
print(f"matplotlib {matplotlib.__version__}")
print(f"dmlib      {dmlib.__version__} ({os.path.relpath(dmlib.__file__)})")  # this clone's

# %% [markdown]
# ## 1. The environment
#
# **Python and packages.** The course needs Python 3.10 or newer; `make lab` installed the
# pinned packages of `requirements.txt` into `.venv/` and registered the kernel
# *Python (diffusion course)*, which this notebook uses.

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
# Training a model to good samples takes minutes on a CPU; the course's CI executes every
# chapter on each change and cannot wait that long. So every size that only affects run
# time goes through `dmlib.quick(quick_value, full_value)`, and CI sets the environment
# variable `DMLIB_QUICK=1`. **You run the full setting**: the numbers you see are the ones
# the chapters discuss. Checked results (marked `# NBVAL_CHECK_OUTPUT` in the source) never
# depend on the switch.
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
# In the student version (`make student`) the solution is replaced by
# `raise NotImplementedError()`; the check then says `NOT IMPLEMENTED YET`, and the
# chapter carries on with dmlib's reference, so it still runs to the end.
#
# Each exercise carries a difficulty label: ★ warm-up (one formula, a few minutes),
# ★★ core (the chapter's main idea, 10 to 20 minutes), ★★★ stretch (longer; good homework).
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
# The reference is `sched.snr` (indexed by $t$). The SNR falls by eight orders of magnitude
# over the linear schedule: at $t = T$ the data is buried in noise.

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
# | 2 | Normalizing flows and continuous normalizing flows |
# | 3 | The forward process and noise schedules |
# | 4 | From the ELBO to an L2 loss |
# | 5 | Three equivalent targets: posterior mean, $x_0$, $\epsilon$ |
# | 6 | Training and sampling on 2-D data |
# | 7 | MNIST on a GPU (or a CPU) |
#
# The code behind every chapter is in `dmlib/` (tests in `tests/`). To change a chapter,
# edit its `.py` file, then `make sync` and `make test` (see `CONTRIBUTING.md`).
