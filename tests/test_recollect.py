"""A re-collect patches the last collect's table (analysis/collected.py, #25): it reads only the runs changed
since, and its table equals a collect from the run dirs cell by cell, whatever changed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from analysis import collected
from analysis.load import _cached_row, collect
from launchers.invalidate import invalidate
from launchers.report import read_info
from petsweep.records import index
from petsweep.records.status import RunDir, write_json
from tests.test_index import _config, _result, from_files, make_sweep


@pytest.fixture(autouse=True)
def _index_on(monkeypatch):
    monkeypatch.setenv(index.ENV, "1")
    monkeypatch.setattr(index, "RACY_S", 0.0)  # files written a moment ago are kept too


def recollect(sweep):
    """collect([sweep]) with what it read from run files and how it got its table."""
    index.READS.clear()
    collected.USED.clear()
    table = collect([sweep])
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    return dict(index.READS), dict(collected.USED)


@pytest.fixture
def sweep(tmp_path):
    made = make_sweep(tmp_path / "study", 30)
    assert recollect(made)[1] == {"built": 1}
    return made


def rerun(sweep, name: str, **changes) -> None:
    run = RunDir(sweep / name)  # rewritten as a run writes them (renamed in)
    write_json(run.result_file, {**run.result(), **changes})


def test_nothing_changed_keeps_the_table(sweep):
    assert recollect(sweep) == ({}, {"kept": 1})


def test_a_changed_run_is_read_alone_and_patched_in(sweep):
    rerun(sweep, "run-000", score=0.99, steps=77)
    rerun(sweep, "run-007", score=None)  # a missing score in a float column: still float64
    assert recollect(sweep) == ({"row": 2}, {"patched": 1})
    assert recollect(sweep) == ({}, {"kept": 1})


def test_a_run_added_and_a_run_removed(sweep):
    shutil.copytree(sweep / "run-006", sweep / "run-006b")  # a run dir copied in
    shutil.rmtree(sweep / "run-013")
    assert recollect(sweep) == ({"row": 1}, {"patched": 1})


def test_invalidated_runs_leave_the_table(sweep):
    assert invalidate(sweep, ["method.r=2"])  # moved aside
    assert recollect(sweep) == ({}, {"patched": 1})


def test_a_run_edited_behind_the_index(sweep):
    result = sweep / "run-006" / "result.json"  # edited in place: the file's mtime moves, not the dir's
    edited = {**json.loads(result.read_text()), "score": 0.123}
    with result.open("w") as fh:
        json.dump(edited, fh)
    assert recollect(sweep) == ({"row": 1}, {"patched": 1})


def test_a_column_typed_otherwise_builds_the_table_anew(sweep):
    rerun(sweep, "run-000", steps="many")  # ints and a str: the column becomes object
    assert recollect(sweep) == ({"row": 1}, {"built": 1})
    rerun(sweep, "run-000", steps=5)  # and back to int64: the kept column is object
    assert recollect(sweep) == ({"row": 1}, {"built": 1})
    (sweep / "run-001" / "transfer").mkdir()  # a new column: a score on another task
    write_json(sweep / "run-001" / "transfer" / "x.json", {"score": 0.7})
    os.utime(sweep / "run-001")  # what petsweep.run.transfer does after writing
    assert recollect(sweep) == ({"row": 1}, {"built": 1})


def test_the_kept_table_deleted_or_the_index_rebuilt(sweep):
    for kept in (sweep / index.INDEX_DIR).glob("collect-*.pkl"):
        kept.unlink()
    assert recollect(sweep) == ({}, {"built": 1})  # rows from the manifest
    index.rebuild(sweep)
    assert recollect(sweep)[1] == {"built": 1}


def test_a_run_changed_after_a_compaction_comes_from_the_manifest(sweep):
    rerun(sweep, "run-006", score=0.5)
    write_json(RunDir(sweep / "run-003").result_file, _result(3, _config(3)))
    snapshot = index.Snapshot(sweep, compute={"row": _cached_row})  # as collect reads it
    snapshot.row_columns()
    snapshot.compact()  # their new rows folded into the manifest; the kept table is older
    assert recollect(sweep) == ({}, {"patched": 1})


@contextlib.contextmanager
def _opening_run_files(sweep, opened: Counter):
    """Path.read_text and read_bytes (how records are read) counting each file read inside a run dir of the
    sweep, by file name."""
    with pytest.MonkeyPatch.context() as patch:
        for method in ("read_text", "read_bytes"):
            read = getattr(Path, method)

            def counted(self, *args, _read=read, **kwargs):
                if self.parent.parent == sweep:
                    opened[self.name] += 1
                return _read(self, *args, **kwargs)

            patch.setattr(Path, method, counted)
        yield


def finish_again(run: RunDir, state: str = "COMPLETED", **changes) -> None:
    """A run trained again, as a run leaves it: result.json renamed in, then its state through RunDir (which
    writes its index line, with its collected row)."""
    write_json(run.result_file, {**run.result(), **changes})
    if state == "COMPLETED":
        run.set_status(state)
    else:
        run.set_status(state, error="ValueError: boom")


def test_runs_that_finish_again_are_patched_in_from_their_own_index_lines(sweep):
    """#25: a re-collect read each changed run's files (~1 ms a run: 10 s for 1% of 10^6 runs); a run's own
    index line now carries its row, written when it finishes, so a re-collect opens none of its files and
    still equals a collect from the run dirs."""
    changed = {"run-000": 0.91, "run-006": 0.92, "run-013": None, "run-025": 0.94}
    for name, score in changed.items():
        finish_again(RunDir(sweep / name), score=score, steps=321)
    finish_again(RunDir(sweep / "run-012"), "FAILED", score=0.5)  # a run that fails, its result.json kept
    index.READS.clear()
    collected.USED.clear()
    opened: Counter = Counter()
    with _opening_run_files(sweep, opened):
        table = collect([sweep])
    assert opened == {} and dict(index.READS) == {}  # no run file read, neither by the index nor the patch
    assert dict(collected.USED) == {"patched": 1}
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    assert table.set_index("run_dir").loc[str(sweep / "run-000"), "score"] == 0.91
    assert recollect(sweep) == ({}, {"kept": 1})


def test_a_run_given_its_dir_by_another_path_collects_as_its_files(sweep, monkeypatch):
    """The row a run writes names its run dir as the run was given it (here relative to its working dir):
    a collect by another path to the sweep names it as it would from the files."""
    monkeypatch.chdir(sweep.parent)
    finish_again(RunDir(Path(sweep.name) / "run-001"), score=0.77)
    line = [json.loads(t) for f in (sweep / index.INDEX_DIR).glob("*.jsonl") for t in f.read_text().split()]
    assert json.loads(line[-1]["row"])["run_dir"] == f"{sweep.name}/run-001"
    assert recollect(sweep) == ({}, {"patched": 1})


def test_a_line_without_a_row_is_read_from_the_files(sweep):
    """Runs whose lines carry no row: a W&B summary's row (it may change; reading it starts a process), a
    line of code from before rows were written (another fingerprint), a finished run edited after its
    line: each read from its files, as before."""
    (sweep / "run-002" / "wandb" / "offline-run-1").mkdir(parents=True)
    RunDir(sweep / "run-002").set_status("FAILED", error="killed")  # no result.json: its row is W&B's
    lines = [json.loads(t) for f in (sweep / index.INDEX_DIR).glob("*.jsonl") for t in f.read_text().split()]
    assert lines[-1]["run"] == "run-002" and "row" not in lines[-1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index, "fingerprint", lambda: "older code")  # its line's fingerprint
        finish_again(RunDir(sweep / "run-007"), score=0.61)
    finish_again(RunDir(sweep / "run-018"), score=0.62)
    result = sweep / "run-018" / "result.json"  # then edited in place: the line's signature is not the run's
    edited = {**json.loads(result.read_text()), "score": 0.63}
    with result.open("w") as fh:
        json.dump(edited, fh)
    reads, used = recollect(sweep)
    assert reads == {"row": 3} and used == {"patched": 1}


def test_a_few_runs_with_many_lines_are_not_folded_at_every_collect(sweep):
    """Lines pile up by runs, not lines (index.piled, the rule `status` reads by too): a run trained again
    writes two or three lines, so 1% of a sweep trained again rewrote the whole manifest at every collect
    (a compaction: 4.1 of 11.2 s at 10^5). Three runs with 1,200 lines between them are read from their
    lines; lines of more runs than the threshold are folded."""
    manifest = sweep / ".index" / index.MANIFEST
    written = manifest.stat().st_ino
    for _ in range(200):
        for name in ("run-000", "run-006", "run-012"):
            RunDir(sweep / name).set_status("RUNNING")
            finish_again(RunDir(sweep / name), score=0.25)
    assert recollect(sweep) == ({}, {"patched": 1})
    assert manifest.stat().st_ino == written  # the lines were read, not folded
    for i in range(1001):  # runs claimed after the manifest, each its line: more runs than the threshold
        RunDir(sweep / f"new-{i:04d}").set_status("CANCELLED", error="cancelled by a signal")
    recollect(sweep)
    assert manifest.stat().st_ino != written


class _Payload:
    """A pickle that runs code when loaded: makes a dir (R37 F4's PWNED)."""

    def __init__(self, where: str):
        self.where = where

    def __reduce__(self):
        return (os.mkdir, (self.where,))


def test_a_kept_file_another_user_could_write_is_never_unpickled(sweep, monkeypatch):
    """R37 F4/F5: the kept table is a pickle, and unpickling runs the code it names: one another user wrote,
    or could change (group- or world-writable), is not loaded and collect builds the table anew; a pickle
    that is not a kept table (an int) does not crash collect."""
    import pickle

    kept = next((sweep / ".index").glob("collect-*.pkl"))
    assert kept.stat().st_mode & 0o777 == 0o644
    marker = sweep.parent / "PWNED"
    kept.write_bytes(pickle.dumps(_Payload(str(marker))))
    for mode in (0o664, 0o646):
        kept.chmod(mode)
        assert recollect(sweep) == ({}, {"built": 1}) and not marker.exists()
        kept.write_bytes(pickle.dumps(_Payload(str(marker))))
    kept.chmod(0o644)
    monkeypatch.setattr(collected.os, "geteuid", lambda: os.getuid() + 1)  # as another user reads it
    assert recollect(sweep) == ({}, {"built": 1}) and not marker.exists()
    monkeypatch.undo()
    monkeypatch.setenv(index.ENV, "1")
    monkeypatch.setattr(index, "RACY_S", 0.0)
    kept.write_bytes(pickle.dumps(7))
    kept.chmod(0o644)
    assert recollect(sweep) == ({}, {"built": 1})  # no AttributeError
    assert recollect(sweep) == ({}, {"kept": 1})  # and the rebuilt one is used


def test_a_sweep_keeps_its_few_most_recently_used_tables(sweep, tmp_path, monkeypatch):
    """R37 F10: every path a sweep was collected by (relative, through a link, with another sweep) kept a
    whole table for ever (~650 MB each at 10^6 runs). The most recently used KEPT_PER_SWEEP stay."""
    other = make_sweep(tmp_path / "other", 3)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alias").symlink_to(sweep)
    first = sorted((sweep / ".index").glob("collect-*.pkl"))
    for paths in ([Path("study")], [tmp_path / "alias"], [sweep, other], [Path("alias")]):
        collect(paths)
    assert len(list((sweep / ".index").glob("collect-*.pkl"))) == collected.KEPT_PER_SWEEP
    assert not first[0].exists()  # the least recently used went
    assert recollect(Path("alias")) == ({}, {"kept": 1})  # the newest is still used


def test_no_record_is_written_through_a_link_planted_at_a_temporary_name(sweep):
    """R37 W4: records, the manifest and the kept table were written through temporary files of names
    anyone could guess (`.status.json.<pid>.tmp`, `.collect-<key>.pkl.<host>-<pid>.tmp`): in a shared
    (group-writable) dir, a link planted there made petsweep overwrite another file of the user's. They are
    now created anew (O_EXCL) under unguessable names, never through a link."""
    import socket

    victim = sweep.parent / "victim.txt"
    victim.write_text("mine")
    me = f"{socket.gethostname()}-{os.getpid()}"
    kept = next((sweep / ".index").glob("collect-*.pkl")).name
    planted = [
        sweep / "run-000" / f".status.json.{os.getpid()}.tmp",
        sweep / ".index" / f".{kept}.{me}.tmp",
        sweep / ".index" / f".{index.MANIFEST}.{me}.tmp",
    ]
    for link in planted:
        link.symlink_to(victim)
    RunDir(sweep / "run-000").set_status("CANCELLED", error="cancelled by a signal")
    rerun(sweep, "run-006", score=0.25)
    recollect(sweep)  # patches and keeps the table
    index.Snapshot(sweep, read_info=None).compact()
    assert victim.read_text() == "mine" and not (sweep / ".index" / kept).is_symlink()


def _no_stat_pass(*args, **kwargs):
    raise AssertionError("collect --quick stat'ed every run")


def quick_recollect(sweep, monkeypatch) -> tuple[pd.DataFrame, dict, int]:
    """collect([sweep], quick=True) with how it got its table and how many run dirs it stat'ed (no scan)."""
    stats: Counter = Counter()
    signature = index.signature

    def counted(path):
        stats[path] += 1
        return signature(path)

    collected.USED.clear()
    with monkeypatch.context() as patch:
        patch.setattr(index, "scan", _no_stat_pass)
        patch.setattr(index, "signature", counted)
        table = collect([sweep], quick=True)
    return table, dict(collected.USED), sum(stats.values())


def test_quick_recollect_stats_no_run_and_equals_the_files_after_own_writes(sweep, monkeypatch):
    """`collect --quick` (#25: at 10^6 runs, 3 stats a run were a third of a re-collect): the runs changed
    since come from their newest index lines (runs that finished, failed or were claimed again), a run dir
    added or removed from a listing (the sweep dir's mtime moved); no other run is stat'ed or read, and the
    table is the one a collect from the run dirs gives."""
    for name, score in {"run-000": 0.91, "run-013": None}.items():
        finish_again(RunDir(sweep / name), score=score, steps=321)
    finish_again(RunDir(sweep / "run-012"), "FAILED", score=0.5)
    RunDir(sweep / "run-019").set_status("CANCELLED", error="cancelled by a signal")  # a line without a row
    shutil.copytree(sweep / "run-006", sweep / "run-006b")  # no line: found by the listing, stat'ed
    shutil.rmtree(sweep / "run-025")
    opened: Counter = Counter()
    index.READS.clear()
    with _opening_run_files(sweep, opened):
        table, used, stats = quick_recollect(sweep, monkeypatch)
    assert used == {"patched": 1} and stats <= 3  # run-006b, and run-019 signing its repair line
    assert dict(index.READS) == {"row": 2}  # run-006b (no line) and run-019 (its line holds no row)
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    table, used, stats = quick_recollect(sweep, monkeypatch)
    assert (used, stats) == ({"kept": 1}, 0)
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))


