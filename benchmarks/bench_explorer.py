"""Response times of the guidance explorer on this machine.

    python benchmarks/bench_explorer.py

Prints, for each method, the time to show a setting that is already cached (the controls'
handler redraws grid, label and plot) and the time to compute a new one live (16 samples).
"""
import tempfile
import time

from course_utils import widgets
from course_utils.widgets import GuidanceExplorer, SampleCache, Setting


def main():
    models = widgets.load_models()
    with tempfile.TemporaryDirectory() as folder:
        for method, scale, steps in [("classifier-ddim", 4.0, 25), ("cfg-ddim", 2.0, 25), ("classifier-ddpm", 4.0, 25),
                                     ("classifier-ddim", 4.0, 50)]:
            ex = GuidanceExplorer(models, SampleCache(folder), Setting(method, 9, 0.0, 0, steps), background=False)
            start = time.perf_counter()
            ex.scale.value = scale                       # new setting: computed live
            live = time.perf_counter() - start
            ex.scale.value = 0.0                         # cached now: shown from memory
            start = time.perf_counter()
            ex.scale.value = scale
            cached = time.perf_counter() - start
            fresh = GuidanceExplorer(models, SampleCache(folder), Setting(method, 9, 0.0, 0, steps), background=False)
            start = time.perf_counter()
            fresh.scale.value = scale                    # cached on disk only
            from_disk = time.perf_counter() - start
            print(f"{method:16s} steps {steps:3d}: live {live:5.2f} s, cached {cached * 1000:5.0f} ms, "
                  f"from the disk cache {from_disk * 1000:5.0f} ms")


if __name__ == "__main__":
    main()
