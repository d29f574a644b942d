"""End to end: Algorithm 1 (train) and Algorithm 2 (sample) through dmlib's pieces, on 2-D
data whose distribution is known, and a checkpoint round trip of the trained model."""

import torch

from dmlib.checkpoint import load_model
from dmlib.losses import diffusion_loss
from dmlib.models import MLPConfig, MLPDenoiser
from dmlib.sampling import ddpm_sample
from dmlib.schedules import Schedule
from dmlib.training import TrainConfig, train

MEAN = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 1.0])


def test_train_then_sample_recovers_a_gaussian(tmp_path):
    torch.manual_seed(0)
    data = MEAN + STD * torch.randn(4096, 2, generator=torch.Generator().manual_seed(1))
    sched = Schedule.linear(100)
    model = MLPDenoiser(MLPConfig(hidden=64, depth=2, time_dim=32))

    def loss_fn(m, x0, g):
        return diffusion_loss(m, sched, x0, generator=g)

    cfg = TrainConfig(steps=800, batch_size=256, lr=3e-3, ema_decay=0.99, log_every=100,
                      ckpt_path=str(tmp_path / "run.pt"), device="cpu")
    res = train(model, loss_fn, data, cfg, progress=False)
    early, late = sum(res.history[:50]) / 50, sum(res.history[-100:]) / 100
    assert late < 0.8 * early

    ema = load_model(tmp_path / "run.pt", use_ema=True)
    x = ddpm_sample(ema, sched, (4000, 2), variance="beta",
                    generator=torch.Generator().manual_seed(2))
    # 4000 samples: the standard error of a mean is ~0.016, of a std ~0.011; a model trained
    # for seconds is allowed a few percent on top.
    assert torch.allclose(x.mean(0), MEAN, atol=0.1), x.mean(0)
    assert torch.allclose(x.std(0), STD, rtol=0.12), x.std(0)
    # the untrained network (zero output) would leave pure noise: std ~ 1 in both coordinates
    assert abs(float(x.std(0)[0]) - 1.0) > 0.3