def test_quick_misses_only_what_a_stat_sees_and_a_verified_collect_catches_up(sweep, monkeypatch):
    """The trade the flag names: a result.json edited in place, or a run rewritten by a process that writes
    no index line (PETSWEEP_INDEX=0), is not seen by --quick; the next collect without it reads both, and a
    quick collect after that has them too."""
    result = sweep / "run-006" / "result.json"
    edited = {**json.loads(result.read_text()), "score": 0.123}
    with result.open("w") as fh:
        json.dump(edited, fh)
    monkeypatch.setenv(index.ENV, "0")
    finish_again(RunDir(sweep / "run-000"), score=0.456)  # no line written
    monkeypatch.setenv(index.ENV, "1")
    table, used, _ = quick_recollect(sweep, monkeypatch)
    assert used == {"kept": 1} and not table["score"].isin([0.123, 0.456]).any()
    assert recollect(sweep) == ({"row": 2}, {"patched": 1})
    table, used, stats = quick_recollect(sweep, monkeypatch)
    assert (used, stats) == ({"kept": 1}, 0) and table["score"].isin([0.123, 0.456]).sum() == 2


def test_quick_without_an_index_to_trust_stats_every_run(tmp_path, monkeypatch):
    """No manifest of this code yet (a sweep written before the index, or by other code): --quick reads as a
    collect without it does, and builds the index."""
    sweep = make_sweep(tmp_path / "study", 8)
    collected.USED.clear()
    pd.testing.assert_frame_equal(collect([sweep], quick=True), from_files(collect, [sweep]))
    assert collected.USED == {"built": 1} and (sweep / index.INDEX_DIR / index.MANIFEST).exists()
    with monkeypatch.context() as patch:
        patch.setattr(index, "fingerprint", lambda: "other code")
        patch.setattr(index, "scan", _no_stat_pass)
        with pytest.raises(AssertionError, match="stat'ed every run"):
            collect([sweep], quick=True)


