"""Seeding: one call, before the backbone and the PET modules are built."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> dict[str, int]:
    """Seed python, numpy and torch (CPU and CUDA) from one run seed; returns the seeds used."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return {"python": seed, "numpy": seed % 2**32, "torch": seed}
