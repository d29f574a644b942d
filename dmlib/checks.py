"""Exercise checks: run a student's function against dmlib's reference and give a hint.

Every exercise in a chapter is followed by a call such as
``dmlib.checks.check_q_sample(q_sample)``. A check runs the function on seeded inputs
(several shapes, scalar and per-example ``t``, first and last timesteps), compares with the
reference, and prints one line:

* ``PASS``: all cases agree;
* ``NOT IMPLEMENTED YET``: the function still raises ``NotImplementedError`` (the stub of
  the student version). The chapter goes on with dmlib's reference, so nothing breaks;
* ``FAIL``: with a hint about what is wrong (shape, scale, which alpha, t off by one, sign),
  found by comparing the output with typical wrong formulas. The hint never prints the
  solution.

Results are also appended to ``RESULTS`` (used by graders). With the environment variable
``DMLIB_CHECKS_STRICT=1`` a failing check raises ``CheckFailed`` instead of only printing.
Chapter 0 introduces the convention; each chapter adds its own checks here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .schedules import Schedule

PASS, FAIL, NOT_IMPLEMENTED, ERROR = "pass", "fail", "not implemented", "error"


class CheckFailed(AssertionError):
    """Raised by a failing check when ``DMLIB_CHECKS_STRICT=1``."""


@dataclass
class CheckResult:
    """Outcome of one check: ``status`` is "pass", "fail", "not implemented" or "error"."""

    name: str
    status: str
    message: str
    cases: int = 0

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def _ipython_display_(self) -> None:  # already printed; keep notebooks free of repr noise
        pass


RESULTS: list[CheckResult] = []


@dataclass
class Case:
    """Positional arguments for the function under test, and a short description."""

    args: tuple
    desc: str


@dataclass
class Mistake:
    """A typical wrong formula: if the student's output matches ``wrong(*args)``, show ``hint``."""

    hint: str
    wrong: Callable[..., torch.Tensor]


@dataclass
class Spec:
    name: str
    reference: Callable[..., torch.Tensor]
    cases: Sequence[Case]
    mistakes: Sequence[Mistake] = field(default_factory=list)
    broadcast_hint: str = ""
    atol: float = 1e-5
    rtol: float = 1e-4


def _close(a: Any, b: torch.Tensor, spec: Spec) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.double(), b.double(), atol=spec.atol, rtol=spec.rtol))


def _evaluate(fn: Callable, spec: Spec) -> CheckResult:
    if not callable(fn):
        return CheckResult(spec.name, ERROR, f"expected a function, got {type(fn).__name__}")
    for i, case in enumerate(spec.cases):
        try:
            with torch.no_grad():
                got = fn(*case.args)
        except NotImplementedError:
            return CheckResult(spec.name, NOT_IMPLEMENTED,
                               "not implemented yet: write your code between the solution "
                               "markers, then re-run the exercise cell and this one")
        except Exception as e:  # the student's code crashed: say where, with a hint
            hint = ""
            if isinstance(e, (RuntimeError, IndexError)) and spec.broadcast_hint:
                hint = " Hint: " + spec.broadcast_hint
            return CheckResult(spec.name, ERROR, f"your function raised {type(e).__name__} "
                               f"on {case.desc}: {e}.{hint}", i)
        expected = spec.reference(*case.args)
        if not isinstance(got, torch.Tensor):
            return CheckResult(spec.name, FAIL, f"on {case.desc}: return a torch.Tensor, "
                               f"got {type(got).__name__}", i)
        if got.shape != expected.shape:
            hint = f" Hint: {spec.broadcast_hint}" if spec.broadcast_hint else ""
            return CheckResult(spec.name, FAIL, f"on {case.desc}: wrong shape, expected "
                               f"{tuple(expected.shape)}, got {tuple(got.shape)}.{hint}", i)
        if not torch.isfinite(got).all():
            return CheckResult(spec.name, FAIL, f"on {case.desc}: the output contains NaN "
                               "or inf (a division by zero, or log/sqrt of a negative?)", i)
        if not _close(got, expected, spec):
            for m in spec.mistakes:
                try:
                    if _close(got, m.wrong(*case.args), spec):
                        return CheckResult(spec.name, FAIL, f"on {case.desc}: {m.hint}", i)
                except Exception:  # a mistake that does not apply to this case
                    continue
            err = (got.double() - expected.double()).abs().max().item()
            return CheckResult(spec.name, FAIL, f"on {case.desc}: values differ from the "
                               f"reference (max abs error {err:.3g}); re-read the equation "
                               "above the exercise term by term", i)
    n = len(spec.cases)
    return CheckResult(spec.name, PASS, f"all {n} cases agree with the reference", n)