def test_collect_quick_says_whether_the_index_answered(tmp_path, capsys):
    """The command names the trade under its line, and says when a sweep's index could not answer alone."""
    from petsweep import cli

    sweep = make_sweep(tmp_path / "runs" / "study", 6)
    out = tmp_path / "t.parquet"
    cli.main(["collect", str(sweep), "-o", str(out), "--quick"])
    note = capsys.readouterr().out.splitlines()[-1]  # no manifest yet
    assert note.startswith("(--quick: the index of 1 of 1 sweeps could not answer alone")
    assert "others" not in note
    assert note.endswith(f"their runs' files were checked; first: {sweep})")
    cli.main(["collect", str(sweep), "-o", str(out), "--quick"])
    assert capsys.readouterr().out.splitlines()[-1] == cli.QUICK_COLLECTED
    pd.testing.assert_frame_equal(pd.read_parquet(out), from_files(collect, [sweep]).pipe(_as_saved, out))
    later = make_sweep(tmp_path / "runs" / "later", 3)  # a runs root: one sweep's index answers, one cannot
    cli.main(["collect", str(tmp_path / "runs"), "-o", str(out), "--quick"])
    note = capsys.readouterr().out.splitlines()[-1]
    assert note.startswith("(--quick: the index of 1 of 2 sweeps could not answer alone")
    assert note.endswith(f"the others' as their indexes say; first: {later})")


