"""A corpus of student solutions for every exercise check, written from the exercise
statements in the chapters (not from the checks' lists of mistakes): WRONG solutions that a
check must reject, and RIGHT ones (other formulations, float32 arithmetic, autograd) that it
must accept. ``tests/test_checks_corpus.py`` runs them and reports the share of wrong ones
that get a specific hint."""

import math

import numpy as np
import torch

# ---------------------------------------------------------------------------------------
# Helpers a student would write
def c(values, t, x, shift=0):
    """values[t + shift] as a column that broadcasts against x, in x's dtype."""
    t = torch.as_tensor(t) + shift
    v = values[t].to(x.dtype)
    return v.reshape(-1, *[1] * (x.dim() - 1)) if t.dim() else v


def cols(s, t, x, shift=0):
    """(alpha_bar_t, alpha_bar_{t-1}, beta_t, alpha_t) as columns."""
    return (c(s.alpha_bar, t, x, shift), c(s.alpha_bar_prev, t, x, shift),
            c(s.betas, t, x, shift), c(s.alphas, t, x, shift))


def tb(t, x):
    t = torch.as_tensor(t, dtype=torch.long)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def log_n(x, m, v):
    return -0.5 * torch.log(2 * math.pi * v) - (x - m) ** 2 / (2 * v)


WRONG: list = []   # (check name, label, function)
RIGHT: list = []


def wrong(check, label):
    def deco(fn):
        WRONG.append((check, label, fn))
        return fn
    return deco


def right(check, label):
    def deco(fn):
        RIGHT.append((check, label, fn))
        return fn
    return deco


def W(check, label, fn):
    WRONG.append((check, label, fn))


def R(check, label, fn):
    RIGHT.append((check, label, fn))


# ---------------------------------------------------------------------------------------
# 0.1 alpha_bar from betas
A = "check_alpha_bar"
R(A, "cumprod", lambda b: torch.cumprod(1 - b, dim=0))
R(A, "exp cumsum log", lambda b: torch.exp(torch.cumsum(torch.log1p(-b), 0)))
R(A, "python loop", lambda b: torch.stack([torch.prod(1 - b[:k + 1]) for k in range(len(b))]))
W(A, "cumprod of betas", lambda b: torch.cumprod(b, 0))
W(A, "one minus cumprod of betas", lambda b: 1 - torch.cumprod(b, 0))
W(A, "cumsum", lambda b: torch.cumsum(1 - b, 0))
W(A, "first-order 1 - cumsum beta", lambda b: 1 - torch.cumsum(b, 0))
W(A, "total product only", lambda b: torch.prod(1 - b))
W(A, "float32", lambda b: torch.cumprod(1 - b.float(), 0))
W(A, "sqrt", lambda b: torch.cumprod(1 - b, 0).sqrt())
W(A, "alphas only", lambda b: 1 - b)
W(A, "exclusive product", lambda b: torch.cumprod(torch.cat([torch.ones(1, dtype=b.dtype), 1 - b[:-1]]), 0))

# 0.2 pixels to [-1, 1]
P = "check_to_model_range"
R(P, "float div", lambda p: p.float() / 127.5 - 1)
R(P, "true division of uint8", lambda p: (p / 255) * 2 - 1)
R(P, "centre then scale", lambda p: (p - 127.5) / 127.5)
W(P, "[0, 1]", lambda p: p.float() / 255)
W(P, "divide by 128", lambda p: p.float() / 128 - 1)
W(P, "float64", lambda p: p.double() / 127.5 - 1)
W(P, "uint8 times 2", lambda p: (p * 2) / 255 - 1)
W(P, "plus one", lambda p: p.float() / 127.5 + 1)
W(P, "inverted", lambda p: 1 - p.float() / 127.5)
W(P, "half range", lambda p: p.float() / 255 - 0.5)

# 0.3 SNR
S = "check_snr"
R(S, "ratio", lambda a: a / (1 - a))
R(S, "exp logit", lambda a: torch.exp(torch.log(a) - torch.log1p(-a)))
W(S, "upside down", lambda a: (1 - a) / a)
W(S, "std ratio", lambda a: a.sqrt() / (1 - a).sqrt())
W(S, "log snr", lambda a: torch.log(a / (1 - a)))
W(S, "plus", lambda a: a / (1 + a))
W(S, "one over noise", lambda a: 1 / (1 - a))
W(S, "sqrt on the denominator only", lambda a: a / (1 - a).sqrt())

# ---------------------------------------------------------------------------------------
# 1.1 a x + b y
SP = "check_sum_params"
R(SP, "formula", lambda mx, vx, my, vy, a, b: (a * mx + b * my, a ** 2 * vx + b ** 2 * vy))
R(SP, "float32 arithmetic", lambda mx, vx, my, vy, a, b: (
    (a.float() * mx.float() + b.float() * my.float()).to(mx.dtype),
    (a.float() ** 2 * vx.float() + b.float() ** 2 * vy.float()).to(mx.dtype)))
W(SP, "linear in the variances", lambda mx, vx, my, vy, a, b: (a * mx + b * my, a * vx + b * vy))
W(SP, "ignores a, b in the variance", lambda mx, vx, my, vy, a, b: (a * mx + b * my, vx + vy))
W(SP, "stds add", lambda mx, vx, my, vy, a, b: (a * mx + b * my, (a * vx.sqrt() + b * vy.sqrt()) ** 2))
W(SP, "variances subtract", lambda mx, vx, my, vy, a, b: (a * mx + b * my, a ** 2 * vx - b ** 2 * vy))
W(SP, "returns var, mean", lambda mx, vx, my, vy, a, b: (a ** 2 * vx + b ** 2 * vy, a * mx + b * my))
W(SP, "everything unscaled", lambda mx, vx, my, vy, a, b: (mx + my, vx + vy))
W(SP, "returns std", lambda mx, vx, my, vy, a, b: (a * mx + b * my, (a ** 2 * vx + b ** 2 * vy).sqrt()))
W(SP, "squares the variances", lambda mx, vx, my, vy, a, b: (a * mx + b * my, a ** 2 * vx ** 2 + b ** 2 * vy ** 2))
W(SP, "abs(a) in the mean", lambda mx, vx, my, vy, a, b: (a.abs() * mx + b.abs() * my, a ** 2 * vx + b ** 2 * vy))

# 1.2 KL of 1-D Gaussians
K = "check_kl_gaussian"
R(K, "slide form", lambda m1, v1, m2, v2: torch.log(v2.sqrt() / v1.sqrt()) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5)
R(K, "expanded", lambda m1, v1, m2, v2: 0.5 * (v1 / v2 + (m1 - m2) ** 2 / v2 - 1 + torch.log(v2) - torch.log(v1)))
R(K, "float32 arithmetic", lambda m1, v1, m2, v2: (0.5 * (torch.log(v2.float() / v1.float()) + (v1.float() + (m1.float() - m2.float()) ** 2) / v2.float() - 1)).to(torch.promote_types(m1.dtype, v1.dtype)))
W(K, "reversed", lambda m1, v1, m2, v2: 0.5 * (torch.log(v1 / v2) + (v2 + (m1 - m2) ** 2) / v1 - 1))
W(K, "log var no half", lambda m1, v1, m2, v2: torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5)
W(K, "log sign", lambda m1, v1, m2, v2: 0.5 * torch.log(v1 / v2) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5)
W(K, "no -1/2", lambda m1, v1, m2, v2: 0.5 * torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / (2 * v2))
W(K, "twice", lambda m1, v1, m2, v2: torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)
W(K, "treats variances as stds", lambda m1, v1, m2, v2: torch.log(v2 / v1) + (v1 ** 2 + (m1 - m2) ** 2) / (2 * v2 ** 2) - 0.5)
W(K, "var1 term missing", lambda m1, v1, m2, v2: 0.5 * torch.log(v2 / v1) + (m1 - m2) ** 2 / (2 * v2) - 0.5)
W(K, "divides by var1", lambda m1, v1, m2, v2: 0.5 * torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / (2 * v1) - 0.5)
W(K, "returns a float", lambda m1, v1, m2, v2: float((0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)).sum()))
W(K, "sums to a scalar", lambda m1, v1, m2, v2: (0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)).sum())

