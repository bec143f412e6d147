"""A few steps of the quick ddpm_eps recipe, alone or in every process of a torchrun launch
(tests/test_distributed.py); each process saves its weights, its EMA and its losses to OUT/rankR.pt.

    python tests/ddp_worker.py MODE OUT STEPS GLOBAL_BATCH [CHECKPOINT]

MODE "train": train STEPS steps from a fresh start, or from CHECKPOINT when it exists, then write
CHECKPOINT (if given) as the run's own checkpoint would be written. MODE "fail": process 1 raises
at its third step.
"""
import sys
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from course_utils import Budget, NoiseSchedule, fit
from course_utils.distributed import join, leave, per_process_batch
from course_utils.recipes import (
    load_training_data,
    lr_shape,
    recipe_for,
    recipe_loss,
    resume_run,
    save_checkpoint,
    start_run,
)

BUDGET_STEPS = 1000  # the budget the checkpoints are written for (the runs stop earlier, at STEPS)


@record
def main(mode: str, out: Path, steps: int, global_batch: int, checkpoint: Path | None) -> None:
    world, device = join("cpu")
    r = recipe_for("ddpm_eps", quick=True)
    data = load_training_data(world, offline=True)
    run = start_run(r, device, seed=0, world=world)
    budget = Budget(BUDGET_STEPS)
    if checkpoint is not None:
        resume_run(run, checkpoint, budget, seed=0, world=world)

    def maybe_fail(step, losses):
        if mode == "fail" and world.rank == 1 and step == 2:
            raise RuntimeError("process 1 fails on purpose at step 2")

    losses = fit(run.model, recipe_loss(r, NoiseSchedule(**r.schedule), run.generator), (data.images, data.labels),
                 steps=run.step + steps, batch_size=per_process_batch(global_batch, world), optimizer=run.optimizer,
                 lr_shape=lr_shape(r), ema=run.ema, device=device, generator=run.generator, progress=False,
                 callback=maybe_fail, resume=(run.step, run.seconds))
    run.step, run.losses = run.step + len(losses), run.losses + losses
    if checkpoint is not None:
        save_checkpoint(run, checkpoint, budget, world)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": run.model.state_dict(), "ema": run.ema.model.state_dict(), "losses": losses,
                "step": run.step, "world_size": world.size}, out / f"rank{world.rank}.pt")
    leave(world)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
         Path(sys.argv[5]) if len(sys.argv) > 5 else None)
