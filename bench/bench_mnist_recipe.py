"""Which MNIST recipe changes buy quality per CPU-second (issue 17): ``bench/results/mnist_recipe.json``.

Every variant changes ONE thing of the ``cpu`` preset (chapter 7), trains for the same
wall-clock budget on the same threads, samples the same number of digits with the same
sampler and seed, and is scored by the course's judge (``dmlib.quality``: FD to the test
set, confident share, class entropy). Parts (``--parts``):

* ``throughput``: training images/s of the course U-Net on this CPU for the throughput tricks
  (channels_last, bfloat16 autocast, 1 vs 2 threads, ``torch.compile`` where a C++ compiler
  is found). Measured, not assumed: a trick only earns a quality run if it is faster.
* ``samplers``: the baseline run's EMA model (seed 0) sampled by each ODE sampler of
  chapter 8 and by ancestral DDPM at about 20 and 50 network calls (NFE, counted).
* ``table``: print the README's markdown tables from the results file.
* ``quality``: the variants in ``VARIANTS`` (``--variants`` picks some; ``--seeds 0 1``
  repeats them). The number of steps of each run is fixed before it starts, so that a cosine
  learning-rate decay ends at the budget: the baseline's from a 20-step probe, every other
  variant's from its cost per step relative to the baseline's, timed in turns so that load
  from other jobs cancels (a probe of its own under different load would not be fair).

Resumable: a finished (variant, seed) is skipped unless ``--force``; an interrupted run
continues from its checkpoint in ``runs/recipe/``. Results are written after every run,
atomically and under a file lock, so two processes (``--threads 1`` each, disjoint
``--variants``) can share the two cores and the results file. On an idle 2-core machine one quality run takes the budget plus about 3 minutes
of sampling and scoring (2,000 digits, DPM-Solver++(2M), 20 steps).

Run: ``.venv/bin/python bench/bench_mnist_recipe.py --parts throughput quality --budget-minutes 10``
(all 14 variants: about 3 hours; ``--variants baseline min_snr`` for two).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import math
import platform
import shutil
import time
from pathlib import Path

import torch

from _common import RESULTS, timeit, write_json
from dmlib.losses import diffusion_loss
from dmlib.models import UNet
from dmlib.quality import score_images
from dmlib.sampling import sample_images
from dmlib.train import MNIST_UNET, get_preset, train_mnist

OUT = RESULTS / "mnist_recipe.json"
RUNS = Path("runs/recipe")

#: The recipe every variant changes one thing of: the ``cpu`` preset as it was when the bench
#: was run (eps target, float32). The preset has since taken the bench's winners.
BASE = {"prediction_type": "eps", "cpu_bf16": False, "steps": 2000}


def base_preset(**over):
    """The bench's baseline recipe with ``over`` changed."""
    return get_preset("cpu", **{**BASE, **over})


#: name -> (what changes, Preset overrides). Each changes one thing of the cpu preset.
VARIANTS: dict[str, tuple[str, dict]] = {
    "baseline": ("the old cpu preset (eps, lr 2e-3 constant, batch 64, EMA 0.995 with warm-up)", {}),
    "min_snr": ("Min-SNR-5 loss weighting (Hang et al. 2023)", {"weighting": "min_snr"}),
    "v_target": ("v target instead of eps", {"prediction_type": "v"}),
    "cosine_lr": ("cosine learning-rate decay to 0 over the budget", {"lr_decay": "cosine"}),
    "lr_4e-3": ("peak learning rate 4e-3 instead of 2e-3", {"lr": 4e-3}),
    "lr_4e-3_cosine": ("peak 4e-3 with cosine decay", {"lr": 4e-3, "lr_decay": "cosine"}),
    "ema_0.999": ("EMA decay 0.999 instead of 0.995", {"ema_decay": 0.999}),
    "no_ema_warmup": ("EMA without warm-up", {"ema_warmup": False}),
    "batch_32": ("batch 32 instead of 64", {"batch_size": 32}),
    "batch_128": ("batch 128 instead of 64", {"batch_size": 128}),
    "bf16_cpu": ("bfloat16 autocast on the CPU (a throughput trick: more steps in the budget)",
                 {"cpu_bf16": True}),
    "width_24": ("24/48/96 channels instead of 16/32/64",
                 {"model": dataclasses.replace(MNIST_UNET, base_channels=24)}),
    "depth_2": ("two residual blocks a level instead of one",
                {"model": dataclasses.replace(MNIST_UNET, num_res_blocks=2)}),
    "no_attn_7": ("attention only in the bottleneck, not at 7x7",
                  {"model": dataclasses.replace(MNIST_UNET, attention_resolutions=())}),
    "attn_14": ("attention at 14x14 as well",
                {"model": dataclasses.replace(MNIST_UNET, attention_resolutions=(14, 7))}),
}


