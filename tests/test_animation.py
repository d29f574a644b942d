"""Tests for dmlib.animation: frame selection, the HTML's frames, size and errors."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from dmlib.animation import MAX_FRAMES, select_frames, trajectory_html  # noqa: E402


def test_select_frames_keeps_ends_and_count():
    assert select_frames(range(101), 5) == [100, 75, 50, 25, 0]
    assert select_frames([3, 1, 2], 10) == [3, 2, 1]
    got = select_frames(range(1001), 20)
    assert len(got) == 20 and got[0] == 1000 and got[-1] == 0
    assert got == sorted(got, reverse=True)
    with pytest.raises(ValueError, match="n_frames"):
        select_frames(range(10), MAX_FRAMES + 1)
    with pytest.raises(ValueError, match="n_frames"):
        select_frames(range(10), 1)


def _traj(T=50, n=200):
    g = torch.Generator().manual_seed(0)
    return {t: torch.randn(n, 2, generator=g) * (1 + t / T) for t in range(T, -1, -1)}


def test_html_has_one_png_per_frame_and_stays_small():
    html = trajectory_html(_traj(), n_frames=8, reference=torch.zeros(10, 2))
    assert html.count("data:image/png;base64") == 8
    assert "<script" in html
    assert "https://" not in html and "font-awesome" not in html  # no CDN: works offline
    assert 'title="Play"' in html
    assert len(html) < 600_000  # ~20-40 kB per frame at the defaults
    assert matplotlib.pyplot.get_fignums() == []  # the figure was closed


def test_bad_trajectories():
    with pytest.raises(ValueError, match="non-empty dict"):
        trajectory_html({})
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        trajectory_html({1: torch.zeros(5, 3), 0: torch.zeros(5, 3)})
    with pytest.raises(ValueError, match="lim"):
        trajectory_html(_traj(5, 10), lim=0)


def test_image_trajectory_html_frames_and_errors():
    from dmlib.animation import image_trajectory_html

    g = torch.Generator().manual_seed(0)
    traj = {t: torch.rand(4, 1, 8, 8, generator=g) * 2 - 1 for t in range(30, -1, -1)}
    html = image_trajectory_html(traj, n_frames=6, nrow=4, t_label=lambda t: f"step {t}")
    assert html.count("data:image/png;base64") == 6
    assert len(html) < 200_000
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        image_trajectory_html({5: torch.zeros(4, 2)})
    with pytest.raises(ValueError, match="non-empty"):
        image_trajectory_html({})


def test_player_stops_when_its_output_is_gone():
    """The player's timer must not write into an element that was removed (a page error)."""
    import matplotlib.pyplot as plt

    from dmlib.animation import _SET_FRAME, _SET_FRAME_GUARDED, _to_html

    fig, ax = plt.subplots()
    html = _to_html(fig, lambda i: ax.set_title(str(i)), 2, 100)
    assert _SET_FRAME_GUARDED in html and _SET_FRAME not in html
