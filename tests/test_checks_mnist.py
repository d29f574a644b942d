"""Chapter 7 checks: independent solutions pass, stubs say NOT IMPLEMENTED YET, and realistic
mistakes fail with a hint that points at them. The solutions here are written as a student
would (plain indexing of the schedule, torch.nn.functional, numpy/scipy), not with dmlib."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from dmlib import checks
from helpers import stub  # tests/helpers.py


def _col(v, t, x):
    """v[t] for t a (B,) tensor, as a (B, 1, 1, 1) column for images x."""
    return v[t].to(x.dtype).view(-1, *[1] * (x.dim() - 1))


# ---- Exercise 7.1: one training step on images -----------------------------------------------
def _train(model, opt, s, x0, t, eps, zero=True, backward=True, step=True, zero_late=False,
           ab_of=lambda s: s.alpha_bar, feed_x0=False, target_x0=False, red="mean", shift=0,
           ret=lambda loss: loss.item()):
    if zero:
        opt.zero_grad()
    ab = _col(ab_of(s), t + shift, x0)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    pred = model(x0 if feed_x0 else xt, t)
    loss = F.mse_loss(pred, x0 if target_x0 else eps, reduction=red)
    if backward:
        loss.backward()
    if zero_late:
        opt.zero_grad()
    if step:
        opt.step()
    return ret(loss)


def test_image_train_step_solution_passes_and_stub(capsys):
    r = checks.check_image_train_step(_train)
    assert r.passed and "PASS check_image_train_step" in capsys.readouterr().out
    assert checks.check_image_train_step(stub).status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


def test_image_train_step_loop_style_solution_passes():
    def mine(model, optimizer, schedule, x0, t, eps):
        a = schedule.alpha_bar.to(x0.dtype)[t][:, None, None, None]
        loss = ((eps - model(a.sqrt() * x0 + (1 - a).sqrt() * eps, t)) ** 2).mean()
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        return float(loss.detach())
    assert checks.check_image_train_step(mine, verbose=False).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda *a: _train(*a, zero=False), "optimizer.zero_grad() before loss.backward()"),
    (lambda *a: _train(*a, step=False), "did not change"),
    (lambda *a: _train(*a, zero_late=True), "did not change"),
    (lambda *a: _train(*a, backward=False), "did not change"),  # zero_grad, then no .grad at all
    (lambda *a: _train(*a, zero=False, backward=False), "stale gradients"),
    (lambda *a: _train(*a, feed_x0=True), "model(x_t, t)"),
    (lambda *a: _train(*a, target_x0=True), "not the clean images x0"),
    (lambda *a: _train(*a, ab_of=lambda s: s.alphas), "alpha_bar_t"),
    (lambda *a: _train(*a, red="sum"), "MEAN"),
    (lambda *a: _train(*a, shift=-1), "off by one"),
])
def test_image_train_step_mistakes(wrong, hint):
    r = checks.check_image_train_step(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_image_train_step_returning_the_tensor_or_nothing_is_explained():
    r = checks.check_image_train_step(lambda *a: _train(*a, ret=lambda loss: loss), verbose=False)
    assert r.status == checks.ERROR and "loss.item()" in r.message, r.message
    r = checks.check_image_train_step(lambda *a: _train(*a, ret=lambda loss: None), verbose=False)
    assert r.status == checks.ERROR and "NoneType" in r.message, r.message


def test_image_train_step_errors_get_hints():
    def no_reshape(model, opt, s, x0, t, eps):  # (B,) coefficients against (B, 1, H, W)
        opt.zero_grad()
        ab = s.alpha_bar[t].to(x0.dtype)
        loss = F.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)
        loss.backward()
        opt.step()
        return loss.item()
    r = checks.check_image_train_step(no_reshape, verbose=False)
    assert r.status == checks.ERROR and "(B, 1, ..., 1)" in r.message, r.message

    def int_t(model, opt, s, x0, t, eps):
        return model(x0, 5).sum().item()
    r = checks.check_image_train_step(int_t, verbose=False)
    assert r.status == checks.ERROR and "shape (B,)" in r.message, r.message


def test_image_train_step_is_deterministic_and_leaves_global_state(capsys):
    rng = torch.get_rng_state()
    for _ in range(2):
        checks.check_image_train_step(lambda *a: _train(*a, zero=False))
    out = capsys.readouterr().out
    half = len(out) // 2  # the same (possibly wrapped) report twice
    assert out[:half] == out[half:] and out.startswith("FAIL check_image_train_step")
    assert torch.equal(torch.get_rng_state(), rng) and torch.is_grad_enabled()


# ---- Exercise 7.2: one step on the respaced schedule ------------------------------------------
def _respaced(model, s, taus, xt, k, z, beta_of=None, model_t=None, prev=None, last_noise=False,
              var=False, sched_k=False, one_based=False):
    tau = int(taus[k] if one_based else taus[k - 1])
    if prev is not None:
        tau_prev = prev(taus, k, tau)
    elif one_based:
        tau_prev = int(taus[k - 1]) if k > 1 else 0
    else:
        tau_prev = int(taus[k - 2]) if k > 1 else 0
    ab = s.alpha_bar[k if sched_k else tau]
    ab_prev = s.alpha_bar[k - 1 if sched_k else tau_prev]
    beta = 1 - ab / ab_prev if beta_of is None else beta_of(s, tau)
    t_model = tau if model_t is None else model_t(k, tau)
    eps = model(xt, torch.full((xt.shape[0],), t_model, dtype=torch.long))
    mean = (xt - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
    if k == 1 and not last_noise:
        return mean
    return mean + (beta if var else beta.sqrt()) * z


def test_respaced_step_solution_passes_and_stub(capsys):
    assert checks.check_respaced_step(_respaced, verbose=False).passed
    assert checks.check_respaced_step(stub).status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


def test_respaced_step_dmlib_solution_passes():
    from dmlib.respacing import RespacedModel, respace
    from dmlib.sampling import p_mean_var

    def with_dmlib(model, s, taus, xt, k, z):  # Algorithm 2 on the respaced chain
        sched, _ = respace(s, len(taus))
        kb = torch.full((xt.shape[0],), k, dtype=torch.long)
        mean, var = p_mean_var(sched, RespacedModel(model, taus)(xt, kb), xt, k)
        return mean if k == 1 else mean + var.sqrt() * z
    assert checks.check_respaced_step(with_dmlib, verbose=False).passed


@pytest.mark.parametrize("wrong, hint", [
    (lambda *a: _respaced(*a, prev=lambda taus, k, tau: tau - 1), "ORIGINAL schedule"),
    (lambda *a: _respaced(*a, beta_of=lambda s, tau: s.betas[tau]), "ORIGINAL schedule"),
    (lambda *a: _respaced(*a, model_t=lambda k, tau: k), "not at the step index k"),
    (lambda *a: _respaced(*a, sched_k=True), "not schedule.alpha_bar[k]"),
    (lambda *a: _respaced(*a, one_based=True), "taus[k - 1]"),
    (lambda *a: _respaced(*a, prev=lambda taus, k, tau: int(taus[k - 2])), "wraps around"),
    (lambda *a: _respaced(*a, last_noise=True), "no noise"),
    (lambda *a: _respaced(*a, var=True), "sqrt(beta'_k) * z"),
])
def test_respaced_step_mistakes(wrong, hint):
    r = checks.check_respaced_step(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_respaced_step_model_called_with_int_time_is_an_error():
    def wrong(model, s, taus, xt, k, z):
        return model(xt, int(taus[k - 1]))
    r = checks.check_respaced_step(wrong, verbose=False)
    assert r.status == checks.ERROR and "shape (B,)" in r.message, r.message


def test_respaced_step_wrong_shape_fails():
    r = checks.check_respaced_step(lambda *a: _respaced(*a)[0], verbose=False)
    assert r.status == checks.FAIL and "wrong shape" in r.message, r.message


# ---- Exercise 7.3: the Fréchet distance ------------------------------------------------------
def _fd_scipy(a, b, rowvar=False, ddof=1, two=2.0, mean_sq=True, elementwise=False):
    a, b = a.numpy(), b.numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=rowvar, ddof=ddof), np.cov(b, rowvar=rowvar, ddof=ddof)
    prod = s1 @ s2
    root = np.sqrt(prod) if elementwise else scipy.linalg.sqrtm(prod).real
    d2 = ((mu1 - mu2) ** 2).sum()
    return float((d2 if mean_sq else np.sqrt(d2)) + np.trace(s1) + np.trace(s2)
                 - two * np.trace(root))


def _fd_torch(a, b, diag=False):
    def sqrtm(m):
        w, v = torch.linalg.eigh(m)
        return v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = torch.cov(a.T), torch.cov(b.T)
    if diag:
        cross = (s1.diagonal().sqrt() * s2.diagonal().sqrt()).sum()
    else:
        r = sqrtm(s1)
        cross = torch.trace(sqrtm(r @ s2 @ r))
    return (mu1 - mu2).pow(2).sum() + torch.trace(s1 + s2) - 2 * cross  # a 0-d tensor


def test_frechet_distance_solutions_pass_and_stub(capsys):
    assert checks.check_frechet_distance(_fd_scipy, verbose=False).passed  # a float
    assert checks.check_frechet_distance(_fd_torch, verbose=False).passed  # a 0-d tensor
    assert checks.check_frechet_distance(lambda a, b: np.float64(_fd_scipy(a, b)),
                                         verbose=False).passed
    assert checks.check_frechet_distance(lambda a, b: _fd_torch(a, b).reshape(1),
                                         verbose=False).passed
    assert checks.check_frechet_distance(stub).status == checks.NOT_IMPLEMENTED
    assert "NOT IMPLEMENTED YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, b: _fd_scipy(a, b, two=1.0), "factor 2"),
    (lambda a, b: _fd_scipy(a, b, mean_sq=False), "SQUARED distance"),
    (lambda a, b: _fd_scipy(a, b) - float(((a.mean(0) - b.mean(0)) ** 2).sum()),
     "term ||mu_a - mu_b||^2 is missing"),
    (lambda a, b: _fd_scipy(a, b, elementwise=True), "MATRIX square root"),
    (lambda a, b: _fd_scipy(a, b, ddof=0), "N - 1"),
    (lambda a, b: _fd_torch(a, b, diag=True), "only the variances"),
    (lambda a, b: _fd_scipy(a, b, rowvar=True), "rowvar=False"),
])
def test_frechet_distance_mistakes(wrong, hint):
    r = checks.check_frechet_distance(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_frechet_distance_shape_and_type_errors():
    r = checks.check_frechet_distance(lambda a, b: (a.mean(0) - b.mean(0)) ** 2, verbose=False)
    assert r.status == checks.FAIL and "wrong shape" in r.message and "one number" in r.message
    r = checks.check_frechet_distance(lambda a, b: torch.cov(a) @ torch.cov(b), verbose=False)
    assert r.status in (checks.FAIL, checks.ERROR) and "(D, D)" in r.message, r.message
    r = checks.check_frechet_distance(lambda a, b: None, verbose=False)
    assert r.status == checks.FAIL and "NoneType" in r.message
    r = checks.check_frechet_distance(lambda a, b: np.complex128(_fd_scipy(a, b)), verbose=False)
    assert r.status == checks.ERROR and ".real" in r.message


def test_frechet_distance_strict_mode(monkeypatch):
    monkeypatch.setenv("DMLIB_CHECKS_STRICT", "1")
    with pytest.raises(checks.CheckFailed, match="check_frechet_distance"):
        checks.check_frechet_distance(lambda a, b: _fd_scipy(a, b, two=1.0), verbose=False)


def test_chapter7_checks_are_exported():
    from dmlib.course.checks import mnist
    assert set(mnist.__all__) == {"check_image_train_step", "check_respaced_step",
                                  "check_frechet_distance"}
    for name in mnist.__all__:
        assert name in checks.__all__ and callable(getattr(checks, name))
