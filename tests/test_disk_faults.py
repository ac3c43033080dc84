"""Faults of the disk under a run (#22 item 9): a kill in the middle of a checkpoint write, a full disk, a
read-only runs root. Each is one clear line, the run in a truthful state, leftovers cleaned on the next
claim."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import TINY_NAMES, crash_after_second_save, run_cli, sweep_argv

from launchers.planning import run_status
from petsweep.compose import compose
from petsweep.model.resolve import run_dir, run_hash
from petsweep.records.status import COMPLETED, FAILED, RunDir, State
from petsweep.run.app import run
from petsweep.train import checkpoint

SAVES = ("trainer.max_steps=12", "trainer.eval_every=4", "trainer.save_every=4")


def test_a_checkpoint_dir_left_by_a_kill_mid_write_is_cleared_when_the_run_is_next_claimed(
    tiny, tmp_path, monkeypatch
):
    cfg = compose(tiny("encoder", *SAVES))
    crash_after_second_save(cfg, monkeypatch)
    record = RunDir(run_dir(cfg))
    # what a kill -9 in the middle of writing step 12 leaves: a temporary dir with a part of a file in it, and
    # a status write's temporary file
    leftover = record.checkpoints / ".step-00000012.tmp999999"
    leftover.mkdir()
    (leftover / "trainable.safetensors").write_bytes(b"\0" * 1000)
    half_status = record.path / ".status.json.999999.tmp"
    half_status.write_text('{"state": "RUN')
    run(cfg)
    assert not leftover.exists() and not half_status.exists()
    assert list(record.checkpoints.glob(".step-*")) == []
    assert "resumed from step-00000008" in (record.path / "train.log").read_text()
    assert record.state() == COMPLETED


def test_a_checkpoint_write_that_fails_leaves_no_temporary_dir(tiny, tmp_path, monkeypatch):
    """A write that raises (a full disk) removes its own temporary dir; the checkpoints before it stay."""
    cfg = compose(tiny("encoder", *SAVES))
    real_write, writes = checkpoint.write_into, []

    def write_then_fail(tmp, step, *args, **kwargs):
        writes.append(step)
        real_write(tmp, step, *args, **kwargs)
        if step == 8:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_into", write_then_fail)
    with pytest.raises(OSError):
        run(cfg)
    record = RunDir(run_dir(cfg))
    assert writes == [4, 8] and record.state() == FAILED
    assert [p.name for p in record.checkpoints.iterdir()] == ["step-00000004"]


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root may mount one here; a full disk cannot be had otherwise without a skip)."""
    mounted = []

    def make(name: str) -> Path:
        root = tmp_path / name
        root.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], check=True)
        mounted.append(root)
        return root

    yield make
    for root in mounted:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _fill(root: Path, leave: int) -> Path:
    fs = os.statvfs(root)
    filler = root / "filler"
    filler.write_bytes(b"x" * (fs.f_bavail * fs.f_frsize - leave))
    return filler


def _sweep(tiny_conf, root, *extra, axes=("method=lora,bitfit",)):
    return run_cli(*sweep_argv(tiny_conf, root, f"backbone={TINY_NAMES['encoder']}", *axes, *extra))


FUSED = ("method=lora", "seed=1,2", "backbone.dropout=0", "hydra.launcher.fuse=2")  # one group (no dropout)


@pytest.mark.parametrize(
    "leave, axes",
    [(64 * 1024, ("method=lora,bitfit",)), (8 * 1024, ("method=lora,bitfit",)), (64 * 1024, FUSED)],
    ids=["room-to-record", "no-room-at-all", "fused-group"],
)
def test_a_full_disk_fails_its_runs_in_one_line_each_and_a_rerun_finishes_them(
    tiny_conf, small_disk, leave, axes
):
    """64 KiB free: the first run's checkpoint does not fit (its temporary dir goes, so FAILED fits); 8 KiB:
    nothing fits, the runs are left to read INTERRUPTED (no live process behind them). Never a traceback,
    never a run that reads RUNNING; once there is room the same sweep finishes both. A fused group's
    members say the same (safetensors' own error for a full disk was a FAILED line without the path)."""
    root = small_disk("runs")
    filler = _fill(root, leave)
    out = _sweep(tiny_conf, root, axes=axes)
    said = out.stdout + out.stderr
    assert out.returncode == 1 and "Traceback" not in said, said[-3000:]
    runs = sorted((root / "study").glob("tiny-bert-*"))
    states = {run.name: run_status(run) for run in runs}
    assert states and not {State.RUNNING, State.COMPLETED} & set(states.values()), states
    if leave > 8 * 1024 and axes != FUSED:  # a group's members may find no room left to record FAILED
        lora = next(run for run in runs if "lora" in run.name)
        assert states[lora.name] == State.FAILED
        assert "No space left on device" in RunDir(lora).status()["error"]
    lines = [x for x in out.stdout.splitlines() if x.startswith("[")]
    assert len(lines) == 2, lines
    if axes == FUSED:  # the two trained as one group (the review found them trained alone: dropout)
        [log] = list((root / "study" / ".launcher").rglob("fused-2-*.log")) or [None]
        assert log is not None, sorted(p.name for p in (root / "study" / ".launcher").rglob("*"))
        assert not any("SafetensorError" in x for x in lines), lines  # read as the OSError it reports
    for path in runs:  # each line says what its run's status says (FAILED where none could be written)
        [line] = [x for x in lines if path.name in x]
        word = "FAILED" if states[path.name] == State.NEW else states[path.name].value
        assert f" {word}: " in line, (line, states)
        assert "No space left" in line or "no space left" in line or "could not record" in line, line
    assert not list((root / "study").rglob(".*.tmp")) and not list((root / "study").rglob(".step-*"))

    filler.unlink()
    again = _sweep(tiny_conf, root, axes=axes)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert {run_status(run) for run in (root / "study").glob("tiny-bert-*")} == {State.COMPLETED}