def _as_saved(table: pd.DataFrame, out: Path) -> pd.DataFrame:
    from analysis import save

    save(table, out.with_name("files.parquet"))
    return pd.read_parquet(out.with_name("files.parquet"))


def test_a_quick_read_never_pairs_a_fresh_stat_with_an_older_lines_state(sweep, monkeypatch):
    """R39 Z1: a run cancelled (a line without a row), then finished by a process that wrote no line: --quick
    trusts the CANCELLED line and reads the row from the files; its repair line paired a fresh stat with
    CANCELLED, so a later verified `status` and a resume's entry said CANCELLED where status.json says
    COMPLETED."""
    run = RunDir(sweep / "run-018")
    run.set_status("CANCELLED", error="cancelled by a signal")
    monkeypatch.setenv(index.ENV, "0")
    finish_again(run, score=0.777)  # no line: what --quick does not see
    monkeypatch.setenv(index.ENV, "1")
    quick_recollect(sweep, monkeypatch)
    snapshot = index.Snapshot(sweep, read_info=read_info)
    assert snapshot.entry("run-018")["state"] == "COMPLETED"
    snapshot.compact()
    assert index.Snapshot(sweep, read_info=read_info).entry("run-018")["state"] == "COMPLETED"


def test_a_line_older_than_the_manifests_entry_does_not_answer(sweep, monkeypatch):
    """R39 Z2: a fold leaves a line file that grew while it folded, so lines older than the new manifest
    outlive it; --quick took them over the manifest, so a result.json a verified read had caught up (written
    without a line) went back to the line's row under every --quick."""
    finish_again(RunDir(sweep / "run-000"), score=0.61)
    result = RunDir(sweep / "run-000").result_file
    write_json(result, {**json.loads(result.read_text()), "score": 0.62})  # no line (as rehash writes it)
    fold = index.Snapshot.compact

    def grown_while_folding(self):
        RunDir(sweep / "run-024").set_status("CANCELLED", error="cancelled by a signal")  # the same line file
        return fold(self)

    with monkeypatch.context() as patch:
        patch.setattr(index.Snapshot, "compact", grown_while_folding)
        patch.setattr(index, "piled", lambda *args: True)
        collect([sweep])  # a verified read: reads run-000's files, folds; the line file stays
    assert list((sweep / index.INDEX_DIR).glob("*.jsonl"))
    table = quick_recollect(sweep, monkeypatch)[0]
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    assert table.set_index("run_dir").loc[str(sweep / "run-000"), "score"] == 0.62


