"""`petsweep status` of a big sweep (#25): the table is read from the index's typed status columns a manifest
row group at a time (petsweep.records.index.StatusScan), answers as the run dirs do after any edit behind
the index's back, and over LIST_UP_TO runs lists only the runs not done."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest
import yaml
from test_index import _config, _result, from_files, make_sweep, read_counts

from launchers import report
from launchers.report import read_info, status_rows, status_table
from petsweep.records import index
from petsweep.records.status import RunDir, write_json
from petsweep.run import rehash


@pytest.fixture(autouse=True)
def _index_on(monkeypatch):
    monkeypatch.setenv(index.ENV, "1")
    monkeypatch.setattr(index, "RACY_S", 0.0)


def scanned(sweep) -> str:
    """status_table, asserting that the typed manifest answers it (not a Snapshot of every run)."""
    assert index.StatusScan(sweep, read_info).usable
    return status_table(sweep)


def indexed(sweep):
    status_table(sweep)  # builds the manifest (the runs' lines folded in)
    index.Snapshot(sweep, read_info=read_info).compact()
    assert index.StatusScan(sweep, read_info).usable


def test_the_typed_manifest_answers_as_the_files_do_and_decodes_only_lines_it_prints(tmp_path, monkeypatch):
    sweep = make_sweep(tmp_path / "study", 30)
    indexed(sweep)
    table, reads = read_counts(scanned, sweep)
    assert table == from_files(status_table, sweep) and reads == {}
    assert table.splitlines()[-1] == "32 runs: 5 cancelled, 5 done, 10 failed, 5 interrupted, 7 new"

    full = from_files(status_table, sweep).splitlines()
    decoded = []
    info = index.StatusBatch.info
    monkeypatch.setattr(index.StatusBatch, "info", lambda self, i: decoded.append(i) or info(self, i))
    monkeypatch.setattr(report, "LIST_UP_TO", 28)  # a summary: the 5 done runs get no line, nor a decode
    summary = scanned(sweep)
    # the printed runs' (2 NEW are planned, no run dir), and the 5 done runs whose entry holds a warning to
    # give again (they have no config.yaml: R37 F6), found in the JSON text without decoding the others
    assert len(decoded) == 32 - 5 - 2 + 5
    assert summary.splitlines() == [
        full[0],
        *[line for line in full[1:-1] if not line.startswith("COMPLETED")],
        "(5 done runs not listed: over 28 runs, only those not done are; `petsweep status --all` lists "
        "every run)",
        full[-1],
    ]
    assert from_files(status_table, sweep) == summary  # the files give the same summary
    assert status_table(sweep, every=True) == "\n".join(full)


@pytest.mark.parametrize("quick_stat_s", [0.0, 1.0])  # a stat never / always counts as the kernel's cache
def test_runs_stated_in_threads_or_in_one_answer_alike(tmp_path, monkeypatch, quick_stat_s):
    """_stats times a batch's first runs and stats the rest in threads only where a stat waits on the disk
    (NFS); either way every run's signature is taken, and an edit behind the index is seen."""
    monkeypatch.setattr(index, "QUICK_STAT_S", quick_stat_s)
    monkeypatch.setattr(index, "BATCH", 8)
    monkeypatch.setattr(index, "STAT_THREADS", 4)
    monkeypatch.setattr(index, "STAT_SPAN", 2)
    monkeypatch.setattr(index, "STAT_PROBE", 2)
    sweep = make_sweep(tmp_path / "study", 30)
    indexed(sweep)
    for name in ("run-001", "run-017", "run-029"):
        _in_place(sweep / name / "status.json", json.dumps({"state": "FAILED", "updated": 1.0}))
    threads = set()
    stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: threads.add(threading.get_ident()) or stat(*a, **k))
    table = scanned(sweep)
    monkeypatch.setattr(os, "stat", stat)
    assert table == from_files(status_table, sweep)
    assert (len(threads) > 1) == (quick_stat_s == 0.0)


def _in_place(path, text: str) -> None:
    with open(path, "r+") as fh:  # the same inode; the run dir's mtime stays
        fh.seek(0)
        fh.write(text)
        fh.truncate()


