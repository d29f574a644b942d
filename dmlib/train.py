"""Train the MNIST diffusion model from the command line or a notebook (chapter 7).

    python -m dmlib.train mnist --preset quick      # seconds: CI and smoke tests
    python -m dmlib.train mnist --preset cpu        # about 10 minutes on a 2-core laptop CPU
    python -m dmlib.train mnist --preset ship       # the shipped checkpoint (longer CPU run)
    python -m dmlib.train mnist --preset gpu        # the full-quality run on one GPU
    python -m dmlib.train export runs/mnist-cpu my_unet.pt   # EMA weights of a run, alone

It is chapter 6's loop (``dmlib.training.train``: tqdm, EMA, clipping, NaN guard, atomic
checkpoints, exact resume) with Algorithm 1 on images:

    x0 ~ MNIST (scaled to [-1, 1]),  t ~ U{1..T},  eps ~ N(0, I),
    loss = || eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t) ||^2

A run directory holds ``train.pt`` (the full training checkpoint: weights, EMA, optimizer,
RNG; ``--resume`` continues it bit-exactly), ``log.jsonl`` (one line per ``log_every``
steps) and ``run.json`` (the preset and the command). ``--export`` writes the EMA weights
alone (a few MB: what you sample with, and what ``data/checkpoints/`` ships) with their
sha256 beside them.

On CUDA the presets use bfloat16 autocast and channels_last memory; ``--compile`` adds
``torch.compile`` (slow first steps, faster later; off by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_model, read_checkpoint, read_spec, save_checkpoint, sha256_file
from .guidance import LabelledModel, drop_labels
from .losses import diffusion_loss
from .models.unet import UNet, UNetConfig
from .schedules import Schedule
from .spec import DiffusionSpec
from .training import StepInfo, TrainConfig, TrainResult, pick_device, train

#: The U-Net of chapter 7: 16/32/64 channels at 28/14/7 pixels, one residual block a level,
#: attention at 7x7 and in the bottleneck; 0.72M parameters. Chosen for quality per
#: second on a CPU (``bench/bench_mnist.py`` compares widths and depths).
MNIST_UNET = UNetConfig(base_channels=16, channel_mults=(1, 2, 4), num_res_blocks=1,
                        attention_resolutions=(7,), mid_attention=True)
#: The GPU preset's wider U-Net: 32/64/64 channels, two residual blocks a level (1.74M).
MNIST_UNET_GPU = UNetConfig(base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=2)


@dataclass(frozen=True)
class Preset:
    """One training recipe: the model, the diffusion (schedule, T, target) and the loop."""

    name: str
    description: str
    model: UNetConfig = MNIST_UNET
    schedule: str = "cosine"
    T: int = 1000
    prediction_type: str = "eps"
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    data_limit: int | None = None  # use only the first N training digits
    amp: bool = True  # bfloat16 autocast, CUDA only
    channels_last: bool = True  # CUDA only
    cpu_bf16: bool = False  # bfloat16 autocast on the CPU too (issue 17's bench measures it)
    log_every: int = 50
    ckpt_every: int = 250
    max_seconds: float | None = None  # wall-clock budget: stop early (None: all steps)
    ema_warmup: bool = True  # EMA decay min(ema_decay, (1+n)/(10+n)): short runs need it
    lr_decay: str = "none"  # "cosine": decay to 0 at the last step (TrainConfig.lr_decay)
    p_uncond: float = 0.1  # class-conditional models: label dropout for CFG (chapter 9)
    weighting: str = "simple"  # loss weight over t: "simple" or "min_snr" (Min-SNR-5)

    def train_config(self, ckpt_path: str | None, seed: int = 0,
                     device: str | None = None) -> TrainConfig:
        """The ``TrainConfig`` of this preset."""
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                           warmup_steps=self.warmup_steps, ema_decay=self.ema_decay,
                           grad_clip=self.grad_clip, log_every=self.log_every,
                           ckpt_every=self.ckpt_every if ckpt_path else None,
                           ckpt_path=ckpt_path, seed=seed, device=device, amp=self.amp,
                           max_seconds=self.max_seconds, ema_warmup=self.ema_warmup,
                           lr_decay=self.lr_decay)

    @property
    def spec(self) -> DiffusionSpec:
        """The diffusion this preset trains for (saved with every checkpoint it writes)."""
        return DiffusionSpec(self.schedule, self.T, self.prediction_type,
                             num_classes=self.model.num_classes)

    def make_schedule(self) -> Schedule:
        """The noise schedule this preset trains (and must sample) with."""
        return self.spec.make_schedule()


PRESETS: dict[str, Preset] = {
    "quick": Preset("quick", "CI smoke run: 30 steps on 2,048 digits (seconds)",
                    steps=30, batch_size=32, data_limit=2048, warmup_steps=5, ema_decay=0.9,
                    log_every=10, ckpt_every=10),
    # issue 17's bench (bench/bench_mnist_recipe.py): at equal CPU time the v target gave
    # 0.21-0.23 x the eps baseline's FD (two seeds) and bfloat16 autocast 1.5 x the steps
    "cpu": Preset("cpu", "about 10 minutes on a 2-core CPU: v target, bfloat16 autocast",
                  steps=2000, batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.995,
                  prediction_type="v", cpu_bf16=True),
    # the shipped checkpoint (issue 17): the cpu preset's winners (v target, bfloat16
    # autocast) trained 7.5x longer, with cosine decay of the learning rate and a slower EMA
    "ship": Preset("ship", "the shipped checkpoint: the cpu recipe (v, bf16) for 15,000 steps, cosine lr",
                   steps=15000, batch_size=64, lr=2e-3, warmup_steps=200, ema_decay=0.999,
                   prediction_type="v", cpu_bf16=True, lr_decay="cosine", ckpt_every=500),
    # the first shipped checkpoint (data/checkpoints/mnist_unet_eps.pt, 5,000 of these steps),
    # kept for chapter 8. ema_warmup=False: it was trained before EMA warm-up existed, and
    # keeping it off lets the documented command reproduce the file's weights exactly.
    "ship-eps": Preset("ship-eps", "the first shipped checkpoint: eps target, batch 128 (chapter 8)",
                       steps=8000, batch_size=128, lr=1e-3, warmup_steps=200, ema_decay=0.999,
                       ema_warmup=False),
    # chapter 9: the class-conditional U-Net for classifier-free guidance (label dropout 0.1)
    "cond": Preset("cond", "class-conditional U-Net for guidance (chapter 9; about 65 min on 1 idle core)",
                   model=dataclasses.replace(MNIST_UNET, num_classes=10), steps=3000,
                   batch_size=128, lr=2e-3, warmup_steps=200, ema_decay=0.999,
                   lr_decay="cosine", p_uncond=0.1),
    "cond-quick": Preset("cond-quick", "CI smoke run of the conditional model (seconds)",
                         model=dataclasses.replace(MNIST_UNET, num_classes=10), steps=30,
                         batch_size=32, data_limit=2048, warmup_steps=5, ema_decay=0.9,
                         log_every=10, ckpt_every=10),
    "gpu": Preset("gpu", "the full-quality run on one GPU (bf16, channels_last)",
                  model=MNIST_UNET_GPU, steps=20000, batch_size=256, lr=1e-3,
                  warmup_steps=500, ema_decay=0.9995, log_every=100, ckpt_every=2000),
}


def get_preset(name: str, **overrides) -> Preset:
    """``PRESETS[name]`` with fields replaced by ``overrides`` (e.g. ``steps=500``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(Preset)}
    bad = sorted(set(overrides) - fields)
    if bad:
        raise ValueError(f"unknown preset fields {bad}; a Preset has {sorted(fields)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def image_loss_fn(spec: DiffusionSpec, channels_last: bool = False, p_uncond: float = 0.1,
                  weighting: str = "simple"):
    """The loss of Algorithm 1 on images for the diffusion ``spec``, as ``train`` wants it:
    ``loss_fn(model, batch, generator)`` with ``batch`` the images x0 (B, 1, 28, 28) (or a
    tuple whose first entry they are); t and eps are drawn with ``generator``. Chapter 7.

    A class-conditional spec (``num_classes`` > 0, chapter 9) needs ``batch = (x0, y)``: each
    label is replaced by the null label with probability ``p_uncond`` (``drop_labels``) and
    the network is called as ``model(xt, t, y)``. ``weighting``: ``diffusion_loss``'s
    ``"simple"`` or ``"min_snr"``."""
    if not isinstance(spec, DiffusionSpec):
        raise TypeError(f"image_loss_fn takes the run's DiffusionSpec, got {type(spec).__name__}")

    def loss_fn(model: nn.Module, batch, generator: torch.Generator) -> torch.Tensor:
        x0 = batch[0] if isinstance(batch, (tuple, list)) else batch
        if channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        if spec.num_classes:
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("a class-conditional model trains on (images, labels) batches")
            y = drop_labels(batch[1], p_uncond, spec.num_classes, generator)
            model = LabelledModel(model, y)
        return diffusion_loss(model, spec, x0, weighting=weighting, generator=generator)

    return loss_fn