def _has_compiler() -> bool:
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


def bench_throughput(threads: list[int]) -> list[dict]:
    """Training images/s (forward + backward + Adam step, batch 64) per trick."""
    spec = base_preset().spec
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1
    t = torch.randint(1, spec.T + 1, (64,), generator=g)
    rows = []
    tricks = [("plain", {}), ("channels_last", {"cl": True}), ("bf16 autocast", {"bf16": True})]
    if _has_compiler():
        tricks.append(("torch.compile", {"compile": True}))
    for n in threads:
        torch.set_num_threads(n)
        for name, o in tricks:
            torch.manual_seed(0)
            model = UNet(MNIST_UNET)
            xx = x
            if o.get("cl"):
                model = model.to(memory_format=torch.channels_last)
                xx = x.contiguous(memory_format=torch.channels_last)
            fwd = torch.compile(model) if o.get("compile") else model
            opt = torch.optim.Adam(model.parameters(), 1e-3)

            def step():
                opt.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(o.get("bf16"))):
                    loss = diffusion_loss(fwd, spec, xx, t=t)
                loss.backward()
                opt.step()

            try:
                sec = timeit(step, min_time=5.0, warmup=3 if o.get("compile") else 2)
                rows.append({"trick": name, "threads": n, "images_per_s": round(64 / sec, 1)})
            except Exception as e:  # noqa: BLE001  (a trick this CPU cannot do is a result)
                rows.append({"trick": name, "threads": n, "error": f"{type(e).__name__}: {e}"[:200]})
            print(rows[-1], flush=True)
    return rows


def _step_seconds(presets: list, rounds: int = 3, steps: int = 4) -> list[float]:
    """Seconds per training step (forward, backward, Adam) of each preset, timed in turns
    (round robin) so that other load on the machine slows them all alike."""
    spec = base_preset().spec
    g = torch.Generator().manual_seed(0)
    fns = []
    for p in presets:
        torch.manual_seed(0)
        model = UNet(p.model)
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        x = torch.rand(p.batch_size, 1, 28, 28, generator=g) * 2 - 1
        t = torch.randint(1, spec.T + 1, (p.batch_size,), generator=g)

        def step(model=model, opt=opt, x=x, t=t, bf16=p.cpu_bf16):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = diffusion_loss(model, spec, x, t=t)
            loss.backward()
            opt.step()
        step()  # warm-up
        fns.append(step)
    total = [0.0] * len(fns)
    for _ in range(rounds):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(steps):
                f()
            total[i] += time.perf_counter() - t0
    return [x / (rounds * steps) for x in total]


