"""Chapter 4's checks: references written independently here pass, stubs say NOT IMPLEMENTED
YET, and realistic wrong versions are rejected with the hint that names the mistake."""

import pytest
import torch

from dmlib import checks
from helpers import stub  # tests/helpers.py


_stub = stub


def _run(check, fn):
    return check(fn, verbose=False)


# ---- check_posterior_variance ----------------------------------------------------------------
def _bt(s, t, prev_shift=-1, shift=0):
    """(1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t from the betas alone (independent)."""
    t = torch.as_tensor(t) + shift
    ab = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.float64), 1 - s.betas[1:]]), 0)
    return (1 - ab[t + prev_shift]) / (1 - ab[t]) * s.betas[t]


def test_posterior_variance_reference_and_stub(capsys):
    assert _run(checks.check_posterior_variance, lambda s, t: _bt(s, t)).passed
    r = checks.check_posterior_variance(_stub)
    assert r.status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, t: (1 - s.alpha_bar[t]) / (1 - s.alpha_bar_prev[t]) * s.betas[t], "upside down"),
    (lambda s, t: _bt(s, t).sqrt(), "standard deviation"),
    (lambda s, t: _bt(s, t, shift=-1), "t off by one"),
    (lambda s, t: _bt(s, t, shift=1), "t off by one"),
    (lambda s, t: s.betas[t], "beta_t itself"),
    (lambda s, t: (1 - s.alphas[torch.as_tensor(t) - 1]) / (1 - s.alphas[t]) * s.betas[t], "cumulative"),
    (lambda s, t: s.posterior_variance[t].tolist(), "return a torch.Tensor"),
])
def test_posterior_variance_mistakes(wrong, hint):
    r = _run(checks.check_posterior_variance, wrong)
    assert r.status == checks.FAIL and hint in r.message, r.message


# ---- check_equal_variance_kl -----------------------------------------------------------------
def _kl(a, b, v):
    # the general Gaussian KL with equal variances, per element, summed (independent reference)
    vv = v.reshape(-1, *[1] * (a.dim() - 1)).expand_as(a)
    kl = 0.5 * (torch.log(vv / vv) + (vv + (a - b) ** 2) / vv - 1)
    return kl.flatten(1).sum(1)


def test_equal_variance_kl_reference_and_stub(capsys):
    assert _run(checks.check_equal_variance_kl, _kl).passed
    r = checks.check_equal_variance_kl(_stub)
    assert r.status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, b, v: 2 * _kl(a, b, v), "1/2 is missing"),
    (lambda a, b, v: _kl(a, b, v) * v / v.sqrt(), "standard deviation"),
    (lambda a, b, v: _kl(a, b, v) / v, "squared it again"),
    (lambda a, b, v: _kl(a, b, v) / a[0].numel(), "SUM"),
    (lambda a, b, v: _kl(a, b, v) - 0.5, "- 1/2"),
    (lambda a, b, v: ((a - b) ** 2 / 2), "shape (B,)"),
    (lambda a, b, v: ((a - b) ** 2).flatten(1).sum(1) / (2 * v[:, None]), "shape (B,)"),
])
def test_equal_variance_kl_mistakes(wrong, hint):
    r = _run(checks.check_equal_variance_kl, wrong)
    assert r.status in (checks.FAIL, checks.ERROR) and hint in r.message, r.message


# ---- check_gaussian_denoiser -----------------------------------------------------------------
def _den(s, xt, t, m, v, shift=0):
    # precision-weighted combination of the prior N(m, v) and the "observation" x_t / a
    t = torch.as_tensor(t) + shift
    ab = s.alpha_bar[t].to(xt.dtype)
    ab = ab.reshape(-1, *[1] * (xt.dim() - 1)) if t.dim() else ab
    a = ab.sqrt()
    prec = 1 / v + ab / (1 - ab)
    return (m / v + a * xt / (1 - ab)) / prec


def test_gaussian_denoiser_reference_and_stub(capsys):
    assert _run(checks.check_gaussian_denoiser, _den).passed
    r = checks.check_gaussian_denoiser(_stub)
    assert r.status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


def test_gaussian_denoiser_via_dmlib_optimal_passes():
    from dmlib.optimal import GaussianData, optimal_x0

    def mine(s, xt, t, m, v):
        data = GaussianData(torch.full((1,), m), torch.full((1,), v))
        flat = xt.reshape(-1, 1)
        tt = torch.as_tensor(t)
        tt = tt.repeat_interleave(xt[0].numel()) if tt.dim() else tt
        return optimal_x0(data, s, flat, tt).reshape(xt.shape).to(xt.dtype)
    assert _run(checks.check_gaussian_denoiser, mine).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, xt, t, m, v: _den(s, xt, t, m, v, shift=-1), "t off by one"),
    (lambda s, xt, t, m, v: _den(s, xt, t, m, v, shift=1), "t off by one"),
    (lambda s, xt, t, m, v: m + (lambda ab: ab * v / (ab * v + 1 - ab) * (xt - ab * m))(
        s.extract(s.alpha_bar, t, xt)), "square root is missing"),
    (lambda s, xt, t, m, v: m + (lambda ab: ab.sqrt() * v / (v + 1 - ab) * (xt - ab.sqrt() * m))(
        s.extract(s.alpha_bar, t, xt)), "scaled by alpha_bar_t"),
    (lambda s, xt, t, m, v: (lambda ab: ab.sqrt() * v / (ab * v + 1 - ab) * xt)(
        s.extract(s.alpha_bar, t, xt)), "mean is missing"),
    (lambda s, xt, t, m, v: xt / s.extract(s.alpha_bar, t, xt).sqrt(), "ignores the noise"),
    (lambda s, xt, t, m, v: m + (lambda ab: ab.sqrt() * v / (ab * v + 1 - ab) * (xt - ab.sqrt() * m))(
        s.alpha_bar[t].to(xt.dtype)), "reshape them"),
])
def test_gaussian_denoiser_mistakes(wrong, hint):
    r = _run(checks.check_gaussian_denoiser, wrong)
    assert r.status in (checks.FAIL, checks.ERROR) and hint in r.message, r.message


def test_checks_are_exported():
    for name in ("check_posterior_variance", "check_equal_variance_kl", "check_gaussian_denoiser"):
        assert name in checks.__all__ and callable(getattr(checks, name))
