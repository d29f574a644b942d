"""Seeding: one call makes a chapter reproducible (chapter 0)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch (CPU and all CUDA devices).

    Returns a fresh ``torch.Generator`` seeded with ``seed`` for code that prefers an
    explicit generator. Introduced in chapter 0; every chapter calls it first.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
