"""Seeded mini-batches from in-memory tensors (chapters 6, 7).

Algorithm 1 (training) repeats "draw x_0 ~ q(x_0)"; in practice that is a shuffled
mini-batch. ``tensor_loader`` wraps tensors in a ``DataLoader`` whose shuffling comes from
its own seeded ``torch.Generator`` (so the batch order does not depend on how much other
code consumed the global RNG), and ``infinite_batches`` turns it into an endless stream
for step-based training loops.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, TensorDataset


def tensor_loader(*tensors: torch.Tensor, batch_size: int, shuffle: bool = True,
                  seed: int = 0, drop_last: bool = True) -> DataLoader:
    """A ``DataLoader`` over ``TensorDataset(*tensors)``, shuffled by a generator seeded with ``seed``.

    ``tensors``: one or more tensors sharing their first dimension N, e.g. ``(x0,)`` of shape
    (N, 2) or ``(images, labels)`` of shapes (N, 1, 28, 28), (N,). Each batch is a list with
    one (batch_size, ...) tensor per input. With ``drop_last`` (default) every batch is full,
    so N must be >= batch_size. Chapter 6.
    """
    if not tensors:
        raise ValueError("tensor_loader needs at least one tensor, e.g. tensor_loader(x0, batch_size=256)")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() == 0:
            raise ValueError(f"tensors[{i}] is a scalar; tensors need a first (example) dimension")
    n = tensors[0].shape[0]
    if n == 0:
        raise ValueError("tensor_loader got empty data (0 examples)")
    lengths = [t.shape[0] for t in tensors]
    if any(m != n for m in lengths):
        raise ValueError(f"all tensors must have the same first dimension (number of examples), "
                         f"got {lengths}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size={batch_size} is larger than the data ({n} examples), so "
                         f"drop_last=True would give no batch; lower batch_size or pass drop_last=False")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle,
                      drop_last=drop_last, generator=generator)


def infinite_batches(loader: DataLoader) -> Iterator:
    """Yield batches forever, starting a new epoch (a new shuffle) whenever one ends.

    For step-based loops: ``batches = infinite_batches(loader); x0, = next(batches)``.
    Raises ``ValueError`` if an epoch yields no batch (rather than looping forever).
    Chapter 6.
    """
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader yielded no batch in a whole epoch (empty data, or "
                             "drop_last with batch_size > number of examples)")
