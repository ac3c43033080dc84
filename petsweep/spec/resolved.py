"""One run, resolved: what a process needs to execute it (petsweep.run.app.execute), as plain data.

The planner (launchers/planning.py) or run.py's preflight composes and validates a run once and makes a
`ResolvedRun` of it (petsweep.model.resolve.resolved_run, or unvalidated_run for a config the executing
process validates): the resolved config (plain dicts, no `hydra` node), the run id, the run directory, and
the command-line overrides its provenance records. That, and never a DictConfig, is what crosses a process
boundary: JSON lines to a warm worker, a JSON file to a rank child, a pickle to a SLURM task.

Device and precision are decided once, by the process that executes the run, since they are facts of its
machine (a warm worker's slot sees only its own GPUs; a SLURM task's node is not the planner's; asking CUDA
whether it computes in bf16 starts CUDA in the asking process): `execute` sets them on the spec before the
first check that reads them, and the spec carries them on to the rank children it starts, which decide
nothing again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from petsweep.spec.config import RunSpec


@dataclass(frozen=True)
class ResolvedRun:
    """A run as planned: its resolved config, id and directory; device and precision once decided."""

    config: dict  # the resolved config: plain dicts and lists, without the hydra node
    run_id: str  # the full run hash (petsweep.model.resolve.run_hash)
    run_dir: str
    overrides: list[str] | None = None  # the run's own command-line overrides (its provenance.json)
    device: str | None = None  # "cpu" or "cuda" (a rank takes its own GPU of it); None: not decided yet
    precision: str | None = None  # "bf16" or "fp32" as computed; None: not decided yet
    # the typed, validated form, where this process made it (run.py's preflight): never serialised
    typed: RunSpec | None = field(default=None, repr=False, compare=False)

    def decided(self, device: str, precision: str) -> ResolvedRun:
        return dataclasses.replace(self, device=device, precision=precision)

    def with_config(self, config: dict) -> ResolvedRun:
        """The same run with its config as the executing process typed it (what `budget` resolved to, its
        share of threads): its id and directory stay."""
        return dataclasses.replace(self, config=config)

    def with_threads(self, threads: int) -> ResolvedRun:
        """The same run on `threads` CPU threads (trainer.num_threads: not part of the identity), as a warm
        worker's slot or a rank's share of the run's threads gives it."""
        return self.with_config(dict(self.config, trainer=dict(self.config["trainer"], num_threads=threads)))

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "typed"}

    @classmethod
    def from_dict(cls, data: dict) -> ResolvedRun:
        names = {f.name for f in dataclasses.fields(cls)} - {"typed"}
        unknown = set(data) - names
        if unknown or "config" not in data or "run_id" not in data or "run_dir" not in data:
            raise ValueError(f"not a resolved run: keys {sorted(data)}")
        return cls(**data)