# 1.3 Monte Carlo KL
MC = "check_kl_monte_carlo"
R(MC, "with log densities", lambda m1, v1, m2, v2, e: (log_n(m1 + v1.sqrt() * e, m1, v1) - log_n(m1 + v1.sqrt() * e, m2, v2)).mean())
R(MC, "without 2 pi (it cancels)", lambda m1, v1, m2, v2, e: (
    (-0.5 * torch.log(v1) - (v1.sqrt() * e) ** 2 / (2 * v1))
    - (-0.5 * torch.log(v2) - (m1 + v1.sqrt() * e - m2) ** 2 / (2 * v2))).mean())
R(MC, "torch.distributions", lambda m1, v1, m2, v2, e: (
    torch.distributions.Normal(m1, v1.sqrt()).log_prob(m1 + v1.sqrt() * e)
    - torch.distributions.Normal(m2, v2.sqrt()).log_prob(m1 + v1.sqrt() * e)).mean())
W(MC, "samples from q", lambda m1, v1, m2, v2, e: (log_n(m2 + v2.sqrt() * e, m1, v1) - log_n(m2 + v2.sqrt() * e, m2, v2)).mean())
W(MC, "log q - log p", lambda m1, v1, m2, v2, e: (log_n(m1 + v1.sqrt() * e, m2, v2) - log_n(m1 + v1.sqrt() * e, m1, v1)).mean())
W(MC, "x = mu + var eps", lambda m1, v1, m2, v2, e: (log_n(m1 + v1 * e, m1, v1) - log_n(m1 + v1 * e, m2, v2)).mean())
W(MC, "sum not mean", lambda m1, v1, m2, v2, e: (log_n(m1 + v1.sqrt() * e, m1, v1) - log_n(m1 + v1.sqrt() * e, m2, v2)).sum())
W(MC, "no log-normaliser", lambda m1, v1, m2, v2, e: (-(v1.sqrt() * e) ** 2 / (2 * v1) + (m1 + v1.sqrt() * e - m2) ** 2 / (2 * v2)).mean())
W(MC, "mixed std", lambda m1, v1, m2, v2, e: (log_n(m1 + v2.sqrt() * e, m1, v1) - log_n(m1 + v2.sqrt() * e, m2, v2)).mean())
W(MC, "closed form", lambda m1, v1, m2, v2, e: 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1))
W(MC, "no average", lambda m1, v1, m2, v2, e: log_n(m1 + v1.sqrt() * e, m1, v1) - log_n(m1 + v1.sqrt() * e, m2, v2))
W(MC, "log var instead of log std", lambda m1, v1, m2, v2, e: (
    (-torch.log(v1) - (v1.sqrt() * e) ** 2 / (2 * v1)) - (-torch.log(v2) - (m1 + v1.sqrt() * e - m2) ** 2 / (2 * v2))).mean())

# 1.4 product of Gaussian densities
PR = "check_product_mean_var"
R(PR, "precisions", lambda m1, v1, m2, v2: ((m1 / v1 + m2 / v2) / (1 / v1 + 1 / v2), 1 / (1 / v1 + 1 / v2)))
R(PR, "cross-multiplied", lambda m1, v1, m2, v2: ((m1 * v2 + m2 * v1) / (v1 + v2), v1 * v2 / (v1 + v2)))
W(PR, "average means, sum vars", lambda m1, v1, m2, v2: ((m1 + m2) / 2, v1 + v2))
W(PR, "weights the wrong way", lambda m1, v1, m2, v2: ((m1 * v1 + m2 * v2) / (v1 + v2), v1 * v2 / (v1 + v2)))
W(PR, "unnormalised mean", lambda m1, v1, m2, v2: (m1 / v1 + m2 / v2, 1 / (1 / v1 + 1 / v2)))
W(PR, "summed precision", lambda m1, v1, m2, v2: ((m1 * v2 + m2 * v1) / (v1 + v2), 1 / v1 + 1 / v2))
W(PR, "std", lambda m1, v1, m2, v2: ((m1 * v2 + m2 * v1) / (v1 + v2), (v1 * v2 / (v1 + v2)).sqrt()))
W(PR, "swapped outputs", lambda m1, v1, m2, v2: (v1 * v2 / (v1 + v2), (m1 * v2 + m2 * v1) / (v1 + v2)))
W(PR, "sum of random variables", lambda m1, v1, m2, v2: (m1 + m2, v1 + v2))
W(PR, "mean over the product of variances", lambda m1, v1, m2, v2: ((m1 * v2 + m2 * v1) / (v1 * v2), v1 * v2 / (v1 + v2)))
W(PR, "average variance", lambda m1, v1, m2, v2: ((m1 * v2 + m2 * v1) / (v1 + v2), (v1 + v2) / 2))

# ---------------------------------------------------------------------------------------
# 2.1 coupling log-det
CL = "check_coupling_log_det"
R(CL, "formula", lambda z, m, s: ((1 - m) * s(m * z)).sum(-1))
R(CL, "log of the scales", lambda z, m, s: torch.log(torch.exp((1 - m) * s(m * z))).sum(dim=1))


@right(CL, "autograd Jacobian diagonal")
def _cl_autograd(z, mask, s):
    z = z.detach().clone().requires_grad_(True)
    y = mask * z + (1 - mask) * (z * torch.exp(s(mask * z)))
    diag = [torch.autograd.grad(y[:, j].sum(), z, retain_graph=True)[0][:, j] for j in range(z.shape[1])]
    return torch.log(torch.stack(diag, 1).abs()).sum(1)


W(CL, "minus", lambda z, m, s: -((1 - m) * s(m * z)).sum(-1))
W(CL, "exp", lambda z, m, s: ((1 - m) * torch.exp(s(m * z))).sum(-1))
W(CL, "no mask in the sum", lambda z, m, s: s(m * z).sum(-1))
W(CL, "mask reversed", lambda z, m, s: (m * s(m * z)).sum(-1))
W(CL, "s of z", lambda z, m, s: ((1 - m) * s(z)).sum(-1))
W(CL, "mean", lambda z, m, s: ((1 - m) * s(m * z)).mean(-1))
W(CL, "no sum", lambda z, m, s: (1 - m) * s(m * z))
W(CL, "sum over the batch", lambda z, m, s: ((1 - m) * s(m * z)).sum(0))
W(CL, "log of s", lambda z, m, s: ((1 - m) * torch.log(s(m * z).abs())).sum(-1))
W(CL, "prod of the scales", lambda z, m, s: torch.prod(torch.exp((1 - m) * s(m * z)), -1))

# 2.2 Euler step
EU = "check_euler_step"
R(EU, "formula", lambda f, z, t, dt: z + dt * f(z, t))
R(EU, "float32 arithmetic", lambda f, z, t, dt: (z.float() + dt * f(z, t).float()).to(z.dtype))
W(EU, "no dt", lambda f, z, t, dt: z + f(z, t))
W(EU, "end of step", lambda f, z, t, dt: z + dt * f(z, t + dt))
W(EU, "Heun", lambda f, z, t, dt: z + dt / 2 * (f(z, t) + f(z + dt * f(z, t), t + dt)))
W(EU, "midpoint", lambda f, z, t, dt: z + dt * f(z + dt / 2 * f(z, t), t + dt / 2))
W(EU, "minus", lambda f, z, t, dt: z - dt * f(z, t))
W(EU, "increment only", lambda f, z, t, dt: dt * f(z, t))
W(EU, "time argument dt", lambda f, z, t, dt: z + dt * f(z, dt))
W(EU, "f at z + dt", lambda f, z, t, dt: z + dt * f(z + dt, t))
W(EU, "backward-Euler guess", lambda f, z, t, dt: z + dt * f(z + dt * f(z, t), t + dt))

# 2.3 Hutchinson
HU = "check_hutchinson"
R(HU, "loop", lambda vjp, e: torch.stack([(vjp(k) * k).sum(-1) for k in e]).mean(0))
R(HU, "einsum", lambda vjp, e: torch.einsum("kbd,kbd->kb", torch.stack([vjp(k) for k in e]), e).mean(0))
W(HU, "sum over probes", lambda vjp, e: torch.stack([(vjp(k) * k).sum(-1) for k in e]).sum(0))
W(HU, "no second eps", lambda vjp, e: torch.stack([vjp(k).sum(-1) for k in e]).mean(0))
W(HU, "squared norm", lambda vjp, e: torch.stack([(vjp(k) ** 2).sum(-1) for k in e]).mean(0))
W(HU, "first probe", lambda vjp, e: (vjp(e[0]) * e[0]).sum(-1))
W(HU, "eps.eps", lambda vjp, e: (e * e).sum(-1).mean(0))
W(HU, "mean over d too", lambda vjp, e: torch.stack([(vjp(k) * k).mean(-1) for k in e]).mean(0))
W(HU, "no mean over K", lambda vjp, e: torch.stack([(vjp(k) * k).sum(-1) for k in e]))
W(HU, "probe against the last one", lambda vjp, e: torch.stack([(vjp(k) * e[-1]).sum(-1) for k in e]).mean(0))

