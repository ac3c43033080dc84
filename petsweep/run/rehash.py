"""`petsweep rehash`: move run dirs written under an older identity rule to the names the current rule gives.

A run dir is `<slug>-<hash12>` of its config. When the identity rule changes (say, backbone.resources stops
counting), a finished run would no longer be found under its config and would be trained again. Rehashing
reads each run's own config.yaml, computes its id under the current rule and renames the dir in place
(same sweep dir), so re-running the sweep finds it. result.json gets the new run_id and config, and keeps
the ids it had before (`previous_run_ids`); nothing else is rewritten.

A run is re-identified from what it was trained on, never from the files as they are now: local data files
count by the fingerprints result.json recorded at training time (its `config.task.files`). A run with local
data files is refused (left where it is, reported) when it recorded no content fingerprint for them (it never
finished, or a file was missing when it trained) or when a file it names is missing now. trainer.ranks=null
counts the ranks the run recorded (one before the field existed). A frozen_dtype=auto
run that recorded bf16 frozen weights (`backbone_dtype`; auto meant bf16 under precision=auto on GPUs before)
is identified as frozen_dtype=bf16. A finished run whose config.yaml was edited after it finished (result.json
records the file's sha256) is refused: an edited copy never renames a record.

A run whose new name is already taken (say, the sweep ran again under the new rule) is moved aside into
`<sweep>/.invalidated/<time>/` like `petsweep invalidate` does, with the reason in invalidated.json, so a
sweep dir never holds two run dirs of one identity.

It lives on the run floor (it was records/rehash.py): a record's id is computed as a run's is
(petsweep.model.resolve.run_hash), and the id of a config with `budget=` holds what the budget chose,
counted on the meta device.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from pathlib import Path

import yaml

from petsweep.model.resolve import run_hash, semantic_config
from petsweep.records import index
from petsweep.records.status import COMPLETED, INVALIDATED_DIR, RunDir, new_aside_batch, write_json
from petsweep.spec.errors import ConfigError, PetsweepError
from petsweep.spec.identity import run_slug

log = logging.getLogger("petsweep")


def run_dirs_under(root: Path) -> list[Path]:
    """Every run dir (a dir holding status.json and config.yaml) at or below `root`."""
    root = Path(root)
    return sorted(
        p.parent
        for p in root.rglob("status.json")
        if (p.parent / "config.yaml").exists() and INVALIDATED_DIR not in p.parts  # moved aside: history
    )


# why a run whose recorded config the current checks refuse has no identity here (one made by older code)
UNIDENTIFIED = "its recorded config is refused by this code's checks, so its identity is unchecked"


class Refused(Exception):
    """A run that cannot be re-identified from its records; the message says why."""


def recorded_identity(path: Path, result: dict | None = None) -> dict:
    """The run's config with what it was trained on put in from its records (data fingerprints, the frozen
    dtype it held); raises Refused where the records do not say. `result`: its result.json, where read."""
    result = (result if result is not None else RunDir(path).result()) or {}
    record = RunDir(path)
    if not record.config_file.exists():
        raise Refused("it has no config.yaml")
    config = record.config()
    edited = edited_config(record, config, result)
    if edited is not None:  # the record (result.json) outranks the copy a person can edit
        raise Refused(edited)
    files = (config.get("task") or {}).get("files")
    if isinstance(files, dict) and any(files.values()):
        recorded = ((result.get("config") or {}).get("task") or {}).get("files")
        if not isinstance(recorded, dict):
            raise Refused("no data fingerprints recorded (the run never finished); rerun it")
        missing = [str(name) for name in files.values() if name and not Path(str(name)).expanduser().exists()]
        if missing:
            raise Refused(f"data file(s) missing: {', '.join(missing)}")
        for split, name in files.items():
            if name and not str(recorded.get(split, "")).startswith("sha256:"):
                raise Refused(f"task.files.{split}: no content fingerprint recorded: {recorded.get(split)!r}")
        # semantic_config keeps a fingerprint as it is (no file has that name)
        config["task"]["files"] = {
            split: recorded.get(split) if name else name for split, name in files.items()
        }
    trainer = config.setdefault("trainer", {})
    if trainer.get("ranks") is None and result:  # what ran, not what the backbone's GPUs would start now
        trainer["ranks"] = result.get("ranks", 1)  # records from before trainer.ranks: one rank
    if trainer.get("frozen_dtype") == "auto" and result.get("backbone_dtype") == "bfloat16":
        if result.get("deepspeed") in (None, "none"):  # DeepSpeed's bf16 mode holds every weight in bf16
            trainer["frozen_dtype"] = "bf16"
    return config


def edited_config(record: RunDir, config: dict, result: dict) -> str | None:
    """Why the finished run's config.yaml (parsed: `config`) is not what it trained, or None: its sha256 is
    not the one result.json recorded, or (records from before config_sha256) a value differs from
    result.json's own config."""
    if not result:
        return None
    sha = result.get("config_sha256")
    if sha is not None:
        if hashlib.sha256(record.config_file.read_bytes()).hexdigest() == sha:
            return None
        return "config.yaml was changed after the run finished (its sha256 is not result.json's)"
    edited = _disagreement(config, result.get("config"))
    return None if edited is None else f"config.yaml was changed after the run finished ({edited})"


