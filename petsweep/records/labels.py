"""What tells a sweep's runs apart (issue #26): each run's overrides on the keys whose values differ between
the sweep's runs, as Hydra prints each job's overrides. Six APET budgets read `apet.scale=lora apet.seed=1`,
not six times `minilm-l1-apet-bbc_news-s0-<hash>`.

The sweep writes them into its sweep.json (`labels`: run dir name -> those overrides) before it launches
anything, so sweep lines, `petsweep status` and the run itself (W&B name, tags, job_type) read the same.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "sweep.json"  # launchers.sweep.SWEEP_MARKER
TAG_CHARS = 64  # W&B refuses longer tags


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def differing(runs: list[list[str]]) -> list[list[str]]:
    """Each run's label: its overrides whose key takes more than one value over `runs` (or that only some
    runs set), in its own order; [] where nothing differs (a sweep of one run)."""
    values: dict[str, set] = {}
    present: dict[str, int] = {}  # how many runs set the key
    keyed = [[(_key(override), override) for override in overrides] for overrides in runs]  # one pass (#25)
    for pairs in keyed:
        for key, override in pairs:
            values.setdefault(key, set()).add(override.split("=", 1)[-1])
        for key in {key for key, _ in pairs}:
            present[key] = present.get(key, 0) + 1
    varies = {key for key, seen in values.items() if len(seen) > 1 or present[key] < len(runs)}
    return [[override for key, override in pairs if key in varies] for pairs in keyed]


def read(sweep_dir: Path) -> dict[str, list[str]]:
    """The labels a sweep dir's sweep.json holds (run dir name -> overrides); {} where there are none."""
    try:
        return dict(json.loads((Path(sweep_dir) / MARKER).read_text()).get("labels") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def of_run(run_path: Path) -> list[str]:
    """The label of the run in `run_path` ([] outside a sweep)."""
    return list(read(Path(run_path).parent).get(Path(run_path).name) or [])


def text(label: list[str]) -> str:
    return " ".join(label)


def display(name: str, label: list[str]) -> str:
    """A run's line name: the dir name it can be found by, then what differs."""
    return f"{name}  [{text(label)}]" if label else name


def wandb_name(label: list[str], slug: str, hash8: str) -> str:
    """A W&B display name: what differs and the hash (runs that differ in a key of the label only still
    differ in their name); the slug where nothing differs (a single run)."""
    return f"{text(label)} {hash8}" if label else f"{slug}-{hash8}"


def wandb_tags(label: list[str], cfg: dict, given: list) -> list[str]:
    """The logger's own tags, then backbone, method and task, then each override that differs (W&B's
    filters find `apet.scale=4096` among a group's runs)."""
    names = [(cfg.get(part) or {}).get("name") for part in ("backbone", "method", "task")]
    tags = [str(t) for t in given] + [str(n) for n in names if n] + list(label)
    return list(dict.fromkeys(t[:TAG_CHARS] for t in tags if t))