def run_check(fn: Callable, spec: Spec, verbose: bool = True) -> CheckResult:
    """Evaluate ``fn`` against ``spec``, print one line, record and return the result."""
    result = _evaluate(fn, spec)
    RESULTS.append(result)
    label = {PASS: "PASS", FAIL: "FAIL", ERROR: "FAIL", NOT_IMPLEMENTED: "NOT IMPLEMENTED YET"}
    if verbose:
        print(f"{label[result.status]} {spec.name}: {result.message}")
    strict = os.environ.get("DMLIB_CHECKS_STRICT", "").strip() not in ("", "0")
    if strict and result.status in (FAIL, ERROR):
        raise CheckFailed(f"{spec.name}: {result.message}")
    return result


# --------------------------------------------------------------------------------------
# Shared inputs: seeded, several shapes, scalar and per-example t, first and last steps.
def _schedules() -> list[Schedule]:
    return [Schedule.linear(1000), Schedule.cosine(50)]


def _x(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    # float64: exercises are checked for the formula, not for float32 round-off
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _t(values: Sequence[int]) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.long)


def _bcast(v: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    out = v.to(x.dtype)[t]
    return out.reshape(-1, *([1] * (x.dim() - 1))) if t.dim() == 1 else out


def _at(v: torch.Tensor, t: int | torch.Tensor, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=torch.long) + shift
    if int(t.min()) < 0 or int(t.max()) >= v.numel():
        raise IndexError("shifted t out of range")
    return _bcast(v, t, x)


_BROADCAST = ("when t is a tensor of shape (B,), the coefficients gathered from the "
              "schedule have shape (B,): reshape them to (B, 1, ..., 1) so they broadcast "
              "against x of shape (B, ...) (schedule.extract does exactly that)")
_OFF_BY_ONE = ("your output matches the formula evaluated at the wrong timestep (t off by "
               "one). dmlib indexes schedule tensors by the lecture's t directly: index 0 "
               "is t = 0 (clean data), so alpha_bar_t is schedule.alpha_bar[t]")


# --------------------------------------------------------------------------------------
# Chapter 0: alpha_bar from betas
def _ref_alpha_bar(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1 - betas, 0)


def check_alpha_bar(fn: Callable[[torch.Tensor], torch.Tensor], verbose: bool = True) -> CheckResult:
    """Check ``fn(betas) -> alpha_bar`` with betas (T,) -> alpha_bar (T,),
    alpha_bar_t = prod_{s=1}^t (1 - beta_s). Chapter 0 (warm-up) and chapter 3."""
    rand = 0.001 + 0.2 * torch.rand(7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cases = [Case((s.betas[1:].clone(),), f"the {s.name} schedule with T={s.T}") for s in _schedules()]
    cases.append(Case((rand,), "7 random betas"))
    mistakes = [
        Mistake("you multiplied the betas themselves; each factor is alpha_s = 1 - beta_s",
                lambda b: torch.cumprod(b, 0)),
        Mistake("you returned alpha_t = 1 - beta_t; alpha_bar_t is the running product of "
                "the alphas up to and including t", lambda b: 1 - b),
        Mistake("you used a running sum; alpha_bar_t is a running product",
                lambda b: torch.cumsum(1 - b, 0)),
        Mistake("your product stops one step early (it excludes alpha_t itself)",
                lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]])),
        Mistake("you took a square root: alpha_bar_t itself is the product, its square root "
                "comes later as the scale of x0", lambda b: torch.cumprod(1 - b, 0).sqrt()),
        Mistake("you returned T + 1 entries; return one entry per beta (t = 1..T)",
                lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)])),
    ]
    return run_check(fn, Spec("check_alpha_bar", _ref_alpha_bar, cases, mistakes,
                              atol=1e-9, rtol=1e-7), verbose)


# --------------------------------------------------------------------------------------
# Chapter 3: the closed-form forward process q(x_t | x_0)
def _q_sample_cases() -> list[Case]:
    lin, cos = _schedules()
    return [
        Case((lin, _x((4, 2), 0), _t([1, 10, 500, 1000]), _x((4, 2), 1)),
             "x0 of shape (4, 2) with t = [1, 10, 500, 1000]"),
        Case((cos, _x((3, 1, 6, 6), 2), _t([50, 1, 25]), _x((3, 1, 6, 6), 3)),
             "images of shape (3, 1, 6, 6) with t = [50, 1, 25] (cosine, T=50)"),
        Case((lin, _x((5, 2), 4), 300, _x((5, 2), 5)), "x0 of shape (5, 2) with the int t = 300"),
    ]


