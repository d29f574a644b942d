"""dmlib: the small, tested library behind the course "Introduction to Diffusion Models".

Every chapter imports from here (d2l-style). One concept per module, in three parts:

**The diffusion core**: pure functions of (schedule, tensors); each depends only on the
modules above it in this table.

====================  =====================================================  =======
module                what it holds                                          chapter
====================  =====================================================  =======
``gaussians``         Gaussian identities: sum, KL (1-D, diagonal), product    1
``flows``             affine coupling layers, a RealNVP-style flow            2
``ode``               fixed-step ODE solvers (Euler, RK4)                     2
``cnf``               continuous normalizing flows, trace and Hutchinson      2
``schedules``         beta schedules, the ``Schedule`` tables, sigma_t^2      3
``forward``           q(x_t | x_{t-1}) and q(x_t | x_0)                       3
``posterior``         q(x_{t-1} | x_t, x_0)                                   4
``targets``           eps <-> x0 <-> posterior mean <-> v; ELBO weights       5
``spec``              ``DiffusionSpec``: schedule, T, target, variance        7
``losses``            the training loss and the exact VLB terms               4, 5
``respacing``         the S-step chain with the same marginals                7
``samplers``          DDIM, Heun, DPM-Solver++(2M): probability-flow steps    8
``guidance``          label dropout, CFG and classifier guidance as models    9
``labelled_mixture``  a labelled Gaussian mixture: p(y | x_t), scores, target  9
``sampling``          one sampler loop with pluggable steps (DDPM, ODE)       6, 7, 8
``likelihood``        exact log-likelihood by the probability-flow ODE; bits  8
``optimal``           the optimal denoiser for Gaussian / mixture data        4, 6
``flow_matching``     straight path, velocity target/loss, reflow, clocks     10
====================  =====================================================  =======

**Models, data, training and evaluation**

====================  =====================================================  =======
``models``            time embedding, MLP for 2-D data, a small U-Net         6, 7
``data``              2-D toy sets, Gaussian mixtures, MNIST, loaders         1-7
``training``          the generic training loop (any model), EMA, device      6, 7
``checkpoint``        atomic checkpoints with their spec, exact resume        6, 7
``train``             MNIST presets and the command ``python -m dmlib.train``  7
``pretrained``        the shipped checkpoints, sha256-verified                7
``metrics``           2-D sample distances (sliced W2, MMD) and their floor   6
``quality``           image quality: FD / confident share / class entropy     7
``class_quality``     conditional samples: accuracy, confusion, diversity     9
``animation``         compact HTML animations of reverse trajectories         6, 7
``plotting``          scatter / image grid / trajectory helpers               all
``seeding``           ``seed_everything``                                     all
====================  =====================================================  =======

**The course machinery** (``course``, i.e. ``dmlib.course``): ``course.checks`` (exercise checks with hints,
one submodule a chapter; chapters write ``from dmlib import checks``), ``course.grade`` (the
autograder, ``make grade``) and ``course.tools`` (jupytext pairs, student versions).

Dependencies point one way (``tests/test_structure.py`` fails on an import cycle): the core
never imports models, training or the course machinery.

Timestep convention (stated once, used everywhere): ``t`` is the lecture's integer
t in 1..T. Schedule tensors have length T+1 and are indexed by t directly; index 0
holds t = 0 (clean data: beta_0 = 0, alpha_bar_0 = 1). See ``dmlib.schedules``.

Notation: alpha_t = 1 - beta_t and alpha_bar_t = prod_{s<=t} alpha_s (DDPM). The slides
write alpha_t for the cumulative product on some slides; in code we always write
``alpha_bar`` for it.

``QUICK`` is the course's quick switch: set the environment variable ``DMLIB_QUICK=1``
(CI does) and chapters shrink their training to seconds. Unset (or ``0``) is the full
setting a student runs.
"""

from __future__ import annotations

import os

__version__ = "0.2.0"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


#: True when ``DMLIB_QUICK`` is set to a true value (CI): chapters shrink training.
QUICK: bool = _env_flag("DMLIB_QUICK")


def quick(quick_value, full_value):
    """Return ``quick_value`` in quick mode (``DMLIB_QUICK=1``) and ``full_value`` otherwise.

    Chapters use it for every size that only affects run time, e.g.
    ``steps = dmlib.quick(200, 5000)``. Chapter 0 introduces it.
    """
    return quick_value if QUICK else full_value


from .seeding import seed_everything  # noqa: E402


def __getattr__(name: str):
    # ``from dmlib import checks``: the exercise checks live in dmlib.course.checks; chapters
    # keep the short name. Imported on first use, so ``import dmlib`` stays light.
    if name == "checks":
        import importlib

        return importlib.import_module("dmlib.course.checks")
    raise AttributeError(f"module 'dmlib' has no attribute {name!r}")


__all__ = ["QUICK", "quick", "seed_everything", "__version__"]
