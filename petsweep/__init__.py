"""petsweep: parameter-efficient tuning runs and sweeps across model scales."""

from pathlib import Path

__version__ = "0.1.0"

# The Hydra config tree lives beside the package (repo root / conf); an editable install keeps it there.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
