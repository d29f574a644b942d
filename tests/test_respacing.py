"""Tests for dmlib.respacing: the kept times, the respaced schedule's marginals (closed
form and Monte Carlo), the model wrapper, and sampling equal to ddpm_sample."""

import pytest
import torch

from dmlib.respacing import RespacedModel, respace, respaced_timesteps
from dmlib.sampling import sample_images
from dmlib.spec import DiffusionSpec
from dmlib.sampling import ddpm_sample
from dmlib.schedules import Schedule


def test_timesteps_even_and_end_at_T():
    taus = respaced_timesteps(1000, 50)
    assert taus.dtype == torch.long and taus.shape == (50,)
    assert taus[0] == 20 and taus[-1] == 1000 and bool((taus.diff() == 20).all())
    assert torch.equal(respaced_timesteps(10, 10), torch.arange(1, 11))
    assert respaced_timesteps(1000, 1).tolist() == [1000]
    assert respaced_timesteps(1000, 3).tolist() == [333, 667, 1000]


@pytest.mark.parametrize("steps", [0, 11, 2.5, True, None])
def test_timesteps_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an int in 1..T=10"):
        respaced_timesteps(10, steps)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("S", [1, 7, 50, 1000])
def test_respaced_alpha_bar_equals_original_at_kept_times(name, S):
    s = Schedule.linear(1000) if name == "linear" else Schedule.cosine(1000)
    sS, taus = respace(s, S)
    assert sS.T == S
    # alpha_bar'_k = prod_j (1 - beta'_j) telescopes to alpha_bar_{tau_k}
    assert torch.allclose(sS.alpha_bar[1:], s.alpha_bar[taus], rtol=1e-10, atol=1e-14)
    if S == 1000:
        assert torch.allclose(sS.betas, s.betas, atol=1e-12)


def test_respaced_forward_chain_matches_closed_form_by_monte_carlo():
    s = Schedule.linear(200)
    sS, taus = respace(s, 8)
    x0 = torch.tensor([1.5, -0.5], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x = x0.expand(n, 2).clone()
    for k in range(1, 9):
        b = sS.betas[k]
        x = (1 - b).sqrt() * x + b.sqrt() * torch.randn(n, 2, generator=g, dtype=torch.float64)
        mean, std = s.sqrt_alpha_bar[taus[k - 1]] * x0, s.sqrt_one_minus_alpha_bar[taus[k - 1]]
        se = std / n ** 0.5
        assert ((x.mean(0) - mean).abs() < 5 * se).all()
        assert abs(float(x.std(0).mean() / std) - 1) < 0.01


def test_respaced_model_maps_k_to_tau():
    seen = []
    model = lambda x, t: (seen.append(t.clone()), x)[1]  # noqa: E731
    taus = torch.tensor([5, 10, 15])
    m = RespacedModel(model, taus)
    m(torch.zeros(2, 1), torch.tensor([1, 3]))
    assert seen[-1].tolist() == [5, 15]
    for bad in (torch.tensor([0, 1]), torch.tensor([4, 1]), torch.tensor([1.0, 2.0])):
        with pytest.raises(ValueError, match="k must be a long tensor in 1..S=3"):
            m(torch.zeros(2, 1), bad)


def _toy(x, t):
    return torch.tanh(0.5 * x + t.to(x.dtype).reshape(-1, 1, 1, 1) / 1000)


def test_sample_images_equals_ddpm_sample_on_respaced_schedule():
    spec = DiffusionSpec("cosine", 100)
    s = spec.make_schedule()
    got = sample_images(_toy, spec, 6, steps=10, shape=(1, 4, 4), clip_x0=None, batch_size=6,
                        generator=torch.Generator().manual_seed(3))
    sS, taus = respace(s, 10)
    ref = ddpm_sample(RespacedModel(_toy, taus), sS, (6, 1, 4, 4),
                      generator=torch.Generator().manual_seed(3)).clamp(-1, 1)
    assert torch.allclose(got, ref, atol=1e-6)
    # all steps = the plain sampler
    full = sample_images(_toy, spec, 3, steps=None, shape=(1, 4, 4), clip_x0=None,
                         generator=torch.Generator().manual_seed(4))
    ref = ddpm_sample(_toy, s, (3, 1, 4, 4), generator=torch.Generator().manual_seed(4))
    assert torch.allclose(full, ref.clamp(-1, 1), atol=1e-5)


def test_sample_images_batches_and_range():
    s = DiffusionSpec("cosine", 50)
    a = sample_images(_toy, s, 7, steps=5, shape=(1, 4, 4), batch_size=3,
                      generator=torch.Generator().manual_seed(1))
    assert a.shape == (7, 1, 4, 4) and a.min() >= -1 and a.max() <= 1
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample_images(_toy, s, 0)
    with pytest.raises(TypeError, match="DiffusionSpec"):
        sample_images(_toy, s.make_schedule(), 3)
    with pytest.raises(TypeError, match="dmlib Schedule"):
        respace("cosine", 5)
