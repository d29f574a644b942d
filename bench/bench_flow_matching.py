"""Flow matching vs DDPM on the five 2-D sets (chapter 10), side by side in one run.

For each set of ``dmlib.data.make_toy``: the chapter-6/8 network (``MLPDenoiser`` 128 x 3) and
recipe (batch 512, lr 2e-3, EMA 0.995, warm-up 100), the same number of optimizer steps for

* **DDPM**: the simple eps loss on the linear schedule, T = 1000; sampled with the best of
  chapter 8's ODE samplers (DDIM, Heun, DPM-Solver++(2M), x0_hat clipped to [-3, 3]) at each NFE;
* **flow matching**: ``dmlib.flow_matching.fm_loss`` (straight path, T = 1000 time levels);
  sampled with Euler (NFE steps) and Heun (NFE / 2 steps);
* **reflow**: the flow-matching model fine-tuned for ``--reflow-steps`` on 10,000 pairs
  (x_0, eps) drawn by its own ODE (Heun, 25 steps); sampled with Euler.

Training CPU-seconds are measured with ``time.process_time`` (one thread) for every model;
DDPM and flow matching train the same steps, which costs the same CPU time to within a few %
(printed and stored). Reflow's total is flow matching + pair generation + fine-tuning.
Quality: the sliced-W2 ratio to the floor (``dmlib.metrics.sample_distance_report``) of
4,000 samples from one fixed noise batch at NFE 1, 2, 5, 10, 20; straightness
(``dmlib.flow_matching.straightness``, 100 Euler steps, 1,000 paths) of flow matching and
reflow. On the mixture also the NLL gap (ODE likelihood, ``dmlib.likelihood``, Heun 100 steps
on the log-sigma grid, exact trace) against the true density, on 1,000 held-out points.

Run: ``OMP_NUM_THREADS=1 python bench/bench_flow_matching.py`` (about 8 min on one core)
-> ``bench/results/flow_matching.json``.

``--part mnist`` -> ``bench/results/flow_matching_mnist.json``: the chapter-7 U-Net
(``dmlib.train.MNIST_UNET``) trained ``--mnist-steps`` steps (batch 64, lr 2e-3, EMA 0.995 with
warm-up) as DDPM (eps, cosine, T = 1000, the ``cpu`` preset's diffusion) and as flow matching,
training CPU-seconds measured; ``--n`` samples from one noise batch at NFE 10 and 20: DDPM
with DPM-Solver++(2M) (chapter 8's best on MNIST) and DDIM, x0_hat clipped to [-1, 1];
flow matching with Euler and Heun (clamped to [-1, 1]); scored by ``dmlib.quality``
(FD to the test set, confident share).
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time

import torch

from dmlib.data import default_gmm2d, make_toy
from dmlib.flow_matching import (VelocityAsEps, fm_loss, fm_sample, reflow_pairs,
                                 straight_schedule, straightness)
from dmlib.likelihood import ode_log_likelihood
from dmlib.losses import diffusion_loss
from dmlib.metrics import sample_distance_report
from dmlib.models import MLPConfig, MLPDenoiser
from dmlib.samplers import nfe, steps_for_nfe
from dmlib.sampling import sample
from dmlib.schedules import Schedule
from dmlib.training import TrainConfig, train

from _common import RESULTS, write_json  # noqa: E402  (bench/ is on sys.path)

OUT = RESULTS / "flow_matching.json"
SETS = ["moons", "swiss_roll", "eight_gaussians", "checkerboard", "gmm"]
MODEL = MLPConfig(hidden=128, depth=3)
RECIPE = dict(batch_size=512, lr=2e-3, ema_decay=0.995, warmup_steps=100)
NFES = [1, 2, 5, 10, 20]
N_TRAIN, N_SAMPLES, N_PAIRS, N_NLL = 50_000, 4_000, 10_000, 1_000
CLIP = 3.0


def timed_train(loss_fn, data, steps: int, init=None):
    torch.manual_seed(0)
    model = MLPDenoiser(MODEL) if init is None else copy.deepcopy(init).train()
    c0 = time.process_time()
    res = train(model, loss_fn, data, TrainConfig(steps=steps, **RECIPE), progress=False)
    return res.ema_model.eval(), time.process_time() - c0


def sw(xs, name):
    return sample_distance_report(xs, lambda n, seed: make_toy(name, n, seed=seed), "sw")["ratio"]


def ddpm_best(model, sched, x1, name, budget):
    best = None
    for s in ("ddim", "heun", "dpmpp_2m"):
        S = steps_for_nfe(s, budget)
        r = sw(sample(model, sched, x1.shape, s, steps=S, x_T=x1, clip_x0=CLIP), name)
        if best is None or r < best[0]:
            best = (r, s, nfe(s, S))
    return {"ratio": best[0], "sampler": best[1], "nfe": best[2]}


def one_set(name: str, steps: int, reflow_steps: int) -> dict:  # long: one set, three models
    data = make_toy(name, N_TRAIN, seed=1)
    lin = Schedule.linear(1000)
    ddpm, cpu_d = timed_train(lambda m, b, g: diffusion_loss(m, lin, b, generator=g), data, steps)
    fm, cpu_f = timed_train(lambda m, b, g: fm_loss(m, b, 1000, generator=g), data, steps)
    c0 = time.process_time()
    eps = torch.randn(N_PAIRS, 2, generator=torch.Generator().manual_seed(3))
    pairs = reflow_pairs(fm, eps, steps=25, method="heun")
    cpu_pairs = time.process_time() - c0
    rf, cpu_r = timed_train(lambda m, b, g: fm_loss(m, b, 1000, generator=g), pairs,
                            reflow_steps, init=fm)
    x1 = torch.randn(N_SAMPLES, 2, generator=torch.Generator().manual_seed(1))
    rows = []
    for n in NFES:
        row = {"nfe": n, "ddpm_best": ddpm_best(ddpm, lin, x1, name, n),
               "fm_euler": sw(fm_sample(fm, x1, n, method="euler"), name),
               "reflow_euler": sw(fm_sample(rf, x1, n, method="euler"), name)}
        row["fm_heun"] = sw(fm_sample(fm, x1, n // 2, method="heun"), name) if n >= 2 else None
        rows.append(row)
        print(f"{name:16s} NFE {n:2d}: DDPM best {row['ddpm_best']['ratio']:6.2f} "
              f"({row['ddpm_best']['sampler']}), FM Euler {row['fm_euler']:6.2f}, FM Heun "
              f"{row['fm_heun'] or float('nan'):6.2f}, reflow Euler {row['reflow_euler']:6.2f}", flush=True)
    x1s = x1[:1000]
    out = {"cpu_s": {"ddpm": cpu_d, "fm": cpu_f, "reflow_pairs": cpu_pairs, "reflow_finetune": cpu_r,
                     "reflow_total": cpu_f + cpu_pairs + cpu_r},
           "rows": rows,
           "straightness": {"fm": straightness(fm_sample(fm, x1s, 100, return_path=True)),
                            "reflow": straightness(fm_sample(rf, x1s, 100, return_path=True))}}
    if name == "gmm":
        out["nll"] = nll_gaps(ddpm, fm, rf, lin)
    print(f"{name:16s} CPU s: DDPM {cpu_d:.0f}, FM {cpu_f:.0f}, reflow +{cpu_pairs + cpu_r:.0f}; "
          f"straightness FM {out['straightness']['fm']:.3f} -> reflow {out['straightness']['reflow']:.3f}",
          flush=True)
    return out


def nll_gaps(ddpm, fm, rf, lin) -> dict:
    gmm = default_gmm2d()
    x = make_toy("gmm", N_NLL, seed=2)
    true = -gmm.log_prob(x.double())
    sch = straight_schedule(1000)
    out = {}
    for key, model, spec in (("ddpm", ddpm, lin), ("fm", VelocityAsEps(fm, sch), sch),
                             ("reflow", VelocityAsEps(rf, sch), sch)):
        gap = -ode_log_likelihood(model, spec, x, steps=100) - true
        out[key] = {"gap": float(gap.mean()), "se": float(gap.std() / math.sqrt(len(gap)))}
        print(f"gmm NLL gap {key:7s}: {out[key]['gap']:+.3f} +- {out[key]['se']:.3f} nats", flush=True)
    out["true_nll"] = float(true.mean())
    return out


def mnist_race(steps: int, n: int) -> dict:  # long: two trainings, four samplers, one table
    from dmlib.data.mnist import load_mnist
    from dmlib.models import UNet
    from dmlib.quality import score_images
    from dmlib.spec import DiffusionSpec
    from dmlib.train import MNIST_UNET

    x, _ = load_mnist("train")
    spec = DiffusionSpec("cosine", 1000, "eps")
    cfg = dict(steps=steps, batch_size=64, lr=2e-3, warmup_steps=50, ema_decay=0.995,
               ema_warmup=True, log_every=50)
    out = {"config": {**cfg, "n": n, "model": "MNIST_UNET (0.72M)", "threads": 1}, "rows": []}
    models = {}
    for key, loss_fn in (("ddpm", lambda m, b, g: diffusion_loss(m, spec, b, generator=g)),
                         ("fm", lambda m, b, g: fm_loss(m, b, 1000, generator=g))):
        torch.manual_seed(0)
        c0 = time.process_time()
        res = train(UNet(MNIST_UNET), loss_fn, x, TrainConfig(**cfg), progress=False)
        out["config"][f"cpu_s_{key}"] = time.process_time() - c0
        models[key] = res.ema_model.eval()
        print(f"MNIST {key}: {steps} steps, {out['config'][f'cpu_s_{key}']:.0f} CPU s", flush=True)
    xT = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for budget in (10, 20):
        runs = {"ddpm dpmpp_2m": sample(models["ddpm"], spec, xT.shape, "dpmpp_2m", steps=budget,
                                        x_T=xT, clip_x0=1.0),
                "ddpm ddim": sample(models["ddpm"], spec, xT.shape, "ddim", steps=budget, x_T=xT,
                                    clip_x0=1.0),
                "fm euler": fm_sample(models["fm"], xT, budget, method="euler"),
                "fm heun": fm_sample(models["fm"], xT, budget // 2, method="heun")}
        for name, imgs in runs.items():
            q = score_images(imgs.clamp(-1, 1))
            out["rows"].append({"setting": name, "nfe": budget, "fd": q.fd, "confident": q.confident,
                                "entropy": q.entropy})
            print(f"MNIST NFE {budget:2d} {name:14s}: FD {q.fd:7.2f}, confident {100 * q.confident:5.1f}%",
                  flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["toy", "mnist"], default="toy")
    p.add_argument("--mnist-steps", type=int, default=500)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--reflow-steps", type=int, default=1000)
    p.add_argument("--sets", nargs="*", default=SETS)
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    if args.part == "mnist":
        res = mnist_race(args.mnist_steps, args.n)
        res["wall_s"] = time.time() - t0
        write_json(RESULTS / "flow_matching_mnist.json", res)
        print(f"wrote flow_matching_mnist.json in {res['wall_s']:.0f} s")
        return
    result = {"config": {"steps": args.steps, "reflow_steps": args.reflow_steps, "model": "MLP 128 x 3",
                         **RECIPE, "n_samples": N_SAMPLES, "n_pairs": N_PAIRS, "clip_x0_ddpm": CLIP,
                         "threads": 1, "machine": platform.processor() or platform.machine()},
              "sets": {}}
    for name in args.sets:
        result["sets"][name] = one_set(name, args.steps, args.reflow_steps)
        write_json(OUT, result)
    result["wall_s"] = time.time() - t0
    write_json(OUT, result)
    print(f"wrote {OUT} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