def _steps_for_budget(preset, budget_s: float, seed: int, runs: Path = RUNS) -> int:
    """Steps that fill ``budget_s`` at this variant's speed. The baseline's steps come from a
    20-step probe (run it first, on an otherwise idle core); a variant that costs the same
    per step (same model, batch and precision) gets the same steps, any other gets them
    scaled by its measured cost per step relative to the baseline's (timed in turns)."""
    base = base_preset()
    base_plan = runs / "baseline-s0" / "plan.json"
    if base_plan.exists():
        base_steps = json.loads(base_plan.read_text())["steps"]
    else:
        probe = dataclasses.replace(base, steps=20, ckpt_every=20, log_every=10, max_seconds=None)
        t0 = time.perf_counter()
        train_mnist(probe, None, seed=seed, progress=False)
        base_steps = max(50, int(budget_s / ((time.perf_counter() - t0) / 20)))
    if (preset.model, preset.batch_size, preset.cpu_bf16) == (base.model, base.batch_size,
                                                               base.cpu_bf16):
        return base_steps
    t_base, t_var = _step_seconds([base, preset])
    return max(50, round(base_steps * t_base / t_var))


def run_variant(name: str, seed: int, budget_s: float, n_samples: int, sampler: str,
                nfe_steps: int, runs: Path = RUNS) -> dict:
    """Train one variant for the budget (resumable), sample and score it."""
    what, over = VARIANTS[name]
    run_dir = runs / f"{name}-s{seed}"
    plan_file = run_dir / "plan.json"
    if plan_file.exists():  # an interrupted run: same plan, continue its checkpoint
        steps = json.loads(plan_file.read_text())["steps"]
    else:
        steps = _steps_for_budget(base_preset(**over), budget_s, seed, runs)
        run_dir.mkdir(parents=True, exist_ok=True)
        plan_file.write_text(json.dumps({"steps": steps, "budget_s": budget_s}))
    # the planned steps end the run (a generous wall-clock guard only stops a runaway)
    preset = base_preset(**over, steps=steps, max_seconds=4 * budget_s)
    resume = (run_dir / "train.pt").exists()
    out = train_mnist(preset, run_dir, resume=resume, seed=seed, progress=True)
    g = torch.Generator().manual_seed(1000 + seed)
    t0 = time.perf_counter()
    x = sample_images(out.ema_model, out.spec, n_samples, steps=nfe_steps, sampler=sampler,
                      generator=g)
    sampling_s = time.perf_counter() - t0
    rep = score_images(x)
    print(f"{name} seed {seed}: {rep}", flush=True)
    return {"variant": name, "what": what, "seed": seed, "steps": out.result.steps_done,
            "planned_steps": steps, "train_seconds": round(out.result.seconds, 1),
            "images_per_s": round(out.images_per_s, 1), "final_loss": out.log[-1]["loss"]
            if out.log else None, "sampler": sampler, "sampling_steps": nfe_steps,
            "sampling_seconds": round(sampling_s, 1), "n": rep.n, "fd": rep.fd,
            "confident": rep.confident, "entropy_ratio": rep.entropy_ratio}


