"""Judging samples with the evaluator, a classifier that never guided them.

- accuracy: the fraction of samples the evaluator assigns to the class they were asked for;
- Frechet distance: between Gaussians fitted to evaluator features of two image sets,
      FD = |mu_a - mu_b|^2 + Tr( S_a + S_b - 2 (S_a S_b)^(1/2) ),
  always reported beside the real-vs-real floor (two real sets of the same size);
- diversity: the mean distance between evaluator features of two samples of the same class;
- realistic fraction: the share of samples whose features land among those of real digits.
"""
from __future__ import annotations

import torch

from .core.guidance import NULL_LABEL


@torch.no_grad()
def evaluator_outputs(evaluator, images: torch.Tensor, batch_size: int = 500):
    """(logits, features) of the evaluator for ``images`` [N, 1, 32, 32], on the CPU."""
    dev = next(evaluator.parameters()).device
    logits, feats = [], []
    for chunk in images.split(batch_size):
        f = evaluator.features(chunk.to(dev).float())
        feats.append(f.float().cpu())
        logits.append(evaluator.head(f).float().cpu())
    return torch.cat(logits), torch.cat(feats)


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for features [N, D] (float64 inside).

    Tr((S_a S_b)^(1/2)) = sum of sqrt(eigenvalues of S_a^(1/2) S_b S_a^(1/2)), a symmetric matrix.
    """
    a, b = feats_a.double(), feats_b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp(min=0).sqrt()) @ v.T
    middle = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0)
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * middle.sqrt().sum())


def diversity(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise feature distance between distinct samples of the same label."""
    total, count = 0.0, 0
    for k in labels.unique():
        f = feats[labels == k].double()
        n = f.shape[0]
        if n < 2:
            continue
        d = torch.cdist(f, f)
        total += float(d.sum())          # the diagonal is zero
        count += n * (n - 1)
    return total / max(count, 1)


def realistic_fraction(feats: torch.Tensor, real_feats: torch.Tensor, k: int = 3) -> float:
    """The fraction of samples that land among real digits in the evaluator's feature space:
    sample s counts when ||f(s) - f(r)|| <= r_k(r) for some real digit r, where r_k(r) is the
    distance from r to its k-th nearest real neighbour. (This is the "precision" of
    Kynkaenniemi et al., 2019.) Real held-out digits score about 0.9 at k = 3, noise 0.
    A classifier's confidence cannot serve here: the evaluator calls pure noise a digit with
    more than 90% confidence."""
    radii = torch.cdist(real_feats.float(), real_feats.float()).kthvalue(k + 1, dim=1).values  # the +1: itself
    return float((torch.cdist(feats.float(), real_feats.float()) <= radii[None]).any(1).float().mean())


def recall_fraction(feats: torch.Tensor, real_feats: torch.Tensor, k: int = 3) -> float:
    """The fraction of real digits that land among the samples: real r counts when ||f(r) - f(s)|| <= r_k(s)
    for some sample s, where r_k(s) is the distance from s to its k-th nearest sample (the "recall" of
    Kynkaenniemi et al., 2019: precision with the roles swapped). Samples that all look alike cover few of the
    real digits, however real each one looks, so recall falls where diversity is lost."""
    return realistic_fraction(real_feats, feats, k)


def unguided_quality(model, schedule, prediction: str, evaluator, real_feats: torch.Tensor, *, sampler: str = "ddim",
                     steps: int = 50, n: int = 100, seed: int = 0) -> tuple[float, float]:
    """(realistic fraction, Frechet distance) of ``n`` unguided samples of ``model`` (whose output is read as
    ``prediction``) by ``sampler`` ("ddim", or "ddpm" on the respaced chain of ``steps``), against the evaluator
    features ``real_feats`` of real digits."""
    from .core.sampling import ddim_sample, ddpm_sample

    sample = {"ddim": ddim_sample, "ddpm": ddpm_sample}[sampler]
    x = sample(model, schedule, (n, 1, 32, 32), prediction=prediction, steps=steps, progress=False,
               generator=torch.Generator().manual_seed(seed))
    feats = evaluator_outputs(evaluator, x)[1]
    return realistic_fraction(feats, real_feats), frechet_distance(feats, real_feats)


