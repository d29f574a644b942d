"""Chapter 5's training comparison, full setting: one MLP trained on each target.

The same experiment as section 4 of ``chapters/05_three_targets`` (same data, network,
optimiser, seeds): ``MLPDenoiser`` (width 128, 3 blocks) on 20 000 points of the 3x3
Gaussian mixture, linear schedule with T = 100, 3000 AdamW steps of batch 256, for each
prediction type (eps, x0, mu, v) and each weighting (simple, ELBO; sigma_t^2 = beta_tilde_t).
For each run it records, on 2000 held-out points: the NLL bound (nats per point, from
``vlb_terms``), the ELBO terms and the own-target error per t in 10 bins, the mean
log-density of 2000 samples under the true mixture, and the training time (wall and
process CPU seconds). Writes ``bench/results/targets.json``.

Run: ``.venv/bin/python bench/bench_targets.py`` (``DMLIB_QUICK=1`` for a smoke test).
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch

import dmlib
from dmlib import targets as tg
from dmlib.data import default_gmm2d, make_toy
from dmlib.losses import diffusion_loss, vlb_terms
from dmlib.models import MLPConfig, MLPDenoiser
from dmlib.sampling import ddpm_sample
from dmlib.schedules import Schedule
from dmlib.training import TrainConfig, train

from _common import RESULTS, write_json  # noqa: E402  (bench/ is on sys.path)

OUT = RESULTS / "targets.json"
BINS = 10


def binned(per_t: torch.Tensor) -> list[float]:
    """Mean over each of BINS equal bins of t = 1..T (per_t has one entry per t)."""
    return [float(f"{v:.4g}") for v in per_t.reshape(BINS, -1).mean(1).tolist()]


def main() -> None:
    dmlib.seed_everything(0)
    torch.set_num_threads(1)  # a tiny MLP: one thread is fastest (as in the chapter)
    T = 100
    sched = Schedule.linear(T)
    x_train = make_toy("gmm", 20_000, seed=0)
    x_test = make_toy("gmm", dmlib.quick(500, 2000), seed=1)
    steps = dmlib.quick(100, 3000)
    n_samples = dmlib.quick(500, 2000)
    gmm = default_gmm2d()
    true_nll = -gmm.log_prob(x_test).mean().item()
    runs = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for w in ("simple", "elbo"):
        for p in ("eps", "x0", "mu", "v"):
            torch.manual_seed(0)
            model = MLPDenoiser(MLPConfig(dim=2, hidden=128, depth=3))
            cfg = TrainConfig(steps=steps, batch_size=256, lr=2e-3, warmup_steps=100,
                              ema_decay=0.995, seed=0, device="cpu")
            loss_fn = (lambda p_, w_: lambda m, x0, g: diffusion_loss(
                m, sched, x0, prediction_type=p_, weighting=w_, generator=g,
                variance="beta_tilde"))(p, w)
            c0 = time.process_time()
            res = train(model, loss_fn, x_train, cfg, progress=False)
            cpu_train = time.process_time() - c0
            m = res.ema_model
            with torch.no_grad():
                err = tg.error_per_t(m, sched, x_test, p, generator=torch.Generator().manual_seed(5))
                terms = vlb_terms(m, sched, x_test, p, variance="beta_tilde",
                                  generator=torch.Generator().manual_seed(6))
            samples = ddpm_sample(m, sched, (n_samples, 2), prediction_type=p,
                                  variance="beta_tilde", generator=torch.Generator().manual_seed(7))
            row = {"prediction_type": p, "weighting": w,
                   "nll_bound_nats": round(terms.sum(1).mean().item(), 4),
                   "sample_mean_log_p_data": round(
                       gmm.log_prob(samples).clamp(min=-50).mean().item(), 4),
                   "final_train_loss": float(f"{np.mean(res.history[-100:]):.4g}"),
                   "train_wall_s": round(res.seconds, 1), "train_cpu_s": round(cpu_train, 1),
                   "own_error_per_t_binned": binned(err[1:]),
                   "elbo_term_per_t_binned_nats": binned(terms.mean(0)[1:]),
                   "prior_term_nats": round(terms[:, 0].mean().item(), 6)}
            runs.append(row)
            print(f"{p:3s} {w:6s}: NLL bound {row['nll_bound_nats']:9.3f} nats, samples' mean "
                  f"log p_data {row['sample_mean_log_p_data']:7.3f}, train {row['train_wall_s']} s "
                  f"wall / {row['train_cpu_s']} s CPU", flush=True)
    result = {
        "experiment": "chapter 5 section 4: same MLP trained on each target and weighting",
        "mode": "quick" if dmlib.QUICK else "full",
        "setting": {"data": "gmm (3x3 grid)", "n_train": 20_000, "n_test": x_test.shape[0],
                    "schedule": "linear", "T": T, "steps": steps, "batch_size": 256, "lr": 2e-3,
                    "ema_decay": 0.995, "model": "MLPDenoiser(hidden=128, depth=3)",
                    "sigma": "beta_tilde", "n_samples": n_samples, "bins": BINS},
        "data_true_nll_nats": round(true_nll, 4),
        "runs": runs,
        "total_wall_s": round(time.perf_counter() - wall0, 1),
        "total_cpu_s": round(time.process_time() - cpu0, 1),
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
    write_json(OUT, result)
    print(f"data's true NLL {true_nll:.3f} nats; wrote {OUT}")


if __name__ == "__main__":
    main()
