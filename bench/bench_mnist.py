"""Speed and quality of the chapter-7 MNIST model on this CPU: ``bench/results/mnist.json``.

Parts (``--parts``; results of parts not re-run are kept):

* ``sizes``: training images/s (forward + backward + Adam, batch 64) and sampling images/s
  (forward only, batch 500) of candidate U-Net widths and depths, with parameter counts.
  Convolutions at 28 x 28 dominate the cost on a CPU, so the width there decides the speed;
  the course's U-Net (16/32/64 channels, one block a level) is the fastest candidate that
  keeps attention at 7 x 7.
* ``sampling``: seconds per digit of the shipped checkpoint for 10 ... 1000 respaced steps
  (batch 64), and the time for 64 digits (target: <= 60 s on this 2-core CPU).

Run: ``.venv/bin/python bench/bench_mnist.py [--parts sizes sampling] [--threads 2]``
(about 4 minutes). The 10,000-sample score of the shipped checkpoint is made by
``python -m dmlib.quality score`` (see data/checkpoints/README.md); the comparison with
diffusers' UNet2DModel is ``bench/bench_mnist_peer.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from _common import RESULTS, timeit, write_json
from dmlib.losses import diffusion_loss
from dmlib.models import UNet, UNetConfig, count_parameters
from dmlib.pretrained import load_pretrained_diffusion
from dmlib.sampling import sample_images
from dmlib.schedules import Schedule
from dmlib.train import MNIST_UNET

CANDIDATES = {
    "course (16/32/64, 1 block)": MNIST_UNET,
    "16/32/64, 2 blocks": UNetConfig(base_channels=16, channel_mults=(1, 2, 4), num_res_blocks=2),
    "24/48/48, 1 block": UNetConfig(base_channels=24, channel_mults=(1, 2, 2), num_res_blocks=1),
    "32/64/64, 1 block": UNetConfig(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1),
    "32/64/64, 2 blocks (gpu preset)": UNetConfig(),
}


def bench_sizes() -> list[dict]:
    s = Schedule.cosine(1000)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1
    t = torch.randint(1, 1001, (64,), generator=g)
    xs, ts = torch.randn(500, 1, 28, 28, generator=g), torch.randint(1, 1001, (500,), generator=g)
    rows = []
    for name, cfg in CANDIDATES.items():
        torch.manual_seed(0)
        m = UNet(cfg)
        opt = torch.optim.Adam(m.parameters(), 1e-3)

        def step():
            opt.zero_grad()
            diffusion_loss(m, s, x, t=t).backward()
            opt.step()

        train_s = timeit(step, min_time=8.0)
        m.eval()
        with torch.no_grad():
            infer_s = timeit(lambda: m(xs, ts), min_time=8.0, warmup=1)
        rows.append({"model": name, "params": count_parameters(m), "config": cfg.__dict__,
                     "train_images_per_s": 64 / train_s, "sample_images_per_s": 500 / infer_s})
        print(f"{name:34s} {rows[-1]['params'] / 1e6:5.2f}M  train {64 / train_s:6.0f} img/s  "
              f"forward {500 / infer_s:6.0f} img/s", flush=True)
    return rows


def bench_sampling() -> list[dict]:
    model, spec = load_pretrained_diffusion("mnist_unet_eps")
    rows = []
    for S in (10, 25, 50, 100, 250, 1000):
        n = 64 if S <= 250 else 16
        t0 = time.perf_counter()
        sample_images(model, spec, n, steps=S, generator=torch.Generator().manual_seed(0))
        per = (time.perf_counter() - t0) / n
        rows.append({"steps": S, "n": n, "seconds_per_digit": per, "seconds_for_64": 64 * per})
        print(f"{S:5d} steps: {per * 1000:7.1f} ms/digit, 64 digits {64 * per:6.1f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", default=["sizes", "sampling"], choices=["sizes", "sampling"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = RESULTS / "mnist.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    res["machine"] = {"cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                      "python": platform.python_version(),
                      "date": time.strftime("%Y-%m-%d %H:%M")}
    if "sizes" in args.parts:
        res["sizes"] = bench_sizes()
    if "sampling" in args.parts:
        res["sampling"] = bench_sampling()
    write_json(path, res)
    print("wrote", path)


if __name__ == "__main__":
    main()
