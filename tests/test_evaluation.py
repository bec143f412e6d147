"""The measures that judge samples: Frechet distance, diversity and the realistic fraction."""
import pytest
import torch

from course_utils import load_mnist, load_pretrained
from course_utils.evaluation import diversity, evaluator_outputs, frechet_distance, realistic_fraction, recall_fraction


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g)
    shift = torch.tensor([1.0, -2.0, 0.5])
    # same covariance: only the means differ, FD = |mu_a - mu_b|^2
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift ** 2).sum()), abs=1e-6)
    # scaled by 2: FD = d (1 + 4 - 2 * 2) = d for unit covariances
    assert frechet_distance(a, 2 * torch.randn(20000, 3, generator=g)) == pytest.approx(3.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_diversity_is_the_mean_distance_within_a_label():
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 10.0]])
    assert diversity(feats, torch.tensor([0, 0, 1])) == pytest.approx(5.0)   # the lone sample of label 1 is skipped


def test_realistic_fraction_counts_samples_inside_the_real_neighbourhoods():
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0], [11.0, 10.0]])
    # k = 1: each real point's radius is the distance to its nearest other real point (1 here)
    samples = torch.tensor([[0.5, 0.0], [10.5, 10.5], [5.0, 5.0], [0.0, -1.5]])
    assert realistic_fraction(samples, real, k=1) == pytest.approx(0.5)   # the first two only
    assert realistic_fraction(real, real, k=1) == 1.0


def test_real_digits_are_realistic_and_noise_is_not():
    evaluator = load_pretrained("evaluator", device="cpu").model
    test_feats = evaluator_outputs(evaluator, load_mnist(train=False, offline=True, verbose=False).images)[1]
    digits = load_mnist(offline=True, verbose=False).images[:200]
    noise = torch.randn(200, 1, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert realistic_fraction(evaluator_outputs(evaluator, digits)[1], test_feats) > 0.8
    assert realistic_fraction(evaluator_outputs(evaluator, noise)[1], test_feats) < 0.05
    # the reason for this measure: the evaluator is confident about pure noise
    assert evaluator_outputs(evaluator, noise)[0].softmax(1).max(1).values.mean() > 0.9


def test_unguided_quality_tells_a_trained_model_from_one_that_predicts_no_noise():
    from course_utils.evaluation import unguided_quality

    evaluator = load_pretrained("evaluator", device="cpu").model
    test_feats = evaluator_outputs(evaluator, load_mnist(train=False, offline=True, verbose=False).images)[1]
    shipped = load_pretrained("ddpm_eps", device="cpu")

    def no_noise(x_t, t):   # eps_hat = 0: x0_hat is x_t / sqrt(ab_t), clamped noise
        return torch.zeros_like(x_t)

    good = unguided_quality(shipped.model, shipped.schedule, "eps", evaluator, test_feats, steps=10, n=32)
    bad = unguided_quality(no_noise, shipped.schedule, "eps", evaluator, test_feats, sampler="ddpm", steps=10, n=32)
    assert good[0] > 0.5 > 0.1 > bad[0] and good[1] < bad[1]


def test_recall_counts_real_points_the_samples_cover_and_falls_when_samples_collapse():
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])
    spread = torch.tensor([[0.1, 0.0], [1.1, 0.0], [10.1, 0.0], [11.1, 0.0]])
    collapsed = torch.tensor([[0.1, 0.0], [0.2, 0.0], [0.3, 0.0], [0.4, 0.0]])
    assert recall_fraction(spread, real, k=1) == 1.0
    assert recall_fraction(collapsed, real, k=1) == pytest.approx(0.25)   # only the real point at 0 is covered
    assert realistic_fraction(collapsed, real, k=1) == 1.0                # each sample still looks real


