"""Before each epoch's validation every process takes the main process's buffers
(``Strategy.share_buffers``): BatchNorm's running statistics, which each process's last training
step updated on its own batch, so that the validation pass (which the end of the run reuses)
runs the weights the checkpoint saves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from mmcore.strategy import SingleProcess

SCRIPT = """
import sys
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmcore.distributed.ddp import DDP
from mmcore.distributed.launch import DistEnv


def run(rank, store):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    model.train()
    model(torch.randn(8, 3) + rank * 10)  # each process's own statistics
    DDP(DistEnv(rank, 2, rank)).share_buffers(model)
    bn = model[1]
    mine = torch.cat([bn.running_mean, bn.running_var, bn.num_batches_tracked.double().view(1)])
    shared = [torch.zeros_like(mine) for _ in range(2)]
    dist.all_gather(shared, mine)
    assert torch.equal(shared[0], shared[1]), shared
    assert bn.running_mean.abs().max() < 5, "rank 0's statistics (inputs near 0), not rank 1's"
    dist.destroy_process_group()


if __name__ == "__main__":
    # forked, not spawned (Linux, no thread started yet): the ranks start from this process,
    # torch already imported
    mp.start_processes(run, args=(sys.argv[1],), nprocs=2, start_method="fork")
"""


def test_every_process_takes_the_main_processes_buffers(tmp_path: Path) -> None:
    script = tmp_path / "share.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_one_process_has_nothing_to_share() -> None:
    model = torch.nn.BatchNorm1d(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    SingleProcess().share_buffers(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
