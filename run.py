"""petsweep entry point.

python run.py                                   # the default run: MiniLM-L6 + LoRA on BBC News
python run.py backbone=bert-base method=bitfit task=rte seed=1
python run.py --cfg job                         # print the composed config
"""

import sys

import hydra
from omegaconf import DictConfig

import petsweep.config  # noqa: F401  (registers the base config nodes with Hydra)
from petsweep.cli import hydra_argv, preflight
from petsweep.errors import exit_on_user_error


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    """One run; returns its `optimized_metric` (what a Hydra sweeper such as Optuna optimises)."""
    from petsweep.app import optimized_value, run

    with exit_on_user_error():
        return optimized_value(run(cfg), cfg.optimized_metric)


def run_composed(cfg: DictConfig) -> None:
    """A plain run, as the preflight composed it: Hydra would only compose the same config a second time."""
    from petsweep.app import console_logging, run

    console_logging()
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    argv = hydra_argv(sys.argv[1:])
    with exit_on_user_error():
        composed = preflight(argv)  # an Optuna sweep gains its direction here
    sys.argv[1:] = argv
    if composed is not None:
        run_composed(composed)
    else:
        with exit_on_user_error():  # Ctrl-C of a sweep: one line, not Hydra's traceback
            main()
