"""A re-collect patches the last collect's table (analysis/collected.py, #25): it reads only the runs changed
since, and its table equals a collect from the run dirs cell by cell, whatever changed."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest

from analysis import collected
from analysis.load import _cached_row, collect
from launchers.invalidate import invalidate
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