def recorded_config(record: RunDir) -> dict:
    """The run's config as it trained: config.yaml, with result.json's recorded values in place of those a
    person changed after the run finished (invalidate selects by this)."""
    config, result = record.config(), record.result()
    if result and edited_config(record, config, result) is not None:
        _overlay(config, result.get("config") or {})
    return config


def _overlay(config: dict, recorded: dict) -> None:
    for key, value in recorded.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            _overlay(config[key], value)
        elif key != "files":  # data files are recorded by fingerprint, config.yaml names them
            config[key] = value


def _disagreement(config: dict, recorded: dict | None, where: str = "") -> str | None:
    """The first value config.yaml holds otherwise than the finished run's own record of its config (the
    identity it computed: values as they were, keys the rule of its day kept), e.g. `method.r 4, recorded
    8`; None where every recorded value is config.yaml's. Local data files are compared by fingerprint."""
    for key, value in (recorded or {}).items():
        dotted = f"{where}{key}"
        if dotted == "task.files" or not isinstance(config, dict) or key not in config:
            continue
        mine = config[key]
        if isinstance(value, dict):
            found = _disagreement(mine, value, f"{dotted}.")
            if found is not None:
                return found
        elif not _same_value(mine, value):
            return f"{dotted} {mine!r}, recorded {value!r}"
    return None


