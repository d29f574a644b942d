"""Guidance on a labelled Gaussian mixture (dmlib.labelled_mixture, dmlib.guidance; chapter 9):
closed forms against autograd, Monte Carlo and direct formulas; classifier guidance and CFG
with exact parts; the conditional MLP; the noise-aware classifier."""

import math

import pytest
import torch

from dmlib.checkpoint import load_model, save_checkpoint
from dmlib.data.mixture import GaussianMixture
from dmlib.guidance import (ClassifierGuidedModel, GuidedModel, class_log_prob_grad,
                            classifier_guided_eps, conditional_diffusion_loss, guided,
                            noisy_classifier_loss)
from dmlib.labelled_mixture import (ExactNoisyClassifier, LabelledMixture,
                                    OptimalConditionalDenoiser, labelled_gmm2d, sample_grid,
                                    sharpened_grid, sharpened_log_density)
from dmlib.models import MLPConfig, MLPDenoiser, NoisyClassifier, NoisyClassifierConfig
from dmlib.optimal import optimal_eps
from dmlib.schedules import Schedule

D = torch.float64


def overlapping():
    """Two classes, three overlapping components, unequal weights and variances."""
    gmm = GaussianMixture([0.2, 0.5, 0.3], [[-0.6, 0.1], [0.4, -0.2], [0.9, 0.7]],
                          [[0.3, 0.2], [0.25, 0.4], [0.1, 0.15]])
    return LabelledMixture(gmm, torch.tensor([0, 1, 0]), 2)


def _x(n=64, seed=0):
    return 1.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=D)


def test_posterior_and_conditional_density_by_direct_formula():
    lm = overlapping()
    x = _x()
    m = lm.mixture
    dens = [w * torch.exp(-0.5 * (((x - mu) ** 2) / v).sum(1)) / (2 * math.pi * v.prod().sqrt())
            for w, mu, v in zip(m.weights, m.means, m.var)]
    p0, p1 = dens[0] + dens[2], dens[1]
    post = torch.stack([p0, p1], 1) / (p0 + p1)[:, None]
    assert torch.allclose(lm.class_log_posterior(x).exp(), post, atol=1e-12)
    assert torch.allclose(lm.class_prior(), torch.tensor([0.5, 0.5], dtype=D))
    y = torch.tensor([0, 1] * 32)
    want = torch.where(y == 0, p0 / 0.5, p1 / 0.5).log()
    assert torch.allclose(lm.log_prob(x, y), want, atol=1e-10)
    assert torch.allclose(lm.log_prob(x, torch.full((64,), 2)), (p0 + p1).log(), atol=1e-10)


@pytest.mark.parametrize("ab", [1.0, 0.5, 0.02])
def test_scores_match_autograd_and_bayes_identity(ab):
    lm = overlapping().noised(ab)
    x = _x(40, 1).requires_grad_(True)
    for c in (0, 1):
        y = torch.full((40,), c)
        g_cond = torch.autograd.grad(lm.log_prob(x, y).sum(), x)[0]
        assert torch.allclose(lm.score(x.detach(), y), g_cond, atol=1e-10)
        g_post = torch.autograd.grad(lm.class_log_posterior(x)[:, c].sum(), x)[0]
        bayes = lm.score(x.detach()) + g_post  # grad log p(x) + grad log p(y | x)
        assert torch.allclose(bayes, g_cond, atol=1e-10)
    g_marg = torch.autograd.grad(lm.log_prob(x).sum(), x)[0]
    assert torch.allclose(lm.score(x.detach(), torch.full((40,), 2)), g_marg, atol=1e-10)


def test_noised_posterior_matches_monte_carlo():
    """p(y | x_t) is the probability that the x_0 behind x_t has label y: estimate it by
    sampling (x_0, y), noising, and binning x_t near a point."""
    lm, ab = overlapping(), 0.3
    x0, y = lm.sample(400_000, generator=0, dtype=D)
    xt = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(x0.shape, dtype=D,
                                                              generator=torch.Generator().manual_seed(1))
    for point in ([0.0, 0.0], [0.5, 0.3]):
        near = (xt - torch.tensor(point, dtype=D)).norm(dim=1) < 0.05
        n = int(near.sum())
        share = (y[near] == 0).double().mean()
        exact = lm.noised(ab).class_log_posterior(torch.tensor([point], dtype=D)).exp()[0, 0]
        se = math.sqrt(float(exact * (1 - exact)) / n)
        assert n > 500 and abs(float(share - exact)) < 4 * se + 0.01  # + bin width bias


