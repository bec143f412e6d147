# %% [markdown]
# # 7. The guidance-scale explorer
#
# Move the guidance scale and watch what it does to the samples: the same starting noise is pulled harder and
# harder toward the chosen digit, accuracy rises, and the samples grow alike. This notebook hosts the
# interactive explorer; until it lands, the cell below shows the same comparison as a static sweep.
#
# **Learning goals**
# - see fidelity traded for diversity as the scale grows, for classifier guidance and classifier-free guidance;
# - compare the scales of the two methods: they are not the same number.

# %%
import matplotlib.pyplot as plt
import torch

import course_utils as cu
from course_utils.evaluation import METHODS, generate, judge

models = {n: cu.load_pretrained(n, device="cpu") for n in ("ddpm_eps", "noisy_classifier", "cfg_eps")}
evaluator = cu.load_pretrained("evaluator", device="cpu").model

# %%
digit, y = 3, torch.full((8,), 3)
settings = {"classifier-ddim": [0.0, 2.0, 8.0], "cfg-ddim": [0.0, 1.0, 4.0]}
fig, axes = plt.subplots(2, 3, figsize=(12, 4))
results = {}
for row, (method, scales) in enumerate(settings.items()):
    for ax, s in zip(axes[row], scales):
        x = generate(method, models, y, s, steps=20, generator=torch.Generator().manual_seed(0), device="cpu")
        results[method, s] = judge(evaluator, x, y)
        cu.show_images(x, nrow=8, ax=ax, title=f"{METHODS[method]}\ns = {s:g}: accuracy {results[method, s]['accuracy']:.0%}")
plt.tight_layout()
plt.show()
for method, scales in settings.items():
    assert results[method, scales[-1]]["accuracy"] > results[method, 0.0]["accuracy"]
