"""Where a run executes: one process, or one of torchrun's N (DDP over NCCL on GPUs, gloo on the CPU).

Everything the training loop does across ranks is here: the process group, the DDP wrapper, the
agreement on a non-finite loss, and the barrier around rank 0's file writes. Each rank takes its own
share of the batches (``sampling.BatchPlan(world_size, rank)``); DDP averages the trained weights'
gradients once per optimizer step (the other micro-batches run under ``no_sync``), so N ranks equal
one process with ``--grad_acc N`` over the same batches.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import torch

from ..devices import resolve_device


@dataclass(frozen=True)
class World:
    """This process's place in the run: its rank, how many ranks there are, and its device."""

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls, device: str | None = None, local_rank: int = 0,
                 environ: Mapping[str, str] | None = None) -> "World":
        """torchrun's WORLD_SIZE / RANK / LOCAL_RANK (else one process); ``device`` is ``--device``."""
        env = os.environ if environ is None else environ
        local_rank = int(env.get("LOCAL_RANK", local_rank))
        return cls(rank=int(env.get("RANK", 0)), size=int(env.get("WORLD_SIZE", "1")),
                   device=resolve_device(device, local_rank))

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run's files and prints."""
        return self.rank == 0


@contextlib.contextmanager
def process_group(world: World) -> Iterator[None]:
    """The process group of a multi-process run, for the duration of the block (nothing for one process)."""
    if world.size == 1:
        yield
        return
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)
    torch.distributed.init_process_group("nccl" if world.device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def wrap_ddp(module: torch.nn.Module, world: World) -> torch.nn.Module:
    """``module`` under DDP (gradients bucketed and all-reduced in backward, as DDP does). Its buffers
    (LoRA index tables) are equal on every rank, so they are not broadcast before each forward."""
    ddp = torch.nn.parallel.DistributedDataParallel
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                      else {"broadcast_buffers": False})
    return ddp(module, device_ids=[world.device.index] if world.device.type == "cuda" else None, **no_buffer_sync)


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank when ``flag`` is True on any (so that all ranks stop together)."""
    if world.size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=world.device)
    torch.distributed.all_reduce(value)
    return bool(value.item() > 0)


def barrier(world: World) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
    if world.size > 1:
        torch.distributed.barrier()
