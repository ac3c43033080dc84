"""`method.init_from`: start a run from a finished run's trained weights (sequential studies, transfer,
prompt initialisation), and what `trainer.eval_only` evaluates.

The source is a run directory, or a run id (a prefix of at least 8 characters) found under the runs root.
Its pet_weights.safetensors (the selected weights: the method's and a trained head's) are copied into the
parameters of the new run that have the same name and shape; at least one of the new method's own
parameters must be among them, or the runs are not of one method and nothing is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from petsweep.model.params import method_tensors
from petsweep.records.retention import MARKER, pruned, weights_gone
from petsweep.records.status import visible
from petsweep.spec.errors import ConfigError

WEIGHTS = "pet_weights.safetensors"


def resolve_source(value: str, runs_root: str | Path) -> Path:
    """The finished run `value` names (a run dir, or a run id prefix under runs_root), or one clear error."""
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / WEIGHTS).exists():
            raise ConfigError("method.init_from", value, _no_weights(path))
        return path
    if len(value) < 8 or any(ch not in "0123456789abcdef" for ch in value.lower()):
        raise ConfigError(
            "method.init_from",
            value,
            "give a finished run's directory, or its run id (8+ hex characters of result.json's run_id)",
        )
    found = [p.parent for p in _runs_holding(runs_root, WEIGHTS) if _run_id(p.parent).startswith(value)]
    if not found:  # a finished run whose weights trainer.keep=records removed: say so
        gone = [p.parent for p in _runs_holding(runs_root, MARKER) if _run_id(p.parent).startswith(value)]
        if len(gone) == 1:
            raise ConfigError("method.init_from", value, _no_weights(gone[0]))
    if len(found) != 1:
        what = (
            "no finished run" if not found else f"{len(found)} runs ({', '.join(p.name for p in found[:3])})"
        )
        raise ConfigError("method.init_from", value, f"matches {what} under {runs_root}")
    return found[0]


def _runs_holding(runs_root: str | Path, name: str) -> list[Path]:
    """The files `name` of the runs under a runs root (<root>/<sweep>/<run>/<name>), hidden dirs skipped as
    every listing of runs skips them (records.status.run_dirs; R37 W5: a sweep copied aside as `.old` made a
    run id match twice here)."""
    return [p for p in Path(runs_root).glob(f"*/*/{name}") if visible(p.parent, 2)]


def _no_weights(run_dir: Path) -> str:
    """Why a run dir has no weights to start from: removed by trainer.keep=records, or not finished."""
    if pruned(run_dir) is not None:
        return weights_gone(run_dir)
    return f"that run has no {WEIGHTS}: it has not finished"


def _run_id(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "result.json").read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return ""


def load_into(model: nn.Module, method_params: list[nn.Parameter], source: Path, value: str) -> dict:
    """Copy the source run's weights into `model`; returns what was loaded (recorded in result.json)."""
    state = load_file(source / WEIGHTS)
    params = method_tensors(model)  # parameters and buffers (a method's state, e.g. sampled positions)
    fits = {n: t for n, t in state.items() if n in params and params[n].shape == t.shape}
    ours = {id(p) for p in method_params}
    if not any(id(params[n]) in ours for n in fits):
        other = next((n for n, t in state.items() if n in params and params[n].shape != t.shape), None)
        if other is not None:  # one method's names, other shapes: its settings differ
            raise ConfigError(
                "method.init_from",
                value,
                f"its weights have this method's names in other shapes ({other}: "
                f"{tuple(state[other].shape)} there, {tuple(params[other].shape)} here): the runs' method "
                f"settings that shape them differ (e.g. prefix's length, projection or placement)",
            )
        raise ConfigError(
            "method.init_from",
            value,
            f"its weights ({len(state)} tensors, e.g. {next(iter(state))}) "
            f"hold none of this method's parameters",
        )
    with torch.no_grad():
        for name, tensor in fits.items():
            params[name].copy_(tensor)
    return {
        "source": str(source),
        "run_id": _run_id(source),
        "tensors": len(fits),
        "skipped": sorted(set(state) - set(fits)),
    }