# ---------------------------------------------------------------------------------------
# 3.1 one noising step
QS = "check_q_step"
R(QS, "extract", lambda s, x, t, e: s.extract(s.alphas, t, x).sqrt() * x + s.extract(s.betas, t, x).sqrt() * e)
R(QS, "column", lambda s, x, t, e: (1 - c(s.betas, t, x)).sqrt() * x + c(s.betas, t, x).sqrt() * e)
W(QS, "beta as std", lambda s, x, t, e: (1 - c(s.betas, t, x)).sqrt() * x + c(s.betas, t, x) * e)
W(QS, "alpha_bar", lambda s, x, t, e: c(s.alpha_bar, t, x).sqrt() * x + (1 - c(s.alpha_bar, t, x)).sqrt() * e)
W(QS, "x scaled by alpha", lambda s, x, t, e: (1 - c(s.betas, t, x)) * x + c(s.betas, t, x).sqrt() * e)
W(QS, "x unscaled", lambda s, x, t, e: x + c(s.betas, t, x).sqrt() * e)
W(QS, "minus", lambda s, x, t, e: (1 - c(s.betas, t, x)).sqrt() * x - c(s.betas, t, x).sqrt() * e)
W(QS, "t - 1", lambda s, x, t, e: (1 - c(s.betas, t, x, -1)).sqrt() * x + c(s.betas, t, x, -1).sqrt() * e)
W(QS, "swapped coefficients", lambda s, x, t, e: c(s.betas, t, x).sqrt() * x + (1 - c(s.betas, t, x)).sqrt() * e)
W(QS, "slide variance", lambda s, x, t, e: (1 - c(s.betas, t, x)).sqrt() * x + c(s.betas, t, x) ** 0.25 * e)
W(QS, "no cast", lambda s, x, t, e: (1 - s.betas[t].reshape(-1, *[1] * (x.dim() - 1)) if torch.as_tensor(t).dim() else 1 - s.betas[t]).sqrt() * x
  + (s.betas[t].reshape(-1, *[1] * (x.dim() - 1)) if torch.as_tensor(t).dim() else s.betas[t]).sqrt() * e)
W(QS, "1 - sqrt(beta)", lambda s, x, t, e: (1 - c(s.betas, t, x).sqrt()) * x + c(s.betas, t, x).sqrt() * e)

# 3.2 q_sample
Q = "check_q_sample"
R(Q, "extract", lambda s, x0, t, e: s.extract(s.sqrt_alpha_bar, t, x0) * x0 + s.extract(s.sqrt_one_minus_alpha_bar, t, x0) * e)
R(Q, "column", lambda s, x0, t, e: c(s.alpha_bar, t, x0).sqrt() * x0 + (1 - c(s.alpha_bar, t, x0)).sqrt() * e)
R(Q, "view shape", lambda s, x0, t, e: (lambda a: a.sqrt() * x0 + (1 - a).sqrt() * e)(
    s.alpha_bar[t].to(x0.dtype).view(-1, *([1] * (x0.ndim - 1))) if torch.is_tensor(t) else s.alpha_bar[t].to(x0.dtype)))
W(Q, "t - 1", lambda s, x0, t, e: c(s.alpha_bar, t, x0, -1).sqrt() * x0 + (1 - c(s.alpha_bar, t, x0, -1)).sqrt() * e)
W(Q, "alpha", lambda s, x0, t, e: c(s.alphas, t, x0).sqrt() * x0 + (1 - c(s.alphas, t, x0)).sqrt() * e)
W(Q, "variance noise", lambda s, x0, t, e: c(s.alpha_bar, t, x0).sqrt() * x0 + (1 - c(s.alpha_bar, t, x0)) * e)
W(Q, "no sqrt on x0", lambda s, x0, t, e: c(s.alpha_bar, t, x0) * x0 + (1 - c(s.alpha_bar, t, x0)).sqrt() * e)
W(Q, "minus", lambda s, x0, t, e: c(s.alpha_bar, t, x0).sqrt() * x0 - (1 - c(s.alpha_bar, t, x0)).sqrt() * e)
W(Q, "no noise", lambda s, x0, t, e: c(s.alpha_bar, t, x0).sqrt() * x0)
W(Q, "swapped", lambda s, x0, t, e: (1 - c(s.alpha_bar, t, x0)).sqrt() * x0 + c(s.alpha_bar, t, x0).sqrt() * e)
W(Q, "1 - sqrt(alpha_bar)", lambda s, x0, t, e: c(s.alpha_bar, t, x0).sqrt() * x0 + (1 - c(s.alpha_bar, t, x0).sqrt()) * e)
W(Q, "no cast", lambda s, x0, t, e: (lambda a: a.sqrt() * x0 + (1 - a).sqrt() * e)(
    s.alpha_bar[t].view(-1, *([1] * (x0.ndim - 1))) if torch.is_tensor(t) else s.alpha_bar[t]))
W(Q, "hard-coded 4-D reshape", lambda s, x0, t, e: (lambda a: a.sqrt() * x0 + (1 - a).sqrt() * e)(
    (s.alpha_bar[t].to(x0.dtype).reshape(-1, 1) if x0.dim() == 2 else s.alpha_bar[t].to(x0.dtype).reshape(-1, 1, 1, 1))
    if torch.is_tensor(t) else s.alpha_bar[t].to(x0.dtype)))


@wrong(Q, "in-place sqrt of the schedule")
def _q_inplace(s, x0, t, e):
    ab = s.alpha_bar
    one_m = 1 - c(ab, t, x0)
    ab.sqrt_()
    return c(ab, t, x0) * x0 + one_m.sqrt() * e


@wrong(Q, "in-place on x0")
def _q_inplace_x0(s, x0, t, e):
    x0.mul_(c(s.alpha_bar, t, x0).sqrt())
    return x0 + (1 - c(s.alpha_bar, t, x0)).sqrt() * e


# 3.3 prior KL
PK = "check_prior_kl"


def _pk(s, x0, ab=None, var=None, half=0.5, logf=lambda v: math.log(v), red="sum", m2=None):
    ab = float(s.alpha_bar[s.T]) if ab is None else ab
    v = 1 - ab if var is None else var
    mm = ab * x0 ** 2 if m2 is None else m2
    kl = half * (mm + v - 1 - logf(v))
    kl = kl.reshape(x0.shape[0], -1)
    return kl.sum(1) if red == "sum" else kl.mean(1)


R(PK, "formula", lambda s, x0: _pk(s, x0))
R(PK, "normal_kl style", lambda s, x0: (0.5 * (torch.log(1 / (1 - s.alpha_bar[s.T])) + (1 - s.alpha_bar[s.T]) + s.alpha_bar[s.T] * x0 ** 2 - 1)).to(x0.dtype).flatten(1).sum(1))
W(PK, "std as variance", lambda s, x0: _pk(s, x0, var=math.sqrt(1 - float(s.alpha_bar[s.T]))))
W(PK, "mean over dims", lambda s, x0: _pk(s, x0, red="mean"))
W(PK, "no 1/2", lambda s, x0: _pk(s, x0, half=1.0))
W(PK, "no log", lambda s, x0: _pk(s, x0, logf=lambda v: 0.0))
W(PK, "alpha_T", lambda s, x0: _pk(s, x0, ab=float(s.alphas[s.T])))
W(PK, "T - 1", lambda s, x0: _pk(s, x0, ab=float(s.alpha_bar[s.T - 1])))
W(PK, "alpha_bar squared in the mean", lambda s, x0: _pk(s, x0, m2=float(s.alpha_bar[s.T]) ** 2 * x0 ** 2))
W(PK, "scalar for the batch", lambda s, x0: _pk(s, x0).sum())
W(PK, "log of the std", lambda s, x0: _pk(s, x0, logf=lambda v: 0.5 * math.log(v)))
W(PK, "reversed", lambda s, x0: (0.5 * (math.log(1 - float(s.alpha_bar[s.T])) + (1 + float(s.alpha_bar[s.T]) * x0 ** 2) / (1 - float(s.alpha_bar[s.T])) - 1)).flatten(1).sum(1))

