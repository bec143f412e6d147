# %% [markdown]
# # 3. DDPM with eps-prediction, and DDIM
#
# Instead of guessing the clean image, the network can guess the *noise* $\varepsilon$ that was added.
# Since $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon$, either guess gives the other, yet the
# choice changes what the network finds easy to learn. This is the parameterisation of Ho et al. and of
# most diffusion models since.
#
# **Learning goals**
# - sinusoidal time embeddings, added inside every residual block of the U-Net;
# - the eps objective $\lVert\varepsilon_\theta(x_t, t) - \varepsilon\rVert^2$;
# - the reverse mean
#   $\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\varepsilon_\theta\big)$, and
#   a misprint of it in one of our sources;
# - converting between $x_0$ and $\varepsilon$; DDIM, which samples in 50 steps instead of 1,000;
# - a flattened MLP against the U-Net, and x0- against eps-prediction, judged by the evaluator.
#
# **Time:** about 5 minutes on a laptop CPU: 2.5 minutes of live training (`TRAIN_MINUTES` below), three
# short trainings of 6 s for the comparisons, and sampling.

# %%
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import course_utils as cu
from course_utils import checks
from course_utils.evaluation import diversity, evaluator_outputs, frechet_distance, realistic_fraction, recall_fraction

TRAIN_MINUTES = cu.training_minutes(2.5)   # the live training budget: raise it for a better model
g = cu.seed_everything(0)
device = cu.pick_device()
mnist = cu.load_mnist()
schedule = cu.NoiseSchedule(T=1000, kind="linear")

# %% [markdown]
# ## 3.1 Sinusoidal time embeddings
#
# A single number $t$ is a weak signal for a network. The Transformer's position code turns it into a
# vector of sines and cosines at geometrically spaced frequencies:
#
# $$\mathrm{emb}(t) = \big[\sin(t\,w_0), \dots, \sin(t\,w_{d/2-1}),\ \cos(t\,w_0), \dots, \cos(t\,w_{d/2-1})\big],
# \qquad w_i = 10000^{-i/(d/2)} .$$
#
# High frequencies tell neighbouring steps apart; low ones give the coarse position. An MLP then maps this
# vector to every residual block, where it is added to the feature maps (one value per channel).
#
# **Exercise 3.1.** Write `sinusoidal(t, dim)` returning `[B, dim]`.