def test_report_table_gives_mean_and_spread_beside_the_real_vs_real_values_and_states_its_choices():
    from course_utils.evaluation import mean_and_spread, report_markdown, stated_choices

    def curve_point(scale, rows):
        return {"scale": scale, **mean_and_spread(rows)}

    def seeds(acc, fd):
        return [{"accuracy": acc, "frechet": fd + d, "precision": 0.8, "recall": 0.5 + d / 100, "diversity": 20.0}
                for d in (-1.0, 1.0)]

    # highest accuracy at s = 8, lowest Frechet at s = 2, 90% first reached at s = 4
    curve = [curve_point(1.0, seeds(0.7, 30.0)), curve_point(2.0, seeds(0.85, 10.0)),
             curve_point(4.0, seeds(0.95, 20.0)), curve_point(8.0, seeds(0.99, 50.0))]
    choices = stated_choices(curve, target=0.9)
    assert choices["lowest frechet"]["scale"] == 2.0 and choices["reaches target"]["scale"] == 4.0
    assert stated_choices(curve[:2], target=0.9)["reaches target"] is None
    assert curve[0]["frechet"] == 30.0 and curve[0]["frechet_sd"] == pytest.approx(2 ** 0.5)
    report = {"n": 100, "n_reference": 100, "steps": 25, "seeds": [0, 1], "target_accuracy": 0.9,
              "real": mean_and_spread([{"frechet": 9.0, "precision": 0.9, "recall": 0.85}] * 2),
              "evaluator_test_accuracy": 0.99, "unguided": {}, "sweeps": {"cfg-ddim": curve},
              "choices": {"cfg-ddim": choices}}
    text = report_markdown(report)
    assert "Frechet 9.00 +- 0.00, precision 90.0% +- 0.0%, recall 85.0% +- 0.0%" in text
    assert (
        "| classifier-free guidance, DDIM | 1 | 70.0% +- 0.0% | 30.00 +- 1.41 | 80.0% +- 0.0% | 50.0% +- 1.4% |" in text
    )
    assert "| classifier-free guidance, DDIM | 2 | 85.0% +- 0.0% | 10.00 +- 1.41 | 4 | 95.0% +- 0.0% |" in text


def test_a_report_resumes_from_its_saved_rows_and_ignores_rows_of_other_settings(tmp_path):
    from course_utils.evaluation import _RowCache

    calls = []
    cache = _RowCache(tmp_path / "partial.json", {"n": 10})
    assert cache.get("a", lambda: calls.append(1) or {"frechet": 1.0}) == {"frechet": 1.0}
    again = _RowCache(tmp_path / "partial.json", {"n": 10})
    assert again.get("a", lambda: calls.append(2) or {"frechet": 2.0}) == {"frechet": 1.0} and calls == [1]
    other = _RowCache(tmp_path / "partial.json", {"n": 20})
    assert other.get("a", lambda: calls.append(3) or {"frechet": 3.0}) == {"frechet": 3.0} and calls == [1, 3]


def test_quality_report_runs_every_method_at_equal_steps_per_seed_and_resumes_without_sampling(tmp_path, monkeypatch):
    import course_utils.evaluation as evaluation

    scales = {"classifier-ddpm": [0.0, 2.0], "classifier-ddim": [2.0], "cfg-ddim": [1.0]}
    calls = []
    real_generate = evaluation.generate

    def counted(method, models, y, scale, **kw):
        calls.append((method, kw["steps"], kw["ddpm_steps"]))
        return real_generate(method, models, y, scale, **kw)

    monkeypatch.setattr(evaluation, "generate", counted)
    kw = dict(n_per_class=1, steps=3, seeds=(0, 1), device="cpu", progress=False, partial=tmp_path / "rows.json",
              scales=scales, ddpm_1000=False, accuracy_digits=100)
    report = evaluation.quality_report(**kw)
    assert len(calls) == 2 * 4 and all(steps == ddpm_steps == 3 for _, steps, ddpm_steps in calls)
    assert set(report["unguided"]) == {"ddpm_eps DDPM-3", "ddpm_eps DDIM-3", "ddpm_x0 DDPM-3", "ddpm_x0 DDIM-3"}
    row = report["sweeps"]["classifier-ddpm"][1]
    assert row["scale"] == 2.0 and row["seeds"] == 2 and {"frechet_sd", "recall", "precision"} <= set(row)
    assert report["real"]["seeds"] == 2 and report["n"] == report["n_reference"] == 10
    assert [r["t"] for r in report["accuracy_vs_t"]] == [*range(0, 1000, 100), 999]
    assert report["accuracy_vs_t_digits"] == 100 and report["accuracy_vs_t"][0]["noisy_classifier"] > 0.9
    per_seed = [report["rows"][f"classifier-ddpm 2 {sd}"]["frechet"] for sd in (0, 1)]   # each seed's own row
    assert row["frechet"] == pytest.approx(sum(per_seed) / 2)
    assert set(report["choices"]) == set(scales) and "reaches target" in report["choices"]["cfg-ddim"]
    figure = evaluation.plot_report(report)         # one line with error bars per method, in each of 4 panels
    assert len(figure.axes) == 5 and all(len(ax.containers) == 3 for ax in figure.axes[:4])
    monkeypatch.setattr(evaluation, "generate", lambda *a, **k: pytest.fail("a saved row was measured again"))
    again = evaluation.quality_report(**kw)
    assert again["sweeps"] == report["sweeps"]

    import shutil

    from course_utils.cli import update_manifest_quality
    from course_utils.pretrained import WEIGHTS_DIR, read_info
    for entry in WEIGHTS_DIR.glob("*.json"):
        shutil.copy(entry, tmp_path / entry.name)
    update_manifest_quality(report, weights_dir=tmp_path)
    guided = read_info("noisy_classifier", tmp_path)["quality"]
    assert guided["sweeps"]["classifier-ddpm"][1]["scale"] == 2.0 and guided["steps"] == 3
    assert set(guided["classifier-ddim"]) == {"lowest frechet", "reaches target"} and guided["seeds"] == [0, 1]
    assert set(read_info("cfg_eps", tmp_path)["quality"]["sweeps"]) == {"cfg-ddim"}
    unguided = read_info("ddpm_x0", tmp_path)["quality"]
    assert set(unguided) >= {"ddpm_x0 DDPM-3", "ddpm_x0 DDIM-3", "real_vs_real"} and "ddpm_eps DDIM-3" not in unguided
    assert read_info("ddpm_x0")["quality"] != unguided          # the shipped manifest is left alone


