"""The guidance explorer, driven as a learner would: set each control and check what is shown."""
import math
import re

import pytest
import torch

from course_utils import widgets
from course_utils.widgets import GuidanceExplorer, SampleCache, Setting


@pytest.fixture(scope="module")
def models():
    return widgets.load_models()


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="magic"), "method must be one of"),
    (dict(digit=10), r"digit must be an integer 0\.\.9"),
    (dict(digit=-1), r"digit must be an integer 0\.\.9"),
    (dict(scale=-1.0), r"scale for classifier-ddim must be a number in \[0, 20\]"),
    (dict(scale=math.nan), "scale"),
    (dict(method="cfg-ddim", scale=9.0), r"\[0, 8\]"),
    (dict(seed=-3), "seed"),
    (dict(steps=1000), r"steps must be an integer in 5\.\.100"),
    (dict(models="mine"), "models must be one of shipped, yours"),
])
def test_bad_settings_are_explained(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Setting(**kwargs).check()


def test_compute_and_cache_on_disk(models, tmp_path):
    s = Setting("cfg-ddim", 3, 2.0, 0, 5)
    result = widgets.compute(s, models)
    assert result["images"].shape == (16, 1, 32, 32) and 0 <= result["accuracy"] <= 1
    cache = SampleCache(tmp_path)
    cache.put(s, models, result)
    again = SampleCache(tmp_path).get(s, models)        # a fresh cache reads the file
    assert again is not None and again["accuracy"] == pytest.approx(result["accuracy"])
    assert (again["images"] - result["images"].clamp(-1, 1)).abs().max() < 0.01
    assert SampleCache(tmp_path).get(Setting("cfg-ddim", 3, 2.5, 0, 5), models) is None


def test_same_seed_same_start_across_scales(models):
    a = widgets.compute(Setting("classifier-ddim", 1, 0.0, 7, 5), models)["images"]
    b = widgets.compute(Setting("classifier-ddim", 1, 0.0, 7, 5), models)["images"]
    c = widgets.compute(Setting("classifier-ddim", 1, 0.0, 8, 5), models)["images"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_explorer_follows_its_controls(models, tmp_path):
    ex = GuidanceExplorer(models, SampleCache(tmp_path), Setting("cfg-ddim", 9, 0.0, 0, 5), background=False)
    assert ex.shown == ex.current()
    first_grid, first_label = ex.grid.value, ex.label.value
    assert "accuracy" in first_label and "scale 0" in first_label
    ex.scale.value = 3.0
    assert ex.shown == Setting("cfg-ddim", 9, 3.0, 0, 5)
    assert ex.grid.value != first_grid and "scale 3" in ex.label.value
    ex.digit.value = 4
    assert "digit 4" in ex.label.value and ex.shown.digit == 4
    ex.seed.value = 5
    assert ex.shown.seed == 5
    # switching method clamps the scale into that method's range, and the grid follows
    ex.scale.value = 8.0
    ex.method.value = "classifier-ddpm"
    assert (ex.scale.min, ex.scale.max) == (0.0, 20.0) and ex.shown.method == "classifier-ddpm"
    ex.scale.value = 20.0
    ex.method.value = "cfg-ddim"
    assert ex.scale.value == 8.0 and ex.shown == ex.current()


def test_sweep_button_caches_every_scale_and_draws_the_curve(models, tmp_path, monkeypatch):
    monkeypatch.setitem(widgets.SWEEP_SCALES, "cfg-ddim", [0.0, 2.0, 4.0])
    cache = SampleCache(tmp_path)
    ex = GuidanceExplorer(models, cache, Setting("cfg-ddim", 2, 2.0, 0, 5), background=False)
    plot_before = ex.plot.value
    ex.sweep_button.click()
    assert len(cache.curve(ex.current(), models)) == 3 and "sweep cached" in ex.status.value
    ex.scale.value = 4.0                 # now cached: shown at once, and the plot has three points
    assert ex.shown.scale == 4.0 and ex.plot.value != plot_before


def test_moving_the_slider_while_computing_never_shows_a_stale_grid(models, tmp_path):
    ex = GuidanceExplorer(models, SampleCache(tmp_path), Setting("classifier-ddim", 9, 0.0, 0, 5), background=True)
    ex.wait()
    for value in (1.0, 2.0, 6.0):        # faster than the worker can follow
        ex.scale.value = value
        assert ex.shown is None or ex.shown == ex.current()
    ex.wait()
    assert ex.shown == ex.current() and ex.shown.scale == 6.0
    assert "scale 6" in ex.label.value and "error" not in ex.status.value


def test_the_grid_shows_the_samples_forming_while_they_are_computed(models, tmp_path, monkeypatch):
    seen = []
    setting = Setting("classifier-ddim", 5, 4.0, 3, 25)
    result = widgets.compute(setting, models, preview=seen.append, every=10)
    assert [s.i for s in seen] == [0, 10, 20] and [s.t for s in seen] == sorted((s.t for s in seen), reverse=True)
    assert all(s.x0_hat.shape == (16, 1, 32, 32) for s in seen)
    assert torch.equal(result["images"], widgets.compute(setting, models)["images"])   # watching changes nothing
    # in the explorer: each preview replaces the grid and says which step it shows, then the result comes
    grids, statuses = [], []
    ex = GuidanceExplorer(models, SampleCache(tmp_path), Setting("cfg-ddim", 1, 1.0, 0, 25), background=False)
    original = ex._preview_of

    def recording(s):
        show = original(s)

        def both(step):
            show(step)
            grids.append(ex.grid.value)
            statuses.append(ex.status.value)
        return both

    monkeypatch.setattr(ex, "_preview_of", recording)
    ex.scale.value = 3.0
    shown = [re.search(r"step (\d+)/25 \(t = (\d+)\)", s).groups() for s in statuses]
    assert [int(i) for i, _ in shown] == [0, 10, 20] and [int(t) for _, t in shown][0] == 999
    assert len(set(grids)) == 3 and ex.grid.value not in grids and ex.shown == ex.current()


def test_the_explorer_shows_your_models_and_never_anothers_grid(models, tmp_path):
    import dataclasses

    shipped_cfg = models["cfg_eps"]
    retrained = dataclasses.replace(shipped_cfg, owner="your",
                                    info=dict(shipped_cfg.info, sha256="0" * 64, steps=1234, train_seconds=180.0))
    yours = dict(models, cfg_eps=retrained)
    cache = SampleCache(tmp_path)
    ex = GuidanceExplorer(models, cache, Setting("cfg-ddim", 7, 2.0, 0, 5), background=False, your_models=yours)
    assert "shipped cfg_eps" in ex.label.value and ex.models is models
    ex.owner.value = "yours"       # the same setting by other weights: computed anew, and the label says whose
    assert ex.shown == Setting("cfg-ddim", 7, 2.0, 0, 5, "yours") and ex.models is yours
    assert "your cfg_eps (1,234 steps" in ex.label.value and "from cache" not in ex.status.value
    assert cache.key(ex.shown, yours) != cache.key(dataclasses.replace(ex.shown, models="shipped"), models)
    # the same owner with other weights (a model trained again) does not find the old grid either
    again = dict(yours, cfg_eps=dataclasses.replace(retrained, info=dict(retrained.info, sha256="1" * 64)))
    assert cache.get(ex.shown, yours) is not None and cache.get(ex.shown, again) is None
    ex.owner.value = "shipped"     # back: the shipped grid, from the cache
    assert "shipped cfg_eps" in ex.label.value and ex.status.value == "from cache"


def test_every_sweep_includes_scale_one_and_the_plot_marks_it():
    assert all(1.0 in scales for scales in widgets.SWEEP_SCALES.values())
    with_one = widgets.curve_png([(0.0, 0.1, 50.0), (1.0, 0.9, 20.0), (4.0, 1.0, 12.0)], 4.0, "cfg-ddim")
    without = widgets.curve_png([(0.0, 0.1, 50.0), (4.0, 1.0, 12.0)], 4.0, "cfg-ddim")
    assert with_one[:8] == b"\x89PNG\r\n\x1a\n" and with_one != without
