"""The guidance-scale explorer: move the scale, watch the samples.

The logic is plain functions and a small cache, tested directly; :class:`GuidanceExplorer`
only wires them to ipywidgets. The same seed gives the same starting noise at every scale,
so the learner sees one set of noises pulled harder and harder toward the digit.
"""
from __future__ import annotations

import dataclasses
import io
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .core.data import from_bytes, to_bytes
from .evaluation import METHODS, NETWORKS, guided_steps, judge
from .files import atomic_write

N_SAMPLES = 16                      # a 4x4 grid
SCALE_RANGES = {                    # (min, max, step) of the slider, per method
    "classifier-ddpm": (0.0, 20.0, 0.5),
    "classifier-ddim": (0.0, 20.0, 0.5),
    "cfg-ddim": (0.0, 8.0, 0.25),
}
STEP_RANGE = (5, 100)
OWNERS = ("shipped", "yours")       # whose networks the explorer samples: the package's, or the learner's own
SWEEP_SCALES = {m: sorted({round(lo + i * (hi - lo) / 8, 3) for i in range(9)} | {1.0})   # s = 1 in every sweep
                for m, (lo, hi, _) in SCALE_RANGES.items()}


@dataclass(frozen=True)
class Setting:
    """One point of the explorer: what to sample."""
    method: str = "classifier-ddim"
    digit: int = 9
    scale: float = 4.0
    seed: int = 0
    steps: int = 25
    models: str = "shipped"

    def check(self) -> "Setting":
        """Return self, or raise ValueError saying which value is outside what the explorer accepts."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if isinstance(self.digit, bool) or not isinstance(self.digit, int) or not 0 <= self.digit <= 9:
            raise ValueError(f"digit must be an integer 0..9, got {self.digit!r}")
        lo, hi, _ = SCALE_RANGES[self.method]
        if not isinstance(self.scale, (int, float)) or math.isnan(self.scale) or not lo <= self.scale <= hi:
            raise ValueError(f"scale for {self.method} must be a number in [{lo:g}, {hi:g}], got {self.scale!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        steps_ok = isinstance(self.steps, int) and not isinstance(self.steps, bool)
        if not steps_ok or not STEP_RANGE[0] <= self.steps <= STEP_RANGE[1]:
            raise ValueError(f"steps must be an integer in {STEP_RANGE[0]}..{STEP_RANGE[1]}, got {self.steps!r}")
        if self.models not in OWNERS:
            raise ValueError(f"models must be one of {', '.join(OWNERS)}, got {self.models!r}")
        return self

    def key(self) -> str:
        return f"{self.method}_d{self.digit}_s{self.scale:.3f}_seed{self.seed}_n{self.steps}_{self.models}"


def load_models(device="cpu", owner: str = "shipped") -> dict:
    """The networks the explorer needs: the shipped ones, or with ``owner="yours"`` the learner's own where a
    notebook saved them (:func:`~course_utils.pretrained.load_model`; the shipped one stands in for any not
    trained yet, and its ``owner`` says so). The evaluator that judges them is always the shipped one."""
    from .pretrained import load_model, load_pretrained

    if owner not in OWNERS:
        raise ValueError(f"owner must be one of {', '.join(OWNERS)}, got {owner!r}")
    load = load_pretrained if owner == "shipped" else load_model
    models = {n: load(n, device=device) for n in ("ddpm_eps", "noisy_classifier", "cfg_eps")}
    return dict(models, evaluator=load_pretrained("evaluator", device=device))


def weights_of(models: dict, method: str) -> str:
    """Which weights ``method`` samples with: the start of each network's sha256, so that a cached grid is never
    shown for other weights (the learner's retrained model, or the shipped one)."""
    return "-".join(str(models[n].info.get("sha256", "unhashed"))[:12] for n in NETWORKS[method])


def whose(models: dict, method: str) -> str:
    """The networks ``method`` samples with, by owner and training, for a title."""
    return " + ".join(models[n].label for n in NETWORKS[method])


def compute(setting: Setting, models: dict, preview=None, every: int = 10) -> dict:
    """Sample 16 digits for ``setting`` and judge them: images, accuracy, diversity, seconds.

    ``preview(step)``, if given, sees every ``every``-th :class:`~course_utils.core.sampling.Step` of the
    chain on the way (its t, x_t and the model's current guess x0_hat), for a picture of the samples forming."""
    setting.check()
    start = time.perf_counter()
    y = torch.full((N_SAMPLES,), setting.digit)
    chain = guided_steps(setting.method, models, y, float(setting.scale), steps=setting.steps,
                         generator=torch.Generator().manual_seed(setting.seed), device="cpu", ddpm_steps=setting.steps)
    with torch.no_grad():
        for step in chain:
            if preview is not None and step.t >= 0 and step.i % every == 0:
                preview(step)
    images = step.x_t
    scores = judge(models["evaluator"].model, images, y)
    return {"images": images.cpu(), "accuracy": scores["accuracy"], "diversity": scores["diversity"],
            "seconds": time.perf_counter() - start}


class SampleCache:
    """Results by setting and the weights that made them, in memory and (if ``folder`` is given) on disk, one
    file each. A lab room can point every learner at one prepared folder (``COURSE_EXPLORER_CACHE``).
    """

    def __init__(self, folder: str | Path | None = None):
        self.memory: dict[str, dict] = {}
        self.folder = Path(folder) if folder else None

    def key(self, setting: Setting, models: dict) -> str:
        return f"{setting.key()}_w{weights_of(models, setting.method)}"

    def path(self, setting: Setting, models: dict) -> Path:
        return self.folder / f"{self.key(setting, models)}.pt"

    def get(self, setting: Setting, models: dict) -> dict | None:
        key = self.key(setting, models)
        if key in self.memory:
            return self.memory[key]
        if self.folder and self.path(setting, models).exists():
            stored = torch.load(self.path(setting, models), weights_only=True)
            result = {"images": from_bytes(stored["images"]), "accuracy": float(stored["accuracy"]),
                      "diversity": float(stored["diversity"]), "seconds": 0.0}
            self.memory[key] = result
            return result
        return None

    def put(self, setting: Setting, models: dict, result: dict) -> None:
        self.memory[self.key(setting, models)] = result
        if self.folder:
            record = {"images": to_bytes(result["images"]), "accuracy": torch.tensor(result["accuracy"]),
                      "diversity": torch.tensor(result["diversity"])}
            atomic_write(self.path(setting, models), lambda tmp: torch.save(record, tmp))

    def curve(self, setting: Setting, models: dict) -> list[tuple[float, float, float]]:
        """(scale, accuracy, diversity) of every cached scale for this method, digit, seed, steps and weights."""
        points = []
        for s in sorted(set(SWEEP_SCALES[setting.method]) | {setting.scale}):
            r = self.get(dataclasses.replace(setting, scale=s), models)
            if r is not None:
                points.append((s, r["accuracy"], r["diversity"]))
        return points


def result_for(setting: Setting, models: dict, cache: SampleCache, preview=None) -> dict:
    """The cached result, or a new one computed (``preview`` as in :func:`compute`) and cached."""
    result = cache.get(setting.check(), models)
    if result is None:
        result = compute(setting, models, preview)
        cache.put(setting, models, result)
    return result


def precompute_sweep(setting: Setting, models: dict, cache: SampleCache, progress=None) -> list[dict]:
    """Fill the cache for every sweep scale of ``setting``'s method (same digit, seed, steps and models)."""
    results = []
    scales = SWEEP_SCALES[setting.method]
    for i, s in enumerate(scales):
        results.append(result_for(dataclasses.replace(setting, scale=s), models, cache))
        if progress is not None:
            progress(i + 1, len(scales))
    return results


def grid_png(images: torch.Tensor) -> bytes:
    """A 4x4 grid of images in [-1, 1] as PNG bytes."""
    import matplotlib.pyplot as plt

    from .plotting import image_grid

    buf = io.BytesIO()
    plt.imsave(buf, image_grid(images, nrow=4).numpy(), cmap="gray", vmin=0, vmax=1, format="png")
    return buf.getvalue()


def curve_png(points, current: float, method: str) -> bytes:
    """Accuracy and diversity against scale, with the current scale and s = 1 marked (and the diversity at s = 1,
    the level to read the others against), as PNG bytes."""
    from matplotlib.figure import Figure  # a Figure of its own, drawn without pyplot: the notebook's backend stays

    fig = Figure(figsize=(4.2, 2.6), dpi=90)
    ax = fig.add_subplot(111)
    ax2 = ax.twinx()
    if points:
        s, acc, div = zip(*points)
        ax.plot(s, acc, "o-", color="tab:blue", label="accuracy")
        ax2.plot(s, div, "s--", color="tab:orange", label="diversity")
        at_one = [d for v, _, d in points if v == 1.0]
        if at_one:   # diversity is read against s = 1, where the samples follow the label, not s = 0
            ax2.axhline(at_one[0], color="tab:orange", ls=":", lw=1)
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.axvline(current, color="red", lw=1)
    lo, hi, _ = SCALE_RANGES[method]
    ax.set_xlim(lo - 0.2, hi + 0.2)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("guidance scale")
    ax.set_ylabel("accuracy", color="tab:blue")
    ax2.set_ylabel("diversity", color="tab:orange")
    ax.set_title("cached scales (red: current; dotted: s = 1)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def busy_png(text: str) -> bytes:
    """A grey placeholder with ``text``, shown while a grid is being computed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.6, 2.6), dpi=100)
    fig.patch.set_facecolor("#d0d0d0")
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class GuidanceExplorer:
    """The ipywidgets explorer: method, digit, scale, seed, steps and whose models (the shipped ones or the
    learner's own); a 4x4 grid, its accuracy and diversity, a plot against scale, and a button that
    precomputes the whole sweep.

    Computation runs in a worker thread, so the controls stay live; a result is shown only if it
    still matches the controls, otherwise the latest setting is computed next.
    """

    def __init__(self, models: dict | None = None, cache: SampleCache | None = None, setting: Setting = Setting(),
                 background: bool = True, your_models: dict | None = None):
        import ipywidgets as W

        # the shipped networks, and the learner's own (loaded when first asked for)
        self.model_sets = {"shipped": models if models is not None else load_models(), "yours": your_models}
        folder = os.environ.get("COURSE_EXPLORER_CACHE", str(Path.home() / ".cache" / "course_utils" / "explorer"))
        self.cache = cache if cache is not None else SampleCache(folder)
        self.background = background
        setting.check()
        lo, hi, step = SCALE_RANGES[setting.method]
        self.method = W.Dropdown(options=[(v, k) for k, v in METHODS.items()], value=setting.method,
                                 description="method")
        self.digit = W.IntSlider(value=setting.digit, min=0, max=9, description="digit", continuous_update=False)
        self.scale = W.FloatSlider(value=setting.scale, min=lo, max=hi, step=step, description="scale",
                                   continuous_update=False)
        self.seed = W.BoundedIntText(value=setting.seed, min=0, max=10**6, description="seed")
        self.steps = W.IntSlider(value=setting.steps, min=STEP_RANGE[0], max=STEP_RANGE[1], step=5,
                                 description="steps", continuous_update=False)
        self.owner = W.ToggleButtons(options=[("shipped", "shipped"), ("yours", "yours")], value=setting.models,
                                     description="models", tooltips=["the package's networks, trained for longer",
                                                                     "the networks you trained in notebooks 3, 4, 6"])
        self.sweep_button = W.Button(description="precompute sweep", icon="forward")
        self.grid = W.Image(format="png", width=260, height=260)
        self.plot = W.Image(format="png", width=380)
        self.label = W.HTML()
        self.status = W.HTML()
        self.shown: Setting | None = None
        self._lock = threading.RLock()
        self._running = False
        self._workers: list[threading.Thread] = []
        for control in (self.method, self.digit, self.scale, self.seed, self.steps, self.owner):
            control.observe(self._on_change, names="value")
        self.sweep_button.on_click(lambda _: self._start(sweep=True))
        controls = W.VBox([self.method, self.digit, self.scale, self.seed, self.steps, self.owner, self.sweep_button,
                           self.status])
        self.widget = W.HBox([controls, W.VBox([self.grid, self.label]), self.plot])
        self._on_change(None)

    # ---------------------------------------------------------------- state
    def current(self) -> Setting:
        return Setting(self.method.value, int(self.digit.value), float(self.scale.value), int(self.seed.value),
                       int(self.steps.value), self.owner.value)

    def models_for(self, setting: Setting) -> dict:
        """The networks ``setting`` samples with: the shipped set, or the learner's (loaded on first use)."""
        if self.model_sets[setting.models] is None:
            self.model_sets[setting.models] = load_models(owner=setting.models)
        return self.model_sets[setting.models]

    @property
    def models(self) -> dict:
        """The networks the controls ask for now."""
        return self.models_for(self.current())

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _on_change(self, change):
        with self._lock:
            self._update(change)

    def _update(self, change):
        if change is not None and change["owner"] is self.method:
            lo, hi, step = SCALE_RANGES[self.method.value]
            with self.scale.hold_trait_notifications():
                self.scale.min, self.scale.max, self.scale.step = lo, hi, step
                self.scale.value = min(max(self.scale.value, lo), hi)
        setting = self.current()
        cached = self.cache.get(setting, self.models_for(setting))
        if cached is not None:
            self._show(setting, cached)
        else:
            self.grid.value = busy_png(f"computing\n{setting.method}\nscale {setting.scale:g}")
            self.label.value = "<i>computing...</i>"
            self.shown = None
            self._start()

    def _show(self, setting: Setting, result: dict, status: str = "from cache") -> None:
        # the label goes last: once it names the new setting, grid, plot and status already match it
        models = self.models_for(setting)
        self.plot.value = curve_png(self.cache.curve(setting, models), setting.scale, setting.method)
        self.grid.value = grid_png(result["images"])
        self.status.value = status
        self.label.value = (f"<b>digit {setting.digit}, scale {setting.scale:g}</b>: accuracy "
                            f"<b>{result['accuracy']:.0%}</b>, diversity <b>{result['diversity']:.1f}</b>"
                            f"<br><small>{whose(models, setting.method)}</small>")
        self.shown = setting

    # ----------------------------------------------------------- computing
    def _start(self, sweep: bool = False) -> None:
        target = self._sweep if sweep else self._follow
        if not self.background:
            target()
            return
        with self._lock:
            if not sweep:
                if self._running:
                    return          # the running worker picks up the latest setting before it stops
                self._running = True
            worker = threading.Thread(target=target, daemon=True)
            self._workers.append(worker)
            worker.start()

    def _follow(self) -> None:
        """Compute until what is shown matches the controls; show only results that still match."""
        try:
            while True:
                with self._lock:     # decide to stop under the lock, so no change slips in between
                    setting = self.current()
                    if self.shown == setting:
                        self._running = False
                        return
                self.status.value = "<span style='color:#b60'>computing...</span>"
                result = result_for(setting, self.models_for(setting), self.cache, preview=self._preview_of(setting))
                with self._lock:     # a change arriving now waits in its observer, which then redraws
                    if self.current() == setting:
                        self._show(setting, result,
                                   f"done in {result['seconds']:.1f} s" if result["seconds"] else "from cache")
        except Exception as err:  # shown to the learner, never raised into the widget's event loop
            with self._lock:
                self._running = False
            self.status.value = f"<span style='color:red'>error: {type(err).__name__}: {err}</span>"

    def _preview_of(self, setting: Setting):
        """Show the model's current guess x0_hat while ``setting`` is computed, as long as it is still asked for."""
        total = setting.steps

        def preview(step) -> None:
            if self.current() != setting:  # asked for something else meanwhile: draw nothing
                return
            png = grid_png(step.x0_hat)
            with self._lock:
                if self.current() == setting and self.shown != setting:
                    self.grid.value = png
                    self.status.value = (f"<span style='color:#b60'>step {step.i}/{total} (t = {step.t}): "
                                         f"the model's guess x0_hat so far</span>")
        return preview

    def _sweep(self) -> None:
        """Precompute every sweep scale of the current method and digit, then redraw the plot."""
        try:
            setting = self.current()
            precompute_sweep(setting, self.models_for(setting), self.cache,
                             progress=lambda i, n: setattr(self.status, "value", f"sweep {i}/{n}"))
            self.status.value = "sweep cached"
            now = self.current()
            self.plot.value = curve_png(self.cache.curve(now, self.models_for(now)), now.scale, now.method)
            if self.shown != now:
                self._start()
        except Exception as err:
            self.status.value = f"<span style='color:red'>error: {type(err).__name__}: {err}</span>"

    def wait(self, timeout: float = 120.0) -> None:
        """Block until every worker is done (for tests and scripts)."""
        deadline = time.time() + timeout
        for worker in list(self._workers):
            worker.join(max(0.0, deadline - time.time()))
        self._workers = [w for w in self._workers if w.is_alive()]
