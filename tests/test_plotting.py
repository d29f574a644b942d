"""Tests for dmlib.plotting (Agg backend): titles, limits, grid tiling, input errors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dmlib.plotting import (image_grid, make_grid, plot_curve, plot_trajectories,  # noqa: E402
                            scatter2d, scatter_grid)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_scatter2d_limits_title_points():
    x = torch.randn(50, 2, requires_grad=True)  # grad tensors are fine
    ax = scatter2d(x, lim=2.5, title="x_0", label="data")
    assert ax.get_title() == "x_0"
    assert ax.get_xlim() == (-2.5, 2.5) and ax.get_ylim() == (-2.5, 2.5)
    assert ax.get_aspect() == 1.0
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(offsets), x.detach().numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data"]
    # Overlay on the same axes.
    ax2 = scatter2d(np.zeros((3, 2)), ax=ax, label="samples", color="red")
    assert ax2 is ax and len(ax.collections) == 2


def test_scatter_grid():
    xs = [torch.randn(20, 2) * s for s in (1, 2, 3)]
    fig = scatter_grid(xs, titles=["t=1", "t=10", "t=100"], lim=4)
    assert [a.get_title() for a in fig.axes] == ["t=1", "t=10", "t=100"]
    assert all(a.get_xlim() == (-4, 4) and a.get_ylim() == (-4, 4) for a in fig.axes)
    with pytest.raises(ValueError, match="3 point sets but 2 titles"):
        scatter_grid(xs, titles=["a", "b"])
    with pytest.raises(ValueError, match="non-empty sequence"):
        scatter_grid([])


def brute_force_grid(imgs, nrow, lo, hi, pad, pad_value):
    """Place every pixel one at a time."""
    n, c, h, w = imgs.shape
    ncol = min(nrow, n)
    rows = (n + ncol - 1) // ncol
    out = np.full((pad + rows * (h + pad), pad + ncol * (w + pad), c), pad_value, dtype=float)
    for k in range(n):
        r, col = divmod(k, ncol)
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    v = (imgs[k, ch, i, j] - lo) / (hi - lo)
                    out[pad + r * (h + pad) + i, pad + col * (w + pad) + j, ch] = min(max(v, 0.0), 1.0)
    return out[..., 0] if c == 1 else out


@pytest.mark.parametrize("n, c, nrow, pad, vr", [
    (10, 1, 4, 2, (-1, 1)),   # incomplete last row
    (6, 3, 3, 1, (0, 1)),     # RGB
    (3, 1, 8, 0, (-1, 1)),    # fewer images than nrow, no padding
])
def test_make_grid_matches_brute_force(n, c, nrow, pad, vr):
    rng = np.random.default_rng(n)
    imgs = rng.uniform(-1.3, 1.3, (n, c, 5, 4))  # includes out-of-range values (clipped)
    got = make_grid(torch.tensor(imgs), nrow=nrow, value_range=vr, pad=pad, pad_value=0.25)
    ref = brute_force_grid(imgs, nrow, *vr, pad, 0.25)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_make_grid_accepts_nhw():
    imgs = np.random.default_rng(0).uniform(0, 1, (4, 3, 3))
    np.testing.assert_allclose(make_grid(imgs, nrow=2, value_range=(0, 1)),
                               brute_force_grid(imgs[:, None], 2, 0, 1, 2, 1.0))


def test_image_grid_axes():
    imgs = torch.rand(12, 1, 28, 28) * 2 - 1
    ax = image_grid(imgs, nrow=6, title="samples")
    assert ax.get_title() == "samples"
    shown = ax.get_images()[0].get_array()
    assert shown.shape == (2 + 2 * 30, 2 + 6 * 30)
    np.testing.assert_allclose(np.asarray(shown), make_grid(imgs, nrow=6), atol=1e-12)
    assert ax.get_images()[0].get_clim() == (0.0, 1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=torch.zeros(2, 2, 5, 5)), r"C = 1 or 3"),
    (dict(images=torch.zeros(5, 5)), r"\(N, C, H, W\)"),
    (dict(images=torch.zeros(0, 1, 5, 5)), r"N >= 1"),
    (dict(images=torch.zeros(2, 1, 5, 5), nrow=0), "nrow"),
    (dict(images=torch.zeros(2, 1, 5, 5), value_range=(1, -1)), "low < high"),
    (dict(images=torch.zeros(2, 1, 5, 5), pad=-1), "pad"),
])
def test_make_grid_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_grid(**kwargs)


def test_plot_trajectories_array_and_dict():
    K, N = 5, 30
    traj = torch.cumsum(torch.randn(K, N, 2) * 0.1, 0)
    ax = plot_trajectories(traj, n_paths=10, lim=2.0, title="paths")
    assert ax.get_title() == "paths" and ax.get_xlim() == (-2.0, 2.0)
    assert len(ax.get_lines()) == 10  # one faint path per particle
    np.testing.assert_allclose(ax.get_lines()[3].get_xydata(), traj[:, 3].numpy(), rtol=1e-6)
    starts, ends = ax.collections
    np.testing.assert_allclose(np.asarray(starts.get_offsets()), traj[0, :10].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ends.get_offsets()), traj[-1, :10].numpy(), rtol=1e-6)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["start", "end"]

    d = {100: traj[0], 50: traj[2], 0: traj[4]}
    ax = plot_trajectories(d)
    assert len(ax.get_lines()) == N
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["start (t=100)", "end (t=0)"]


@pytest.mark.parametrize("traj, kwargs, match", [
    (torch.zeros(1, 5, 2), {}, "K >= 2"),
    (torch.zeros(3, 5, 3), {}, r"\(K, N, 2\)"),
    ({1: torch.zeros(5, 2)}, {}, "at least 2 time points"),
    ({1: torch.zeros(5, 2), 0: torch.zeros(4, 2)}, {}, "same particles"),
    (torch.zeros(3, 5, 2), dict(n_paths=0), "n_paths"),
    (torch.zeros(3, 5, 2), dict(lim=-1), "lim must be a positive number"),
])
def test_plot_trajectories_errors(traj, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_trajectories(traj, **kwargs)


def test_plot_curve():
    t = np.arange(1, 11)
    ax = plot_curve(t, {"linear": t * 2.0, "cosine": torch.tensor(t ** 2.0)}, title="SNR",
                    xlabel="t", ylabel="SNR_t", logy=True)
    assert ax.get_title() == "SNR" and ax.get_xlabel() == "t" and ax.get_ylabel() == "SNR_t"
    assert ax.get_yscale() == "log"
    assert [t_.get_text() for t_ in ax.get_legend().get_texts()] == ["linear", "cosine"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), t ** 2.0)
    with pytest.raises(ValueError, match=r"ys\['b'\] has shape \(3,\) but x has shape \(10,\)"):
        plot_curve(t, {"a": t, "b": t[:3]})
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_curve(t, {})
    with pytest.raises(ValueError, match="x must be 1-D"):
        plot_curve(np.zeros((2, 5)), {"a": np.zeros((2, 5))})


def test_scatter_input_errors():
    with pytest.raises(ValueError, match=r"expected \(N, 2\) points, got \(5, 3\)"):
        scatter2d(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="torch.Tensor or a NumPy array"):
        scatter2d("points")
    with pytest.raises(ValueError, match="lim must be a positive number"):
        scatter2d(torch.zeros(5, 2), lim=0)
