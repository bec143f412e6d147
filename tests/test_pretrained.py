"""The shipped weights: every file loads with its hash checked, tampering is refused, and the
models reach (on small samples) the quality their manifest reports."""
import json
import shutil

import pytest
import torch

from course_utils import load_mnist
from course_utils.evaluation import generate, judge
from course_utils.pretrained import NAMES, WEIGHTS_DIR, WeightsError, load_pretrained, manifest, sha256_of


@pytest.fixture(scope="module")
def shipped():
    return {n: load_pretrained(n, device="cpu") for n in NAMES}


def test_every_weight_file_loads_with_its_hash_verified(shipped):
    total = 0
    for name, p in shipped.items():
        path = WEIGHTS_DIR / p.info["file"]
        assert sha256_of(path) == p.info["sha256"]
        assert not p.model.training
        assert p.info["command"].startswith(f"python -m course_utils train {name}")
        assert p.info["steps"] > 0 and p.info["data"]
        total += path.stat().st_size
    assert total < 10_000_000
    assert set(manifest()) == set(NAMES)
    assert shipped["evaluator"].schedule is None
    assert shipped["ddpm_eps"].schedule.T == 1000


def copy_weights(tmp_path, name):
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    return tmp_path / f"{name}.safetensors"


def test_a_tampered_copy_is_refused(tmp_path):
    path = copy_weights(tmp_path, "noisy_classifier")
    assert load_pretrained("noisy_classifier", "cpu", weights_dir=tmp_path).model is not None
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its manifest.*altered"):
        load_pretrained("noisy_classifier", "cpu", weights_dir=tmp_path)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    copy_weights(tmp_path, "evaluator")
    info_path = tmp_path / "evaluator.json"
    info = json.loads(info_path.read_text())
    info["architecture"] = {"class": "NoisyClassifier", "kwargs": {}}
    info_path.write_text(json.dumps(info))
    with pytest.raises(WeightsError, match="does not fit NoisyClassifier"):
        load_pretrained("evaluator", "cpu", weights_dir=tmp_path)


def test_unknown_and_missing_weights_are_explained(tmp_path):
    with pytest.raises(WeightsError, match="no pretrained weights named 'ddpm'.*ddpm_eps"):
        load_pretrained("ddpm")
    with pytest.raises(KeyError) as err:             # `except KeyError` works, as for any look-up by name
        load_pretrained("ddpm")
    assert str(err.value).startswith("no pretrained weights named 'ddpm': the names are ddpm_x0, ddpm_eps")
    with pytest.raises(WeightsError, match="retrain with `python -m course_utils train cfg_eps`"):
        load_pretrained("cfg_eps", weights_dir=tmp_path)


@pytest.fixture(scope="module")
def test_digits():
    return load_mnist(train=False, offline=True, verbose=False)


def reported(name, key):
    return load_pretrained(name, "cpu").info["quality"][key]


def test_evaluator_accuracy_matches_the_manifest(shipped, test_digits):
    acc = judge(shipped["evaluator"].model, test_digits.images, test_digits.labels)["accuracy"]
    assert acc == pytest.approx(reported("evaluator", "test_accuracy"), abs=0.002)
    assert acc >= 0.98


def test_noisy_classifier_accuracy_against_t_matches_the_manifest(shipped, test_digits):
    from course_utils.evaluation import accuracy_against_t
    clf = shipped["noisy_classifier"]
    rows = accuracy_against_t(clf.model, shipped["evaluator"].model, clf.schedule, test_digits.images,
                              test_digits.labels, [100, 500], generator=torch.Generator().manual_seed(0))
    table = reported("noisy_classifier", "accuracy_at_t")
    for row in rows:
        assert row["noisy_classifier"] == pytest.approx(table[str(row["t"])], abs=0.04)
    assert rows[0]["noisy_classifier"] > 0.95 and rows[0]["clean_evaluator"] < 0.9  # clean fails on x_t


@pytest.mark.parametrize("method, scale, at_least", [("classifier-ddim", 4.0, 0.9), ("cfg-ddim", 2.0, 0.95)])
def test_guided_samples_reach_the_reported_accuracy(shipped, method, scale, at_least):
    """40 samples (4 of each digit) with DDIM-25, where the manifest's curve (1,000 samples, DDIM-25) is above 99%."""
    owner = "cfg_eps" if method.startswith("cfg") else "noisy_classifier"
    curve = reported(owner, "sweeps")[method]
    assert next(r for r in curve if r["scale"] == scale)["accuracy"] > 0.99 and reported(owner, "steps") == 25
    y = torch.arange(10).repeat_interleave(4)
    x = generate(method, shipped, y, scale, steps=25, generator=torch.Generator().manual_seed(0), device="cpu")
    assert x.shape == (40, 1, 32, 32) and x.abs().max() <= 1.0001
    assert judge(shipped["evaluator"].model, x, y)["accuracy"] >= at_least


def test_unguided_model_scores_low_accuracy_but_real_digits(shipped):
    """Scale 0 is the unguided model: its digits are spread over the classes, not all the target."""
    y = torch.full((40,), 3)
    x = generate("classifier-ddim", shipped, y, 0.0, steps=25, generator=torch.Generator().manual_seed(1), device="cpu")
    probs = torch.softmax(shipped["evaluator"].model(x), 1)
    assert (probs.argmax(1) == 3).float().mean() < 0.5          # no steering toward 3
    assert probs.max(1).values.mean() > 0.8                      # but confident: they look like digits
