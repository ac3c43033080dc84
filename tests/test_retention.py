"""trainer.keep and petsweep prune/du (#25, "Cost of a run's own files at scale"): what a finished run keeps
on disk, never removed before COMPLETED, ids unchanged; what needs removed files says so in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, crash_after_second_save, run_cli

from analysis.load import collect
from launchers.report import status_rows
from petsweep.compose import compose
from petsweep.model.resolve import resolve_run, run_dir, run_hash
from petsweep.records import index, retention
from petsweep.records.status import COMPLETED, FAILED, RunDir
from petsweep.run.app import run
from petsweep.run.group import run_group
from petsweep.spec.errors import ConfigError, PetsweepError
from petsweep.spec.identity import plain

RECORDS = {"status.json", "result.json", "config.yaml", "provenance.json", "metrics.jsonl", "train.log"}
COMPARED = ("score", "metrics", "train_subset_metrics", "best_step", "best_dev_score", "steps", "tokens")


def _files(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_trainer_keep_is_not_part_of_the_identity_and_bad_values_are_one_line():
    for keep in retention.KEEPS:
        assert run_hash(compose([f"trainer.keep={keep}"]))[:12] == "9deb1d1591df"  # the default job
    says = r"trainer.keep='none': choose one of: checkpoints, weights, records"
    with pytest.raises(ConfigError, match=says):
        resolve_run(compose(["trainer.keep=none"]))


def test_each_setting_leaves_exactly_the_files_it_promises(tiny, tmp_path):
    dirs, results = {}, {}
    for keep in retention.KEEPS:
        cfg = compose(tiny("encoder", f"trainer.keep={keep}", f"paths.runs_root={tmp_path}/{keep}"))
        results[keep] = run(cfg)
        dirs[keep] = RunDir(run_dir(cfg))
        assert dirs[keep].state() == COMPLETED
    assert len({d.path.name for d in dirs.values()}) == 1  # one identity whatever it keeps
    assert len({json.dumps({k: r[k] for k in COMPARED}) for r in results.values()}) == 1  # the same numbers
    everything, weights, records = (_files(dirs[k].path) for k in retention.KEEPS)
    # the default keeps what it kept before: the newest two checkpoints and the selected weights
    assert {"checkpoints/step-00000003", "pet_weights.safetensors"} <= everything
    assert "pruned.json" not in everything
    assert weights == {f for f in everything if not f.startswith("checkpoints")} | {"pruned.json"}
    assert records == weights - {"pet_weights.safetensors"}
    assert RECORDS <= records
    marker = retention.pruned(dirs["records"].path)
    assert marker["keep"] == "records" and marker["by"] == "trainer.keep=records"
    assert marker["removed"] == ["checkpoints", "pet_weights.safetensors"] and marker["bytes"] > 0
    # a finished run asked for again is answered from its record, pruned or not
    again = run(compose(tiny("encoder", "trainer.keep=records", f"paths.runs_root={tmp_path}/records")))
    assert again == results["records"]
    # R37 F7: the prune moved the run dir after its COMPLETED index line; the line is written again, so
    # status and collect read no run's files
    for keep in retention.KEEPS:
        index.READS.clear()
        assert status_rows(dirs[keep].path.parent)[0]["state"] == COMPLETED
        assert len(collect([dirs[keep].path.parent])) == 1 and dict(index.READS) == {}, keep


def test_a_run_that_fails_keeps_its_checkpoints_and_resumes_then_is_pruned(tiny, tmp_path, monkeypatch):
    cfg = compose(tiny("encoder", "trainer.keep=records", "trainer.max_steps=9"))
    crash_after_second_save(cfg, monkeypatch)
    path = RunDir(run_dir(cfg))
    assert path.state() == FAILED and retention.pruned(path.path) is None
    assert {p.name for p in path.checkpoints.iterdir()} == {"step-00000003", "step-00000006"}
    run(cfg)
    assert "resumed from step-00000006" in (path.path / "train.log").read_text()
    assert path.state() == COMPLETED and not path.checkpoints.exists()
    assert not (path.path / "pet_weights.safetensors").exists()


KILL_BEFORE_PRUNING = """
import os, signal, sys
from petsweep.records import retention
from petsweep.run.app import run
from petsweep.compose import compose