def test_edits_behind_the_index_are_seen(tmp_path):
    sweep = make_sweep(tmp_path / "study", 18)
    indexed(sweep)
    before = {line.split()[1]: line.split()[0] for line in status_table(sweep).splitlines()[1:-1]}
    assert before["run-012"] == "COMPLETED"
    result = sweep / "run-006" / "result.json"  # a COMPLETED run: its dir is not stat'ed, its files are
    _in_place(result, json.dumps({**json.loads(result.read_text()), "score": 0.123}))
    status = sweep / "run-000" / "status.json"
    _in_place(status, json.dumps({"state": "FAILED", "error": "edited", "updated": 3.0}) + " " * 99)
    with open(sweep / "run-012" / "config.yaml", "w") as fh:  # written, not renamed in: the file is seen
        fh.write(yaml.safe_dump(_config(12)))
    failed = RunDir(sweep / "run-008")  # not COMPLETED: its dir is stat'ed (a progress.json renamed in)
    write_json(failed.progress_file, {"step": 77, "max_steps": 99, "dev_score": 0.9})
    table, reads = read_counts(scanned, sweep)
    assert table == from_files(status_table, sweep) and reads == {"info": 4}
    assert "accuracy 0.1230" in table and "edited" in table and " 77/99 " in table
    assert [line.split()[0] for line in table.splitlines() if "run-012" in line] == ["NEW"]
    assert read_counts(scanned, sweep) == (table, {})  # repaired by their lines

    shutil.copytree(sweep / "run-001", sweep / "run-0055")  # a run dir copied in: the sweep dir is listed
    shutil.rmtree(sweep / "run-002")  # and one removed: planned, it reads NEW
    table, reads = read_counts(scanned, sweep)
    assert table == from_files(status_table, sweep) and reads == {"info": 1}
    lines = {line.split()[1]: line.split()[0] for line in table.splitlines()[1:-1]}
    assert lines["run-0055"] == "NEW" and lines["run-002"] == "NEW"


def test_a_run_dir_that_gets_its_status_json_after_the_listing_is_seen(tmp_path):
    sweep = make_sweep(tmp_path / "study", 6)
    (sweep / "run-100").mkdir()  # claimed, no status.json yet: the manifest's listing names it
    indexed(sweep)
    meta = index.StatusScan(sweep, read_info).file.schema_arrow.metadata
    assert json.loads(meta[b"non_runs"]) == ["run-100"]
    run = RunDir(sweep / "run-100")
    write_json(run.result_file, _result(100, _config(100)))
    write_json(run.status_file, {"state": "COMPLETED", "updated": 4.0})  # no line: as a petsweep without it
    table, reads = read_counts(scanned, sweep)
    assert table == from_files(status_table, sweep) and reads == {"info": 1}
    assert "run-100" in table


def test_rows_stay_in_name_order_across_row_groups_lines_and_repairs(tmp_path, monkeypatch):
    """Row groups of 4 runs; runs only a line knows (started after the manifest), runs read from their files,
    planned runs with no dir: every row in name order, as the files give them, and status_rows too (it put
    runs read from their files last where the sweep planned no run, #25)."""
    monkeypatch.setattr(index, "BATCH", 4)
    sweep = make_sweep(tmp_path / "study", 18)
    (sweep / "sweep.json").unlink()
    indexed(sweep)
    for i in (3, 9, 10, 15):  # after the manifest: a line each
        run = RunDir(sweep / f"run-{i:03d}x")
        run.path.mkdir()
        write_json(run.result_file, _result(i, _config(i)))
        run.set_status("COMPLETED", check=rehash.identity_check)
    result = sweep / "run-012" / "result.json"
    _in_place(result, json.dumps({**json.loads(result.read_text()), "score": 0.5}))
    assert scanned(sweep) == from_files(status_table, sweep)
    assert status_rows(sweep) == from_files(status_rows, sweep)
    write_json(sweep / "sweep.json", {"runs": [f"run-{i:03d}" for i in range(0, 40, 3)]})
    assert scanned(sweep) == from_files(status_table, sweep)


