"""The ``cpu`` preset end to end (issue 17): ``bench/results/mnist_cpu_preset.json``.

Trains ``python -m dmlib.train mnist --preset cpu`` on ``--threads`` threads (the wall-clock
time is the preset's promise: about 10 minutes on an idle 2-core CPU), then samples 1,000
digits and scores them with the course's judge (``dmlib.quality``) with 100 respaced DDPM
steps (chapter 7's sampler) and with DPM-Solver++(2M) at 20 steps (chapter 8's).

Resumable: an interrupted run continues from ``runs/cpu-preset/train.pt`` (its time then
counts only the last part; the results file says so).

Run: ``.venv/bin/python bench/bench_cpu_preset.py`` (about 15 minutes on an idle 2-core CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from _common import RESULTS, write_json
from dmlib.quality import score_images
from dmlib.sampling import sample_images
from dmlib.train import get_preset, train_mnist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--run-dir", type=Path, default=Path("runs/cpu-preset"))
    ap.add_argument("--out", type=Path, default=RESULTS / "mnist_cpu_preset.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    preset = get_preset("cpu")
    resume = (a.run_dir / "train.pt").exists()
    t0 = time.perf_counter()
    out = train_mnist(preset, a.run_dir, resume=resume, seed=0, progress=True)
    wall = time.perf_counter() - t0
    res = {"what": f"python -m dmlib.train mnist --preset cpu --threads {a.threads}, then "
                   f"{a.n} samples scored by dmlib.quality",
           "machine": {"cpu": platform.processor() or platform.machine(),
                       "torch": torch.__version__, "threads": a.threads},
           "preset": {k: (str(v) if dataclasses.is_dataclass(v) else v)
                      for k, v in dataclasses.asdict(preset).items() if k != "model"},
           "resumed": resume, "steps": out.result.steps_done,
           "train_wall_seconds": round(wall, 1), "train_seconds": round(out.result.seconds, 1),
           "images_per_s": round(out.images_per_s, 1),
           # the training clock as logged (covers all invocations of a resumed run)
           "logged_seconds": json.loads((a.run_dir / "log.jsonl").read_text().splitlines()[-1])
           ["seconds"],
           "final_loss_last_50": out.log[-1]["loss"] if out.log else None,
           "scores": []}
    for sampler, steps in (("ddpm", 100), ("dpmpp_2m", 20)):
        g = torch.Generator().manual_seed(0)
        t1 = time.perf_counter()
        x = sample_images(out.ema_model, out.spec, a.n, steps=steps, sampler=sampler, generator=g)
        sec = time.perf_counter() - t1
        rep = score_images(x)
        print(f"{sampler} {steps} steps: {rep}", flush=True)
        res["scores"].append({"sampler": sampler, "steps": steps, "n": rep.n, "fd": rep.fd,
                              "confident": rep.confident, "entropy_ratio": rep.entropy_ratio,
                              "histogram": list(rep.histogram), "sampling_seconds": round(sec, 1)})
        write_json(a.out, res)


if __name__ == "__main__":
    main()
