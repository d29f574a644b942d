"""The generic training loop: AdamW, warmup, gradient clipping, EMA, checkpoints, exact
resume (chapters 6 and 7).

One step k = 1..steps (Algorithm 1 of the lecture sits inside ``loss_fn``):

    batch_k  = rows perm_e[j B : (j+1) B] of the data, e = (k-1) // (N // B), j = (k-1) mod (N // B)
    L_k      = loss_fn(model, batch_k, generator)
    g_k      = grad L_k, clipped: g_k <- g_k * min(1, c / ||g_k||)
    theta_k  = AdamW(theta_{k-1}, g_k, lr_k),  lr_k = lr * min(1, k / warmup_steps)
               (times (1 + cos(pi k / steps)) / 2 with lr_decay="cosine")
    ema_k    = d_k * ema_{k-1} + (1 - d_k) * theta_k   (ema_1 = theta_1),
               d_k = ema_decay, or min(ema_decay, k / (k + 9)) with ema_warmup
               (k / (k + 9) = (1 + n) / (10 + n) for n = k - 1 averaged steps: short runs
               are not dominated by the untrained initial weights)

The epoch permutation perm_e = randperm(N, seed * 1_000_003 + e) depends only on (seed, e),
and ``generator`` (the loop's CPU torch.Generator, passed to ``loss_fn`` for its noise and
t draws) is saved in every checkpoint, so a run stopped and resumed gives bit-identical
parameters to a run that never stopped.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .checkpoint import (CheckpointMismatchError, load_checkpoint, save_checkpoint,
                         set_rng_state)
from .spec import DiffusionSpec

Batch = torch.Tensor | tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch, torch.Generator], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient became NaN/inf; training stopped before the bad update."""


# -- device -----------------------------------------------------------------------------
def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to train on: ``prefer`` if given, else ``$DMLIB_DEVICE`` if set, else
    cuda > mps > cpu. A requested device that is not available raises ValueError.
    Chapter 7 (chapter 6 runs on the CPU)."""
    source = "requested"
    if prefer is None:
        env = os.environ.get("DMLIB_DEVICE", "").strip()
        if env:
            prefer, source = env, "DMLIB_DEVICE"
    if prefer is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(prefer)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{source} device {prefer!r} is not a device name; use 'cpu', "
                         f"'cuda', 'cuda:0' or 'mps'") from e
    hint = " (unset DMLIB_DEVICE to pick automatically)" if source == "DMLIB_DEVICE" else ""
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{source} device {str(dev)!r} is not available: this PyTorch sees "
                             f"no CUDA GPU; use 'cpu'{hint}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{source} device {str(dev)!r} does not exist: there are "
                             f"{torch.cuda.device_count()} CUDA devices{hint}")
        return dev
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{source} device 'mps' is not available (Apple GPUs only); "
                             f"use 'cpu'{hint}")
        return dev
    raise ValueError(f"{source} device {str(dev)!r} is not supported by dmlib; use 'cpu', "
                     f"'cuda' or 'mps'{hint}")


# -- configuration ----------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Settings of ``train`` (chapters 6, 7).

    steps: optimizer steps in total (a resumed run trains up to this number);
    batch_size, lr, weight_decay (AdamW; 0 = Adam); grad_clip: max global gradient norm
    (None disables); ema_decay (None disables EMA); warmup_steps: linear lr warmup;
    log_every: progress-bar refresh (mean loss of the last ``log_every`` steps);
    ckpt_every / ckpt_path: checkpoint every k steps and at the end (path needed);
    seed: data order and the loop's generator; device: None = ``pick_device()``;
    amp: bfloat16 autocast, used on CUDA only; amp_cpu: bfloat16 autocast on the CPU (faster
    on CPUs with bf16 instructions: measure with ``bench/bench_mnist_recipe.py``); max_seconds: stop (with a checkpoint) after
    the first step that ends past this wall-clock budget (None: run all ``steps``);
    ema_warmup: the EMA decay grows as min(ema_decay, (1 + n) / (10 + n)) with n steps
    averaged, so that after few steps the EMA is not mostly the initial weights;
    lr_decay: "none" (constant after warmup) or "cosine" (lr_k times
    (1 + cos(pi k / steps)) / 2, down to 0 at the last step).
    """

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    warmup_steps: int = 0
    log_every: int = 50
    ckpt_every: int | None = None
    ckpt_path: str | None = None
    seed: int = 0
    device: str | None = None
    amp: bool = False
    amp_cpu: bool = False
    max_seconds: float | None = None
    lr_decay: str = "none"
    ema_warmup: bool = False

    def __post_init__(self) -> None:
        def pos_int(name: str, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")

        pos_int("steps"); pos_int("batch_size"); pos_int("log_every")
        pos_int("ckpt_every", allow_none=True)
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None (no clipping), "
                             f"got {self.grad_clip!r}")
        if self.ema_decay is not None and not (0.0 < self.ema_decay < 1.0):
            raise ValueError(f"TrainConfig.ema_decay must satisfy 0 < ema_decay < 1 (e.g. 0.999) "
                             f"or be None (no EMA), got {self.ema_decay!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be a non-negative int, got {self.seed!r}")
        if self.lr_decay not in ("none", "cosine"):
            raise ValueError(f"TrainConfig.lr_decay must be 'none' or 'cosine', got {self.lr_decay!r}")
        if self.max_seconds is not None and not (self.max_seconds > 0):
            raise ValueError(f"TrainConfig.max_seconds must be > 0 or None, got {self.max_seconds!r}")
        if self.ckpt_every is not None and self.ckpt_path is None:
            raise ValueError("TrainConfig.ckpt_every needs ckpt_path (where to write checkpoints)")
        if self.ckpt_path is not None:
            self.ckpt_path = os.fspath(self.ckpt_path)


