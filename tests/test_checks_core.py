"""The check framework itself (dmlib.course.checks._core): copies and in-place changes, dtypes,
gradients, time limit, capped output, every exception recorded, the tolerance rule."""

import signal
import sys

import pytest
import torch

from dmlib import checks
from dmlib.course.checks import _core
from helpers import gather


def _ab(s, t, x):
    return gather(s.alpha_bar, t, x)


def q_sample_ok(s, x0, t, eps):
    a = _ab(s, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


# ---- dtypes ------------------------------------------------------------------------------
def test_every_check_with_float_inputs_has_a_float32_case():
    import functools
    from checks_corpus import RIGHT
    seen = {}
    for name, _, fn in RIGHT:
        if name in seen:
            continue
        dtypes = set()

        @functools.wraps(fn)
        def spy(*args, fn=fn, dtypes=dtypes):
            dtypes.update(a.dtype for a in args if isinstance(a, torch.Tensor))
            return fn(*args)
        assert getattr(checks, name)(spy, verbose=False).passed, name
        seen[name] = torch.float32 in dtypes
    assert len(seen) == 27
    # only the checks whose inputs hold no float64 tensor have no float32 case
    assert {n for n, has32 in seen.items() if not has32} == {
        "check_to_model_range", "check_cosine_alpha_bar", "check_posterior_variance"}


def test_forgotten_cast_to_x_dtype_fails_with_a_dtype_message():
    def no_cast(s, x0, t, eps):  # schedule tensors are float64: the result is promoted
        a = s.alpha_bar[torch.as_tensor(t)]
        a = a.reshape(-1, *[1] * (x0.dim() - 1)) if torch.as_tensor(t).dim() else a
        return a.sqrt() * x0 + (1 - a).sqrt() * eps
    r = checks.check_q_sample(no_cast, verbose=False)
    assert r.status == checks.FAIL and "in float32" in r.message
    assert "values are right but your result is float64 where float32" in r.message
    assert ".to(x.dtype)" in r.message


def test_float32_result_where_float64_is_asked_fails():
    r = checks.check_q_sample(lambda s, x0, t, e: q_sample_ok(s, x0, t, e).float(), verbose=False)
    assert r.status == checks.FAIL and "float32 where float64 is expected" in r.message
    r = checks.check_to_model_range(lambda p: p.double() / 127.5 - 1, verbose=False)
    assert r.status == checks.FAIL and "float64 where float32" in r.message


def test_float32_roundoff_is_named_not_called_a_wrong_formula():
    def rounded(s, x0, t, e):  # a right formula, off by a few float32 ulps
        return q_sample_ok(s, x0, t, e) * (1 + 3e-6)
    r = checks.check_q_sample(rounded, verbose=False)
    assert r.status == checks.FAIL and "float32 round-off?" in r.message, r.message

    def in_float32(s, x0, t, e):  # computed in float32 (1 - alpha_bar_t too), returned as float64
        a = s.alpha_bar.float()[torch.as_tensor(t)]
        a = a.reshape(-1, *[1] * (x0.dim() - 1)) if torch.as_tensor(t).dim() else a
        return (a.sqrt() * x0.float() + (1 - a).sqrt() * e.float()).to(x0.dtype)
    r = checks.check_q_sample(in_float32, verbose=False)
    assert r.passed or "float32 round-off?" in r.message, r.message


def test_right_formula_computed_in_float32_passes_the_float32_case():
    def chapter_style(s, x0, t, e):  # cast first, then 1 - alpha_bar in float32
        a = s.extract(s.alpha_bar, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * e
    assert checks.check_q_sample(chapter_style, verbose=False).passed

    def post(s, x0, xt, t):
        ab, abp = s.extract(s.alpha_bar, t, xt), s.extract(s.alpha_bar_prev, t, xt)
        b, a = s.extract(s.betas, t, xt), s.extract(s.alphas, t, xt)
        return abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt
    assert checks.check_posterior_mean(post, verbose=False).passed


def test_tolerance_table_is_the_one_rule():
    assert _core.tolerance(torch.float64) == _core.TOLERANCES[torch.float64]
    assert _core.tolerance(torch.float32) == _core.TOLERANCES[torch.float32]
    ref = torch.tensor([100.0, 0.0], dtype=torch.float64)
    rtol, atol = _core.tolerance(torch.float64)
    assert _core._close(ref + 0.5 * rtol * 100, ref, rtol, atol)  # relative to max |ref|
    assert not _core._close(ref + 2 * rtol * 100, ref, rtol, atol)


# ---- copies and in-place changes ---------------------------------------------------------
def test_in_place_change_of_an_input_is_reported_by_name():
    def mutates(s, x0, t, eps):
        out = q_sample_ok(s, x0, t, eps)
        x0.mul_(2)
        return out
    r = checks.check_q_sample(mutates, verbose=False)
    assert r.status == checks.FAIL and "changed its input x0 in place" in r.message


def test_in_place_change_of_the_schedule_is_reported():
    def sqrt_in_place(s, x0, t, eps):
        ab = s.alpha_bar  # a view of the schedule's tensor
        out = q_sample_ok(s, x0, t, eps)
        ab[1:].sqrt_()
        return out
    r = checks.check_q_sample(sqrt_in_place, verbose=False)
    assert r.status == checks.FAIL and "changed s.alpha_bar in place" in r.message
    assert "corrupts the schedule" in r.message


def test_the_reference_runs_on_pristine_inputs():
    # the student scales eps in place by a variance: without copies the reference would run
    # on the changed eps and the hint would name the opposite mistake
    def wrong_and_mutating(s, x0, t, eps):
        a = _ab(s, t, x0)
        eps.mul_(1 - a)
        return a.sqrt() * x0 + eps
    r = checks.check_q_sample(wrong_and_mutating, verbose=False)
    assert r.status == checks.FAIL and "changed its input eps in place" in r.message


def test_check_inputs_are_not_changed_for_the_next_check():
    s_before = checks.check_q_sample  # the cases are rebuilt per call; a second run agrees
    def mutates(s, x0, t, eps):
        s.alpha_bar.sqrt_()
        return q_sample_ok(s, x0, t, eps)
    checks.check_q_sample(mutates, verbose=False)
    assert s_before(q_sample_ok, verbose=False).passed


# ---- gradients ---------------------------------------------------------------------------
def test_autograd_solution_of_coupling_log_det_passes():
    def by_autograd(z, mask, s):
        z = z.detach().clone().requires_grad_(True)
        y = mask * z + (1 - mask) * z * torch.exp(s(mask * z))
        rows = [torch.autograd.grad(y[:, j].sum(), z, retain_graph=True)[0][:, j]
                for j in range(z.shape[1])]
        return torch.log(torch.stack(rows, 1).abs()).sum(1)
    assert checks.check_coupling_log_det(by_autograd, verbose=False).passed


def test_output_that_requires_grad_is_compared():
    def with_graph(s, x0, t, e):
        w = torch.ones((), dtype=x0.dtype, requires_grad=True)
        return w * q_sample_ok(s, x0, t, e)
    assert checks.check_q_sample(with_graph, verbose=False).passed


# ---- time limit, output, exceptions -----------------------------------------------------
def test_a_function_that_never_returns_times_out(monkeypatch):
    monkeypatch.setenv("DMLIB_CHECKS_TIMEOUT", "0.3")
    def forever(b):
        while True:
            pass
    r = checks.check_alpha_bar(forever, verbose=False)
    assert r.status == checks.ERROR and "did not return within 0.3 s" in r.message
    assert checks.RESULTS[-1] is r
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # the timer is off again


def test_time_limit_off_the_main_thread(monkeypatch):
    import threading
    monkeypatch.setenv("DMLIB_CHECKS_TIMEOUT", "0.3")
    box = {}
    def slow(b):
        import time
        time.sleep(1.5)
        return torch.cumprod(1 - b, 0)
    th = threading.Thread(target=lambda: box.setdefault(
        "r", checks.check_alpha_bar(slow, verbose=False)))
    th.start(); th.join()
    assert box["r"].status == checks.ERROR and "did not return" in box["r"].message


def test_printed_output_is_capped(capsys):
    def chatty(b):
        for i in range(60_000):
            print("step", i)
        return torch.cumprod(1 - b, 0)
    r = checks.check_alpha_bar(chatty)
    out = capsys.readouterr().out
    assert r.passed and "PASS check_alpha_bar" in out
    assert len(out.splitlines()) < _core.OUTPUT_LINES + 5
    assert "more lines of output from your function not shown" in out


def test_system_exit_is_recorded():
    r = checks.check_alpha_bar(lambda b: sys.exit(3), verbose=False)
    assert r.status == checks.ERROR and "SystemExit" in r.message and checks.RESULTS[-1] is r


def test_keyboard_interrupt_is_recorded_then_reraised(capsys):
    def interrupted(b):
        raise KeyboardInterrupt
    n = len(checks.RESULTS)
    with pytest.raises(KeyboardInterrupt):
        checks.check_alpha_bar(interrupted)
    assert len(checks.RESULTS) == n + 1 and "interrupted" in checks.RESULTS[-1].message
    assert "FAIL check_alpha_bar: interrupted" in capsys.readouterr().out


def test_not_implemented_in_a_helper_is_an_error_not_a_stub():
    def helper(b):
        raise NotImplementedError()
    def uses_helper(b):
        return helper(b)
    r = checks.check_alpha_bar(uses_helper, verbose=False)
    assert r.status == checks.ERROR and "helper" in r.message and "NotImplementedError" in r.message
    def stub(b):
        raise NotImplementedError()
    assert checks.check_alpha_bar(stub, verbose=False).status == checks.NOT_IMPLEMENTED
    # through an adapter (a pair-returning exercise) the stub is still a stub
    def stub_pair(m1, v1, m2, v2):
        raise NotImplementedError()
    assert checks.check_product_mean_var(stub_pair, verbose=False).status == checks.NOT_IMPLEMENTED


def test_nan_at_t_equal_1_is_caught():
    def nan_at_1(s, x0, xt, t):  # the coefficient form with alpha_bar_{t-1} = alpha_bar_t / alpha_t
        ab, b, a = gather(s.alpha_bar, t, x0), gather(s.betas, t, x0), gather(s.alphas, t, x0)
        abp = ab / a
        tt = torch.as_tensor(t)
        ratio = torch.where(tt.reshape(-1, *[1] * (x0.dim() - 1)) == 1 if tt.dim() else tt == 1,
                            torch.full_like(ab, float("nan")), (1 - abp) / (1 - ab))
        return abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * ratio * xt
    r = checks.check_posterior_mean(nan_at_1, verbose=False)
    assert r.status == checks.FAIL and "NaN" in r.message


def test_rank_3_input_catches_a_hard_coded_image_reshape():
    def four_d(s, x0, t, e):
        a = s.alpha_bar[torch.as_tensor(t)].to(x0.dtype)
        if torch.as_tensor(t).dim():
            a = a.reshape(-1, 1) if x0.dim() == 2 else a.reshape(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * e
    r = checks.check_q_sample(four_d, verbose=False)
    assert r.status == checks.FAIL and "(3, 5, 2)" in r.message and "(B, 1, ..., 1)" in r.message


# ---- where the error is, when no listed mistake matches ----------------------------------
def test_a_constant_offset_is_named():
    r = checks.check_prior_kl(lambda s, x0: _pk_ok(s, x0) + 0.3, verbose=False)
    assert r.status == checks.FAIL and "plus the constant 0.3" in r.message, r.message


def _pk_ok(s, x0):
    ab = float(s.alpha_bar[s.T])
    return (0.5 * (ab * x0 ** 2 + (1 - ab) - 1 - torch.log(torch.tensor(1 - ab, dtype=x0.dtype)))
            ).flatten(1).sum(1)


def test_the_wrong_timesteps_are_named():
    def wrong_late(s, x0, t, e):  # alpha_bar clamped at 0.1: right for early t only
        a = gather(s.alpha_bar, t, x0).clamp(min=0.1)
        return a.sqrt() * x0 + (1 - a).sqrt() * e
    r = checks.check_q_sample(wrong_late, verbose=False)
    assert r.status == checks.FAIL and "only for t = [500, 1000]" in r.message, r.message


def test_the_arguments_the_error_does_not_depend_on_are_named():
    def wrong_noise(s, x0, t, eps):  # the x0 term is right, the noise term is not
        a = _ab(s, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps * (1 + 0.1 * eps)
    r = checks.check_q_sample(wrong_noise, verbose=False)
    assert r.status == checks.FAIL and "does not change when x0 changes" in r.message, r.message
    assert "re-check how eps enter" in r.message
