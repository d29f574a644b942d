"""Our chapter-7 U-Net against diffusers' ``UNet2DModel`` on MNIST, on this CPU, with the
same wall-clock training budget: ``bench/results/mnist_peer.json``.

The peer is the ``UNet2DModel`` configuration widely used for MNIST (the Hugging Face
diffusion course): 32/64/64 channels at 28/14/7 pixels, two residual blocks a level,
attention at 14x14 and 7x7 and in the bottleneck (1.71M parameters). Ours is
``UNet(MNIST_UNET)`` (16/32/64 channels, one block a level, attention at 7x7 and in the
bottleneck; 0.72M parameters).

Both models are trained by the same function (``train_for_budget``: ``dmlib.training.train``
with ``image_loss_fn``) with the ``cpu`` preset's recipe: cosine schedule, T = 1000, eps
target, batch 64, lr 2e-3 with 100 warmup steps, gradient clipping 1.0, EMA 0.995, seed 0.
The seed fixes the data order and the loop's generator, so both models see the same batches
and the same (t, eps) draws; only the model differs. Each trains until ``--budget-seconds``
of wall clock have passed (the step that crosses the budget is finished). Measured per model:

* steps done, training images/s (steps * batch / wall seconds) and the CPU seconds used;
* the final loss (mean of the last 100 steps);
* ``--n-samples`` images from the EMA model (Algorithm 2 on the ``--sample-steps``-step
  respaced schedule, ``dmlib.sampling.sample_images``, generator seeded 0), timed (seconds
  per image);
* their quality by the shipped classifier (``dmlib.quality.score_images``): Frechet distance
  of its features to the test set, share of confident predictions, class entropy (and its
  ratio to ln 10) and the predicted-class histogram;
* a grid of the first 64 samples: ``<out stem>_<name>.png`` beside the JSON.

diffusers is not a course dependency: it lives in a separate environment, ``.venv-bench``
(``bench/requirements-bench.txt``). Run (on one core: 2 x 10 min of training, then about
4 min of sampling for ours and 20 min for the peer, which costs ~4x the FLOPs per image)::

    make bench-peer
    # or, with the environment made:
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv-bench/bin/python bench/bench_mnist_peer.py

Options: ``--budget-seconds`` (600), ``--n-samples`` (1000), ``--sample-steps`` (100),
``--threads`` (1), ``--which both|ours|diffusers``, ``--out``. Results of a model not re-run
are kept in the JSON. Scoring needs ``data/checkpoints/mnist_classifier.pt`` (checked before
training starts); ``--skip-score`` runs without it (smoke tests only).

Timesteps: dmlib calls ``model(x_t, t)`` with t in 1..T; diffusers' scheduler uses 0..T-1,
but the U-Net only embeds the number (sinusoidal), so the wrapper passes t unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the network
os.environ.setdefault("DIFFUSERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from dmlib.data.mnist import load_mnist  # noqa: E402
from dmlib.models import UNet, count_parameters  # noqa: E402
from dmlib.sampling import sample_images  # noqa: E402
from dmlib.train import MNIST_UNET, Preset, get_preset, image_loss_fn  # noqa: E402
from dmlib.training import StepInfo, train  # noqa: E402

from _common import RESULTS, write_json  # noqa: E402  (bench/ is on sys.path)

OUT = RESULTS / "mnist_peer.json"
SEED = 0
GRID_N = 64

#: The UNet2DModel configuration of the Hugging Face diffusion course's MNIST example.
DIFFUSERS_CONFIG = dict(sample_size=28, in_channels=1, out_channels=1, layers_per_block=2,
                        block_out_channels=(32, 64, 64),
                        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))


class DiffusersUNet(nn.Module):
    """diffusers' ``UNet2DModel`` behind dmlib's calling convention: ``model(x_t, t) -> eps``
    with x_t (B, 1, 28, 28) and t (B,) long; returns the ``.sample`` of diffusers' output."""

    def __init__(self, **config) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        self.net = UNet2DModel(**config)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t).sample


def build(name: str) -> nn.Module:
    """A freshly initialised model (``torch.manual_seed(SEED)`` first, for both)."""
    torch.manual_seed(SEED)
    if name == "ours":
        return UNet(MNIST_UNET)
    if name == "diffusers":
        return DiffusersUNet(**DIFFUSERS_CONFIG)
    raise ValueError(name)


def train_for_budget(model: nn.Module, preset: Preset, images: torch.Tensor,
                     report_every: int = 100) -> dict:
    """Train ``model`` with ``preset``'s recipe until its ``max_seconds`` budget is spent
    (CPU, float32, no checkpoints). Returns the EMA model and the measurements."""
    config = preset.train_config(None, seed=SEED, device="cpu")
    config.amp = False  # CUDA only anyway; avoids train()'s warning
    loss_fn = image_loss_fn(preset.spec)
    t_start = time.perf_counter()

    def callback(info: StepInfo) -> None:
        if info.step % report_every == 0:
            print(f"  step {info.step:6d}  loss {info.loss:.4f}  "
                  f"{time.perf_counter() - t_start:6.1f} s", flush=True)

    c0 = time.process_time()
    res = train(model, loss_fn, images, config, progress=False, callback=callback)
    cpu_s = time.process_time() - c0
    last = res.history[-100:]
    return {"ema_model": res.ema_model, "steps": res.steps_done,
            "train_seconds": res.seconds, "train_cpu_seconds": cpu_s,
            "images_per_s": res.steps_done * preset.batch_size / max(res.seconds, 1e-9),
            "final_loss": sum(last) / len(last)}