# 3.4 cosine schedule
CO = "check_cosine_alpha_bar"


def _cos(T, s, sq=2, norm=True, div=True, fn=torch.cos, scale=math.pi / 2, dtype=torch.float64, n=None):
    u = torch.arange(T + 1 if n is None else n, dtype=dtype) / T
    f = fn(((u + s) / (1 + s) if div else u + s) * scale) ** sq
    return f / f[0] if norm else f


R(CO, "formula", lambda T, s: _cos(T, s))
R(CO, "math loop", lambda T, s: torch.tensor([math.cos(math.pi / 2 * (t / T + s) / (1 + s)) ** 2 / math.cos(math.pi / 2 * s / (1 + s)) ** 2 for t in range(T + 1)], dtype=torch.float64))
W(CO, "not normalised", lambda T, s: _cos(T, s, norm=False))
W(CO, "not squared", lambda T, s: _cos(T, s, sq=1))
W(CO, "no 1 + s", lambda T, s: _cos(T, s, div=False))
W(CO, "no s", lambda T, s: _cos(T, 0.0))
W(CO, "complement", lambda T, s: 1 - _cos(T, s))
W(CO, "float32", lambda T, s: _cos(T, s, dtype=torch.float32))
W(CO, "sin", lambda T, s: _cos(T, s, fn=torch.sin))
W(CO, "pi instead of pi/2", lambda T, s: _cos(T, s, scale=math.pi))
W(CO, "t = 1..T only", lambda T, s: _cos(T, s)[1:])
W(CO, "with the 0.999 cap", lambda T, s: torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(
    1 - (1 - _cos(T, s)[1:] / _cos(T, s)[:-1]).clamp(max=0.999), 0)]))

# ---------------------------------------------------------------------------------------
# 4.1 posterior mean
PM = "check_posterior_mean"


def _pm(s, x0, xt, t, shift=0, sq_abp=True, sq_a=True, swap=False, a_bar=False, den_prev=False):
    ab, abp, b, a = cols(s, t, x0, shift)
    a = ab if a_bar else a
    den = (1 - abp) if den_prev else (1 - ab)
    c0 = (abp.sqrt() if sq_abp else abp) * b / den
    ct = (a.sqrt() if sq_a else a) * (1 - abp) / den
    return ct * x0 + c0 * xt if swap else c0 * x0 + ct * xt


R(PM, "coefficients", lambda *a: _pm(*a))
R(PM, "schedule coefficients", lambda s, x0, xt, t: s.extract(s.posterior_mean_coef_x0, t, x0) * x0 + s.extract(s.posterior_mean_coef_xt, t, x0) * xt)
R(PM, "alpha_bar[t - 1]", lambda s, x0, xt, t: (lambda ab, abp, b, a: abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt)(
    c(s.alpha_bar, t, x0), c(s.alpha_bar, t, x0, -1), c(s.betas, t, x0), c(s.alphas, t, x0)))
W(PM, "swapped", lambda *a: _pm(*a, swap=True))
W(PM, "alpha_bar in coef_xt", lambda *a: _pm(*a, a_bar=True))
W(PM, "no sqrt", lambda *a: _pm(*a, sq_abp=False, sq_a=False))
W(PM, "no sqrt on alpha_bar_{t-1}", lambda *a: _pm(*a, sq_abp=False))
W(PM, "no sqrt on alpha_t", lambda *a: _pm(*a, sq_a=False))
W(PM, "t - 1", lambda *a: _pm(*a, shift=-1))
W(PM, "1 - alpha_bar_{t-1} below", lambda *a: _pm(*a, den_prev=True))
W(PM, "no cast", lambda s, x0, xt, t: (lambda r: s.posterior_mean_coef_x0[t].reshape(r) * x0 + s.posterior_mean_coef_xt[t].reshape(r) * xt)(
    (-1, *[1] * (x0.dim() - 1)) if torch.is_tensor(t) else ()))


@wrong(PM, "NaN at t = 1 (alpha_bar_{t-1} from a log ratio)")
def _pm_nan(s, x0, xt, t):
    ab, b, a = c(s.alpha_bar, t, x0), c(s.betas, t, x0), c(s.alphas, t, x0)
    abp = torch.exp(torch.log(ab) - torch.log(a))
    ct = a.sqrt() * torch.exp(torch.log(1 - abp) - torch.log(1 - ab))  # log(0) at t = 1 (abp = 1)
    ct = torch.where(torch.isinf(torch.log(1 - abp)), torch.full_like(ct, float("nan")), ct)
    return abp.sqrt() * b / (1 - ab) * x0 + ct * xt


# 4.2 posterior variance
PV = "check_posterior_variance"


def _g(v, t, shift=0):
    return v[torch.as_tensor(t) + shift]


R(PV, "formula", lambda s, t: (1 - _g(s.alpha_bar_prev, t)) / (1 - _g(s.alpha_bar, t)) * _g(s.betas, t))
R(PV, "alpha_bar[t - 1]", lambda s, t: (1 - _g(s.alpha_bar, t, -1)) / (1 - _g(s.alpha_bar, t)) * _g(s.betas, t))
W(PV, "upside down", lambda s, t: (1 - _g(s.alpha_bar, t)) / (1 - _g(s.alpha_bar_prev, t)) * _g(s.betas, t))
W(PV, "std", lambda s, t: ((1 - _g(s.alpha_bar_prev, t)) / (1 - _g(s.alpha_bar, t)) * _g(s.betas, t)).sqrt())
W(PV, "beta", lambda s, t: _g(s.betas, t))
W(PV, "t - 1", lambda s, t: (1 - _g(s.alpha_bar_prev, t, -1)) / (1 - _g(s.alpha_bar, t, -1)) * _g(s.betas, t, -1))
W(PV, "single alphas", lambda s, t: (1 - _g(s.alphas, t, -1)) / (1 - _g(s.alphas, t)) * _g(s.betas, t))
W(PV, "no beta", lambda s, t: (1 - _g(s.alpha_bar_prev, t)) / (1 - _g(s.alpha_bar, t)))
W(PV, "column shape", lambda s, t: ((1 - _g(s.alpha_bar_prev, t)) / (1 - _g(s.alpha_bar, t)) * _g(s.betas, t)).reshape(-1, 1))
W(PV, "float32", lambda s, t: ((1 - _g(s.alpha_bar_prev, t)) / (1 - _g(s.alpha_bar, t)) * _g(s.betas, t)).float())
W(PV, "beta_{t-1}", lambda s, t: (1 - _g(s.alpha_bar_prev, t)) / (1 - _g(s.alpha_bar, t)) * _g(s.betas, t, -1))

# 4.3 equal-variance KL
EV = "check_equal_variance_kl"


def _sqd(a, b):
    return (a - b).pow(2).flatten(1)


R(EV, "formula", lambda a, b, v: _sqd(a, b).sum(1) / (2 * v))
R(EV, "per dimension", lambda a, b, v: (_sqd(a, b) / (2 * v[:, None])).sum(1))
W(EV, "no 1/2", lambda a, b, v: _sqd(a, b).sum(1) / v)
W(EV, "std", lambda a, b, v: _sqd(a, b).sum(1) / (2 * v.sqrt()))
W(EV, "var squared", lambda a, b, v: _sqd(a, b).sum(1) / (2 * v ** 2))
W(EV, "mean over dims", lambda a, b, v: _sqd(a, b).mean(1) / (2 * v))
W(EV, "minus 1/2", lambda a, b, v: _sqd(a, b).sum(1) / (2 * v) - 0.5)
W(EV, "scalar", lambda a, b, v: (_sqd(a, b).sum(1) / (2 * v)).sum())
W(EV, "norm not squared", lambda a, b, v: _sqd(a, b).sum(1).sqrt() / (2 * v))
W(EV, "full Gaussian KL with equal variances times d", lambda a, b, v: _sqd(a, b).sum(1) / (2 * v) + 0.5 * _sqd(a, b).shape[1])

# 4.4 Gaussian denoiser
GD = "check_gaussian_denoiser"


def _gd(s, xt, t, m, v, sq=True, sig_den=True, sub_mean=True, add_mean=True, den_sqrt=False, shift=0):
    ab = c(s.alpha_bar, t, xt, shift)
    a = ab.sqrt() if sq else ab
    noise = (1 - ab).sqrt() if den_sqrt else 1 - ab
    den = (a ** 2 * v if sig_den else v) + noise
    out = a * v / den * (xt - (a * m if sub_mean else 0))
    return out + (m if add_mean else 0)


