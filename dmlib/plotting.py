"""Small matplotlib helpers used by every chapter.

Each helper draws on a given ``ax`` (or a new figure), sets its title and labels, and
returns the ``Axes`` (``scatter_grid`` returns the ``Figure``). Inputs may be torch tensors
(on any device, with or without grad) or NumPy arrays. 2-D scatters use equal aspect and
fixed limits so that plots of x_t at different t can be compared by eye.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _np(x, name: str = "x") -> np.ndarray:
    """A float NumPy copy of a tensor or array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    if isinstance(x, (np.ndarray, list, tuple)):
        return np.asarray(x, dtype=np.float64)
    raise TypeError(f"{name} must be a torch.Tensor or a NumPy array, got {type(x).__name__}")


def _points2d(x, name: str = "x") -> np.ndarray:
    a = _np(x, name)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"wrong shape for {name}: expected (N, 2) points, got {a.shape}")
    return a


def _check_lim(lim: float) -> float:
    if isinstance(lim, bool) or not isinstance(lim, (int, float)) or not lim > 0:
        raise ValueError(f"lim must be a positive number (axes span [-lim, lim]), got {lim!r}")
    return float(lim)


def _square(ax: Axes, lim: float) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def scatter2d(x, ax: Axes | None = None, lim: float = 3.0, title: str | None = None,
              label: str | None = None, s: float = 2, alpha: float = 0.5,
              color=None) -> Axes:
    """Scatter N points x of shape (N, 2) on [-lim, lim]^2 with equal aspect. All chapters.

    Returns the Axes; call it again with the same ``ax`` and a ``label`` to overlay sets
    (e.g. data vs samples; a legend is drawn when a label is given).
    """
    pts = _points2d(x)
    lim = _check_lim(lim)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=alpha, color=color, label=label,
               linewidths=0)
    _square(ax, lim)
    if title is not None:
        ax.set_title(title)
    if label is not None:
        ax.legend(loc="upper right", markerscale=4)
    return ax


def scatter_grid(xs: Sequence, titles: Sequence[str] | None = None, lim: float = 3.0,
                 s: float = 2, alpha: float = 0.5, size: float = 3.0) -> Figure:
    """A row of 2-D scatters sharing limits, e.g. x_t at several t (chapter 3).

    ``xs``: a sequence of (N_i, 2) point sets; ``titles``: one per set (or None).
    Returns the Figure; its axes are ``fig.axes``.
    """
    if isinstance(xs, (torch.Tensor, np.ndarray)) or len(xs) == 0:
        raise ValueError("xs must be a non-empty sequence (list) of (N, 2) point sets")
    if titles is not None and len(titles) != len(xs):
        raise ValueError(f"got {len(xs)} point sets but {len(titles)} titles; give one title "
                         f"per set or titles=None")
    lim = _check_lim(lim)
    fig, axes = plt.subplots(1, len(xs), figsize=(size * len(xs), size), squeeze=False)
    for i, (x, ax) in enumerate(zip(xs, axes[0])):
        scatter2d(x, ax=ax, lim=lim, s=s, alpha=alpha,
                  title=None if titles is None else titles[i])
    fig.tight_layout()
    return fig


