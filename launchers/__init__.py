"""Dispatch of petsweep sweeps: expanding axes, planning from disk, and running runs (local pool)."""