def test_a_read_only_runs_root_is_one_line_naming_the_path(tiny_conf, tiny, small_disk):
    root = small_disk("runs")
    done = run_cli("run.py", *tiny("encoder", f"paths.runs_root={root}"))
    assert done.returncode == 0, done.stderr[-3000:]
    subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)

    single = run_cli("run.py", *tiny("encoder", f"paths.runs_root={root}", "seed=1"))
    assert single.returncode == 1 and "Traceback" not in single.stderr, single.stderr[-3000:]
    line = single.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot write {root}/") and "Read-only file system (EROFS)" in line

    sweep = _sweep(tiny_conf, root)
    assert sweep.returncode == 1 and "Traceback" not in sweep.stdout + sweep.stderr, sweep.stderr[-3000:]
    assert sweep.stderr.strip().splitlines()[-1].startswith(f"error: cannot write {root}/")

    # reading it still works: the finished run answers from its record
    reused = run_cli("run.py", *tiny("encoder", f"paths.runs_root={root}"))
    assert reused.returncode == 0 and "already COMPLETED" in reused.stdout, reused.stderr[-3000:]


OLD_RECORDS = Path(__file__).parent / "fixtures" / "old_records"


def _place_old_record(path: Path, backbone_dtype: str) -> dict:
    """The 1a02139 record of tiny LoRA (fp32 frozen weights) at `path`, as a commit between 7866834 and
    752a954 would have left it: config trainer.frozen_dtype=auto, and where it ran with bf16 compute
    (precision=auto on a GPU) backbone_dtype bfloat16."""
    folder = OLD_RECORDS / "1a02139" / "lora-encoder"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["trainer"]["frozen_dtype"] = "auto"
    record = json.loads((folder / "result.json").read_text())
    record.update(backbone_dtype=backbone_dtype, ranks=1)
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "result.json").write_text(json.dumps(record))
    (path / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))
    return record


def test_a_bf16_record_under_an_fp32_id_is_moved_to_its_own_id_and_the_request_is_trained(
    tiny, capsys, caplog
):
    """Review of 752a954: such a record's id is now the id of an fp32-frozen request, which it answered
    ('already COMPLETED') unless the user ran `petsweep rehash`. It is now moved to its own id (frozen_dtype
    bf16) with one line, and the request trains; the sweep's plan does not count it as done either."""
    cfg = compose(tiny("encoder"))
    path = run_dir(cfg)
    record = _place_old_record(path, "bfloat16")
    assert run_hash(cfg) == record["run_id"]  # what made it answer the fp32 request
    assert run_status(path) == State.NEW  # a sweep launches it

    fresh = run(cfg)
    out = capsys.readouterr()
    assert "already COMPLETED" not in out.out
    [line] = [r.getMessage() for r in caplog.records if "its record is of run" in r.getMessage()]
    assert "backbone_dtype bfloat16" in line and "this run is trained" in line
    assert fresh["backbone_dtype"] == "float32" and fresh["run_id"] == record["run_id"]
    bf16 = run_hash(compose(tiny("encoder", "trainer.frozen_dtype=bf16")))  # precision=auto, on a GPU
    [moved] = [p for p in path.parent.iterdir() if p.is_dir() and p != path and p.name != ".index"]
    assert moved.name.endswith(bf16[:12]) and RunDir(moved).result()["previous_run_ids"] == [record["run_id"]]
    # the fresh fp32 run is what the 1a02139 record computed (frozen_dtype=fp32 reproduces it)
    assert fresh["metrics"] == pytest.approx(record["metrics"], abs=1e-6)


def test_a_record_that_did_what_its_id_says_is_still_reused(tiny, capsys):
    cfg = compose(tiny("encoder"))
    record = _place_old_record(run_dir(cfg), "float32")
    assert run_status(run_dir(cfg)) == State.COMPLETED
    assert run(cfg)["score"] == record["score"]
    assert "already COMPLETED" in capsys.readouterr().out


def test_a_long_error_keeps_its_reason_in_the_sweep_line():
    """A full disk's error names the file (a long path under a deep runs root), why, and what to do: the sweep
    line shortens the path and cuts the advice's middle, never the reason (it read 'cannot write
    /tmp/.../pet_initial.safetensors.tmp: No …' under pytest's xdist paths)."""
    from launchers.progress import _one_line

    error = (
        f"cannot write /tmp/{'deep/' * 40}run-1/pet_initial.safetensors.tmp: No space left on device "
        "(ENOSPC); "
        "free some space or give another paths.runs_root, then run the same command again (finished runs "
        "are kept, the others resume)"
    )
    line = _one_line(error)
    assert len(line) == 160 and line.endswith("the others resume)"), line
    assert line.startswith("cannot write …/run-1/pet_initial.safetensors.tmp: No space left on device"), line
    assert _one_line("a short\nerror in /a/b/c/d/e") == "a short error in /a/b/c/d/e"