def check_q_sample(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, x0, t, eps) -> xt`` against
    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps (shapes: x0, eps (B, ...); t () or (B,)).
    Chapter 3."""
    from .forward import q_sample

    ab = lambda s: s.alpha_bar  # noqa: E731
    mistakes = [
        Mistake(_OFF_BY_ONE, lambda s, x0, t, e: _at(ab(s), t, x0, -1).sqrt() * x0
                + (1 - _at(ab(s), t, x0, -1)).sqrt() * e),
        Mistake(_OFF_BY_ONE, lambda s, x0, t, e: _at(ab(s), t, x0, 1).sqrt() * x0
                + (1 - _at(ab(s), t, x0, 1)).sqrt() * e),
        Mistake("you used alpha_t (one step) where the jump from x0 needs alpha_bar_t, the "
                "product of all alphas up to t", lambda s, x0, t, e: _at(s.alphas, t, x0).sqrt() * x0
                + (1 - _at(s.alphas, t, x0)).sqrt() * e),
        Mistake("the noise is scaled by a variance: eps must be multiplied by a standard "
                "deviation (the reparameterisation x = mean + std * eps)",
                lambda s, x0, t, e: _at(ab(s), t, x0).sqrt() * x0 + (1 - _at(ab(s), t, x0)) * e),
        Mistake("x0 is scaled by alpha_bar_t itself; the mean of q(x_t|x_0) scales x0 by a "
                "square root", lambda s, x0, t, e: _at(ab(s), t, x0) * x0
                + (1 - _at(ab(s), t, x0)).sqrt() * e),
        Mistake("check the sign of the noise term",
                lambda s, x0, t, e: _at(ab(s), t, x0).sqrt() * x0 - (1 - _at(ab(s), t, x0)).sqrt() * e),
        Mistake("the output does not use eps: the sample is the mean plus scaled noise",
                lambda s, x0, t, e: _at(ab(s), t, x0).sqrt() * x0),
    ]
    spec = Spec("check_q_sample", lambda s, x0, t, e: q_sample(s, x0, t, eps=e),
                _q_sample_cases(), mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Chapter 4: the posterior mean of q(x_{t-1} | x_t, x_0)
def check_posterior_mean(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check ``fn(schedule, x0, xt, t) -> mean`` of q(x_{t-1} | x_t, x_0):
    sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x0 + sqrt(alpha_t)(1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t.
    Chapter 4."""
    from .posterior import posterior_mean

    def formula(s, x0, xt, t, shift=0, swap=False, alpha_is_bar=False, no_sqrt=False):
        ab, abp = _at(s.alpha_bar, t, x0, shift), _at(s.alpha_bar_prev, t, x0, shift)
        b, a = _at(s.betas, t, x0, shift), _at(s.alphas, t, x0, shift)
        if alpha_is_bar:
            a = ab
        r = (lambda v: v) if no_sqrt else torch.sqrt
        c0, ct = r(abp) * b / (1 - ab), r(a) * (1 - abp) / (1 - ab)
        return ct * x0 + c0 * xt if swap else c0 * x0 + ct * xt

    cases = [
        Case((s, _x((4, 2), 10 + k), _x((4, 2), 20 + k), _t([2, 3, s.T // 2, s.T])),
             f"x of shape (4, 2), t = [2, 3, {s.T // 2}, {s.T}] ({s.name}, T={s.T})")
        for k, s in enumerate(_schedules())
    ] + [Case((Schedule.linear(1000), _x((2, 1, 5, 5), 30), _x((2, 1, 5, 5), 31), 700),
              "images of shape (2, 1, 5, 5) with the int t = 700")]
    mistakes = [
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=-1)),
        Mistake(_OFF_BY_ONE, lambda *a: formula(*a, shift=1)),
        Mistake("the two coefficients are swapped: which one carries beta_t (the new noise) "
                "and should multiply x0?", lambda *a: formula(*a, swap=True)),
        Mistake("in the coefficient of x_t the single-step alpha_t belongs, not alpha_bar_t",
                lambda *a: formula(*a, alpha_is_bar=True)),
        Mistake("a square root is missing on alpha_bar_{t-1} or alpha_t (they scale means, "
                "so they enter as square roots)", lambda *a: formula(*a, no_sqrt=True)),
    ]
    spec = Spec("check_posterior_mean", lambda s, x0, xt, t: posterior_mean(s, x0, xt, t),
                cases, mistakes, broadcast_hint=_BROADCAST)
    return run_check(fn, spec, verbose)