R(GD, "formula", lambda *a: _gd(*a))
R(GD, "via x0 regression", lambda s, xt, t, m, v: (lambda ab: m + ab.sqrt() * v / (ab * v + 1 - ab) * (xt - ab.sqrt() * m))(s.extract(s.alpha_bar, t, xt)))
W(GD, "no sqrt", lambda *a: _gd(*a, sq=False))
W(GD, "no alpha_bar on var", lambda *a: _gd(*a, sig_den=False))
W(GD, "no mean", lambda *a: _gd(*a, sub_mean=False, add_mean=False))
W(GD, "forgets to subtract a m", lambda *a: _gd(*a, sub_mean=False))
W(GD, "forgets to add m", lambda *a: _gd(*a, add_mean=False))
W(GD, "x_t / sqrt(alpha_bar)", lambda s, xt, t, m, v: xt / c(s.alpha_bar, t, xt).sqrt())
W(GD, "t - 1", lambda *a: _gd(*a, shift=-1))
W(GD, "std in the denominator", lambda *a: _gd(*a, den_sqrt=True))

# ---------------------------------------------------------------------------------------
# 5.1 x0 from eps
X0 = "check_x0_from_eps"


def _x0(s, xt, e, t, shift=0, alpha=False, sq_n=True, sq_d=True, sign=-1, div=True, den_noise=False):
    ab = c(s.alphas if alpha else s.alpha_bar, t, xt, shift)
    n = (1 - ab).sqrt() if sq_n else 1 - ab
    d = ab.sqrt() if sq_d else ab
    inner = xt + sign * n * e
    if den_noise:
        return inner / n
    return inner / d if div else inner * d


R(X0, "formula", lambda *a: _x0(*a))
R(X0, "extract", lambda s, xt, e, t: (xt - s.extract(s.sqrt_one_minus_alpha_bar, t, xt) * e) / s.extract(s.sqrt_alpha_bar, t, xt))
R(X0, "rsqrt", lambda s, xt, e, t: torch.rsqrt(c(s.alpha_bar, t, xt)) * xt - torch.sqrt(1 / c(s.alpha_bar, t, xt) - 1) * e)
W(X0, "plus", lambda *a: _x0(*a, sign=1))
W(X0, "no sqrt on noise", lambda *a: _x0(*a, sq_n=False))
W(X0, "no sqrt on the divisor", lambda *a: _x0(*a, sq_d=False))
W(X0, "times", lambda *a: _x0(*a, div=False))
W(X0, "alpha", lambda *a: _x0(*a, alpha=True))
W(X0, "t - 1", lambda *a: _x0(*a, shift=-1))
W(X0, "no division", lambda s, xt, e, t: xt - (1 - c(s.alpha_bar, t, xt)).sqrt() * e)
W(X0, "divides by the noise std", lambda *a: _x0(*a, den_noise=True))
W(X0, "no cast", lambda s, xt, e, t: (lambda ab: (xt - (1 - ab).sqrt() * e) / ab.sqrt())(
    s.alpha_bar[t].reshape(-1, *[1] * (xt.dim() - 1)) if torch.is_tensor(t) else s.alpha_bar[t]))

# 5.2 mu from eps
MU = "check_mu_from_eps"


def _mu(s, xt, e, t, shift=0, pre_bar=False, den_a=False, sq_den=True, sq_pre=True, sign=-1, num_sqrt=False):
    ab, _, b, a = cols(s, t, xt, shift)
    pre = ab if pre_bar else a
    den = (1 - (a if den_a else ab))
    den = den.sqrt() if sq_den else den
    num = b.sqrt() if num_sqrt else b
    return (xt + sign * num / den * e) / (pre.sqrt() if sq_pre else pre)


R(MU, "formula", lambda *a: _mu(*a))
R(MU, "1 - alpha_t", lambda s, xt, e, t: (xt - (1 - c(s.alphas, t, xt)) / (1 - c(s.alpha_bar, t, xt)).sqrt() * e) / c(s.alphas, t, xt).sqrt())
R(MU, "via x0 and the posterior", lambda s, xt, e, t: (lambda x0: s.extract(s.posterior_mean_coef_x0, t, xt) * x0 + s.extract(s.posterior_mean_coef_xt, t, xt) * xt)(
    (xt - s.extract(s.sqrt_one_minus_alpha_bar, t, xt) * e) / s.extract(s.sqrt_alpha_bar, t, xt)))
W(MU, "alpha_bar prefactor", lambda *a: _mu(*a, pre_bar=True))
W(MU, "single alpha below", lambda *a: _mu(*a, den_a=True))
W(MU, "no sqrt below", lambda *a: _mu(*a, sq_den=False))
W(MU, "no sqrt in front", lambda *a: _mu(*a, sq_pre=False))
W(MU, "plus", lambda *a: _mu(*a, sign=1))
W(MU, "x0 instead", lambda s, xt, e, t: (xt - (1 - c(s.alpha_bar, t, xt)).sqrt() * e) / c(s.alpha_bar, t, xt).sqrt())
W(MU, "sqrt(beta) on top", lambda *a: _mu(*a, num_sqrt=True))
W(MU, "t - 1", lambda *a: _mu(*a, shift=-1))
W(MU, "no prefactor", lambda s, xt, e, t: xt - c(s.betas, t, xt) / (1 - c(s.alpha_bar, t, xt)).sqrt() * e)

# 5.3 v
V = "check_v"


def _v(s, x0, e, t, shift=0, alpha=False, sq=True, swap=False, sign=1, x_sign=-1):
    ab = c(s.alphas if alpha else s.alpha_bar, t, x0, shift)
    a, b = (ab.sqrt(), (1 - ab).sqrt()) if sq else (ab, 1 - ab)
    out = a * x0 + x_sign * b * e if swap else a * e + x_sign * b * x0
    return sign * out


R(V, "formula", lambda *a: _v(*a))
R(V, "rotation", lambda s, x0, e, t: (lambda phi: torch.cos(phi) * e - torch.sin(phi) * x0)(torch.arccos(c(s.alpha_bar, t, x0).sqrt())))
W(V, "swapped", lambda *a: _v(*a, swap=True))
W(V, "sign", lambda *a: _v(*a, sign=-1))
W(V, "no sqrt", lambda *a: _v(*a, sq=False))
W(V, "alpha", lambda *a: _v(*a, alpha=True))
W(V, "product", lambda s, x0, e, t: c(s.alpha_bar, t, x0).sqrt() * (1 - c(s.alpha_bar, t, x0)).sqrt() * x0 * e)
W(V, "x0 term plus", lambda *a: _v(*a, x_sign=1))
W(V, "t - 1", lambda *a: _v(*a, shift=-1))
W(V, "no sqrt on one factor", lambda s, x0, e, t: c(s.alpha_bar, t, x0).sqrt() * e - (1 - c(s.alpha_bar, t, x0)) * x0)
W(V, "x_t instead of v", lambda s, x0, e, t: c(s.alpha_bar, t, x0).sqrt() * x0 + (1 - c(s.alpha_bar, t, x0)).sqrt() * e)

# ---------------------------------------------------------------------------------------
# 6.1 the simple loss
SL = "check_simple_loss"


def _sl(m, s, x0, t, e, shift=0, alpha=False, var_noise=False, feed=None, target="eps", red="mean",
        power=2, model_shift=0, root=False):
    ab = c(s.alphas if alpha else s.alpha_bar, t, x0, shift)
    xt = ab.sqrt() * x0 + ((1 - ab) if var_noise else (1 - ab).sqrt()) * e
    pred = m(x0 if feed == "x0" else xt, t + model_shift)
    err = ({"eps": e, "x0": x0, "xt": xt}[target] - pred).abs() ** power
    out = err.mean() if red == "mean" else (err.sum() if red == "sum" else err.sum(1).mean())
    return out.sqrt() if root else out


R(SL, "formula", lambda *a: _sl(*a))
R(SL, "F.mse_loss", lambda m, s, x0, t, e: torch.nn.functional.mse_loss(
    m(s.extract(s.sqrt_alpha_bar, t, x0) * x0 + s.extract(s.sqrt_one_minus_alpha_bar, t, x0) * e, t), e))
