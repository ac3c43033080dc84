"""The ranks of one run: which process this is among the run's processes, and the few collectives the training
loop needs.

A run that uses G ranks is G processes (spawned locally by petsweep.run.spawn, or G SLURM tasks). Every rank
trains its contiguous share of each global batch (trainer.batch_size stays the global batch), gradients are
averaged over ranks before the optimizer steps, and evaluation is split across ranks and gathered, so every
rank holds the same scores. Rank 0 owns the run's records: status, result, metrics, W&B, checkpoint metadata.
With one rank every function here is a no-op that returns its input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

TIMEOUT_S = float(os.environ.get("PETSWEEP_COLLECTIVE_TIMEOUT_S", "1800"))


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def share(self, items: list) -> list:
        """This rank's contiguous slice of a global batch (its length divides by the world size)."""
        size = len(items) // self.world
        return items[self.rank * size : (self.rank + 1) * size]


def current() -> Ranks:
    """From the torch.distributed environment (RANK, WORLD_SIZE, LOCAL_RANK); one rank when it is absent."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return Ranks()
    return Ranks(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))


def device(base: torch.device, ranks: Ranks) -> torch.device:
    """A CUDA rank's own GPU: by local rank among the visible ones (SLURM may show each task one, or all)."""
    if base.type != "cuda" or not ranks.distributed:
        return base
    return torch.device("cuda", ranks.local_rank % torch.cuda.device_count())


def init(ranks: Ranks, on: torch.device) -> bool:
    """Join the run's process group (env:// rendezvous); gloo on CPU, NCCL on GPUs. True if this call
    created it."""
    import torch.distributed as dist

    if not ranks.distributed or dist.is_initialized():
        return False
    if on.type == "cuda":
        torch.cuda.set_device(on)
    dist.init_process_group(
        "nccl" if on.type == "cuda" else "gloo",
        rank=ranks.rank,
        world_size=ranks.world,
        timeout=timedelta(seconds=TIMEOUT_S),
    )
    return True


def _live() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_floats(values: list[float]) -> list[float]:
    """Element-wise sums over ranks (losses, token counts, flags): one small all-reduce."""
    if not _live():
        return list(values)
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of every trainable gradient over ranks (a missing gradient counts as zeros), flattened into one
    buffer per dtype and device so that a step costs one all-reduce, not one per tensor."""
    if not _live():
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in buckets.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_tensors(tensors: list[torch.Tensor]) -> None:
    """Rank 0's values everywhere (the trained state starts identical on every rank)."""
    if not _live():
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=0)


def from_main(compute):
    """`compute()` on rank 0, its (picklable) result on every rank."""
    if not _live():
        return compute()
    import torch.distributed as dist

    box = [compute() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if not _live():
        return [obj]
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _live():
        import torch.distributed as dist

        dist.barrier()


def split_evenly(items: list, ranks: Ranks) -> list:
    """This rank's part of an evaluation set: equal parts (the last padded by repeating the final item), so
    that every rank runs the same number of forward passes, which ZeRO-3 needs."""
    if not ranks.distributed or not items:
        return items
    per = -(-len(items) // ranks.world)
    padded = items + [items[-1]] * (per * ranks.world - len(items))
    return padded[ranks.rank * per : (ranks.rank + 1) * per]


def joined(parts: list[list], total: int) -> list:
    """The gathered parts of split_evenly back in order, padding dropped."""
    return [item for part in parts for item in part][:total]


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
