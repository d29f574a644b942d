"""Exercise checks: the reference passes, stubs say NOT IMPLEMENTED YET, and realistic
mistakes are rejected with a hint that points at them."""

import pytest
import torch

from dmlib import checks
from helpers import gather, stub  # tests/helpers.py


def _status(check, fn):
    return check(fn, verbose=False)


_stub = stub


# ---- alpha_bar ---------------------------------------------------------------------------
def test_alpha_bar_reference_passes_and_stub_is_not_implemented(capsys):
    r = checks.check_alpha_bar(lambda b: torch.cumprod(1 - b, 0))
    assert r.passed and "PASS check_alpha_bar" in capsys.readouterr().out
    r = checks.check_alpha_bar(_stub)
    assert r.status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda b: torch.cumprod(b, 0), "1 - beta_s"),
    (lambda b: 1 - b, "running product"),
    (lambda b: torch.cumsum(1 - b, 0), "running sum"),
    (lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)[:-1]]), "one step early"),
    (lambda b: torch.cumprod(1 - b, 0).sqrt(), "square root"),
    (lambda b: torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)]), "wrong shape"),
    (lambda b: [1.0], "return a torch.Tensor"),
])
def test_alpha_bar_mistakes(wrong, hint):
    r = _status(checks.check_alpha_bar, wrong)
    assert r.status == checks.FAIL and hint in r.message


# ---- q_sample ----------------------------------------------------------------------------
def _ab(s, t, x, shift=0):
    v = s.alpha_bar[torch.as_tensor(t) + shift].to(x.dtype)
    return v.reshape(-1, *[1] * (x.dim() - 1)) if torch.as_tensor(t).dim() else v


def test_q_sample_reference_passes():
    from dmlib.forward import q_sample
    assert _status(checks.check_q_sample, lambda s, x0, t, e: q_sample(s, x0, t, eps=e)).passed


def test_q_sample_independent_solution_passes():
    def mine(s, x0, t, eps):
        a = _ab(s, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps
    assert _status(checks.check_q_sample, mine).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, x0, t, e: _ab(s, t, x0, -1).sqrt() * x0 + (1 - _ab(s, t, x0, -1)).sqrt() * e, "t off by one"),
    (lambda s, x0, t, e: _ab(s, t, x0).sqrt() * x0 + (1 - _ab(s, t, x0)) * e, "standard deviation"),
    (lambda s, x0, t, e: _ab(s, t, x0) * x0 + (1 - _ab(s, t, x0)).sqrt() * e, "square root"),
    (lambda s, x0, t, e: _ab(s, t, x0).sqrt() * x0 - (1 - _ab(s, t, x0)).sqrt() * e, "sign"),
    (lambda s, x0, t, e: _ab(s, t, x0).sqrt() * x0, "does not use eps"),
    (lambda s, x0, t, e: x0 @ e, "raised RuntimeError"),
])
def test_q_sample_mistakes(wrong, hint):
    r = _status(checks.check_q_sample, wrong)
    assert r.status in (checks.FAIL, checks.ERROR) and hint in r.message, r.message


def test_q_sample_alpha_instead_of_alpha_bar():
    def wrong(s, x0, t, e):
        a = s.alphas[torch.as_tensor(t)].to(x0.dtype)
        a = a.reshape(-1, *[1] * (x0.dim() - 1)) if torch.as_tensor(t).dim() else a
        return a.sqrt() * x0 + (1 - a).sqrt() * e
    r = _status(checks.check_q_sample, wrong)
    assert r.status == checks.FAIL and "alpha_bar_t" in r.message and "one step" in r.message


def test_q_sample_broadcasting_error_gets_hint():
    def no_reshape(s, x0, t, e):  # forgets to reshape the (B,) coefficient
        a = s.alpha_bar[torch.as_tensor(t)].to(x0.dtype)
        return a.sqrt() * x0 + (1 - a).sqrt() * e
    r = _status(checks.check_q_sample, no_reshape)
    assert r.status in (checks.FAIL, checks.ERROR) and "(B, 1, ..., 1)" in r.message


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv("DMLIB_CHECKS_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="check_alpha_bar"):
        checks.check_alpha_bar(lambda b: 1 - b, verbose=False)
    # a stub is not a failure, even in strict mode
    assert checks.check_alpha_bar(_stub, verbose=False).status == checks.NOT_IMPLEMENTED


def test_not_callable():
    assert _status(checks.check_alpha_bar, 3).status == checks.ERROR


# ---- posterior mean ------------------------------------------------------------------------
_g = gather


def _post(s, x0, xt, t, shift=0, swap=False, bar=False):
    ab, abp, b = _g(s.alpha_bar, t, x0, shift), _g(s.alpha_bar_prev, t, x0, shift), _g(s.betas, t, x0, shift)
    a = ab if bar else _g(s.alphas, t, x0, shift)
    c0, ct = abp.sqrt() * b / (1 - ab), a.sqrt() * (1 - abp) / (1 - ab)
    return (ct * x0 + c0 * xt) if swap else (c0 * x0 + ct * xt)


def test_posterior_mean_independent_solution_passes():
    assert _status(checks.check_posterior_mean, _post).passed


@pytest.mark.parametrize("kw, hint", [
    (dict(shift=-1), "off by"), (dict(swap=True), "swapped"), (dict(bar=True), "single-step alpha_t"),
])
def test_posterior_mean_mistakes(kw, hint):
    r = _status(checks.check_posterior_mean, lambda *a: _post(*a, **kw))
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_posterior_mean_stub():
    assert _status(checks.check_posterior_mean, _stub).status == checks.NOT_IMPLEMENTED


# ---- chapter 0: pixels to [-1, 1], SNR ------------------------------------------------------
def test_to_model_range_reference_and_stub():
    assert _status(checks.check_to_model_range, lambda p: p.float() / 127.5 - 1).passed
    assert _status(checks.check_to_model_range, lambda p: (p.float() - 127.5) / 127.5).passed
    assert _status(checks.check_to_model_range, _stub).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong, hint", [
    (lambda p: p.float() / 255, "[0, 1]"),
    (lambda p: p.float() / 128 - 1, "255 / 2"),
    (lambda p: p.float() / 255 - 0.5, "scale by 2"),
    (lambda p: (p * 2) / 255 - 1, "wraps around"),
    (lambda p: p, "integers"),
])
def test_to_model_range_mistakes(wrong, hint):
    r = _status(checks.check_to_model_range, wrong)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_snr_reference_and_stub():
    assert _status(checks.check_snr, lambda a: a / (1 - a)).passed
    assert _status(checks.check_snr, _stub).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong, hint", [
    (lambda a: (1 - a) / a, "signal"),
    (lambda a: a.sqrt() / (1 - a).sqrt(), "ratio of variances"),
    (lambda a: torch.log(a / (1 - a)), "log SNR"),
    (lambda a: a / (1 + a), "1 - alpha_bar_t"),
])
def test_snr_mistakes(wrong, hint):
    r = _status(checks.check_snr, wrong)
    assert r.status == checks.FAIL and hint in r.message, r.message