# %%
def sinusoidal(t, dim):
    # Exercise 3.1: [sin(t w_i) | cos(t w_i)] with w_i = 10000^(-i / (dim/2))
    ### BEGIN SOLUTION
    half = dim // 2
    w = 10000 ** (-torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * w[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)
    ### END SOLUTION


# %%
checks.check_sinusoidal_embedding(sinusoidal)

# %%
emb = sinusoidal(torch.arange(1000), 64)
plt.figure(figsize=(8, 3))
plt.imshow(emb.T, aspect="auto", cmap="RdBu")
plt.xlabel("t"); plt.ylabel("embedding dimension"); plt.colorbar(); plt.title("sinusoidal embedding of t")
plt.show()
# nearby timesteps get similar codes, distant ones different codes
sim = F.cosine_similarity(emb[500:501], emb, dim=1)
assert sim[501] > sim[600] > sim[900] - 0.2 and emb.shape == (1000, 64)

# %% [markdown]
# ## 3.2 The eps objective
#
# $$L = \mathbb E_{x_0, t, \varepsilon}\,\big\lVert \varepsilon_\theta(\sqrt{\bar\alpha_t}x_0 +
# \sqrt{1-\bar\alpha_t}\varepsilon,\ t) - \varepsilon\big\rVert^2$$
#
# **Exercise 3.2.** Write `eps_loss(model, x0, t, noise, schedule)` (use `schedule.q_sample`).

# %%
def eps_loss(model, x0, t, noise, schedule):
    # Exercise 3.2: the mean squared error between model(x_t, t) and the noise
    ### BEGIN SOLUTION
    x_t = schedule.q_sample(x0, t, noise)
    return F.mse_loss(model(x_t, t), noise)
    ### END SOLUTION


# %%
checks.check_eps_loss(eps_loss)

# %% [markdown]
# ### Which timesteps to learn from: min-SNR weighting
#
# The loss above draws $t$ uniformly, so every timestep counts the same. Read through the clean image it predicts, an
# eps error is $\lVert\hat\varepsilon - \varepsilon\rVert^2 = \mathrm{SNR}_t\,\lVert\hat x_0 - x_0\rVert^2$ with
# $\mathrm{SNR}_t = \bar\alpha_t / (1 - \bar\alpha_t)$ (substitute $\hat x_0$ from the formula of 3.4 below). At $t = 0$
# the SNR is about 10,000: the eps loss asks for the clean image to within a hair on nearly clean inputs, a task that
# matters little to a sample, and a small network trained for minutes spends much of its effort there. Hang et al.
# (2023) cap the weight of the x0 error at $\gamma$ ("min-SNR-$\gamma$"), which in eps terms is
#
# $$w_t = \frac{\min(\mathrm{SNR}_t, \gamma)}{\mathrm{SNR}_t}, \qquad
#   L = \mathbb E_t\big[w_t\,\lVert\varepsilon_\theta - \varepsilon\rVert^2\big], \qquad \gamma = 5 :$$
#
# $w_t = 1$ wherever $\mathrm{SNR}_t \le 5$, and less on the nearly clean steps. It is still eps-prediction with your
# loss: instead of multiplying each sample's error by $w_t$, draw $t$ with probability $p_t = w_t / \sum_s w_s$. Then
# $\mathbb E_{t\sim p}[L_t] = \sum_t w_t L_t / \sum_s w_s$, the weighted loss up to a constant factor, and your
# `eps_loss` stays as it is. (`cu.min_snr_weight` and `cu.min_snr_timesteps` are these two formulas.) What it buys,
# measured by `benchmarks/bench_objectives.py` (this network for 150 s on 2 cores limited to AVX2, one seed, 100 samples
# of the respaced DDPM chain, judged as in section 3.5 below): with uniform $t$ 53% of the samples were realistic,
# Frechet 479; with min-SNR-5 67%, Frechet 369 (the whole table: site/quality.md).

# %%
w_t = cu.min_snr_weight(schedule, torch.arange(schedule.T), 5.0)
p_t = w_t / w_t.sum()
plt.figure(figsize=(8, 2.6))
plt.plot(w_t, label="$w_t = \\min(\\mathrm{SNR}_t, 5) / \\mathrm{SNR}_t$")
plt.plot(p_t * schedule.T, "--", label="$p_t$ (times T: 1 is uniform)")
plt.xscale("log"); plt.xlabel("t"); plt.legend(); plt.title("min-SNR-5: how often each t is drawn")
plt.show()
capped = int((w_t < 1).sum())
print(f"w_t < 1 for the first {capped} timesteps (SNR_t > 5); t = 0 is drawn {float(p_t[0] * schedule.T):.4f} "
      f"times as often as under uniform t, t = 500 {float(p_t[500] * schedule.T):.2f} times")
assert w_t[0] < 0.001 and (w_t[capped:] == 1).all() and 50 < capped < 200

# %% [markdown]
# Now train an eps U-Net (channels 16, 32, 32, a 64-wide time embedding) with *your* loss and min-SNR-5 timesteps,
# for `TRAIN_MINUTES`, with the one-cycle learning rate and the EMA of notebook 2, in batches of 16 (on a CPU,
# twice the optimiser steps of batch 32 in the same minutes; in a few minutes this model gains more from the steps
# than from the larger batches, as site/quality.md measures). Every 25 s the figure redraws
# 8 samples from the same starting noise: blobs first, then strokes, then digits. The model is saved to
# `my_models/`; notebook 5 guides it toward a chosen digit. (The shipped `ddpm_eps` is a wider network
# trained for 13,000 steps on a GPU, with uniform t; we compare the two below.)

# %%
def my_loss(m, x0):
    t = cu.min_snr_timesteps(schedule, x0.shape[0], 5.0, generator=g).to(x0.device)
    return eps_loss(m, x0, t, torch.randn(x0.shape, generator=g).to(x0.device), schedule.to(x0.device))


mine, losses = cu.train_live("ddpm_eps", my_loss, (mnist.images,), minutes=TRAIN_MINUTES, device=device,
                             generator=g, preview=cu.sample_preview(schedule), title="your eps U-Net")
print(f"{len(losses):,} steps in {mine.info['train_seconds']:.0f} s; mean loss of the last 50: "
      f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
assert len(losses) > 0 and losses[-1] < 1.5

# %% [markdown]
# ## 3.3 The reverse mean from the predicted noise
#
# Substituting $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon)/\sqrt{\bar\alpha_t}$ into the posterior mean
# of notebook 2 simplifies to
#
# $$\mu_\theta(x_t, t) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t -
# \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\hat\varepsilon\Big).$$
#
# **Exercise 3.3.** Write `reverse_mean(x_t, t, eps, schedule)`.

# %%
def reverse_mean(x_t, t, eps, schedule):
    # Exercise 3.3: 1/sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps)
    ### BEGIN SOLUTION
    shape = (-1,) + (1,) * (x_t.dim() - 1)
    a, b, ab = schedule.alphas[t].view(shape), schedule.betas[t].view(shape), schedule.alpha_bars[t].view(shape)
    return (x_t - b / (1 - ab).sqrt() * eps) / a.sqrt()
    ### END SOLUTION


# %%
checks.check_reverse_mean(reverse_mean)

# %% [markdown]
# ### A misprint, and why it matters
#
# One of our sources writes the mean as
# $\frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{1-\alpha_t}{\sqrt{1-\alpha_t}}\hat\varepsilon\big)$, i.e. with
# $\sqrt{1-\alpha_t} = \sqrt{\beta_t}$ in the denominator instead of $\sqrt{1-\bar\alpha_t}$. The two agree only at
# $t = 0$. Elsewhere the misprint removes $\sqrt{\beta_t}$ of noise per step instead of $\beta_t/\sqrt{1-\bar\alpha_t}$,
# that is $\sqrt{1-\bar\alpha_t}/\sqrt{\beta_t}$ times too much: the next cell prints the ratio, above 5 from about
# $t = 50$ on and up to about 10 in the middle of the chain. Sampling with it still makes a digit, but always the same
# one: the diversity (mean distance between the evaluator's features of two samples) collapses.

# %%
t_all = torch.arange(1000)
right = schedule.betas / (1 - schedule.alpha_bars).sqrt()
wrong = schedule.betas / (1 - schedule.alphas).sqrt()
plt.figure(figsize=(6, 3))
plt.semilogy(t_all, wrong / right)
plt.xlabel("t"); plt.title("noise coefficient: misprint / correct"); plt.show()
ratio = wrong / right
print("misprint / correct: " + ", ".join(f"{ratio[t]:.1f}x at t = {t}" for t in (1, 10, 50, 100, 300, 500, 999))
      + f"; above 5x for every t >= {int((ratio >= 5).nonzero()[0])}, at most {ratio.max():.1f}x")
assert ratio[50:].min() > 5 and 9 < ratio.max() < 11

shipped = cu.load_pretrained("ddpm_eps", device="cpu")


@torch.no_grad()
def ancestral(mean_fns, n, seed):
    """Ancestral sampling with the shipped model, once per reverse mean in `mean_fns`, all from the same noises
    (one batch, so the model runs once per step for all of them)."""
    gen = torch.Generator().manual_seed(seed)
    k = len(mean_fns)
    x = torch.randn(n, 1, 32, 32, generator=gen).repeat(k, 1, 1, 1)
    for t_int in range(999, -1, -1):
        t = torch.full((k * n,), t_int)
        eps = shipped.model(x, t)
        x = torch.cat([fn(xi, ti, ei) for fn, xi, ti, ei in zip(mean_fns, x.chunk(k), t.chunk(k), eps.chunk(k))])
        if t_int > 0:
            z = torch.randn(n, 1, 32, 32, generator=gen).repeat(k, 1, 1, 1)   # the same noise in every chain
            x = x + schedule.posterior_variance[t_int].sqrt() * z
    return x.chunk(k)


def misprinted(x_t, t, eps, schedule=schedule):
    a = schedule.alphas[t].view(-1, 1, 1, 1)
    return (x_t - (1 - a) / (1 - a).sqrt() * eps) / a.sqrt()


n = cu.sample_count(6, least=4)     # 6 samples (fewer in the tests' fast mode): 1,000 steps of the shipped model
good, bad = ancestral([lambda x, t, e: reverse_mean(x, t, e, schedule), misprinted], n, 0)
evaluator = cu.load_pretrained("evaluator", device="cpu").model
spread = {}
fig, axes = plt.subplots(1, 2, figsize=(12, 2.2))
for ax, (name, x) in zip(axes, [("correct mean", good), ("misprinted mean", bad)]):
    logits, feats = evaluator_outputs(evaluator, x)
    spread[name] = diversity(feats, torch.zeros(len(x), dtype=torch.long))
    digits = "".join(str(d) for d in logits.argmax(1).tolist())
    cu.show_images(x, nrow=n, ax=ax, title=f"{shipped.label}, {name}:\ndigits {digits}, diversity {spread[name]:.0f}")
plt.show()
# the misprint removes too much noise early: every sample collapses toward the same thin stroke
assert spread["misprinted mean"] < 0.5 * spread["correct mean"]

# %% [markdown]
# ## 3.4 x0 and eps are two views of the same prediction
#
# $$\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon}{\sqrt{\bar\alpha_t}},\qquad
#   \hat\varepsilon = \frac{x_t - \sqrt{\bar\alpha_t}\,\hat x_0}{\sqrt{1-\bar\alpha_t}} .$$
#
# So an eps-model can be sampled with the x0 formulas and vice versa; the posterior mean from $\hat x_0$ equals the
# reverse mean from $\hat\varepsilon$. What differs is the error: dividing by $\sqrt{\bar\alpha_t}$ (tiny at large $t$)
# blows up eps errors into x0 errors, and dividing by $\sqrt{1-\bar\alpha_t}$ (tiny at small $t$) blows up x0 errors
# into eps errors.

# %%
x0 = mnist.images[:16]
t = torch.randint(0, 1000, (16,), generator=g)
noise = torch.randn(x0.shape, generator=g)
x_t = schedule.q_sample(x0, t, noise)
assert torch.allclose(schedule.eps_from_x0(x_t, t, x0), noise, atol=1e-3)
assert torch.allclose(schedule.posterior_mean(schedule.x0_from_eps(x_t, t, noise), x_t, t),
                      reverse_mean(x_t, t, noise, schedule), atol=1e-3)
print("x0 -> eps -> x0 and the two means agree")

# %% [markdown]
# ### A third view: the score
#
# The best possible noise predictor, the one the eps-MSE is minimised by, is the average noise given $x_t$,
# $\mathbb E[\varepsilon\mid x_t]$. Tweedie's formula ties it to the *score* $\nabla_x\log p_t(x_t)$, the direction in
# which the density of noisy data grows fastest:
#
# $$\mathbb E[\varepsilon\mid x_t] = -\sqrt{1-\bar\alpha_t}\;\nabla_{x_t}\log p_t(x_t).$$
#
# So an eps-model is a score model in other units, and "adding a classifier's gradient to the score" (notebook 5) is a
# precise statement about eps. We check the formula where the score is known exactly: the 2-D mixture of notebook 5
# (`cu.GaussianMixture2D`). We draw a million pairs $(x_0, \varepsilon)$, form $x_t$, and average $\varepsilon$ over the
# pairs whose $x_t$ falls near each of a few query points: that is $\mathbb E[\varepsilon\mid x_t]$ by brute force, with
# no formula. Then we compare it with $-\sqrt{1-\bar\alpha_t}$ times the exact score.

# %%
toy = cu.GaussianMixture2D(weights=[0.5, 0.3, 0.2])
t_toy = 300
ab = schedule.alpha_bars[t_toy]
pairs = torch.Generator().manual_seed(5)
x0_toy, _ = toy.sample(1_000_000, generator=pairs)
eps_toy = torch.randn(x0_toy.shape, generator=pairs)
xt_toy = ab.sqrt() * x0_toy + (1 - ab).sqrt() * eps_toy
queries = torch.tensor([[-0.5, -0.3], [0.5, -0.3], [0.0, 0.5], [0.0, 0.0], [0.3, 0.2]])
brute, exact = [], []
for q in queries:
    near = (xt_toy - q).norm(dim=1) < 0.05
    brute.append(eps_toy[near].mean(0))
    exact.append(-(1 - ab).sqrt() * toy.score(q[None], torch.tensor([t_toy]), schedule)[0])
brute, exact = torch.stack(brute), torch.stack(exact)
for q, b, e in zip(queries.tolist(), brute.tolist(), exact.tolist()):
    print(f"x_t = ({q[0]:+.1f}, {q[1]:+.1f}): average noise ({b[0]:+.3f}, {b[1]:+.3f}), "
          f"-sqrt(1 - alpha_bar) score ({e[0]:+.3f}, {e[1]:+.3f})")
assert (brute - exact).abs().max() < 0.05

# %% [markdown]
# **Why following the score denoises: Langevin dynamics.** Take points anywhere and repeat
# $x \leftarrow x + \tfrac{\delta}{2}\nabla\log p(x) + \sqrt{\delta}\,z$: each step climbs the density a little, and the
# fresh noise keeps the points from all piling onto the peaks. For small $\delta$ and many steps the points end up
# distributed as $p$ itself. An ancestral DDPM step has the same shape (a move along the network's score, plus fresh
# noise) but is not a Langevin step: each step also moves down one noise level, with a size and a noise fixed by the
# schedule, not chosen to sample one fixed density (annealed Langevin sampling, Song and Ermon's, runs many Langevin
# steps at each level instead). The picture is the intuition for it, not its derivation. Here: points spread uniformly
# over the square, 200 Langevin steps with the toy's score at a small noise level.

# %%
t_small = 10
walkers = torch.rand(2000, 2, generator=pairs) * 2.6 - 1.3
start = walkers.clone()
delta = 2e-3
for _ in range(200):
    score = toy.score(walkers, torch.full((2000,), t_small), schedule)
    walkers = walkers + delta / 2 * score + delta ** 0.5 * torch.randn(walkers.shape, generator=pairs)
grid = torch.linspace(-1.3, 1.3, 15)
gx, gy = torch.meshgrid(grid, grid, indexing="xy")
field = toy.score(torch.stack([gx.flatten(), gy.flatten()], 1), torch.full((225,), t_small), schedule)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharex=True, sharey=True)
for ax, pts, title in [(axes[0], start, "start: uniform"), (axes[1], walkers, "after 200 Langevin steps")]:
    ax.quiver(gx, gy, *(field / field.norm(dim=1, keepdim=True)).T.reshape(2, 15, 15), color="grey", alpha=0.5)
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
    ax.set_title(title)
plt.show()
near_a_class = {name: ((torch.cdist(p, toy.means).min(1).values < 3 * toy.std).float().mean().item())
                for name, p in [("start", start), ("end", walkers)]}
shares = torch.bincount(torch.cdist(walkers, toy.means).argmin(1), minlength=3) / 2000
print(f"within 3 std of a class centre: {near_a_class['start']:.0%} at the start, {near_a_class['end']:.0%} "
      f"after; share of each class {[round(v, 2) for v in shares.tolist()]} (the mixture's weights: 0.5, 0.3, 0.2)")
assert near_a_class["end"] > 0.9 > 0.3 > near_a_class["start"]

# %% [markdown]
# The arrows are the score: they point toward the classes. The points climb along them and settle in the three
# classes. Notice that the shares need not match the weights: Langevin dynamics mixes slowly between
# well-separated peaks, which is one reason diffusion samplers start from pure noise, where the peaks have not
# yet separated, and follow the score as the noise level falls.
#
# ## 3.5 DDIM: the same model, far fewer steps
#
# DDIM (Song et al.) keeps the trained model and changes only the sampler. From $t$ it jumps to an earlier
# $t'$ by predicting $\hat x_0$ and re-noising it with the *predicted* noise:
#
# $$x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1-\bar\alpha_{t'}-\sigma^2}\,\hat\varepsilon + \sigma z,
# \qquad \sigma = \eta\sqrt{\tfrac{1-\bar\alpha_{t'}}{1-\bar\alpha_t}}\sqrt{1-\tfrac{\bar\alpha_t}{\bar\alpha_{t'}}} .$$
#
# Why may the sampler change while the model stays? The loss of 3.2 sees only the marginals $q(x_t\mid x_0)$,
# never how $x_t$ and $x_{t-1}$ are joined. Song et al. build a family of forward processes, not Markov chains,
# that share those marginals and differ in how much fresh noise a reverse step injects ($\eta$); one trained network
# serves them all. With $\eta = 0$ no noise is injected: each step follows a deterministic map, a discretisation of
# an ordinary differential equation (the probability-flow ODE) that carries noise to data, which is why large
# steps still work.
#
# With $\eta = 0$ it is deterministic; with $\eta = 1$ and all 1,000 steps it is DDPM again: for $t' = t - 1$,
# $\sigma^2$ is the posterior variance $\tilde\beta_t$ and the mean is the posterior mean. The next cell checks it on
# the same $x_t$, prediction and noise at a few $t$.

# %%
check = torch.Generator().manual_seed(4)
x_t_check, eps_check, z_check = (torch.randn(4, 1, 32, 32, generator=check) for _ in range(3))
gaps = {}
for t_int in (1, 10, 500, 999):
    t_vec = torch.full((4,), t_int)
    x0_check = schedule.x0_from_eps(x_t_check, t_vec, eps_check)
    by_ddim = cu.ddim_step(x_t_check, t_int, x0_check, schedule, z_check, eps_hat=eps_check, t_prev=t_int - 1, eta=1.0)
    by_ddpm = cu.ddpm_step(x_t_check, t_int, x0_check, schedule, z_check)
    gaps[t_int] = (by_ddim - by_ddpm).abs().max().item()
print("DDIM (eta = 1, t' = t - 1) against DDPM, largest difference: "
      + ", ".join(f"{g:.1e} at t = {t}" for t, g in gaps.items()))
assert max(gaps.values()) < 1e-4

# %%
rows = []
real_feats = evaluator_outputs(evaluator, cu.load_mnist(train=False, verbose=False).images)[1]
# the yardstick for 64 samples against these 1,000 held-out digits: 64 real training digits against them
real64 = mnist.images[torch.randperm(len(mnist.images), generator=torch.Generator().manual_seed(0))[:64]]
real64_feats = evaluator_outputs(evaluator, real64)[1]
real64_fd = frechet_distance(real64_feats, real_feats)
n = cu.sample_count(64, least=16)   # 64 samples a sampler (fewer in the tests' fast mode), and as many real digits
real_n_fd = frechet_distance(real64_feats[:n], real_feats)
fig, axes = plt.subplots(1, 3, figsize=(15, 2.4))
for ax, n_steps in zip(axes, [10, 25, 50]):
    start = time.perf_counter()
    x = cu.ddim_sample(shipped.model, shipped.schedule, (n, 1, 32, 32), steps=n_steps, device="cpu",
                       generator=torch.Generator().manual_seed(3), progress=False)
    seconds = time.perf_counter() - start
    fd = frechet_distance(evaluator_outputs(evaluator, x)[1], real_feats)
    rows.append((n_steps, seconds, fd))
    cu.show_images(
        x[:16], nrow=16, ax=ax, title=f"{shipped.label}\nDDIM-{n_steps}: {seconds:.1f} s for {n}, Frechet {fd:.0f}"
    )
plt.show()
for n_steps, seconds, fd in rows:
    print(f"DDIM-{n_steps:3d}: {seconds:5.1f} s for {n} samples, Frechet distance {fd:.0f} ({n} samples)")
print(f"{n} real training digits against the same 1,000 held-out digits: Frechet distance {real_n_fd:.0f}")
assert rows[0][1] < rows[2][1]

# %% [markdown]
# ### Your eps model, measured
#
# **The respaced chain.** DDPM with fewer steps keeps only some of the 1,000 timesteps, here 100 evenly spaced ones
# $t_1 < \dots < t_{100}$, and makes them a chain of its own (Nichol and Dhariwal's respacing): its $\bar\alpha$ at step
# $k$ is the full schedule's $\bar\alpha_{t_k}$, so its betas are
# $\beta'_k = 1 - \bar\alpha_{t_k}/\bar\alpha_{t_{k-1}}$, and the model, which knows only the original timesteps, is
# called with $t_k$. Ancestral sampling then runs on it as on the full chain. The cell below checks that the respaced
# chain has the same $\bar\alpha$ where it stops.

# %%
kept = sorted(cu.spaced_timesteps(1000, 100))      # the 100 timesteps the chain visits, in increasing order
respaced = schedule.respace(kept)
same = torch.allclose(respaced.alpha_bars.double(), schedule.alpha_bars.double()[kept], rtol=1e-5)
print(f"respaced chain: {respaced.T} steps, timesteps {kept[:3]} ... {kept[-2:]}, beta' from {respaced.betas[0]:.2e} "
      f"to {respaced.betas[-1]:.3f}; alpha_bar the same at its steps: {same}")
assert same and respaced.T == 100

# %% [markdown]
# 100 samples of your model and of the shipped one (ancestral DDPM on the respaced chain of 25 steps, the same
# starting noises), judged in the feature space of the evaluator in two ways:
# - **realistic**: the fraction of samples that land among real digits: a sample counts when it is at least as close to
#   some held-out digit as that digit's 3rd-nearest real neighbour is (the "precision" of Kynkaenniemi et al., 2019).
#   100 real training digits score about 90%, pure noise about 0% (both printed below). (Why not simply ask the
#   evaluator how sure it is? It calls pure noise a digit with more than 90% confidence: the printout shows it.)
#   Each realistic fraction is printed as the mean over the two halves of the 100 (50 samples each, from noises of
#   their own) +- the spread between them.
# - the **Frechet distance** of all 100 samples' features to those of the 1,000 held-out digits, beside the
#   *real-vs-real value*: 100 real training digits against the same held-out digits. (With only 100 images the
#   real-vs-real value is far from zero: the distance is biased upward for small samples, so compare with it, not
#   with 0. It is a yardstick, not a floor: a sampler can score below it, by chance or by covering the held-out digits
#   more evenly than a random 100 of them.) At 100 images the distance also moves from one draw to the next: the cell
#   prints the real-vs-real value of a second set of 100 real digits beside the first, so read only gaps larger than
#   theirs. "The shipped pair" in section 3.6 gives the shipped models' distances on 1,000 samples a seed, with
#   the spread between seeds.
#
# The Frechet distance fits one Gaussian to all the features, so samples far from every real digit weigh
# heavily in it. The right panel shows your 5 samples whose features lie farthest from the mean of the real
# digits' features, and the cell prints the distance without them: see how much of the distance those few
# account for, and how much is spread over all the samples. (Dropping them can also raise the distance: without
# its farthest samples the Gaussian fitted to yours is narrower than the real digits' one.)

# %%
from course_utils.evaluation import mean_and_spread, plus_minus

# 100 real training digits, always the same ones, and 100 others: the real-vs-real value varies with the subset
real_order = torch.randperm(len(mnist.images), generator=torch.Generator().manual_seed(0))
real100 = mnist.images[real_order[:100]]
real100_feats = evaluator_outputs(evaluator, real100)[1]
real_vs_real = frechet_distance(real100_feats, real_feats)
other_real_vs_real = frechet_distance(evaluator_outputs(evaluator, mnist.images[real_order[100:200]])[1], real_feats)
unguided, realistic = {}, {"real digits": realistic_fraction(real100_feats, real_feats)}
noise_logits, noise_feats = evaluator_outputs(evaluator, torch.randn(100, 1, 32, 32, generator=g).clamp(-1, 1))
realistic["pure noise"] = realistic_fraction(noise_feats, real_feats)


def samples_and_realistic(m, sampler, steps):
    """100 samples of `m` from the same 100 starting noises for every model and sampler, and their realistic fraction
    as mean and sd over the two halves (each 50 samples from 50 noises of their own)."""
    x = sampler(m.model, m.schedule, (100, 1, 32, 32), steps=steps, prediction=m.prediction, device=device,
                progress=False, generator=torch.Generator().manual_seed(5)).cpu()
    feats = evaluator_outputs(evaluator, x)[1]
    share = mean_and_spread([{"realistic": realistic_fraction(f, real_feats)} for f in feats.chunk(2)], ("realistic",))
    return x, feats, share


# (model, sampler) -> realistic fraction, mean and sd over the two halves of the same 100 starting noises
by_sampler = {}
fig, axes = plt.subplots(1, 3, figsize=(18, 3.4), gridspec_kw={"width_ratios": [3, 3, 1.5]})
for ax, m in zip(axes, [mine, shipped]):
    x, feats, by_sampler[m.label, "DDPM-25"] = samples_and_realistic(m, cu.ddpm_sample, 25)
    unguided[m.owner] = frechet_distance(feats, real_feats)
    realistic[m.owner] = by_sampler[m.label, "DDPM-25"]["realistic"]   # the mean of two equal halves: of all 100
    cu.show_images(x[:30], nrow=15, ax=ax, title=f"{m.label}\n{realistic[m.owner]:.0%} realistic, Frechet "
                                                  f"{unguided[m.owner]:.0f} (real vs real {real_vs_real:.0f})")
    if m is mine:
        farthest = (feats - real_feats.mean(0)).norm(dim=1).argsort(descending=True)
        without_outliers = frechet_distance(feats[farthest[5:]], real_feats)
        cu.show_images(x[farthest[:5]], nrow=3, ax=axes[2], title="your 5 farthest\nfrom real digits")
plt.show()
x0_model = cu.load_model("ddpm_x0", device=device)      # yours from notebook 2, or the shipped one
for m, sampler, kind, steps in ((mine, "DDIM-25", cu.ddim_sample, 25), (mine, "DDPM-100", cu.ddpm_sample, 100),
                                 (x0_model, "DDIM-25", cu.ddim_sample, 25), (x0_model, "DDPM-25", cu.ddpm_sample, 25)):
    by_sampler[m.label, sampler] = samples_and_realistic(m, kind, steps)[2]
for (label, sampler), share in by_sampler.items():
    print(f"{label:45s} {sampler:8s}: {plus_minus(share, 'realistic', '4.0%')} realistic (100 samples, 2 halves)")
print(f"realistic, 100 samples, DDPM-25: yours {plus_minus(by_sampler[mine.label, 'DDPM-25'], 'realistic', '.0%')}, "
      f"shipped {plus_minus(by_sampler[shipped.label, 'DDPM-25'], 'realistic', '.0%')}, "
      f"real digits {realistic['real digits']:.0%}, pure noise {realistic['pure noise']:.0%}")
print(f"the evaluator's mean confidence on pure noise: {noise_logits.softmax(1).max(1).values.mean():.0%}")
print(f"Frechet distance, 100 samples: yours {unguided['your']:.0f}, shipped {unguided['shipped']:.0f}, "
      f"100 real digits {real_vs_real:.0f} (100 others: {other_real_vs_real:.0f}); yours without its 5 farthest "
      f"samples {without_outliers:.0f}")
assert unguided["shipped"] < 1.5 * real_vs_real and realistic["shipped"] > 0.7 and realistic["real digits"] > 0.8
assert realistic["pure noise"] < 0.05
if cu.trained_enough(mine):   # the default budget's runs behind this bound: site/learner-mode.md
    assert realistic["your"] >= 0.35

# %% [markdown]
# The rows above change one thing at a time (the same model, the same starting noises): DDIM-25 against DDPM-25
# is the sampler alone, at equal steps, for your eps model and for the x0 model of notebook 2; DDPM-25 against
# DDPM-100 the number of steps alone, for your eps model. Read from them how much each matters. Notebook 5 guides
# your eps model with both samplers at 25 steps, so that their difference there is the sampler's alone.
#
# A few minutes of CPU give an eps model whose samples have the strokes of digits, though fewer of them pass for
# real digits than the shipped model's: the printout above says how many, and the same measure for the x0 model
# of notebook 2, trained for as long. Raise `TRAIN_MINUTES` (or use a GPU) and watch the realistic fraction
# climb toward the shipped model's.

# %% [markdown]
# ## 3.6 Which model, which target? Measured with the evaluator
#
# **MLP against U-Net.** A flattened MLP sees the image as 1,024 unrelated numbers; a U-Net shares its
# filters over all positions. We train both for the same short time (a 25th of `TRAIN_MINUTES` each),
# with the same optimiser, the same batches and the eps-MSE, and compare the Frechet distance of their samples
# (64 each, against the 1,000 held-out digits: read the two against each other, not against 0).

# %%
compare_minutes = TRAIN_MINUTES / 25
results, compared = {}, {}
for name, make in [("MLP", lambda: cu.MLPDenoiser(shape=(1, 32, 32), hidden=512)),
                   ("U-Net", lambda: cu.EpsUNet(channels=(16, 32, 32), emb_dim=64))]:
    torch.manual_seed(1)                       # the same initial weights whenever this network is built
    net = make()
    trained = cu.train_denoiser(net, schedule, mnist.images, minutes=compare_minutes, batch_size=64, lr=3e-3,
                                lr_shape=cu.one_cycle, device=device, generator=torch.Generator().manual_seed(3),
                                desc=name)
    x = cu.ddim_sample(net, schedule, (64, 1, 32, 32), steps=25, device=device, progress=False,
                       generator=torch.Generator().manual_seed(4)).cpu()
    results[name], compared[name] = frechet_distance(evaluator_outputs(evaluator, x)[1], real_feats), (make, trained)
    print(f"{name:6s}: {cu.count_parameters(net) / 1e6:.2f}M parameters, {len(trained):,} steps in "
          f"{compare_minutes * 60:.0f} s, Frechet {results[name]:.0f} (64 samples)")
assert all(v == v for v in results.values())
eps_unet = net

# %% [markdown]
# **x0- against eps-prediction, one change at a time.** The same U-Net class, built with the same initial
# weights, trained for the same number of steps on the same batches with the same optimiser; only the loss
# differs: this one is the x0-MSE of notebook 2 (an `EpsUNet` can output $\hat x_0$ as well as
# $\hat\varepsilon$: only what its output is compared with changes). Section 3.7 measures what that one change does.
# Beside the realistic fraction the cell prints the **recall**: the share of the 1,000 held-out digits that land
# among the samples (the realistic fraction with the roles of samples and real digits swapped). Samples that all
# look alike cover few real digits, however real each one looks, so a high realistic fraction with a low recall
# means samples close to a few real digits, not samples like all of them.

# %%
make, trained = compared["U-Net"]
torch.manual_seed(1)
x0_unet = make()
cu.train_denoiser(x0_unet, schedule, mnist.images, steps=len(trained), prediction="x0", batch_size=64, lr=3e-3,
                  lr_shape=cu.one_cycle, device=device, generator=torch.Generator().manual_seed(3), desc="U-Net, x0")
pair = {"eps-MSE": (eps_unet, "eps"), "x0-MSE": (x0_unet, "x0")}
for loss, (net, pred) in pair.items():
    x = cu.ddim_sample(net, schedule, (64, 1, 32, 32), steps=25, prediction=pred, device=device, progress=False,
                       generator=torch.Generator().manual_seed(4)).cpu()
    feats = evaluator_outputs(evaluator, x)[1]
    print(f"U-Net trained with the {loss} ({len(trained):,} steps): DDIM-25 Frechet "
          f"{frechet_distance(feats, real_feats):.0f}, {realistic_fraction(feats, real_feats):.0%} realistic, "
          f"recall {recall_fraction(feats, real_feats):.0%} (64 samples)")
print(
    f"64 real training digits: Frechet {real64_fd:.0f}, {realistic_fraction(real64_feats, real_feats):.0%} realistic, "
    f"recall {recall_fraction(real64_feats, real_feats):.0%}"
)

# %% [markdown]
# **The shipped pair.** The shipped `ddpm_x0` and `ddpm_eps` (13,000 steps each) differ in two things, not
# one: the loss, and the network (`ddpm_x0` is notebook 2's time-map U-Net, the design of our source, with
# 0.62M parameters; `ddpm_eps` an `EpsUNet` with its sinusoidal embedding, 0.71M). Their gap below therefore
# belongs to the pair, not to the loss alone; the pair above is the one-change comparison. Measured by
# `python -m course_utils evaluate` on 1,000 samples each, with 25 steps of each sampler (DDPM on the respaced
# chain of 25), and stored in their manifests beside the real-vs-real value (1,000 training digits against the
# same 1,000 held-out ones):

# %%
shipped_quality = {name: cu.load_pretrained(name, device="cpu").info["quality"] for name in ("ddpm_x0", "ddpm_eps")}
for name, q in shipped_quality.items():
    for sampler in (f"DDPM-{q['steps']}", f"DDIM-{q['steps']}"):
        r = q[f"{name} {sampler}"]
        print(f"{name:9s} {sampler}: Frechet {r['frechet']:5.1f} +- {r['frechet_sd']:.1f}, "
              f"precision {r['precision']:.0%}, recall {r['recall']:.0%}")
real_row = q["real_vs_real"]
print(f"{q['n_samples']:,} real digits  : Frechet {real_row['frechet']:5.1f} +- {real_row['frechet_sd']:.1f}, "
      f"precision {real_row['precision']:.0%}, recall {real_row['recall']:.0%}   "
      f"(mean +- sd over seeds {q['seeds']})")
ddim = {name: q[f"{name} DDIM-{q['steps']}"]["frechet"] for name, q in shipped_quality.items()}
ddpm = {name: q[f"{name} DDPM-{q['steps']}"]["frechet"] for name, q in shipped_quality.items()}
assert all(ddpm[name] < 3 * real_row["frechet"] and ddim[name] > ddpm[name] for name in ddpm)
assert ddim["ddpm_x0"] < ddim["ddpm_eps"]

# %% [markdown]
# With 25 DDPM steps both come within about twice the real-vs-real distance, and their precision and recall are
# close to those of real digits; with 25 DDIM steps both are farther, and the x0-model holds up better than the
# eps-model (the cell asserts it; compare the distances printed above). Both samplers clamp $\hat x_0$ to $[-1, 1]$
# for both models, so the clamp is not the reason. Section 3.7 shows, with the one-change pair, what the losses
# contribute.
#
# ## 3.7 Why x0 and eps differ: what each loss weighs
#
# **From the ELBO to the simple loss.** Training maximises a lower bound on $\log p_\theta(x_0)$ whose terms, one per
# step, are $L_{t} = \mathrm{KL}\big(q(x_{t-1}\mid x_t, x_0)\,\|\,p_\theta(x_{t-1}\mid x_t)\big)$. Both are Gaussians
# with the same variance $\sigma_t^2$, so $L_t = \lVert\tilde\mu_t - \mu_\theta\rVert^2 / (2\sigma_t^2)$ plus a
# constant. Write both means with the noise (section 3.3): they differ only in $\varepsilon$ against
# $\varepsilon_\theta$, and $L_t = \lambda_t\,\lVert\varepsilon - \varepsilon_\theta\rVert^2$ with
# $\lambda_t = \beta_t^2 / \big(2\sigma_t^2\,\alpha_t\,(1-\bar\alpha_t)\big)$. Ho et al. drop $\lambda_t$ and average
# over $t$: that is the eps-MSE of section 3.2, the "simple" loss.
#
# **eps-MSE is x0-MSE weighted by the SNR.** From $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$,
# an eps guess and an x0 guess determine each other, and their errors are tied:
#
# $$\varepsilon - \hat\varepsilon = \sqrt{\tfrac{\bar\alpha_t}{1-\bar\alpha_t}}\,(\hat x_0 - x_0)
# \quad\Longrightarrow\quad \lVert\varepsilon - \hat\varepsilon\rVert^2 = \mathrm{SNR}(t)\,\lVert x_0 - \hat
# x_0\rVert^2.$$
#
# One of our sources calls predicting $x_0$ with an MSE against the true $x_0$ "an equivalent formulation" of the
# eps-MSE. It is not: the two losses have the same minimiser only for a network that can be exactly right at
# every $t$; for a real network they weigh the timesteps differently, by the factor SNR$(t)$, which spans many
# orders of magnitude (the plot below), and the two models they train differ (the measurements below).
#
# So the x0-model weighs an error in $\hat x_0$ alike at every $t$, while the eps-model weighs it by SNR$(t)$:
# thousands of times more at small $t$, thousands of times less at large $t$. The eps-model should therefore
# guess $x_0$ better at small $t$ and worse at large $t$. Here are the weights, and the measured errors in
# $\hat x_0$ on 64 test digits: of the one-change pair of section 3.6 (the same U-Net, only the loss differs), and
# of the shipped pair (which also differs in the network):

# %%
check_t = [10, 100, 300, 500, 700, 900, 990]
test_digits = cu.load_mnist(train=False, verbose=False).images[:64]
# name -> (network, what its output is); x0_hat is read from each as the sampler reads it
nets = {"U-Net, eps-MSE (3.6)": (eps_unet.cpu().eval(), "eps"), "U-Net, x0-MSE (3.6)": (x0_unet.cpu().eval(), "x0"),
        "shipped ddpm_eps": (cu.load_pretrained("ddpm_eps", device="cpu").model, "eps"),
        "shipped ddpm_x0": (cu.load_pretrained("ddpm_x0", device="cpu").model, "x0")}
x0_error = {name: [] for name in nets}
with torch.no_grad():
    for t_int in check_t:
        t = torch.full((64,), t_int)
        x_t = schedule.q_sample(test_digits, t, generator=torch.Generator().manual_seed(t_int))
        for name, (net, output) in nets.items():
            x0_hat = net(x_t, t) if output == "x0" else schedule.x0_from_eps(x_t, t, net(x_t, t))
            x0_error[name].append(((x0_hat.clamp(-1, 1) - test_digits) ** 2).mean().item())
elbo_weight = schedule.betas ** 2 / (2 * schedule.posterior_variance.clamp(min=1e-20) * schedule.alphas
                                     * (1 - schedule.alpha_bars))
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6))
left.semilogy(t_all, schedule.snr(), label="eps-MSE: SNR(t)")
left.semilogy(t_all, torch.ones(1000), label="x0-MSE: 1")
left.semilogy(t_all, schedule.snr().clamp(max=5), ":", label="eps-MSE with min-SNR-5 t: min(SNR(t), 5)")
left.semilogy(t_all[1:], (elbo_weight * schedule.snr())[1:], label="the ELBO: lambda_t SNR(t)")
left.set_xlabel("t"); left.set_title("weight on an error in x0_hat"); left.legend()
for name, errors in x0_error.items():
    right.plot(check_t, errors, "o-" if "U-Net" in name else "s--", label=name)