def test_many_lines_are_folded_by_the_snapshot_path(tmp_path, monkeypatch):
    sweep = make_sweep(tmp_path / "study", 6)
    indexed(sweep)
    for _ in range(1200):  # lines past the threshold (1000), of one run: the typed path still answers
        RunDir(sweep / "run-000").set_status("COMPLETED", check=rehash.identity_check)
    assert index.StatusScan(sweep, read_info).usable
    assert scanned(sweep) == from_files(status_table, sweep)
    for i in range(1, 1002):  # lines of more runs than the threshold: the Snapshot path answers, folds them
        RunDir(sweep / f"new-{i:04d}").set_status("CANCELLED")
    assert not index.StatusScan(sweep, read_info).usable
    assert status_table(sweep) == from_files(status_table, sweep)
    assert index.StatusScan(sweep, read_info).usable
    monkeypatch.setattr(index, "StatusScan", _Unusable)
    assert status_table(sweep) == from_files(status_table, sweep)


class _Unusable(index.StatusScan):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.usable = False


def test_status_without_the_index_summarises_too(tmp_path, monkeypatch):
    sweep = make_sweep(tmp_path / "study", 12)
    monkeypatch.setattr(report, "LIST_UP_TO", 3)
    os.environ[index.ENV] = "0"
    text = status_table(sweep)
    assert "(2 done runs not listed, nor the 9 not done past the first 3: over 3 runs" in text
    assert "COMPLETED" not in text and len(text.splitlines()) == 1 + 3 + 2
    assert text.endswith("14 runs: 2 cancelled, 2 done, 4 failed, 2 interrupted, 4 new")


def test_a_summary_of_done_runs_first_lists_none_of_them(tmp_path, monkeypatch):
    """The rows listed while a table was still small are dropped once it is a summary (the files' path, and
    the Snapshot's that builds the index: they hold a row per run)."""
    sweep = tmp_path / "study"
    for i in range(8):
        run = RunDir(sweep / f"run-{i:03d}")
        run.path.mkdir(parents=True)
        write_json(run.result_file, _result(i, _config(i)))
        run.set_status("COMPLETED", check=rehash.identity_check)
    RunDir(sweep / "a-failed").set_status("FAILED", error="boom")  # first: no row not done comes after
    monkeypatch.setattr(report, "LIST_UP_TO", 4)
    for table in (from_files(status_table, sweep), status_table(sweep)):
        assert [line.split()[0] for line in table.splitlines()] == ["state", "FAILED", "(8", "9"]


def _no_stat_pass(*args):
    raise AssertionError("status --quick stat'ed every run")


def test_quick_reads_the_index_alone_and_answers_as_the_files_after_own_writes(tmp_path, monkeypatch):
    """`petsweep status --quick` (#25: at 10^6 runs the three stats a run are most of a status): no stat
    pass; runs changed since the manifest come from their newest lines, a run dir added or removed from a
    listing (the sweep dir's mtime moved). What only a stat sees, an edit in place, is not seen: the trade
    the flag names."""
    sweep = make_sweep(tmp_path / "study", 18)
    indexed(sweep)
    RunDir(sweep / "run-000").set_status("RUNNING")  # trained again: RUNNING, then FAILED, two lines
    RunDir(sweep / "run-000").set_status("FAILED", error="ValueError: again")
    RunDir(sweep / "run-003").set_status("CANCELLED", error="cancelled by a signal")
    added = RunDir(sweep / "run-050")  # a run started after the manifest
    added.path.mkdir()
    write_json(added.result_file, _result(50, _config(50)))
    added.set_status("COMPLETED", check=rehash.identity_check)
    shutil.rmtree(sweep / "run-007")  # planned: it reads NEW
    monkeypatch.setattr(index, "_stats", _no_stat_pass)
    quick, reads = read_counts(status_table, sweep, False, True)
    assert reads == {}  # no run's files read
    assert quick == from_files(status_table, sweep) + "\n" + report.QUICK_NOTE
    assert "again" in quick and "run-050" in quick
    assert [line.split()[0] for line in quick.splitlines() if " run-007 " in line] == ["NEW"]

    status = sweep / "run-012" / "status.json"  # a COMPLETED run edited in place: only a stat sees it
    _in_place(status, json.dumps({"state": "FAILED", "error": "edited", "updated": 3.0}) + " " * 99)
    assert "edited" not in status_table(sweep, quick=True)
    monkeypatch.undo()
    monkeypatch.setenv(index.ENV, "1")
    assert "edited" in status_table(sweep) and status_table(sweep) == from_files(status_table, sweep)


