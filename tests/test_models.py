"""Tests for dmlib.models: time embedding, MLP denoiser, U-Net (chapters 6, 7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dmlib.models import (MLPConfig, MLPDenoiser, SinusoidalTimeEmbedding, UNet, UNetConfig,
                          build_model, count_parameters, timestep_mlp)
from dmlib.models.unet import SelfAttention


# -- time embedding -----------------------------------------------------------------------
@pytest.mark.parametrize("dim,max_period", [(8, 10000.0), (64, 10000.0), (6, 100.0)])
def test_embedding_matches_brute_force_loop(dim, max_period):
    t = torch.tensor([0, 1, 2, 17, 500, 1000])
    got = SinusoidalTimeEmbedding(dim, max_period)(t).numpy()
    half = dim // 2
    ref = np.zeros((len(t), dim))
    for b, tb in enumerate(t.tolist()):
        for i in range(half):
            w = max_period ** (-i / half)
            ref[b, i] = math.sin(tb * w)
            ref[b, half + i] = math.cos(tb * w)
    # float32 phases t * w_i up to 1000: absolute error ~ 1000 * 6e-8.
    np.testing.assert_allclose(got, ref, atol=2e-4, rtol=0)
    assert got.shape == (len(t), dim) and got.dtype == np.float32


def test_embedding_distinguishes_timesteps():
    emb = SinusoidalTimeEmbedding(32)(torch.arange(1, 101))
    d = torch.cdist(emb, emb) + torch.eye(100) * 10
    assert d.min() > 1e-2  # no two timesteps share an embedding


@pytest.mark.parametrize("dim", [7, 0, 1])
def test_embedding_rejects_odd_dim(dim):
    with pytest.raises(ValueError, match="dim must be an even int"):
        SinusoidalTimeEmbedding(dim)


def test_embedding_rejects_bad_t():
    emb = SinusoidalTimeEmbedding(8)
    with pytest.raises(TypeError, match="integer timesteps"):
        emb(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        emb(torch.tensor(3))
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        emb(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=">= 0"):
        emb(torch.tensor([-1, 2]))
    with pytest.raises(TypeError, match="torch.long tensor"):
        emb([1, 2])


def test_timestep_mlp_shape():
    out = timestep_mlp(16, 40)(torch.tensor([1, 5, 9]))
    assert out.shape == (3, 40)


# -- MLP ------------------------------------------------------------------------------------
def _mlp_param_count(dim, h, depth, td, norm):
    """Hand count: time MLP, input layer, blocks (LN, 3 linears), output LN + linear."""
    ln = 2 * h if norm == "layer" else 0
    time_mlp = (td * h + h) + (h * h + h)
    block = ln + 3 * (h * h + h)
    return time_mlp + (dim * h + h) + depth * block + ln + (h * dim + dim)


@pytest.mark.parametrize("cfg", [MLPConfig(), MLPConfig(dim=3, hidden=16, depth=2, time_dim=8,
                                                        norm="none")])
def test_mlp_shape_and_param_count(cfg):
    torch.manual_seed(0)
    m = MLPDenoiser(cfg)
    x = torch.randn(5, cfg.dim)
    y = m(x, torch.randint(1, 1001, (5,)))
    assert y.shape == x.shape
    assert count_parameters(m) == _mlp_param_count(cfg.dim, cfg.hidden, cfg.depth, cfg.time_dim,
                                                   cfg.norm)


def test_mlp_starts_at_zero_and_depends_on_t_after_training_output_layer():
    torch.manual_seed(0)
    m = MLPDenoiser(MLPConfig(hidden=32, depth=2, time_dim=16))
    x = torch.randn(4, 2)
    assert torch.equal(m(x, torch.full((4,), 3)), torch.zeros(4, 2))
    nn.init.normal_(m.out.weight)
    a, b = m(x, torch.full((4,), 3)), m(x, torch.full((4,), 700))
    assert (a - b).abs().max() > 1e-3


def test_mlp_rebuilds_from_config():
    torch.manual_seed(0)
    m = MLPDenoiser(MLPConfig(hidden=24, depth=3, time_dim=8))
    m2 = build_model("MLPDenoiser", {"hidden": 24, "depth": 3, "time_dim": 8})
    m2.load_state_dict(m.state_dict())
    assert type(m)(m.config).config == m.config


def test_mlp_shape_errors():
    m = MLPDenoiser(MLPConfig(hidden=16, depth=1, time_dim=8))
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"xt must have shape \(B, 2\)"):
        m(torch.randn(2, 3), t)
    with pytest.raises(ValueError, match=r"xt must have shape \(B, 2\)"):
        m(torch.randn(2, 1, 2), t)
    with pytest.raises(ValueError, match="t has 2 entries"):
        m(torch.randn(3, 2), t)
    with pytest.raises(TypeError, match="integer timesteps"):
        m(torch.randn(2, 2), t.float())
    with pytest.raises(TypeError, match="floating tensor"):
        m(torch.ones(2, 2, dtype=torch.long), t)
    with pytest.raises(ValueError, match="t is on cpu but xt is on meta"):
        m(torch.empty(2, 2, device="meta"), t)


@pytest.mark.parametrize("kw,match", [({"hidden": 0}, "hidden must be a positive int"),
                                      ({"time_dim": 7}, "time_dim must be even"),
                                      ({"norm": "batch"}, "norm must be"),
                                      ({"dropout": 1.0}, "dropout")])
def test_mlp_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        MLPConfig(**kw)


def test_mlp_rejects_wrong_config_type():
    with pytest.raises(TypeError, match="MLPConfig"):
        MLPDenoiser(UNetConfig())


# -- U-Net ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    m = UNet()
    nn.init.normal_(m.conv_out.weight, std=0.05)  # so outputs (and all gradients) are non-zero
    return m


def test_unet_default_param_count_is_pinned():
    # Pinned so an accidental architecture change is noticed (it would break checkpoints).
    n = count_parameters(UNet())
    assert n == 1_742_881
    assert 1_000_000 <= n <= 2_000_000


def test_unet_forward_shapes(unet):
    for shape in [(3, 1, 28, 28), (2, 1, 12, 16), (1, 1, 4, 8)]:
        x = torch.randn(shape)
        assert unet(x, torch.randint(1, 1001, (shape[0],))).shape == shape


def test_unet_output_conv_starts_at_zero():
    torch.manual_seed(0)
    m = UNet(UNetConfig(base_channels=16, num_res_blocks=1))
    assert torch.equal(m(torch.randn(2, 1, 28, 28), torch.tensor([1, 500])), torch.zeros(2, 1, 28, 28))


def test_unet_gradient_reaches_every_parameter(unet):
    unet.zero_grad()
    x = torch.randn(2, 1, 28, 28)
    unet(x, torch.tensor([3, 900])).square().mean().backward()
    for name, p in unet.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    unet.zero_grad()


def test_unet_depends_on_t(unet):
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        a, b = unet(x, torch.tensor([1, 1])), unet(x, torch.tensor([1000, 1000]))
    assert (a - b).abs().max() > 1e-3


def test_unet_channels_last_matches_contiguous(unet):
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([5, 50])
    with torch.no_grad():
        ref = unet(x, t)
        m_cl = UNet(unet.config).to(memory_format=torch.channels_last)
        m_cl.load_state_dict(unet.state_dict())
        got = m_cl(x.to(memory_format=torch.channels_last), t)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_unet_under_bf16_autocast(unet):
    x = torch.randn(2, 1, 28, 28)
    t = torch.tensor([5, 50])
    with torch.no_grad():
        ref = unet(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = unet(x, t)
    assert got.shape == ref.shape and torch.isfinite(got).all()
    rel = (got.float() - ref).norm() / ref.norm()
    assert rel < 0.1  # bf16 has ~3 significant digits


def test_unet_rgb_and_no_attention():
    torch.manual_seed(0)
    cfg = UNetConfig(in_channels=3, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                     attention_resolutions=(), mid_attention=False, scale_shift=False,
                     image_size=32)
    m = UNet(cfg)
    assert not any(isinstance(mod, SelfAttention) for mod in m.modules())
    assert m(torch.randn(2, 3, 10, 6), torch.tensor([1, 2])).shape == (2, 3, 10, 6)
    n_attn = sum(isinstance(mod, SelfAttention) for mod in UNet().modules())
    assert n_attn == 2 + 3 + 1  # 7x7 down (2 blocks), 7x7 up (3 blocks), bottleneck


def test_self_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    att = SelfAttention(8, groups=4, num_heads=2).double()
    x = torch.randn(2, 8, 3, 5, dtype=torch.float64)
    got = att(x)
    # Reference: explicit softmax(q k^T / sqrt(d)) v per head, positions flattened.
    h = att.qkv(att.norm(x)).reshape(2, 24, 15)
    q, k, v = h[:, :8], h[:, 8:16], h[:, 16:]
    outs = []
    for head in range(2):
        sl = slice(4 * head, 4 * head + 4)
        qh, kh, vh = q[:, sl], k[:, sl], v[:, sl]  # (B, d, N)
        w = torch.softmax(torch.einsum("bdi,bdj->bij", qh, kh) / math.sqrt(4), dim=-1)
        outs.append(torch.einsum("bij,bdj->bdi", w, vh))
    ref = x + att.proj(torch.cat(outs, 1).reshape(2, 8, 3, 5))
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=1e-10)


def test_unet_input_errors(unet):
    t = torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        unet(torch.randn(2, 28, 28), t)
    with pytest.raises(ValueError, match="3 channels but the model was built with in_channels=1"):
        unet(torch.randn(2, 3, 28, 28), t)
    with pytest.raises(ValueError, match="divisible by 4"):
        unet(torch.randn(2, 1, 30, 28), t)
    with pytest.raises(ValueError, match="t has 2 entries"):
        unet(torch.randn(3, 1, 28, 28), t)


@pytest.mark.parametrize("kw,match", [
    ({"base_channels": 12}, "not divisible by groups=8"),
    ({"attention_resolutions": (5,)}, r"not resolutions of this U-Net.*\[28, 14, 7\]"),
    ({"channel_mults": ()}, "channel_mults must be a non-empty"),
    ({"image_size": 30}, "divisible by"),
    ({"time_dim": 9}, "time_dim must be an even"),
    ({"dropout": -0.1}, "dropout"),
    ({"num_res_blocks": 0}, "num_res_blocks must be a positive int"),
])
def test_unet_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**kw)


def test_unet_rebuilds_from_dict_config():
    import dataclasses

    cfg = UNetConfig(base_channels=16, num_res_blocks=1)
    d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    m = build_model("UNet", d)
    assert m.config == cfg and count_parameters(m) == count_parameters(UNet(cfg))


def test_build_model_errors():
    with pytest.raises(ValueError, match="unknown model class 'Foo'"):
        build_model("Foo", {})
    with pytest.raises(ValueError, match=r"unknown fields \['width'\]"):
        build_model("MLPDenoiser", {"width": 3})
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters("not a model")


def test_count_parameters_trainable_only():
    m = nn.Linear(3, 2)
    m.bias.requires_grad_(False)
    assert count_parameters(m) == 6 and count_parameters(m, trainable_only=False) == 8
