"""Checkpoints that are written atomically and checked on load (chapters 6, 7).

A checkpoint is a plain dict saved with ``torch.save``:

    format_version, dmlib_version, model_class, model_config (a dict of plain values),
    diffusion_spec (``DiffusionSpec.to_dict()`` for a diffusion model, None otherwise),
    model (state dict), optimizer (state dict or None), ema (state dict or None),
    step, extra (dict of plain values), rng (torch CPU / loop generator / numpy /
    python random / CUDA states)

A diffusion model's weights mean nothing without its schedule and prediction target, so
``load_diffusion_model`` returns both and refuses a file without a spec.

Everything in it is a tensor, a number, a string or a list/tuple/dict of those (numpy's
RNG state is converted to a tensor), so ``torch.load(weights_only=True)`` reads it: loading
a checkpoint never runs pickled code.

Saving writes to a temporary file in the same directory, fsyncs it and renames it over
the target with ``os.replace`` (atomic on POSIX and Windows): a crash mid-save leaves the
previous checkpoint intact, never a half-written file.
"""

from __future__ import annotations

import dataclasses
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from .spec import DiffusionSpec

FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for a different model / optimizer / training setup."""


class CheckpointCorruptError(ValueError):
    """The checkpoint file exists but cannot be read (truncated, corrupt, not a checkpoint)."""


class MissingSpecError(CheckpointMismatchError):
    """A diffusion model was loaded from a file that does not say which diffusion it was
    trained for (written before ``DiffusionSpec`` existed)."""


# -- small helpers ----------------------------------------------------------------------
def config_to_dict(config: Any) -> dict[str, Any] | None:
    """A model's ``config`` dataclass as a dict of plain values (tuples become lists so the
    comparison does not depend on how it was stored); ``None`` for models without one."""
    if config is None:
        return None
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"model.config must be a dataclass, got {type(config).__name__}")
    return _plain(dataclasses.asdict(config))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def get_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """All RNG states that influence training, in a weights_only-loadable form."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": [py_version, list(py_internal), py_gauss],
        "generator": generator.get_state() if generator is not None else None,
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    return state