W(SL, "model(x0)", lambda *a: _sl(*a, feed="x0"))
W(SL, "target x0", lambda *a: _sl(*a, target="x0"))
W(SL, "target xt", lambda *a: _sl(*a, target="xt"))
W(SL, "variance noise", lambda *a: _sl(*a, var_noise=True))
W(SL, "alpha", lambda *a: _sl(*a, alpha=True))
W(SL, "sum", lambda *a: _sl(*a, red="sum"))
W(SL, "sum over dims", lambda *a: _sl(*a, red="dims"))
W(SL, "abs", lambda *a: _sl(*a, power=1))
W(SL, "model at t - 1", lambda *a: _sl(*a, model_shift=-1))
W(SL, "RMSE", lambda *a: _sl(*a, root=True))
W(SL, "t - 1", lambda *a: _sl(*a, shift=-1))
W(SL, "no cast", lambda m, s, x0, t, e: ((e - m(s.alpha_bar[t][:, None].sqrt() * x0 + (1 - s.alpha_bar[t][:, None]).sqrt() * e, t)) ** 2).mean())
W(SL, "float t", lambda m, s, x0, t, e: ((e - m(c(s.alpha_bar, t, x0).sqrt() * x0 + (1 - c(s.alpha_bar, t, x0)).sqrt() * e, t.float())) ** 2).mean())

# 6.2 one ancestral step
AS = "check_ancestral_step"


def _as(m, s, xt, t, z, shift=0, model_shift=0, inv="alpha", eps_c="sqrt", var="beta", noise="std", last=False, sign=1):
    ab, abp, b, a = (float(v[t + shift]) for v in (s.alpha_bar, s.alpha_bar_prev, s.betas, s.alphas))
    eps = m(xt, torch.full((xt.shape[0],), t + model_shift, dtype=torch.long))
    cf = {"sqrt": b / math.sqrt(1 - ab), "none": b / (1 - ab), "x0": math.sqrt(1 - ab)}[eps_c]
    inner = xt - cf * eps
    mean = {"alpha": inner / math.sqrt(a), "bar": inner / math.sqrt(ab), "none": inner}[inv]
    if t == 1 and not last:
        return mean
    v = b if var == "beta" else (1 - abp) / (1 - ab) * b
    return mean + sign * (math.sqrt(v) if noise == "std" else v) * z


R(AS, "formula", lambda *a: _as(*a))
R(AS, "via x0 prediction", lambda m, s, xt, t, z: (lambda eps: (lambda x0: s.posterior_mean_coef_x0[t].item() * x0 + s.posterior_mean_coef_xt[t].item() * xt)(
    (xt - math.sqrt(1 - s.alpha_bar[t].item()) * eps) / math.sqrt(s.alpha_bar[t].item()))
    + (math.sqrt(s.betas[t].item()) * z if t > 1 else 0))(m(xt, torch.full((xt.shape[0],), t))))
W(AS, "noise at t = 1", lambda *a: _as(*a, last=True))
W(AS, "variance noise", lambda *a: _as(*a, noise="var"))
W(AS, "no 1/sqrt(alpha)", lambda *a: _as(*a, inv="none"))
W(AS, "1/sqrt(alpha_bar)", lambda *a: _as(*a, inv="bar"))
W(AS, "no sqrt in eps coefficient", lambda *a: _as(*a, eps_c="none"))
W(AS, "x0-style eps coefficient", lambda *a: _as(*a, eps_c="x0"))
W(AS, "beta_tilde", lambda *a: _as(*a, var="tilde"))
W(AS, "minus noise", lambda *a: _as(*a, sign=-1))
W(AS, "model at t - 1", lambda *a: _as(*a, model_shift=-1))
W(AS, "t - 1", lambda *a: _as(*a, shift=-1))
W(AS, "int t to the model", lambda m, s, xt, t, z: m(xt, t))
W(AS, "returns x0", lambda m, s, xt, t, z: (xt - math.sqrt(1 - s.alpha_bar[t].item()) * m(xt, torch.full((xt.shape[0],), t))) / math.sqrt(s.alpha_bar[t].item()))

# 6.3 one KL term
KT = "check_kl_term"


def _kt(m, s, x0, xt, t, const=True, std=False, tilde=False, half=True, model_shift=0, pre_bar=False, const_once=False, red="sum"):
    ab, abp, b, a = cols(s, t, xt)
    bt = s.extract(s.posterior_variance, t, xt)
    mu_q = s.extract(s.posterior_mean_coef_x0, t, xt) * x0 + s.extract(s.posterior_mean_coef_xt, t, xt) * xt
    mu_p = (xt - b / (1 - ab).sqrt() * m(xt, t + model_shift)) / (ab if pre_bar else a).sqrt()
    s2 = bt if tilde else b
    sq = (mu_q - mu_p) ** 2 / ((2 if half else 1) * (s2.sqrt() if std else s2))
    cst = 0.5 * (torch.log(s2 / bt) + bt / s2 - 1)
    sq = sq.flatten(1)
    out = sq.sum(1) if red == "sum" else sq.mean(1)
    if const and const_once:
        return out + cst.flatten()
    if const:
        return out + (cst * torch.ones_like(xt)).flatten(1).sum(1) if red == "sum" else out + cst.flatten()
    return out


R(KT, "formula", lambda *a: _kt(*a))
R(KT, "normal_kl by hand", lambda m, s, x0, xt, t: (lambda mq, vq, mp, vp: (0.5 * (torch.log(vp / vq) + (vq + (mq - mp) ** 2) / vp - 1)).flatten(1).sum(1))(
    s.extract(s.posterior_mean_coef_x0, t, xt) * x0 + s.extract(s.posterior_mean_coef_xt, t, xt) * xt, s.extract(s.posterior_variance, t, xt),
    (xt - s.extract(s.betas, t, xt) / s.extract(s.sqrt_one_minus_alpha_bar, t, xt) * m(xt, t)) / s.extract(s.alphas, t, xt).sqrt(), s.extract(s.betas, t, xt)))
W(KT, "no constant", lambda *a: _kt(*a, const=False))
W(KT, "std", lambda *a: _kt(*a, std=True))
W(KT, "beta_tilde", lambda *a: _kt(*a, tilde=True))
W(KT, "no half", lambda *a: _kt(*a, half=False))
W(KT, "mean over dims", lambda *a: _kt(*a, red="mean"))
W(KT, "model at t - 1", lambda *a: _kt(*a, model_shift=-1))
W(KT, "alpha_bar in mu_theta", lambda *a: _kt(*a, pre_bar=True))
W(KT, "constant once per example", lambda *a: _kt(*a, const_once=True))
W(KT, "reversed", lambda m, s, x0, xt, t: (lambda mq, vq, mp, vp: (0.5 * (torch.log(vq / vp) + (vp + (mq - mp) ** 2) / vq - 1)).flatten(1).sum(1))(
    s.extract(s.posterior_mean_coef_x0, t, xt) * x0 + s.extract(s.posterior_mean_coef_xt, t, xt) * xt, s.extract(s.posterior_variance, t, xt),
    (xt - s.extract(s.betas, t, xt) / s.extract(s.sqrt_one_minus_alpha_bar, t, xt) * m(xt, t)) / s.extract(s.alphas, t, xt).sqrt(), s.extract(s.betas, t, xt)))

# ---------------------------------------------------------------------------------------
# 7.1 image training step
TS = "check_image_train_step"


def _ts(model, opt, s, x0, t, e, zero=True, zero_late=False, backward=True, step=True, feed=None,
        target="eps", var_noise=False, red="mean", model_shift=0, ret_tensor=False, alpha=False):
    if zero:
        opt.zero_grad()
    ab = c(s.alphas if alpha else s.alpha_bar, t, x0)
    xt = ab.sqrt() * x0 + ((1 - ab) if var_noise else (1 - ab).sqrt()) * e
    pred = model(x0 if feed == "x0" else xt, t + model_shift)
    err = ({"eps": e, "x0": x0}[target] - pred) ** 2
    loss = err.mean() if red == "mean" else err.sum()
    if backward:
        loss.backward()
    if zero_late:
        opt.zero_grad()
    if step:
        opt.step()
    return loss if ret_tensor else loss.item()


R(TS, "formula", lambda *a: _ts(*a))
R(TS, "F.mse_loss, set_to_none", lambda model, opt, s, x0, t, e: (
    opt.zero_grad(set_to_none=True),
    (lambda loss: (loss.backward(), opt.step(), loss.item())[-1])(
        torch.nn.functional.mse_loss(model(s.extract(s.sqrt_alpha_bar, t, x0) * x0 + s.extract(s.sqrt_one_minus_alpha_bar, t, x0) * e, t), e)))[-1])
