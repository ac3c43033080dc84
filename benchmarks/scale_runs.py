"""Finished runs of a sweep in petsweep's layout, planned and written by the code on PYTHONPATH.

    PYTHONPATH=<tree> python benchmarks/scale_runs.py <record-template.json> <sweep overrides...>

benchmarks/scale_table.py runs it once per version it measures: each version names and configures the same
sweep's runs its own way (its config keys, its run ids), so each reads runs written by its own planner as its
own finished runs. Stdlib only at import: the petsweep it imports is the tree on PYTHONPATH, of any age.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time


def _planner():
    """plan, expand, compose and semantic_config of the code on the path (their homes moved over time)."""
    from launchers.expand import expand
    from launchers.planning import plan

    try:
        from petsweep.compose import compose
        from petsweep.model.resolve import semantic_config
    except ImportError:  # before the floors (#23)
        from petsweep.config import compose
        from petsweep.identity import semantic_config
    return plan, expand, compose, semantic_config


def write(template: dict, axes: list[str]) -> int:
    """Every planned run of `axes` as a finished run (status, record with every field, config, provenance,
    progress, metrics, log, heartbeat, claim lock, checkpoints/), named by its planned id."""
    import yaml

    plan, expand, compose, semantic_config = _planner()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    log_text = "".join(f"step {s} loss 1.2345 lr 0.0001 dev accuracy 0.5\n" for s in range(300))
    metrics = [{"step": s, "train_loss": 1.2345, "lr": 1e-4, "dev_accuracy": 0.5} for s in range(40)]
    metrics_text = "".join(json.dumps(row) + "\n" for row in metrics)
    runs = plan(expand(axes), compose)
    for i, run in enumerate(runs):
        run.path.mkdir(parents=True)
        (run.path / "checkpoints").mkdir()
        text = yaml.dump(run.cfg, Dumper=dumper, sort_keys=False)
        (run.path / "config.yaml").write_text(text)
        record = dict(template, score=0.5 + (i % 997) / 2000, seed=run.cfg["seed"])
        record.update(
            run_id=run.run_hash,
            method=run.cfg["method"]["name"],
            config=semantic_config(run.cfg),
            config_sha256=hashlib.sha256(text.encode()).hexdigest(),
            total_params=run.extra.get("total_params"),
            trainable_params=run.extra.get("trainable_params"),
        )
        (run.path / "result.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        provenance = {"git_commit": "0" * 40, "git_dirty": False, "host": "node-001", "python": "3.11"}
        (run.path / "provenance.json").write_text(json.dumps(provenance))
        progress = {"step": 400, "max_steps": 400, "dev_score": 0.55}
        (run.path / "progress.json").write_text(json.dumps(progress))
        (run.path / "metrics.jsonl").write_text(metrics_text)
        (run.path / "train.log").write_text(log_text)
        (run.path / "heartbeat").write_text(f"{time.time():.3f}")
        (run.path / ".claim.lock").write_text("")
        status = {"state": "COMPLETED", "host": "node-001", "pid": 4242, "updated": 1.7e9 + i}
        (run.path / "status.json").write_text(json.dumps(status) + "\n")
    return len(runs)


if __name__ == "__main__":
    with open(sys.argv[1]) as file:
        print(write(json.load(file), sys.argv[2:]))