@dataclass
class StepInfo:
    """What ``callback`` receives after every step (1-based ``step``)."""

    step: int
    loss: float
    grad_norm: float  # before clipping
    lr: float
    model: nn.Module


@dataclass
class TrainResult:
    """model (eval mode), ema_model (the EMA copy, eval mode, or None), history (loss per
    step, including steps before a resume), grad_norms (pre-clip), steps_done, seconds
    (wall time of this call)."""

    model: nn.Module
    ema_model: nn.Module | None
    history: list[float]
    steps_done: int
    seconds: float
    grad_norms: list[float] = field(default_factory=list)


# -- data -------------------------------------------------------------------------------
def _as_tensors(data: Batch) -> tuple[tuple[torch.Tensor, ...], bool]:
    single = isinstance(data, torch.Tensor)
    tensors = (data,) if single else tuple(data) if isinstance(data, (tuple, list)) else None
    if not tensors or not all(isinstance(x, torch.Tensor) for x in tensors):
        raise TypeError("data must be a tensor (N, ...) or a tuple of tensors sharing N, got "
                        f"{type(data).__name__}")
    n = tensors[0].shape[0] if tensors[0].dim() else 0
    for x in tensors:
        if x.dim() == 0 or x.shape[0] != n:
            raise ValueError(f"all data tensors must share the first dimension N; got shapes "
                             f"{[tuple(x.shape) for x in tensors]}")
    return tensors, single