class _Counted(torch.nn.Module):
    """Counts network calls (NFE): a Heun step makes two, its first and last steps one."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, *args, **kw):
        self.calls += 1
        return self.model(*args, **kw)


#: sampler -> steps for about 20 and 50 network calls (Heun: two calls a step)
SAMPLER_STEPS = {"ddpm": (20, 50), "ddim": (20, 50), "dpmpp_2m": (20, 50), "heun": (11, 26)}


def bench_samplers(n_samples: int, runs: Path = RUNS) -> list[dict]:
    """FD / confident / entropy of the baseline model (seed 0) per sampler at ~20 and ~50 NFE."""
    from dmlib.checkpoint import load_diffusion_model

    model, spec = load_diffusion_model(runs / "baseline-s0" / "train.pt")
    model.eval()
    rows = []
    for sampler, steps_list in SAMPLER_STEPS.items():
        for steps in steps_list:
            counted = _Counted(model)
            g = torch.Generator().manual_seed(2000)
            t0 = time.perf_counter()
            x = sample_images(counted, spec, n_samples, steps=steps, sampler=sampler,
                              generator=g)
            sec = time.perf_counter() - t0
            rep = score_images(x)
            rows.append({"sampler": sampler, "steps": steps, "nfe": counted.calls,
                         "seconds": round(sec, 1), "n": rep.n, "fd": rep.fd,
                         "confident": rep.confident, "entropy_ratio": rep.entropy_ratio})
            print(rows[-1], flush=True)
    return rows


def render_tables(res: dict) -> str:
    """The README's markdown tables from the results file (``--parts table``)."""
    out = []
    if res.get("throughput"):
        out += ["| trick | threads | training images/s |", "|---|---|---|"]
        out += [f"| {r['trick']} | {r['threads']} | {r.get('images_per_s', r.get('error'))} |"
                for r in res["throughput"]]
        out.append("")
    q = res.get("quality", [])
    if q:
        base = [r["fd"] for r in q if r["variant"] == "baseline"]
        base_fd = sum(base) / len(base) if base else None
        out += ["| variant | seed | steps | FD | / baseline's mean FD | confident | entropy / ln 10 |",
                "|---|---|---|---|---|---|---|"]
        for r in sorted(q, key=lambda r: (r["fd"], r["seed"])):
            rel = f"{r['fd'] / base_fd:.2f}" if base_fd else "–"
            out.append(f"| `{r['variant']}`: {r['what']} | {r['seed']} | {r['steps']} | "
                       f"{r['fd']:.1f} | {rel} | {100 * r['confident']:.1f}% | "
                       f"{r['entropy_ratio']:.3f} |")
        out.append("")
    if res.get("samplers"):
        out += ["| sampler | steps | NFE | FD | confident | entropy / ln 10 | seconds |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['fd']:.1f} | "
                f"{100 * r['confident']:.1f}% | {r['entropy_ratio']:.3f} | {r['seconds']} |"
                for r in res["samplers"]]
    return "\n".join(out)


def _update(path: Path, fn) -> None:
    """Read-modify-write the results file under an exclusive lock (parallel processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = json.loads(path.read_text()) if path.exists() else {}
        fn(res)
        write_json(path, res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["throughput", "quality"],
                    choices=["throughput", "quality", "samplers", "table"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--budget-minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=2000, help="samples scored per run")
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--sampling-steps", type=int, default=20)
    ap.add_argument("--force", action="store_true", help="re-run finished (variant, seed)")
    ap.add_argument("--out", type=Path, default=OUT, help="results file (smoke tests: elsewhere)")
    ap.add_argument("--runs", type=Path, default=RUNS, help="where the runs' checkpoints go")
    a = ap.parse_args()
    out = a.out
    machine = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
               "compiler": _has_compiler()}
    if "throughput" in a.parts:
        rows = bench_throughput(sorted({1, a.threads}))
        _update(out, lambda r: r.update(machine=machine, throughput=rows))
    torch.set_num_threads(a.threads)
    if "quality" in a.parts:
        for seed in a.seeds:
            for name in a.variants:
                done = json.loads(out.read_text()).get("quality", []) if out.exists() else []
                if any((r["variant"], r["seed"]) == (name, seed) for r in done) and not a.force:
                    continue
                row = {**run_variant(name, seed, 60 * a.budget_minutes, a.n, a.sampler,
                                     a.sampling_steps, a.runs),
                       "budget_minutes": a.budget_minutes, "threads": a.threads}

                def add(res, row=row):
                    rows = {(r["variant"], r["seed"]): r for r in res.get("quality", [])}
                    rows[row["variant"], row["seed"]] = row
                    res["quality"] = sorted(rows.values(), key=lambda r: (r["seed"], r["variant"]))
                    res["machine"] = machine
                _update(out, add)
    if "samplers" in a.parts:
        rows = bench_samplers(a.n, a.runs)
        _update(out, lambda r: r.update(samplers=rows))
    if "table" in a.parts:
        print(render_tables(json.loads(out.read_text())))

if __name__ == "__main__":
    main()