def test_trade_off_rows_follow_the_scales_and_guidance_raises_accuracy():
    from course_utils.evaluation import trade_off

    shipped_models = {n: load_pretrained(n, device="cpu") for n in ("cfg_eps", "evaluator")}
    y = torch.arange(10).repeat_interleave(2)
    test = load_mnist(train=False, offline=True, verbose=False)
    rows = trade_off("cfg-ddim", shipped_models, shipped_models["evaluator"].model, y, [0.0, 3.0], test.images[:20],
                     steps=5, seeds=(0, 1))
    assert [r["scale"] for r in rows] == [0.0, 3.0] and all(r["n_reference"] == 20 and r["seeds"] == 2 for r in rows)
    assert rows[0]["frechet_sd"] > 0           # two seeds' starting noises give two different sample sets
    assert rows[1]["accuracy"] > rows[0]["accuracy"]


def test_the_quality_page_states_the_report_and_the_report_is_the_manifests():
    """The site's quality page (site/quality.md) holds docs/quality.md word for word, and docs/quality.json's
    curves and real-vs-real row are the ones the manifests hold (so no figure is copied by hand)."""
    import json
    from pathlib import Path

    from course_utils.cli import QUALITY_PAGE, REPORT_MARKERS, _rounded
    from course_utils.pretrained import read_info

    root = Path(__file__).resolve().parent.parent
    page = (root / QUALITY_PAGE).read_text()
    between = page[page.index(REPORT_MARKERS[0]) + len(REPORT_MARKERS[0]):page.index(REPORT_MARKERS[1])]
    assert between.strip() == (root / "docs" / "quality.md").read_text().strip()
    report = json.loads((root / "docs" / "quality.json").read_text())
    guided = read_info("noisy_classifier")["quality"]
    for method in ("classifier-ddpm", "classifier-ddim"):
        assert guided["sweeps"][method] == [_rounded(r) for r in report["sweeps"][method]]
    assert read_info("cfg_eps")["quality"]["sweeps"]["cfg-ddim"] == [_rounded(r) for r in report["sweeps"]["cfg-ddim"]]
    assert guided["real_vs_real"] == _rounded(report["real"]) and guided["seeds"] == report["seeds"]


def test_publishing_a_report_needs_the_quality_pages_markers(tmp_path):
    from course_utils.cli import QUALITY_PAGE, REPORT_MARKERS, publish_report

    out, root = tmp_path / "out", tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / QUALITY_PAGE).parent.mkdir(parents=True)
    out.mkdir()
    for kind in ("json", "md", "png"):
        (out / f"report.{kind}").write_text(f"the {kind}")
    (root / QUALITY_PAGE).write_text("intro\n")
    with pytest.raises(ValueError, match="no place for the report"):
        publish_report(out, root)
    (root / QUALITY_PAGE).write_text(f"intro\n{REPORT_MARKERS[0]}\nold\n{REPORT_MARKERS[1]}\nafter\n")
    publish_report(out, root)
    assert (root / QUALITY_PAGE).read_text() == f"intro\n{REPORT_MARKERS[0]}\n\nthe md\n\n{REPORT_MARKERS[1]}\nafter\n"
    assert (root / "docs" / "quality.png").read_text() == "the png" and not list((root / "docs").glob("*.tmp"))
