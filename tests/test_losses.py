"""Tests for dmlib.losses against independent references: Gaussian KLs by formula and scipy,
brute-force Monte Carlo of the ELBO along full forward trajectories, and exact log-densities
for Gaussian data."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from dmlib.losses import diffusion_loss, loss_weights, prior_kl, vlb_terms
from dmlib.schedules import Schedule

D = torch.float64
BETAS = np.array([0.03, 0.08, 0.15, 0.25, 0.4, 0.55])  # T = 6 by hand
T = len(BETAS)
TYPES = ("eps", "x0", "mu", "v")


@pytest.fixture
def sched():
    return Schedule(torch.tensor(BETAS, dtype=D))


# -- numpy references (written from the betas, not from Schedule's fields) -------------------
def _coefs(t):
    """beta_t, alpha_t, alpha_bar_t, alpha_bar_{t-1} and beta_tilde_t for integer arrays t."""
    betas = np.concatenate([[0.0], BETAS])
    ab = np.cumprod(1 - betas)
    t = np.asarray(t)
    beta, ab_t, ab_prev = betas[t], ab[t], ab[np.maximum(t - 1, 0)]
    bt = np.where(t >= 2, (1 - ab_prev) / np.where(t >= 1, 1 - ab_t, 1.0) * beta, 0.0)
    return beta, 1 - beta, ab_t, ab_prev, bt


def _mu_from_pred(kind, pred, xt, t):
    """Posterior mean implied by a prediction, each case derived on its own."""
    beta, alpha, ab, ab_prev, _ = (c.reshape(-1, *[1] * (xt.ndim - 1)) for c in _coefs(t))
    if kind == "eps":
        return (xt - beta / np.sqrt(1 - ab) * pred) / np.sqrt(alpha)
    if kind == "x0":
        x0 = pred
    elif kind == "v":
        x0 = np.sqrt(ab) * xt - np.sqrt(1 - ab) * pred
    else:
        return pred
    return (np.sqrt(ab_prev) * beta * x0 + np.sqrt(alpha) * (1 - ab_prev) * xt) / (1 - ab)


def _kl(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2)) elementwise, log-ratio-of-stds form."""
    return np.log(np.sqrt(v2) / np.sqrt(v1)) + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5


# -- loss_weights and diffusion_loss ---------------------------------------------------------
def test_simple_weights_are_ones(sched):
    for kind in TYPES:
        w = loss_weights(sched, kind)
        assert w.shape == (T + 1,) and w.dtype == D
        assert math.isnan(w[0]) and torch.all(w[1:] == 1)  # entry 0: NaN (no t = 0)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("sigma", ["beta", "beta_tilde"])
def test_elbo_weighted_loss_equals_the_kl_term(sched, kind, sigma):
    # (a) w(t) ||target - pred||^2 (summed over dims) = the t-dependent part of
    # KL(q(x_{t-1}|x_t,x0) || N(mu_theta, sigma_t^2)) for t >= 2, and at t = 1 the Gaussian
    # decoder -log N(x0; mu_theta, beta_1) minus its constant d/2 log(2 pi beta_1).
    g = torch.Generator().manual_seed(0)
    B = 40
    t = torch.cat([torch.arange(1, T + 1), torch.randint(1, T + 1, (B - T,), generator=g)])
    x0 = torch.randn(B, 3, 2, generator=g, dtype=D)
    eps = torch.randn(B, 3, 2, generator=g, dtype=D)
    preds = {}

    def model(xt, tt):  # returns arbitrary (random) predictions, remembering its input
        preds["xt"] = xt
        preds["out"] = torch.randn(xt.shape, generator=g, dtype=D)
        return preds["out"]

    got = diffusion_loss(model, sched, x0, kind, "elbo", t=t, eps=eps, reduction="none",
                         variance=sigma).numpy()
    tn = t.numpy()
    beta, alpha, ab, ab_prev, bt = _coefs(tn)
    x0n, epsn = x0.numpy(), eps.numpy()
    xt = np.sqrt(ab)[:, None, None] * x0n + np.sqrt(1 - ab)[:, None, None] * epsn
    np.testing.assert_allclose(preds["xt"].numpy(), xt, atol=1e-13)
    mu_true = _mu_from_pred("eps", epsn, xt, tn)
    mu_model = _mu_from_pred(kind, preds["out"].numpy(), xt, tn)
    var_p = np.where(tn >= 2, bt if sigma == "beta_tilde" else beta, beta)[:, None, None]
    ref = np.empty(B)
    for i in range(B):
        if tn[i] >= 2:
            vq = bt[i]
            ref[i] = (_kl(mu_true[i], vq, mu_model[i], var_p[i])
                      - _kl(mu_true[i], vq, mu_true[i], var_p[i])).sum()
        else:
            ref[i] = (-stats.norm.logpdf(x0n[i], mu_model[i], math.sqrt(beta[i]))
                      - 0.5 * math.log(2 * math.pi * beta[i])).sum()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10)


