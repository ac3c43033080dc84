"""W&B mirror, offline: the test reads back what wandb wrote (with wandb's own reader)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.records.status import COMPLETED, RunDir
from petsweep.run.app import run

WANDB = str(Path(sys.executable).with_name("wandb"))


def _inspect(run_path: Path, *flags: str):
    [offline] = sorted((run_path / "wandb").glob("offline-run-*"))
    out = subprocess.run(
        [WANDB, "leet", "inspect", "--json", *flags, str(offline)], capture_output=True, text=True, check=True
    )
    return out.stdout


def test_wandb_offline_mirror_holds_the_run(tiny):
    cfg = compose(tiny("encoder", "logger=wandb"))
    result = run(cfg)
    path = RunDir(run_dir(cfg)).path
    summary = json.loads(_inspect(path, "--summary"))
    assert (
        summary["run_id"] == result["run_id"]
    )  # W&B id = run hash: a resumed run continues the same W&B run
    assert summary["state"] == "finished" and summary["config"]["method"]["name"] == "lora"
    assert summary["summary"]["score"] == result["score"]
    assert summary["summary"]["trainable_params"] == result["trainable_params"]
    history = [
        json.loads(line)["history"]["item"] for line in _inspect(path).splitlines() if '"history"' in line
    ]
    local = [json.loads(line) for line in RunDir(run_dir(cfg)).metrics_file.read_text().splitlines()]
    assert [h["_step"] for h in history] == [r["step"] for r in local] == [3, 6]
    assert [h["eval/accuracy"] for h in history] == [r["dev_accuracy"] for r in local]
    assert [("train/loss" in h) for h in history] == [False, True]  # every log_every (10) steps, and the last
    assert summary["summary"]["test/f1"] == result["metrics"]["f1"]  # every test metric, not only the score
    assert summary["summary"]["test/accuracy"] == result["score"]
    assert summary["name"].endswith(result["run_id"][:8])  # runs differing in lr alone differ


def test_wandb_failure_never_fails_the_run(tiny):
    cfg = compose(tiny("encoder", "logger=wandb", "logger.wandb.mode=not-a-mode"))
    result = run(cfg)
    assert result["status"] == COMPLETED and RunDir(run_dir(cfg)).state() == COMPLETED
    assert RunDir(run_dir(cfg)).metrics_file.exists()


def test_sync_takes_only_finished_runs(tiny, tmp_path):
    import pytest

    from launchers.wandb_sync import offline_runs, sync

    done = compose(tiny("encoder", "logger=wandb", "sweep_name=study"))
    run(done)
    nan = compose(tiny("encoder", "logger=wandb", "sweep_name=study", "method.lr=1e30"))
    with pytest.raises(FloatingPointError):
        run(nan)
    sweep = RunDir(run_dir(done)).path.parent
    folders = offline_runs(sweep)
    assert len(folders) == 1 and RunDir(run_dir(done)).path in folders[0].parents
    assert list((RunDir(run_dir(nan)).path / "wandb").glob("offline-run-*"))  # the failed run has one too
    [(folder, code, output)] = sync(sweep, parallel=2, dry_run=True)
    assert code == 0 and folder == folders[0], output
