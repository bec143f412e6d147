# %% [markdown]
# # 4. A classifier that can read noisy digits
#
# Classifier guidance (notebook 5) asks, at every sampling step, "how should $x_t$ change to look more like
# class $y$?" The answer is the gradient $\nabla_{x_t}\log p_\phi(y\mid x_t, t)$. That needs a classifier that
# works on *noisy* images at every $t$, and that knows how noisy its input is.
#
# **Learning goals**
# - a CNN whose sinusoidal time embedding is added to its convolutional features;
# - training it on $x_t$ at random $t$ (cross-entropy), one step at a time;
# - its accuracy against $t$, beside a clean-image classifier that fails on noisy inputs.

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import course_utils as cu
from course_utils import checks
from course_utils.evaluation import accuracy_against_t

FAST = cu.fast_mode()
g = cu.seed_everything(0)
device = cu.pick_device()
mnist, test = cu.load_mnist(), cu.load_mnist(train=False, verbose=False)
schedule = cu.NoiseSchedule(T=1000, kind="linear")

# %% [markdown]
# ## 4.1 Adding the time embedding to the features
#
# After a convolution the features have shape `[B, C, H, W]`. The time embedding `emb` has shape `[B, D]`.
# A linear layer `proj` maps it to `[B, C]`: one shift per channel, which is then added at every pixel.
# The classifier can thus, for example, raise its thresholds when it knows the input is very noisy.
#
# **Exercise 4.1.** Write `add_time_embedding(h, emb, proj)`.

# %%
def add_time_embedding(h, emb, proj):
    # Exercise 4.1: h + proj(emb), broadcast over height and width
    ### BEGIN SOLUTION
    return h + proj(emb)[:, :, None, None]
    ### END SOLUTION


# %%
checks.check_add_time_embedding(add_time_embedding)

# %% [markdown]
# `cu.NoisyClassifier` is three such stages (conv, GroupNorm, SiLU, **+ time embedding**, conv, GroupNorm,
# SiLU, then 2x2 average pooling: 32 -> 16 -> 8 -> 4 pixels), global average pooling and a linear layer to
# 10 logits. Here is a small one built from your function:

# %%
class TinyNoisyClassifier(torch.nn.Module):
    def __init__(self, channels=(16, 32), emb_dim=64):
        super().__init__()
        self.time = cu.models.TimeEmbedding(emb_dim)
        self.convs = torch.nn.ModuleList()
        self.projs = torch.nn.ModuleList()
        c = 1
        for ch in channels:
            self.convs.append(torch.nn.Conv2d(c, ch, 3, padding=1))
            self.projs.append(torch.nn.Linear(emb_dim, ch))
            c = ch
        self.head = torch.nn.Linear(c, 10)

    def forward(self, x_t, t):
        emb = self.time(t)
        h = x_t
        for conv, proj in zip(self.convs, self.projs):
            h = F.silu(add_time_embedding(conv(h), emb, proj))
            h = F.avg_pool2d(h, 2)
        return self.head(h.mean(dim=(2, 3)))


tiny = TinyNoisyClassifier()
logits = tiny(torch.randn(5, 1, 32, 32), torch.randint(0, 1000, (5,)))
assert logits.shape == (5, 10)

# %% [markdown]
# ## 4.2 Training on noisy digits
#
# Each step noises a batch with the *same* forward process as the diffusion model, at uniformly random $t$,
# and minimises the cross-entropy of the true label:
#
# $$L = \mathbb E_{x_0, y, t, \varepsilon}\big[-\log p_\phi(y \mid x_t, t)\big],\qquad x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon .$$
#
# **Exercise 4.2.** Write `classifier_loss(classifier, x0, y, t, noise, schedule)`.

# %%
def classifier_loss(classifier, x0, y, t, noise, schedule):
    # Exercise 4.2: cross-entropy of classifier(x_t, t) against y, with x_t = q_sample(x0, t, noise)
    ### BEGIN SOLUTION
    x_t = schedule.q_sample(x0, t, noise)
    return F.cross_entropy(classifier(x_t, t), y)
    ### END SOLUTION


# %%
checks.check_classifier_loss(classifier_loss)

# %% [markdown]
# One training step, written out: sample $t$ and the noise, compute the loss, back-propagate, step.
# Then we repeat it with a progress bar (a few steps in fast mode).

