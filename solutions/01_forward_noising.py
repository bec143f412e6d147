# %% [markdown]
# # 1. Forward noising: how a diffusion model destroys an image
#
# A diffusion model learns to *undo* a fixed process that slowly turns an image into noise.
# Before we learn anything we build that process and look at it closely.
#
# **Learning goals**
# - define a noise schedule: $\beta_t$, $\alpha_t = 1-\beta_t$ and $\bar\alpha_t = \prod_{i\le t}\alpha_i$ (linear and
#   cosine);
# - sample $x_t$ from $x_0$ in one step with the closed form, and check it against the step-by-step chain;
# - read the signal-to-noise ratio $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ and see how fast each schedule
#   destroys a digit.
#
# Conventions of the whole course: timesteps are integers $t = 0, \dots, T-1$, and `alpha_bars[t]` is the product of
# `alphas[0..t]` (so step $t$ is already included). The papers number the steps $1..T$; our $t$ is theirs minus 1, the
# numbering of PyTorch tensors and of the diffusers library. So $x_0$ always means the data (never the state after one
# noising step: that is `x_t` at $t = 0$; the code treats the data as timestep $-1$, where $\bar\alpha = 1$), and the
# state at timestep $t$ has had $t + 1$ noising steps, sampling starts from pure noise at $t = T-1$ (the papers' $x_T$),
# and the reverse step at $t = 0$ is the last one: it returns the clean image. Every reverse loop in the course runs
# `for t in range(T - 1, -1, -1)`. Images are tensors in $[-1, 1]$ of shape `[B, 1, 32, 32]`: MNIST digits padded from
# 28 to 32 pixels.
#
# **Time:** under a minute on a laptop CPU (nothing is trained here).

# %%
import matplotlib.pyplot as plt
import torch

import course_utils as cu
from course_utils import checks

g = cu.seed_everything(0)

# %% [markdown]
# ## 1.1 The noise schedule
#
# One forward step adds a little Gaussian noise and shrinks the signal so the variance stays 1:
#
# $$q(x_t \mid x_{t-1}) = \mathcal N\big(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I\big).$$
#
# The **linear** schedule of Ho et al. lets $\beta_t$ rise from $10^{-4}$ to $0.02$ over $T = 1000$ steps. The
# **cosine** schedule of Nichol and Dhariwal instead chooses $\bar\alpha_t = f(t+1)/f(0)$ with
# $f(u) = \cos^2\!\big(\tfrac{u/T + c}{1+c}\cdot\tfrac{\pi}{2}\big)$ with a small offset $c = 0.008$ (the paper calls it
# $s$; in this course $s$ is kept for the guidance scale of notebooks 5 to 7), which destroys information more evenly.

# %%
linear = cu.NoiseSchedule(T=1000, kind="linear", beta_start=1e-4, beta_end=0.02)
cosine = cu.NoiseSchedule(T=1000, kind="cosine")
print(linear, cosine, sep="\n")
print("alpha_bar at t = 0, 500, 999 (linear):", linear.alpha_bars[[0, 500, 999]].tolist())
cu.plot_schedules(linear, cosine, names=["linear", "cosine"])
plt.show()

# alpha_bars[t] is the running product of the alphas, and only ~4e-5 of the signal's variance survives
assert torch.allclose(linear.alpha_bars, torch.cumprod(linear.alphas, 0), rtol=1e-4)
assert linear.alpha_bars[-1] < 1e-4 and cosine.alpha_bars[-1] < 1e-4
assert bool((linear.alpha_bars[1:] < linear.alpha_bars[:-1]).all())

# %% [markdown]
# ## 1.2 Jumping straight to step $t$
#
# Composing $t+1$ Gaussian steps gives again a Gaussian, so we never need to run the chain:
#
# $$q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big) \quad\Longleftrightarrow\quad
# x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\ \varepsilon\sim\mathcal N(0, I).$$
#
# This is what makes training cheap: any $t$ is one line away.
#
# **Exercise 1.1.** Write `q_sample(x0, t, noise, schedule)`. `t` is a LongTensor of shape `[B]`;
# `schedule.alpha_bars[t]` has shape `[B]`, so reshape it to `[B, 1, 1, 1]` before multiplying images.

# %%
def q_sample(x0, t, noise, schedule):
    # Exercise 1.1: return x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise
    ### BEGIN SOLUTION
    ab = schedule.alpha_bars[t].view(-1, *([1] * (x0.dim() - 1)))
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    ### END SOLUTION


# %%
checks.check_q_sample(q_sample)

# %% [markdown]
# ## 1.3 The closed form against the chain, numerically
#
# Take one digit, copy it 4,000 times, and push every copy through the chain one step at a time.
# After $t+1$ steps the copies must have mean $\sqrt{\bar\alpha_t}x_0$ and variance $1-\bar\alpha_t$
# in every pixel, exactly what one call of `q_sample` gives.

