# %% [markdown]
# # 2. DDPM with x0-prediction: learning to undo the noise
#
# The forward process is fixed; the reverse process is learned. Here the network looks at a noisy
# image $x_t$ and guesses the clean image $\hat x_0$. From that guess and $x_t$ we compute where
# $x_{t-1}$ should be, take a small random step there, and repeat from pure noise down to $t = 0$.
#
# **Learning goals**
# - feed the timestep to a U-Net as a second input channel (a "time map");
# - train with the simple loss $\lVert \hat x_0(x_t, t) - x_0\rVert^2$;
# - compute the posterior mean $\tilde\mu_t(x_t, \hat x_0)$ and sample ancestrally, with no noise at the last step;
# - train your own x0 U-Net for a few minutes and watch digits emerge; measure it against the shipped one.
#
# **Time:** about 4.5 minutes on a laptop CPU (2 cores): 2.5 of them live training (`TRAIN_MINUTES` below), and
# under a minute for a second experiment, a network trained without its skip connections.

# %%
import math

import matplotlib.pyplot as plt
import torch

import course_utils as cu
from course_utils import checks

TRAIN_MINUTES = cu.training_minutes(2.5)   # the live training budget: raise it for a better model
g = cu.seed_everything(0)
device = cu.pick_device()
mnist = cu.load_mnist()
schedule = cu.NoiseSchedule(T=1000, kind="linear")

# %% [markdown]
# The two chains, for one digit: the forward chain of notebook 1 (top arrows, fixed) and the reverse chain this
# notebook learns (bottom arrows), which starts from pure noise at $t = T - 1$ and ends at a clean image. Between
# the panels shown lie hundreds of small steps.

# %%
cu.plot_chains(mnist.images[:1], schedule, generator=g)
plt.show()

# %% [markdown]
# ## 2.1 Telling the network the time: a time map
#
# The same network must denoise at every noise level, so it needs $t$ as an input. The simplest way:
# make an extra image channel that holds $t/T$ at every pixel, and concatenate it to $x_t$.
# The U-Net then sees a 2-channel input of shape `[B, 2, H, W]`.
#
# **Exercise 2.1.** Write `make_time_map(t, T, x)`: from `t` of shape `[B]` build `t / T` of shape `[B, 1, H, W]`
# (view it as `[B, 1, 1, 1]`, then `expand` to the height and width of `x`).

# %%
def make_time_map(t, T, x):
    # Exercise 2.1: return t / T as a [B, 1, H, W] channel
    ### BEGIN SOLUTION
    b, _, h, w = x.shape
    return (t.float() / T).view(b, 1, 1, 1).expand(b, 1, h, w)
    ### END SOLUTION


# %%
checks.check_time_map(make_time_map)

# %% [markdown]
# `cu.TimeMapUNet` is a small U-Net (residual blocks, skip connections concatenated on the way up)
# whose forward pass does exactly this: `unet(torch.cat([x_t, time_map(t, T, x_t)], dim=1))`.

# %%
model = cu.TimeMapUNet(T=1000)
x_t = torch.randn(4, 1, 32, 32)
t = torch.tensor([0, 10, 500, 999])
two_channels = torch.cat([x_t, make_time_map(t, 1000, x_t)], dim=1)
print("network input:", list(two_channels.shape), "| parameters:", cu.count_parameters(model))
assert two_channels.shape == (4, 2, 32, 32) and model.unet.inc.in_channels == 2
assert model(x_t, t).shape == x_t.shape

# %% [markdown]
# ## 2.2 Why the schedule lives in registered buffers
#
# `NoiseSchedule` is an `nn.Module` whose tensors are *registered buffers*: they are not trained, but they
# move with `.to(device)` and are saved in the `state_dict`. A plain tensor attribute would stay on the CPU
# when the model goes to the GPU, and the first `alpha_bars[t]` with a GPU `t` would fail.

# %%
print("buffers:", [name for name, _ in schedule.named_buffers()])
print("trainable parameters in the schedule:", sum(p.numel() for p in schedule.parameters()))
assert "alpha_bars" in schedule.state_dict() and sum(p.numel() for p in schedule.parameters()) == 0