def test_a_fold_replaces_only_the_manifest_it_read(sweep, monkeypatch):
    """R39 Z3: a run finished (with its line) while a quick read was under way and another reader folded it;
    the quick read's own fold then wrote its older, trusted entry over it: every --quick missed the run."""
    finish_again(RunDir(sweep / "run-006"), score=0.5)
    read_manifest = index.Snapshot._read_manifest
    raced = []

    def meanwhile(self):
        if self.quick and not raced:
            raced.append(True)
            finish_again(RunDir(sweep / "run-000"), score=0.999)
            other = index.Snapshot(sweep, compute={"row": _cached_row}, read_info=read_info)
            other.compact()  # another reader folds it
        return read_manifest(self)

    with monkeypatch.context() as patch:
        patch.setattr(index.Snapshot, "_read_manifest", meanwhile)
        patch.setattr(index, "piled", lambda *args: True)
        collect([sweep], quick=True)  # its fold is dropped: the manifest is not the one it read
    table = quick_recollect(sweep, monkeypatch)[0]
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    assert table.set_index("run_dir").loc[str(sweep / "run-000"), "score"] == 0.999


@pytest.mark.parametrize("sig", [[5], [], ["a", "b"], list(range(9)), [1.5] * 8, None, [10**30] * 8])
def test_a_line_with_a_damaged_signature_is_no_line(sweep, monkeypatch, sig):
    """R39 Z6: a line of this code whose signature is not 8 integers crashed --quick (IndexError,
    TypeError); it is skipped, as a verified read skips it (no run's stat matches it)."""
    line = {"run": "run-001", "sig": sig, "t": 1.0, "state": "FAILED", "fp": index.fingerprint()}
    (sweep / index.INDEX_DIR / "damaged-1-1.jsonl").write_text(json.dumps(line) + "\n")
    pd.testing.assert_frame_equal(quick_recollect(sweep, monkeypatch)[0], from_files(collect, [sweep]))


def test_a_line_of_other_code_with_another_signature_length_is_stat_ed(sweep, monkeypatch):
    """R39 W1: signatures grew from 6 to 8 fields once; a worker on an older commit writes 6. Its line says
    the run changed: both quick reads stat the run, not skip the line as damaged."""
    monkeypatch.setenv(index.ENV, "0")
    RunDir(sweep / "run-006").set_status("FAILED", error="ValueError: on the old worker")
    monkeypatch.setenv(index.ENV, "1")
    sig = index.signature(str(sweep / "run-006"))
    for other in (sig[:6], (*sig, 0)):
        line = {"run": "run-006", "sig": list(other), "t": 1.0, "state": "FAILED", "fp": "older code"}
        (sweep / index.INDEX_DIR / "oldnode-1-1.jsonl").write_text(json.dumps(line) + "\n")
        pd.testing.assert_frame_equal(quick_recollect(sweep, monkeypatch)[0], from_files(collect, [sweep]))


def test_a_run_dir_restored_with_older_mtimes_is_caught_up_by_the_next_verified_collect(sweep, monkeypatch):
    """R39 W2: a run dir replaced under its name by a copy keeping its older mtimes (cp -p, rsync -a from a
    backup): the failed attempt's line outranked every later repair line and manifest entry, so --quick
    showed it through any number of verified collects. A verified read that finds such a line folds (a fold
    drops the line files it read); --quick itself does not see the restore (a stat would)."""
    backup = sweep.parent / "backup"
    shutil.copytree(sweep / "run-006", backup / "run-006", copy_function=shutil.copy2)
    shutil.copystat(sweep / "run-006", backup / "run-006")
    finish_again(RunDir(sweep / "run-006"), "FAILED", score=0.11)  # tried again, failed: a newer line
    assert quick_recollect(sweep, monkeypatch)[1] == {"patched": 1}  # the kept table: FAILED
    shutil.rmtree(sweep / "run-006")
    shutil.copytree(backup / "run-006", sweep / "run-006", copy_function=shutil.copy2)
    shutil.copystat(backup / "run-006", sweep / "run-006")
    assert recollect(sweep)[1] == {"patched": 1}  # verified: reads the restored run, and folds
    table = quick_recollect(sweep, monkeypatch)[0]
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    assert table.set_index("run_dir").loc[str(sweep / "run-006"), "status"] == "COMPLETED"