# %%
mnist = cu.load_mnist()
x0 = mnist.images[:1].expand(4000, -1, -1, -1)
x = x0.clone()
for t_check in range(301):
    beta = linear.betas[t_check]
    x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, generator=g)
t = torch.full((4000,), 300)
jump = q_sample(x0, t, torch.randn(x0.shape, generator=g), linear)
ab = linear.alpha_bars[300]
for name, sample in [("chain", x), ("closed form", jump)]:
    mean_err = (sample.mean(0) - ab.sqrt() * x0[0]).abs().max().item()
    var_err = (sample.var(0) - (1 - ab)).abs().max().item()
    print(f"{name:12s} largest error of the pixel means {mean_err:.3f}, of the pixel variances {var_err:.3f}")
    assert mean_err < 0.08 and var_err < 0.12   # 4,000 copies: sampling error is about 4 / sqrt(4000) of a std

# %% [markdown]
# ## 1.4 Watching digits dissolve
#
# The same eight digits at increasing $t$, under both schedules. With the linear schedule the digit is
# almost gone by $t \approx 500$; with the cosine schedule it survives longer, so more of the 1,000 steps
# fall at noise levels where the digit is neither intact nor lost (section 1.5 counts them).

# %%
digits = mnist.images[torch.randperm(len(mnist.images), generator=g)[:8]]  # the data is sorted by class
ts = [0, 100, 250, 400, 600, 800, 999]
fig, axes = plt.subplots(2, len(ts), figsize=(2 * len(ts), 3.2))
for row, (name, sched) in enumerate([("linear", linear), ("cosine", cosine)]):
    for ax, t_show in zip(axes[row], ts):
        noisy = q_sample(digits, torch.full((8,), t_show), torch.randn(digits.shape, generator=g), sched)
        cu.show_images(noisy, nrow=4, ax=ax, title=f"{name}, t={t_show}")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 1.5 The signal-to-noise ratio
#
# $\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)$ compares the variance of the signal part with that of
# the noise part. Where it crosses 1 the digit and the noise are equally strong.

#
# **Exercise 1.2.** Write `snr(alpha_bars)`: the SNR at every $t$ at once, a tensor shaped like `alpha_bars`.

# %%
def snr(alpha_bars):
    # Exercise 1.2: return SNR(t) = alpha_bar_t / (1 - alpha_bar_t) for every t
    ### BEGIN SOLUTION
    return alpha_bars / (1 - alpha_bars)
    ### END SOLUTION


# %%
checks.check_snr(snr)

# %%
crossing, nearly_noise = {}, {}
for name, sched in [("linear", linear), ("cosine", cosine)]:
    ratio = snr(sched.alpha_bars)
    crossing[name] = int((ratio < 1).nonzero()[0])
    nearly_noise[name] = int((ratio < 0.01).sum())   # the signal's std below a tenth of the noise's
    print(f"{name:6s}: SNR = 1 at t = {crossing[name]}; "
          f"log10 SNR runs from {ratio[0].log10():.1f} to {ratio[-1].log10():.1f}; "
          f"{nearly_noise[name]} of the 1,000 steps have SNR < 0.01")
    assert torch.allclose(ratio, sched.snr())     # the package's NoiseSchedule.snr() computes the same
assert crossing["linear"] < crossing["cosine"]   # the linear schedule destroys the signal earlier
assert nearly_noise["linear"] > 3 * nearly_noise["cosine"]

# %% [markdown]
# ## Self-assessment
#
# 1. Why is the forward process called *fixed* and yet *probabilistic*?
# <details><summary>Answer</summary>It has no learned parameters (the betas are chosen in advance), but each
# step draws fresh Gaussian noise, so the same x0 gives a different x_t every time.</details>
#
# 2. Given $\beta_t$, write $\alpha_t$ and $\bar\alpha_t$. Why does the closed form matter for training?
#    <details><summary>Answer</summary>alpha_t = 1 - beta_t and alpha_bar_t = alpha_0 alpha_1 ... alpha_t. With the
#    closed form a training step picks a random t and makes x_t in one line instead of running t steps of the
#    chain.</details>
#
# 3. `alpha_bars[t]` already includes step $t$. What goes wrong if you use `alpha_bars[t-1]` by mistake?
# <details><summary>Answer</summary>Every x_t is one step too clean; at t = 0 you would even index alpha_bars[-1],
# the last element, and feed nearly pure noise as "t = 0".</details>
#
# 4. What does the cosine schedule change, and what would show that it helps?
# <details><summary>Answer</summary>The linear schedule reaches SNR = 1 early and spends about a third of its steps
# with SNR below 0.01, almost pure noise (section 1.5 counts them); the cosine schedule spreads the destruction so
# that more steps fall where the digit is partly visible. Nichol and Dhariwal found that this improved their models
# on small images; every model in this course uses the linear schedule, so the course does not show it. To show
# it, train two models that differ only in the schedule and compare their samples, as notebook 3 compares
# losses.</details>
