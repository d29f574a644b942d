"""The check framework: run a function on cases, compare, diagnose typical mistakes."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..schedules import Schedule

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


#: Check lines are wrapped at word boundaries to this width, continuation lines indented by
#: four spaces: JupyterLab wraps printed text anywhere (``word-break: break-all``), which cut
#: long hints mid-word. The grader joins the continuation lines back (``dmlib.grade``).
REPORT_WIDTH = 88


def report_line(line: str) -> str:
    """``line`` wrapped at word boundaries to ``REPORT_WIDTH``, continuation lines indented."""
    return textwrap.fill(line, width=REPORT_WIDTH, subsequent_indent="    ",
                         break_long_words=False, break_on_hyphens=False)


def run_check(fn: Callable, spec: Spec, verbose: bool = True) -> CheckResult:
    """Evaluate ``fn`` against ``spec``, print one line, record and return the result."""
    result = _evaluate(fn, spec)
    RESULTS.append(result)
    label = {PASS: "PASS", FAIL: "FAIL", ERROR: "FAIL", NOT_IMPLEMENTED: "NOT IMPLEMENTED YET"}
    if verbose:
        print(report_line(f"{label[result.status]} {spec.name}: {result.message}"))
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