def test_elbo_eps_weights_closed_form(sched):
    # c_eps(t) = beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)), DDPM eq. (12).
    tn = np.arange(1, T + 1)
    beta, alpha, ab, ab_prev, bt = _coefs(tn)
    w = loss_weights(sched, "eps", "elbo", variance="beta").numpy()
    np.testing.assert_allclose(w[1:], beta / (2 * alpha * (1 - ab)), rtol=1e-12)
    assert math.isnan(w[0])
    w = loss_weights(sched, "mu", "elbo", variance="beta_tilde").numpy()
    np.testing.assert_allclose(w[2:], 1 / (2 * bt[1:]), rtol=1e-12)
    assert w[1] == pytest.approx(1 / (2 * BETAS[0]))  # sigma_1^2 = beta_1 (beta_tilde_1 = 0)


def test_simple_eps_loss_is_the_plain_mse(sched):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(8, 5, generator=g, dtype=D)
    eps = torch.randn(8, 5, generator=g, dtype=D)
    model = lambda xt, t: 0.3 * xt + 0.01 * t.unsqueeze(1).to(D)  # noqa: E731
    loss = diffusion_loss(model, sched, x0, t=3, eps=eps)
    ab = float(np.prod(1 - BETAS[:3]))
    xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
    ref = ((eps - (0.3 * xt + 0.03)) ** 2).mean()
    assert float(loss) == pytest.approx(float(ref), rel=1e-12)
    per = diffusion_loss(model, sched, x0, t=torch.full((8,), 3), eps=eps, reduction="none")
    assert per.shape == (8,)
    assert float(per.mean()) == pytest.approx(float(ref), rel=1e-12)
    # a custom weighting tensor multiplies the per-example mean
    w = torch.arange(T + 1, dtype=D)
    assert float(diffusion_loss(model, sched, x0, weighting=w, t=3, eps=eps)) == \
        pytest.approx(3 * float(ref), rel=1e-12)


def test_random_t_and_eps_are_seeded_and_gradients_flow(sched):
    lin = torch.nn.Linear(2, 2).double()
    model = lambda xt, t: lin(xt)  # noqa: E731
    x0 = torch.randn(16, 2, dtype=D)
    a = diffusion_loss(model, sched, x0, "v", generator=torch.Generator().manual_seed(3))
    b = diffusion_loss(model, sched, x0, "v", generator=torch.Generator().manual_seed(3))
    c = diffusion_loss(model, sched, x0, "v", generator=torch.Generator().manual_seed(4))
    assert a.item() == b.item() != c.item()
    a.backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


