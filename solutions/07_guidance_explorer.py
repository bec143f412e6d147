# %% [markdown]
# # 7. The guidance-scale explorer
#
# Move the guidance scale and watch what it does to the samples. The same seed gives the same 16 starting
# noises at every scale, so you see one set of noises pulled harder and harder toward the chosen digit:
# accuracy rises, and the samples grow alike.
#
# **Learning goals**
# - see fidelity traded for diversity as the scale grows, for classifier guidance (DDPM mean shift or DDIM eps
#   shift) and for classifier-free guidance;
# - compare the scales of the methods: the same number does not mean the same strength.
#
# **Time:** under a minute on a laptop CPU; a new setting then takes a second or two. The explorer uses the
# shipped models (wider networks, trained for longer than a notebook can), so every scale has something to show.
#
# **How to use it.** Pick a method and a digit, then move the scale. A setting computed before shows at once; a
# new one takes a few seconds on a CPU (the grid turns grey while it computes). "precompute sweep" computes nine
# scales of the current method and digit and keeps them on disk (`~/.cache/course_utils/explorer`, or the
# folder in `COURSE_EXPLORER_CACHE`, so a lab room can prepare it once); the plot on the right then shows
# accuracy and diversity against the scale, with the current scale in red. `steps` sets the DDIM steps, or the
# steps of the respaced DDPM chain.

# %%
from course_utils.widgets import GuidanceExplorer, Setting

explorer = GuidanceExplorer(setting=Setting(method="cfg-ddim", digit=9, scale=1.0, seed=0, steps=10))
explorer.wait()
explorer

# %% [markdown]
# The explorer's logic is plain functions; here they check what the widget shows (run in the tests):

# %%
from course_utils import widgets

shown = explorer.current()
assert explorer.shown == shown and "accuracy" in explorer.label.value
stronger = widgets.result_for(Setting(shown.method, shown.digit, 4.0, shown.seed, shown.steps), explorer.models, explorer.cache)
none = widgets.result_for(Setting(shown.method, shown.digit, 0.0, shown.seed, shown.steps), explorer.models, explorer.cache)
print(f"scale 0: accuracy {none['accuracy']:.0%}, diversity {none['diversity']:.1f}; "
      f"scale 4: accuracy {stronger['accuracy']:.0%}, diversity {stronger['diversity']:.1f}")
assert stronger["accuracy"] > none["accuracy"] and stronger["diversity"] < none["diversity"]

# %% [markdown]
# ## Things to try
#
# - Classifier guidance at scale 1 against classifier-free guidance at scale 1: which gives more 9s? Why are
#   the scales not comparable?
# - Push classifier guidance to 20: what happens to the strokes, and to diversity?
# - Keep the scale and change the seed: which digits are hard to reach from some starting noises?
