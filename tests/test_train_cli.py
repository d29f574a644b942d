"""Tests for dmlib.train: presets, the command line, run files, exact resume, export and
the wall-clock budget."""

import json

import pytest
import torch

from dmlib.checkpoint import load_model
from dmlib.train import (PRESETS, export_weights, get_preset, image_loss_fn, main, sha256_file,
                         train_mnist)
from dmlib.training import TrainConfig, train


def test_presets_and_overrides():
    assert {"quick", "cpu", "ship", "gpu"} <= set(PRESETS)
    p = get_preset("cpu", steps=5, lr=1e-4)
    assert p.steps == 5 and p.lr == 1e-4 and PRESETS["cpu"].steps != 5
    with pytest.raises(ValueError, match="unknown preset 'laptop'"):
        get_preset("laptop")
    with pytest.raises(ValueError, match="unknown preset fields"):
        get_preset("cpu", stepz=3)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_cli_run_resume_is_exact_and_export(tmp_path, one_thread, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["mnist", "--preset", "quick", "--steps", "6", "--run-dir", str(a),
                 "--export", str(tmp_path / "w.pt")]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    assert main(["mnist", "--preset", "quick", "--steps", "3", "--run-dir", str(b)]) == 0
    assert main(["mnist", "--preset", "quick", "--steps", "6", "--run-dir", str(b),
                 "--resume"]) == 0
    ma, mb = load_model(a / "train.pt"), load_model(b / "train.pt")
    assert torch.equal(_params(ma), _params(mb))  # stopped and resumed == never stopped
    rows = [json.loads(line) for line in (a / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6 and all(r["loss"] > 0 for r in rows)
    info = json.loads((b / "run.json").read_text())
    assert info["preset"]["name"] == "quick" and len(info["invocations"]) == 2
    w = tmp_path / "w.pt"
    assert (tmp_path / "w.pt.sha256").read_text().split()[0] == sha256_file(w)
    assert torch.equal(_params(load_model(w)), _params(ma))  # the EMA weights
    assert w.stat().st_size < (a / "train.pt").stat().st_size / 2


def test_existing_run_is_not_overwritten(tmp_path, one_thread):
    run = tmp_path / "r"
    train_mnist(get_preset("quick", steps=2), run, progress=False)
    before = (run / "train.pt").read_bytes()
    with pytest.raises(FileExistsError, match="resume"):
        train_mnist(get_preset("quick", steps=2), run, progress=False)
    assert (run / "train.pt").read_bytes() == before


def test_image_loss_and_bad_images(one_thread):
    p = get_preset("quick", steps=1, batch_size=4)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, H, W\)"):
        train_mnist(p, images=torch.zeros(8, 28, 28), progress=False)
    res = train_mnist(p, images=torch.rand(8, 1, 28, 28) * 2 - 1, progress=False)
    assert res.result.steps_done == 1 and res.images_per_s > 0
    loss_fn = image_loss_fn(p.spec)
    with pytest.raises(TypeError, match="DiffusionSpec"):
        image_loss_fn(p.make_schedule())
    x = torch.rand(4, 1, 28, 28)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(loss_fn(res.model, x, g1), loss_fn(res.model, (x, None), g2))


def test_max_seconds_stops_early_with_a_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(steps=10 ** 6, batch_size=4, max_seconds=0.2, ckpt_path=str(tmp_path / "c.pt"))
    res = train(model, lambda m, b, g: m(b).pow(2).mean(), torch.randn(64, 2), cfg, progress=False)
    assert 1 <= res.steps_done < 10 ** 6 and len(res.history) == res.steps_done
    assert (tmp_path / "c.pt").is_file()
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(max_seconds=0)


def test_export_is_atomic_and_loadable(tmp_path):
    from dmlib.models import UNet
    from dmlib.train import MNIST_UNET

    m = UNet(MNIST_UNET)
    digest = export_weights(m, tmp_path / "x.pt", step=3, extra={"note": "t"})
    assert len(digest) == 64 and not list(tmp_path.glob("*.tmp"))
    assert isinstance(load_model(tmp_path / "x.pt"), UNet)


def test_export_run_keeps_the_preset(tmp_path, one_thread):
    from dmlib.checkpoint import read_checkpoint

    run = tmp_path / "r"
    train_mnist(get_preset("quick", steps=3), run, progress=False)
    assert main(["export", str(run), str(tmp_path / "e.pt")]) == 0
    ck = read_checkpoint(tmp_path / "e.pt")
    assert ck["step"] == 3 and ck["optimizer"] is None and ck["ema"] is None
    assert ck["extra"]["preset"]["schedule"] == "cosine" and ck["extra"]["preset"]["steps"] == 3
    assert torch.equal(_params(load_model(tmp_path / "e.pt")), _params(load_model(run / "train.pt")))


def test_v_model_trained_and_sampled_through_the_clis_uses_its_spec(tmp_path, one_thread):
    """The bug this guards against: a v-model sampled as an eps-model with no error. The spec
    travels in the exported file, and the sampling CLI must use it."""
    from dmlib.checkpoint import load_diffusion_model
    from dmlib.quality import main as quality_main
    from dmlib.sampling import sample_images
    from dmlib.spec import DiffusionSpec

    w = tmp_path / "v.pt"
    assert main(["mnist", "--preset", "quick", "--steps", "4", "--prediction-type", "v",
                 "--run-dir", str(tmp_path / "run"), "--export", str(w)]) == 0
    model, spec = load_diffusion_model(w)
    assert spec == DiffusionSpec("cosine", 1000, "v")
    assert quality_main(["score", str(w), "--n", "6", "--steps", "5", "--seed", "3",
                         "--save", str(tmp_path / "s.pt")]) == 0
    via_cli = torch.load(tmp_path / "s.pt", weights_only=True)

    def direct(prediction_type):
        x = sample_images(load_model(w), DiffusionSpec("cosine", 1000, prediction_type), 6,
                          steps=5, generator=torch.Generator().manual_seed(3))
        return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)

    assert torch.equal(via_cli, direct("v"))
    assert not torch.equal(via_cli, direct("eps"))  # the old behaviour would differ
    # and the run's own checkpoint carries the spec too (export from the run directory)
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "e.pt")]) == 0
    assert load_diffusion_model(tmp_path / "e.pt")[1] == spec


def test_file_without_spec_gets_a_clear_error_naming_the_fix(tmp_path):
    from dmlib.checkpoint import MissingSpecError, add_spec, load_diffusion_model
    from dmlib.models import UNet
    from dmlib.spec import DiffusionSpec
    from dmlib.train import MNIST_UNET

    old = tmp_path / "old.pt"
    export_weights(UNet(MNIST_UNET), old, step=1)  # no spec, as before dmlib 0.2
    with pytest.raises(MissingSpecError, match="add_spec.*DiffusionSpec|Re-export"):
        load_diffusion_model(old)
    add_spec(old, DiffusionSpec("linear", 500, "x0"))
    assert load_diffusion_model(old)[1] == DiffusionSpec("linear", 500, "x0")
