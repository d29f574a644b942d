"""Exercise checks: run a student's function against dmlib's reference and give a hint.

Every exercise in a chapter is followed by a call such as
``checks.check_q_sample(q_sample)`` (``from dmlib import checks``). A check runs the function on copies of seeded
inputs (several shapes including rank 3, scalar and per-example ``t``, t = 1 and t = T, and
one float32 case), with gradients enabled, a time limit and capped output (see ``_core``),
compares values and dtype with the reference, and prints one line:

* ``PASS``: all cases agree;
* ``NOT IMPLEMENTED YET``: the function still raises ``NotImplementedError`` (the stub of
  the student version). The chapter goes on with dmlib's reference, so nothing breaks;
* ``FAIL``: with a hint about what is wrong (shape, dtype, an input changed in place, scale,
  which alpha, t off by one, sign), found by comparing the output with typical wrong
  formulas, or else by locating the error (a constant factor, the wrong timesteps, the
  arguments it does not depend on). The hint never prints the solution.

Results are also appended to ``RESULTS`` (used by graders). With the environment variable
``DMLIB_CHECKS_STRICT=1`` a failing check raises ``CheckFailed`` instead of only printing.
Chapter 0 introduces the convention. The framework is in ``_core``; each chapter's
checks live in a submodule (``basics``, ``diffusion``, ...) and are re-exported here.
"""

from ._core import (ERROR, FAIL, GENERIC, NOT_IMPLEMENTED, PASS, RESULTS, TOLERANCES, Case,
                    CheckFailed, CheckResult, Mistake, Spec, run_check)
from .cnf_diffusion import *  # noqa: F401,F403  (chapter 8)
from .guidance import *  # noqa: F401,F403  (chapter 9)
from .flow_matching import *  # noqa: F401,F403  (chapter 10)
from .basics import check_alpha_bar, check_snr, check_to_model_range
from .diffusion import check_posterior_mean, check_q_sample
# each chapter's checks live in a submodule that lists them in its __all__
from .elbo import *  # noqa: F401,F403  (chapter 4)
from .flows import *  # noqa: F401,F403  (chapter 2)
from .forward_process import *  # noqa: F401,F403  (chapter 3)
from .gaussians import *  # noqa: F401,F403  (chapter 1)
from .mnist import *  # noqa: F401,F403  (chapter 7)
from .targets import *  # noqa: F401,F403  (chapter 5)
from .toy2d import *  # noqa: F401,F403  (chapter 6)
from .ideas import *  # noqa: F401,F403  (exercises that need an idea: 3.5, 5.4, 6.4)
from . import elbo as _c4, flows as _c2, forward_process as _c3, gaussians as _c1, targets as _c5
from . import mnist as _c7, toy2d as _c6
from . import cnf_diffusion as _c8
from . import guidance as _c9
from . import flow_matching as _c10
from . import ideas as _ideas

__all__ = ["PASS", "FAIL", "NOT_IMPLEMENTED", "ERROR", "RESULTS", "GENERIC", "TOLERANCES", "Case", "CheckFailed",
           "CheckResult", "Mistake", "Spec", "run_check", "check_alpha_bar", "check_snr", "check_to_model_range",
           "check_q_sample",
           "check_posterior_mean", *_c1.__all__, *_c2.__all__, *_c3.__all__,
           *_c4.__all__, *_c5.__all__, *_c6.__all__, *_c7.__all__, *_c8.__all__, *_c9.__all__,
           *_c10.__all__, *_ideas.__all__]