def test_a_line_written_while_a_verified_read_runs_does_not_make_it_fold(sweep, monkeypatch):
    """R39 V1: a worker's line written between a verified read's stat pass and its read of the lines is
    newer than the stat it took: taken for a misleading line, it made a busy sweep fold at nearly every read
    (~4 s at 10^5 runs) and dropped that line's file. A run flagged is stat'ed again first."""
    manifest = sweep / index.INDEX_DIR / index.MANIFEST
    written = manifest.stat().st_ino
    read_lines = index.Snapshot._read_lines

    def after_the_scan(self):
        RunDir(sweep / "run-003").set_status("RUNNING")  # claimed again by a worker, its line written
        return read_lines(self)

    with monkeypatch.context() as patch:
        patch.setattr(index.Snapshot, "_read_lines", after_the_scan)
        collect([sweep])
    assert manifest.stat().st_ino == written  # no fold
    pd.testing.assert_frame_equal(quick_recollect(sweep, monkeypatch)[0], from_files(collect, [sweep]))


@pytest.mark.parametrize("name", [["run-001"], {"a": 1}, None, 7])
def test_a_line_whose_run_is_not_a_name_is_no_line(sweep, monkeypatch, name):
    """R39 V2: a damaged line whose "run" is a list or a dict crashed every read, for good."""
    line = {"run": name, "sig": [1] * 8, "t": 1.0, "state": "FAILED", "fp": index.fingerprint()}
    (sweep / index.INDEX_DIR / "damaged-1-1.jsonl").write_text(json.dumps(line) + "\n")
    pd.testing.assert_frame_equal(quick_recollect(sweep, monkeypatch)[0], from_files(collect, [sweep]))
    assert recollect(sweep)[1] in ({"kept": 1}, {"patched": 1})


def test_a_tie_of_a_line_and_a_later_folds_entry_goes_to_the_fold(sweep, monkeypatch):
    """R39 V3: result.json rewritten without a line within its line's clock tick (a coarse-mtime filesystem)
    ties the line by mtimes; where the line file keeps growing a fold cannot drop it, so every verified read
    folded and --quick kept the line. A tie goes to a manifest folded after the line was written."""
    finish_again(RunDir(sweep / "run-000"), score=0.61)
    run = sweep / "run-000"
    stamp = (run / "result.json").stat().st_mtime_ns
    result = RunDir(run).result_file
    write_json(result, {**json.loads(result.read_text()), "score": 0.615})  # no line
    os.utime(result, ns=(stamp, stamp))  # in the same clock tick as the line's
    os.utime(run, ns=(stamp, stamp))
    fold = index.Snapshot.compact

    def grown_while_folding(self):
        RunDir(sweep / "run-024").set_status("CANCELLED", error="cancelled by a signal")  # the same line file
        return fold(self)

    manifest = sweep / index.INDEX_DIR / index.MANIFEST
    with monkeypatch.context() as patch:
        patch.setattr(index.Snapshot, "compact", grown_while_folding)
        collect([sweep])  # folds (the tied line would mislead a quick read); the line file stays
        written = manifest.stat().st_ino
        collect([sweep])  # and not again: a quick read now takes the fold's entry
    assert manifest.stat().st_ino == written
    table = quick_recollect(sweep, monkeypatch)[0]
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    assert table.set_index("run_dir").loc[str(run), "score"] == 0.615


@pytest.mark.parametrize("chunk", [1, 4])
def test_a_fold_in_chunks_holds_the_rows_one_fold_holds(tmp_path, monkeypatch, chunk):
    """A first read of many runs folds their rows a chunk at a time (index.FOLD_CHUNK); a key whose cells
    are all None in one chunk, a float in another and an int in a third reads back as from the files."""
    sweep = make_sweep(tmp_path / "s", 12)
    for i, kind in ((0, None), (6, 7)):  # best_dev_score: None, an int, floats elsewhere
        run = RunDir(sweep / f"run-{i:03d}")
        write_json(run.result_file, {**run.result(), "best_dev_score": kind, "note": kind})
        run.set_status("COMPLETED")
    monkeypatch.setattr(index, "FOLD_CHUNK", chunk)
    collect([sweep])  # builds the manifest in chunks (and keeps its table)
    names = pq.read_schema(sweep / ".index" / index.MANIFEST).names
    assert "r:score" in names and "j:best_dev_score" in names  # typed where every chunk's cells are floats
    for kept in (sweep / ".index").glob("collect-*.pkl"):
        kept.unlink()  # the next collect reads every row from the manifest
    monkeypatch.setattr(index, "FOLD_CHUNK", index.BATCH)
    index.READS.clear()
    pd.testing.assert_frame_equal(collect([sweep]), from_files(collect, [sweep]))
    assert not index.READS["row"]  # every row came from the chunked manifest