# %% [markdown]
# ## 2.3 Training: regress the clean image
#
# Each step: take clean digits $x_0$, a random $t$ and noise $\varepsilon$, form
# $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon$, and minimise
# $\lVert \hat x_0(x_t, t) - x_0\rVert^2$.
#
# We train a small time-map U-Net (channels 16, 32, 32: sized so that a CPU runs several steps a second)
# for `TRAIN_MINUTES`. The learning rate follows a *one-cycle* shape planned for the time budget: it rises
# for the first tenth of the time, then decays along a half cosine to nearly zero, so a short run both
# learns fast and settles.
#
# **The EMA.** We sample not from the trained weights $\theta$ but from their exponential moving average, updated after
# every step: $\theta_\text{EMA} \leftarrow d\,\theta_\text{EMA} + (1-d)\,\theta$ with $d = 0.995$ (an average over
# roughly the last $1/(1-d) = 200$ steps). The last steps' noise in $\theta$ averages out, and samples are cleaner. For
# the first steps $d$ is smaller ($\min(d, \frac{1+k}{10+k})$ after $k$ updates), so that the average does not remember
# the random initial weights.
#
# **What to expect.** Every 25 s the figure below redraws 8 samples (always from the same starting noise, drawn
# with DDIM in 20 steps: a faster sampler for the same trained model, which notebook 3 derives; section 2.5's
# ancestral sampler would take 1,000) and the loss curve. The first frames are grey blobs; after a minute or so strokes
# appear, and by the end many samples are rough but readable digits (section 2.6 counts how many pass for
# real ones). Press the stop button
# whenever you like: training ends cleanly and keeps what it learned.

# %%
def x0_loss(m, x0):
    return cu.denoiser_loss(m, schedule.to(x0.device), x0, prediction="x0", generator=g)


mine, losses = cu.train_live("ddpm_x0", x0_loss, (mnist.images,), minutes=TRAIN_MINUTES, device=device,
                             generator=g, preview=cu.sample_preview(schedule, prediction="x0"),
                             title="your x0 U-Net")
