"""Resumable checkpoints: trainable weights, best weights, optimizer, scheduler, RNG, step and counters.

Tensors go to safetensors and everything else to JSON: no pickle is ever loaded. A checkpoint is written
into a temporary directory with a manifest (size and sha256 of every file), fsynced, renamed into place, and
read back against its manifest before older ones are dropped. The newest two are kept: when the newest is
found corrupt (a truncated file after a crash), a rerun warns and resumes from the one before. Writing the
checkpoint of a step that already has a sound one is a no-op (a save step and a cluster's signal can ask
for the same step twice).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save_file as _save_file
from torch import nn

from petsweep.model.params import method_tensors
from petsweep.spec.errors import reported_os_error
from petsweep.spec.identity import sha256_file

log = logging.getLogger("petsweep")
MANIFEST = "manifest.json"
KEEP = 2  # the newest checkpoint and the one before it (the fallback when the newest is corrupt)


def save_file(tensors: dict, path) -> None:
    """safetensors' save_file; where the disk takes no writes (full, read-only) it raises the OSError it
    reports, naming `path` (safetensors' own error names a temporary file, or nothing)."""
    try:
        _save_file(tensors, str(path))
    except Exception as err:
        reported = reported_os_error(err)
        if reported is None:
            raise
        raise OSError(reported.errno, reported.strerror, str(path)) from err


def _write_text(path: Path, text: str) -> None:
    """path.write_text, whose OSError on a full disk names no file: this one names `path`."""
    try:
        path.write_text(text)
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err


def trainable_state(model: nn.Module, keep: set[int] | None = None) -> dict[str, torch.Tensor]:
    """The method's state by name, detached on CPU (what a PET checkpoint holds): the tensors whose ids are in
    `keep` (every stage's parameters, trained now or frozen after their stage, and the method's buffers such
    as sampled positions), or by default the parameters being trained."""

    def chosen(tensor: torch.Tensor) -> bool:
        return (
            id(tensor) in keep
            if keep is not None
            else isinstance(tensor, nn.Parameter) and tensor.requires_grad
        )

    return {
        n: t.detach().to("cpu", copy=True).contiguous() for n, t in method_tensors(model).items() if chosen(t)
    }


def load_trainable(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved method state (parameters and buffers, by name) into the model."""
    tensors = method_tensors(model)
    missing = [n for n in state if n not in tensors]
    if missing:
        raise RuntimeError(f"checkpoint holds tensors the model lacks: {missing[:3]}")
    with torch.no_grad():
        for name, tensor in state.items():
            tensors[name].copy_(tensor)


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{slot}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{slot}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    np_state = np.random.get_state()
    meta = {"python": repr(random.getstate()), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    import ast

    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(ast.literal_eval(meta["python"]))
    kind, keys, *rest = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))


def save_extras(directory: Path, best: dict[str, torch.Tensor] | None, meta: dict) -> None:
    """What every checkpoint holds beside weights and optimizer: best weights, RNG states, counters."""
    if best is not None:
        save_file(best, directory / "best.safetensors")
    rng_tensors, rng_meta = _rng_state()
    save_file(rng_tensors, directory / "rng.safetensors")
    _write_text(directory / "state.json", json.dumps({**meta, "rng": rng_meta}, default=float))


def save_rank_rng(directory: Path, rank: int) -> None:
    """A rank other than 0 keeps its own RNG state beside rank 0's (its dropout masks are its own)."""
    tensors, meta = _rng_state()
    save_file(tensors, directory / f"rng-rank{rank}.safetensors")
    _write_text(directory / f"rng-rank{rank}.json", json.dumps(meta))


def restore_rank_rng(path: Path, rank: int) -> bool:
    """Restore rank `rank`'s RNG state; False when the checkpoint has none (saved by fewer ranks)."""
    tensors = path / f"rng-rank{rank}.safetensors"
    if not tensors.exists():
        return False
    _set_rng_state(load_file(tensors), json.loads((path / f"rng-rank{rank}.json").read_text()))
    return True


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(directory: Path) -> str | None:
    """None if every file matches the manifest, else what is wrong (no manifest: not trusted)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"no readable manifest ({type(err).__name__})"
    for name, (size, digest) in manifest.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{name}: missing or truncated"
        if sha256_file(path) != digest:
            return f"{name}: contents differ from the manifest"
    return None


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def begin(root: Path, step: int) -> Path | None:
    """A fresh temporary dir to write step `step` into; None when a sound checkpoint of it exists."""
    root.mkdir(parents=True, exist_ok=True)
    final = step_dir(root, step)
    if final.exists():
        if verify(final) is None:
            return None
        shutil.rmtree(final)  # a broken leftover of the same step: write it again
    tmp = root / f".step-{step:08d}.tmp{os.getpid()}"  # status.CHECKPOINT_TMP_GLOB: cleared on the next claim
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def commit(tmp: Path, root: Path, step: int) -> Path:
    """Manifest, fsync, rename into place, fsync the parent, read back; then drop all but the newest KEEP."""
    files = _files(tmp)
    manifest = {str(p.relative_to(tmp)): (p.stat().st_size, sha256_file(p)) for p in files}
    _write_text(tmp / MANIFEST, json.dumps(manifest, sort_keys=True))
    for path in [*files, tmp / MANIFEST, *sorted({p.parent for p in files}, reverse=True), tmp]:
        _fsync(path)
    final = step_dir(root, step)
    os.replace(tmp, final)
    _fsync(root)
    problem = verify(final)
    if problem is not None:
        raise OSError(f"checkpoint {final} did not read back: {problem}")
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save(
    root: Path,
    step: int,
    model,
    optimizer,
    scheduler,
    best: dict[str, torch.Tensor] | None,
    counters: dict,
    keep: set[int] | None = None,
) -> Path:
    """Write checkpoint `step-<step>` (module notes; `keep` as in trainable_state); returns its path."""
    tmp = begin(root, step)
    if tmp is None:
        return step_dir(root, step)
    try:
        write_into(tmp, step, model, optimizer, scheduler, best, counters, keep)
        return commit(tmp, root, step)
    except BaseException:  # a full disk, a signal: the half-written dir goes, the checkpoints before stay
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_into(tmp: Path, step: int, model, optimizer, scheduler, best, counters: dict, keep=None) -> None:
    """The files of a plain checkpoint, into the temporary dir `begin` made."""
    save_file(trainable_state(model, keep), tmp / "trainable.safetensors")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, tmp / "optimizer.safetensors")
    save_extras(
        tmp, best, {"step": step, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), **counters}
    )


def latest(root: Path) -> Path | None:
    """The newest sound checkpoint; a corrupt newer one is passed over with a warning."""
    found = sorted(root.glob("step-*"), reverse=True) if root.exists() else []
    for path in found:
        problem = verify(path)
        if problem is None:
            return path
        log.warning("checkpoint %s is corrupt (%s); falling back to the one before it", path, problem)
    return None


def saved_step(path: Path) -> int:
    """The step a checkpoint was saved at (read first: staged methods attach their stages, then restore)."""
    return json.loads((path / "state.json").read_text())["step"]


def restore_extras(path: Path) -> tuple[dict, dict[str, torch.Tensor] | None]:
    """Restore the RNG states; returns (state.json contents with step and counters, best weights or None)."""
    meta = json.loads((path / "state.json").read_text())
    _set_rng_state(load_file(path / "rng.safetensors"), meta["rng"])
    best_file = path / "best.safetensors"
    return meta, (load_file(best_file) if best_file.exists() else None)


def restore(path: Path, model, optimizer, scheduler) -> tuple[dict, dict[str, torch.Tensor] | None]:
    """Load a checkpoint into model, optimizer, scheduler and the RNGs (see restore_extras for the return)."""
    meta = json.loads((path / "state.json").read_text())
    load_trainable(model, load_file(path / "trainable.safetensors"))
    optimizer.load_state_dict(
        _unflatten_optimizer(load_file(path / "optimizer.safetensors"), meta["optimizer"])
    )
    scheduler.load_state_dict(meta["scheduler"])
    return restore_extras(path)