def test_diffusion_loss_errors(sched):
    x0 = torch.zeros(4, 2, dtype=D)
    model = lambda xt, t: xt  # noqa: E731
    with pytest.raises(ValueError, match="unknown prediction_type 'noise'"):
        diffusion_loss(model, sched, x0, "noise")
    with pytest.raises(ValueError, match="unknown weighting 'kl'"):
        diffusion_loss(model, sched, x0, weighting="kl")
    with pytest.raises(ValueError, match=r"must have shape \(T \+ 1,\) = \(7,\)"):
        diffusion_loss(model, sched, x0, weighting=torch.ones(6, dtype=D))
    with pytest.raises(ValueError, match="unknown reduction 'sum'"):
        diffusion_loss(model, sched, x0, reduction="sum")
    with pytest.raises(ValueError, match="unknown variance 'small'"):
        diffusion_loss(model, sched, x0, weighting="elbo", variance="small")
    with pytest.raises(ValueError, match="shape mismatch: x0 has shape"):
        diffusion_loss(model, sched, x0, eps=torch.zeros(4, 3, dtype=D))
    with pytest.raises(ValueError, match="1-based t"):
        diffusion_loss(model, sched, x0, t=0)
    with pytest.raises(ValueError, match="t out of range"):
        diffusion_loss(model, sched, x0, t=torch.tensor([1, 2, 3, T + 1]))
    with pytest.raises(ValueError, match=r"model must return a tensor shaped like x_t \(4, 2\)"):
        diffusion_loss(lambda xt, t: xt[:, :1], sched, x0)
    with pytest.raises(ValueError, match="batch dimension"):
        diffusion_loss(model, sched, torch.tensor(1.0, dtype=D))
    with pytest.raises(ValueError, match="unknown weighting"):
        loss_weights(sched, "eps", "snr")


# -- prior KL --------------------------------------------------------------------------------
def test_prior_kl_closed_form_and_numerical_integration(sched):
    x0 = torch.tensor([[0.0, 1.0], [2.0, -3.0]], dtype=D)
    ab = float(np.prod(1 - BETAS))
    ref = 0.5 * (ab * x0.numpy() ** 2 + (1 - ab) - 1 - np.log(1 - ab))
    np.testing.assert_allclose(prior_kl(sched, x0).numpy(), ref.sum(1), rtol=1e-12)
    # one element by quad: KL(N(sqrt(ab) * 2, 1 - ab) || N(0, 1))
    p, q = stats.norm(math.sqrt(ab) * 2.0, math.sqrt(1 - ab)), stats.norm(0, 1)
    val, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -15, 15, limit=200)
    assert ref[1, 0] == pytest.approx(val, abs=1e-9)


# -- vlb_terms ---------------------------------------------------------------------------------
def _toy_model(kind):
    """An arbitrary, nonlinear, t-dependent analytic 'network'."""
    def model(xt, t):
        tt = t.to(xt.dtype).view(-1, *[1] * (xt.dim() - 1))
        return 0.4 * torch.tanh(xt) * tt / T + 0.2 * xt - 0.1 * tt / T
    return model


def _brute_force_neg_elbo(kind, sigma, x0, n, rng):
    """E_q[log q(x_{1:T}|x0) - log p(x_{0:T})] by simulating full forward trajectories and
    evaluating every density with scipy (DDPM eq. (3), no KL decomposition)."""
    model = _toy_model(kind)
    x0 = np.broadcast_to(x0, (n, *x0.shape))
    xs = [x0]
    logq = 0.0
    for t in range(1, T + 1):
        b = BETAS[t - 1]
        x = math.sqrt(1 - b) * xs[-1] + math.sqrt(b) * rng.standard_normal(x0.shape)
        logq = logq + stats.norm.logpdf(x, math.sqrt(1 - b) * xs[-1], math.sqrt(b))
        xs.append(x)
    logp = stats.norm.logpdf(xs[T], 0, 1)
    for t in range(1, T + 1):
        tt = np.full(n, t)
        out = model(torch.from_numpy(xs[t]), torch.from_numpy(tt)).numpy()
        mu = _mu_from_pred(kind, out, xs[t], tt)
        beta, _, _, _, bt = _coefs(t)
        var = beta if (t == 1 or sigma == "beta") else bt
        logp = logp + stats.norm.logpdf(xs[t - 1], mu, math.sqrt(var))
    per = (logq - logp).reshape(n, -1).sum(1)
    return per.mean(), per.std() / math.sqrt(n)