# %%
optimizer = torch.optim.AdamW(tiny.parameters(), lr=3e-3)


def training_step(x0, y):
    t = torch.randint(0, schedule.T, (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    loss = classifier_loss(tiny, x0, y, t, noise, schedule)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


first = training_step(mnist.images[:128], mnist.labels[:128])
steps = 30 if FAST else 3000
losses = cu.fit(tiny, lambda m, x0, y: classifier_loss(m, x0, y, torch.randint(0, 1000, (len(y),), generator=g),
                                                       torch.randn(x0.shape, generator=g), schedule),
                (mnist.images, mnist.labels), steps=steps, batch_size=128, lr=3e-3, device="cpu",
                generator=g, desc="tiny noisy classifier", optimizer=optimizer)
cu.plot_losses([first] + losses, window=min(50, max(2, steps // 5)), title="cross-entropy on x_t")
plt.show()
assert len(losses) == steps and losses[-1] < 2.6

# %% [markdown]
# ## 4.3 Accuracy against $t$, and why a clean classifier fails
#
# The shipped `noisy_classifier` trained for 10,000 steps. We measure it on the 1,000 held-out digits at each
# noise level, beside the `evaluator`, a stronger classifier trained on clean digits only.

# %%
noisy = cu.load_pretrained("noisy_classifier", device="cpu")
evaluator = cu.load_pretrained("evaluator", device="cpu").model
ts = [0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 999]
rows = accuracy_against_t(noisy.model, evaluator, noisy.schedule, test.images, test.labels, ts, generator=g)
plt.figure(figsize=(6, 3.5))
plt.plot(ts, [r["noisy_classifier"] for r in rows], "o-", label="noise-aware classifier (sees t)")
plt.plot(ts, [r["clean_evaluator"] for r in rows], "s-", label="clean classifier")
plt.axhline(0.1, color="grey", ls=":", label="chance")
plt.xlabel("t"); plt.ylabel("accuracy on x_t"); plt.legend(); plt.title("classifying noisy digits")
plt.show()
for r in rows:
    print(f"t = {r['t']:3d}: noise-aware {r['noisy_classifier']:.1%}, clean {r['clean_evaluator']:.1%}")
acc = {r["t"]: r for r in rows}
assert acc[100]["noisy_classifier"] > 0.95 and acc[200]["clean_evaluator"] < 0.5
assert acc[999]["noisy_classifier"] < 0.2      # at t = T-1 nothing of the digit is left

# %% [markdown]
# At $t = 100$ the clean classifier is already unreliable, and by $t = 200$ it answers almost always the same
# class: it never saw noise, so noise pushes it off the inputs it knows. The noise-aware classifier keeps
# its accuracy up to $t \approx 300$ and then falls toward chance as the digit disappears. At high $t$ it
# cannot know the class; what guidance needs from it there is a gradient that points the right way.

# %%
show = test.images[torch.randperm(1000, generator=g)[:8]]
x_t = schedule.q_sample(show, 150, generator=g)
tt = torch.full((8,), 150)
with torch.no_grad():
    p_noisy = noisy.model(x_t, tt).argmax(1).tolist()
    p_clean = evaluator(x_t).argmax(1).tolist()
cu.show_images(x_t, nrow=8, title=f"t = 150: noise-aware says {p_noisy}, clean says {p_clean}")
plt.show()

# %% [markdown]
# ## Self-assessment
#
# 1. Why must the guiding classifier be noise-aware, and which two inputs does it take?
# <details><summary>Answer</summary>During sampling it is applied to x_t at every t, so it must be trained on the
# same noisy distribution; it takes the noisy image x_t and the timestep t.</details>
#
# 2. How does the time embedding enter the CNN, and why add it to the features rather than as an input channel?
# <details><summary>Answer</summary>A linear layer maps the embedding to one shift per channel, added after a
# convolution at every pixel. Every stage can then adapt to the noise level; a single input channel (the
# time map of notebook 2) would have to be carried through all layers.</details>
#
# 3. Why does a classifier trained on clean digits fail on $x_t$?
# <details><summary>Answer</summary>Noisy images lie outside its training distribution; its features respond to
# the noise and it collapses onto a few classes, as the curve shows from t of about 100 on.</details>
