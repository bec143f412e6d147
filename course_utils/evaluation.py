"""Judging samples with the evaluator, a classifier that never guided them.

- accuracy: the fraction of samples the evaluator assigns to the class they were asked for;
- Frechet distance: between Gaussians fitted to evaluator features of two image sets,
      FD = |mu_a - mu_b|^2 + Tr( S_a + S_b - 2 (S_a S_b)^(1/2) ),
  always reported beside the real-vs-real value (another real set of the same size: small sets score
  far from zero even when both are real);
- diversity: the mean distance between evaluator features of two samples of the same class;
- realistic fraction: the share of samples whose features land among those of real digits.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .core.guidance import NULL_LABEL
from .files import write_text_atomic


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


def distribution_measures(feats: torch.Tensor, ref_feats: torch.Tensor) -> dict:
    """The Frechet distance, precision (the realistic fraction) and recall of evaluator features ``feats`` [N, D]
    against those of real digits ``ref_feats`` [M, D]."""
    return {"frechet": frechet_distance(feats, ref_feats), "precision": realistic_fraction(feats, ref_feats),
            "recall": recall_fraction(feats, ref_feats)}


def judge_outputs(logits: torch.Tensor, feats: torch.Tensor, targets: torch.Tensor,
                  ref_feats: torch.Tensor | None = None) -> dict:
    """:func:`judge` from the evaluator's outputs (:func:`evaluator_outputs`) and, optionally, the features of
    the real reference, computed once by the caller."""
    out = {"n": len(feats), "accuracy": float((logits.argmax(1) == targets.cpu()).float().mean()),
           "diversity": diversity(feats, targets.cpu())}
    if ref_feats is not None:
        out.update(distribution_measures(feats, ref_feats), n_reference=len(ref_feats))
    return out


def judge(evaluator, images: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
    """Accuracy, diversity and, given real ``reference`` images, the Frechet distance, precision (the realistic
    fraction) and recall of ``images`` against them. Compare these only with a reference of the same size (and
    with the same measures of another real set that size: the real-vs-real values)."""
    ref_feats = None if reference is None else evaluator_outputs(evaluator, reference)[1]
    return judge_outputs(*evaluator_outputs(evaluator, images), targets, ref_feats)


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
    from .core.guidance import Guidance
    from .core.sampling import sampling_steps

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
    "classifier-ddpm": [0.0, 1.0, 2.0, 4.0, 8.0],
    "classifier-ddim": [0.0, 1.0, 2.0, 4.0, 8.0],
    "cfg-ddim": [0.0, 1.0, 2.0, 3.0, 5.0],
}
TARGET_ACCURACY = 0.9   # the matched point: the smallest scale whose mean accuracy reaches this
MEASURES = ("accuracy", "frechet", "precision", "recall", "diversity")


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


def mean_and_spread(rows: list[dict], keys=MEASURES) -> dict:
    """{key: mean over ``rows``, key + "_sd": their standard deviation (n - 1 in the denominator)} for each key
    the rows hold; "seeds": how many rows."""
    out = {"seeds": len(rows)}
    for key in keys:
        if key in rows[0]:
            v = torch.tensor([r[key] for r in rows], dtype=torch.float64)
            out[key], out[key + "_sd"] = float(v.mean()), float(v.std()) if len(v) > 1 else 0.0
    return out


def stated_choices(curve: list[dict], target: float = TARGET_ACCURACY) -> dict:
    """The two points of one method's curve (rows with "scale" and mean measures) that the report names:
    "lowest frechet", the scale whose mean Frechet distance is lowest, and "reaches target", the smallest
    scale whose mean accuracy is at least ``target`` (None when none does). Methods are compared at the second:
    at matched accuracy, with equal sampler steps."""
    reaching = [r for r in curve if r["accuracy"] >= target]
    return {"lowest frechet": min(curve, key=lambda r: r["frechet"]),
            "reaches target": min(reaching, key=lambda r: r["scale"]) if reaching else None}


class _RowCache:
    """Measured rows kept in a JSON file as they come, so that a long report resumes where it stopped."""

    def __init__(self, path, settings: dict):
        self.path, self.settings, self.rows = (Path(path) if path else None), settings, {}
        if self.path and self.path.exists():
            saved = json.loads(self.path.read_text())
            if saved.get("settings") == settings:
                self.rows = saved["rows"]

    def get(self, key: str, compute):
        if key not in self.rows:
            self.rows[key] = compute()
            if self.path:
                write_text_atomic(self.path, json.dumps({"settings": self.settings, "rows": self.rows}, indent=1))
        return self.rows[key]


def quality_report(n_per_class: int = 100, scales: dict | None = None, steps: int = 25, seeds=(0, 1, 2),
                   device=None, progress: bool = True, partial=None, ddpm_1000: bool = True,
                   accuracy_digits: int | None = None) -> dict:
    """Everything `python -m course_utils evaluate` prints.

    For each seed: ``10 * n_per_class`` samples per method and scale, all methods with ``steps`` sampler steps
    (classifier-ddpm on the respaced DDPM chain of ``steps``), judged against ``10 * n_per_class`` held-out real
    digits (the same reference for every row), beside the real-vs-real values of as many training digits. Each
    row is the mean over ``seeds`` with its standard deviation. With ``ddpm_1000`` the unguided models are also
    sampled with the full 1,000-step DDPM chain (first seed only). ``partial``: a JSON file of measured rows,
    read to resume and written after each row. The classifiers' accuracy against t is measured on all the
    held-out digits, or on ``accuracy_digits`` of them drawn at random (seed 0; the tests' smaller budget).
    """
    from tqdm.auto import tqdm

    from .core.data import load_mnist
    from .core.device import pick_device
    from .core.sampling import ddim_sample, ddpm_sample
    from .pretrained import load_pretrained

    device = torch.device(device) if device is not None else pick_device()
    scales = scales or DEFAULT_SCALES
    n, seeds = 10 * n_per_class, list(seeds)
    cache = _RowCache(partial, {"n": n, "steps": steps})  # rows are keyed by method, scale and seed
    models = {
        k: load_pretrained(k, device) for k in ("ddpm_x0", "ddpm_eps", "noisy_classifier", "cfg_eps", "evaluator")
    }
    ev = models["evaluator"].model
    test, train = load_mnist(train=False), load_mnist(train=True, verbose=False)
    if n > len(test.images):
        raise ValueError(f"n_per_class={n_per_class} asks for {n} samples, more than the {len(test.images)} "
                         "held-out real digits the reference is drawn from")
    ref = test.images[torch.randperm(len(test.images), generator=torch.Generator().manual_seed(0))[:n]]
    ref_feats = evaluator_outputs(ev, ref)[1]
    y = torch.arange(10).repeat_interleave(n_per_class)

    def against_reference(images, labels=None):
        """judge() for samples of classes ``labels``; without labels (unguided, real) only the distribution
        measures. The evaluator runs once on the images, and the reference's features are computed once above."""
        logits, feats = evaluator_outputs(ev, images)
        if labels is None:
            return distribution_measures(feats, ref_feats)
        return {k: v for k, v in judge_outputs(logits, feats, labels, ref_feats).items() if k in MEASURES}

    def real_row(seed):   # another n real digits, drawn per seed: the values a perfect sampler would score
        other = train.images[torch.randperm(len(train.images), generator=torch.Generator().manual_seed(seed))[:n]]
        return against_reference(other)

    def guided_row(method, s, seed):
        x = generate(method, models, y, s, steps=steps, ddpm_steps=steps, device=device,
                     generator=torch.Generator().manual_seed(seed))
        return against_reference(x, y)

    def unguided_row(name, k, seed):
        m, sampler = models[name], ddim_sample if k == "ddim" else ddpm_sample
        x = sampler(m.model, m.schedule, (n, 1, 32, 32), prediction=m.prediction, steps=None if k == "all" else steps,
                    device=device, generator=torch.Generator().manual_seed(seed), progress=progress)
        return against_reference(x)

    # every row, keyed by what it measures and its seed; one seed's whole set before the next seed's
    unguided_runs = [(f"DDPM-{steps}", "ddpm"), (f"DDIM-{steps}", "ddim")]
    jobs = []
    for sd in seeds:
        jobs.append((f"real {sd}", lambda sd=sd: real_row(sd)))
        jobs += [(f"{method} {s:g} {sd}", lambda method=method, s=s, sd=sd: guided_row(method, s, sd))
                 for method, values in scales.items() for s in values]
        jobs += [(f"{name} {label} {sd}", lambda name=name, k=k, sd=sd: unguided_row(name, k, sd))
                 for name in ("ddpm_eps", "ddpm_x0") for label, k in unguided_runs]
    if ddpm_1000:
        jobs += [(f"{name} DDPM-1000 {seeds[0]}", lambda name=name: unguided_row(name, "all", seeds[0]))
                 for name in ("ddpm_eps", "ddpm_x0")]
    rows = {key: cache.get(key, compute) for key, compute in tqdm(jobs, desc="rows", disable=not progress)}

    report = {"n": n, "n_reference": n, "steps": steps, "seeds": seeds, "device": str(device),
              "target_accuracy": TARGET_ACCURACY, "rows": rows}   # every seed's own row, behind each mean +- sd
    report["evaluator_test_accuracy"] = judge(ev, test.images, test.labels)["accuracy"]
    report["real"] = mean_and_spread([rows[f"real {sd}"] for sd in seeds])
    report["sweeps"] = {method: [{"scale": s, **mean_and_spread([rows[f"{method} {s:g} {sd}"] for sd in seeds])}
                                 for s in values] for method, values in scales.items()}
    report["choices"] = {m: stated_choices(c) for m, c in report["sweeps"].items()}
    unguided = {f"{name} {label}": mean_and_spread([rows[f"{name} {label} {sd}"] for sd in seeds])
                for name in ("ddpm_eps", "ddpm_x0") for label, _ in unguided_runs}
    if ddpm_1000:
        unguided.update({f"{name} DDPM-1000": mean_and_spread([rows[f"{name} DDPM-1000 {seeds[0]}"]])
                         for name in ("ddpm_eps", "ddpm_x0")})
    report["unguided"] = unguided
    clf, sch = models["noisy_classifier"].model, models["noisy_classifier"].schedule
    images, labels = test.images, test.labels
    if accuracy_digits is not None:
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:accuracy_digits]
        images, labels = images[pick], labels[pick]
    report["accuracy_vs_t"] = accuracy_against_t(clf, ev, sch, images, labels, list(range(0, 1000, 100)) + [999],
                                                 generator=torch.Generator().manual_seed(0))
    report["accuracy_vs_t_digits"] = len(images)
    return report


