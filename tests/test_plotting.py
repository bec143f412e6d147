import matplotlib.pyplot as plt
import pytest
import torch

from course_utils import (
    NoiseSchedule,
    image_grid,
    plot_losses,
    plot_schedules,
    plot_trajectory,
    record_trajectory,
    sampling_steps,
    show_images,
)


def test_image_grid_tiles_and_rescales():
    x = torch.full((5, 1, 4, 4), 1.0)
    x[0] = -1.0
    grid = image_grid(x, nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1)
    assert grid[1, 1] == 0.0 and grid[1, 6] == 1.0      # first image black, second white
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        image_grid(torch.zeros(2, 3, 4, 4))


def test_plots_draw_what_they_are_given():
    s = NoiseSchedule()
    axes = plot_schedules(s, NoiseSchedule(kind="cosine"), names=["linear", "cosine"])
    assert len(axes[0].lines) == 2 and axes[1].get_title() == r"$\bar\alpha_t$"
    ax = plot_losses([1.0 / (i + 1) for i in range(100)], window=10)
    assert len(ax.lines) == 2
    ax = show_images(torch.zeros(4, 1, 8, 8), labels=[1, 2, 3, 4])
    assert len(ax.texts) == 4
    rec = record_trajectory(sampling_steps(lambda x, t: torch.zeros_like(x), s, (3, 1, 8, 8), sampler="ddim",
                                           steps=30), every=10)
    fig = plot_trajectory(rec, n=2)
    assert len(fig.axes) == 2 * 2 * len(rec.t)
    plt.close("all")


def test_plot_chains_shows_the_data_and_each_timestep_and_refuses_a_batch():
    from course_utils import plot_chains

    fig = plot_chains(torch.zeros(1, 1, 8, 8), NoiseSchedule(T=100), ts=(0, 50, 99),
                      generator=torch.Generator().manual_seed(0))
    assert [ax.get_title() for ax in fig.axes] == ["data $x_0$", "$t = 0$", "$t = 50$", "$t = 99$"]
    assert len(fig.artists) == 2 * 3     # a forward and a reverse arrow between each pair of neighbours
    plt.close(fig)
    with pytest.raises(ValueError, match=r"one image of shape \[1, C, H, W\]"):
        plot_chains(torch.zeros(2, 1, 8, 8), NoiseSchedule(T=100))
