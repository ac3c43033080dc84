"""petsweep entry point.

python run.py                                   # the default run: MiniLM-L6 + LoRA on BBC News
python run.py backbone=bert-base method=bitfit task=rte seed=1
python run.py --cfg job                         # print the composed config
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from petsweep.cli import hydra_argv, needs_base_nodes, needs_hydra_start, preflight, start_errors_in_one_line
from petsweep.spec.errors import exit_on_user_error, stop_on_signals


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    """One run; returns its `optimized_metric` (what a Hydra sweeper such as Optuna optimises)."""
    with exit_on_user_error():  # a stop while importing torch is one line too (review 2026-12-06 G4)
        from petsweep.run.app import optimized_value, run

        return optimized_value(run(cfg), cfg.optimized_metric)


def run_resolved(resolved) -> None:
    """A plain run, as the preflight composed and validated it (a ResolvedRun): Hydra would only compose the
    same config a second time."""
    with exit_on_user_error():  # a stop while importing torch is one line too (review 2026-12-06 G4)
        from petsweep.run.app import console_logging, execute

        console_logging()
        execute(resolved)


def run_resolved_under_hydra(resolved) -> None:
    """A plain run whose hydra.* settings only Hydra's start honours (hydra.run.dir, hydra.job.chdir, its
    logging): Hydra starts, and its job executes the run the preflight validated, handed over here; Hydra's
    own composition of the same config is not validated again (R23 F1: it was, twice in one process)."""

    @hydra.main(config_path="conf", config_name="config", version_base=None)
    def job(_cfg: DictConfig) -> None:
        from petsweep.run.app import execute

        with exit_on_user_error():
            execute(resolved)

    job()


if __name__ == "__main__":
    stop_on_signals()
    argv = hydra_argv(sys.argv[1:])
    with exit_on_user_error():  # Ctrl-C while importing or planning: one line too
        from petsweep.compose.nodes import register_base_nodes

        if needs_base_nodes(argv, os.environ.get("COMP_LINE")):  # not to complete `method=lo`: no torch
            register_base_nodes()  # the base nodes, in Hydra's ConfigStore (seconds: the methods, torch)

        resolved = preflight(argv)  # an Optuna sweep gains its direction here
    sys.argv[1:] = argv
    if resolved is not None and needs_hydra_start(argv):
        run_resolved_under_hydra(resolved)
    elif resolved is not None:
        run_resolved(resolved)
    else:
        with exit_on_user_error(), start_errors_in_one_line(argv):  # Ctrl-C of a sweep: one line too
            main()
