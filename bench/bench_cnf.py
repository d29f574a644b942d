"""Diffusion as a CNF (chapter 8): exact likelihoods and fast ODE samplers, measured.

Three parts, each writing its own file in ``bench/results/`` (so they can run in parallel):

``--part toy`` -> ``cnf_toy.json``. For the Gaussian mixture, 8 Gaussians and checkerboard:
  train the chapter-6 model with the bench recipe of ``bench_toy2d.py`` (3,000 steps), then on
  2,000 held-out points: the ODE NLL (``dmlib.likelihood.ode_log_likelihood``, exact 2-D trace,
  Heun on a 200-step log-sigma grid, and 100 steps to show the solver error), the negative
  ELBO (``vlb_terms``), both paired with the true -log p(x) (mean gap and standard error);
  and the sliced-W2 ratio of 5,000 samples for DDIM, Heun and DPM-Solver++(2M) at
  NFE in {5, 10, 20, 50, 100} and of 1000-step DDPM. For the mixture also the exact optimal
  denoiser (ODE NLL against the true NLL) and Hutchinson's per-point standard deviation.

``--part mnist-ode`` -> ``cnf_mnist_ode.json``. The shipped U-Net: bits/dim by the ODE
  (uniform dequantization, one Rademacher probe per image, Heun) on ``--n-bits`` test digits,
  and the same 8 digits at half and twice the steps (the solver's error).

``--part mnist`` -> ``cnf_mnist.json``. Bits/dim by the ELBO (discretised decoder) on
  ``--n-elbo`` test digits, with standard errors; then the ODE samplers at NFE 5, 10, 20 (and DDPM
  respaced to 10, 20) on ``--n`` samples from one x_T batch (seed 0), scored by
  ``dmlib.quality``.

``--part mnist-ddpm`` -> ``cnf_mnist_ddpm.json``: 1000-step DDPM on the same seed and n (the
  slow reference: about 1,000 network calls a digit).

Run: ``python bench/bench_cnf.py --part toy`` (about 20 min on the shared 2-core CPU), ``--part
mnist --n 250``, ``--part mnist-ddpm --n 250``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import torch

import dmlib
from dmlib.data import default_gmm2d, make_toy, ring_gmm
from dmlib.likelihood import (bits_per_dim, dequantize, elbo_bits_per_dim, ode_log_likelihood)
from dmlib.losses import diffusion_loss, vlb_terms
from dmlib.metrics import sample_distance_report
from dmlib.models import MLPDenoiser
from dmlib.optimal import OptimalDenoiser
from dmlib.samplers import nfe, steps_for_nfe
from dmlib.sampling import sample
from dmlib.schedules import Schedule
from dmlib.training import TrainConfig, train

from _common import RESULTS, write_json  # noqa: E402  (bench/ is on sys.path)
from bench_toy2d import MODEL, N_HELDOUT, N_TRAIN, TRAIN, true_nll  # noqa: E402

SETS = ["gmm", "eight_gaussians", "checkerboard"]
SAMPLERS = ["ddim", "heun", "dpmpp_2m"]
NFES = [5, 10, 20, 50, 100]
ODE_STEPS = 200
N_SAMPLES = 5000
#: x0_hat is clipped to [-CLIP, CLIP] in every 2-D sampler (the data lie within about +-2):
#: without it the ODE samplers run away with the trained MLPs (see chapter 8, section 5)
CLIP = 3.0


def _mean_se(x: torch.Tensor) -> tuple[float, float]:
    x = x.double()
    return float(x.mean()), float(x.std() / math.sqrt(len(x)))


def _machine() -> dict:
    return {"platform": platform.platform(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}


def toy_likelihoods(name: str, model, sched: Schedule) -> dict:
    x = make_toy(name, N_HELDOUT, seed=2)
    nll_true = true_nll(name, x).double()
    out = {"n": N_HELDOUT, "true_nll": _mean_se(nll_true)}
    for steps in (100, ODE_STEPS):
        t0 = time.perf_counter()
        lp, n_eval = ode_log_likelihood(model, sched, x, steps=steps, return_nfe=True)
        out[f"ode_{steps}"] = {"nll": _mean_se(-lp), "gap": _mean_se(-lp - nll_true),
                               "nfe": n_eval, "seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    with torch.no_grad():
        vlb = vlb_terms(model, sched, x.float(), variance="beta",
                        generator=torch.Generator().manual_seed(0)).sum(1).double()
    out["elbo"] = {"nll": _mean_se(vlb), "gap": _mean_se(vlb - nll_true),
                   "seconds": time.perf_counter() - t0}
    return out


def toy_samplers(name: str, model, sched: Schedule) -> dict:
    xT = torch.randn(N_SAMPLES, 2, generator=torch.Generator().manual_seed(1))
    draw = lambda n, seed: make_toy(name, n, seed=seed)  # noqa: E731
    rows = []
    for s in SAMPLERS:
        for budget in NFES:
            S = steps_for_nfe(s, budget)
            t0 = time.perf_counter()
            xs = sample(model, sched, xT.shape, s, steps=S, x_T=xT, clip_x0=CLIP)
            rows.append({"sampler": s, "steps": S, "nfe": nfe(s, S), "clip_x0": CLIP,
                         "sw_ratio": sample_distance_report(xs, draw, "sw")["ratio"],
                         "seconds": time.perf_counter() - t0})
    t0 = time.perf_counter()
    xs = sample(model, sched, xT.shape, "ddpm", x_T=xT, generator=torch.Generator().manual_seed(2),
                clip_x0=CLIP)
    rows.append({"sampler": "ddpm", "steps": sched.T, "nfe": sched.T, "clip_x0": CLIP,
                 "sw_ratio": sample_distance_report(xs, draw, "sw")["ratio"],
                 "seconds": time.perf_counter() - t0})
    return {"n": N_SAMPLES, "rows": rows}


def part_toy(args) -> None:
    out_path = RESULTS / "cnf_toy.json"
    sched = Schedule.linear(1000)
    res = {"machine": _machine(), "recipe": {"train": TRAIN, "model": MODEL.__dict__,
                                             "n_train": N_TRAIN, "ode_steps": ODE_STEPS,
                                             "ode": "Heun, exact trace, log-sigma grid"},
           "sets": {}}
    if args.samplers_only:  # keep the likelihoods of an earlier run, redo the samplers
        res = json.loads(out_path.read_text())
    for name in args.sets if args.samplers_only else []:
        torch.manual_seed(0)
        r = train(MLPDenoiser(MODEL), lambda m, b, g: diffusion_loss(m, sched, b, generator=g),
                  make_toy(name, N_TRAIN, seed=1), TrainConfig(**TRAIN), progress=False)
        res["sets"].setdefault(name, {})["samplers"] = toy_samplers(name, r.ema_model.eval(), sched)
        print(name, res["sets"][name]["samplers"], flush=True)
        write_json(out_path, res)
    if args.samplers_only:
        return
    gmm = default_gmm2d()
    opt = OptimalDenoiser(gmm, sched)
    x = make_toy("gmm", N_HELDOUT, seed=2).double()
    nll_true = -gmm.log_prob(x)
    res["optimal_gmm"] = {}
    for steps in (20, 50, 100, 200, 400):
        lp = ode_log_likelihood(opt, sched, x, steps=steps)
        res["optimal_gmm"][str(steps)] = {"gap": _mean_se(-lp - nll_true),
                                          "abs_gap": _mean_se((-lp - nll_true).abs())}
    # the 3 x 3 grid mixture is a product of two 1-D mixtures: its Jacobians are diagonal and
    # Hutchinson is exact there; the ring of 8 Gaussians is not
    ring = OptimalDenoiser(ring_gmm(8, std=0.1), sched)
    xr = make_toy("eight_gaussians", 200, seed=2).double()
    lp_h = torch.stack([ode_log_likelihood(ring, sched, xr, steps=50, trace="hutchinson",
                                           generator=torch.Generator().manual_seed(k))
                        for k in range(8)])
    lp_e = ode_log_likelihood(ring, sched, xr, steps=50)
    res["hutchinson_eight_gaussians"] = {"n_points": 200, "n_repeats": 8, "probe": "rademacher",
                             "per_point_std_nats": float(lp_h.std(0).mean()),
                             "bias": _mean_se(lp_h.mean(0) - lp_e)}
    print("optimal:", res["optimal_gmm"], res["hutchinson_eight_gaussians"], flush=True)
    write_json(out_path, res)
    for name in args.sets:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        r = train(MLPDenoiser(MODEL), lambda m, b, g: diffusion_loss(m, sched, b, generator=g),
                  make_toy(name, N_TRAIN, seed=1), TrainConfig(**TRAIN), progress=False)
        model = r.ema_model.eval()
        row = {"train_seconds": time.perf_counter() - t0}
        row.update(toy_likelihoods(name, model, sched))
        print(name, {k: row[k] for k in row if k != "samplers"}, flush=True)
        row["samplers"] = toy_samplers(name, model, sched)
        res["sets"][name] = row
        write_json(out_path, res)
    print(f"wrote {out_path}")


def mnist_ode_bits(args, model, spec) -> dict:
    from dmlib.data.mnist import load_mnist

    x, _ = load_mnist("test", limit=args.n_bits)
    g = torch.Generator().manual_seed(0)
    z = dequantize(x, g)
    D = x[0].numel()
    out = {"n": args.n_bits, "D": D}
    lp_all = []
    t0 = time.perf_counter()
    for i in range(0, len(z), 16):
        lp_all.append(ode_log_likelihood(model, spec, z[i:i + 16], steps=args.ode_steps,
                                         trace="hutchinson", generator=g))
    lp = torch.cat(lp_all)
    out["ode"] = {"bits_per_dim": _mean_se(bits_per_dim(lp, D)), "steps": args.ode_steps,
                  "trace": "hutchinson, 1 Rademacher probe per image",
                  "seconds": time.perf_counter() - t0}
    print("ODE bits/dim", out["ode"], flush=True)
    conv = {}
    for steps in (args.ode_steps // 2, args.ode_steps, 2 * args.ode_steps):
        if steps >= spec.T:
            continue
        lp8 = ode_log_likelihood(model, spec, z[:8], steps=steps, trace="hutchinson",
                                 generator=torch.Generator().manual_seed(5))
        conv[str(steps)] = _mean_se(bits_per_dim(lp8, D))
    out["ode_solver_check_8_digits_same_probe"] = conv
    print("solver check", conv, flush=True)
    return out


def mnist_elbo_bits(args, model, spec) -> dict:
    from dmlib.data.mnist import load_mnist

    x, _ = load_mnist("test", limit=args.n_bits)
    D = x[0].numel()
    out = {}
    t0 = time.perf_counter()
    n_elbo = min(args.n_bits, args.n_elbo)
    with torch.no_grad():
        terms = vlb_terms(model, spec, x[:n_elbo], decoder="discretized", max_batch=512,
                          generator=torch.Generator().manual_seed(0))
    nll = terms.sum(1).double()
    out["elbo"] = {"n": n_elbo, "bits_per_dim": _mean_se(elbo_bits_per_dim(nll, D)),
                   "decoder": "discretized", "seconds": time.perf_counter() - t0,
                   "prior_bits_per_dim": float(elbo_bits_per_dim(terms[:, 0].double(), D).mean()),
                   "decoder_L0_bits_per_dim": float(elbo_bits_per_dim(terms[:, 1].double(), D).mean())}
    print("ELBO bits/dim", out["elbo"], flush=True)
    return out


def _score(model, spec, sampler, steps, n, seed=0) -> dict:
    from dmlib.quality import score_images
    from dmlib.sampling import sample_images

    t0 = time.perf_counter()
    xs = sample_images(model, spec, n, steps=steps, sampler=sampler, batch_size=n,
                       generator=torch.Generator().manual_seed(seed))
    rep = score_images(xs)
    return {"sampler": sampler, "steps": steps, "n": n,
            "nfe": nfe(sampler, steps or spec.T, spec.make_schedule()),
            "fd": rep.fd, "confident": rep.confident, "entropy_ratio": rep.entropy_ratio,
            "seconds": time.perf_counter() - t0}


def part_mnist(args) -> None:
    from dmlib.pretrained import load_pretrained_diffusion

    out_path = RESULTS / "cnf_mnist.json"
    model, spec = load_pretrained_diffusion("mnist_unet_eps")
    if args.only:  # redo some samplers' rows in their own file (merged by hand)
        out_path = RESULTS / f"cnf_mnist_{'_'.join(args.only)}.json"
    res = {"machine": _machine(), "spec": spec.to_dict(), "seed": 0}
    if not args.only:
        res["bits"] = mnist_elbo_bits(args, model, spec)
        write_json(out_path, res)
    rows = []
    for budget in args.nfes:
        for s in args.only or SAMPLERS + ["ddpm"]:
            if s == "ddpm" and budget not in (10, 20):
                continue
            rows.append(_score(model, spec, s, steps_for_nfe(s, budget), args.n))
            print(rows[-1], flush=True)
            res["samplers"] = rows
            write_json(out_path, res)
    print(f"wrote {out_path}")


def part_mnist_ode(args) -> None:
    from dmlib.pretrained import load_pretrained_diffusion

    model, spec = load_pretrained_diffusion("mnist_unet_eps")
    write_json(RESULTS / "cnf_mnist_ode.json",
               {"machine": _machine(), "ode": mnist_ode_bits(args, model, spec)})


def part_mnist_ddpm(args) -> None:
    from dmlib.pretrained import load_pretrained_diffusion

    model, spec = load_pretrained_diffusion("mnist_unet_eps")
    row = _score(model, spec, "ddpm", None, args.n)
    print(row, flush=True)
    write_json(RESULTS / "cnf_mnist_ddpm.json", {"machine": _machine(), "ddpm_1000": row})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["toy", "mnist", "mnist-ode", "mnist-ddpm"], required=True)
    ap.add_argument("--sets", nargs="+", default=SETS, choices=SETS)
    ap.add_argument("--n", type=int, default=250, help="MNIST samples per sampler setting")
    ap.add_argument("--n-bits", type=int, default=64, help="test digits for the ODE bits/dim")
    ap.add_argument("--n-elbo", type=int, default=32, help="test digits for the ELBO bits/dim")
    ap.add_argument("--ode-steps", type=int, default=50)
    ap.add_argument("--nfes", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="+", help="mnist: only these samplers (no ELBO)")
    ap.add_argument("--samplers-only", action="store_true",
                    help="toy: retrain and redo only the sampler rows, keep the likelihoods")
    args = ap.parse_args()
    dmlib.seed_everything(0)
    torch.set_num_threads(args.threads)
    {"toy": part_toy, "mnist": part_mnist, "mnist-ode": part_mnist_ode,
     "mnist-ddpm": part_mnist_ddpm}[args.part](args)


if __name__ == "__main__":
    main()