W(TS, "no zero_grad", lambda *a: _ts(*a, zero=False))
W(TS, "no step", lambda *a: _ts(*a, step=False))
W(TS, "zero_grad between backward and step", lambda *a: _ts(*a, zero=False, zero_late=True))
W(TS, "no backward", lambda *a: _ts(*a, backward=False))
W(TS, "model(x0)", lambda *a: _ts(*a, feed="x0"))
W(TS, "target x0", lambda *a: _ts(*a, target="x0"))
W(TS, "variance noise", lambda *a: _ts(*a, var_noise=True))
W(TS, "sum", lambda *a: _ts(*a, red="sum"))
W(TS, "model at t - 1", lambda *a: _ts(*a, model_shift=-1))
W(TS, "returns the tensor", lambda *a: _ts(*a, ret_tensor=True))
W(TS, "alpha", lambda *a: _ts(*a, alpha=True))

# 7.2 respaced step
RS = "check_respaced_step"


def _rs(m, s, taus, xt, k, z, prev="tau", var="beta", model_at="tau", sched_at="tau", last=False, noise="std", inv="alpha", idx=0):
    tau = int(taus[k - 1 + idx])
    tp = {"tau": int(taus[k - 2 + idx]) if k > 1 else 0, "minus1": tau - 1, "wrap": int(taus[k - 2])}[prev]
    i, ip = (k, k - 1) if sched_at == "k" else (tau, tp)
    ab, abp = float(s.alpha_bar[i]), float(s.alpha_bar[ip])
    b = 1 - ab / abp
    eps = m(xt, torch.full((xt.shape[0],), tau if model_at == "tau" else k, dtype=torch.long))
    mean = (xt - b / math.sqrt(1 - ab) * eps) / (math.sqrt(1 - b) if inv == "alpha" else math.sqrt(ab))
    if k == 1 and not last:
        return mean
    v = {"beta": b, "orig": float(s.betas[tau]), "tilde": (1 - abp) / (1 - ab) * b}[var]
    return mean + (math.sqrt(v) if noise == "std" else v) * z


R(RS, "formula", lambda *a: _rs(*a))
W(RS, "original step", lambda *a: _rs(*a, prev="minus1"))
W(RS, "original beta", lambda *a: _rs(*a, var="orig"))
W(RS, "model at k", lambda *a: _rs(*a, model_at="k"))
W(RS, "schedule at k", lambda *a: _rs(*a, sched_at="k"))
W(RS, "taus[k]", lambda *a: _rs(*a, idx=1))
W(RS, "wraps at k = 1", lambda *a: _rs(*a, prev="wrap"))
W(RS, "noise at k = 1", lambda *a: _rs(*a, last=True))
W(RS, "variance noise", lambda *a: _rs(*a, noise="var"))
W(RS, "posterior variance", lambda *a: _rs(*a, var="tilde"))
W(RS, "alpha_bar prefactor", lambda *a: _rs(*a, inv="bar"))

# 7.3 Fréchet distance
FD = "check_frechet_distance"


def _sqrtm_psd(mat):
    w, v = torch.linalg.eigh((mat + mat.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def _fd(a, b, two=2.0, mean="sq", ddof=1, root="matrix", rows=False):
    ca = torch.cov(a) if rows else torch.cov(a.T, correction=ddof)
    cb = torch.cov(b) if rows else torch.cov(b.T, correction=ddof)
    d = a.mean(0) - b.mean(0)
    term = {"sq": d.pow(2).sum(), "none": 0.0, "norm": d.norm(), "avg": d.pow(2).mean()}[mean]
    if root == "matrix":
        r = _sqrtm_psd(ca)
        cross = torch.trace(_sqrtm_psd(r @ cb @ r))
    elif root == "elementwise":
        cross = torch.trace((ca @ cb).abs().sqrt())
    elif root == "none":
        cross = torch.trace(ca @ cb)
    else:
        cross = torch.trace(_sqrtm_psd(ca) @ _sqrtm_psd(cb))
    return term + torch.trace(ca) + torch.trace(cb) - two * cross


def _fd_scipy(a, b):
    import scipy.linalg
    a, b = a.numpy(), b.numpy()
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = scipy.linalg.sqrtm(ca @ cb).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * cross))


R(FD, "eigh", lambda a, b: _fd(a, b))
R(FD, "scipy sqrtm of the product", _fd_scipy)
R(FD, "eigenvalues of S_a S_b", lambda a, b: (lambda ca, cb: ((a.mean(0) - b.mean(0)) ** 2).sum() + torch.trace(ca + cb)
                                               - 2 * torch.linalg.eigvals(ca @ cb).real.clamp(min=0).sqrt().sum())(torch.cov(a.T), torch.cov(b.T)))
W(FD, "no factor 2", lambda a, b: _fd(a, b, two=1.0))
W(FD, "no mean term", lambda a, b: _fd(a, b, mean="none"))
W(FD, "norm", lambda a, b: _fd(a, b, mean="norm"))
W(FD, "average", lambda a, b: _fd(a, b, mean="avg"))
W(FD, "biased covariance", lambda a, b: _fd(a, b, ddof=0))
W(FD, "elementwise sqrt", lambda a, b: _fd(a, b, root="elementwise"))
W(FD, "no sqrt", lambda a, b: _fd(a, b, root="none"))
W(FD, "product of roots", lambda a, b: _fd(a, b, root="roots"))
W(FD, "rows as variables", lambda a, b: _fd(a, b, rows=True))
W(FD, "complex sqrtm", lambda a, b: (lambda ca, cb: complex(((a.mean(0) - b.mean(0)) ** 2).sum().item()
                                                            + np.trace(ca + cb - 2 * __import__("scipy.linalg").linalg.sqrtm(ca @ cb).astype(complex))))(
    np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)))

# ---------------------------------------------------------------------------------------
# HELD OUT: wrong solutions written after the checks' mistake lists were widened for the ones
# above, and not used to add mistakes. Their share of specific hints measures how well the
# lists generalise to mistakes nobody anticipated.
HELD_OUT: list = []


def H(check, label, fn):
    HELD_OUT.append((check, label, fn))


