"""Faults of the disk under a run (#22 item 9): a kill in the middle of a checkpoint write, a full disk, a
read-only runs root. Each is one clear line, the run in a truthful state, leftovers cleaned on the next
claim."""

from __future__ import annotations

import pytest

from petsweep import checkpoint
from petsweep.app import run
from petsweep.config import compose
from petsweep.identity import run_dir
from petsweep.status import COMPLETED, FAILED, RunDir

SAVES = ("trainer.max_steps=12", "trainer.eval_every=4", "trainer.save_every=4")


def _crash_after_second_save(cfg, monkeypatch) -> None:
    real_save, saves = checkpoint.save, []

    def save_then_crash(*args, **kwargs):
        saves.append(real_save(*args, **kwargs))
        if len(saves) == 2:
            raise KeyboardInterrupt("simulated kill after the second checkpoint")
        return saves[-1]

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(checkpoint, "save", real_save)


def test_a_checkpoint_dir_left_by_a_kill_mid_write_is_cleared_when_the_run_is_next_claimed(
    tiny, tmp_path, monkeypatch
):
    cfg = compose(tiny("encoder", *SAVES))
    _crash_after_second_save(cfg, monkeypatch)
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