def test_a_finished_runs_edited_config_warns_from_the_index_as_from_its_files(tmp_path, caplog):
    """R37 F6: a finished run whose config.yaml was edited after it finished (its result.json is the record
    and is used) warned where its files were read, but `status` and `invalidate` answered from the index
    said nothing; the entry keeps the warning and each of them gives it (once a process)."""
    from launchers.invalidate import invalidate

    sweep = make_sweep(tmp_path / "study", 6)
    edited = _config(0)
    edited["method"]["r"] = 99
    (sweep / "run-000" / "config.yaml").write_text(yaml.safe_dump(edited))
    indexed(sweep)  # the files read: the warning is in the run's entry
    for read in (scanned, status_rows, lambda s: invalidate(s, ["method.r=5"], "all", "", True)):
        rehash._WARNED.clear()  # as a new process
        caplog.clear()
        index.READS.clear()
        read(sweep)
        assert "info" not in index.READS  # the status fields from the index (invalidate reads configs once)
        warned = [r.message for r in caplog.records if "run-000" in r.message]
        assert len(warned) == 1 and "config.yaml was changed after the run finished" in warned[0]


def _quick_is_the_files(sweep) -> str:
    quick = status_table(sweep, quick=True)
    assert quick == from_files(status_table, sweep) + "\n" + report.QUICK_NOTE
    return quick


def test_quick_keeps_a_line_written_while_the_lines_are_folded(tmp_path):
    """R37 W1: a fold unlinked the line files it had read, with whatever was appended to them meanwhile (a
    run started while a collect ran): status --quick showed the run's older state for good. A line file
    that grew since it was read is left, and read again next time."""
    sweep = make_sweep(tmp_path / "study", 12)
    indexed(sweep)
    RunDir(sweep / "run-000").set_status("RUNNING")
    folding = index.Snapshot(sweep, read_info=read_info)  # has read this process's line file
    RunDir(sweep / "run-002").set_status("CANCELLED", error="cancelled while folding")  # the same file
    folding.compact()
    assert "cancelled while folding" in _quick_is_the_files(sweep)


def test_quick_reads_a_run_whose_line_is_of_other_code_and_orders_lines_by_status_json(tmp_path, monkeypatch):
    """R37 W2: a line of other code (a worker on another commit) was skipped, so --quick kept the run's
    older entry; such a run is stat'ed and read. R37 W3: the newest line was chosen by each writer's clock
    ("t"), so a host whose clock ran ahead won; status.json's mtime (the file server's) decides now."""
    sweep = make_sweep(tmp_path / "study", 12)
    indexed(sweep)
    with monkeypatch.context() as patch:
        patch.setattr(index, "fingerprint", lambda: "another commit")
        RunDir(sweep / "run-002").set_status("CANCELLED", error="by a worker on another commit")
    assert "another commit" in _quick_is_the_files(sweep)
    now = index.time.time
    with monkeypatch.context() as patch:
        patch.setattr(index.time, "time", lambda: now() + 60)  # a host whose clock is a minute ahead
        RunDir(sweep / "run-003").set_status("FAILED", error="ValueError: first, fast clock")
    RunDir(sweep / "run-003").set_status("CANCELLED", error="second, on time")
    assert "second, on time" in _quick_is_the_files(sweep)


def test_quick_says_when_it_read_every_run(tmp_path):
    """R37 W8: where the index cannot answer alone (a runs root, no manifest yet) --quick read every run and
    said nothing."""
    sweep = make_sweep(tmp_path / "runs" / "study", 6)
    for path in (sweep, tmp_path / "runs"):  # a sweep whose index has no manifest yet; a runs root
        table = status_table(path, quick=True)
        assert table == from_files(status_table, path) + "\n" + report.QUICK_FELL_BACK
