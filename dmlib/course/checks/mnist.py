"""Checks for chapter 7 (MNIST): one training step on images, one sampling step on a
respaced schedule, and the Fréchet distance between two sets of features.

The training-step check hands the student's function a tiny seeded convolutional model and an
SGD optimizer that still holds gradients from an "earlier step", and compares the returned
loss AND the updated parameters with dmlib's step. The sampling check uses the
parameter-free ``toy_eps_model`` of chapter 6. All inputs are seeded float64 tensors, so the
printed lines are deterministic; the checks leave the global random state alone.
"""

from __future__ import annotations

import numbers
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...schedules import Schedule
from ._core import (Case, CheckResult, Mistake, Spec, _at, _BROADCAST, _OFF_BY_ONE, _schedules, _t,
                    _x, run_check, wraps)
from .toy2d import _ALPHA_NOT_BAR, _MODEL_T, toy_eps_model

__all__: list[str] = ["check_image_train_step", "check_respaced_step", "check_frechet_distance"]

_D = torch.float64


# --------------------------------------------------------------------------------------
# Exercise 7.1: one training step on a batch of images (Algorithm 1 + the optimizer)
class _TinyConvNet(nn.Module):
    """A seeded 3x3 convolution plus the t-dependent ``toy_eps_model``: eps_theta(x_t, t) for
    x_t (B, 1, H, W) and t a long (B,) tensor. Its parameters are set from a private
    generator, so building it does not touch the global random state."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(0.3 * _x((1, 1, 3, 3), seed))
        self.bias = nn.Parameter(0.1 * _x((1,), seed + 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1) + toy_eps_model(x, t)


def _setup(seed: int, lr: float, dtype: torch.dtype = _D) -> tuple[_TinyConvNet, torch.optim.Optimizer]:
    model = _TinyConvNet(seed).to(dtype)
    for i, p in enumerate(model.parameters()):  # stale gradients, as after an earlier step
        p.grad = 0.5 * _x(tuple(p.shape), seed + 10 + i).to(dtype)
    return model, torch.optim.SGD(model.parameters(), lr=lr)


def _state(model: nn.Module, loss: float) -> torch.Tensor:
    """The returned loss followed by the updated parameters, as one vector to compare."""
    ps = [p.detach().reshape(-1) for p in model.parameters()]
    return torch.cat([torch.tensor([loss], dtype=ps[0].dtype), *ps])


def _as_loss(out) -> float:
    if isinstance(out, torch.Tensor):
        raise TypeError(f"it returned a {type(out).__name__}; return loss.item(), a Python "
                        "float (a loss tensor keeps its autograd graph alive, and a list of "
                        "them keeps every step's graph)")
    if isinstance(out, bool) or not isinstance(out, numbers.Real):
        raise TypeError(f"it returned {type(out).__name__}; return the loss as a Python float "
                        "(loss.item())")
    return float(out)


def _run_train_step(fn: Callable) -> Callable:
    """Wrap a step ``fn(model, optimizer, schedule, x0, t, eps)`` as a function of the case
    (seed, schedule, x0, t, eps, lr) returning (loss, parameters after the step)."""
    @wraps(fn)
    def wrapped(seed, s, x0, t, e, lr):
        model, opt = _setup(seed, lr, x0.dtype)
        with torch.enable_grad():  # the framework calls the function under no_grad
            loss = fn(model, opt, s, x0, t, e)
        return _state(model, _as_loss(loss))
    return wrapped


def _reference_train_step(model, opt, s, x0, t, e) -> float:
    from ...losses import diffusion_loss

    opt.zero_grad()
    loss = diffusion_loss(model, s, x0, "eps", t=t, eps=e)
    loss.backward()
    opt.step()
    return loss.item()


def _image_loss(model, s, x0, t, e, shift=0, alpha=False, no_sqrt=False, feed_x0=False,
                target="eps", reduce="mean", power=2, model_shift=0):
    a = _at(s.alphas if alpha else s.alpha_bar, t, x0, shift)
    xt = a.sqrt() * x0 + ((1 - a) if no_sqrt else (1 - a).sqrt()) * e
    pred = model(x0 if feed_x0 else xt, t + model_shift)
    err = ({"eps": e, "x0": x0}[target] - pred).abs() ** power
    if reduce == "mean":
        return err.mean()
    if reduce == "sum":
        return err.sum()
    return err.reshape(x0.shape[0], -1).sum(1).mean()  # "sum_dims"


def _train_formula(seed, s, x0, t, e, lr, zero=True, backward=True, step=True, **loss_kw):
    model, opt = _setup(seed, lr, x0.dtype)
    with torch.enable_grad():
        if zero:
            opt.zero_grad()
        loss = _image_loss(model, s, x0, t, e, **loss_kw)
        if backward:
            loss.backward()
        if step:
            opt.step()
    return _state(model, loss.item())


def check_image_train_step(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check Exercise 7.1, ``fn(model, optimizer, schedule, x0, t, eps) -> float``: one
    training step on a batch of images x0 (B, 1, H, W) with given t (a long (B,) tensor in
    1..T) and noise eps (like x0):

        optimizer.zero_grad()
        x_t  = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
        loss = mean over the batch and all pixels of (eps - model(x_t, t))^2
        loss.backward(); optimizer.step(); return loss.item()

    The check's model is a tiny seeded convolution, its optimizer plain SGD that still holds
    gradients of an earlier step; it compares the returned loss and the updated parameters
    with dmlib's step. Chapter 7.
    """
    lin, cos = _schedules()
    cases = [
        Case((0, lin, _x((4, 1, 8, 8), 700), _t([1, 10, 500, 1000]), _x((4, 1, 8, 8), 701), 0.1),
             "a batch of 4 images (4, 1, 8, 8) with t = [1, 10, 500, 1000] (linear, T=1000), "
             "SGD with lr = 0.1"),
        Case((1, cos, _x((2, 1, 6, 6), 702), _t([50, 3]), _x((2, 1, 6, 6), 703), 0.05),
             "a batch of 2 images (2, 1, 6, 6) with t = [50, 3] (cosine, T=50), SGD with "
             "lr = 0.05"),
    ]
    W = _train_formula
    unchanged = ("the parameters did not change: the step needs loss.backward() (it fills "
                 ".grad) and then optimizer.step(); optimizer.zero_grad() goes BEFORE "
                 "backward, not between backward and step")
    mean_hint = ("you summed the squared error; the loss is the MEAN over the batch and all "
                 "pixels (like F.mse_loss), otherwise its scale and the step size depend on "
                 "the image size")
    mistakes = [
        Mistake("the loss is right but the parameters moved too far: the optimizer still held "
                "the gradients of an earlier step, and backward ADDS to .grad. Call "
                "optimizer.zero_grad() before loss.backward()",
                lambda *c: W(*c, zero=False)),
        Mistake(unchanged, lambda *c: W(*c, step=False)),
        Mistake("the update used stale gradients: loss.backward() is missing before "
                "optimizer.step()", lambda *c: W(*c, zero=False, backward=False)),
        Mistake("the network must see the NOISED images: call model(x_t, t), not model(x0, t)",
                lambda *c: W(*c, feed_x0=True)),
        Mistake("the target is the noise eps that was added, not the clean images x0",
                lambda *c: W(*c, target="x0")),
        Mistake("the noise is scaled by a standard deviation: x_t = sqrt(alpha_bar_t) x0 + "
                "sqrt(1 - alpha_bar_t) eps", lambda *c: W(*c, no_sqrt=True)),
        Mistake(_ALPHA_NOT_BAR, lambda *c: W(*c, alpha=True)),
        Mistake(_OFF_BY_ONE, lambda *c: W(*c, shift=-1)),
        Mistake(mean_hint, lambda *c: W(*c, reduce="sum")),
        Mistake(mean_hint, lambda *c: W(*c, reduce="sum_dims")),
        Mistake("the error is not squared: the loss is the mean SQUARED error",
                lambda *c: W(*c, power=1)),
        Mistake(_MODEL_T, lambda *c: W(*c, model_shift=-1)),
        Mistake(_MODEL_T, lambda *c: W(*c, model_shift=1)),
    ]
    spec = Spec("check_image_train_step", _run_train_step(_reference_train_step), cases,
                mistakes, broadcast_hint=_BROADCAST,
                arg_names=("the check's seed", "schedule", "x0", "t", "eps", "lr"))
    return run_check(_run_train_step(fn), spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 7.2: one ancestral step on the respaced schedule
def _respaced_formula(s, taus, xt, k, z, idx=0, model_at="tau", prev="tau", sched_at="tau",
                      var="beta", noise="std", noise_at_1=False, inv="alpha"):
    tau = int(taus[k - 1 + idx])
    if prev == "wrap":  # taus[k - 2] without the k = 1 case: taus[-1] = T
        tau_prev = int(taus[k - 2])
    elif prev == "minus1":
        tau_prev = tau - 1
    else:
        tau_prev = int(taus[k - 2 + idx]) if k > 1 else 0
    i, ip = (k, k - 1) if sched_at == "k" else (tau, tau_prev)
    ab, abp = s.alpha_bar[i].to(xt.dtype), s.alpha_bar[ip].to(xt.dtype)
    b = 1 - ab / abp
    eps = toy_eps_model(xt, torch.full((xt.shape[0],), tau if model_at == "tau" else k,
                                       dtype=torch.long))
    inner = xt - b / (1 - ab).sqrt() * eps
    mean = inner / ((1 - b).sqrt() if inv == "alpha" else ab.sqrt())
    if k == 1 and not noise_at_1:
        return mean
    v = {"beta": b, "orig": s.betas[tau].to(xt.dtype), "tilde": (1 - abp) / (1 - ab) * b}[var]
    return mean + (v.sqrt() if noise == "std" else v) * z


def _respaced_reference(m, s, taus, xt, k, z):
    from ...respacing import RespacedModel, respace
    from ...sampling import p_mean_var

    sched, kept = respace(s, taus.numel())
    assert torch.equal(kept, taus), "the cases use respaced_timesteps(T, S)"
    kb = torch.full((xt.shape[0],), k, dtype=torch.long)
    mean, var = p_mean_var(sched, RespacedModel(m, taus)(xt, kb), xt, k, "eps", "beta")
    return mean if k == 1 else mean + var.sqrt() * z


_TAUS_INDEX = ("taus holds tau_1..tau_S at the indices 0..S-1: tau_k is taus[k - 1] and "
               "tau_{k-1} is taus[k - 2]")
_RESPACED_SHAPES = ("one k serves the whole batch, so the schedule coefficients are single "
                    "numbers and x_prev has the shape of x. " + _TAUS_INDEX + ", with tau_0 = 0 "
                    "(alpha_bar_0 = 1) at k = 1; the model takes the times as a long (B,) tensor")


def check_respaced_step(fn: Callable, verbose: bool = True) -> CheckResult:  # long: the mistake list
    """Check Exercise 7.2, ``fn(model, schedule, taus, xt, k, z) -> x_prev``: one step of
    Algorithm 2 on the respaced schedule, from x_{tau_k} to x_{tau_{k-1}}.

    ``schedule`` is the ORIGINAL T-step schedule, ``taus`` the long tensor (S,) of the kept
    times tau_1 < ... < tau_S (``dmlib.respacing.respaced_timesteps``), ``k`` an int in 1..S:

        alpha_bar' = alpha_bar_{tau_k},  alpha_bar'_prev = alpha_bar_{tau_{k-1}} (1 at k = 1)
        beta'_k = 1 - alpha_bar' / alpha_bar'_prev,   alpha'_k = 1 - beta'_k
        x_prev = 1/sqrt(alpha'_k) (x - beta'_k / sqrt(1 - alpha_bar') eps_theta(x, tau_k))
                 + sqrt(beta'_k) z          (no noise at k = 1)

    with the model called at the original time tau_k as a long (B,) tensor. ``xt``, ``z``
    (B, 1, H, W). Chapter 7.
    """
    from ...respacing import respaced_timesteps

    lin = Schedule.linear(1000)
    cos = Schedule.cosine(50)
    tl, tc = respaced_timesteps(1000, 10), respaced_timesteps(50, 6)
    cases = [
        Case((toy_eps_model, cos, tc, _x((3, 1, 4, 4), 720), 3, _x((3, 1, 4, 4), 721)),
             "x of shape (3, 1, 4, 4), step k = 3 of S = 6 (taus = [8, 17, 25, 33, 42, 50], "
             "cosine, T=50)"),
        Case((toy_eps_model, lin, tl, _x((2, 1, 5, 5), 722), 10, _x((2, 1, 5, 5), 723)),
             "x of shape (2, 1, 5, 5), the first step k = S = 10 (taus = [100, 200, ..., "
             "1000], linear, T=1000)"),
        Case((toy_eps_model, lin, tl, _x((2, 1, 5, 5), 724), 1, _x((2, 1, 5, 5), 725)),
             "the last step k = 1 (tau_1 = 100, linear, T=1000, S=10)"),
        Case((toy_eps_model, cos, tc, _x((3, 1, 4, 4), 726), 2, _x((3, 1, 4, 4), 727)),
             "step k = 2 of S = 6 (from tau_2 = 17 to tau_1 = 8, cosine, T=50)"),
    ]
    R = _respaced_formula
    original = ("you took a step of the ORIGINAL schedule at t = tau_k (alpha_bar_{tau_k - 1}, "
                "beta_{tau_k}); a respaced step jumps from tau_k to tau_{k-1}, so it uses "
                "beta'_k = 1 - alpha_bar_{tau_k} / alpha_bar_{tau_{k-1}}")
    mistakes = [
        Mistake(original, lambda m, s, ts, x, k, z: R(s, ts, x, k, z, prev="minus1")),
        Mistake("the noise of a respaced step has variance beta'_k = 1 - alpha_bar_{tau_k} / "
                "alpha_bar_{tau_{k-1}}, not the original beta_{tau_k}: one step now covers "
                "tau_k - tau_{k-1} original steps",
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, var="orig")),
        Mistake("the model was trained on the original times: call it at tau_k "
                "(taus[k - 1]), not at the step index k",
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, model_at="k")),
        Mistake("look the schedule up at the original times: alpha_bar' = "
                "schedule.alpha_bar[tau_k], not schedule.alpha_bar[k]",
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, sched_at="k")),
        Mistake("your times are one kept step off: " + _TAUS_INDEX,
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, idx=1)),
        Mistake("at k = 1 the previous time is tau_0 = 0 with alpha_bar_0 = 1 (so beta'_1 = "
                "1 - alpha_bar_{tau_1}); taus[k - 2] wraps around to taus[-1] = T",
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, prev="wrap")),
        Mistake("at the last step (k = 1) no noise is added: return the mean",
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, noise_at_1=True)),
        Mistake("sigma is a standard deviation: with sigma^2 = beta'_k the noise is "
                "sqrt(beta'_k) * z, not beta'_k * z",
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, noise="var")),
        Mistake("this exercise uses sigma^2 = beta'_k; you used the posterior variance "
                "(1 - alpha_bar'_prev) / (1 - alpha_bar') beta'_k",
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, var="tilde")),
        Mistake("the mean is divided by sqrt(alpha'_k) = sqrt(1 - beta'_k), the one respaced "
                "step, not by sqrt(alpha_bar_{tau_k})",
                lambda m, s, ts, x, k, z: R(s, ts, x, k, z, inv="bar")),
    ]
    spec = Spec("check_respaced_step", _respaced_reference, cases, mistakes,
                broadcast_hint=_RESPACED_SHAPES)
    return run_check(fn, spec, verbose)


