"""Shared by the bench scripts (run as ``python bench/bench_x.py``, so this is importable)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def timeit(fn, min_time: float = 2.0, warmup: int = 2) -> float:
    """Seconds per call: warm up, then repeat until ``min_time`` has passed."""
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def write_json(path: Path, data) -> None:
    """Write ``data`` as JSON atomically (a half-written results file is never left behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