def set_rng_state(state: Mapping[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what ``get_rng_state`` stored (global torch, numpy, python, CUDA when the
    number of devices matches, and ``generator`` when given)."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["key"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if generator is not None:
        if state.get("generator") is None:
            raise CheckpointMismatchError("the checkpoint holds no generator state to restore")
        generator.set_state(state["generator"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# -- save -------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    ema: nn.Module | None = None, step: int = 0,
                    extra: Mapping[str, Any] | None = None,
                    generator: torch.Generator | None = None,
                    spec: DiffusionSpec | None = None) -> Path:
    """Write a checkpoint atomically (temp file in the same directory, fsync, os.replace).

    ``ema`` is the ``torch.optim.swa_utils.AveragedModel`` (or any module) holding the EMA
    weights; ``spec`` the diffusion a diffusion model is trained for (stored as plain
    values); ``extra`` a dict of plain values (numbers, strings, lists, tensors);
    ``generator`` the training loop's generator, whose state is stored with the global
    RNG states. Returns the path. Chapters 6, 7.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if spec is not None and not isinstance(spec, DiffusionSpec):
        raise TypeError(f"spec must be a DiffusionSpec or None, got {type(spec).__name__}")
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "dmlib_version": _dmlib_version(),
        "model_class": type(model).__name__,
        "model_config": config_to_dict(getattr(model, "config", None)),
        "diffusion_spec": spec.to_dict() if spec is not None else None,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "ema": ema.state_dict() if ema is not None else None,
        "step": step,
        "extra": dict(extra) if extra is not None else {},
        "rng": get_rng_state(generator),
    }
    _atomic_save(payload, path)
    return path


def _atomic_save(payload: Mapping[str, Any], path: Path) -> None:
    """torch.save to a temp file in the same directory, fsync, os.replace, fsync the dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(payload), f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read-only, in 1 MB blocks). Chapters 3, 7."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(d: Path) -> None:
    # Persist the rename itself (POSIX); directories cannot be opened this way on Windows.
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _dmlib_version() -> str:
    from . import __version__

    return __version__


# -- load -------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint dict without applying it (``weights_only=True``: no code runs).

    Raises FileNotFoundError naming the path, or CheckpointCorruptError for a truncated /
    corrupt / foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path} (train first, or check the path)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except Exception as e:  # torch.load fails in many ways on bad bytes (even IndexError)
        raise CheckpointCorruptError(
            f"cannot read checkpoint {path}: the file is truncated, corrupt or not a dmlib "
            f"checkpoint ({type(e).__name__}: {str(e)[:200]}). Delete it and train again, or "
            f"restore a backup") from e
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointCorruptError(f"{path} is not a dmlib checkpoint (no format_version); "
                                     f"was it written by dmlib.checkpoint.save_checkpoint?")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointCorruptError(
            f"{path} has checkpoint format {ckpt['format_version']} but this dmlib reads up to "
            f"{FORMAT_VERSION}; upgrade dmlib")
    return ckpt


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, Any],
                     what: str, path: Path | str) -> None:
    """Raise CheckpointMismatchError naming the first missing/unexpected key or shape
    difference between ``expected`` (the live module) and ``found`` (the checkpoint)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        raise CheckpointMismatchError(
            f"{what} in {path} does not fit: missing keys {missing[:5]}, unexpected keys "
            f"{unexpected[:5]}. Build the same architecture as when the checkpoint was saved")
    for k, v in expected.items():
        w = found[k]
        if isinstance(v, torch.Tensor) and isinstance(w, torch.Tensor) and v.shape != w.shape:
            raise CheckpointMismatchError(
                f"{what} in {path}: parameter {k!r} has shape {tuple(w.shape)} in the checkpoint "
                f"but {tuple(v.shape)} in the model. Build the model with the checkpoint's config")


def load_checkpoint(path: str | os.PathLike, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    ema: nn.Module | None = None, map_location: str | torch.device = "cpu",
                    generator: torch.Generator | None = None) -> dict:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``ema``, ``generator`` if given)
    after checking that it fits; returns the checkpoint dict (``step``, ``extra``, ``rng``...).

    Checks, in order: the model class name, the config (every differing field is named),
    the state dict keys and shapes. Any difference raises CheckpointMismatchError (a
    ValueError). Global RNG states are *not* touched here: call ``set_rng_state(ckpt["rng"])``
    to resume a run exactly (``dmlib.training.train(resume=True)`` does). Chapters 6, 7.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    name = type(model).__name__
    if ckpt["model_class"] != name:
        raise CheckpointMismatchError(
            f"{path} holds a {ckpt['model_class']} but the model is a {name}; build a "
            f"{ckpt['model_class']} (dmlib.checkpoint.load_model(path) does it for you)")
    want = config_to_dict(getattr(model, "config", None))
    have = ckpt["model_config"]
    if want is not None and have is not None and want != have:
        diffs = [f"{k}: checkpoint {have.get(k, '<absent>')!r} vs model {want.get(k, '<absent>')!r}"
                 for k in sorted(set(want) | set(have)) if want.get(k) != have.get(k)]
        raise CheckpointMismatchError(
            f"{path} was saved with a different {name} config: " + "; ".join(diffs) +
            f". Build the model with the checkpoint's config ({name}Config(**ckpt['model_config']))"
            f" or use dmlib.checkpoint.load_model(path)")
    check_state_dict(model.state_dict(), ckpt["model"], "the model state", path)
    if ema is not None:
        if ckpt["ema"] is None:
            raise CheckpointMismatchError(f"{path} has no EMA weights (trained with "
                                          f"ema_decay=None); do not pass ema=")
        check_state_dict(ema.state_dict(), ckpt["ema"], "the EMA state", path)
    if optimizer is not None and ckpt["optimizer"] is None:
        raise CheckpointMismatchError(f"{path} has no optimizer state; do not pass optimizer=")
    model.load_state_dict(ckpt["model"])
    if ema is not None:
        ema.load_state_dict(ckpt["ema"])
    if optimizer is not None:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointMismatchError(
                f"the optimizer state in {path} does not fit this optimizer ({e}); use the same "
                f"optimizer class and parameter groups as when it was saved") from e
    if generator is not None:
        if ckpt["rng"].get("generator") is None:
            raise CheckpointMismatchError(f"{path} holds no generator state")
        generator.set_state(ckpt["rng"]["generator"])
    return ckpt


def load_model(path: str | os.PathLike, use_ema: bool = True,
               map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a dmlib model (``MLPDenoiser`` or ``UNet``) from a checkpoint alone.

    With ``use_ema`` (default) and EMA weights present, returns the EMA weights (the ones
    to sample with); the model is in eval mode. Chapters 6, 7.
    """
    from .models import build_model

    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    if ckpt["model_config"] is None:
        raise CheckpointMismatchError(f"{path} holds a {ckpt['model_class']} without a config; "
                                      f"build it yourself and call load_checkpoint(path, model)")
    model = build_model(ckpt["model_class"], ckpt["model_config"])
    state = ckpt["model"]
    if use_ema and ckpt["ema"] is not None:
        # AveragedModel stores its copy under "module." plus an "n_averaged" counter.
        state = ckpt["ema"]
        if any(k.startswith("module.") for k in state):
            state = {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}
    check_state_dict(model.state_dict(), state, "the EMA state" if state is not ckpt["model"]
                     else "the model state", path)
    model.load_state_dict(state)
    return model.eval()