def test_unconditional_exact_eps_is_the_optimal_denoiser():
    lm, sched = labelled_gmm2d(), Schedule.linear(200)
    net = OptimalConditionalDenoiser(lm, sched)
    x, t = _x(30, 2), torch.randint(1, 201, (30,), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(net(x, t), optimal_eps(lm.mixture, sched, x, t), atol=1e-10)
    assert torch.allclose(net(x, t, torch.full((30,), 3)), net(x, t), atol=0)


def test_classifier_guidance_with_exact_classifier_is_the_conditional_eps_at_w0():
    lm, sched = overlapping(), Schedule.linear(100)
    net = OptimalConditionalDenoiser(lm, sched)
    uncond = lambda x, t: net(x, t)  # noqa: E731
    y = torch.tensor([0, 1] * 10)
    x, t = _x(20, 3), torch.tensor([1, 5, 30, 60, 99] * 4)
    cg = ClassifierGuidedModel(uncond, ExactNoisyClassifier(lm, sched), sched, y, 0.0)
    assert torch.allclose(cg(x, t), net(x, t, y), atol=1e-10)
    # and at w > 0 it equals CFG with the exact conditional and unconditional eps
    for w in (0.5, 3.0):
        cg = ClassifierGuidedModel(uncond, ExactNoisyClassifier(lm, sched), sched, y, w)
        cfg = GuidedModel(net, y, w, null_label=2)
        assert torch.allclose(cg(x, t), cfg(x, t), atol=1e-10)
        s = (1 - sched.alpha_bar[t]).sqrt()[:, None]
        want = net(x, t) - (1 + w) * s * (lm_post_grad(lm, sched, x, t, y))
        assert torch.allclose(cg(x, t), want, atol=1e-10)


def lm_post_grad(lm, sched, x, t, y):
    out = torch.empty_like(x)
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        lp = lm.noised(float(sched.alpha_bar[t[i]])).class_log_posterior(xi)[0, y[i]]
        out[i] = torch.autograd.grad(lp, xi)[0][0]
    return out


def test_classifier_guided_eps_formula_and_errors():
    eps, g = torch.randn(4, 3, dtype=D), torch.randn(4, 3, dtype=D)
    ab = torch.tensor([0.9, 0.5, 0.1, 0.01], dtype=D)
    want = eps - 2.5 * (1 - ab).sqrt()[:, None] * g
    assert torch.allclose(classifier_guided_eps(eps, g, ab, 1.5), want)
    assert torch.allclose(classifier_guided_eps(eps, g, 0.5, 0.0), eps - math.sqrt(0.5) * g)
    with pytest.raises(ValueError, match=">= 0"):
        classifier_guided_eps(eps, g, 0.5, -1.0)
    with pytest.raises(ValueError, match="same shape"):
        classifier_guided_eps(eps, g[:, :2], 0.5, 1.0)


def test_class_log_prob_grad_under_no_grad_matches_finite_differences():
    torch.manual_seed(0)
    clf = NoisyClassifier(NoisyClassifierConfig(num_classes=3, hidden=16, depth=1)).double()
    x, t, y = _x(5, 4), torch.tensor([1, 2, 3, 4, 5]), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        g = class_log_prob_grad(clf, x, t, y)
        h = 1e-6
        for j in range(2):
            e = torch.zeros_like(x)
            e[:, j] = h
            f = lambda z: torch.log_softmax(clf(z, t), -1).gather(1, y[:, None])[:, 0]  # noqa: E731
            assert torch.allclose((f(x + e) - f(x - e)) / (2 * h), g[:, j], atol=1e-6)


def test_cfg_with_w0_is_the_conditional_mlp_and_null_label_is_default():
    torch.manual_seed(0)
    net = MLPDenoiser(MLPConfig(hidden=32, depth=2, num_classes=3)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    x, t, y = _x(6, 5).float(), torch.tensor([1, 10, 50, 100, 7, 3]), torch.tensor([0, 1, 2, 0, 3, 1])
    assert torch.equal(guided(net, y, 0.0, 3)(x, t), net(x, t, y))
    assert torch.equal(net(x, t), net(x, t, torch.full((6,), 3)))
    assert (net(x, t, y) - net(x, t)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="0..3"):
        net(x, t, torch.tensor([0, 1, 2, 0, 4, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        MLPDenoiser(MLPConfig(hidden=8, depth=1))(x, t, y)
    with pytest.raises(ValueError, match="num_classes"):
        MLPConfig(num_classes=-2)


def test_conditional_mlp_starts_label_blind_and_unconditional_mlp_is_unchanged():
    torch.manual_seed(1)
    cond = MLPDenoiser(MLPConfig(hidden=16, depth=1, num_classes=2))
    plain = MLPDenoiser(MLPConfig(hidden=16, depth=1))
    assert (cond.label_emb.weight == 0).all()
    x, t = _x(3, 6).float(), torch.tensor([1, 2, 3])
    with torch.no_grad():
        plain.out.weight.normal_()
    missing, unexpected = cond.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["label_emb.weight"] and not unexpected  # the only new parameter
    assert torch.allclose(cond(x, t, torch.tensor([0, 1, 2])), cond(x, t))
    assert torch.allclose(cond(x, t, torch.tensor([0, 1, 2])), plain(x, t))


def test_conditional_models_round_trip_through_checkpoints(tmp_path):
    torch.manual_seed(2)
    for m in (MLPDenoiser(MLPConfig(hidden=16, depth=1, num_classes=3)),
              NoisyClassifier(NoisyClassifierConfig(num_classes=3, hidden=16, depth=1))):
        with torch.no_grad():
            for p in m.parameters():
                p.normal_()
        save_checkpoint(tmp_path / "m.pt", m, step=1)
        back = load_model(tmp_path / "m.pt")
        x, t = _x(4, 7).float(), torch.tensor([1, 2, 3, 4])
        args = (x, t, torch.tensor([0, 1, 2, 3])) if isinstance(m, MLPDenoiser) else (x, t)
        assert torch.equal(back(*args), m.eval()(*args))


def test_losses_train_towards_the_exact_answers():
    """A few hundred steps of each loss move a small model towards the exact p(y | x_t)
    and lower the conditional loss (not a convergence proof: the losses are wired right)."""
    lm, sched = labelled_gmm2d(), Schedule.linear(100)
    x0, y = lm.sample(4096, generator=0)
    torch.manual_seed(0)
    clf = NoisyClassifier(NoisyClassifierConfig(num_classes=3, hidden=32, depth=2))
    opt = torch.optim.Adam(clf.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    for k in range(300):
        i = torch.randint(0, 4096, (256,), generator=g)
        loss = noisy_classifier_loss(clf, sched, x0[i], y[i], g)
        opt.zero_grad(); loss.backward(); opt.step()  # noqa: E702
    xt, tt = _x(500, 8).float(), torch.randint(1, 30, (500,), generator=g)
    exact = ExactNoisyClassifier(lm, sched)(xt.double(), tt).exp()
    with torch.no_grad():
        got = torch.softmax(clf(xt, tt), -1)
    assert (got - exact).abs().sum(1).mean() < 0.25
    net = MLPDenoiser(MLPConfig(hidden=32, depth=2, num_classes=3))
    l0 = float(conditional_diffusion_loss(net, sched, x0[:512], y[:512], 0.2, 3,
                                          torch.Generator().manual_seed(0)).detach())
    assert 0.9 < l0 < 1.1  # untrained: predicts 0, so E||eps||^2 / d = 1


def test_sharpened_grid_is_normalised_and_reduces_to_p_at_w0():
    lm = overlapping()
    centres, probs, h = sharpened_grid(lm, 0, 0.0, lim=4.0, n=200)
    assert abs(float(probs.sum()) - 1) < 1e-12
    dens = lm.log_prob(centres, torch.zeros(len(centres), dtype=torch.long)).exp() * h * h
    assert torch.allclose(probs, dens / dens.sum(), atol=1e-12)
    assert abs(float(dens.sum()) - 1) < 1e-3  # the box holds (almost) all the mass
    # w > 0: the class-0 mass moves away from class 1's mode, i.e. p(y=0 | x) grows on average
    c2, p2, _ = sharpened_grid(lm, 0, 2.0, lim=4.0, n=200)
    post = lm.class_log_posterior(centres).exp()[:, 0]
    assert float((p2 * post).sum()) > float((probs * post).sum()) + 0.02
    lw = sharpened_log_density(lm, centres[:5], 0, 2.0)
    y0 = torch.zeros(5, dtype=torch.long)
    assert torch.allclose(lw, 3 * lm.log_prob(centres[:5], y0) - 2 * lm.log_prob(centres[:5]))
    xs = sample_grid(centres, probs, h, 20000, torch.Generator().manual_seed(0))
    m0 = lm.conditional(0)
    assert torch.allclose(xs.mean(0), m0.mean(), atol=4 * float(m0.covariance().diag().max().sqrt()) / 100)


def test_labelled_mixture_errors():
    gmm = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [0.1, 0.1])
    with pytest.raises(ValueError, match="one per component"):
        LabelledMixture(gmm, torch.tensor([0, 1, 1]), 2)
    with pytest.raises(ValueError, match="every class"):
        LabelledMixture(gmm, torch.tensor([0, 0]), 2)
    lm = LabelledMixture(gmm, torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="null label"):
        lm.score(torch.zeros(1, 2), torch.tensor([3]))


def test_confusion_matrix_and_class_diversity_by_hand():
    from dmlib.class_quality import class_diversity, confusion_matrix

    req = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 2, 0, 2])
    m = confusion_matrix(req, pred, 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [0.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    d = class_diversity(f, req, 3)
    assert d[0] == 5.0 and math.isnan(float(d[1]))
    assert abs(float(d[2]) - (2 + 2 + math.sqrt(8)) / 3) < 1e-12


def test_noised_grid_score_of_a_gridded_mixture_matches_the_noised_closed_form():
    """Grid the class-0 density of the overlapping mixture (w = 0), noise it on the grid, and
    compare with the closed-form noised conditional score."""
    from dmlib.labelled_mixture import noised_grid_score, overlapping_mixture

    lm = overlapping_mixture()
    centres, probs, h = sharpened_grid(lm, 0, 0.0, lim=4.5, n=300)
    ab = 0.6
    x, _ = lm.noised(ab).sample(200, generator=1, dtype=D)
    got = noised_grid_score(centres, probs, ab, x)
    want = lm.noised(ab).score(x, torch.zeros(200, dtype=torch.long))
    assert ((got - want).norm(dim=1) / want.norm(dim=1).clamp(min=0.1)).max() < 0.01
    with pytest.raises(ValueError, match="alpha_bar"):
        noised_grid_score(centres, probs, 1.0, x)
