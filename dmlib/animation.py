"""Compact animations of a reverse (sampling) trajectory: 2-D points (chapter 6) or images
(``image_trajectory_html``, chapter 7).

``ddpm_sample(..., return_trajectory=True)`` returns a dict {t: x_t} with x_t of shape
(N, 2). ``trajectory_html`` draws a few of those frames (at most 20, evenly spaced in t,
always the first and the last) as a small matplotlib animation and returns the HTML of
``FuncAnimation.to_jshtml`` (PNG frames embedded in base64, with play / step controls), so
it shows in a notebook and on the web without a running kernel. Size: about 20-40 kB per
frame at the defaults (360 px wide for 2-D points, 320 px for image grids).

The player needs nothing from the network: matplotlib's template asks a CDN for its button
icons (Font Awesome); ``_to_html`` drops that link and writes the buttons as plain text
symbols. A saved notebook that is not trusted (a fresh clone) cannot run the player's
JavaScript, so ``dmlib.tools.views`` stores the same frames as an animated GIF there.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

MAX_FRAMES = 20


def select_frames(steps: Sequence[int], n_frames: int = MAX_FRAMES) -> list[int]:
    """Up to ``n_frames`` of ``steps`` (sorted from the largest t, the noise, down to the
    smallest, the samples), evenly spaced by position, always keeping the first and the
    last. Chapter 6."""
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or not 2 <= n_frames <= MAX_FRAMES:
        raise ValueError(f"n_frames must be an int in 2..{MAX_FRAMES} (animations stay small), "
                         f"got {n_frames!r}")
    steps = sorted({int(s) for s in steps}, reverse=True)
    if len(steps) <= n_frames:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, n_frames)).astype(int))
    return [steps[i] for i in idx]


# matplotlib's player buttons are Font Awesome icons loaded from a CDN; these symbols need
# no download (and render in DejaVu Sans, Chromium's and JupyterLab's fallback font).
_ICONS = {"fa fa-minus": "&minus;", "fa fa-fast-backward": "|&#9664;&#9664;",
          "fa fa-step-backward": "|&#9664;", "fa fa-play fa-flip-horizontal": "&#9664;",
          "fa fa-pause": "&#10074;&#10074;", "fa fa-play": "&#9654;",
          "fa fa-step-forward": "&#9654;|", "fa fa-fast-forward": "&#9654;&#9654;|",
          "fa fa-plus": "+"}


def offline_jshtml(html: str) -> str:
    """A ``to_jshtml`` player without its CDN stylesheet (icons become text symbols) whose
    buttons work on the first click inside JupyterLab."""
    import re

    html = re.sub(r'<link rel="stylesheet"\s+href="https://[^"]*font-awesome[^"]*">', "", html)
    # A press on the player must reach its button and not JupyterLab's notebook, whose
    # mouse-down handler selects the cell and may scroll it: the button then moves away
    # from under the pointer and the first click is lost.
    html = html.replace('<div class="animation">',
                        '<div class="animation" onmousedown="event.stopPropagation()">', 1)
    for cls, text in _ICONS.items():
        html = html.replace(f'<i class="{cls}"></i>', f'<span class="anim-icon">{text}</span>')
    # A player whose output was replaced (the cell re-run, the notebook closed) must stop its
    # timer instead of writing to an element that no longer exists.
    html = html.replace(_SET_FRAME, _SET_FRAME_GUARDED, 1)
    return html


_SET_FRAME = """    document.getElementById(this.img_id).src =
            this.frames[this.current_frame].src;"""
_SET_FRAME_GUARDED = """    var img = document.getElementById(this.img_id);
    if (!img) { this.pause_animation(); return; }
    img.src = this.frames[this.current_frame].src;"""


def _to_html(fig, update, n_frames: int, interval_ms: int) -> str:
    """``FuncAnimation(fig, update)`` as jshtml (PNG frames in base64, no CDN); closes the
    figure."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    anim = FuncAnimation(fig, update, frames=n_frames, interval=interval_ms, blit=False)
    try:
        return offline_jshtml(anim.to_jshtml(default_mode="once"))
    finally:
        plt.close(fig)


