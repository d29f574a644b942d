"""Chapter 10 checks: independent solutions (written here from the equations) pass, stubs say
NOT IMPLEMENTED YET, and realistic mistakes fail with the hint that points at them."""

import pytest

from dmlib import checks
from helpers import stub  # tests/helpers.py


def velocity(x0, eps, t):
    return eps - x0


def loss(model, x0, eps, k, T, swap=False, target="v", feed_x0=False, total=False):
    t = (k.double() / T).to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
    xt = t * x0 + (1 - t) * eps if swap else (1 - t) * x0 + t * eps
    y = {"v": eps - x0, "minus": x0 - eps, "eps": eps}[target]
    e = (model(x0 if feed_x0 else xt, k) - y) ** 2
    return e.reshape(len(x0), -1).sum(1).mean() if total else e.mean()


def euler(v, x, t, tn, kind="ok"):
    if kind == "sign":
        return x - (tn - t) * v(x, t)
    if kind == "end":
        return x + (tn - t) * v(x, tn)
    if kind == "jump":
        return x - t * v(x, t)
    return x + (tn - t) * v(x, t)


def test_solutions_pass_and_stubs_are_reported():
    assert checks.check_conditional_velocity(velocity, verbose=False).passed
    assert checks.check_fm_loss(loss, verbose=False).passed
    assert checks.check_flow_euler_step(euler, verbose=False).passed
    for c in (checks.check_conditional_velocity, checks.check_fm_loss, checks.check_flow_euler_step):
        assert c(stub, verbose=False).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong,hint", [
    (lambda x0, e, t: x0 - e, "chapter 2's direction"),
    (lambda x0, e, t: e, "DDPM's target"),
    (lambda x0, e, t: t.reshape(-1, *([1] * (x0.dim() - 1))) * (e - x0), "does not depend on t"),
    (lambda x0, e, t: (1 - t.reshape(-1, *([1] * (x0.dim() - 1)))) * x0
     + t.reshape(-1, *([1] * (x0.dim() - 1))) * e, "x_t itself"),
])
def test_velocity_mistakes(wrong, hint):
    r = checks.check_conditional_velocity(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


@pytest.mark.parametrize("kw,hint", [
    (dict(target="minus"), "opposite direction"),
    (dict(target="eps"), "not the noise eps"),
    (dict(swap=True), "ends of the path are swapped"),
    (dict(feed_x0=True), "model(x_t, k)"),
    (dict(total=True), "MEAN over the batch"),
])
def test_fm_loss_mistakes(kw, hint):
    r = checks.check_fm_loss(lambda *a: loss(*a, **kw), verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message


def test_fm_loss_float_t_to_the_network_is_caught():
    def float_time(model, x0, eps, k, T):
        t = (k.double() / T).reshape(-1, 1)
        return ((model((1 - t) * x0 + t * eps, k.double() / T) - (eps - x0)) ** 2).mean()
    r = checks.check_fm_loss(float_time, verbose=False)
    assert r.status in (checks.FAIL, checks.ERROR) and "INTEGER time" in r.message, r.message


@pytest.mark.parametrize("kind,hint", [("sign", "wrong way"), ("end", "START of the step"),
                                       ("jump", "jumps all the way")])
def test_euler_mistakes(kind, hint):
    r = checks.check_flow_euler_step(lambda *a: euler(*a, kind=kind), verbose=False)
    assert r.status == checks.FAIL and hint in r.message, r.message
