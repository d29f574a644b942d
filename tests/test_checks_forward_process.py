"""Chapter 3 checks: the reference passes, an independent solution passes, a stub says
NOT IMPLEMENTED YET, and realistic wrong versions are rejected with a hint that names them."""

import math

import pytest
import torch

from dmlib import checks
from helpers import gather, stub  # tests/helpers.py


_stub = stub


_coef = gather


def test_checks_are_exported():
    for name in ["check_q_step", "check_prior_kl", "check_cosine_alpha_bar"]:
        assert name in checks.__all__ and callable(getattr(checks, name))


# ---- q_step ------------------------------------------------------------------------------
def _mine_q_step(s, x, t, e):
    b = _coef(s.betas, t, x)
    return torch.sqrt(1 - b) * x + torch.sqrt(b) * e


def test_q_step_reference_and_independent_solution_pass(capsys):
    from dmlib.forward import q_step
    r = checks.check_q_step(lambda s, x, t, e: q_step(s, x, t, eps=e))
    assert r.passed and "PASS check_q_step" in capsys.readouterr().out
    assert checks.check_q_step(_mine_q_step, verbose=False).passed


def test_q_step_stub_is_not_implemented(capsys):
    r = checks.check_q_step(_stub)
    assert r.status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET check_q_step" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    # the slide's sqrt(beta_t) read as the variance: noise std beta ** 0.25
    (lambda s, x, t, e: torch.sqrt(1 - _coef(s.betas, t, x)) * x + _coef(s.betas, t, x) ** 0.25 * e,
     "beta_t ** (1/4)"),
    # alpha_bar instead of alpha (the closed-form jump instead of one step)
    (lambda s, x, t, e: _coef(s.alpha_bar, t, x).sqrt() * x + (1 - _coef(s.alpha_bar, t, x)).sqrt() * e,
     "single-step alpha_t"),
    # missing sqrt on (1 - beta)
    (lambda s, x, t, e: (1 - _coef(s.betas, t, x)) * x + _coef(s.betas, t, x).sqrt() * e,
     "by a square root"),
    # t off by one (0-based indexing habit)
    (lambda s, x, t, e: torch.sqrt(1 - _coef(s.betas, t, x, -1)) * x + _coef(s.betas, t, x, -1).sqrt() * e,
     "t off by one"),
    # beta as the noise scale
    (lambda s, x, t, e: torch.sqrt(1 - _coef(s.betas, t, x)) * x + _coef(s.betas, t, x) * e,
     "standard deviation"),
    # x_prev not scaled
    (lambda s, x, t, e: x + _coef(s.betas, t, x).sqrt() * e, "not scaled"),
    (lambda s, x, t, e: torch.sqrt(1 - _coef(s.betas, t, x)) * x, "does not use eps"),
])
def test_q_step_mistakes(wrong, hint):
    r = checks.check_q_step(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_q_step_forgot_broadcasting_gets_the_broadcast_hint():
    def wrong(s, x, t, e):
        b = s.betas[torch.as_tensor(t)].to(x.dtype)  # (B,) against (B, ...): no reshape
        return torch.sqrt(1 - b) * x + torch.sqrt(b) * e
    r = checks.check_q_step(wrong, verbose=False)
    assert r.status == checks.ERROR and "reshape them to (B, 1, ..., 1)" in r.message


# ---- prior_kl ----------------------------------------------------------------------------
def _mine_prior_kl(s, x0, *, ab=None, var=None, reduce="sum"):
    """KL(N(m, v) || N(0, 1)) = 1/2 (m^2 + v - 1 - log v) per dimension, by hand."""
    ab = float(s.alpha_bar[s.T]) if ab is None else ab
    v = 1 - ab if var is None else var
    kl = 0.5 * (ab * x0 ** 2 + v - 1 - math.log(v))
    kl = kl.reshape(x0.shape[0], -1)
    return kl.sum(1) if reduce == "sum" else kl.mean(1)


def test_prior_kl_reference_and_independent_solution_pass():
    from dmlib.losses import prior_kl
    assert checks.check_prior_kl(prior_kl, verbose=False).passed
    assert checks.check_prior_kl(_mine_prior_kl, verbose=False).passed


def test_prior_kl_stub_is_not_implemented(capsys):
    r = checks.check_prior_kl(_stub)
    assert r.status == checks.NOT_IMPLEMENTED and "NOT IMPLEMENTED YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    # the slide's std in the variance slot
    (lambda s, x0: _mine_prior_kl(s, x0, var=math.sqrt(1 - float(s.alpha_bar[s.T]))),
     "standard deviation"),
    # alpha_T instead of alpha_bar_T
    (lambda s, x0: _mine_prior_kl(s, x0, ab=float(s.alphas[s.T])), "needs alpha_bar_T"),
    # alpha_bar_{T-1}
    (lambda s, x0: _mine_prior_kl(s, x0, ab=float(s.alpha_bar[s.T - 1])), "t off by one"),
    # mean over dims
    (lambda s, x0: _mine_prior_kl(s, x0, reduce="mean"), "SUM of the per-dimension"),
    # factor 2
    (lambda s, x0: 2 * _mine_prior_kl(s, x0), "factor 1/2"),
    # the mean not squared: alpha_bar^2 x0^2
    (lambda s, x0: _mine_prior_kl(s, x0) + 0.5 * ((float(s.alpha_bar[s.T]) ** 2
                                                   - float(s.alpha_bar[s.T])) * x0 ** 2)
     .reshape(x0.shape[0], -1).sum(1), "alpha_bar_T squared"),
])
def test_prior_kl_mistakes(wrong, hint):
    r = checks.check_prior_kl(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_prior_kl_reversed_kl_is_named():
    def wrong(s, x0):  # KL(N(0, 1) || N(m, v)) = 1/2 (log v + (1 + m^2) / v - 1)
        ab = float(s.alpha_bar[s.T])
        v = 1 - ab
        kl = 0.5 * (math.log(v) + (1 + ab * x0 ** 2) / v - 1)
        return kl.reshape(x0.shape[0], -1).sum(1)
    r = checks.check_prior_kl(wrong, verbose=False)
    assert r.status == checks.FAIL and "not symmetric" in r.message


def test_prior_kl_no_reduction_gets_the_shape_hint():
    def wrong(s, x0):
        ab = float(s.alpha_bar[s.T])
        return 0.5 * (ab * x0 ** 2 - ab - math.log(1 - ab))
    r = checks.check_prior_kl(wrong, verbose=False)
    assert r.status == checks.FAIL and "wrong shape" in r.message and "shape (B,)" in r.message


# ---- cosine alpha_bar --------------------------------------------------------------------
def _mine_cosine(T, s, *, square=2, norm=True, offset=True):
    s = s if offset else 0.0
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** square for t in range(T + 1)]
    f0 = f[0] if norm else 1.0
    return torch.tensor([v / f0 for v in f], dtype=torch.float64)


def test_cosine_reference_and_independent_solution_pass():
    from dmlib.schedules import cosine_alpha_bar
    assert checks.check_cosine_alpha_bar(cosine_alpha_bar, verbose=False).passed
    assert checks.check_cosine_alpha_bar(_mine_cosine, verbose=False).passed


def test_cosine_stub_is_not_implemented():
    assert checks.check_cosine_alpha_bar(_stub, verbose=False).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong, hint", [
    (lambda T, s: _mine_cosine(T, s, square=1), "must be squared"),
    (lambda T, s: _mine_cosine(T, s, norm=False), "divide f(t) by f(0)"),
    (lambda T, s: _mine_cosine(T, s, offset=False), "offset s is missing"),
    (lambda T, s: 1 - _mine_cosine(T, s), "1 - alpha_bar_t"),
    (lambda T, s: _mine_cosine(T, s)[1:], "T + 1 values"),
    (lambda T, s: torch.tensor([math.cos((t / T + s) * math.pi / 2) ** 2 / math.cos(s * math.pi / 2) ** 2
                                for t in range(T + 1)], dtype=torch.float64), "divided by (1 + s)"),
])
def test_cosine_mistakes(wrong, hint):
    r = checks.check_cosine_alpha_bar(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message