def batch_indices(step: int, n: int, batch_size: int, seed: int,
                  cache: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Row indices of the batch for 0-based ``step``: epoch e = step // (n // B), position
    j = step % (n // B), rows perm_e[j B:(j+1) B] with perm_e = randperm(n) seeded by
    seed * 1_000_003 + e. Stateless, so a resumed run draws the same batches; ``cache``
    (a dict the caller keeps) holds the current epoch's permutation so that it is drawn
    once per epoch instead of once per step."""
    per_epoch = n // batch_size
    epoch, j = divmod(step, per_epoch)
    perm = cache.get(epoch) if cache is not None else None
    if perm is None:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        if cache is not None:
            cache.clear()
            cache[epoch] = perm
    return perm[j * batch_size:(j + 1) * batch_size]


def lr_at(config: TrainConfig, k: int) -> float:
    """The learning rate of 1-based step k: lr * min(1, k / warmup_steps), times
    (1 + cos(pi k / steps)) / 2 with ``lr_decay="cosine"``."""
    lr = config.lr * (min(1.0, k / config.warmup_steps) if config.warmup_steps else 1.0)
    if config.lr_decay == "cosine":
        lr *= 0.5 * (1 + math.cos(math.pi * k / config.steps))
    return lr


# -- the loop ---------------------------------------------------------------------------
@dataclass
class _State:
    """Everything the loop updates and a checkpoint stores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: AveragedModel | None
    generator: torch.Generator
    run_info: dict
    history: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    start: int = 0


def _check_args(model, loss_fn, data, config, resume) -> tuple[tuple[torch.Tensor, ...], bool]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable as loss_fn(model, batch, generator)")
    if resume and config.ckpt_path is None:
        raise ValueError("resume=True needs TrainConfig.ckpt_path (the checkpoint to resume from)")
    tensors, single = _as_tensors(data)
    if config.batch_size > tensors[0].shape[0]:
        raise ValueError(f"batch_size={config.batch_size} is larger than the data set "
                         f"(N={tensors[0].shape[0]}); lower TrainConfig.batch_size")
    return tensors, single


def _new_state(model: nn.Module, config: TrainConfig, n: int) -> _State:
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    ema = None
    if config.ema_decay is not None:
        ema_fn = (_warmup_ema_fn(config.ema_decay) if config.ema_warmup
                  else get_ema_multi_avg_fn(config.ema_decay))
        ema = AveragedModel(model, multi_avg_fn=ema_fn, use_buffers=True)
    return _State(model, optimizer, ema, torch.Generator().manual_seed(config.seed),
                  {"seed": config.seed, "batch_size": config.batch_size, "n_data": n})


def _resume(state: _State, path: str) -> None:
    """Load ``path`` into ``state`` after checking it is the same run; restore the RNGs."""
    ckpt = load_checkpoint(path, state.model, state.optimizer, state.ema, map_location="cpu",
                           generator=state.generator)
    saved = ckpt["extra"].get("run", {})
    diff = {k: (saved.get(k), v) for k, v in state.run_info.items() if saved.get(k) != v}
    if diff:
        raise CheckpointMismatchError(
            f"cannot resume exactly from {path}: "
            + "; ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items())
            + ". Use the same data, seed and batch_size, or resume=False to start afresh")
    set_rng_state(ckpt["rng"])
    state.start = ckpt["step"]
    state.history = [float(x) for x in ckpt["extra"].get("history", [])]
    state.grad_norms = [float(x) for x in ckpt["extra"].get("grad_norms", [])]


def _optimizer_step(state: _State, loss_fn: LossFn, batch: Batch, use_amp: str | None,
                    max_norm: float, k: int, config: TrainConfig) -> tuple[float, float]:
    """One update: loss, backward, clip, the NaN guard, AdamW, EMA. Returns (loss, norm)."""
    state.optimizer.zero_grad(set_to_none=True)
    ctx = torch.autocast(use_amp, dtype=torch.bfloat16) if use_amp else nullcontext()
    with ctx:
        loss = loss_fn(state.model, batch, state.generator)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise ValueError("loss_fn must return a scalar tensor (reduce with .mean()), got "
                         + (f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor)
                            else type(loss).__name__))
    if not loss.requires_grad:
        raise ValueError("the loss does not depend on the model's parameters (no grad); "
                         "does loss_fn call model(xt, t), outside torch.no_grad()?")
    loss.backward()
    params = [p for p in state.model.parameters() if p.requires_grad]
    # Global norm before clipping; clipping with max_norm=inf multiplies by 1 (exact).
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    loss_val, norm_val = torch.stack([loss.detach().float(),
                                      norm.detach().float().to(loss.device)]).tolist()
    if not (math.isfinite(loss_val) and math.isfinite(norm_val)):
        what = "loss" if not math.isfinite(loss_val) else "gradient norm"
        raise NonFiniteLossError(
            f"non-finite {what} at step {k}: loss={loss_val}, gradient norm={norm_val}. "
            f"The parameters were not updated and the last good checkpoint "
            f"(if any) is kept. Try a lower lr (now {config.lr:g}), check the data "
            f"scaling (diffusion expects data roughly in [-1, 1]), enable grad_clip "
            f"(now {config.grad_clip}), or add warmup_steps")
    state.optimizer.step()
    if state.ema is not None:
        state.ema.update_parameters(state.model)
    return loss_val, norm_val


def train(model: nn.Module, loss_fn: LossFn, data: Batch, config: TrainConfig,
          resume: bool = False, progress: bool = True,
          callback: Callable[[StepInfo], None] | None = None,
          spec: DiffusionSpec | None = None) -> TrainResult:
    """Train ``model`` on in-memory ``data`` by minimising ``loss_fn`` (chapters 6, 7).

    ``data``: a tensor (N, ...) or a tuple of tensors sharing N (moved to the device once);
    ``loss_fn(model, batch, generator) -> scalar tensor``, where ``batch`` has the form of
    ``data`` and ``generator`` is the loop's CPU ``torch.Generator`` (seeded with
    ``config.seed``, saved in checkpoints): draw noise with
    ``torch.randn(shape, generator=generator).to(device)`` for exact, device-independent runs.
    ``spec``: the diffusion a diffusion model is trained for, stored in every checkpoint.

    ``resume=True`` continues from ``config.ckpt_path`` if that file exists (else starts
    afresh) up to ``config.steps``. A NaN/inf loss or gradient raises NonFiniteLossError
    before the bad update and before any checkpoint is written.
    """
    tensors, single = _check_args(model, loss_fn, data, config, resume)
    n = tensors[0].shape[0]
    device = pick_device(config.device)
    # the device type to autocast on ("cuda" / "cpu"), or None for float32
    use_amp = ("cuda" if config.amp and device.type == "cuda" else
               "cpu" if config.amp_cpu and device.type == "cpu" else None)
    if config.amp and device.type != "cuda":
        warnings.warn(f"amp=True is used on CUDA only; training in float32 on {device}",
                      stacklevel=2)
    model.to(device)
    tensors = tuple(x.to(device) for x in tensors)
    st = _new_state(model, config, n)
    if resume and Path(config.ckpt_path).is_file():
        _resume(st, config.ckpt_path)

    def checkpoint(step: int) -> None:
        save_checkpoint(config.ckpt_path, model, st.optimizer, st.ema, step=step,
                        generator=st.generator, spec=spec,
                        extra={"history": st.history, "grad_norms": st.grad_norms,
                               "run": st.run_info, "train_config": asdict(config)})

    t0 = time.perf_counter()
    try:
        _run_steps(st, loss_fn, tensors, single, config, device, use_amp, progress, callback,
                   checkpoint, t0)
    finally:
        model.eval()
    return TrainResult(model=model, ema_model=st.ema.module.eval() if st.ema is not None else None,
                       history=st.history, steps_done=max(st.start, len(st.history)),
                       seconds=time.perf_counter() - t0, grad_norms=st.grad_norms)


def _run_steps(st: _State, loss_fn: LossFn, tensors: tuple[torch.Tensor, ...], single: bool,
               config: TrainConfig, device: torch.device, use_amp: str | None, progress: bool,
               callback: Callable[[StepInfo], None] | None,
               checkpoint: Callable[[int], None], t0: float) -> None:
    """Steps st.start + 1 .. config.steps (or until the time budget), with progress,
    callbacks and checkpoints."""
    from tqdm.auto import tqdm

    n = tensors[0].shape[0]
    max_norm = config.grad_clip if config.grad_clip is not None else math.inf
    st.model.train()
    bar = tqdm(total=config.steps, initial=st.start, disable=not progress, desc="train",
               dynamic_ncols=True)
    perm_cache: dict[int, torch.Tensor] = {}
    try:
        for step in range(st.start, config.steps):  # 0-based; the user sees step + 1
            k = step + 1
            lr = lr_at(config, k)
            for group in st.optimizer.param_groups:
                group["lr"] = lr
            idx = batch_indices(step, n, config.batch_size, config.seed, perm_cache).to(device)
            batch = tensors[0][idx] if single else tuple(x[idx] for x in tensors)
            loss_val, norm_val = _optimizer_step(st, loss_fn, batch, use_amp, max_norm, k, config)
            st.history.append(loss_val)
            st.grad_norms.append(norm_val)
            bar.update(1)
            if k % config.log_every == 0 or k == config.steps:
                recent = st.history[-config.log_every:]
                bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
            if callback is not None:
                callback(StepInfo(step=k, loss=loss_val, grad_norm=norm_val, lr=lr, model=st.model))
            out_of_time = (config.max_seconds is not None
                           and time.perf_counter() - t0 >= config.max_seconds)
            if config.ckpt_path is not None and (
                    k == config.steps or out_of_time
                    or (config.ckpt_every and k % config.ckpt_every == 0)):
                checkpoint(k)
            if out_of_time:
                break
    finally:
        bar.close()


def _warmup_ema_fn(decay: float):
    # AveragedModel calls this with n = the number of updates averaged so far (>= 1).
    @torch.no_grad()
    def update(ema_params, params, n_averaged) -> None:
        n = float(n_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(ema_params[0]) or torch.is_complex(ema_params[0]):
            torch._foreach_lerp_(ema_params, params, 1 - d)
        else:  # integer buffers (e.g. BatchNorm's num_batches_tracked)
            for e, p in zip(ema_params, params, strict=True):
                e.copy_(e * d + p * (1 - d))

    return update


__all__ = ["pick_device", "TrainConfig", "TrainResult", "StepInfo", "train",
           "NonFiniteLossError", "batch_indices", "lr_at", "LossFn"]
