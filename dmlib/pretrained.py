"""The checkpoints shipped in ``data/checkpoints/``, verified by sha256 before loading
(chapter 7).

=====================  ==========================================================
name                   what it is
=====================  ==========================================================
``mnist_unet``         the chapter-7 U-Net (EMA weights, v target), ``--preset ship``
``mnist_unet_eps``     the first chapter-7 U-Net (eps target, 5,000 steps), kept for
                       chapter 8 and the benchmarks measured on it
``mnist_classifier``   the MNIST classifier that judges sample quality
``mnist_cond_unet``    the class-conditional U-Net of chapter 9 (CFG, null label
                       10), ``python -m dmlib.train mnist-cond``
=====================  ==========================================================

Each file's sha256 is pinned here (and written beside it as ``<file>.sha256``); a changed,
truncated or missing file gives an error that says how to restore it. How each was made
(command, log, final metrics) is in ``data/checkpoints/README.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .checkpoint import load_diffusion_model, load_model, sha256_file
from .spec import DiffusionSpec

#: The repo's ``data/checkpoints`` (dmlib/pretrained.py -> repo/data/checkpoints).
CHECKPOINT_DIR: Path = Path(__file__).resolve().parents[1] / "data" / "checkpoints"

#: name -> (file name, sha256 of the file as committed)
PRETRAINED: dict[str, tuple[str, str]] = {
    # chapter 7: preset "ship" (v target, 15,000 steps; data/checkpoints/README.md)
    "mnist_unet": ("mnist_unet.pt",
                   "5f33cc5a81c17c58941202ab879a58f6d07b5ab7b53c0472a922a943ad6500e3"),
    # the first shipped U-Net (eps target, 5,000 steps); chapter 8 and the benchmarks that
    # measured it (bench/results/cnf_mnist*.json, guidance.json, mnist.json) use it
    "mnist_unet_eps": ("mnist_unet_eps.pt",
                       "b9f8ca6069d3e0ef644b1b2116aed3aba481776332e518a978ceb0e38a2813cc"),
    "mnist_classifier": ("mnist_classifier.pt",
                         "af048d0f0653ac98f14f695806c4f866b53a8d0d67ee6d8583cc6f8195bc1163"),
    # chapter 9: preset "cond", 3,000 steps (data/checkpoints/README.md)
    "mnist_cond_unet": ("mnist_cond_unet.pt",
                        "0e3f6c40a3c14f2253fc4c2b1310cac65cf600bc976a3f4741d766cbc20a1b43"),
}


def pretrained_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Path of a shipped checkpoint (``root``, else ``$DMLIB_DATA_DIR/checkpoints``, else
    the repo's ``data/checkpoints``)."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained checkpoint {name!r}; choose one of {sorted(PRETRAINED)}")
    if root is None:
        env = os.environ.get("DMLIB_DATA_DIR", "").strip()
        root = Path(env) / "checkpoints" if env else CHECKPOINT_DIR
    return Path(root) / PRETRAINED[name][0]


def verify_pretrained(name: str, root: str | os.PathLike | None = None) -> str:
    """Check the file's sha256 against the pinned one; return the digest."""
    path = pretrained_path(name, root)
    fname, expected = PRETRAINED[name]
    hint = (f"restore it with `git checkout -- data/checkpoints/{fname}` from the repository "
            f"root (see data/checkpoints/README.md for the command that made it)")
    if not path.is_file():
        raise FileNotFoundError(f"shipped checkpoint not found: {path}; {hint}")
    digest = sha256_file(path)
    if digest != expected:
        raise ValueError(f"checksum mismatch for {path}: expected sha256 {expected}, got "
                         f"{digest}. The file was modified or is damaged; {hint}")
    return digest


#: The shipped diffusion models: load them with ``load_pretrained_diffusion``.
DIFFUSION_MODELS: tuple[str, ...] = ("mnist_unet", "mnist_unet_eps", "mnist_cond_unet")


def load_pretrained(name: str, root: str | os.PathLike | None = None) -> nn.Module:
    """Verify and load a shipped model that is not a diffusion model (the classifier), in
    eval mode on the CPU. Chapter 7."""
    if name in DIFFUSION_MODELS:
        raise ValueError(f"{name!r} is a diffusion model: load it with "
                         f"load_pretrained_diffusion({name!r}), which also returns the "
                         f"DiffusionSpec it must be sampled with")
    verify_pretrained(name, root)
    return load_model(pretrained_path(name, root))


def load_pretrained_diffusion(name: str = "mnist_unet", root: str | os.PathLike | None = None
                              ) -> tuple[nn.Module, DiffusionSpec]:
    """Verify and load a shipped diffusion model with its ``DiffusionSpec`` (eval mode,
    CPU): ``model, spec = load_pretrained_diffusion("mnist_unet")``. Chapter 7."""
    if name not in DIFFUSION_MODELS:
        raise ValueError(f"{name!r} is not a diffusion model; use load_pretrained({name!r})")
    verify_pretrained(name, root)
    return load_diffusion_model(pretrained_path(name, root))


__all__ = ["CHECKPOINT_DIR", "PRETRAINED", "DIFFUSION_MODELS", "pretrained_path",
           "verify_pretrained", "load_pretrained", "load_pretrained_diffusion"]
