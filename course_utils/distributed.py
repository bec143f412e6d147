"""Training in several processes at once, started by torchrun (one machine or several).

    torchrun --standalone --nproc-per-node=N -m course_utils train NAME

Every process runs the same program. torchrun tells each one who it is through the environment
(RANK, LOCAL_RANK, WORLD_SIZE); :func:`join` reads it and joins the others. Then:

- each process draws its own batches, ``global_batch / N`` rows, from its own generator seeded with
  :func:`rank_seed` (the run's seed for rank 0, so that one process draws what a plain run draws);
- :func:`~course_utils.fitting.fit` wraps the network in DistributedDataParallel, which averages
  the gradients over the processes in every backward pass: each step is one step on the global batch;
- every process starts from the same weights and applies the same averaged gradients, so the weights,
  and the EMA computed from them, stay identical everywhere;
- rank 0 alone writes checkpoints, weights and the manifest.

Without torchrun (no WORLD_SIZE in the environment), :func:`join` returns a world of one process and
nothing here does anything.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .core.device import pick_device

TIMEOUT_MINUTES = 5.0  # a process that waits this long for the others gives up with an error


@dataclass(frozen=True)
class World:
    """Who this process is among the processes of a run: ``rank`` 0..size-1, ``local_rank`` on its machine."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def _environment_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"torchrun sets {name} to an integer, found {value!r}") from None


def join(device=None, timeout_minutes: float | None = None) -> tuple[World, torch.device]:
    """This process's place in the run and the device it computes on.

    Under torchrun, join the process group: the nccl backend on CUDA (process ``local_rank`` on GPU
    ``local_rank``), gloo on a CPU. Otherwise a world of one, on ``device`` (None: :func:`pick_device`)."""
    chosen = torch.device(device) if device is not None else pick_device()
    if dist.is_initialized():  # joined already (the training command joins once for all its networks)
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))), chosen
    if "WORLD_SIZE" not in os.environ:
        return World(), chosen
    world = World(_environment_int("RANK"), _environment_int("WORLD_SIZE"), _environment_int("LOCAL_RANK"))
    if chosen.type == "cuda":
        chosen = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    minutes = TIMEOUT_MINUTES if timeout_minutes is None else timeout_minutes
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=minutes))
    return world, chosen


def leave(world: World) -> None:
    """Wait for the other processes, then leave the process group (nothing for a world of one)."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait until every process gets here (nothing for a world of one)."""
    if world.size > 1:
        dist.barrier()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of process ``rank``'s batches and noise: ``seed + 1,000,003 * rank`` (rank 0 keeps ``seed``)."""
    return seed + 1_000_003 * rank


def per_process_batch(global_batch: int, world: World) -> int:
    """The rows each process draws a step: global_batch / N, which must divide evenly."""
    if global_batch % world.size:
        raise ValueError(f"the recipe's batch of {global_batch} does not split evenly over {world.size} processes: "
                         f"run a number of processes that divides it")
    return global_batch // world.size


def gather(obj, world: World) -> list:
    """``obj`` from every process, in rank order (``[obj]`` for a world of one)."""
    if world.size == 1:
        return [obj]
    everything = [None] * world.size
    dist.all_gather_object(everything, obj)
    return everything