right.set_xlabel("t"); right.set_title("measured mean squared error of x0_hat (64 test digits)"); right.legend()
plt.show()
print("x0_hat error at t:      " + "".join(f"{t_int:>8d}" for t_int in check_t))
for name, errors in x0_error.items():
    print(f"{name:22s}: " + "".join(f"{e:8.4f}" for e in errors))
for eps_name, x0_name in (("U-Net, eps-MSE (3.6)", "U-Net, x0-MSE (3.6)"), ("shipped ddpm_eps", "shipped ddpm_x0")):
    assert x0_error[eps_name][0] < x0_error[x0_name][0]      # small t: the eps-trained model is better
    assert x0_error[eps_name][-1] > x0_error[x0_name][-1]    # large t: the x0-trained model is better

# %% [markdown]
# The measurements follow the weights, for the one-change pair as for the shipped one: at $t = 10$ the eps-trained
# model's $\hat x_0$ is the better one, at $t = 990$ the x0-trained model's (compare the printed rows; the cell checks
# both pairs). Since the 3.6 pair differs only in the loss, that reversal is the loss's doing.
#
# What it does to samples depends on the sampler. Ancestral sampling adds fresh noise at every step, which keeps
# correcting earlier errors, and with it (25 steps, the shipped pair's DDPM rows in 3.6) both shipped models come
# within about twice the real-vs-real distance. DDIM jumps many timesteps at a time, deterministically, and leans on
# $\hat x_0$ at every jump, and its first jumps start where the
# eps-trained model's $\hat x_0$ is worst: that is where the x0-trained models' better guesses at large $t$ should
# show, in the shipped pair's DDIM rows and in the 3.6 pair's DDIM-25 lines (the pair is young, so read the
# direction of the gap there, not its size).
#
# ## Self-assessment
#
# 1. Why add sines and cosines of several frequencies rather than $t$ itself?
# <details><summary>Answer</summary>A single scalar is hard for a network to use; the multi-frequency code makes
# nearby t similar and distant t distinguishable, and every block can read it through a linear layer.</details>
#
# 2. Derive $\mu_\theta$ from the posterior mean and $\hat x_0(\hat\varepsilon)$. Where does the misprint
#    $\sqrt{1-\alpha_t}$ break? <details><summary>Answer</summary>The x0 coefficient times 1/sqrt(alpha_bar_t) combines
#    with the x_t coefficient to 1/sqrt(alpha_t), and the eps term to beta_t / (sqrt(alpha_t) sqrt(1 - alpha_bar_t)).
#    With sqrt(1 - alpha_t) the noise removed per step is far too large for every t > 0.</details>
#
# 3. What does DDIM change and what does it keep?
# <details><summary>Answer</summary>It keeps the trained network and the marginals q(x_t | x_0); it changes the
# sampler, stepping over a subsequence of timesteps, deterministically when eta = 0.</details>
#
# 4. When would you prefer x0-prediction to eps-prediction?
# <details><summary>Answer</summary>At high noise eps-prediction is easy (x_t is nearly the noise) but x0 derived from
# it is noisy; at low noise it is the reverse. Measure with the samplers you will use, as above.</details>