def read_spec(path: str | os.PathLike, ckpt: Mapping[str, Any] | None = None) -> DiffusionSpec:
    """The ``DiffusionSpec`` stored in a checkpoint (``ckpt``: the already-read dict, to avoid
    reading twice). A file written before specs existed raises ``MissingSpecError`` naming
    the fix. Chapter 7."""
    ckpt = read_checkpoint(path) if ckpt is None else ckpt
    d = ckpt.get("diffusion_spec")
    if d is None:
        raise MissingSpecError(
            f"{path} does not say which diffusion its model was trained for (no DiffusionSpec: "
            f"it was written before dmlib 0.2, or it is not a diffusion model). Re-export it "
            f"with its spec: `python -m dmlib.train export RUN_DIR OUT` for a training run, or "
            f"dmlib.checkpoint.add_spec(path, DiffusionSpec(schedule=..., T=..., "
            f"prediction_type=...)) with the settings it was trained with")
    return DiffusionSpec.from_dict(d)


def add_spec(path: str | os.PathLike, spec: DiffusionSpec) -> Path:
    """Write ``spec`` into an existing checkpoint (atomically; everything else kept): the
    fix for files written before specs existed. You must know the settings it was trained
    with. Chapter 7."""
    if not isinstance(spec, DiffusionSpec):
        raise TypeError(f"spec must be a DiffusionSpec, got {type(spec).__name__}")
    path = Path(path)
    ckpt = dict(read_checkpoint(path))
    ckpt["diffusion_spec"] = spec.to_dict()
    _atomic_save(ckpt, path)
    return path


def load_diffusion_model(path: str | os.PathLike, use_ema: bool = True,
                         map_location: str | torch.device = "cpu"
                         ) -> tuple[nn.Module, DiffusionSpec]:
    """A diffusion model and the ``DiffusionSpec`` it was trained for, from one file: what
    ``dmlib.sampling.sample(model, spec, ...)`` needs. Raises ``MissingSpecError`` for files
    without a spec. Chapter 7."""
    spec = read_spec(path, read_checkpoint(path, map_location))
    return load_model(path, use_ema=use_ema, map_location=map_location), spec


__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "load_model",
           "CheckpointMismatchError", "CheckpointCorruptError", "get_rng_state",
           "set_rng_state", "config_to_dict", "FORMAT_VERSION", "sha256_file", "read_spec",
           "add_spec", "load_diffusion_model", "MissingSpecError"]