def plus_minus(row: dict, key: str, fmt: str) -> str:
    """``mean +- sd`` of one measure of a row of :func:`mean_and_spread` (the mean alone for one seed)."""
    sd = row.get(key + "_sd", 0.0)
    return f"{row[key]:{fmt}} +- {sd:{fmt}}" if row.get("seeds", 1) > 1 else f"{row[key]:{fmt}}"


def report_markdown(report: dict) -> str:
    """The report as Markdown: the real-vs-real values, the unguided models, the sweep (mean +- sd over seeds)
    and the stated choices on each method's curve."""
    real, n, pm = report["real"], report["n"], plus_minus
    lines = [f"{n} samples per row (10 digits x {n // 10}), {report['steps']} sampler steps for every method, "
             f"against {report['n_reference']} held-out real digits; mean +- sd over seeds {report['seeds']}.", "",
             f"Real-vs-real ({n} training digits against the reference): Frechet {pm(real, 'frechet', '.2f')}, "
             f"precision {pm(real, 'precision', '.1%')}, recall {pm(real, 'recall', '.1%')}; "
             f"evaluator test accuracy {report['evaluator_test_accuracy']:.1%}.", ""]
    for name, row in report["unguided"].items():
        lines.append(
            f"- unguided {name}: Frechet {pm(row, 'frechet', '.2f')}, precision {pm(row, 'precision', '.1%')}, "
            f"recall {pm(row, 'recall', '.1%')} ({row['seeds']} seed{'s' * (row['seeds'] > 1)})"
        )
    lines += ["", "| method | scale | accuracy | Frechet | precision | recall | diversity |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method, rows in report["sweeps"].items():
        for r in rows:
            lines.append(f"| {METHODS[method]} | {r['scale']:g} | {pm(r, 'accuracy', '.1%')} | "
                         f"{pm(r, 'frechet', '.2f')} | {pm(r, 'precision', '.1%')} | {pm(r, 'recall', '.1%')} | "
                         f"{pm(r, 'diversity', '.1f')} |")
    target = report["target_accuracy"]
    lines += ["", f"Stated choices: the scale with the lowest mean Frechet distance, and the smallest scale whose mean "
                  f"accuracy reaches {target:.0%} (where the methods are compared: matched accuracy, equal steps).", "",
              f"| method | lowest Frechet at | its accuracy | its Frechet | reaches {target:.0%} at | accuracy | "
              "Frechet | recall |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method, c in report["choices"].items():
        low, hit = c["lowest frechet"], c["reaches target"]
        right = (f"{hit['scale']:g} | {pm(hit, 'accuracy', '.1%')} | {pm(hit, 'frechet', '.2f')} | "
                 f"{pm(hit, 'recall', '.1%')}" if hit else "not reached | - | - | -")
        lines.append(f"| {METHODS[method]} | {low['scale']:g} | {pm(low, 'accuracy', '.1%')} | "
                     f"{pm(low, 'frechet', '.2f')} | {right} |")
    return "\n".join(lines + ["", report_reading(report)]) + "\n"


def report_reading(report: dict) -> str:
    """The report's figures read as the papers read the trade-off, as one Markdown paragraph: precision and recall
    from s = 1 to the largest scale, where each method's Frechet distance is lowest, the accuracy at s = 1, and the
    noisy classifier's accuracy on x_t against the clean evaluator's."""
    sweeps = {m: {r["scale"]: r for r in rows} for m, rows in report["sweeps"].items()}
    said = []
    moves = {m: (at[1.0], at[max(at)]) for m, at in sweeps.items() if 1.0 in at and max(at) > 1.0}
    if moves:
        trade = all(hi["precision"] > lo["precision"] and hi["recall"] < lo["recall"] for lo, hi in moves.values())
        figures = "; ".join(f"{METHODS[m]}: precision {lo['precision']:.0%} to {hi['precision']:.0%}, recall "
                            f"{lo['recall']:.0%} to {hi['recall']:.0%} at s = {hi['scale']:g}"
                            for m, (lo, hi) in moves.items())
        verb = "precision rises and recall falls" if trade else "precision and recall move"
        said.append(f"From s = 1 to the largest scale, {verb} for every method ({figures})"
                    + (": the samples grow more like real digits each, and cover fewer of them." if trade else "."))
    lowest = [f"s = {c['lowest frechet']['scale']:g} for {METHODS[m]} ({c['lowest frechet']['frechet']:.1f}, "
              f"{c['lowest frechet']['accuracy']:.1%} accuracy)" for m, c in report["choices"].items()]
    said.append(f"The Frechet distance is lowest at {'; '.join(lowest)}; against {report['real']['frechet']:.1f} for "
                "real digits.")
    at_one = [f"{at[1.0]['accuracy']:.1%} for {METHODS[m]}" for m, at in sweeps.items() if 1.0 in at]
    if at_one:
        said.append(f"At s = 1 the share of samples read as the digit asked for is {'; '.join(at_one)}.")
    by_t = {r["t"]: r for r in report.get("accuracy_vs_t", [])}
    if 300 in by_t:
        chance = [t for t, r in sorted(by_t.items()) if r["clean_evaluator"] <= 0.12]
        said.append(f"The noisy classifier reads {by_t[300]['noisy_classifier']:.0%} of x_t right at t = 300"
                    + (f", where the clean evaluator is at chance from t = {chance[0]} on." if chance else "."))
    return " ".join(said)


CURVE_TITLES = {"accuracy": "accuracy (evaluator)", "frechet": "Frechet distance", "precision": "precision",
                "recall": "recall", "diversity": "diversity (within class)"}


def plot_curves(curves: dict, real: dict, keys=("accuracy", "frechet", "recall"), axes=None,
                real_label: str = "real vs real"):
    """One panel per measure in ``keys`` against the guidance scale, one line per curve (``curves``: label -> rows
    with "scale", the mean of each measure and its "_sd"; bars: the sd between seeds), the value of real digits
    (``real``) dashed and s = 1 dotted. Draws on ``axes`` when given; returns the figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys), 3.2))[1]
    for label, rows in curves.items():
        s = [r["scale"] for r in rows]
        for ax, key in zip(axes, keys):
            ax.errorbar(s, [r[key] for r in rows], yerr=[r.get(key + "_sd", 0) for r in rows], fmt="o-",
                        capsize=3, label=label)
    for ax, key in zip(axes, keys):
        if key in real:
            ax.axhline(real[key], color="grey", ls="--", label=real_label)
        ax.axvline(1.0, color="black", lw=0.6, ls=":", label="s = 1")
        ax.set_xlabel("guidance scale")
        ax.set_title(CURVE_TITLES[key])
    with_real = [ax for ax, key in zip(axes, keys) if key in real]   # its legend names the dashed line too
    (with_real or list(axes))[0].legend(fontsize=7)
    return axes[0].figure


def plot_report(report: dict):
    """Accuracy, Frechet distance, recall and diversity against scale per method (:func:`plot_curves`); accuracy
    against t."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(22, 3.8))
    plot_curves({METHODS[m]: rows for m, rows in report["sweeps"].items()}, report["real"],
                ("accuracy", "frechet", "recall", "diversity"), axes=axes[:4])
    rows = report["accuracy_vs_t"]
    axes[4].plot([r["t"] for r in rows], [r["noisy_classifier"] for r in rows], "o-", label="noisy classifier")
    axes[4].plot([r["t"] for r in rows], [r["clean_evaluator"] for r in rows], "s-", label="clean evaluator")
    axes[4].set_xlabel("t")
    axes[4].set_title("accuracy on x_t")
    axes[4].legend(fontsize=7)
    k = len(report["seeds"])
    fig.suptitle(f"{report['n']} samples per point, {report['steps']} steps, mean +- sd over {k} seed{'s' * (k > 1)}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def trade_off(method: str, models: dict, evaluator, y: torch.Tensor, scales, reference: torch.Tensor, *,
              steps: int = 25, seeds=(0,)) -> list[dict]:
    """The fidelity-diversity curve of ``method`` for the requests ``y``: at each scale and for each seed, samples
    from that seed's starting noises (the same at every scale; ``steps`` sampler steps, the respaced DDPM chain of
    as many for classifier-ddpm), judged by :func:`judge` against the real ``reference`` images. Returns one row
    per scale: {"scale", "n", "n_reference", **mean_and_spread(the seeds' judgements)}."""
    ref_feats = evaluator_outputs(evaluator, reference)[1]   # once for every scale and seed
    rows = []
    for s in scales:
        judged = [judge_outputs(*evaluator_outputs(evaluator, generate(method, models, y, s, steps=steps,
                                                                       ddpm_steps=steps, device="cpu",
                                                                       generator=torch.Generator().manual_seed(seed))),
                                y, ref_feats)
                  for seed in seeds]
        rows.append({"scale": s, "n": len(y), "n_reference": len(reference), **mean_and_spread(judged)})
    return rows


def plot_trade_off(rows: list[dict], real: dict, title: str = ""):
    """Accuracy, Frechet distance and recall against scale for the rows of :func:`trade_off`
    (:func:`plot_curves`), beside ``real``: judge() of a real set of the same size."""
    fig = plot_curves({f"{rows[0]['n']} samples, {rows[0]['seeds']} seeds": rows}, real,
                      real_label=f"{real['n']} real digits")
    fig.suptitle(title, fontsize=9)
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
