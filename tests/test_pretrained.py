"""Tests for the shipped checkpoints (dmlib.pretrained): checksums, size, loading, errors,
and that they do what they claim (the judge's accuracy, the U-Net's denoising)."""

import shutil

import pytest
import torch

from dmlib.data.mnist import load_mnist
from dmlib.losses import diffusion_loss
from dmlib.models import MnistClassifier, UNet
from dmlib.pretrained import (PRETRAINED, load_pretrained, load_pretrained_diffusion,
                              pretrained_path, verify_pretrained)
from dmlib.spec import DiffusionSpec
from dmlib.quality import test_accuracy as judge_accuracy
from dmlib.schedules import Schedule
from dmlib.train import MNIST_UNET, PRESETS


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_files_verify_and_are_small(name):
    path = pretrained_path(name)
    assert path.stat().st_size <= 10 * 2 ** 20
    digest = verify_pretrained(name)
    assert path.with_name(path.name + ".sha256").read_text().split()[0] == digest


def test_corrupt_missing_and_unknown(tmp_path):
    shutil.copy(pretrained_path("mnist_classifier"), tmp_path / "mnist_classifier.pt")
    raw = bytearray((tmp_path / "mnist_classifier.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "mnist_classifier.pt").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch.*git checkout -- data/checkpoints"):
        load_pretrained("mnist_classifier", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="shipped checkpoint not found"):
        verify_pretrained("mnist_unet", root=tmp_path)
    with pytest.raises(ValueError, match="unknown pretrained checkpoint"):
        pretrained_path("mnist_gan")


def test_env_data_dir(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(pretrained_path("mnist_unet"), tmp_path / "checkpoints" / "mnist_unet.pt")
    monkeypatch.setenv("DMLIB_DATA_DIR", str(tmp_path))
    assert pretrained_path("mnist_unet").parent == tmp_path / "checkpoints"
    model, spec = load_pretrained_diffusion("mnist_unet")
    assert isinstance(model, UNet) and spec == PRESETS["ship"].spec


def test_diffusion_models_come_with_their_spec():
    with pytest.raises(ValueError, match="load_pretrained_diffusion"):
        load_pretrained("mnist_unet")  # a spec-less load of a diffusion model is refused
    with pytest.raises(ValueError, match="not a diffusion model"):
        load_pretrained_diffusion("mnist_classifier")


def test_shipped_judge_is_99_percent_accurate(one_thread):
    judge = load_pretrained("mnist_classifier")
    assert isinstance(judge, MnistClassifier)
    assert judge_accuracy(judge) >= 0.99


@pytest.mark.parametrize("name,expected_spec", [
    ("mnist_unet", PRESETS["ship"].spec),  # chapter 7: the ship preset, v target
    ("mnist_unet_eps", PRESETS["ship-eps"].spec),  # the first one, eps target (chapter 8)
])
def test_shipped_unets_denoise(one_thread, name, expected_spec):
    """Each shipped U-Net is the chapter-7 architecture with the spec it was trained for, and,
    seen as an eps-model (ConvertedModel, chapter 5's exact conversion), its loss on test
    digits is far below an untrained network's (which predicts ~0: loss E[eps^2] = 1)."""
    from dmlib.targets import ConvertedModel

    model, spec = load_pretrained_diffusion(name)
    assert model.config == MNIST_UNET == PRESETS["ship"].model
    assert spec == expected_spec
    x0, _ = load_mnist("test", limit=256)
    s = Schedule.cosine(1000)
    g = torch.Generator().manual_seed(0)
    t = torch.randint(1, 1001, (256,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    as_eps = ConvertedModel(model, s, spec.prediction_type, "eps")
    with torch.no_grad():
        trained = float(diffusion_loss(as_eps, s, x0, "eps", t=t, eps=eps))
        untrained = float(diffusion_loss(UNet(MNIST_UNET).eval(), s, x0, "eps", t=t, eps=eps))
    assert untrained == pytest.approx(1.0, abs=0.05)  # predicts 0: loss = E[eps^2]
    assert trained < 0.05  # 0.038 measured for mnist_unet_eps


def test_shipped_conditional_unet_is_the_cond_preset_and_uses_its_labels(one_thread):
    """Chapter 9's model: the preset's config and spec (10 classes, null label 10); with the
    true labels its loss is below the loss with the null label on the same (t, eps)."""
    from dmlib.guidance import LabelledModel

    model, spec = load_pretrained_diffusion("mnist_cond_unet")
    assert model.config == PRESETS["cond"].model and spec == PRESETS["cond"].spec
    assert spec.num_classes == 10 and spec.null_label == 10
    x0, y = load_mnist("test", limit=256)
    g = torch.Generator().manual_seed(0)
    t = torch.randint(1, 1001, (256,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    with torch.no_grad():
        cond = float(diffusion_loss(LabelledModel(model, y.long()), spec, x0, t=t, eps=eps))
        null = float(diffusion_loss(LabelledModel(model, None), spec, x0, t=t, eps=eps))
    assert cond < 0.06 and cond < null
