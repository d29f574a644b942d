"""The check framework: run a function on cases, compare, diagnose typical mistakes.

How a check runs the student's function (every check gets all of this from ``_evaluate``):

* on **copies** of the case's arguments (tensors and schedules): the reference and the
  mistake formulas see the pristine inputs, and an argument or a schedule tensor that the
  function changed in place fails the check with a message naming it;
* with **gradients enabled** (a solution may use ``torch.autograd.grad``); outputs that carry
  a graph are detached before the comparison;
* under a **time limit** per check (``DMLIB_CHECKS_TIMEOUT`` seconds, 30 by default): a
  SIGALRM timer on the main thread (it interrupts pure-Python loops, also inside a Jupyter
  kernel), or a watcher thread elsewhere;
* with its **printed output capped** (the first ``OUTPUT_LINES`` lines are shown, the rest
  counted);
* catching **every** exception, ``KeyboardInterrupt`` and ``SystemExit`` included, and
  recording the outcome in ``RESULTS`` (a keyboard interrupt is recorded, printed and then
  re-raised, so the notebook still stops). ``NotImplementedError`` counts as "not
  implemented yet" only when the function's own body raised it (the stub); raised from a
  helper, it is an error that names the helper;
* comparing the **dtype** as well as the values: every check has a float32 case, since
  the chapters train float32 models on float64 schedules.

Tolerances come from one table, ``TOLERANCES`` (per output dtype), for every check; a
check whose reference is itself an iterative numerical computation (a matrix square root)
multiplies them by ``Spec.tol_factor``. A result that is off by less than
``ROUNDOFF_REL`` (relative to its scale) and matches no listed mistake is reported as
"float32 round-off?", not as a wrong formula.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import io
import os
import signal
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ...schedules import Schedule

PASS, FAIL, NOT_IMPLEMENTED, ERROR = "pass", "fail", "not implemented", "error"

# The one tolerance rule of every check: |got - ref| <= atol + rtol * max|ref| elementwise (the
# error relative to the scale of the whole output), with (rtol, atol) looked up by the dtype of
# the reference's output. float32 needs rtol 1e-3: a right formula that casts alpha_bar_t to
# float32 before taking 1 - alpha_bar_t loses about 3e-4 (relative) at t = 1, where
# 1 - alpha_bar_1 = 1e-4. Mistakes are told apart on the float64 cases, which come first.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-6, 1e-8),
    torch.float32: (1e-3, 1e-5),
}
# Below this relative error (max |got - ref| / max |ref|, or 3 rtol if larger: 1e-5 for float64
# results, 3e-3 for float32 ones) a failure that matches no listed mistake is reported as
# "float32 round-off?" (a float32 tensor inside a float64 computation, or a cancellation such
# as 1 - alpha_bar_1 in float32). Larger errors are formula errors.
ROUNDOFF_REL = 1e-5
OUTPUT_LINES = 20        # printed lines of the student's output shown per check
DEFAULT_TIMEOUT = 30.0   # seconds of the student's code per check (DMLIB_CHECKS_TIMEOUT)

GENERIC = "values differ from the reference"  # the start of the message without a hint


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
    """What a check compares. ``float32``: index of the case that is repeated with every
    float64 tensor argument cast to float32 (appended last; None where the inputs hold no
    float tensor, e.g. a schedule and t). ``arg_names``: names for the arguments in
    messages (default: the student's parameter names). ``tol_factor`` scales
    ``TOLERANCES``. ``elementwise``: compare relative to each entry instead of the output's
    scale, for outputs that span orders of magnitude (alpha_bar_t, SNR_t, beta_tilde_t)."""

    name: str
    reference: Callable[..., torch.Tensor]
    cases: Sequence[Case]
    mistakes: Sequence[Mistake] = field(default_factory=list)
    broadcast_hint: str = ""
    float32: int | None = 0
    arg_names: Sequence[str] | None = None
    tol_factor: float = 1.0
    elementwise: bool = False


def tolerance(dtype: torch.dtype, factor: float = 1.0) -> tuple[float, float]:
    """(rtol, atol) for an output of ``dtype`` (float32 for every float type but float64)."""
    rtol, atol = TOLERANCES.get(dtype, TOLERANCES[torch.float32])
    return rtol * factor, atol * factor


def _close(a: Any, b: torch.Tensor, rtol: float, atol: float, elementwise: bool = False) -> bool:
    """The tolerance rule (see TOLERANCES): |a - b| <= atol + rtol * max |b| (or rtol * |b|
    entry by entry with ``elementwise``)."""
    if not (isinstance(a, torch.Tensor) and a.shape == b.shape):
        return False
    a, b = a.detach().double(), b.detach().double()
    if not torch.isfinite(b).all():
        return bool(torch.equal(a, b))
    scale = b.abs() if elementwise else (b.abs().max() if b.numel() else torch.zeros(()))
    return bool(((a - b).abs() <= atol + rtol * scale).all())


# --------------------------------------------------------------------------------------
# Copies of the inputs, and what changed in place
def _to32(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) and obj.dtype == torch.float64:
        return obj.to(torch.float32)
    if isinstance(obj, tuple):
        return tuple(_to32(o) for o in obj)
    if isinstance(obj, list):
        return [_to32(o) for o in obj]
    return obj


def _copy(args: tuple) -> tuple:
    out = []
    for a in args:
        if isinstance(a, (torch.Tensor, Schedule, list, tuple, dict)):
            out.append(copy.deepcopy(a))
        else:  # functions, models, numbers: passed as they are
            out.append(a)
    return tuple(out)


def _changed(orig: Any, new: Any, name: str) -> str | None:
    """The name of the first tensor in ``new`` that differs from ``orig``, or None."""
    if isinstance(orig, torch.Tensor):
        if not isinstance(new, torch.Tensor) or new.shape != orig.shape or new.dtype != orig.dtype:
            return name
        same = torch.equal(new, orig) or bool(((new == orig) | (new.isnan() & orig.isnan())).all())
        return None if same else name
    if isinstance(orig, Schedule):
        for k, v in vars(orig).items():
            if isinstance(v, torch.Tensor):
                hit = _changed(v, getattr(new, k, None), f"{name}.{k}")
                if hit:
                    return hit
        return None
    if isinstance(orig, (list, tuple)) and isinstance(new, (list, tuple)) and len(orig) == len(new):
        for i, (o, n) in enumerate(zip(orig, new)):
            hit = _changed(o, n, f"{name}[{i}]")
            if hit:
                return hit
    return None


def _arg_names(fn: Callable, spec: Spec, n: int) -> list[str]:
    if spec.arg_names is not None:
        return list(spec.arg_names)
    try:
        params = list(inspect.signature(fn).parameters.values())
        if len(params) == n and all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                                    for p in params):
            return [p.name for p in params]
    except (TypeError, ValueError):
        pass
    return [f"argument {i + 1}" for i in range(n)]


def _modified_message(what: str, is_schedule: bool) -> str:
    if is_schedule:
        field_ = what.split(".", 1)[1] if "." in what else what
        return (f"your function changed {what} in place (an in-place operation such as "
                f".sqrt_(), += or *= on schedule.{field_} or on a view of it, e.g. "
                f"schedule.{field_}[t]). The check ran on a copy, but in the notebook this "
                "corrupts the schedule for every later cell: use out-of-place operations "
                "(.sqrt(), a = a * ...) on the values you read")
    return (f"your function changed its input {what} in place (x += ..., x.mul_(...), "
            "x[...] = ..., or .sqrt_() on it): the caller still needs it. Compute a new tensor "
            "instead (x = x * ...), or work on x.clone()")


# --------------------------------------------------------------------------------------
# Running the student's code: time limit, capped output, every exception recorded
class _Timeout(BaseException):
    """Raised in the student's code when the check's time limit is reached."""


class _CappedStream(io.TextIOBase):
    """Keeps the first ``lines`` lines written to it and counts the rest."""

    def __init__(self, lines: int) -> None:
        self.limit, self.kept, self.lines, self.hidden = lines, [], 0, 0
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        s = str(s)
        self._partial += s
        *done, self._partial = self._partial.split("\n")
        for line in done:
            self._add(line)
        if len(self._partial) > 2000:  # a huge line without a newline
            self._add(self._partial[:2000] + " ...")
            self._partial = ""
        return len(s)

    def _add(self, line: str) -> None:
        self.lines += 1
        if len(self.kept) < self.limit:
            self.kept.append(line if len(line) <= 500 else line[:500] + " ...")
        else:
            self.hidden += 1

    def flush(self) -> None:
        pass

    def text(self) -> str:
        if self._partial:
            self._add(self._partial)
            self._partial = ""
        out = "\n".join(self.kept)
        if self.hidden:
            out += (f"\n... ({self.hidden} more line{'s' * (self.hidden != 1)} of output from "
                    "your function not shown)")
        return out


def _timeout_seconds() -> float:
    try:
        return float(os.environ.get("DMLIB_CHECKS_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def _call_limited(fn: Callable, args: tuple, seconds: float) -> Any:
    """fn(*args), raising _Timeout after ``seconds`` (0 or less: no limit)."""
    if seconds <= 0:
        raise _Timeout()
    use_alarm = (hasattr(signal, "setitimer")
                 and threading.current_thread() is threading.main_thread())
    if use_alarm:
        def on_alarm(signum, frame):
            raise _Timeout()
        start = time.monotonic()
        old_handler = signal.signal(signal.SIGALRM, on_alarm)
        old_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old_handler)
            if old_delay > 0:  # someone else's timer was running: give it back what is left
                signal.setitimer(signal.ITIMER_REAL,
                                 max(old_delay - (time.monotonic() - start), 1e-3))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
            box["exc"] = e
    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    if th.is_alive():  # the thread cannot be stopped; it is abandoned
        raise _Timeout()
    if "exc" in box:
        raise box["exc"]
    return box["out"]


def _raised_by(fn: Callable, exc: BaseException) -> tuple[bool, str]:
    """(whether ``exc`` was raised in fn's own body, 'name (line N)' of the raising frame)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return True, ""
    code = getattr(inspect.unwrap(fn), "__code__", None)
    where = f"{tb.tb_frame.f_code.co_name} (line {tb.tb_lineno})"
    return code is None or tb.tb_frame.f_code is code, where


class _Interrupted(Exception):
    def __init__(self, result: "CheckResult", exc: BaseException) -> None:
        super().__init__(result.message)
        self.result, self.exc = result, exc


def _fmt_err(err: float) -> str:
    return f"{err:.3g}"


def _all_cases(spec: Spec) -> list[Case]:
    cases = list(spec.cases)
    if spec.float32 is not None:
        base = cases[spec.float32]
        cases.append(Case(_to32(base.args), base.desc + ", in float32"))
    return cases


def _call_student(fn: Callable, args: tuple, deadline: float, out: _CappedStream) -> Any:
    with torch.enable_grad(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        return _call_limited(fn, args, deadline - time.monotonic())


def _crash(fn: Callable, spec: Spec, case: Case, i: int, e: BaseException,
           budget: float) -> CheckResult:
    """The result for a student function that raised ``e`` on ``case`` (a keyboard interrupt
    is recorded and raised on as _Interrupted)."""
    def error(msg: str) -> CheckResult:
        return CheckResult(spec.name, ERROR, msg, i)
    if isinstance(e, _Timeout):
        return error(f"your function did not return within {budget:g} s (on {case.desc}): an "
                     "endless loop, or a loop over far more steps than needed?")
    if isinstance(e, NotImplementedError):
        own, where = _raised_by(fn, e)
        if own:
            return CheckResult(spec.name, NOT_IMPLEMENTED, "not implemented yet: write your "
                               "code between the solution markers, then re-run the exercise "
                               "cell and this one")
        return error(f"your function raised NotImplementedError from {where} on {case.desc}: "
                     "a helper that is not written yet? Finish it (or compute without it) and "
                     "re-run")
    if isinstance(e, KeyboardInterrupt):
        raise _Interrupted(error(f"interrupted (KeyboardInterrupt) while your function ran on "
                                 f"{case.desc}"), e) from None
    if isinstance(e, SystemExit):
        return error(f"your function raised SystemExit ({e.code}) on {case.desc}: do not call "
                     "exit() or sys.exit() in an exercise; return the result")
    if not isinstance(e, Exception):  # GeneratorExit and the like
        return error(f"your function raised {type(e).__name__} on {case.desc}")
    hint = ""  # the student's code crashed: say where, with a hint
    if isinstance(e, RuntimeError) and ("dtype" in str(e) or "scalar type" in str(e)):
        hint = (" Hint: two dtypes meet (float32 data or model, float64 schedule): cast what "
                "you read from the schedule to the data's dtype (.to(x.dtype))")
    elif isinstance(e, (RuntimeError, IndexError)) and spec.broadcast_hint:
        hint = " Hint: " + spec.broadcast_hint
    return error(f"your function raised {type(e).__name__} on {case.desc}: {e}.{hint}")


def _evaluate(fn: Callable, spec: Spec, out: _CappedStream) -> CheckResult:
    if not callable(fn):
        return CheckResult(spec.name, ERROR, f"expected a function, got {type(fn).__name__}")
    cases = _all_cases(spec)
    budget = _timeout_seconds()
    deadline = time.monotonic() + budget
    for i, case in enumerate(cases):
        names = _arg_names(fn, spec, len(case.args))
        mine = _copy(case.args)
        try:
            got = _call_student(fn, mine, deadline, out)
        except BaseException as e:  # noqa: BLE001 (every outcome is recorded)
            return _crash(fn, spec, case, i, e, budget)
        try:
            result = _judge(fn, spec, case, i, names, mine, got, deadline, out)
        except KeyboardInterrupt as e:
            raise _Interrupted(CheckResult(spec.name, ERROR, "interrupted (KeyboardInterrupt) "
                                           f"while checking {case.desc}", i), e) from None
        if result is not None:
            return result
    n = len(cases)
    return CheckResult(spec.name, PASS, f"all {n} cases agree with the reference", n)


def _judge(fn: Callable, spec: Spec, case: Case, i: int, names: list[str], mine: tuple,
           got: Any, deadline: float, out: _CappedStream) -> CheckResult | None:
    """The result of one case (None: it agrees with the reference)."""
    def fail(msg: str) -> CheckResult:
        return CheckResult(spec.name, FAIL, f"on {case.desc}: {msg}", i)
    for k, (orig, new) in enumerate(zip(case.args, mine)):
        hit = _changed(orig, new, names[k] if k < len(names) else f"argument {k + 1}")
        if hit:
            return fail(_modified_message(hit, isinstance(orig, Schedule)))
    with torch.no_grad():
        expected = spec.reference(*case.args)
    if not isinstance(got, torch.Tensor):
        return fail(f"return a torch.Tensor, got {type(got).__name__}")
    got = got.detach()
    if got.shape != expected.shape:
        hint = f" Hint: {spec.broadcast_hint}" if spec.broadcast_hint else ""
        return fail(f"wrong shape, expected {tuple(expected.shape)}, got {tuple(got.shape)}.{hint}")
    if (got.is_floating_point() or got.is_complex()) and not torch.isfinite(got).all():
        return fail("the output contains NaN or inf (a division by zero, or log/sqrt of a "
                    "negative?)")
    rtol, atol = tolerance(expected.dtype, spec.tol_factor)
    dtype_note = ""
    if got.dtype != expected.dtype:
        dtype_note = (f"your result is {str(got.dtype).replace('torch.', '')} where "
                      f"{str(expected.dtype).replace('torch.', '')} is expected")
    if _close(got, expected, rtol, atol, spec.elementwise):
        if dtype_note:
            return fail(f"the values are right but {dtype_note}. "
                        + _dtype_hint(expected.dtype, case.args))
        return None
    tail = f" (also, {dtype_note})" if dtype_note else ""
    return fail(_diagnose(fn, spec, case, names, got, expected, rtol, atol, deadline, out) + tail)


def _diagnose(fn: Callable, spec: Spec, case: Case, names: list[str], got: torch.Tensor,
              expected: torch.Tensor, rtol: float, atol: float, deadline: float,
              out: _CappedStream) -> str:
    """The hint for wrong values: a listed mistake, float32 round-off, where the error is, or
    the generic message."""
    with torch.no_grad():
        for m in spec.mistakes:
            try:
                if _close(got, m.wrong(*case.args), rtol, atol, spec.elementwise):
                    return m.hint
            except Exception:  # a mistake that does not apply to this case
                continue
    diff = (got.double() - expected.double()).abs()
    err = diff.max().item()
    scale = max(expected.double().abs().max().item(), 1e-12)
    rel = (diff / (expected.double().abs() + atol)).max().item() if spec.elementwise else err / scale
    if rel < max(ROUNDOFF_REL, 3 * rtol):
        return (f"float32 round-off? your values agree with the reference to {rel:.1g} "
                f"(relative; max abs error {_fmt_err(err)}), about the resolution of float32, "
                "not a wrong formula. Look for a float32 tensor or constant in the computation "
                "(torch.tensor(0.5) and torch.arange are float32 by default), or a difference "
                "of nearly equal numbers such as 1 - alpha_bar_t taken in float32")
    where = _localise(fn, spec, case, names, got, expected, rtol, atol, deadline, out)
    if where:
        return f"{where} (max abs error {_fmt_err(err)})"
    return (f"{GENERIC} (max abs error {_fmt_err(err)}); re-read the equation above the "
            "exercise term by term")


# --------------------------------------------------------------------------------------
# Where the error is, when no listed mistake matches: a constant factor or offset, the
# examples (timesteps) that are wrong, or the arguments the error does not depend on.
def _localise(fn: Callable, spec: Spec, case: Case, names: list[str], got: torch.Tensor,
              expected: torch.Tensor, rtol: float, atol: float, deadline: float,
              out: _CappedStream) -> str:
    g, r = got.detach().double(), expected.detach().double()
    tol = atol + rtol * (r.abs().max().item() if r.numel() else 0.0)
    return (_factor_or_offset(g, r, tol) or _wrong_timesteps(case, g, r, tol)
            or _free_arguments(fn, spec, case, names, g - r, rtol, atol, deadline, out))


def _factor_or_offset(g: torch.Tensor, r: torch.Tensor, tol: float) -> str:
    if r.numel() < 2 or float((r * r).sum()) == 0:
        return ""
    k = float((g * r).sum() / (r * r).sum())
    if abs(k - 1) > 1e-3 and bool(((g - k * r).abs() <= tol).all()):
        if abs(k + 1) < 1e-6:
            return "wrong values: they are the reference with the sign flipped everywhere"
        return (f"wrong values: they are {k:.4g} times the reference everywhere, so a constant "
                "factor is off (a 1/2, a 2, a square root of one?)")
    c = float((g - r).mean())
    if abs(c) > tol and bool(((g - r - c).abs() <= tol).all()):
        return (f"wrong values: they are the reference plus the constant {c:.4g} everywhere, so "
                "a constant term is off")
    return ""


def _wrong_timesteps(case: Case, g: torch.Tensor, r: torch.Tensor, tol: float) -> str:
    """Per-example t (a long (B,) argument): which timesteps are wrong, if not all."""
    if g.dim() == 0 or g.shape[0] < 2:
        return ""
    ts = [a for a in case.args if isinstance(a, torch.Tensor) and a.dtype == torch.long
          and a.dim() == 1 and a.numel() == g.shape[0]]
    if not ts:
        return ""
    bad = ((g - r).abs().reshape(g.shape[0], -1) > tol).any(1)
    if not 0 < int(bad.sum()) < bad.numel():
        return ""
    return (f"wrong values, but only for t = {ts[0][bad].tolist()}; right for t = "
            f"{ts[0][~bad].tolist()}: look for what is special at those timesteps (t = 1 or "
            "t = T, an index, a clamp)")


def _free_arguments(fn: Callable, spec: Spec, case: Case, names: list[str], err: torch.Tensor,
                    rtol: float, atol: float, deadline: float, out: _CappedStream) -> str:
    """Change one float argument at a time: the arguments that leave the error unchanged only
    enter terms that are right."""
    floats = [k for k, a in enumerate(case.args) if isinstance(a, torch.Tensor)
              and a.is_floating_point() and a.numel() > 0]
    if len(floats) < 2:
        return ""
    gen = torch.Generator().manual_seed(1234)
    free = []
    for k in floats:
        a = case.args[k]
        noise = torch.randn(a.shape, generator=gen, dtype=torch.float64).to(a.dtype)
        spread = float(a.double().std()) if a.numel() > 1 else 1.0
        args = list(case.args)
        args[k] = a * torch.exp(0.3 * noise) if bool((a > 0).all()) else a + 0.5 * spread * noise
        try:
            g2 = _call_student(fn, _copy(tuple(args)), deadline, out)
            with torch.no_grad():
                r2 = spec.reference(*args)
        except (Exception, _Timeout):
            return ""
        if not isinstance(g2, torch.Tensor) or g2.shape != r2.shape:
            return ""
        scale = max(float((r2.double() - err).abs().max()), float(r2.double().abs().max()))
        if bool(((g2.detach().double() - r2.double() - err).abs() <= atol + 10 * rtol * scale).all()):
            free.append(k)
    if not free or len(free) == len(floats):
        return ""
    def nm(ks: list[int]) -> str:
        return ", ".join(names[k] if k < len(names) else f"argument {k + 1}" for k in ks)
    rest = [k for k in floats if k not in free]
    return (f"wrong values; the error does not change when {nm(free)} change"
            f"{'s' * (len(free) == 1)}, so the terms that involve only {nm(free)} are right: "
            f"re-check how {nm(rest)} enter the formula")


def _dtype_hint(expected: torch.dtype, args: tuple) -> str:
    if expected == torch.float32 and not any(isinstance(a, Schedule) for a in args):
        return ("The exercise asks for float32: convert with .float() (float64 doubles the "
                "memory and does not mix with the chapter's float32 model)")
    if expected == torch.float32:
        return ("The inputs are float32 and the schedule's tensors float64: cast the "
                "coefficients to the data's dtype (schedule.alpha_bar[t].to(x.dtype), or "
                "schedule.extract(...), which does it), or the chapter's float32 model will "
                "fail on your result")
    return ("Keep the dtype of the inputs: a tensor created without dtype= (torch.tensor, "
            "torch.zeros, torch.arange of floats) is float32; pass dtype=x.dtype or "
            "dtype=torch.float64")


#: Check lines are wrapped at word boundaries to this width, continuation lines indented by
#: four spaces: JupyterLab wraps printed text anywhere (``word-break: break-all``), which cut
#: long hints mid-word. The grader joins the continuation lines back (``dmlib.course.grade``).
REPORT_WIDTH = 88


def report_line(line: str) -> str:
    """``line`` wrapped at word boundaries to ``REPORT_WIDTH``, continuation lines indented."""
    return textwrap.fill(line, width=REPORT_WIDTH, subsequent_indent="    ",
                         break_long_words=False, break_on_hyphens=False)


def run_check(fn: Callable, spec: Spec, verbose: bool = True) -> CheckResult:
    """Evaluate ``fn`` against ``spec``, print one line, record and return the result."""
    out = _CappedStream(OUTPUT_LINES)
    interrupt = None
    try:
        result = _evaluate(fn, spec, out)
    except _Interrupted as e:
        result, interrupt = e.result, e.exc
    RESULTS.append(result)
    label = {PASS: "PASS", FAIL: "FAIL", ERROR: "FAIL", NOT_IMPLEMENTED: "NOT IMPLEMENTED YET"}
    if verbose:
        printed = out.text()
        if printed:
            print(f"[output of your function during {spec.name}]\n{printed}")
        print(report_line(f"{label[result.status]} {spec.name}: {result.message}"))
    if interrupt is not None:
        raise interrupt
    strict = os.environ.get("DMLIB_CHECKS_STRICT", "").strip() not in ("", "0")
    if strict and result.status in (FAIL, ERROR):
        raise CheckFailed(f"{spec.name}: {result.message}")
    return result


def wraps(fn: Callable) -> Callable[[Callable], Callable]:
    """functools.wraps for the checks' adapters (so messages use the student's names)."""
    return functools.wraps(fn, assigned=("__module__", "__name__", "__qualname__", "__doc__"))


# --------------------------------------------------------------------------------------
# Shared inputs: seeded, several shapes, scalar and per-example t, first and last steps.
def _schedules() -> list[Schedule]:
    return [Schedule.linear(1000), Schedule.cosine(50)]


def _x(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    # float64 for the formula; each check adds one float32 case (Spec.float32)
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
