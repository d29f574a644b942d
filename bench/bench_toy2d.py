"""Quality of DDPM on the 2-D toy sets (chapter 6): ``bench/results/toy2d.json``.

For each data set (moons, swiss roll, 8 Gaussians, checkerboard, the 3 x 3 Gaussian mixture):

1. train the chapter's model (``MLPDenoiser``, T = 1000 linear schedule, the simple eps
   loss of Algorithm 1, EMA) with twice the chapter's steps (3,000; ``--steps``), and time
   it (wall clock and CPU time: on a shared machine the CPU time is the fairer figure);
2. the negative ELBO (``vlb_terms``, Gaussian decoder, sigma_t^2 = beta_t) on 2,000 held-out
   points in nats, with its standard error; where the density is known (gmm, 8 Gaussians,
   checkerboard) the gap to the true NLL, paired per point: mean_i (VLB(x_i) + log p(x_i));
   its expectation is VLB - H[p_data] >= 0;
3. 5,000 samples (Algorithm 2, sigma_t^2 = beta_t) against fresh data: sliced Wasserstein
   SW_2 and the Gaussian-kernel MMD (h = 0.2), each as a ratio to its floor (the same
   distance between two independent draws of the data, ``dmlib.metrics``).

For the Gaussian mixture, the same measurements for the optimal denoiser E[eps | x_t]
(``dmlib.optimal.OptimalDenoiser``): the "perfect model" reference.

Targets (chapter 6, this 2-core CPU): training <= 2 min per set, sample-distance ratio
<= 1.5, VLB gap <= 0.15 nats on the GMM. Run: ``.venv/bin/python bench/bench_toy2d.py``
(about 2 minutes per set on an idle 2-core CPU; ``--sets gmm moons`` for a subset;
results of sets not re-run are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

import dmlib
from dmlib.data import CHECKERBOARD_ENTROPY, default_gmm2d, make_toy, ring_gmm
from dmlib.losses import diffusion_loss, vlb_terms
from dmlib.metrics import sample_distance_report
from dmlib.models import MLPConfig, MLPDenoiser, count_parameters
from dmlib.optimal import OptimalDenoiser
from dmlib.sampling import ddpm_sample
from dmlib.schedules import Schedule
from dmlib.training import TrainConfig, train

from _common import RESULTS, write_json  # noqa: E402  (bench/ is on sys.path)

OUT = RESULTS / "toy2d.json"
SETS = ["moons", "swiss_roll", "eight_gaussians", "checkerboard", "gmm"]

#: The chapter's full-mode recipe, measured here.
T = 1000
MODEL = MLPConfig(hidden=128, depth=3)
TRAIN = dict(steps=3000, batch_size=512, lr=2e-3, ema_decay=0.995, warmup_steps=100)
N_TRAIN, N_HELDOUT, N_SAMPLES = 50_000, 2_000, 5_000
MMD_BANDWIDTH = 0.2


def true_nll(name: str, x: torch.Tensor) -> torch.Tensor | None:
    """-log p_data(x) per point where the density is known, else None."""
    if name == "gmm":
        return -default_gmm2d().log_prob(x)
    if name == "eight_gaussians":
        return -ring_gmm(8, std=0.1).log_prob(x)
    if name == "checkerboard":
        return torch.full((x.shape[0],), CHECKERBOARD_ENTROPY, dtype=torch.float64)
    return None


def measure(name: str, model, sched: Schedule) -> dict:
    x_held = make_toy(name, N_HELDOUT, seed=2)
    t0 = time.perf_counter()
    with torch.no_grad():
        vlb = vlb_terms(model, sched, x_held, variance="beta",
                        generator=torch.Generator().manual_seed(0)).sum(1).double()
    out = {"vlb_nats": vlb.mean().item(), "vlb_se": (vlb.std() / math.sqrt(len(vlb))).item(),
           "vlb_seconds": time.perf_counter() - t0}
    nll = true_nll(name, x_held)
    if nll is not None:
        gap = vlb - nll
        out.update(nll_heldout_nats=nll.mean().item(), gap_nats=gap.mean().item(),
                   gap_se=(gap.std() / math.sqrt(len(gap))).item())
    t0 = time.perf_counter()
    xs = ddpm_sample(model, sched, (N_SAMPLES, 2), variance="beta",
                     generator=torch.Generator().manual_seed(1))
    out["sample_seconds"] = time.perf_counter() - t0
    draw = lambda n, seed: make_toy(name, n, seed=seed)  # noqa: E731
    out["sw2"] = sample_distance_report(xs, draw, "sw")
    out["mmd"] = sample_distance_report(xs, draw, "mmd", bandwidth=MMD_BANDWIDTH)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=SETS, choices=SETS)
    ap.add_argument("--steps", type=int, default=TRAIN["steps"],
                    help="training steps (recorded per set; default: the recipe's)")
    args = ap.parse_args()
    dmlib.seed_everything(0)
    torch.set_num_threads(1)  # as the chapter: tiny models, and robust on a shared CPU
    sched = Schedule.linear(T)
    results = {"machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                           "torch": torch.__version__},
               "recipe": {"T": T, "schedule": "linear", "model": MODEL.__dict__, "train": TRAIN,
                          "n_train": N_TRAIN, "n_heldout": N_HELDOUT, "n_samples": N_SAMPLES,
                          "loss": "simple eps (Algorithm 1)", "vlb_sigma": "beta",
                          "sampler_variance": "beta", "sw": "SW_2, 128 evenly spaced directions",
                          "mmd": f"Gaussian kernel, h = {MMD_BANDWIDTH}, biased (V-statistic)"},
               "targets": {"train_seconds_max": 120, "ratio_max": 1.5, "gmm_gap_nats_max": 0.15},
               "sets": {}}
    if OUT.is_file():  # keep sets not re-run this time
        results["sets"] = json.loads(OUT.read_text()).get("sets", {})
    for name in args.sets:
        x = make_toy(name, N_TRAIN, seed=1)
        model = MLPDenoiser(MODEL)
        t0, c0 = time.perf_counter(), time.process_time()
        res = train(model, lambda m, b, g: diffusion_loss(m, sched, b, generator=g), x,
                    TrainConfig(**{**TRAIN, "steps": args.steps}), progress=False)
        # wall time depends on what else runs on the machine; CPU time (all threads) less so
        row = {"train_seconds": time.perf_counter() - t0,
               "train_cpu_seconds": time.process_time() - c0, "params": count_parameters(model),
               "final_loss": sum(res.history[-200:]) / 200, "steps": args.steps}
        row.update(measure(name, res.ema_model, sched))
        if name == "gmm":
            row["optimal_denoiser"] = measure(name, OptimalDenoiser(default_gmm2d(), sched), sched)
            row["entropy_nats"] = default_gmm2d().entropy(n_mc=200_000)[0]
        elif name == "checkerboard":
            row["entropy_nats"] = CHECKERBOARD_ENTROPY
        elif name == "eight_gaussians":
            row["entropy_nats"] = ring_gmm(8, std=0.1).entropy(n_mc=200_000)[0]
        if OUT.is_file():  # merge with what other runs wrote meanwhile
            results["sets"] = {**json.loads(OUT.read_text()).get("sets", {}), **results["sets"]}
        results["sets"][name] = row
        print(f"{name:16s} train {row['train_seconds']:5.1f}s (cpu {row['train_cpu_seconds']:5.1f}s)  VLB {row['vlb_nats']:.3f}"
              f"+-{row['vlb_se']:.3f}  gap {row.get('gap_nats', float('nan')):.3f}  "
              f"SW ratio {row['sw2']['ratio']:.2f}  MMD ratio {row['mmd']['ratio']:.2f}", flush=True)
        results["date"] = time.strftime("%Y-%m-%d")
        write_json(OUT, results)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
