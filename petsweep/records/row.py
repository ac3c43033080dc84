"""A run's row of the tidy table (`petsweep collect`: a row per run, config columns, metrics, counts, cost,
status), built from its files.

On the records floor, not in analysis/, so that both can build it (#25): a run that finishes writes its row
into its own sweep index line (index.record, the write that records COMPLETED or FAILED), and collect reads
it from there instead of the run's files; where no line holds it, collect builds it here from the files.
Method, budget and granularity are columns, never code paths, so runs of methods added later flow in.

`run` below is a petsweep.records.status.RunDir (its `path`, `status()`, `config()`), passed in rather than
built here: index.py imports this module and status.py imports index.py, so importing status.py here would
make a cycle.
"""

from __future__ import annotations

import json
from pathlib import Path

from petsweep.records.record import RunRecord

_SCALARS = RunRecord.scalar_keys()  # result.json's one-value fields, as columns


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, inner, out)
    else:
        out[prefix] = value  # a list stays a list (save/load keep it one in parquet and CSV)


# the config keys a backbone's depth is under, per model_type (petsweep.model.backbones._layer_override)
DEPTH_KEYS = {"t5": ("num_layers", "num_decoder_layers"), "bart": ("encoder_layers", "decoder_layers")}
DEPTH_KEYS.update(gpt2=("n_layer",), bloom=("n_layer",))


def _real_depth(config: dict, row: dict) -> None:
    """`depth`: the layers the run's backbone has. A backbone cut to its first layers (backbone.num_layers:
    minilm-l1..l3) keeps the full model's arch in its config: its arch columns take the real depth."""
    backbone = (config or {}).get("backbone") or {}
    keys = DEPTH_KEYS.get(backbone.get("model_type"), ("num_hidden_layers",))
    arch = backbone.get("arch") or {}
    cut = backbone.get("num_layers")
    for key in keys:
        if cut is not None and f"cfg.backbone.arch.{key}" in row:
            row[f"cfg.backbone.arch.{key}"] = cut
    row["depth"] = cut if cut is not None else arch.get(keys[0])


def _budget(result: dict) -> dict:
    """`budget.requested/target/achieved`: what `budget=` resolved to (result.json `budget`); an APET run's
    from its `apet` record (`budget=X` is its apet.scale=X: requested = the scale, target = K); else None."""
    budget = result.get("budget") or {}
    apet = result.get("apet") or {}
    if not budget and apet.get("scale") is not None:
        budget = {
            "requested": apet["scale"],
            "target": apet.get("requested"),
            "achieved": apet.get("achieved"),
        }
    return {f"budget.{key}": budget.get(key) for key in ("requested", "target", "achieved")}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _wandb_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def wandb_summary(run_dir: Path) -> dict:
    """The second source: the summary of the run's offline W&B run (where its result.json is missing)."""
    import subprocess
    import sys

    folders = _wandb_runs(run_dir)
    if not folders:
        return {}
    wandb = Path(sys.executable).with_name("wandb")
    out = subprocess.run(
        [str(wandb), "leet", "inspect", "--summary", "--json", str(folders[-1])],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return {}
    record = json.loads(out.stdout)
    return {**record.get("summary", {}), "config": record.get("config"), "source": "wandb"}


def run_row(run) -> dict:
    """One run as a flat dict: its result (if any), config as `cfg.*`, metrics as `test/*`, scores on other
    tasks as `transfer.<task>.*`, provenance. Its status as `petsweep status` reads it (a COMPLETED run whose
    result.json is missing or truncated is FAILED)."""
    result = _read_json(run.path / "result.json") or wandb_summary(run.path)
    return _row(run, result)


def line_row(run) -> dict | None:
    """The row a run's index line carries (run_row's), or None where run_row would take it from the run's
    W&B summary (no readable result.json): that summary may still change, and reading it starts a process."""
    result = _read_json(run.path / "result.json")
    if not result and _wandb_runs(run.path):
        return None
    return _row(run, result)


def _row(run, result: dict) -> dict:
    run_dir = run.path
    status = run.status() or {}
    row = {k: result.get(k) for k in _SCALARS}
    row.update(
        status=status.get("state", "UNKNOWN"),
        run_dir=str(run_dir),
        updated=status.get("updated"),
        source=result.get("source", "result.json" if result else None),
        fused_with=len(result.get("fused_with") or []),  # runs it trained beside (its times are the group's)
    )
    config = result.get("config") or run.config()
    _flatten("cfg", config, row)
    _real_depth(config, row)
    _flatten("data", {k: v for k, v in (result.get("data") or {}).items() if k != "label_map"}, row)
    row.update(_budget(result))
    # metric columns under the W&B summary's names (petsweep.train.tracking.wandb_summary): one naming
    for name, value in (result.get("metrics") or {}).items():
        row[f"test/{name}"] = value
    for name, value in (result.get("train_subset_metrics") or {}).items():
        row[f"train_subset/{name}"] = value
    if result.get("best_dev_score") is not None and result.get("metric"):
        row[f"eval/best_{result['metric']}"] = result["best_dev_score"]
    for path in sorted((run_dir / "transfer").glob("*.json")):  # written by `petsweep transfer`
        scored = _read_json(path)
        for key in ("score", "random_guess_score"):
            row[f"transfer.{path.stem}.{key}"] = scored.get(key)
    prov = _read_json(run_dir / "provenance.json")
    row.update(
        {"git_commit": prov.get("git_commit"), "git_dirty": prov.get("git_dirty"), "host": prov.get("host")}
    )
    if row["backbone"] is None and config:  # unfinished runs: identity from the config
        row.update(
            backbone=config["backbone"]["name"],
            method=config["method"]["name"],
            task=config["task"]["name"],
            seed=config.get("seed"),
        )
    return row