# --------------------------------------------------------------------------------------
# Exercise 7.3: the Fréchet distance between two feature sets
def _psd_sqrt(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def _fd_formula(a, b, two=2.0, mean="sq", ddof=1, root="matrix", rows=False):
    def cov(f):
        if rows:  # torch.cov(f) / np.cov(f): rows taken as the variables, (N, N)
            d = f - f.mean(1, keepdim=True)
            return d @ d.T / (f.shape[1] - 1)
        d = f - f.mean(0)
        return d.T @ d / (f.shape[0] - ddof)

    diff = a.mean(0) - b.mean(0)
    term = {"sq": diff.pow(2).sum(), "none": torch.zeros((), dtype=_D),
            "norm": diff.pow(2).sum().sqrt(), "avg": diff.pow(2).mean()}[mean]
    s1, s2 = cov(a), cov(b)
    if root == "matrix":
        r1 = _psd_sqrt(s1)
        cross = torch.trace(_psd_sqrt(r1 @ s2 @ r1))
    elif root == "elementwise":  # sqrt of the entries of S_a S_b
        cross = torch.diagonal(s1 @ s2).sqrt().sum()
    elif root == "diag":  # standard deviations only
        cross = (torch.diagonal(s1) * torch.diagonal(s2)).sqrt().sum()
    elif root == "none":  # no outer square root
        cross = torch.trace(s1 @ s2)
    else:  # "roots": S_a^{1/2} S_b^{1/2}
        cross = torch.trace(_psd_sqrt(s1) @ _psd_sqrt(s2))
    return term + torch.trace(s1) + torch.trace(s2) - two * cross


def _as_scalar(fn: Callable) -> Callable:
    """Accept a float, a numpy scalar or a one-element tensor: compare it as a 0-d float64
    tensor. Anything else goes to the framework unchanged (so it reports the shape)."""
    @wraps(fn)
    def wrapped(a, b):
        out = fn(a, b)
        if isinstance(out, (np.ndarray, np.generic)) or (
                isinstance(out, numbers.Number) and not isinstance(out, bool)):
            out = torch.as_tensor(np.asarray(out))
        if isinstance(out, torch.Tensor):
            if out.is_complex():
                raise TypeError("the distance came out complex: scipy.linalg.sqrtm returns a "
                                "complex matrix when round-off makes an eigenvalue slightly "
                                "negative; keep the real part (.real)")
            out = out.detach().cpu().to(_D)
            if out.numel() == 1:
                out = out.reshape(())
        return out
    return wrapped


def _feats(n: int, d: int, seed: int, shift: float = 0.0, positive: bool = False) -> torch.Tensor:
    """n correlated feature vectors in d dimensions; ``positive``: all covariances > 0."""
    mix = _x((d, d), seed + 1)
    mix = 0.5 * torch.eye(d, dtype=_D) + 0.3 * (mix.abs() if positive else mix)
    return _x((n, d), seed) @ mix + shift


def check_frechet_distance(fn: Callable, verbose: bool = True) -> CheckResult:
    """Check Exercise 7.3, ``fn(feats_a, feats_b) -> FD`` (a float or a 0-d tensor): the
    Fréchet distance between the Gaussians fitted to two feature sets (N_a, D) and (N_b, D),

        FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})

    with mu the mean over the rows and S the unbiased (divide by N - 1) covariance (D, D).
    Chapter 7.
    """
    from ...quality import frechet_distance

    same = _feats(50, 4, 740)
    cases = [
        Case((_feats(40, 3, 730, positive=True), _feats(40, 3, 732, 0.4, positive=True)),
             "two sets of 40 feature vectors in D = 3 (different means and covariances)"),
        Case((_feats(60, 5, 734), _feats(150, 5, 736, -0.3)),
             "60 against 150 feature vectors in D = 5"),
        Case((same, same.clone()), "the same 50 vectors (D = 4) twice: FD must be 0"),
        Case((same, same + torch.tensor([0.5, -1.0, 0.0, 2.0], dtype=_D)),
             "the same 50 vectors (D = 4) and a shifted copy: FD = ||shift||^2"),
    ]
    mistakes = [
        Mistake("the cross term is -2 Tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}): the factor 2 is "
                "missing", lambda a, b: _fd_formula(a, b, two=1.0)),
        Mistake("the mean term ||mu_a - mu_b||^2 is missing: two sets with equal covariances "
                "but different means must have FD > 0",
                lambda a, b: _fd_formula(a, b, mean="none")),
        Mistake("the mean term is the SQUARED distance ||mu_a - mu_b||^2, not the distance",
                lambda a, b: _fd_formula(a, b, mean="norm")),
        Mistake("||mu_a - mu_b||^2 SUMS the squared differences over the D features, it does "
                "not average them", lambda a, b: _fd_formula(a, b, mean="avg")),
        Mistake("use the unbiased covariance, dividing by N - 1 (torch.cov and np.cov do), "
                "not by N", lambda a, b: _fd_formula(a, b, ddof=0)),
        Mistake("the square root in the cross term is a MATRIX square root (R with R @ R = M: "
                "from an eigendecomposition, or scipy.linalg.sqrtm), not the square root of "
                "each entry", lambda a, b: _fd_formula(a, b, root="elementwise")),
        Mistake("you used only the variances (standard deviations, the diagonals): FD uses "
                "the full covariance matrices, so correlations between features count",
                lambda a, b: _fd_formula(a, b, root="diag")),
        Mistake("the outer square root of S_a^{1/2} S_b S_a^{1/2} is missing",
                lambda a, b: _fd_formula(a, b, root="none")),
        Mistake("(S_a^{1/2} S_b S_a^{1/2})^{1/2} is not S_a^{1/2} S_b^{1/2} (the covariances do "
                "not commute): take the square root of the whole product",
                lambda a, b: _fd_formula(a, b, root="roots")),
        Mistake("the covariances must be (D, D), over the features: the rows of feats are "
                "samples, so use torch.cov(feats.T) or np.cov(feats, rowvar=False) "
                "(torch.cov(feats) and np.cov(feats) treat rows as variables)",
                lambda a, b: _fd_formula(a, b, rows=True)),
    ]
    spec = Spec("check_frechet_distance",
                lambda a, b: torch.tensor(frechet_distance(a, b), dtype=_D), cases, mistakes,
                broadcast_hint="feats are (N, D) with one sample per row: the means are (D,), "
                "the covariances (D, D) (torch.cov(feats.T)), and FD is one number")
    return run_check(_as_scalar(fn), spec, verbose)