def make_grid(images, nrow: int = 8, value_range: tuple[float, float] = (-1.0, 1.0),
              pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one picture (NumPy; torchvision's make_grid without torchvision).

    ``images``: (N, C, H, W) with C in {1, 3}, or (N, H, W); values in ``value_range`` are
    mapped to [0, 1] by (x - lo) / (hi - lo) and clipped. Image k goes to row k // nrow,
    column k % nrow; cells are separated by ``pad`` pixels of ``pad_value`` (also around
    the border). Returns (rows*(H+pad)+pad, ncol*(W+pad)+pad) for one channel, with a
    trailing 3 for RGB. Chapters 3, 7.
    """
    a = _np(images, "images")
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.shape[0] == 0:
        raise ValueError(f"images must have shape (N, C, H, W) with C = 1 or 3, or (N, H, W), "
                         f"and N >= 1; got {_np(images, 'images').shape}")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow <= 0:
        raise ValueError(f"nrow (images per row) must be a positive int, got {nrow!r}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative int, got {pad!r}")
    lo, hi = map(float, value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    n, c, h, w = a.shape
    a = np.clip((a - lo) / (hi - lo), 0.0, 1.0).transpose(0, 2, 3, 1)  # (N, H, W, C)
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    # Blank cells in the last row stay pad_value; reshape trick: (rows, ncol, H+p, W+p, C).
    cells = np.full((rows * ncol, h + pad, w + pad, c), pad_value, dtype=np.float64)
    cells[:n, pad:, pad:] = a
    grid = cells.reshape(rows, ncol, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (h + pad), ncol * (w + pad), c)
    grid = np.pad(grid, ((0, pad), (0, pad), (0, 0)), constant_values=pad_value)
    return grid[..., 0] if c == 1 else grid


def image_grid(images, nrow: int = 8, ax: Axes | None = None, title: str | None = None,
               value_range: tuple[float, float] = (-1.0, 1.0), pad: int = 2) -> Axes:
    """Show images (N, C, H, W) or (N, H, W) as one grid (``make_grid``), grayscale for C = 1.

    ``value_range`` is the range of the input: (-1, 1) for DDPM's scaling, (0, 1) otherwise.
    Returns the Axes (ticks off). Chapters 3, 7.
    """
    grid = make_grid(images, nrow=nrow, value_range=value_range, pad=pad)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(max(2.0, 6.0 * w / max(h, w)), max(2.0, 6.0 * h / max(h, w))))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def plot_trajectories(traj, ax: Axes | None = None, n_paths: int = 50, lim: float = 3.0,
                      title: str | None = None, alpha: float = 0.2) -> Axes:
    """Draw the paths of ``n_paths`` particles through K steps, with start and end markers.

    ``traj``: (K, N, 2) (K time points, N particles, in time order, e.g. x_T, ..., x_0 from
    sampling) or a dict {t: (N, 2)} taken in insertion order. Paths are faint lines; the
    first time point is marked with circles, the last with crosses, and a legend names
    them (with t when a dict is given). Returns the Axes. Chapter 6.
    """
    if isinstance(traj, Mapping):
        if len(traj) < 2:
            raise ValueError("traj needs at least 2 time points, got a dict with "
                             f"{len(traj)}")
        keys = list(traj)
        pts = [_points2d(traj[k], f"traj[{k!r}]") for k in keys]
        if len({p.shape for p in pts}) != 1:
            raise ValueError(f"every entry of traj must hold the same particles (equal (N, 2) "
                             f"shapes), got {[p.shape for p in pts]}")
        arr = np.stack(pts)
        start_label, end_label = f"start (t={keys[0]})", f"end (t={keys[-1]})"
    else:
        arr = _np(traj, "traj")
        if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[0] < 2:
            raise ValueError(f"traj must have shape (K, N, 2) with K >= 2 time points, or be a "
                             f"dict {{t: (N, 2)}}; got {arr.shape}")
        start_label, end_label = "start", "end"
    if isinstance(n_paths, bool) or not isinstance(n_paths, int) or n_paths <= 0:
        raise ValueError(f"n_paths must be a positive int, got {n_paths!r}")
    lim = _check_lim(lim)
    arr = arr[:, :n_paths]
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    # One call for all paths: columns of a (K, n) array are separate lines.
    ax.plot(arr[:, :, 0], arr[:, :, 1], color="gray", alpha=alpha, linewidth=0.8)
    ax.scatter(arr[0, :, 0], arr[0, :, 1], s=12, marker="o", color="tab:blue", label=start_label)
    ax.scatter(arr[-1, :, 0], arr[-1, :, 1], s=18, marker="x", color="tab:red", label=end_label)
    _square(ax, lim)
    ax.legend(loc="upper right")
    if title is not None:
        ax.set_title(title)
    return ax


def plot_curve(x, ys: Mapping[str, object], ax: Axes | None = None, title: str | None = None,
               xlabel: str | None = None, ylabel: str | None = None,
               logy: bool = False) -> Axes:
    """Line plot of several named curves over a shared x (e.g. loss vs step, SNR_t vs t).

    ``x``: (M,); ``ys``: {label: (M,)}. A legend lists the labels; ``logy`` uses a log
    y-axis. Returns the Axes. All chapters.
    """
    xa = _np(x, "x")
    if xa.ndim != 1:
        raise ValueError(f"x must be 1-D of shape (M,), got {xa.shape}")
    if not isinstance(ys, Mapping) or len(ys) == 0:
        raise ValueError("ys must be a non-empty dict {label: values of shape (M,)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for name, y in ys.items():
        ya = _np(y, f"ys[{name!r}]")
        if ya.shape != xa.shape:
            raise ValueError(f"ys[{name!r}] has shape {ya.shape} but x has shape {xa.shape}; "
                             f"each curve needs one value per x")
        ax.plot(xa, ya, label=str(name))
    if logy:
        ax.set_yscale("log")
    if title is not None:
        ax.set_title(title)
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    ax.legend()
    return ax