model = mine.model
print(f"{len(losses):,} steps in {mine.info['train_seconds']:.0f} s; mean loss of the last 50: "
      f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
k = max(1, len(losses) // 4)
assert not any(math.isnan(v) for v in losses) and sum(losses[-k:]) < sum(losses[:k])   # no NaN, and it learned

# %% [markdown]
# ## 2.4 From $\hat x_0$ back one step: the posterior mean
#
# Given $x_0$, the forward process can be run backwards exactly: $q(x_{t-1}\mid x_t, x_0)$ is Gaussian with
#
# $$\tilde\mu_t(x_t, x_0) = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0
#   + \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t,
# \qquad \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t .$$
#
# We do not know $x_0$ while sampling, so we plug in the network's guess $\hat x_0$.
#
# **Exercise 2.2.** Write `posterior_mean(x0_hat, x_t, t, schedule)`. `schedule.alpha_bars_prev[t]` holds
# $\bar\alpha_{t-1}$ (with $\bar\alpha_{-1} = 1$).

# %%
def posterior_mean(x0_hat, x_t, t, schedule):
    # Exercise 2.2: the mean of q(x_{t-1} | x_t, x0) with x0_hat in place of x0
    ### BEGIN SOLUTION
    shape = (-1,) + (1,) * (x_t.dim() - 1)
    a, b = schedule.alphas[t].view(shape), schedule.betas[t].view(shape)
    ab, ab_prev = schedule.alpha_bars[t].view(shape), schedule.alpha_bars_prev[t].view(shape)
    return ab_prev.sqrt() * b / (1 - ab) * x0_hat + a.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    ### END SOLUTION


# %%
checks.check_posterior_mean(posterior_mean)

# %% [markdown]
# **Exercise 2.3.** Write one ancestral step `ddpm_step(x_t, t, x0_hat, schedule, noise)` for an integer `t`:
# $x_{t-1} = \tilde\mu_t + \sqrt{\tilde\beta_t}\,z$ for $t > 0$, and just $\tilde\mu_0$ at $t = 0$: the last step
# adds no noise, since its result is the final image.

# %%
def ddpm_step(x_t, t, x0_hat, schedule, noise):
    # Exercise 2.3: x_{t-1} = posterior mean + sqrt(posterior variance) * noise, and no noise at t = 0
    ### BEGIN SOLUTION
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long)
    mean = posterior_mean(x0_hat, x_t, tt, schedule)
    if t == 0:
        return mean
    return mean + schedule.posterior_variance[t].sqrt() * noise
    ### END SOLUTION


# %%
checks.check_ddpm_step(ddpm_step)

# %% [markdown]
# ## 2.5 Ancestral sampling with our own loop
#
# Start from $x_{T-1}\sim\mathcal N(0, I)$ and apply the step 1,000 times. Clamping $\hat x_0$ to $[-1, 1]$
# keeps each guess a valid image and removes speckle from the background. We run our loop with the shipped
# x0-model and check it against the package's `ddpm_sample`, given the same random numbers.

# %%
shipped = cu.load_pretrained("ddpm_x0", device="cpu")
n = cu.sample_count(8)    # 8 samples (the tests draw fewer: cu.sample_count shrinks counts in fast mode)


@torch.no_grad()
def sample_x0_model(net, n, generator):
    x = torch.randn(n, 1, 32, 32, generator=generator)
    for t_int in range(schedule.T - 1, -1, -1):
        t = torch.full((n,), t_int, dtype=torch.long)
        x0_hat = net(x, t).clamp(-1, 1)
        z = torch.randn(x.shape, generator=generator) if t_int > 0 else torch.zeros_like(x)
        x = ddpm_step(x, t_int, x0_hat, schedule, z)
    return x


ours = sample_x0_model(shipped.model, n, torch.Generator().manual_seed(1))
# the package's sampler, one step at a time: keep x_t and x0_hat every 125 steps, and the end
steps = cu.sampling_steps(shipped.model, shipped.schedule, (n, 1, 32, 32), prediction="x0",
                          generator=torch.Generator().manual_seed(1), device="cpu")
trajectory = cu.record_trajectory(steps, every=125)
package = trajectory.x_t[-1]
cu.show_images(ours, nrow=n, title="our loop, shipped ddpm_x0 (DDPM-1000)")
plt.show()
print("largest difference from ddpm_sample:", (ours - package).abs().max().item())
assert torch.allclose(ours, package, atol=1e-3)

# %% [markdown]
# The same run, step by step: $x_t$ (upper row of each pair) and the network's guess $\hat x_0$ (lower row).
# The guess settles on a digit long before the noise is gone; the last few hundred steps refine strokes.

# %%
cu.plot_trajectory(trajectory, n=min(3, n))
plt.show()
assert trajectory.t[0] == 999 and trajectory.t[-1] == -1 and len(trajectory.x0) == len(trajectory.t)

# %% [markdown]
# ## 2.6 Your model against the shipped one: measured, not eyeballed
#
# The evaluator is a separate clean-digit classifier that never takes part in generation. We judge samples
# by the Frechet distance between its features of the samples and of real held-out digits (lower is
# closer to real data), by how many different digits it recognises among them, by the share of samples
# that are *realistic* (precision: whose features land among those of real digits, closer to some held-out
# digit than that digit's 3rd-nearest real neighbour is; notebook 3 says more), and by the share of real
# digits that land among the samples the same way (*recall*: samples that all look alike, or like no digit
# in particular, cover few real digits however realistic each one looks). Precision alone can flatter a
# young model, so the verdict rests on the Frechet distance and recall. We sample both models with DDIM (50
# steps, introduced in notebook 3). Confidence alone would not do: the evaluator names a digit for a blank
# image, with confidence (the printout shows which and how sure), which is why we compare features.

# %%
from course_utils.evaluation import evaluator_outputs, frechet_distance, realistic_fraction, recall_fraction

evaluator = cu.load_pretrained("evaluator", device="cpu").model
real_feats = evaluator_outputs(evaluator, cu.load_mnist(train=False, verbose=False).images)[1]
# the real-vs-real value: 64 real training digits against the test digits (a small sample inflates the
# distance, so compare samples with this, not with 0; a yardstick, not a floor: samples can score below it)
pick64 = torch.randperm(len(mnist.images), generator=torch.Generator().manual_seed(0))[:64]   # always the same
real64 = mnist.images[pick64]
real_vs_real = frechet_distance(evaluator_outputs(evaluator, real64)[1], real_feats)
brief = cu.ddim_sample(model, schedule, (64, 1, 32, 32), prediction="x0", steps=50,
                       generator=torch.Generator().manual_seed(2), device=device).cpu()
shipped_label = shipped.label
good = cu.ddim_sample(shipped.model, shipped.schedule, (64, 1, 32, 32), prediction="x0", steps=50,
                      generator=torch.Generator().manual_seed(2), device="cpu")
fig, axes = plt.subplots(1, 2, figsize=(12, 6))
fd, realistic, recall = {}, {}, {}
for ax, (name, x) in zip(axes, [(mine.label, brief), (shipped_label, good)]):
    logits, feats = evaluator_outputs(evaluator, x)
    fd[name], realistic[name] = frechet_distance(feats, real_feats), realistic_fraction(feats, real_feats)
    recall[name] = recall_fraction(feats, real_feats)
    kinds = logits.argmax(1).unique().numel()
    cu.show_images(x, nrow=8, ax=ax, title=f"{name}\nFrechet {fd[name]:.0f}, {realistic[name]:.0%} realistic, "
                                           f"recall {recall[name]:.0%}, {kinds} different digits")
plt.show()
real64_feats = evaluator_outputs(evaluator, real64)[1]
print(f"real-vs-real with 64 digits: Frechet {real_vs_real:.0f}, {realistic_fraction(real64_feats, real_feats):.0%} "
      f"realistic, recall {recall_fraction(real64_feats, real_feats):.0%}")
for name in fd:
    print(f"{name}: Frechet distance {fd[name]:.0f}, {realistic[name]:.0%} realistic, recall {recall[name]:.0%}")
blank_p = evaluator_outputs(evaluator, -torch.ones(1, 1, 32, 32))[0].softmax(1)
print(f"the evaluator on a blank image: '{blank_p.argmax().item()}' with {blank_p.max():.0%} confidence")
assert blank_p.max() > 0.9    # confident about an image with no digit: confidence is not quality
assert fd[shipped_label] < 3 * real_vs_real and realistic[shipped_label] > 0.7
assert fd[shipped_label] < fd[mine.label] and recall[shipped_label] > recall[mine.label]
if cu.trained_enough(mine):   # the default budget's runs behind this bound: site/learner-mode.md
    assert realistic[mine.label] >= 0.35

# %% [markdown]
# ## 2.7 Why the U-Net has skip connections
#
# The encoder halves the resolution twice, and what comes back up from the bottom has lost the fine detail of
# the strokes. The skip connections hand each decoder level the encoder's features at its own resolution, so
# the network can copy what is still visible in $x_t$ and spend its capacity on what the noise hides. To see
# what they are worth, we train the same network twice for the same time: once as it is, once with its skip
# paths carrying zeros (`skips=False`: the same parameters, the same cost per step). Then we compare their
# $\hat x_0$ on held-out digits.

# %%
ablation_minutes = TRAIN_MINUTES / 6
test_digits = cu.load_mnist(train=False, verbose=False).images[:64]
probe_t = [20, 100, 300, 600]
ablation = {}
for name, skips in [("with skips", True), ("without skips", False)]:
    net = cu.TimeMapUNet(T=1000, channels=(16, 32, 32), skips=skips)
    cu.train_denoiser(net, schedule, mnist.images, minutes=ablation_minutes, prediction="x0", batch_size=64,
                      lr=3e-3, lr_shape=cu.one_cycle, device=device, generator=g, desc=name)
    net = net.cpu().eval()
    errors, guesses = [], []
    with torch.no_grad():
        for t_int in probe_t:
            t = torch.full((64,), t_int)
            x_t = schedule.q_sample(test_digits, t, generator=torch.Generator().manual_seed(t_int))
            x0_hat = net(x_t, t).clamp(-1, 1)
            errors.append(((x0_hat - test_digits) ** 2).mean().item())
            guesses.append(x0_hat[:6])
    ablation[name] = {"errors": errors, "guesses": guesses}
    print(f"{name:14s}: x0_hat error " + ", ".join(f"{e:.4f} at t = {t}" for e, t in zip(errors, probe_t)))
fig, axes = plt.subplots(3, len(probe_t), figsize=(3 * len(probe_t), 3.4))
for j, t_int in enumerate(probe_t):
    t = torch.full((6,), t_int)
    cu.show_images(schedule.q_sample(test_digits[:6], t, generator=torch.Generator().manual_seed(t_int)),
                   nrow=6, ax=axes[0, j], title=f"x_t, t = {t_int}")
    for row, name in enumerate(ablation, start=1):
        cu.show_images(ablation[name]["guesses"][j], nrow=6, ax=axes[row, j], title=f"x0_hat {name}")
plt.tight_layout()
plt.show()
if TRAIN_MINUTES >= 2:   # after 25 s or more of training each, the skips' advantage at small t is clear
    assert ablation["with skips"]["errors"][0] < 0.75 * ablation["without skips"]["errors"][0]

# %% [markdown]
# At small $t$, where $x_t$ still shows the digit, the network with skips returns it nearly as it is; without
# them the digit must be rebuilt from the bottleneck, and its error is about twice as large at $t = 20$ (the
# printed rows; by eye, after so short a training, its strokes are only a little softer). At large $t$ little is
# visible, there is nothing to copy, and the two networks are equally good: the skips help exactly where fine
# detail survives the noise.

# %% [markdown]
# ## Self-assessment
#
# 1. Which of the two processes is learned, the forward or the reverse?
# <details><summary>Answer</summary>Only the reverse one. The forward process is fixed by the schedule.</details>
#
# 2. What does the time-map channel give the U-Net, and what is its shape?
# <details><summary>Answer</summary>The noise level: a constant image holding t/T, shape [B, 1, H, W],
# concatenated to x_t so the input is [B, 2, H, W].</details>
#
# 3. Why are the schedule tensors registered as buffers rather than stored as plain tensors?
# <details><summary>Answer</summary>Buffers move with .to(device) and are saved with the state_dict, but are not
# parameters, so the optimiser leaves them alone.</details>
#
# 4. One of our sources numbers its steps 1..T, as the papers do, adds noise only while t > 1, and loops
# `for i in reversed(range(1, T))`. Which steps does that loop visit, in its numbering and in ours, and why is
# there no noise at the last step?
# <details><summary>Answer</summary>It visits T-1 down to 1. In its own numbering that ends at its last step, t = 1,
# as it should, and skips only its first step t = T: it starts from noise as if that were x_{T-1}, which changes
# almost nothing since alpha_bar is nearly 0 at both. In our numbering (t = 0..T-1, the papers' t minus 1) the
# same loop would stop before t = 0 and miss the final denoising step, which is why our loops run
# `range(T - 1, -1, -1)`. The last step returns the mean itself: its output is the image, and noise added there
# would stay in it.</details>
#
# 5. Give two reasons why a briefly trained model gives bad samples.
# <details><summary>Answer</summary>Its x0 guesses are blurry averages at high noise (it has not learned the
# data), and errors compound over 1,000 sampling steps; an EMA of the weights, used for sampling, also needs
# time to forget the random initial weights.</details>
#
# 6. How does sampling from a DDPM differ from sampling from a GAN or a VAE, and what does each gain?
#    <details><summary>Answer</summary>A GAN's generator and a VAE's decoder turn noise into an image in one forward
#    pass. A DDPM runs its network once per step, here 1,000 times, each step removing a little noise; generation is an
#    iterative denoising procedure. The price is speed: 1,000 network calls per image instead of one. The gain is a
#    simple, stable training objective (a regression, no adversary) and samples that cover the whole data distribution,
#    where a GAN tends to drop modes and a VAE, trained with a per-pixel likelihood, gives blurry images. Guidance
#    (notebooks 5 and 6) then lets a DDPM trade diversity for fidelity as a GAN's truncation does.</details>
