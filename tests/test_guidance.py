"""Class conditioning and classifier-free guidance (dmlib.guidance, chapter 9)."""

import math

import pytest
import torch

from dmlib.checkpoint import load_diffusion_model
from dmlib.guidance import GuidedModel, LabelledModel, drop_labels, guided
from dmlib.models.unet import UNet, UNetConfig
from dmlib.sampling import sample, sample_images
from dmlib.spec import DiffusionSpec
from dmlib.train import export_weights, main as train_main

SMALL = UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                   attention_resolutions=(), mid_attention=False, groups=4, image_size=8,
                   num_classes=3)


def _net(seed=0, config=SMALL):
    torch.manual_seed(seed)
    net = UNet(config).eval()
    with torch.no_grad():  # random, non-zero weights everywhere (the output conv starts at 0)
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net


def test_null_label_is_the_default_and_labels_change_the_output():
    net = _net()
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([1, 10, 100, 1000])
    null = torch.full((4,), 3, dtype=torch.long)
    assert torch.equal(net(x, t), net(x, t, null))
    y = torch.tensor([0, 1, 2, 0])
    assert (net(x, t, y) - net(x, t, null)).abs().max() > 1e-3


def test_label_errors_name_the_problem():
    net = _net()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="0..3"):
        net(x, t, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="one label per image"):
        net(x, t, torch.tensor([0, 1, 2]))
    uncond = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                             attention_resolutions=(), mid_attention=False, groups=4, image_size=8))
    with pytest.raises(ValueError, match="unconditional"):
        uncond(x, t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_classes"):
        UNetConfig(num_classes=-1)


def test_drop_labels_rate_matches_p_uncond():
    y = torch.zeros(20000, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    dropped = drop_labels(y, 0.1, null_label=10, generator=g)
    share = (dropped == 10).float().mean().item()
    se = math.sqrt(0.1 * 0.9 / len(y))
    assert abs(share - 0.1) < 4 * se
    assert set(dropped.unique().tolist()) == {0, 10}
    assert torch.equal(drop_labels(y, 0.0, 10), y)
    assert (drop_labels(y, 1.0, 10) == 10).all()
    assert (y == 0).all()  # not modified in place
    with pytest.raises(ValueError, match="probability"):
        drop_labels(y, 1.5, 10)


def test_cfg_combination_matches_separate_calls():
    net = _net()
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([5, 50, 500])
    y = torch.tensor([2, 0, 1])
    null = torch.full((3,), 3, dtype=torch.long)
    w = 2.5
    want = (1 + w) * net(x, t, y) - w * net(x, t, null)
    assert torch.allclose(GuidedModel(net, y, w, 3)(x, t), want, atol=1e-5)
    assert torch.equal(guided(net, y, 0.0, 3)(x, t), net(x, t, y))
    assert torch.equal(guided(net, None, 0.0, 3)(x, t), net(x, t, null))
    with pytest.raises(ValueError, match="needs labels"):
        guided(net, None, 1.0, 3)
    with pytest.raises(ValueError, match=">= 0"):
        GuidedModel(net, y, -1.0, 3)


def test_sampler_loop_with_w0_equals_the_conditional_model():
    net = _net()
    spec = DiffusionSpec("cosine", 50, "eps", num_classes=3)
    y = torch.tensor([0, 1, 2, 2])
    xT = torch.randn(4, 1, 8, 8)
    a = sample(net, spec, (4, 1, 8, 8), "ddim", steps=10, x_T=xT, y=y, guidance=0.0)
    b = sample(LabelledModel(net, y), DiffusionSpec("cosine", 50, "eps"), (4, 1, 8, 8), "ddim",
               steps=10, x_T=xT)
    assert torch.equal(a, b)
    c = sample(net, spec, (4, 1, 8, 8), "ddim", steps=10, x_T=xT, y=y, guidance=3.0)
    assert (c - a).abs().max() > 1e-3
    imgs = sample_images(net, spec, 4, steps=5, sampler="ddim", shape=(1, 8, 8), y=y,
                         guidance=1.0, batch_size=3, generator=torch.Generator().manual_seed(0))
    assert imgs.shape == (4, 1, 8, 8)


def test_unconditional_path_refuses_labels():
    net = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                          attention_resolutions=(), mid_attention=False, groups=4, image_size=8))
    spec = DiffusionSpec("cosine", 20, "eps")
    with pytest.raises(ValueError, match="class-conditional"):
        sample(net, spec, (2, 1, 8, 8), "ddim", steps=4, y=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class-conditional"):
        sample(net, spec, (2, 1, 8, 8), "ddim", steps=4, guidance=1.0)


def test_spec_with_classes_round_trips_and_old_dicts_stay_unconditional():
    spec = DiffusionSpec("cosine", 1000, "eps", num_classes=10)
    assert DiffusionSpec.from_dict(spec.to_dict()) == spec
    assert spec.null_label == 10 and "10 classes" in str(spec)
    old = DiffusionSpec("cosine", 1000, "eps").to_dict()
    old.pop("num_classes")
    assert DiffusionSpec.from_dict(old).num_classes == 0
    with pytest.raises(ValueError, match="num_classes"):
        DiffusionSpec(num_classes=-2)


def test_conditional_model_saved_and_loaded_through_its_spec(tmp_path):
    net = _net(1)
    spec = DiffusionSpec("cosine", 100, "eps", num_classes=3)
    export_weights(net, tmp_path / "c.pt", step=7, spec=spec)
    loaded, spec2 = load_diffusion_model(tmp_path / "c.pt")
    assert spec2 == spec and loaded.config.num_classes == 3
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 30]), torch.tensor([1, 3])
    assert torch.allclose(loaded(x, t, y), net(x, t, y))


def test_train_cli_refuses_a_mismatched_preset(capsys):
    with pytest.raises(SystemExit):
        train_main(["mnist-cond", "--preset", "cpu"])
    assert "conditional" in capsys.readouterr().err