@pytest.mark.parametrize("kind,sigma", [("eps", "beta_tilde"), ("x0", "beta"), ("v", "beta_tilde"),
                                        ("mu", "beta")])
def test_vlb_sum_matches_brute_force_monte_carlo(sched, kind, sigma):
    # (b) the sum of the terms estimates the same expectation as the full-trajectory log-ratio.
    x0 = np.array([0.7, -1.1])
    n = 10_000  # standard errors ~0.03 nats; a wrong term or shifted column is off by >> 0.1
    ref, ref_se = _brute_force_neg_elbo(kind, sigma, x0, n, np.random.default_rng(0))
    g = torch.Generator().manual_seed(0)
    terms = vlb_terms(_toy_model(kind), sched, torch.from_numpy(x0).expand(n, 2).contiguous(),
                      kind, variance=sigma, generator=g)
    assert terms.shape == (n, T + 1)
    total = terms.sum(1)
    got, got_se = float(total.mean()), float(total.std()) / math.sqrt(n)
    assert abs(got - ref) < 4 * math.hypot(got_se, ref_se), (got, ref, got_se, ref_se)


def test_vlb_columns_are_indexed_by_t(sched):
    # A model that knows x0 exactly (all examples share it) makes every column deterministic:
    # column t (2..T) = KL(N(mu, bt_t) || N(mu, sigma_t^2)), column 1 the decoder at its mean,
    # column 0 the prior KL L_T. The expected values are written out by hand.
    c = torch.tensor([[0.25, -0.5]], dtype=D).expand(5, 2).contiguous()
    model = lambda xt, t: c[:1].expand_as(xt)  # noqa: E731  (predicts x0 exactly)
    beta, _, ab, _, bt = _coefs(np.arange(T + 1))
    for sigma in ("beta_tilde", "beta"):
        terms = vlb_terms(model, sched, c, "x0", variance=sigma, decoder="gaussian",
                          generator=torch.Generator().manual_seed(0), max_batch=7)
        assert terms.shape == (5, T + 1)
        exp = np.empty(T + 1)
        exp[1] = 2 * 0.5 * math.log(2 * math.pi * beta[1])  # -log N(x0; x0, beta_1), d = 2
        for t in range(2, T + 1):
            v = bt[t] if sigma == "beta_tilde" else beta[t]
            exp[t] = 2 * (0.5 * math.log(v / bt[t]) + bt[t] / (2 * v) - 0.5)
        exp[0] = (0.5 * (ab[T] * c[0].numpy() ** 2 + (1 - ab[T]) - 1 - math.log(1 - ab[T]))).sum()
        np.testing.assert_allclose(terms.numpy(), np.broadcast_to(exp, (5, T + 1)), atol=1e-10)
    # discretized decoder at its mean: each pixel's mass is the central bin of N(0, beta_1)
    x_img = torch.tensor([[-1.0, 1.0 / 255]], dtype=D).expand(3, 2).contiguous()
    model = lambda xt, t: x_img[:1].expand_as(xt)  # noqa: E731
    terms = vlb_terms(model, sched, x_img, "x0", decoder="discretized")
    sd = math.sqrt(BETAS[0])
    mid = stats.norm.cdf(1 / 255 / sd) - stats.norm.cdf(-1 / 255 / sd)
    edge = stats.norm.cdf(1 / 255 / sd)
    np.testing.assert_allclose(terms[:, 1].numpy(), -(math.log(mid) + math.log(edge)), rtol=1e-10)


