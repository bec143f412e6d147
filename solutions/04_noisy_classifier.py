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
#
# **Time:** about 3 minutes on a laptop CPU, 2 of them live training (`TRAIN_MINUTES` below).

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import course_utils as cu
from course_utils import checks
from course_utils.evaluation import accuracy_against_t, evaluator_outputs

TRAIN_MINUTES = cu.training_minutes(2.0)   # the live training budget: raise it for a better classifier
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
        self.time = cu.core.models.TimeEmbedding(emb_dim)
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
# $$L = \mathbb E_{x_0, y, t, \varepsilon}\big[-\log p_\phi(y \mid x_t, t)\big],\qquad x_t = \sqrt{\bar\alpha_t}x_0 +
# \sqrt{1-\bar\alpha_t}\varepsilon .$$
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


first = [training_step(mnist.images[i:i + 64], mnist.labels[i:i + 64]) for i in range(0, 640, 64)]
print("tiny classifier, the first 10 steps' cross-entropy:", " ".join(f"{v:.2f}" for v in first))
assert not any(math.isnan(v) for v in first) and abs(first[0] - 2.30) < 0.5   # starts near log(10): a guess among 10

# %% [markdown]
# The same step, repeated for `TRAIN_MINUTES` with a progress bar, trains the `cu.NoisyClassifier` that
# notebook 5 uses to guide sampling (channels 16, 32, 64, with your `classifier_loss`). Every 25 s the
# figure redraws its accuracy on 500 held-out digits at a few noise levels: it learns the nearly clean
# digits first, and the accuracy at larger $t$ follows. It is saved to `my_models/` for notebook 5.

# %%
probe_t = [0, 100, 200, 300, 400, 500, 600, 700]
probe_x0, probe_y = test.images[:500], test.labels[:500]


@torch.no_grad()
def accuracy_at(classifier, t_int):
    dev = next(classifier.parameters()).device
    x_t = schedule.to(dev).q_sample(probe_x0.to(dev), t_int, generator=torch.Generator(dev).manual_seed(t_int))
    t = torch.full((len(probe_y),), t_int, device=dev)
    return (classifier(x_t, t).argmax(1).cpu() == probe_y).float().mean().item()


def draw_accuracy(classifier, ax):
    ax.plot(probe_t, [accuracy_at(classifier, t) for t in probe_t], "o-")
    ax.axhline(0.1, color="grey", ls=":")
    ax.set_ylim(0, 1); ax.set_xlabel("t"); ax.set_title("accuracy on 500 held-out noisy digits")


def my_classifier_loss(m, x0, y):
    t = torch.randint(0, schedule.T, (len(y),), generator=g).to(x0.device)
    return classifier_loss(m, x0, y, t, torch.randn(x0.shape, generator=g).to(x0.device), schedule.to(x0.device))


mine, losses = cu.train_live("noisy_classifier", my_classifier_loss, (mnist.images, mnist.labels),
                             minutes=TRAIN_MINUTES, device=device, generator=g, preview=draw_accuracy,
                             title="your noise-aware classifier")
print(f"{len(losses):,} steps in {mine.info['train_seconds']:.0f} s; accuracy at t = 100: "
      f"{accuracy_at(mine.model, 100):.1%}")
assert len(losses) > 0 and losses[-1] < 2.6

# %% [markdown]
# ## 4.3 Accuracy against $t$, and why a clean classifier fails
#
# We measure your classifier and the shipped `noisy_classifier` (a wider one, 10,000 steps on a GPU) on the
# 1,000 held-out digits at each noise level, beside the `evaluator`, a stronger classifier trained on clean
# digits only.

# %%
noisy = cu.load_pretrained("noisy_classifier", device="cpu")
evaluator = cu.load_pretrained("evaluator", device="cpu").model
ts = [0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 999]
n_test = cu.sample_count(1000)     # all 1,000 test digits (fewer in the tests' fast mode)
images, labels = test.images[:n_test], test.labels[:n_test]
rows = accuracy_against_t(noisy.model, evaluator, noisy.schedule, images, labels, ts, generator=g)
mine_rows = accuracy_against_t(mine.model.cpu(), evaluator, schedule, images, labels, ts, generator=g)
plt.figure(figsize=(7, 3.8))
plt.plot(ts, [r["noisy_classifier"] for r in rows], "o-", label=f"noise-aware: {noisy.label}")
plt.plot(ts, [r["noisy_classifier"] for r in mine_rows], "^-", label=f"noise-aware: {mine.label}")
plt.plot(ts, [r["clean_evaluator"] for r in rows], "s-", label="clean classifier")
plt.axhline(0.1, color="grey", ls=":", label="chance")
plt.xlabel("t"); plt.ylabel("accuracy on x_t"); plt.legend(); plt.title("classifying noisy digits")
plt.show()
for r, m in zip(rows, mine_rows):
    print(f"t = {r['t']:3d}: noise-aware shipped {r['noisy_classifier']:.1%}, yours {m['noisy_classifier']:.1%}, "
          f"clean {r['clean_evaluator']:.1%}")
acc = {r["t"]: r for r in rows}
if cu.trained_enough(mine):   # the default budget is enough for a classifier of nearly clean digits
    assert {r["t"]: r for r in mine_rows}[100]["noisy_classifier"] > 0.9
assert acc[100]["noisy_classifier"] > 0.95 and acc[200]["clean_evaluator"] < 0.5
assert acc[999]["noisy_classifier"] < 0.2      # at t = T-1 nothing of the digit is left
for t_int in (100, 200):
    answers = evaluator_outputs(evaluator, noisy.schedule.q_sample(images, torch.full((len(images),), t_int),
                                                                   generator=g))[0].argmax(1)
    common = torch.bincount(answers, minlength=10)
    print(f"t = {t_int}: the clean classifier answers '{common.argmax().item()}' for "
          f"{common.max().item() / len(images):.0%} of the {len(images)} digits")
assert common.max().item() / len(images) > 0.5     # at t = 200 most answers are one class

# %% [markdown]
# At $t = 100$ the clean classifier is already unreliable, and by $t = 200$ it gives one class for most digits (the last
# printout says which and how often): it never saw noise, so noise pushes it off the inputs it knows. The noise-aware
# classifier keeps its accuracy up to $t \approx 300$ and then falls toward chance as the digit disappears. At high $t$
# it cannot know the class; what guidance needs from it there is a gradient that points the right way.

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