def _same_value(a, b) -> bool:
    numbers = (int, float)
    if (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return float(a) == float(b)
    return a == b


def stale_record(path: Path, solve: bool = True) -> str | None:
    """Why the record in run dir `path` is not of the identity the dir is named for, or None where it is (or
    where its records cannot say: rehash refuses those too). A record made by an older petsweep can sit
    under the id a request now gets while it computed something else: between trainer.frozen_dtype and
    its identity rule, frozen_dtype=auto held bf16 frozen weights under bf16 compute (precision=auto on a
    GPU), and such a record answered fp32 requests. Its recorded identity (recorded_identity: frozen dtype,
    ranks, data fingerprints) says what it did.

    A record whose config.yaml was edited after it finished, or no longer parses, keeps its name and is
    reused (result.json is the record; the dir was named for what it trained), with one warning naming it.
    Answers are kept per state of result.json and config.yaml (_checked): a plan and its launcher ask once
    each.

    `solve=False` (the commands that only read records: `petsweep status`, `show`): the id of a record made
    with `budget=` holds what the budget solver chooses under the current code, counted on the meta device
    (torch, the methods); such a record is not checked and index.UNCHECKED is returned (never a cached
    answer of a full check's kind: the index keeps no `stale` for it, so a plan, a launcher and `petsweep
    rehash`, which load the solver anyway, check it in full before it is reused or renamed)."""
    return identity_check(path, solve)[0]


def identity_check(path: Path, solve: bool = True) -> tuple[str | None, str | None]:
    """stale_record's answer and what its check warned of (config.yaml edited or unparsable under a record
    that is still used; None where nothing): the sweep index's IdentityCheck (it keeps both, so a plan read
    from the index warns again), given by the writer of a COMPLETED status and by the readers that check."""
    path = Path(path)
    return _checked(str(path), _stamp(path / "result.json"), _stamp(path / "config.yaml"), solve)


_WARNED: set[tuple[str, str]] = set()


def warn_record(path: Path | str, why: str) -> None:
    """The one warning of a finished run whose config.yaml disagrees with its record (which is used): once
    per run and reason in a process, whether its files said it (_stale) or its index entry did (R37 F6:
    status and invalidate answered from the index said nothing)."""
    if (str(path), why) in _WARNED:
        return
    _WARNED.add((str(path), why))
    log.warning("petsweep: %s: %s; its result.json is the record and is used", path, why)


@functools.cache
def _checked(path: str, result_stamp: tuple, config_stamp: tuple, solve: bool) -> tuple:
    """_stale, memoised per run dir, state (mtime, size) of its result.json and config.yaml, and `solve`: the
    answer is that of those files under the code this process runs (every write petsweep makes renames a new
    file in; an edit moves the mtime), and the warning it gives is logged once per state."""
    return _stale(Path(path), solve)


def _stamp(file: Path) -> tuple[int, int]:
    try:
        stat = file.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


def _stale(path: Path, solve: bool = True) -> tuple[str | None, str | None]:
    """(stale_record's answer, the warning it gave: None where none)."""
    result = RunDir(path).result() or {}
    try:
        config = recorded_identity(path, result)
    except yaml.YAMLError as err:
        why = f"config.yaml does not parse ({type(err).__name__})"
        if result:
            warn_record(path, why)
            return None, why
        return None, None
    except Refused as why:
        if result and "config.yaml" in str(why):
            warn_record(path, str(why))
            return None, str(why)
        return None, None
    except (OSError, ValueError):
        return None, None
    if not solve and config.get("budget") is not None:
        return index.UNCHECKED, None
    try:
        name = f"{run_slug(config)}-{run_hash(config)[:12]}"
    except ConfigError as err:  # not shown to be this run, so not reused; and one record stops no command
        return f"{UNIDENTIFIED}: {err}", None
    if name == path.name:
        return None, None
    facts = ", ".join(f"{k} {result[k]}" for k in ("backbone_dtype", "ranks") if result.get(k) is not None)
    return f"its record is of run {name} ({facts or 'by its recorded config'}), not of {path.name}", None


def reusable_result(path: Path) -> dict | None:
    """The record that answers a request for run dir `path` instead of training it: its result where the run
    is COMPLETED with a readable result.json of this very identity; else None. Where an executing process
    decides "skip if COMPLETED" (app.execute's before_claim, for solo runs and fused members alike); the
    plan applies the same test (COMPLETED, and stale_record finds it of this identity) to pick what to
    launch (launchers.planning.run_status, or the index's answer of it), and each run it launches is asked
    here again, since a run may finish between the plan and its start. A COMPLETED record of
    another identity (stale_record) is never reused: under the claim lock it is moved to its own id, as
    `petsweep rehash` would (aside into .invalidated where that id is taken), with one line; the request is
    then trained. Where its own id is being trained the request is refused in one line."""
    run = RunDir(path)
    result = run.result() if run.state() == COMPLETED else None
    if result is None:
        return None
    if stale_record(path) is None:  # memoised (_checked): a plan and its launcher ask once each
        return result
    with run.locked():
        why = stale_record(path) if run.state() == COMPLETED else None
        if why is None:  # moved or retrained while we waited for the lock
            return run.result() if run.state() == COMPLETED else None
        what, where, note = rehash_run(path)
    if what == "refused":
        raise PetsweepError(f"{path}: {why}, and cannot be moved now ({note}); run `petsweep rehash` later")
    moved = f"moved aside to {where}" if what == "taken" else f"moved to {where.name}"
    log.warning("petsweep: %s: %s (made by an older petsweep): %s; this run is trained", path, why, moved)
    return None


def rehash_run(path: Path, dry_run: bool = False) -> tuple[str, Path, str]:
    """Returns (what happened: same | moved | taken | refused, the dir's current, would-be or moved-aside
    path, why when refused or taken)."""
    try:
        config = recorded_identity(path)
    except Refused as why:
        plain_config = RunDir(path).config()
        if path.name == f"{run_slug(plain_config)}-{run_hash(plain_config)[:12]}":
            return "same", path, ""  # already named by the current rule and files: nothing to move
        return "refused", path, str(why)
    digest = run_hash(config)
    target = path.parent / f"{run_slug(config)}-{digest[:12]}"
    if target == path:
        return "same", path, ""
    if target.exists():
        holder = RunDir(target)
        if holder.is_live():
            return "refused", path, f"{target.name} holds this identity and is being trained: rehash later"
        if RunDir(path).state() == COMPLETED and holder.state() != COMPLETED:
            # a finished result outranks an unfinished attempt at the same identity: that one goes aside
            if dry_run:
                return "moved", target, f"{target.name} (unfinished) would be moved aside"
            _move_aside(target, f"rehash: {path.name} holds a finished run of this identity")
        else:
            if dry_run:
                return "taken", target, f"{target.name} holds this identity: would be moved aside"
            aside = _move_aside(
                path, f"rehash: {target.name} holds this run's identity under the current rule"
            )
            return "taken", aside, f"{target.name} holds this identity: moved aside"
    if dry_run:
        return "moved", target, ""
    path.rename(target)
    record = RunDir(target)
    result = record.result()
    if result and result.get("run_id") != digest:
        previous = [*result.get("previous_run_ids", []), result.get("run_id")]
        write_json(
            record.result_file,
            {**result, "run_id": digest, "config": semantic_config(config), "previous_run_ids": previous},
        )
    _rename_in_marker(path.parent, path.name, target.name)
    return "moved", target, ""


def _move_aside(path: Path, reason: str) -> Path:
    """Move a run dir into <sweep>/.invalidated/<time>/ (as `petsweep invalidate` does), reason recorded."""
    batch = new_aside_batch(path.parent)
    aside = batch / path.name
    path.rename(aside)
    write_json(
        batch / "invalidated.json",
        {"when": time.time(), "reason": reason, "state": "all", "runs": [path.name]},
    )
    _rename_in_marker(path.parent, path.name, None)
    return aside


def _rename_in_marker(sweep_dir: Path, old: str, new: str | None) -> None:
    marker = sweep_dir / "sweep.json"
    if not marker.exists():
        return
    data = json.loads(marker.read_text())
    data["runs"] = sorted({new if name == old else name for name in data.get("runs", [])} - {None})
    labels = data.get("labels") or {}
    if old in labels:  # what tells the run apart (petsweep.records.labels) follows it to its new name
        label = labels.pop(old)
        if new is not None:
            labels[new] = label
    write_json(marker, data)


def rehash(roots: list[str | Path], dry_run: bool = False) -> list[tuple[Path, str, Path, str]]:
    """Rehash every run dir under `roots`; returns (old path, what happened, new path, why) per run."""
    done = []
    for root in roots:
        for path in run_dirs_under(Path(root)):
            if RunDir(path).is_live():
                done.append((path, "live", path, ""))  # a running process owns it: never move it
                continue
            try:
                with RunDir(path).locked():  # a sweep claiming it waits (and one that claimed it keeps it)
                    if RunDir(path).is_live():
                        done.append((path, "live", path, ""))
                        continue
                    done.append((path, *rehash_run(path, dry_run)))
            except yaml.YAMLError as err:  # refused alone; the others go on
                done.append((path, "refused", path, f"config.yaml does not parse ({type(err).__name__})"))
            except ConfigError as err:  # an old record a check added since refuses: alone too (R review F3)
                done.append((path, "refused", path, f"{UNIDENTIFIED}: {err}"))
    return done