def test_vlb_of_optimal_model_bounds_the_gaussian_data_nll():
    # Gaussian data x0 ~ N(m, s^2) per dim; the optimal eps-model is E[eps|x_t] in closed form.
    # The bound (per example) minus the exact -log p_data(x0) has non-negative mean
    # (= KL(data||p_theta) + E[gap]) and is small for moderate T with sigma_t^2 = beta_t.
    m, s = torch.tensor([0.5, -1.0], dtype=D), torch.tensor([0.8, 0.3], dtype=D)
    sched = Schedule.linear(100)

    def model(xt, t):
        ab = sched.alpha_bar[t].view(-1, 1)
        return (1 - ab).sqrt() * (xt - ab.sqrt() * m) / (ab * s ** 2 + 1 - ab)

    g = torch.Generator().manual_seed(0)
    x0 = m + s * torch.randn(20_000, 2, generator=g, dtype=D)  # standard error ~0.01 nats
    with torch.no_grad():
        bound = vlb_terms(model, sched, x0, "eps", variance="beta", generator=g).sum(1)
    nll = -torch.from_numpy(stats.norm.logpdf(x0.numpy(), m.numpy(), s.numpy()).sum(1))
    gap = bound - nll
    mean, se = float(gap.mean()), float(gap.std()) / math.sqrt(len(gap))
    assert se < 0.015
    assert mean > -4 * se
    assert mean < 0.15  # nats, for 2 dims (about 0.08 here)


def test_vlb_errors(sched):
    x0 = torch.zeros(2, 2, dtype=D)
    model = lambda xt, t: xt  # noqa: E731
    with pytest.raises(ValueError, match="unknown decoder 'bernoulli'"):
        vlb_terms(model, sched, x0, decoder="bernoulli")
    with pytest.raises(ValueError, match="unknown variance 'fixed'"):
        vlb_terms(model, sched, x0, variance="fixed")
    with pytest.raises(ValueError, match="unknown prediction_type 'y'"):
        vlb_terms(model, sched, x0, "y")
    with pytest.raises(ValueError, match=r"scaled to \[-1, 1\]"):
        vlb_terms(model, sched, x0 + 3, decoder="discretized")
    with pytest.raises(ValueError, match="max_batch must be a positive int"):
        vlb_terms(model, sched, x0, max_batch=0)


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
def test_min_snr_weights_match_hang_et_al(prediction_type):
    """Min-SNR-5 written out per target (Hang et al. 2023, sec. 3.4), independent of dmlib."""
    s = Schedule.cosine(1000)
    snr = s.alpha_bar[1:].double() / (1 - s.alpha_bar[1:].double())
    clipped = torch.clamp(snr, max=5.0)
    want = {"eps": clipped / snr, "x0": clipped, "v": clipped / (snr + 1)}[prediction_type]
    got = loss_weights(s, prediction_type, "min_snr")
    assert torch.isnan(got[0])
    assert torch.allclose(got[1:], want, rtol=1e-9)
    # the weighted loss: min(SNR, 5) times the x0 error, whatever the target
    torch.manual_seed(0)
    x0 = torch.randn(8, 3, dtype=torch.float64)
    model = lambda xt, t: 0.3 * xt  # noqa: E731  (any fixed model)
    t = torch.randint(1, 1001, (8,))
    eps = torch.randn_like(x0)
    spec_loss = diffusion_loss(model, s, x0, prediction_type, "min_snr", t=t, eps=eps,
                               reduction="none")
    from dmlib.forward import q_sample
    from dmlib.targets import convert
    xt = q_sample(s, x0, t, eps)
    x0_hat = convert(s, model(xt, t), xt, t, prediction_type, "x0")
    want_loss = clipped[t - 1] * (x0 - x0_hat).pow(2).mean(1)
    assert torch.allclose(spec_loss, want_loss, rtol=1e-8)
    with pytest.raises(ValueError, match="gamma"):
        loss_weights(s, "eps", "min_snr", gamma=0.0)
