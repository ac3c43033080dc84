"""How many nodes, GPUs and ranks a run wants: the one rule that the local pool, SLURM's sbatch shape, the
ranks a run starts, the fused-group check, the cost estimate and the run's identity all read.

From two keys: `backbone.resources` (`gpus` per node, `nodes`) and `trainer.ranks`.

- A GPU run asks for GPUs (`resources.gpus` >= 1); a CPU run asks for none (`gpus` 0 or absent) and its ranks
  meet over gloo. Which device a run trains on (`trainer.device`) is decided where it runs, not here.
- `resources.nodes` (1 when absent) is how many machines the run spans; every node holds the same number of
  ranks.
- `trainer.ranks=null`: one rank per GPU on every node (gpus x nodes); a CPU run, one rank per node.
- `trainer.ranks=R`: R ranks in all (the world size), spread evenly over the nodes (R must divide by them); a
  GPU run takes one GPU per rank (no rank drives more than one), so R/nodes is also its GPUs per node.
- The world size is nodes x ranks per node: the tasks SLURM starts, the GPUs the local pool hands a run on a
  machine with GPUs (one per rank, so a CPU backbone's run trains there too), the ranks a run's own process
  starts, and the ranks the identity counts where dropout makes them change the numbers (spec/identity.py).

The one fact that is not the config's, the GPUs the process that starts a run can see, is applied in
`RunShape.ranks_here`, and only for trainer.ranks=null.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from petsweep.spec.errors import ConfigError


@dataclass(frozen=True)
class RunShape:
    """What one run is, as machines: `nodes` x `ranks_per_node` processes, `gpus_per_node` GPUs on each node
    (0: a CPU run). `ranks_fixed`: trainer.ranks named the world size (null: it follows the GPUs)."""

    nodes: int
    gpus_per_node: int
    ranks_per_node: int
    ranks_fixed: bool = False

    @classmethod
    def of(cls, resources: Mapping | None, ranks: int | None) -> RunShape:
        """The shape of a backbone's `resources` under `trainer.ranks` (the rules: the module's docstring)."""
        resources = resources or {}
        nodes = _count("backbone.resources.nodes", resources.get("nodes"), default=1, least=1)
        gpus = _count("backbone.resources.gpus", resources.get("gpus"), default=0, least=0)
        if ranks is None:
            return cls(nodes, gpus, max(1, gpus))
        ranks = _count("trainer.ranks", ranks, default=1, least=1)
        if ranks % nodes:
            raise ConfigError(
                "trainer.ranks",
                ranks,
                f"must divide evenly over backbone.resources.nodes={nodes} (every node holds as many ranks): "
                f"choose a multiple of {nodes}, or null for one rank per GPU",
            )
        per_node = ranks // nodes
        return cls(nodes, per_node if gpus else 0, per_node, ranks_fixed=True)

    @property
    def world_size(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def gpus(self) -> int:
        """Every GPU the run asks for, on all its nodes (0: a CPU run)."""
        return self.nodes * self.gpus_per_node

    @property
    def on_gpus(self) -> bool:
        return self.gpus_per_node > 0

    def ranks_here(self, visible_gpus: int) -> int:
        """The ranks a run's own process starts (a SLURM task is one rank already: SLURM started the world):
        trainer.ranks as set; for null, the world size where this process sees that many GPUs, as many as it
        sees where it sees fewer, one where it sees none (a CPU device). A run with dropout whose id counts
        another number is refused where this is asked (run/app.py)."""
        if self.ranks_fixed:
            return self.world_size
        return max(1, min(self.world_size, visible_gpus)) if visible_gpus else 1


def run_shape(cfg: Mapping) -> RunShape:
    """The shape of a config (a dict or a DictConfig, a record's config too): its backbone's resources and its
    trainer.ranks, absent keys taken as a 1-node CPU run of null ranks."""
    backbone = cfg.get("backbone") or {}
    trainer = cfg.get("trainer") or {}
    return RunShape.of(backbone.get("resources"), trainer.get("ranks"))


def _count(key: str, value, default: int, least: int) -> int:
    """A whole number >= least (integral floats too: a config's 2.0 is 2), `default` for null."""
    if value is None:
        return default
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )
    if not whole or value < least:
        raise ConfigError(key, value, f"must be an integer >= {least}")
    return int(value)
