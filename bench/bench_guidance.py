"""Guidance (chapter 9), measured. Writes ``bench/results/guidance.json`` (each part updates
its own key, so the parts can run separately).

``--part toy``: the 2-D overlapping labelled mixture (``overlapping_mixture``), class 0, with
  the EXACT conditional and unconditional eps combined by CFG (equal to classifier guidance
  with the exact classifier). For each w: ``--n-toy`` samples by DDPM (1000 steps) and DDIM
  (200 steps) from one x_T batch; the sliced-W2 distance to draws of the sharpened target
  p_w = p(x|y)^(1+w) p(x)^(-w) (normalised on a 400 x 400 grid), its floor (two draws of
  p_w) and their ratio; and the relative difference between the guided score and the score
  of the noised p_w at t = 200 on 1,000 points of q_t.

``--part toy-null``: the spread of that ratio when nothing differs: exact DDPM samples at
  w = 0 against p(x | y) for ``--seeds`` seeds (the sampling noise of the ratio on this
  two-mode class: the share of each mode fluctuates, and sliced W2 sees it).

``--part mnist``: the class-conditional U-Net (``--checkpoint``, default the shipped
  ``mnist_cond_unet``) at w in ``--ws``: ``--n`` samples per w (labels 0..9 in turn), sampler
  ``--sampler`` with ``--steps`` steps, x_T seed 0; scored by the shipped classifier
  (``dmlib.class_quality``: accuracy, FD to the 10,000 test digits, confident share,
  within-class diversity; confusion matrix at w = 0). Also the real digits' diversity (100 per
  class) and the FD of the unconditional shipped U-Net with the same n, sampler and steps.

``--part table``: print the README's markdown tables from the JSON.

Run: ``python bench/bench_guidance.py --part toy`` (a few minutes) and
``python bench/bench_guidance.py --part mnist --n 1000`` (1-core CPU: about 1 s per image
and w > 0 at 20 steps).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, write_json  # noqa: E402

from dmlib.checkpoint import load_diffusion_model, sha256_file  # noqa: E402
from dmlib.class_quality import real_class_diversity, score_conditional  # noqa: E402
from dmlib.guidance import GuidedModel  # noqa: E402
from dmlib.labelled_mixture import (OptimalConditionalDenoiser, noised_grid_score,  # noqa: E402
                                    overlapping_mixture, sample_grid, sharpened_grid)
from dmlib.metrics import sliced_wasserstein  # noqa: E402
from dmlib.pretrained import load_pretrained, load_pretrained_diffusion, pretrained_path  # noqa: E402
from dmlib.quality import score_images  # noqa: E402
from dmlib.sampling import sample, sample_images  # noqa: E402
from dmlib.schedules import Schedule  # noqa: E402

OUT = RESULTS / "guidance.json"
WS = [0.0, 0.5, 1.0, 2.0, 3.0, 5.0]


def _update(key: str, value: dict) -> None:
    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    data[key] = value
    data["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    write_json(OUT, data)


def toy_row(w: float, n: int, sched: Schedule, lm, seed: int = 0) -> dict:
    """Guided (DDPM and DDIM) vs sharpened target distances, and the field difference, at w."""
    exact = OptimalConditionalDenoiser(lm, sched)
    model = GuidedModel(exact, torch.zeros(n, dtype=torch.long), w, lm.num_classes)
    xT = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ddpm = sample(model, sched, (n, 2), "ddpm", x_T=xT, generator=torch.Generator().manual_seed(seed + 1))
    ddim = sample(model, sched, (n, 2), "ddim", steps=200, x_T=xT)
    grid = sharpened_grid(lm, 0, w, lim=4.5, n=400)
    a = sample_grid(*grid, n, torch.Generator().manual_seed(1001)).float()
    b = sample_grid(*grid, n, torch.Generator().manual_seed(1002)).float()
    floor = float(sliced_wasserstein(b, a))
    d_ddpm, d_ddim = float(sliced_wasserstein(ddpm.float(), a)), float(sliced_wasserstein(ddim.float(), a))
    ab = float(sched.alpha_bar[200])
    q = lm.noised(ab)
    x, _ = q.sample(1000, generator=seed + 2, dtype=torch.float64)
    g_guided = (1 + w) * q.score(x, torch.zeros(1000, dtype=torch.long)) - w * q.score(x)
    g_sharp = noised_grid_score(grid[0], grid[1], ab, x)
    rel = float((g_guided - g_sharp).norm(dim=1).mean() / g_sharp.norm(dim=1).mean())
    return {"w": w, "n": n, "sw_ddpm": d_ddpm, "sw_ddim": d_ddim, "sw_floor": floor,
            "ratio_ddpm": d_ddpm / floor, "ratio_ddim": d_ddim / floor,
            "field_rel_diff_t200": rel}


def run_toy(args: argparse.Namespace) -> None:
    sched, lm = Schedule.linear(1000), overlapping_mixture()
    t0 = time.perf_counter()
    rows = []
    for w in args.ws:
        rows.append(toy_row(w, args.n_toy, sched, lm))
        print(json.dumps(rows[-1]))
    _update("toy", {"data": "overlapping_mixture(), class 0", "schedule": "linear, T = 1000",
                    "samplers": "DDPM 1000 steps; DDIM 200 steps (eta = 0)", "rows": rows,
                    "seconds": round(time.perf_counter() - t0, 1)})


def run_toy_null(args: argparse.Namespace) -> None:
    sched, lm = Schedule.linear(1000), overlapping_mixture()
    exact = OptimalConditionalDenoiser(lm, sched)
    n, rows = args.n_toy, []
    grid = sharpened_grid(lm, 0, 0.0, lim=4.5, n=400)
    a = sample_grid(*grid, n, torch.Generator().manual_seed(1001)).float()
    b = sample_grid(*grid, n, torch.Generator().manual_seed(1002)).float()
    floor = float(sliced_wasserstein(b, a))
    for seed in args.seeds:
        model = GuidedModel(exact, torch.zeros(n, dtype=torch.long), 0.0, lm.num_classes)
        x = sample(model, sched, (n, 2), "ddpm", generator=torch.Generator().manual_seed(100 + seed),
                   dtype=torch.float64)
        rows.append({"seed": seed, "ratio_ddpm": float(sliced_wasserstein(x.float(), a)) / floor})
        print(json.dumps(rows[-1]))
    _update("toy_null", {"w": 0.0, "n": n, "rows": rows})


def _load(checkpoint: str | None):
    if checkpoint:
        model, spec = load_diffusion_model(checkpoint)
        return model.eval(), spec, sha256_file(checkpoint)
    model, spec = load_pretrained_diffusion("mnist_cond_unet")
    return model, spec, sha256_file(pretrained_path("mnist_cond_unet"))


def run_mnist(args: argparse.Namespace) -> None:
    model, spec, digest = _load(args.checkpoint)
    judge = load_pretrained("mnist_classifier")
    y = torch.arange(args.n) % 10
    rows, t0 = [], time.perf_counter()
    for w in args.ws:
        t1 = time.perf_counter()
        imgs = sample_images(model, spec, args.n, steps=args.steps, sampler=args.sampler,
                             generator=torch.Generator().manual_seed(0), y=y, guidance=w,
                             batch_size=args.batch_size)
        r = score_conditional(imgs, y, judge)
        r.update(w=w, seconds=round(time.perf_counter() - t1, 1))
        if w != 0.0:
            r.pop("confusion")
        rows.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "confusion"}))
    out = {"checkpoint": args.checkpoint or "data/checkpoints/mnist_cond_unet.pt",
           "checkpoint_sha256": digest, "n_per_w": args.n, "sampler": args.sampler,
           "steps": args.steps, "x_T_seed": 0, "rows": rows,
           "real_diversity": real_class_diversity(judge, per_class=100)}
    if not args.skip_uncond:
        unet, uspec = load_pretrained_diffusion("mnist_unet_eps")
        imgs = sample_images(unet, uspec, args.n, steps=args.steps, sampler=args.sampler,
                             generator=torch.Generator().manual_seed(0), batch_size=args.batch_size)
        out["uncond_fd"] = score_images(imgs, judge).fd
    out["seconds"] = round(time.perf_counter() - t0, 1)
    _update("mnist", out)


def table() -> str:
    """The README's tables (markdown) from guidance.json."""
    data = json.loads(OUT.read_text())
    lines = []
    if "mnist" in data:
        m = data["mnist"]
        lines += [f"MNIST, `{m['checkpoint']}` (sha256 {m['checkpoint_sha256'][:12]}), n = {m['n_per_w']} "
                  f"per w, {m['sampler']} with {m['steps']} steps, x_T seed 0:", "",
                  "| w | accuracy | FD | confident | within-class diversity |", "|---|---|---|---|---|"]
        for r in m["rows"]:
            lines.append(f"| {r['w']:g} | {100 * r['accuracy']:.1f}% | {r['fd']:.2f} | "
                         f"{100 * r['confident']:.1f}% | {r['diversity']:.2f} |")
        lines += ["", f"Real test digits' within-class diversity: {m['real_diversity']:.2f}."]
        if "uncond_fd" in m:
            lines.append(f"Unconditional shipped U-Net, same n / sampler / steps: FD {m['uncond_fd']:.2f}.")
        lines.append("")
    if "toy" in data:
        lines += ["2-D, exact guided samples vs the sharpened target p_w (sliced W2 / its floor):", "",
                  "| w | ratio, DDPM 1000 | ratio, DDIM 200 | guided vs noised-p_w score, t = 200 |",
                  "|---|---|---|---|"]
        for r in data["toy"]["rows"]:
            lines.append(f"| {r['w']:g} | {r['ratio_ddpm']:.2f} | {r['ratio_ddim']:.2f} | "
                         f"{100 * r['field_rel_diff_t200']:.1f}% |")
    if "toy_null" in data:
        rs = [r["ratio_ddpm"] for r in data["toy_null"]["rows"]]
        lines += ["", f"The ratio's own spread when nothing differs (exact DDPM at w = 0 against p(x | y), "
                  f"{len(rs)} seeds, n = {data['toy_null']['n']}): " + ", ".join(f"{r:.2f}" for r in rs) + "."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["toy", "toy-null", "mnist", "table"], required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=1000, help="MNIST samples per w")
    ap.add_argument("--n-toy", type=int, default=5000, help="2-D samples per w")
    ap.add_argument("--ws", type=float, nargs="+", default=WS)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--checkpoint", default=None, help="a conditional model's checkpoint "
                    "(default: the shipped mnist_cond_unet)")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--skip-uncond", action="store_true", help="skip the unconditional FD")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "table":
        print(table())
    elif args.part == "toy":
        run_toy(args)
    elif args.part == "toy-null":
        run_toy_null(args)
    else:
        run_mnist(args)


if __name__ == "__main__":
    main()