def test_rows_read_from_files_are_held_packed_and_their_repair_lines_carry_them_whole(tmp_path):
    """A first read holds each row it read from a run's files deflated (index._Packed: a first collect held
    every run's row text until its fold) and builds its repair lines only when it appends them: they carry
    the rows the files give, and the next read takes its rows from them."""
    sweep = make_sweep(tmp_path / "s", 12)
    index.rebuild(sweep)  # no index: every row is read from its run's files
    snapshot = index.Snapshot(sweep, compute={"row": _cached_row})
    rows = dict(snapshot.iter_field("row"))
    held = [fields["row"] for fields in snapshot.fresh.values()]
    assert len(held) == len(rows) == 12 and all(isinstance(text, bytes) for text in held)
    snapshot.finish(compact=False)  # the repairs appended as lines, not folded
    lines = [json.loads(t) for f in (sweep / index.INDEX_DIR).glob("*.jsonl") for t in f.read_text().split()]
    assert {line["run"]: json.loads(line["row"]) for line in lines} == rows
    index.READS.clear()
    assert dict(index.Snapshot(sweep, compute={"row": _cached_row}).iter_field("row")) == rows
    assert not index.READS["row"]  # every row from the lines


def test_a_row_block_holds_equal_short_texts_as_one_object_and_orders_columns_by_first_rows():
    """Rows decoded one by one hold their own copy of every text: a block keeps one object per distinct short
    text or list of them (ids and paths, 64 characters and more, stay each row's); the columns' order is
    pd.DataFrame(rows)'s, from the first row of each layout."""
    block = index.RowBlock(5)
    rows = [
        {"method": "lora", "targets": ["qkv", "out"], "run_id": "f" * 64},
        {"method": "lora", "targets": ["qkv", "out"], "run_id": "f" * 64, "score": 0.5},
        {"method": "lora", "run_id": "e" * 64},
        {"task": "rte", "method": "lora", "targets": ["qkv", "out"], "run_id": "f" * 64, "score": 0.5},
        {"method": "ia3", "targets": ["ffn"], "run_id": "d" * 64, "score": 0.7},  # row 1's layout again
    ]
    rows[2]["targets"] = rows[4]["targets"] = ["x"] * (index.SHARED_ITEMS + 1)  # a run's own: too long
    for i, row in enumerate(json.loads(json.dumps(rows))):
        block.add_row(i, row)
    method, targets = block.columns["method"], block.columns["targets"]
    assert method[0] is method[1] is method[2] is method[3] and targets[0] is targets[1] is targets[3]
    assert targets[2] == targets[4] and targets[2] is not targets[4]
    assert block.keys() == list(pd.DataFrame(rows).columns)
    assert block.keys() == ["method", "targets", "run_id", "score", "task"]
    assert [at for at, _ in block.events] == [0, 1, 2, 3]  # (row 4 brings no key first)


@pytest.mark.parametrize("quick", [False, True])
def test_a_damaged_manifest_is_read_around_and_written_anew(sweep, quick):
    """A manifest damaged on disk (a flipped byte: review V crashed collect with pyarrow's error) is read
    around: rows come from the runs' files, and this read's fold writes a manifest the next read takes."""
    manifest = sweep / ".index" / index.MANIFEST
    data = bytearray(manifest.read_bytes())
    data[100] ^= 0xFF
    manifest.write_bytes(bytes(data))
    with pytest.raises(OSError):
        pq.read_table(manifest)  # damaged indeed
    for kept in (sweep / ".index").glob("collect-*.pkl"):
        kept.unlink()
    pd.testing.assert_frame_equal(collect([sweep], quick=quick), from_files(collect, [sweep]))
    pq.read_table(manifest)  # written anew
    assert recollect(sweep)[0] == {}  # and read: no run's files


