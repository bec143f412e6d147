"""Training under torchrun: two CPU processes (gloo, loopback only) against one."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from course_utils.distributed import World, per_process_batch, rank_seed
from course_utils.pretrained import load_pretrained

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 240  # seconds: a launch that takes longer has hung
ENV = dict(os.environ, COURSE_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def torchrun(*args, processes=2):
    """``torchrun`` on this machine only: a c10d rendezvous on a free loopback port."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc-per-node={processes}",
            "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", "--max-restarts=0", *args]


def launch(cmd, tmp_path):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    return out, time.perf_counter() - start


def worker(tmp_path, name, steps, batch, processes, checkpoint=None, mode="train"):
    args = [str(WORKER), mode, str(tmp_path / name), str(steps), str(batch)] + ([str(checkpoint)] if checkpoint else [])
    cmd = torchrun(*args, processes=processes) if processes > 1 else [sys.executable, *args]
    out, _ = launch(cmd, tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [torch.load(tmp_path / name / f"rank{r}.pt") for r in range(processes)]


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"the processes disagree on {different[:5]}"


def test_each_process_has_its_share_of_the_batch_and_its_own_seed():
    assert per_process_batch(64, World(0, 2, 0)) == 32 and per_process_batch(64, World()) == 64
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        per_process_batch(64, World(0, 3, 0))
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(8)}) == 8


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """8 steps in two processes, global batch 64, writing their checkpoint: (each process's results, the
    checkpoint)."""
    tmp_path = tmp_path_factory.mktemp("two")
    ckpt = tmp_path / "run.pt"
    return worker(tmp_path, "two", steps=8, batch=64, processes=2, checkpoint=ckpt), ckpt


def test_two_processes_keep_identical_weights_and_learn_like_one_with_the_whole_batch(two_processes, tmp_path):
    two, _ = two_processes
    assert_same_tensors(two[0]["model"], two[1]["model"])      # the same averaged gradient everywhere
    assert_same_tensors(two[0]["ema"], two[1]["ema"])          # so the same EMA everywhere
    assert two[0]["losses"] == two[1]["losses"]                # each records the loss of the global batch
    one = worker(tmp_path, "one", steps=8, batch=64, processes=1)
    a, b = torch.tensor(two[0]["losses"]), torch.tensor(one[0]["losses"])
    # the same initial weights and the same global batch size, other rows and noise: over the first 8 steps
    # (2 x 32 against 1 x 64) the losses agree within 25% step by step, and their means within 5%
    relative = ((a - b).abs() / b).max().item()
    mean_gap = abs(a.mean() / b.mean() - 1).item()
    print(f"first 8 losses, 2 x 32: {[round(v, 4) for v in a.tolist()]}")
    print(f"first 8 losses, 1 x 64: {[round(v, 4) for v in b.tolist()]}")
    print(f"largest step gap {relative:.1%}, gap of the means {mean_gap:.1%}")
    assert relative < 0.25 and mean_gap < 0.05


def test_a_checkpoint_moves_between_two_processes_and_one(two_processes, tmp_path):
    ckpt = tmp_path / "run.pt"
    shutil.copy(two_processes[1], ckpt)            # the two processes' checkpoint after 8 steps
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 8 and state["world_size"] == 2 and len(state["generators"]) == 2
    resumed = worker(tmp_path, "alone", steps=3, batch=64, processes=1, checkpoint=ckpt)[0]
    assert resumed["step"] == 11 and all(v == v for v in resumed["losses"])
    assert torch.load(ckpt, weights_only=False)["world_size"] == 1
    again = worker(tmp_path, "two-again", steps=2, batch=64, processes=2, checkpoint=ckpt)
    assert again[0]["step"] == 13
    assert_same_tensors(again[0]["model"], again[1]["model"])


def test_a_failing_process_stops_the_run_with_its_error_not_a_hang(tmp_path):
    args = [str(WORKER), "fail", str(tmp_path / "out"), "50", "64"]
    out, seconds = launch(torchrun(*args), tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "process 1 fails on purpose at step 2" in text, text[-3000:]
    print(f"the failed launch ended after {seconds:.1f} s")
    assert not (tmp_path / "out" / "rank0.pt").exists()


def test_the_training_command_under_torchrun_writes_one_set_of_files(tmp_path):
    weights, ckpt = tmp_path / "w", tmp_path / "ckpt"
    args = ["-m", "course_utils", "train", "ddpm_eps", "--quick", "--steps", "4", "--checkpoint-every", "2",
            "--weights-dir", str(weights), "--checkpoint-dir", str(ckpt), "--device", "cpu"]
    out, _ = launch(torchrun(*args), tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("wrote ") == 1 and "on 2 process(es)" in out.stdout
    assert sorted(p.name for p in weights.iterdir()) == ["ddpm_eps.json", "ddpm_eps.safetensors"]
    assert sorted(p.name for p in ckpt.iterdir()) == ["ddpm_eps-quick.pt"]
    loaded = load_pretrained("ddpm_eps", weights_dir=weights, device="cpu")
    assert loaded.info["world_size"] == 2 and loaded.info["steps"] == 4
    assert loaded.info["command"].startswith("torchrun --nproc-per-node=2 -m course_utils train ddpm_eps --quick")
    assert loaded.model(torch.randn(2, 1, 32, 32), torch.tensor([0, 999])).shape == (2, 1, 32, 32)
    # the same command in one process resumes the two processes' checkpoint (the budget is spent)
    alone = subprocess.run([sys.executable, *args], env=ENV, capture_output=True, text=True, timeout=TIMEOUT,
                           cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert "written by 2 process(es), resumed by 1" in alone.stdout
    info = json.loads((weights / "ddpm_eps.json").read_text())
    assert info["world_size"] == 1 and info["steps"] == 4
