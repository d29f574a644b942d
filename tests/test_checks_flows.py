"""Chapter 2 checks: independent solutions pass, stubs say NOT IMPLEMENTED YET, realistic
mistakes are rejected with a hint that points at them."""

import pytest
import torch

from dmlib import checks
from helpers import stub  # tests/helpers.py


_stub = stub


def _run(check, fn):
    return check(fn, verbose=False)


# ---- Euler step ----------------------------------------------------------------------
def test_euler_step_independent_solution_passes_and_stub(capsys):
    def mine(f, z, t, dt):
        return z + f(z, t) * dt
    r = checks.check_euler_step(mine)
    assert r.passed and "PASS check_euler_step" in capsys.readouterr().out
    r = checks.check_euler_step(_stub)
    assert r.status == checks.NOT_IMPLEMENTED and "NOT IMPLEMENTED YET" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda f, z, t, dt: z + f(z, t), "dt is missing"),
    (lambda f, z, t, dt: z + dt * f(z, t + dt), "end of the step"),
    (lambda f, z, t, dt: z + dt * f(z, 0.0), "f depends on t"),
    (lambda f, z, t, dt: z - dt * f(z, t), "sign"),
    (lambda f, z, t, dt: dt * f(z, t), "increment"),
    (lambda f, z, t, dt: z + dt * dt * f(z, t), "squared"),
    (lambda f, z, t, dt: (z + dt * f(z, t))[0], "wrong shape"),
])
def test_euler_step_mistakes(wrong, hint):
    r = _run(checks.check_euler_step, wrong)
    assert r.status == checks.FAIL and hint in r.message


# ---- coupling log-det ----------------------------------------------------------------
def test_coupling_log_det_independent_solution_passes_and_stub():
    def mine(z, mask, s_fn):
        s = s_fn(z * mask)
        return torch.where(mask.bool(), torch.zeros_like(s), s).sum(dim=1)
    assert _run(checks.check_coupling_log_det, mine).passed
    assert _run(checks.check_coupling_log_det, _stub).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong, hint", [
    (lambda z, m, s: -((1 - m) * s(m * z)).sum(-1), "sign is flipped"),
    (lambda z, m, s: ((1 - m) * s(m * z).exp()).sum(-1), "exp(s)"),
    (lambda z, m, s: ((1 - m) * s(m * z).abs().log()).sum(-1), "log of s"),
    (lambda z, m, s: s(m * z).sum(-1), "mask is not applied"),
    (lambda z, m, s: (m * s(m * z)).sum(-1), "wrong way round"),
    (lambda z, m, s: ((1 - m) * s(z)).sum(-1), "whole z"),
    (lambda z, m, s: ((1 - m) * s((1 - m) * z)).sum(-1), "not the transformed part"),
    (lambda z, m, s: ((1 - m) * s(m * z)).mean(-1), "averaged"),
    (lambda z, m, s: (1 - m) * s(m * z), "wrong shape"),
])
def test_coupling_log_det_mistakes(wrong, hint):
    r = _run(checks.check_coupling_log_det, wrong)
    assert r.status == checks.FAIL and hint in r.message


# ---- Hutchinson ----------------------------------------------------------------------
def test_hutchinson_independent_solution_passes_and_stub():
    def mine(vjp, eps):
        total = 0
        for k in range(eps.shape[0]):
            total = total + torch.einsum("bd,bd->b", vjp(eps[k]), eps[k])
        return total / eps.shape[0]
    assert _run(checks.check_hutchinson, mine).passed
    assert _run(checks.check_hutchinson, _stub).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong, hint", [
    (lambda vjp, e: torch.stack([vjp(k).sum(-1) for k in e]).mean(0), "used twice"),
    (lambda vjp, e: torch.stack([(vjp(k) * k).sum(-1) for k in e]).sum(0), "summed over the probes"),
    (lambda vjp, e: torch.stack([(vjp(k) ** 2).sum(-1) for k in e]).mean(0), "Tr(J J^T)"),
    (lambda vjp, e: (vjp(e[0]) * e[0]).sum(-1), "only the first probe"),
    (lambda vjp, e: (e * e).sum(-1).mean(0), "missing"),
    (lambda vjp, e: torch.stack([(vjp(k) * k).sum(-1) for k in e]), "wrong shape"),
])
def test_hutchinson_mistakes(wrong, hint):
    r = _run(checks.check_hutchinson, wrong)
    assert r.status == checks.FAIL and hint in r.message


def test_checks_are_exported_and_strict_mode_raises(monkeypatch):
    for name in ["check_euler_step", "check_coupling_log_det", "check_hutchinson"]:
        assert name in checks.__all__ and callable(getattr(checks, name))
    monkeypatch.setenv("DMLIB_CHECKS_STRICT", "1")
    with pytest.raises(checks.CheckFailed):
        checks.check_euler_step(lambda f, z, t, dt: z + f(z, t), verbose=False)