def save_grid(images: torch.Tensor, path: Path) -> None:
    """The first 64 images as one PNG (``dmlib.plotting.make_grid``, 8 a row)."""
    import matplotlib.image

    from dmlib.plotting import make_grid

    grid = make_grid(images[:GRID_N], nrow=8)
    matplotlib.image.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)


def classifier_problem() -> str | None:
    """None when the shipped classifier verifies, else why it cannot be used."""
    from dmlib.pretrained import verify_pretrained

    try:
        verify_pretrained("mnist_classifier")
    except (FileNotFoundError, ValueError) as e:
        return str(e)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-seconds", type=float, default=600.0,
                    help="wall-clock training budget per model (default 600)")
    ap.add_argument("--n-samples", type=int, default=1000)
    ap.add_argument("--sample-steps", type=int, default=100, help="respaced sampling steps")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--which", default="both", choices=["both", "ours", "diffusers"])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--skip-score", action="store_true",
                    help="do not score the samples (for smoke tests when the classifier is "
                         "missing); a real run must score")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import diffusers
    except ImportError:  # e.g. `make bench` in the course environment: not an error
        print("bench_mnist_peer: diffusers is not installed in this environment; skipped. "
              "Run `make bench-peer` (it makes .venv-bench with bench/requirements-bench.txt).")
        return 0

    problem = classifier_problem()
    if problem and not args.skip_score:
        print(f"cannot score samples: {problem}\n(--skip-score runs without scoring, for "
              f"smoke tests only)", file=sys.stderr)
        return 2
    score = problem is None and not args.skip_score
    if not score:
        print(f"NOTE: samples will NOT be scored ({'--skip-score' if args.skip_score else ''}"
              f"{'; ' if args.skip_score and problem else ''}{problem or ''})", flush=True)

    preset = get_preset("cpu", steps=10**7, max_seconds=args.budget_seconds)
    schedule = preset.make_schedule()
    images, _ = load_mnist("train", limit=preset.data_limit)
    names = ["ours", "diffusers"] if args.which == "both" else [args.which]

    results = {"models": {}}
    if args.out.is_file():  # keep models not re-run this time
        results["models"] = json.loads(args.out.read_text()).get("models", {})
    for name in names:
        model = build(name)
        params = count_parameters(model)
        print(f"{name}: {params:,} parameters; training for {args.budget_seconds:g} s "
              f"({args.threads} thread{'s' * (args.threads != 1)})", flush=True)
        row = train_for_budget(model, preset, images)
        ema = row.pop("ema_model")
        print(f"{name}: {row['steps']} steps in {row['train_seconds']:.1f} s "
              f"({row['images_per_s']:.1f} images/s, CPU {row['train_cpu_seconds']:.1f} s); "
              f"final loss {row['final_loss']:.4f}", flush=True)
        t0 = time.perf_counter()
        x = sample_images(ema, preset.spec, args.n_samples, steps=args.sample_steps,
                          generator=torch.Generator().manual_seed(0))
        sample_s = time.perf_counter() - t0
        grid_path = args.out.parent / f"{args.out.stem}_{name}.png"
        grid_path.parent.mkdir(parents=True, exist_ok=True)
        save_grid(x, grid_path)
        row = {"name": name, "params": params, "threads": args.threads,
               "budget_s": args.budget_seconds, **row,
               "n_samples": args.n_samples, "sample_steps": args.sample_steps,
               "sample_seconds": sample_s, "sample_seconds_per_image": sample_s / args.n_samples,
               "grid": grid_path.name}  # beside the JSON
        if score:
            from dmlib.quality import score_images

            rep = score_images(x)
            row.update(fd=rep.fd, confident=rep.confident, entropy=rep.entropy,
                       entropy_ratio=rep.entropy_ratio, histogram=rep.histogram)
            print(f"{name}: {rep}", flush=True)
        else:
            row["scored"] = False
        print(f"{name}: sampling {1000 * sample_s / args.n_samples:.1f} ms/image "
              f"({args.sample_steps} steps); grid {grid_path}", flush=True)
        if args.out.is_file():  # merge with what other runs wrote meanwhile
            results["models"] = {**json.loads(args.out.read_text()).get("models", {}),
                                 **results["models"]}
        results["models"][name] = row
        results.update(
            recipe={"preset": "cpu", "schedule": preset.schedule, "T": preset.T,
                    "prediction_type": preset.prediction_type, "batch_size": preset.batch_size,
                    "lr": preset.lr, "warmup_steps": preset.warmup_steps,
                    "ema_decay": preset.ema_decay, "grad_clip": preset.grad_clip,
                    "seed": SEED, "sampler": "Algorithm 2, variance beta, respaced, clip x0",
                    "ours": {"config": MNIST_UNET.__dict__},
                    "diffusers": {"class": "UNet2DModel", "config": DIFFUSERS_CONFIG}},
            machine={"platform": platform.platform(), "cpu_count": os.cpu_count(),
                     "torch": torch.__version__, "diffusers": diffusers.__version__,
                     "python": platform.python_version()},
            date=time.strftime("%Y-%m-%d"))
        write_json(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
