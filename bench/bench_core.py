"""Throughput of the dmlib core on this machine (``make bench``).

Measures, on the CPU (and a GPU when there is one):
* the closed-form forward process q(x_t | x_0) on MNIST-sized batches;
* one training step (forward + backward + Adam) of the 2-D MLP and of the 28x28 U-Net;
* one ancestral sampling step of each model.
Writes ``bench/results/core.json`` (and prints a table). Not a test: numbers depend on the
machine. Run: ``.venv/bin/python bench/bench_core.py``.
"""

from __future__ import annotations

import platform
import time

import torch

import dmlib
from dmlib.forward import q_sample
from dmlib.losses import diffusion_loss
from dmlib.models import MLPConfig, MLPDenoiser, UNet, UNetConfig, count_parameters
from dmlib.sampling import ddpm_step
from dmlib.schedules import Schedule
from dmlib.training import pick_device

from _common import RESULTS, timeit, write_json  # noqa: E402  (bench/ is on sys.path)

OUT = RESULTS / "core.json"


def bench_model(name: str, model: torch.nn.Module, shape: tuple[int, ...], sched: Schedule,
                device: torch.device) -> dict:
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x0 = torch.randn(shape, device=device)

    def train_step():
        opt.zero_grad(set_to_none=True)
        diffusion_loss(model, sched, x0).backward()
        opt.step()

    xt = torch.randn(shape, device=device)

    def sample_step():
        ddpm_step(model, sched, xt, 500)

    s_train, s_sample = timeit(train_step), timeit(sample_step)
    return {"model": name, "params": count_parameters(model), "batch": shape[0],
            "train_examples_per_s": round(shape[0] / s_train, 1),
            "sample_examples_per_step_per_s": round(shape[0] / s_sample, 1)}


def main() -> None:
    dmlib.seed_everything(0)
    device = pick_device()
    sched = Schedule.linear(1000)
    x0 = torch.randn(256, 1, 28, 28)
    t = torch.randint(1, 1001, (256,))
    s_q = timeit(lambda: q_sample(sched, x0, t))
    rows = [bench_model("MLPDenoiser (2-D)", MLPDenoiser(MLPConfig()), (512, 2), sched, device),
            bench_model("UNet (28x28)", UNet(UNetConfig()), (64, 1, 28, 28), sched, device)]
    result = {
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "device": str(device), "torch": torch.__version__},
        "q_sample_mnist_images_per_s": round(256 / s_q),
        "models": rows,
        "date": time.strftime("%Y-%m-%d"),
    }
    write_json(OUT, result)
    print(f"q_sample on 28x28 images: {result['q_sample_mnist_images_per_s']} images/s")
    for r in rows:
        print(f"{r['model']:20s} {r['params']:>9,d} params  train {r['train_examples_per_s']:>8} ex/s"
              f"  sampling step {r['sample_examples_per_step_per_s']:>8} ex/s (batch {r['batch']})")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
