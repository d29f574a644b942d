"""Chapter 6 checks: independent solutions pass, stubs say NOT IMPLEMENTED YET, and realistic
mistakes fail with a hint that points at them. The solutions here are written from the
equations (plain indexing of the schedule), not with dmlib's helpers."""

import math

import pytest
import torch

from dmlib import checks
from helpers import stub  # tests/helpers.py


_stub = stub


def _col(v, t, x):
    """v[t] as a (B, 1, ...) column (t a (B,) tensor) or a scalar (t an int)."""
    t = torch.as_tensor(t)
    out = v.to(x.dtype)[t]
    return out.reshape(-1, *[1] * (x.dim() - 1)) if t.dim() else out


# ---- Exercise 6.1: the simple loss ----------------------------------------------------------
def _loss(model, s, x0, t, eps, ab_of=lambda s: s.alpha_bar, feed=None, target=None, red="mean",
          var_noise=False, shift=0):
    ab = _col(ab_of(s), t + shift, x0)
    xt = ab.sqrt() * x0 + ((1 - ab) if var_noise else (1 - ab).sqrt()) * eps
    pred = model(xt if feed is None else x0, t)
    err = ((eps if target is None else target(x0, xt)) - pred) ** 2
    return err.mean() if red == "mean" else err.reshape(len(x0), -1).sum(1).mean()


