"""Chapter 9 checks: independent solutions (written here from the equations) pass, stubs say
NOT IMPLEMENTED YET, and realistic mistakes fail with the hint that points at them."""

import math

import pytest
import torch

from dmlib import checks
from helpers import stub  # tests/helpers.py


def cfg(c, u, w):
    return c + w * (c - u)


def cg(eps, g, ab, w, sign=-1, k=None, p=0.5, div=False):
    k = 1 + w if k is None else k
    s = (1 - ab) ** p
    return eps + sign * k * (g / s if div else g * s)


def loss(net, x0, y, eps, t, ab, u, p, null, cmp=lambda u, p: u < p, null_as=None,
         skip=False, root=True):
    y2 = y.clone()
    y2[cmp(u, p)] = null if null_as is None else null_as
    a = ab[t][:, None]
    xt = (a.sqrt() * x0 + (1 - a).sqrt() * eps) if root else (a * x0 + (1 - a) * eps)
    err = (net(xt, t, y2) - eps).pow(2).mean(1)
    if skip:
        return err[~cmp(u, p)].mean()
    return err.mean()


def test_solutions_pass_and_stubs_are_reported():
    assert checks.check_cfg_combination(cfg, verbose=False).passed
    assert checks.check_classifier_guidance(cg, verbose=False).passed
    assert checks.check_cfg_loss(loss, verbose=False).passed
    assert checks.check_cfg_loss(stub, verbose=False).status == checks.NOT_IMPLEMENTED


@pytest.mark.parametrize("wrong,hint", [
    (lambda c, u, w: w * c + (1 - w) * u, "guidance_scale"),
    (lambda c, u, w: u + w * (u - c), "swapped"),
    (lambda c, u, w: (1 + w) * c + w * u, "SUBTRACTED"),
    (lambda c, u, w: c - w * u, "sum to 1"),
    (lambda c, u, w: (c + w * u) / (1 + w), "EXTRAPOLATES"),
])
def test_cfg_mistakes(wrong, hint):
    r = checks.check_cfg_combination(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message


@pytest.mark.parametrize("kw,hint", [
    (dict(sign=1), "the sign"),
    (dict(k="w"), "weight 1 + w"),
    (dict(p=1.0), "not the variance"),
    (dict(div=True), "not dividing"),
    (dict(p=0.0), "eps scale"),
])
def test_classifier_guidance_mistakes(kw, hint):
    def wrong(e, g, a, w):
        k = w if kw.get("k") == "w" else None
        return cg(e, g, a, w, **{**{x: v for x, v in kw.items() if x != "k"}, "k": k})
    r = checks.check_classifier_guidance(wrong, verbose=False)
    assert r.status == checks.FAIL and hint in r.message


@pytest.mark.parametrize("kw,hint", [
    (dict(cmp=lambda u, p: u > p), "probability 1 - p_uncond"),
    (dict(cmp=lambda u, p: torch.zeros_like(u, dtype=torch.bool)), "never replaced"),
    (dict(skip=True), "removed from the loss"),
    (dict(null_as=0), "not class 0"),
    (dict(root=False), "square roots"),
])
def test_cfg_loss_mistakes(kw, hint):
    r = checks.check_cfg_loss(lambda *a: loss(*a, **kw), verbose=False)
    assert r.status == checks.FAIL and hint in r.message


def test_toy_net_depends_on_the_label():
    x, t = torch.randn(3, 2, dtype=torch.float64), torch.tensor([5, 50, 90])
    a = checks.toy_conditional_net(x, t, torch.tensor([0, 1, 2]))
    b = checks.toy_conditional_net(x, t, torch.tensor([3, 3, 3]))
    assert (a - b).abs().min() > 1e-3 and math.isfinite(float(a.sum()))
