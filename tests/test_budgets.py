"""Training sized by time: budgets, the one-cycle shape, stopping on request, live views, the learner's
own models, and the quick recipes."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import course_utils as cu
from course_utils import Budget, LiveView, MLPDenoiser, NoiseSchedule, fit, one_cycle, train_denoiser
from course_utils.files import atomic_write
from course_utils.pretrained import WeightsError, load_pretrained
from course_utils.recipes import QUICK_RECIPES, train_live


def toy_run(**kwargs):
    torch.manual_seed(0)
    model = MLPDenoiser(shape=(2,), hidden=32, emb_dim=16, layers=2)
    x = torch.randn(512, 2)
    kwargs.setdefault("progress", False)
    losses = train_denoiser(model, NoiseSchedule(T=50), x, batch_size=64, device="cpu",
                            generator=torch.Generator().manual_seed(0), **kwargs)
    return model, losses


@pytest.mark.parametrize("bad", [dict(minutes=-1.0), dict(minutes=0), dict(minutes=float("nan")),
                                 dict(minutes=float("inf")), dict(minutes="soon"), dict(steps=0, minutes=1.0),
                                 dict(steps=-3), dict(steps=2.5), dict()])
def test_bad_budgets_are_clear_errors(bad):
    with pytest.raises(ValueError, match="steps|minutes"):
        toy_run(**bad)


def test_training_stops_at_whichever_budget_comes_first():
    _, losses = toy_run(steps=7, minutes=5.0)
    assert len(losses) == 7
    start = time.perf_counter()
    _, losses = toy_run(steps=10**9, minutes=0.02)          # 1.2 seconds
    took = time.perf_counter() - start
    assert 10 < len(losses) < 10**9 and 1.2 <= took < 30
    _, only_time = toy_run(minutes=0.01)
    assert len(only_time) > 5


def test_budget_progress_is_the_larger_fraction():
    b = Budget(steps=100, minutes=1.0)
    assert b.progress(50, 6.0) == pytest.approx(0.5)
    assert b.progress(10, 30.0) == pytest.approx(0.5)
    assert b.progress(500, 0.0) == 1.0 and b.over(100, 0.0) and b.over(1, 60.0) and not b.over(99, 59.0)


def test_one_cycle_rises_then_cools_down_and_fit_follows_it():
    assert one_cycle(0.0) == pytest.approx(0.04) and one_cycle(0.1) == pytest.approx(1.0)
    assert one_cycle(1.0) == pytest.approx(0.01)
    values = [one_cycle(p / 100) for p in range(101)]
    peak = values.index(max(values))
    assert all(a <= b for a, b in zip(values[:peak], values[1:peak + 1]))
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1:]))
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    fit(model, lambda m, x: m(x).pow(2).mean(), (torch.randn(64, 2),), steps=20, optimizer=opt, lr_shape=one_cycle,
        device="cpu", progress=False, callback=lambda step, losses: seen.append(opt.param_groups[0]["lr"]))
    assert seen[0] == pytest.approx(0.5 * one_cycle(0.0)) and seen[2] == pytest.approx(0.5 * one_cycle(0.1))
    assert seen[-1] == pytest.approx(0.5 * one_cycle(19 / 20))


@pytest.mark.parametrize("how", ["signal", "exception"])
def test_the_stop_button_ends_training_cleanly(how, capsys):
    model = MLPDenoiser(shape=(2,), hidden=32, emb_dim=16, layers=2)
    before = [p.detach().clone() for p in model.parameters()]
    handler = signal.getsignal(signal.SIGINT)
    ema = cu.EMA(model, 0.9)

    def press_stop(step, losses):
        if step == 4:
            if how == "signal":
                os.kill(os.getpid(), signal.SIGINT)      # what Jupyter's stop button sends
            else:
                raise KeyboardInterrupt

    losses = train_denoiser(model, NoiseSchedule(T=50), torch.randn(256, 2), steps=1000, batch_size=32,
                            ema=ema, device="cpu", progress=False, callback=press_stop)
    assert len(losses) == 5 and ema.updates == 5          # the step in progress finished, then it stopped
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert "stopped by request after 5 steps" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is handler     # Ctrl-C is itself again


def test_live_view_redraws_every_so_often_and_at_the_end():
    now = [0.0]
    shown = []

    class Handle:
        def update(self, fig):
            shown.append("update")

    def display(fig, display_id=False):
        shown.append("display")
        return Handle()

    drawn = []
    view = LiveView(lambda ax: drawn.append(1), every=25, title="t", display=display, clock=lambda: now[0])
    for step in range(100):
        now[0] = step * 1.0                       # one second a step
        view(step, [1.0] * (step + 1))
    view.finish([1.0] * 100)
    assert view.frames == 4                   # at 25, 50 and 75 s, and at the end
    assert shown == ["display", "update", "update", "update"] and len(drawn) == 4
    with pytest.raises(ValueError, match="seconds"):
        LiveView(lambda ax: None, every=0)


def test_train_live_saves_the_learners_model_for_the_next_notebooks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_MODELS", str(tmp_path / "mine"))
    assert cu.load_model("cfg_eps", device="cpu").owner == "shipped"
    schedule = NoiseSchedule()
    data = cu.load_mnist(offline=True, verbose=False)

    def loss(m, x0, y):
        return cu.denoiser_loss(m, schedule, x0, y, cond_drop=0.1)

    mine, losses = train_live("cfg_eps", loss, (data.images[:256], data.labels[:256]), minutes=0.01, device="cpu")
    assert len(losses) > 0 and mine.owner == "your"
    assert (tmp_path / "mine" / "cfg_eps.safetensors").exists()
    info = json.loads((tmp_path / "mine" / "cfg_eps.json").read_text())
    assert info["recipe"] == "quick" and info["steps"] == len(losses) and info["minutes"] == 0.01
    assert info["architecture"]["kwargs"]["channels"] == QUICK_RECIPES["cfg_eps"].kwargs["channels"]
    loaded = cu.load_model("cfg_eps", device="cpu")
    assert loaded.owner == "your" and loaded.label.startswith("your cfg_eps")
    x = torch.randn(2, 1, 32, 32)
    t, y = torch.tensor([5, 500]), torch.tensor([3, 10])
    with torch.no_grad():
        assert torch.allclose(loaded.model(x, t, y), mine.model.cpu()(x, t, y), atol=1e-2)   # float16 on disk
    assert cu.load_model("ddpm_eps", device="cpu").owner == "shipped"   # not trained yet: the shipped one
    # a file that does not match its manifest: a clear error that says what to do
    (tmp_path / "mine" / "cfg_eps.safetensors").write_bytes(b"not weights")
    with pytest.raises(WeightsError, match="run notebook 06_classifier_free_guidance again"):
        cu.load_model("cfg_eps", device="cpu")


def test_an_interrupted_save_leaves_no_half_written_file(tmp_path):
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")

    def dies_halfway(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_halfway)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["w.bin"]


def test_quick_recipe_from_the_command_line(tmp_path):
    env = dict(os.environ, COURSE_OFFLINE="1")
    cmd = [sys.executable, "-m", "course_utils", "train", "noisy_classifier", "--quick", "--minutes", "0.02",
           "--weights-dir", str(tmp_path / "w"), "--checkpoint-dir", str(tmp_path / "ckpt"), "--device", "cpu"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = load_pretrained("noisy_classifier", device="cpu", weights_dir=tmp_path / "w")
    assert loaded.info["recipe"] == "quick" and "--quick --minutes 0.02" in loaded.info["command"]
    assert loaded.info["steps"] > 0 and loaded.model(torch.randn(2, 1, 32, 32), torch.tensor([0, 9])).shape == (2, 10)
    bad = subprocess.run(cmd[:-6] + ["--minutes", "-1"], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "minutes must be a finite number > 0" in bad.stderr


def test_a_full_recipe_takes_a_time_budget_alone_and_plans_its_learning_rate_for_it(tmp_path):
    from course_utils.recipes import RECIPES, lr_shape, train_recipe
    info = train_recipe("evaluator", minutes=0.01, device="cpu", weights_dir=tmp_path / "w",
                        checkpoint_dir=tmp_path / "ckpt", offline=True, progress=False)
    assert 0 < info["steps"] < RECIPES["evaluator"].steps and "--minutes 0.01" in info["command"]
    assert load_pretrained("evaluator", device="cpu", weights_dir=tmp_path / "w").info["steps"] == info["steps"]
    # the full recipes' shape: 200 warm-up steps from lr / 200, then a half cosine down to lr / 10
    shape = lr_shape(RECIPES["ddpm_eps"])
    assert shape(0.0) == pytest.approx(1 / 200) and shape(200 / 13000) == pytest.approx(1.0)
    assert shape(1.0) == pytest.approx(0.1) and shape(0.5) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(
        math.pi * (0.5 - 200 / 13000) / (1 - 200 / 13000))))


def test_every_recipe_trains_on_full_mnist_when_torchvision_can_get_it(tmp_path, monkeypatch):
    import course_utils.core.data as data_mod
    from course_utils.recipes import RECIPES, train_recipe
    asked = []

    def full_mnist(train, root):  # stands in for the download: 60,000 digits, as torchvision gives them
        asked.append(train)
        return data_mod.MNIST(torch.rand(60_000, 1, 32, 32) * 2 - 1, torch.arange(60_000) % 10, "torchvision")

    monkeypatch.setattr(data_mod, "_from_torchvision", full_mnist)
    for name in RECIPES:
        info = train_recipe(name, steps=1, device="cpu", weights_dir=tmp_path / "w", checkpoint_dir=tmp_path / name,
                            offline=False, progress=False)
        assert info["data"] == "MNIST torchvision, 60000 training digits", (name, info["data"])
    assert asked == [True] * len(RECIPES)


def test_the_forecast_says_what_the_budget_gives_and_what_a_too_slow_machine_needs(capsys, monkeypatch):
    from course_utils.recipes import LIVE_GOALS, _Forecast

    monkeypatch.delenv("COURSE_FAST", raising=False)

    goal = LIVE_GOALS["ddpm_eps"]
    for per_step, short in ((0.05, False), (1.0, True)):   # 50 ms a step: 3,000 in 2.5 min; 1 s a step: 150
        now, seen = [0.0], []
        forecast = _Forecast("ddpm_eps", 2.5, lambda step, losses: seen.append(step), clock=lambda: now[0])
        for step in range(40):
            now[0] = 2.0 + per_step * (step + 1)   # 2 s before the first step, then per_step a step
            forecast(step, [])
        out = capsys.readouterr().out
        assert seen == list(range(40)) and out.count("ms a step") == 1      # said once, and every step passed on
        expected = 20 + (150 - (2.0 + per_step * 20)) / per_step
        assert f"about {expected:,.0f} steps in 2.5 min" in out and f"{goal.slow_steps:,} steps" in out
        assert (f"are fewer than the {goal.steps:,} the quality checks below need" in out) == short
        if short:   # the minutes that give the goal's steps at this speed, rounded up to half a minute
            need = (2.0 + per_step * 20 + (goal.steps - 20) * per_step) / 60
            assert f"TRAIN_MINUTES = {math.ceil(need * 2) / 2:g}" in out
    monkeypatch.setenv("COURSE_FAST", "1")   # tests and grading cut the budget: said so, not blamed on the machine
    forecast = _Forecast("ddpm_eps", 0.08, lambda step, losses: None, clock=lambda: 0.0)
    forecast.marks, forecast.begun = {5: 0.5, 20: 2.0}, 0.0
    text = forecast.forecast()
    assert "COURSE_FAST is set" in text and "are fewer than the" not in text


def test_trained_enough_holds_the_learners_models_to_the_floors_only_past_the_goal_steps():
    from course_utils.pretrained import Pretrained
    from course_utils.recipes import LIVE_GOALS

    need = LIVE_GOALS["cfg_eps"].steps
    assert cu.trained_enough(Pretrained(None, None, {"name": "cfg_eps", "steps": 10}))            # shipped
    assert not cu.trained_enough(Pretrained(None, None, {"name": "cfg_eps", "steps": need - 1}, owner="your"))
    assert cu.trained_enough(Pretrained(None, None, {"name": "cfg_eps", "steps": need}, owner="your"))


def test_the_quick_recipes_record_what_their_networks_predict(tmp_path):
    from course_utils.recipes import recipe_for, train_recipe

    assert recipe_for("cfg_eps", quick=True).objective == "v" and recipe_for("cfg_eps").objective == "eps"
    info = train_recipe("cfg_eps", quick=True, steps=2, device="cpu", weights_dir=tmp_path, checkpoint_dir=tmp_path,
                        progress=False, offline=True)
    assert info["prediction"] == "v"
    assert cu.load_pretrained("cfg_eps", device="cpu", weights_dir=tmp_path).prediction == "v"
    assert cu.load_pretrained("cfg_eps", device="cpu").prediction == "eps"
    assert recipe_for("ddpm_eps", quick=True).min_snr_gamma == 5.0