H(A, "reverse cumulative product", lambda b: torch.flip(torch.cumprod(torch.flip(1 - b, [0]), 0), [0]))
H(A, "betas squared", lambda b: torch.cumprod(1 - b ** 2, 0))
H(S, "noise variance squared", lambda a: a / (1 - a) ** 2)
H(S, "square root of the ratio", lambda a: (a / (1 - a)).sqrt())
H(P, "divide by 127", lambda p: p.float() / 127 - 1)
H(P, "centre at 128", lambda p: (p.float() - 128) / 128)
H(SP, "variance of the sum of scaled variances squared", lambda mx, vx, my, vy, a, b: (a * mx + b * my, (a * vx + b * vy) ** 2))
H(SP, "minus b in the mean", lambda mx, vx, my, vy, a, b: (a * mx - b * my, a ** 2 * vx + b ** 2 * vy))
H(K, "constant -1", lambda m1, v1, m2, v2: 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2) - 1)
H(K, "mean difference not squared", lambda m1, v1, m2, v2: 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2)) / v2 - 1))
H(MC, "eps used as the samples", lambda m1, v1, m2, v2, e: (log_n(e, m1, v1) - log_n(e, m2, v2)).mean())
H(MC, "no 1/2 on the squares", lambda m1, v1, m2, v2, e: (lambda x: ((-0.5 * torch.log(v1) - (x - m1) ** 2 / v1) - (-0.5 * torch.log(v2) - (x - m2) ** 2 / v2)).mean())(m1 + v1.sqrt() * e))
H(PR, "product of the variances", lambda m1, v1, m2, v2: ((m1 * v2 + m2 * v1) / (v1 + v2), v1 * v2))
H(PR, "mean times the sum of variances", lambda m1, v1, m2, v2: ((m1 / v1 + m2 / v2) * (v1 + v2), v1 * v2 / (v1 + v2)))
H(CL, "abs of s", lambda z, m, s: ((1 - m) * s(m * z)).abs().sum(-1))
H(CL, "sum over everything", lambda z, m, s: ((1 - m) * s(m * z)).sum())
H(EU, "half step", lambda f, z, t, dt: z + dt * f(z, t) / 2)
H(EU, "f at z, t + dt/2", lambda f, z, t, dt: z + dt * f(z, t + dt / 2))
H(HU, "probes averaged first", lambda vjp, e: (vjp(e.mean(0)) * e.mean(0)).sum(-1))
H(HU, "squared probe norm times the trace term", lambda vjp, e: torch.stack([(vjp(k) * k).sum(-1) * (k * k).sum(-1) for k in e]).mean(0))
H(QS, "alpha_bar on x, beta on the noise", lambda s, x, t, e: c(s.alpha_bar, t, x).sqrt() * x + c(s.betas, t, x).sqrt() * e)
H(QS, "no square roots", lambda s, x, t, e: (1 - c(s.betas, t, x)) * x + c(s.betas, t, x) * e)
H(Q, "no square roots", lambda s, x0, t, e: c(s.alpha_bar, t, x0) * x0 + (1 - c(s.alpha_bar, t, x0)) * e)
H(Q, "same coefficient twice", lambda s, x0, t, e: c(s.alpha_bar, t, x0).sqrt() * (x0 + e))
H(PK, "variance terms dropped", lambda s, x0: _pk(s, x0) - 0.5 * (1 - float(s.alpha_bar[s.T]) - 1))
H(PK, "log of 1 + var", lambda s, x0: _pk(s, x0, logf=lambda v: math.log(1 + v)))
H(CO, "normalised by f(T)", lambda T, s: _cos(T, s, norm=False) / _cos(T, s, norm=False)[-1].clamp(min=1e-3))
H(CO, "T values", lambda T, s: _cos(T, s, n=T))
H(PM, "sqrt(alpha_bar_t) in coef_x0", lambda s, x0, xt, t: (lambda ab, abp, b, a: ab.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - abp) / (1 - ab) * xt)(*cols(s, t, x0)))
H(PM, "1 - alpha_bar_t on top of coef_xt", lambda s, x0, xt, t: (lambda ab, abp, b, a: abp.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab) / (1 - ab) * xt)(*cols(s, t, x0)))
H(PV, "alpha_t instead of beta_t", lambda s, t: (1 - _g(s.alpha_bar_prev, t)) / (1 - _g(s.alpha_bar, t)) * _g(s.alphas, t))
H(PV, "ratio of alpha_bars", lambda s, t: _g(s.alpha_bar_prev, t) / _g(s.alpha_bar, t) * _g(s.betas, t))
H(EV, "operator precedence: / 2 * v", lambda a, b, v: _sqd(a, b).sum(1) / 2 * v)
H(EV, "var per dimension not broadcast", lambda a, b, v: (_sqd(a, b) / (2 * v)).sum(1))
H(GD, "operator precedence: - a m outside", lambda s, xt, t, m, v: (lambda ab: m + ab.sqrt() * v / (ab * v + 1 - ab) * xt - ab.sqrt() * m)(c(s.alpha_bar, t, xt)))
H(GD, "var as a standard deviation", lambda s, xt, t, m, v: _gd(s, xt, t, m, v ** 2))
H(X0, "noise term not divided", lambda s, xt, e, t: xt / c(s.alpha_bar, t, xt).sqrt() - (1 - c(s.alpha_bar, t, xt)).sqrt() * e)
H(X0, "1 - alpha_bar under one root only", lambda s, xt, e, t: (xt - (1 - c(s.alpha_bar, t, xt).sqrt()) * e) / c(s.alpha_bar, t, xt).sqrt())
H(MU, "prefactor multiplies", lambda s, xt, e, t: (xt - c(s.betas, t, xt) / (1 - c(s.alpha_bar, t, xt)).sqrt() * e) * c(s.alphas, t, xt).sqrt())
H(MU, "operator precedence: prefactor on eps only", lambda s, xt, e, t: xt - c(s.betas, t, xt) / (1 - c(s.alpha_bar, t, xt)).sqrt() * e / c(s.alphas, t, xt).sqrt())
H(V, "arccos of alpha_bar", lambda s, x0, e, t: (lambda phi: torch.cos(phi) * e - torch.sin(phi) * x0)(torch.arccos(c(s.alpha_bar, t, x0))))
H(V, "eps minus x0", lambda s, x0, e, t: e - x0)
H(SL, "mean over the batch, sum over dims", lambda m, s, x0, t, e: ((e - m(c(s.alpha_bar, t, x0).sqrt() * x0 + (1 - c(s.alpha_bar, t, x0)).sqrt() * e, t)) ** 2).mean(0).sum())
H(SL, "per-example losses", lambda m, s, x0, t, e: ((e - m(c(s.alpha_bar, t, x0).sqrt() * x0 + (1 - c(s.alpha_bar, t, x0)).sqrt() * e, t)) ** 2).mean(1))
H(AS, "no noise at t = T instead of t = 1", lambda m, s, xt, t, z: _as(m, s, xt, t, z, last=True) - (math.sqrt(float(s.betas[t])) * z if t == s.T else 0))
H(AS, "sqrt(1 - alpha_bar) as sigma", lambda m, s, xt, t, z: _as(m, s, xt, t, z) + ((math.sqrt(1 - float(s.alpha_bar[t])) - math.sqrt(float(s.betas[t]))) * z if t > 1 else 0))
H(KT, "KL summed over the batch", lambda *a: _kt(*a).sum())
H(KT, "difference of means not squared", lambda m, s, x0, xt, t: (lambda d: (d.abs() / (2 * s.extract(s.betas, t, xt))).flatten(1).sum(1))(
    s.extract(s.posterior_mean_coef_x0, t, xt) * x0 + s.extract(s.posterior_mean_coef_xt, t, xt) * xt - (xt - s.extract(s.betas, t, xt) / s.extract(s.sqrt_one_minus_alpha_bar, t, xt) * m(xt, t)) / s.extract(s.alphas, t, xt).sqrt())
    + _kt(m, s, x0, xt, t) - _kt(m, s, x0, xt, t, const=False))


def _ts_order(model, opt, s, x0, t, e):
    opt.zero_grad()
    ab = c(s.alpha_bar, t, x0)
    loss = ((e - model(ab.sqrt() * x0 + (1 - ab).sqrt() * e, t)) ** 2).mean()
    opt.step()
    loss.backward()
    return loss.item()


H(TS, "step before backward", _ts_order)
H(TS, "target x_t", lambda *a: _ts_xt(*a))
H(RS, "noise sqrt(1 - alpha_bar')", lambda m, s, taus, xt, k, z: _rs(m, s, taus, xt, k, z) + ((math.sqrt(1 - float(s.alpha_bar[int(taus[k - 1])])) - math.sqrt(1 - float(s.alpha_bar[int(taus[k - 1])]) / float(s.alpha_bar[int(taus[k - 2])]))) * z if k > 1 else 0))
H(RS, "alpha'_k from the original alphas", lambda *a: _rs_alpha(*a))
H(FD, "square root outside the trace", lambda a, b: (lambda ca, cb: ((a.mean(0) - b.mean(0)) ** 2).sum() + torch.trace(ca + cb) - 2 * torch.trace(ca @ cb).sqrt())(torch.cov(a.T), torch.cov(b.T)))
H(FD, "covariances of the concatenation", lambda a, b: _fd_concat(a, b))


def _ts_xt(model, opt, s, x0, t, e):
    opt.zero_grad()
    ab = c(s.alpha_bar, t, x0)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * e
    loss = ((xt - model(xt, t)) ** 2).mean()
    loss.backward()
    opt.step()
    return loss.item()


def _rs_alpha(m, s, taus, xt, k, z):
    tau = int(taus[k - 1])
    tp = int(taus[k - 2]) if k > 1 else 0
    ab, abp = float(s.alpha_bar[tau]), float(s.alpha_bar[tp])
    b = 1 - ab / abp
    eps = m(xt, torch.full((xt.shape[0],), tau, dtype=torch.long))
    mean = (xt - b / math.sqrt(1 - ab) * eps) / math.sqrt(float(s.alphas[tau]))
    return mean if k == 1 else mean + math.sqrt(b) * z


def _fd_concat(a, b):
    both = torch.cat([a, b])
    cov = torch.cov(both.T)
    r = _sqrtm_psd(cov)
    return ((a.mean(0) - b.mean(0)) ** 2).sum() + 2 * torch.trace(cov) - 2 * torch.trace(_sqrtm_psd(r @ cov @ r))