def test_a_byte_flipped_anywhere_before_the_manifests_footer_never_changes_a_table_or_a_status(sweep):
    """Review W flipped every byte of a manifest: some crashed collect or status (a read or decoding
    error past the file's read), some read back as another value, for ever. Pages now carry a CRC
    (index.CHECKSUMS) and every read error reads the runs from their files; a flip in the footer's
    metadata (the schema, not checked) is left out. 200 bytes drawn at random, and 20 in a row."""
    import random

    from launchers.report import status_table

    manifest = sweep / ".index" / index.MANIFEST
    collect([sweep])  # folds: a manifest with its checksums (make_sweep's runs wrote lines)
    index.Snapshot(sweep, compute={"row": _cached_row}, read_info=read_info).compact()
    good = manifest.read_bytes()
    footer = len(good) - 8 - int.from_bytes(good[-8:-4], "little")
    table, status = from_files(collect, [sweep]), from_files(status_table, sweep)
    for at in [*random.Random(0).sample(range(4, footer), 200), *range(footer // 2, footer // 2 + 20)]:
        damaged = bytearray(good)
        damaged[at] ^= 0x01
        manifest.write_bytes(bytes(damaged))
        for kept in (sweep / ".index").glob("collect-*.pkl"):
            kept.unlink()
        assert status_table(sweep) == status, at
        pd.testing.assert_frame_equal(collect([sweep], quick=at % 2 == 0), table, obj=f"flip at {at}")


@pytest.mark.parametrize("damage", ["a column's name", "non_runs", "scanned_at", "no columns signature"])
def test_a_manifest_whose_footer_lies_is_read_as_none(sweep, damage):
    """The footer (schema, metadata) has no CRC: review X renamed `r:score` by one bit (every score NaN, for
    ever) and broke `non_runs` (collect --quick crashed). A manifest whose columns are not those it was
    written with, or whose metadata does not decode, is read as none: the runs' files answer, a fold writes
    it anew, and the next read takes it."""
    manifest = sweep / ".index" / index.MANIFEST
    index.Snapshot(sweep, compute={"row": _cached_row}, read_info=read_info).compact()  # a listing's metadata
    table = pq.read_table(manifest)
    meta = dict(table.schema.metadata)
    if damage == "a column's name":
        table = table.rename_columns(["r:scose" if n == "r:score" else n for n in table.column_names])
    elif damage == "no columns signature":
        del meta[b"columns"]
    else:
        meta[damage.encode()] = b"[}"
    pq.write_table(table.replace_schema_metadata(meta), manifest)
    for kept in (sweep / ".index").glob("collect-*.pkl"):
        kept.unlink()
    expected = from_files(collect, [sweep])
    pd.testing.assert_frame_equal(collect([sweep], quick=True), expected)
    pd.testing.assert_frame_equal(collect([sweep]), expected)
    assert recollect(sweep)[0] == {}  # written anew, and read


@pytest.mark.parametrize("window", ["_read_manifest", "row_columns"])
def test_a_fold_by_another_reader_while_collecting_moves_no_row_to_another_run(tmp_path, monkeypatch, window):
    """R40 U2/U3: another reader folds a new run that sorts first (every manifest row moves down one) after
    this reader found its runs' rows' positions (between a quick read's two manifest reads, or before the
    rows are read): each run still gets its own row, and nothing wrong is kept for the next collect."""
    from petsweep.run import rehash

    sweep = make_sweep(tmp_path / "s", 6)
    collect([sweep])
    collect([sweep])  # a manifest of this code
    for kept in (sweep / ".index").glob("collect-*.pkl"):
        kept.unlink()
    late = RunDir(sweep / "a-run-that-sorts-first")

    def other_reader_folds(original):
        def hooked(self, *args):
            if not late.path.exists():
                late.set_status("RUNNING")
                (late.path / "config.yaml").write_text(yaml.safe_dump(_config(0)))
                write_json(late.result_file, _result(0, _config(0)))
                late.set_status("COMPLETED", check=rehash.identity_check)
                index.Snapshot(sweep, compute={"row": _cached_row}).finish(compact=True)
            return original(self, *args)

        return hooked

    files = from_files(collect, [sweep]).set_index("run_dir")
    with monkeypatch.context() as patch:
        patch.setattr(index.Snapshot, window, other_reader_folds(getattr(index.Snapshot, window)))
        got = collect([sweep], quick=True).set_index("run_dir")
    assert len(got) == 6
    for column in ("run_id", "score", "status"):
        pd.testing.assert_series_equal(got[column], files.loc[got.index, column])
    files = from_files(collect, [sweep])
    pd.testing.assert_frame_equal(collect([sweep]), files)
    pd.testing.assert_frame_equal(collect([sweep], quick=True), files)


def test_collect_quick_without_the_index_says_so(tmp_path, capsys, monkeypatch):
    """PETSWEEP_INDEX=0: the table is every run's files, and the note says so (it raised KeyError: R40 U1)."""
    from petsweep import cli

    sweep = make_sweep(tmp_path / "s", 4)
    monkeypatch.setenv(index.ENV, "0")
    cli.main(["collect", str(sweep), "-o", str(tmp_path / "t.parquet"), "--quick"])
    note = capsys.readouterr().out.splitlines()[-1]
    assert note.startswith("(--quick: the index of 1 of 1 sweeps could not")


def test_a_snapshot_that_forgot_the_manifests_rows_folds_no_more(tmp_path, monkeypatch):
    """R40 T1: after its own fold (or a manifest it could not read again) a snapshot reads rows from files;
    a second fold of it would write every entry it forgot as empty. It is refused: the manifest stays."""
    monkeypatch.setattr(index, "RACY_S", 0.0)  # rows read now are kept (repair lines), as minutes later
    sweep = make_sweep(tmp_path / "s", 8)
    collect([sweep])
    collect([sweep])
    manifest = sweep / ".index" / index.MANIFEST
    run = RunDir(sweep / "run-000")  # finished; rewritten behind the index: this read repairs it, and folds
    write_json(run.result_file, {**run.result(), "score": 0.99})
    snapshot = index.Snapshot(sweep, compute={"row": _cached_row})
    snapshot.row_columns()
    snapshot.finish(compact=True)
    folded = pq.read_table(manifest)
    snapshot.rows_of(list(snapshot.runs)[:2])  # read from files now, each a repair line
    snapshot.finish(compact=True)
    assert pq.read_table(manifest).equals(folded)  # refused: the first fold's entries are all there
    pd.testing.assert_frame_equal(collect([sweep]), from_files(collect, [sweep]))