def trajectory_html(trajectory: Mapping[int, torch.Tensor], n_frames: int = 16,
                    lim: float = 3.0, title: str = "reverse process", size: float = 4.5,
                    dpi: int = 80, interval_ms: int = 250, n_points: int = 1000,
                    reference: torch.Tensor | None = None) -> str:
    """Render {t: x_t (N, 2)} as an animation and return its HTML (``to_jshtml``). Chapter 6.

    Frames: ``select_frames(trajectory keys, n_frames)``, from x_T (noise) to x_0; at most
    ``n_points`` points are drawn (the first ones). ``reference``: optional (M, 2) data drawn
    in light grey behind every frame. ``size`` (inches) and ``dpi`` set the frame size;
    ``interval_ms`` the delay between frames. The figure is closed before returning.
    """
    import matplotlib.pyplot as plt

    if not isinstance(trajectory, Mapping) or len(trajectory) == 0:
        raise ValueError("trajectory must be a non-empty dict {t: x_t} (from ddpm_sample(..., "
                         "return_trajectory=True))")
    frames = select_frames(list(trajectory), n_frames)
    pts = {}
    for t in frames:
        x = trajectory[t]
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"trajectory[{t}] must be a tensor of shape (N, 2), got {got}")
        pts[t] = x[:n_points].detach().cpu().double().numpy()
    if not lim > 0:
        raise ValueError(f"lim must be positive (the half-width of the square axes), got {lim!r}")

    fig, ax = plt.subplots(figsize=(size, size), dpi=dpi)
    if reference is not None:
        ref = reference[:2000].detach().cpu().double().numpy()
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="0.85", label="data")
    scat = ax.scatter(pts[frames[0]][:, 0], pts[frames[0]][:, 1], s=3, c="C0", label="x_t")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    ax.set_xlabel("x[0]", fontsize=10)
    ax.set_ylabel("x[1]", fontsize=10)
    ax.tick_params(labelsize=9)
    ax.legend(loc="upper right", fontsize=9, markerscale=3)
    label = ax.set_title(f"{title}: t = {frames[0]}", fontsize=11)
    fig.tight_layout()

    def update(i: int):
        scat.set_offsets(pts[frames[i]])
        label.set_text(f"{title}: t = {frames[i]}")
        return scat, label

    return _to_html(fig, update, len(frames), interval_ms)


def image_trajectory_html(trajectory: Mapping[int, torch.Tensor], n_frames: int = 12,
                          nrow: int = 8, title: str = "reverse process", size: float = 4.0,
                          dpi: int = 80, interval_ms: int = 300, t_label=None) -> str:
    """Render {t: x_t (N, C, H, W) in [-1, 1]} as an animated image grid and return its HTML
    (``to_jshtml``). Frames as in ``trajectory_html``; ``t_label(t)`` formats the frame title
    (default ``f"t = {t}"``, e.g. to show the original time of a respaced step). Chapter 7.
    """
    import matplotlib.pyplot as plt

    from .plotting import make_grid

    if not isinstance(trajectory, Mapping) or len(trajectory) == 0:
        raise ValueError("trajectory must be a non-empty dict {t: x_t} (from ddpm_sample(..., "
                         "return_trajectory=True))")
    frames = select_frames(list(trajectory), n_frames)
    grids = {}
    for t in frames:
        x = trajectory[t]
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"trajectory[{t}] must be images of shape (N, C, H, W), got {got}")
        grids[t] = make_grid(x.detach().cpu().clamp(-1, 1), nrow=nrow)
    label_of = t_label or (lambda t: f"t = {t}")
    g0 = grids[frames[0]]
    h, w = g0.shape[:2]
    fig, ax = plt.subplots(figsize=(size, size * h / w + 0.4), dpi=dpi)
    im = ax.imshow(g0, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    label = ax.set_title(f"{title}: {label_of(frames[0])}", fontsize=10)
    fig.tight_layout()

    def update(i: int):
        im.set_data(grids[frames[i]])
        label.set_text(f"{title}: {label_of(frames[i])}")
        return im, label

    return _to_html(fig, update, len(frames), interval_ms)


__all__ = ["MAX_FRAMES", "select_frames", "offline_jshtml", "trajectory_html", "image_trajectory_html"]
