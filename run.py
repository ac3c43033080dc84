"""petsweep entry point.

python run.py                                   # the default run: MiniLM-L6 + LoRA on BBC News
python run.py backbone=bert-base method=bitfit task=rte seed=1
python run.py --cfg job                         # print the composed config
"""

import functools
import os
import sys

import hydra
from omegaconf import DictConfig

from petsweep.cli import hydra_argv, needs_base_nodes, preflight
from petsweep.spec.errors import exit_on_user_error, stop_on_signals


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    """One run; returns its `optimized_metric` (what a Hydra sweeper such as Optuna optimises)."""
    from petsweep.run.app import optimized_value, run

    with exit_on_user_error():
        return optimized_value(run(cfg), cfg.optimized_metric)


class SweepTask:
    """run.py's task function (`main`'s), carrying what the preflight validated (a
    launchers.planning.Validated): Hydra hands the task function to the sweeper's setup, so petsweep's
    sweepers plan with it instead of validating those configs again. Called, it is `main`'s own function (a
    sweeper that runs jobs in this process, such as Optuna's with Hydra's basic launcher, calls it)."""

    def __init__(self, task, validated):
        functools.update_wrapper(self, task)  # __wrapped__: Hydra finds conf/ beside the task's own file
        self.validated = validated

    def __call__(self, cfg: DictConfig) -> float:
        return self.__wrapped__(cfg)


def run_resolved(resolved) -> None:
    """A plain run, as the preflight composed and validated it (a ResolvedRun): Hydra would only compose the
    same config a second time."""
    from petsweep.run.app import console_logging, execute

    console_logging()
    with exit_on_user_error():
        execute(resolved)


if __name__ == "__main__":
    stop_on_signals()
    argv = hydra_argv(sys.argv[1:])
    with exit_on_user_error():  # Ctrl-C while importing or planning: one line too
        from launchers.planning import Validated
        from petsweep.compose.nodes import register_base_nodes

        if needs_base_nodes(argv, os.environ.get("COMP_LINE")):  # not to complete `method=lo`: no torch
            register_base_nodes()  # the base nodes, in Hydra's ConfigStore (seconds: the methods, torch)

        validated = Validated()  # a sweep's configs, validated here once: its planner takes them
        resolved = preflight(argv, validated)  # an Optuna sweep gains its direction here
    sys.argv[1:] = argv
    if resolved is not None:
        run_resolved(resolved)
    else:
        app = hydra.main(config_path="conf", config_name="config", version_base=None)
        with exit_on_user_error():  # Ctrl-C of a sweep: one line, not Hydra's traceback
            app(SweepTask(main.__wrapped__, validated))()