def judge(evaluator, images: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
    """Accuracy, diversity and, given real ``reference`` images, the Frechet distance, precision (the realistic
    fraction) and recall of ``images`` against them. Compare these only with a reference of the same size (and
    with the same measures of another real set that size: the real-vs-real values)."""
    logits, feats = evaluator_outputs(evaluator, images)
    out = {"n": len(images), "accuracy": float((logits.argmax(1) == targets.cpu()).float().mean()),
           "diversity": diversity(feats, targets.cpu())}
    if reference is not None:
        ref = evaluator_outputs(evaluator, reference)[1]
        out.update(frechet=frechet_distance(feats, ref), precision=realistic_fraction(feats, ref),
                   recall=recall_fraction(feats, ref), n_reference=len(reference))
    return out


METHODS = {
    "classifier-ddpm": "classifier guidance, DDPM mean shift",
    "classifier-ddim": "classifier guidance, DDIM eps shift",
    "cfg-ddim": "classifier-free guidance, DDIM",
}
NETWORKS = {"classifier-ddpm": ("ddpm_eps", "noisy_classifier"), "classifier-ddim": ("ddpm_eps", "noisy_classifier"),
            "cfg-ddim": ("cfg_eps",)}  # the networks each method samples with (guided_steps reads them so)


def guided_steps(method: str, models: dict, y: torch.Tensor, scale: float, *, steps: int = 50, generator=None,
                 device=None, ddpm_steps: int | None = None, eta: float = 0.0):
    """The chain of ``method`` (a key of METHODS) at guidance ``scale`` for classes ``y`` [B], one
    :class:`~course_utils.core.sampling.Step` at a time (:func:`~course_utils.core.sampling.sampling_steps`);
    its last step holds the samples. Iterate it under ``torch.no_grad()``.

    ``steps``: DDIM steps; ``ddpm_steps``: steps of the (respaced) DDPM chain, None for all T; ``eta``: DDIM's
    fresh noise (0: deterministic). ``models`` maps "ddpm_eps", "noisy_classifier" and "cfg_eps" to loaded
    :class:`~course_utils.pretrained.Pretrained` bundles (only those the method needs).
    """
    from .core.sampling import Guidance, sampling_steps

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    shape = (len(y), 1, 32, 32)
    if method == "cfg-ddim":
        m = models["cfg_eps"]
        return sampling_steps(m.model, m.schedule, shape, sampler="ddim", steps=steps, eta=eta, prediction=m.prediction,
                              y=y, generator=generator, device=device,
                              guidance=Guidance.classifier_free(scale, NULL_LABEL))
    m, guidance = models["ddpm_eps"], Guidance.by_classifier(models["noisy_classifier"].model, scale)
    if method == "classifier-ddpm":
        return sampling_steps(m.model, m.schedule, shape, sampler="ddpm", steps=ddpm_steps, prediction=m.prediction,
                              y=y, generator=generator, device=device, guidance=guidance)
    return sampling_steps(m.model, m.schedule, shape, sampler="ddim", steps=steps, eta=eta, prediction=m.prediction,
                          y=y, generator=generator, device=device, guidance=guidance)


def generate(method: str, models: dict, y: torch.Tensor, scale: float, *, steps: int = 50, generator=None,
             device=None, progress: bool = False, ddpm_steps: int | None = None, eta: float = 0.0) -> torch.Tensor:
    """Guided samples of classes ``y`` [B] by ``method`` (a key of METHODS) at guidance ``scale``: the
    end of :func:`guided_steps` (same keywords), with a progress bar if ``progress``."""
    from tqdm.auto import tqdm

    chain = guided_steps(method, models, y, scale, steps=steps, generator=generator, device=device,
                         ddpm_steps=ddpm_steps, eta=eta)
    with torch.no_grad():
        for step in tqdm(chain, desc=METHODS[method], disable=not progress, leave=False):
            pass
    return step.x_t


DEFAULT_SCALES = {
    "classifier-ddpm": [0.0, 1.0, 2.0, 4.0, 8.0, 16.0],
    "classifier-ddim": [0.0, 1.0, 2.0, 4.0, 8.0, 16.0],
    "cfg-ddim": [0.0, 1.0, 2.0, 3.0, 5.0, 8.0],
}


@torch.no_grad()
def accuracy_against_t(classifier, evaluator, schedule, images, labels, ts, generator=None) -> list[dict]:
    """Accuracy of the noisy classifier and of the clean evaluator on x_t, for each t in ``ts``."""
    dev = next(classifier.parameters()).device
    rows = []
    for t in ts:
        x_t = schedule.q_sample(images.to(dev), t, torch.randn(images.shape, generator=generator).to(dev))
        tt = torch.full((len(images),), t, dtype=torch.long, device=dev)
        noisy = float((classifier(x_t, tt).argmax(1).cpu() == labels).float().mean())
        clean = float((evaluator_outputs(evaluator, x_t)[0].argmax(1) == labels).float().mean())
        rows.append({"t": t, "noisy_classifier": noisy, "clean_evaluator": clean})
    return rows


def quality_report(n_per_class: int = 20, scales: dict | None = None, steps: int = 50, device=None,
                   seed: int = 0, progress: bool = True) -> dict:
    """Everything `python -m course_utils evaluate` prints: floor, unguided models, sweeps, accuracy vs t."""
    from tqdm.auto import tqdm

    from .core.data import load_mnist
    from .core.device import pick_device
    from .pretrained import load_pretrained
    from .core.sampling import ddim_sample, ddpm_sample

    device = torch.device(device) if device is not None else pick_device()
    scales = scales or DEFAULT_SCALES
    models = {n: load_pretrained(n, device) for n in ("ddpm_x0", "ddpm_eps", "noisy_classifier", "cfg_eps", "evaluator")}
    ev = models["evaluator"].model
    test, train = load_mnist(train=False), load_mnist(train=True, verbose=False)
    g = torch.Generator().manual_seed(seed)
    n = 10 * n_per_class
    ref = test.images[torch.randperm(len(test.images), generator=g)[:n]]
    other = train.images[torch.randperm(len(train.images), generator=g)[:n]]
    report = {"n": n, "steps": steps, "device": str(device)}
    report["evaluator_test_accuracy"] = judge(ev, test.images, test.labels)["accuracy"]
    other_feats, ref_feats = evaluator_outputs(ev, other)[1], evaluator_outputs(ev, ref)[1]
    report["floor"] = frechet_distance(other_feats, ref_feats)
    report["real_precision"] = realistic_fraction(other_feats, ref_feats)   # real digits against real digits,
    report["real_recall"] = recall_fraction(other_feats, ref_feats)         # the same size as the samples
    y = torch.arange(10).repeat_interleave(n_per_class)

    unguided = {}
    for name, pred in (("ddpm_eps", "eps"), ("ddpm_x0", "x0")):
        m = models[name]
        for sampler, label in ((ddpm_sample, "DDPM-1000"), (ddim_sample, f"DDIM-{steps}")):
            kw = {"steps": steps} if sampler is ddim_sample else {}
            x = sampler(m.model, m.schedule, (n, 1, 32, 32), prediction=pred, generator=g, device=device,
                        progress=progress, **kw)
            _, feats = evaluator_outputs(ev, x)
            unguided[f"{name} {label}"] = {"frechet": frechet_distance(feats, evaluator_outputs(ev, ref)[1])}
    report["unguided"] = unguided

    sweeps = {}
    for method, values in scales.items():
        rows = []
        for s in tqdm(values, desc=method, disable=not progress):
            x = generate(method, models, y, s, steps=steps, generator=torch.Generator().manual_seed(seed),
                         device=device)
            rows.append({"scale": s, **judge(ev, x, y, reference=ref)})
        sweeps[method] = rows
    report["sweeps"] = sweeps
    clf, sch = models["noisy_classifier"].model, models["noisy_classifier"].schedule
    report["accuracy_vs_t"] = accuracy_against_t(clf, ev, sch, test.images, test.labels,
                                                 list(range(0, 1000, 100)) + [999], generator=g)
    return report


def report_markdown(report: dict) -> str:
    """The sweep as a Markdown table, with the floor and the unguided models above it."""
    lines = [f"Real-vs-real Frechet floor ({report['n']} images): **{report['floor']:.2f}**; "
             + (f"real-vs-real precision {report['real_precision']:.1%}, recall {report['real_recall']:.1%}; "
                if "real_recall" in report else "")
             + f"evaluator test accuracy {report['evaluator_test_accuracy']:.1%}.", ""]
    for name, row in report["unguided"].items():
        lines.append(f"- unguided {name}: Frechet {row['frechet']:.2f} ({row['frechet'] / report['floor']:.1f}x the floor)")
    lines += ["", "| method | scale | accuracy | Frechet | precision | recall | diversity |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method, rows in report["sweeps"].items():
        for r in rows:
            pr = (f"{r['precision']:.1%} | {r['recall']:.1%}" if "recall" in r else "- | -")
            lines.append(f"| {METHODS[method]} | {r['scale']:g} | {r['accuracy']:.1%} | {r['frechet']:.2f} | {pr} | "
                         f"{r['diversity']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_report(report: dict):
    """Accuracy, Frechet distance and diversity against scale per method; accuracy against t."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 3.6))
    for method, rows in report["sweeps"].items():
        s = [r["scale"] for r in rows]
        for ax, key in zip(axes[:3], ("accuracy", "frechet", "diversity")):
            ax.plot(s, [r[key] for r in rows], "o-", label=METHODS[method])
    axes[1].axhline(report["floor"], color="grey", ls="--", label="real-vs-real floor")
    for ax, title in zip(axes[:3], ("accuracy (evaluator)", "Frechet distance", "diversity (within class)")):
        ax.set_xlabel("guidance scale")
        ax.set_title(title)
    axes[1].legend(fontsize=7)
    rows = report["accuracy_vs_t"]
    axes[3].plot([r["t"] for r in rows], [r["noisy_classifier"] for r in rows], "o-", label="noisy classifier")
    axes[3].plot([r["t"] for r in rows], [r["clean_evaluator"] for r in rows], "s-", label="clean evaluator")
    axes[3].set_xlabel("t")
    axes[3].set_title("accuracy on x_t")
    axes[3].legend(fontsize=7)
    fig.tight_layout()
    return fig


def sweep_grids(method: str, models: dict, evaluator, y: torch.Tensor, scales, *, steps: int = 25, seed: int = 0,
                ddpm_steps: int | None = None):
    """One grid of guided samples per scale (same starting noise each time), judged by the evaluator.

    ``steps`` / ``ddpm_steps``: as in :func:`generate`. Draws a row of panels titled with
    accuracy and diversity; returns {scale: judge(...)}.
    """
    import matplotlib.pyplot as plt

    from .plotting import show_images

    fig, axes = plt.subplots(1, len(scales), figsize=(3.2 * len(scales), 3.6))
    measured = {}
    for ax, s in zip(axes, scales):
        x = generate(method, models, y, s, steps=steps, ddpm_steps=ddpm_steps,
                     generator=torch.Generator().manual_seed(seed), device="cpu")
        measured[s] = judge(evaluator, x, y)
        show_images(x, nrow=4, ax=ax, title=f"s = {s:g}\naccuracy {measured[s]['accuracy']:.0%}, "
                                             f"diversity {measured[s]['diversity']:.0f}")
    return measured
