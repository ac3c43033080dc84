"""Where a result came from: code version, packages, machine, seeds and times."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from petsweep import CONF_DIR
from petsweep.records import lockcheck

PACKAGES = (
    "petsweep",
    "torch",
    "transformers",
    "peft",
    "datasets",
    "hydra-core",
    "omegaconf",
    "numpy",
    "safetensors",
    "tokenizers",
    "accelerate",
    "wandb",
    "deepspeed",
)


def git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(CONF_DIR.parent), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def process_start_time() -> float | None:
    """Wall-clock time at which this process started (Linux /proc), to measure start-up overhead."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def earlier_attempts(run_path: Path) -> list[dict]:
    """This run's attempts that `petsweep invalidate` moved aside (same dir name), oldest first."""
    import json

    from petsweep.records.status import INVALIDATED_DIR

    def batch_order(old: Path) -> tuple:  # <date>-<time>, then -2 ... -10 (status.new_aside_batch)
        date, time, *k = old.parent.name.split("-")
        return (date, time, int(k[0]) if k and k[0].isdigit() else 1)

    found = []
    runs = (Path(run_path).parent / INVALIDATED_DIR).glob(f"*/{Path(run_path).name}")
    for old in sorted(runs, key=batch_order):
        try:
            meta = json.loads((old.parent / "invalidated.json").read_text())
        except (OSError, ValueError):
            meta = {}
        found.append({"path": str(old), "reason": meta.get("reason", ""), "when": meta.get("when")})
    return found


def collect(seed: int) -> dict:
    """Provenance at the start of a run; `end` is filled in when it finishes."""
    import torch

    status = git("status", "--porcelain")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "packages": package_versions(),
        "environment": lockcheck.environment(),  # the lock's sha256 and every package that differs from it
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "seed": seed,
        "argv": sys.argv,
        "start": time.time(),
        "end": None,
    }