def test_simple_loss_solution_passes_and_stub(capsys):
    assert checks.check_simple_loss(_loss, verbose=False).passed
    assert checks.check_simple_loss(_stub).status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, s, x0, t, e: _loss(m, s, x0, t, e, feed="x0"), "model(x_t, t)"),
    (lambda m, s, x0, t, e: _loss(m, s, x0, t, e, target=lambda x0, xt: x0), "not x0"),
    (lambda m, s, x0, t, e: _loss(m, s, x0, t, e, var_noise=True), "standard deviation"),
    (lambda m, s, x0, t, e: _loss(m, s, x0, t, e, ab_of=lambda s: s.alphas), "alpha_bar_t"),
    (lambda m, s, x0, t, e: _loss(m, s, x0, t, e, red="sum"), "MEAN"),
    (lambda m, s, x0, t, e: _loss(m, s, x0, t, e, shift=-1), "off by one"),  # alpha_bar[t - 1]
    (lambda m, s, x0, t, e: _loss(m, s, x0, t, e).reshape(1), "wrong shape"),
])
def test_simple_loss_mistakes(wrong, hint):
    r = checks.check_simple_loss(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


# ---- Exercise 6.2: one ancestral step -------------------------------------------------------
def _step(model, s, xt, t, z, last_noise=False, var=False, no_inv=False, coef_pow=0.5,
          use_bar=False, sigma2=None):
    tb = torch.full((xt.shape[0],), t, dtype=torch.long)
    beta, alpha, ab = float(s.betas[t]), float(s.alphas[t]), float(s.alpha_bar[t])
    eps = model(xt, tb)
    inner = xt - beta / (1 - ab) ** coef_pow * eps
    mean = inner if no_inv else inner / math.sqrt(ab if use_bar else alpha)
    if t == 1 and not last_noise:
        return mean
    s2 = beta if sigma2 is None else sigma2(s, t)
    return mean + (s2 if var else math.sqrt(s2)) * z


def test_ancestral_step_solution_passes_and_stub(capsys):
    assert checks.check_ancestral_step(_step, verbose=False).passed
    assert checks.check_ancestral_step(_stub).status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


def _beta_tilde(s, t):
    return float((1 - s.alpha_bar[t - 1]) / (1 - s.alpha_bar[t]) * s.betas[t])


@pytest.mark.parametrize("wrong, hint", [
    (lambda *a: _step(*a, last_noise=True), "no noise"),
    (lambda *a: _step(*a, var=True), "sqrt(beta_t) * z"),
    (lambda *a: _step(*a, no_inv=True), "1/sqrt(alpha_t)"),
    (lambda *a: _step(*a, use_bar=True), "not sqrt(alpha_bar_t)"),
    (lambda *a: _step(*a, coef_pow=1.0), "square root"),
    (lambda *a: _step(*a, sigma2=_beta_tilde), "beta_tilde_t"),
])
def test_ancestral_step_mistakes(wrong, hint):
    r = checks.check_ancestral_step(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_ancestral_step_model_called_with_int_t_is_an_error():
    def wrong(m, s, xt, t, z):
        return m(xt, t)  # t is an int, the model wants a (B,) tensor
    r = checks.check_ancestral_step(wrong, verbose=False)
    assert r.status == checks.ERROR and "shape (B,)" in r.message


# ---- Exercise 6.3: one KL term of the bound --------------------------------------------------
def _kl(model, s, x0, xt, t, const=True, std=False, s2_of=None, half=2.0, reverse=False,
        red="sum"):
    beta, alpha, ab = (_col(v, t, xt) for v in (s.betas, s.alphas, s.alpha_bar))
    ab_prev = _col(s.alpha_bar, t - 1, xt)
    bt = (1 - ab_prev) / (1 - ab) * beta
    mu_q = ab_prev.sqrt() * beta / (1 - ab) * x0 + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * xt
    mu_p = (xt - beta / (1 - ab).sqrt() * model(xt, t)) / alpha.sqrt()
    s2 = beta if s2_of is None else bt
    sq = (mu_q - mu_p) ** 2
    if reverse:
        kl = 0.5 * (torch.log(bt / s2) + s2 / bt - 1) + sq / (2 * bt)
    else:
        kl = sq / (half * (s2.sqrt() if std else s2))
        if const:
            kl = kl + 0.5 * (torch.log(s2 / bt) + bt / s2 - 1)
    kl = kl.reshape(len(x0), -1)
    return kl.sum(1) if red == "sum" else kl.mean(1)


def test_kl_term_solution_passes_and_stub(capsys):
    assert checks.check_kl_term(_kl, verbose=False).passed
    assert checks.check_kl_term(_stub).status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


def test_kl_term_reference_is_the_monte_carlo_kl():
    # Independent of the closed form: KL(q || p) = E_q[log q - log p], estimated by sampling.
    from dmlib.course.checks.toy2d import toy_eps_model
    from dmlib.schedules import Schedule
    s = Schedule.linear(100)
    g = torch.Generator().manual_seed(0)
    x0, xt = torch.randn(1, 2, generator=g, dtype=torch.float64), torch.randn(1, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([30])
    beta, alpha, ab, abp = (float(v[30]) for v in (s.betas, s.alphas, s.alpha_bar, s.alpha_bar_prev))
    bt = (1 - abp) / (1 - ab) * beta
    mu_q = math.sqrt(abp) * beta / (1 - ab) * x0 + math.sqrt(alpha) * (1 - abp) / (1 - ab) * xt
    mu_p = (xt - beta / math.sqrt(1 - ab) * toy_eps_model(xt, t)) / math.sqrt(alpha)
    y = mu_q + math.sqrt(bt) * torch.randn(400_000, 2, generator=g, dtype=torch.float64)
    log_q = (-(y - mu_q) ** 2 / (2 * bt) - 0.5 * math.log(2 * math.pi * bt)).sum(1)
    log_p = (-(y - mu_p) ** 2 / (2 * beta) - 0.5 * math.log(2 * math.pi * beta)).sum(1)
    mc = (log_q - log_p).mean().item()
    se = (log_q - log_p).std().item() / math.sqrt(len(y))
    got = float(_kl(toy_eps_model, s, x0, xt, t)[0])
    assert abs(got - mc) < 4 * se + 1e-6


@pytest.mark.parametrize("wrong, hint", [
    (lambda *a: _kl(*a, const=False), "constant term"),
    (lambda *a: _kl(*a, std=True), "standard deviation"),
    (lambda *a: _kl(*a, s2_of="bt"), "you used beta_tilde_t"),
    (lambda *a: _kl(*a, half=1.0), "factor 1/2"),
    (lambda *a: _kl(*a, reverse=True), "wrong way round"),
    (lambda *a: _kl(*a, red="mean"), "SUM"),
])
def test_kl_term_mistakes(wrong, hint):
    r = checks.check_kl_term(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_toy_model_rejects_int_and_float_t():
    from dmlib.course.checks.toy2d import toy_eps_model
    with pytest.raises(ValueError, match="shape"):
        toy_eps_model(torch.zeros(3, 2), 5)
    with pytest.raises(ValueError, match="integer"):
        toy_eps_model(torch.zeros(3, 2), torch.ones(3))