def export_weights(model: nn.Module, path: str | os.PathLike, step: int,
                   spec: DiffusionSpec | None = None, extra: dict | None = None) -> str:
    """Write ``model``'s weights alone (no optimizer, no EMA copy) as a dmlib checkpoint,
    with the ``spec`` it was trained for (None for models that are not diffusion models,
    e.g. the classifier), atomically, and ``<path>.sha256`` beside it; returns the sha256.
    Chapter 7."""
    path = Path(path)
    save_checkpoint(path, model.float().cpu(), step=step, extra=extra or {}, spec=spec)
    digest = sha256_file(path)
    tmp = path.with_name(path.name + ".sha256.tmp")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.replace(tmp, path.with_name(path.name + ".sha256"))
    return digest


@dataclass
class RunResult:
    """What ``train_mnist`` returns: the trained models, the loop's result and timings."""

    model: nn.Module
    ema_model: nn.Module
    spec: DiffusionSpec
    schedule: Schedule
    preset: Preset
    result: TrainResult
    images_per_s: float
    run_dir: Path | None = None
    log: list[dict] = field(default_factory=list)


def train_mnist(preset: str | Preset = "cpu", run_dir: str | os.PathLike | None = None,
                resume: bool = False, seed: int = 0, device: str | None = None,
                compile: bool = False, progress: bool = True,
                images: torch.Tensor | None = None) -> RunResult:
    """Train the chapter-7 U-Net on MNIST with a preset (chapter 7).

    ``run_dir``: where ``train.pt``, ``log.jsonl`` and ``run.json`` go (None: in memory
    only, no checkpoints). ``resume``: continue ``run_dir/train.pt`` exactly. ``images``:
    train on these (N, 1, 28, 28) images in [-1, 1] instead of the MNIST training set.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    labels = None
    if images is None:
        from .data.mnist import load_mnist

        images, labels = load_mnist("train", limit=p.data_limit)
    elif p.model.num_classes:
        raise ValueError("a class-conditional preset trains on MNIST with its labels; "
                         "images= is for unconditional presets")
    elif images.dim() != 4 or images.shape[1] != p.model.in_channels:
        raise ValueError(f"images must have shape (N, {p.model.in_channels}, H, W), "
                         f"got {tuple(images.shape)}")
    dev = pick_device(device)
    cuda = dev.type == "cuda"
    torch.manual_seed(seed)
    model = UNet(p.model)
    if cuda and p.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ckpt_path = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        ckpt_path = _prepare_run_dir(run_dir, p, resume, seed, dev, compile)
    config = p.train_config(ckpt_path, seed=seed, device=str(dev))
    config.amp = p.amp and cuda
    config.amp_cpu = p.cpu_bf16 and dev.type == "cpu"
    # torch.compile wraps the forward only; the loop still sees (and saves) the plain module.
    fwd = torch.compile(model) if compile else model
    base_loss = image_loss_fn(p.spec, channels_last=cuda and p.channels_last,
                              p_uncond=p.p_uncond, weighting=p.weighting)
    loss_fn = lambda m, b, g: base_loss(fwd if m is model else m, b, g)  # noqa: E731
    logger = _LossLog(p, run_dir / "log.jsonl" if run_dir is not None else None)
    try:
        data = (images, labels.long()) if p.model.num_classes else images
        res = train(model, loss_fn, data, config, resume=resume, progress=progress,
                    callback=logger, spec=p.spec)
    finally:
        logger.close()
    ips = logger.n_new * p.batch_size / max(res.seconds, 1e-9)  # steps of this call only
    return RunResult(model=res.model, ema_model=res.ema_model, spec=p.spec,
                     schedule=p.make_schedule(), preset=p, result=res, images_per_s=ips,
                     run_dir=run_dir, log=logger.rows)


def _prepare_run_dir(run_dir: Path, p: Preset, resume: bool, seed: int, dev: torch.device,
                     compile: bool) -> str:
    """Create ``run_dir``, refuse to overwrite a run unless resuming, append this invocation
    to ``run.json`` (atomically); returns the checkpoint path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "train.pt"
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass resume=True (--resume) to continue "
                              f"it, or choose another run directory; nothing was overwritten")
    # run.json: the preset, plus one entry per invocation (a resume appends one).
    info = json.loads((run_dir / "run.json").read_text()) if resume and (
        run_dir / "run.json").exists() else {"preset": asdict(p), "invocations": []}
    info.setdefault("invocations", [])
    info["invocations"].append({
        "steps": p.steps, "seed": seed, "device": str(dev), "compile": compile,
        "argv": sys.argv, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    tmp = run_dir / "run.json.tmp"
    tmp.write_text(json.dumps(info, indent=1, default=str))
    os.replace(tmp, run_dir / "run.json")
    return str(ckpt_path)


class _LossLog:
    """The training callback of ``train_mnist``: the mean loss every ``log_every`` steps,
    kept in ``rows`` and appended to ``log.jsonl`` (flushed each time)."""

    def __init__(self, p: Preset, path: Path | None) -> None:
        self.p, self.rows, self.window, self.n_new = p, [], [], 0
        self.t_start = time.perf_counter()
        self.file = open(path, "a") if path is not None else None

    def __call__(self, info: StepInfo) -> None:
        self.window.append(info.loss)
        self.n_new += 1
        if info.step % self.p.log_every == 0 or info.step == self.p.steps:
            row = {"step": info.step, "loss": sum(self.window) / len(self.window), "lr": info.lr,
                   "grad_norm": info.grad_norm,
                   "seconds": round(time.perf_counter() - self.t_start, 2)}
            self.window.clear()
            self.rows.append(row)
            if self.file is not None:
                self.file.write(json.dumps(row) + "\n")
                self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike) -> str:
    """Export the EMA weights of ``run_dir/train.pt`` (at whatever step it holds) to
    ``out`` with the run's ``DiffusionSpec`` and preset, so that ``python -m dmlib.quality
    score out`` and ``load_diffusion_model`` know the diffusion. Returns the sha256.
    Chapter 7."""
    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir / "train.pt")
    spec = read_spec(run_dir / "train.pt", ckpt)
    info = json.loads((run_dir / "run.json").read_text())
    preset = dict(info["preset"], steps=ckpt["step"])  # the run as if it had stopped here
    return export_weights(load_model(run_dir / "train.pt", use_ema=True), out, ckpt["step"],
                          spec=spec, extra={"preset": preset,
                                            "seed": ckpt["extra"]["run"]["seed"]})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        ex = argparse.ArgumentParser(prog="python -m dmlib.train export",
                                     description="Export a run's EMA weights alone.")
        ex.add_argument("run_dir")
        ex.add_argument("out")
        a = ex.parse_args(argv[1:])
        print(f"exported {a.run_dir} to {a.out} (sha256 {export_run(a.run_dir, a.out)})")
        return 0
    ap = argparse.ArgumentParser(prog="python -m dmlib.train",
                                 description="Train the course's MNIST diffusion model.")
    ap.add_argument("dataset", choices=["mnist", "mnist-cond"],
                    help="mnist-cond: the class-conditional model of chapter 9 (preset cond)")
    ap.add_argument("--preset", choices=sorted(PRESETS),
                    help="default: cpu for mnist, cond for mnist-cond")
    ap.add_argument("--steps", type=int, help="override the preset's number of steps")
    ap.add_argument("--prediction-type", choices=["eps", "x0", "mu", "v"],
                    help="override the preset's prediction target (saved in the run's spec)")
    ap.add_argument("--minutes", type=float, help="stop after this wall-clock budget")
    ap.add_argument("--run-dir", help="default: runs/mnist-<preset>")
    ap.add_argument("--resume", action="store_true", help="continue run-dir/train.pt exactly")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--export", help="also write the EMA weights alone to this path")
    args = ap.parse_args(argv)
    cond = args.dataset == "mnist-cond"
    args.preset = args.preset or ("cond" if cond else "cpu")
    if cond != bool(PRESETS[args.preset].model.num_classes):
        ap.error(f"preset {args.preset!r} is {'un' if cond else ''}conditional; "
                 f"{args.dataset} needs a {'conditional (cond, cond-quick)' if cond else 'unconditional'} preset")
    if args.threads:
        torch.set_num_threads(args.threads)
    over = {"steps": args.steps} if args.steps else {}
    if args.prediction_type:
        over["prediction_type"] = args.prediction_type
    if args.minutes:
        over["max_seconds"] = 60 * args.minutes
    preset = get_preset(args.preset, **over)
    run_dir = Path(args.run_dir or f"runs/mnist-{preset.name}")
    print(f"preset {preset.name}: {preset.description}; {preset.steps} steps of "
          f"{preset.batch_size}; run dir {run_dir}", flush=True)
    out = train_mnist(preset, run_dir, resume=args.resume, seed=args.seed, device=args.device,
                      compile=args.compile)
    print(f"trained {out.result.steps_done} steps in {out.result.seconds:.1f} s "
          f"({out.images_per_s:.0f} images/s); final loss "
          f"{sum(out.result.history[-100:]) / max(1, len(out.result.history[-100:])):.4f}")
    if args.export:
        digest = export_weights(out.ema_model, args.export, out.result.steps_done,
                                spec=out.spec, extra={"preset": asdict(preset), "seed": args.seed})
        print(f"exported EMA weights to {args.export} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