def killed(*args, **kwargs):  # the process dies right after COMPLETED is recorded, before any pruning
    os.kill(os.getpid(), signal.SIGKILL)

retention.apply = killed
run(compose(sys.argv[1:]))
"""


@pytest.mark.parametrize("finish", ["rerun", "prune"])
def test_a_kill_between_the_record_and_the_pruning_leaves_a_finished_run_that_is_pruned_later(
    tiny, tmp_path, finish
):
    args = tiny("encoder", "trainer.keep=weights")
    died = subprocess.run([sys.executable, "-c", KILL_BEFORE_PRUNING, *args], cwd=REPO, capture_output=True)
    assert died.returncode == -9, died.stderr[-2000:]
    cfg = compose(args)
    path = RunDir(run_dir(cfg))
    assert path.state() == COMPLETED  # the record came first: nothing to train again
    assert path.checkpoints.is_dir() and (path.path / "pet_weights.safetensors").exists()
    recorded = path.result()
    if finish == "rerun":  # the same request again: answered from the record, and pruned as it asked
        assert run(cfg) == recorded
    else:  # petsweep prune with no --keep applies each run's own trainer.keep
        out = run_cli("-m", "petsweep.cli", "prune", str(path.path.parent))
        assert out.returncode == 0 and "from 1 of 1 runs (each run's own trainer.keep)" in out.stdout, out
    assert not path.checkpoints.exists() and (path.path / "pet_weights.safetensors").exists()
    assert path.state() == COMPLETED and path.result() == recorded
    assert "resumed from" not in (path.path / "train.log").read_text()


def test_fused_members_each_keep_what_they_asked_for(tiny, tmp_path):
    members = [
        compose(tiny("encoder", "method=lora", "backbone.dropout=0", f"seed={seed}", f"trainer.keep={keep}"))
        for seed, keep in ((1, "checkpoints"), (2, "weights"), (3, "records"))
    ]
    assert run_group([plain(cfg) for cfg in members]) == [0, 0, 0]
    kept = {}
    for cfg in members:
        path = RunDir(run_dir(cfg))
        assert len(path.result()["fused_with"]) == 2
        kept[cfg.trainer.keep] = (path.checkpoints.exists(), (path.path / "pet_weights.safetensors").exists())
    assert kept == {"checkpoints": (True, True), "weights": (False, True), "records": (False, False)}


def test_a_run_of_two_ranks_is_pruned_by_rank_0_once_it_is_recorded(tiny, tmp_path):
    out = run_cli("run.py", *tiny("encoder", "trainer.ranks=2", "trainer.keep=weights"))
    assert out.returncode == 0, out.stderr[-3000:]
    [path] = (tmp_path / "runs").glob("*/*/result.json")
    run_path = RunDir(path.parent)
    assert run_path.result()["ranks"] == 2 and run_path.state() == COMPLETED
    assert not run_path.checkpoints.exists() and (run_path.path / "pet_weights.safetensors").exists()
    assert retention.pruned(run_path.path)["keep"] == "weights"


def test_what_needs_removed_weights_says_so_in_one_line(tiny, tmp_path):
    cfg = compose(tiny("encoder", "trainer.keep=records"))
    recorded = run(cfg)
    path = run_dir(cfg)
    out = run_cli("-m", "petsweep.cli", "export", str(path), "-o", str(tmp_path / "exported"))
    assert out.returncode == 2 and out.stdout == "", out
    [line] = out.stderr.splitlines()
    assert "pet_weights.safetensors) were removed by trainer.keep=records" in line and "Traceback" not in line
    assert not (tmp_path / "exported").exists()
    for source in (str(path), recorded["run_id"][:12]):  # init_from by dir or by run id
        with pytest.raises(ConfigError, match=r"method.init_from=.*were removed by trainer.keep=records"):
            run(compose(tiny("encoder", f"method.init_from={source}", "seed=5")))
    from petsweep.run.transfer import evaluate_transfer

    with pytest.raises(PetsweepError, match="were removed by trainer.keep=records"):
        evaluate_transfer(path, "bbc_news")


def _disk(root: Path) -> int:
    """Allocated bytes of `root` and everything below it (du's count), by rglob."""
    return sum(os.lstat(p).st_blocks * 512 for p in [root, *root.rglob("*")]) if root.exists() else 0


def test_prune_dry_run_reports_bytes_and_removes_nothing_and_du_counts_every_byte(
    tiny, tmp_path, monkeypatch
):
    done = [compose(tiny("encoder", f"seed={seed}")) for seed in (0, 1)]
    for cfg in done:
        run(cfg)
    failed = RunDir(run_dir(compose(tiny("encoder", "seed=2"))))  # a run that is not finished: left alone
    failed.set_status(FAILED, error="a test")
    (failed.checkpoints / "step-00000003").mkdir(parents=True)
    (failed.checkpoints / "step-00000003" / "trainable.safetensors").write_bytes(b"x" * 1000)
    sweep = run_dir(done[0]).parent
    before = {p: p.stat().st_mtime_ns for p in sweep.rglob("*") if ".index" not in p.parts}
    checkpoints = sum(_disk(RunDir(run_dir(cfg)).checkpoints) for cfg in done)

    du = run_cli("-m", "petsweep.cli", "du", str(sweep), "--json")
    assert du.returncode == 0, du.stderr
    [usage] = json.loads(du.stdout)
    assert usage["runs"] == 3 and usage["holding"] == {"checkpoints": 3, "weights": 2}
    parts = usage["parts"]
    assert parts["checkpoints"]["disk"] == checkpoints + _disk(failed.checkpoints)
    assert parts["weights"]["disk"] == sum(_disk(run_dir(cfg) / "pet_weights.safetensors") for cfg in done)
    runs = [run_dir(cfg) for cfg in done] + [failed.path]
    assert sum(part["disk"] for part in parts.values()) == sum(_disk(path) for path in runs)
    assert sum(part["inodes"] for part in parts.values()) == sum(len([*p.rglob("*")]) + 1 for p in runs)
    text = run_cli("-m", "petsweep.cli", "du", str(sweep))
    assert "in 3 runs" in text.stdout and "checkpoints" in text.stdout, text

    dry = run_cli("-m", "petsweep.cli", "prune", str(sweep), "--keep", "weights", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would free {retention.human(checkpoints)} from 2 of 3 runs" in dry.stdout
    assert "1 not COMPLETED, left as they are" in dry.stdout
    assert {p: p.stat().st_mtime_ns for p in sweep.rglob("*") if ".index" not in p.parts} == before

    monkeypatch.setattr(index, "RACY_S", 0.0)  # what this process reads a moment after a write is stored
    status_rows(sweep)  # the index learns the failed run's checkpoints (they moved its dir after its line)
    real = run_cli("-m", "petsweep.cli", "prune", str(sweep), "--keep", "weights")
    assert f"freed {retention.human(checkpoints)} from 2 of 3 runs" in real.stdout, real
    index.READS.clear()
    assert len(status_rows(sweep)) == 3 and dict(index.READS) == {}  # each pruned run's line written again
    assert all(not RunDir(run_dir(cfg)).checkpoints.exists() for cfg in done)
    assert (failed.checkpoints / "step-00000003" / "trainable.safetensors").exists()  # its resume point
    assert (
        "would free 0 B from 0 of 3 runs"
        in run_cli("-m", "petsweep.cli", "prune", str(sweep), "--keep", "weights", "--dry-run").stdout
    )


def test_du_and_prune_import_no_torch(tmp_path):
    code = (
        "import sys; from petsweep.cli import main; main(sys.argv[1:])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    run_path = RunDir(tmp_path / "sweep" / "a-run")
    run_path.set_status(COMPLETED)
    for argv, says in (
        (["du", str(tmp_path / "sweep")], "in 1 runs"),
        (["prune", str(tmp_path / "sweep"), "--keep", "records", "--dry-run"], "would free 0 B from 0 of 1"),
    ):
        out = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True)
        assert out.returncode == 0 and says in out.stdout, out
