"""Hydra plugins of petsweep: thin classes Hydra must find here; the logic lives in `launchers/`."""
