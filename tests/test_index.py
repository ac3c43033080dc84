"""The sweep index (#25): `status`, `collect` and `invalidate` read a sweep from <sweep>/.index where it
holds each run's files as they are, read the rest from the files, and answer exactly as the files do."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import socket
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from analysis.load import collect
from launchers.invalidate import invalidate
from launchers.report import read_info, status_rows, status_table
from petsweep.records import index
from petsweep.records.status import RunDir, write_json
from petsweep.run import rehash


@pytest.fixture(autouse=True)
def _index_on(monkeypatch):
    monkeypatch.setenv(index.ENV, "1")
    monkeypatch.setattr(index, "RACY_S", 0.0)  # files written a moment ago are stored too (see test_racy)


def _result(i: int, config: dict) -> dict:
    return {
        "status": "COMPLETED",
        "run_id": f"{i:064x}",
        "backbone": "minilm-l6",
        "method": "lora",
        "task": "bbc_news",
        "seed": i % 3,
        "metric": "accuracy",
        "score": 0.5 + i / 1000,
        "best_dev_score": 0.4 + i / 1000,
        "steps": 10 + i,
        "metrics": {"accuracy": 0.5 + i / 1000, "f1": 0.4},
        "trainable_params": 100 + i,
        "stopped_early": i % 4 == 0,
        "config": config,
    }


def _config(i: int) -> dict:
    return {
        "seed": i % 3,
        "backbone": {"name": "minilm-l6"},
        "method": {"name": "lora", "r": 1 + i % 4, "lr": 0.001},
        "task": {"name": "bbc_news"},
    }


def make_sweep(root, n: int = 12):
    """Runs in every state a sweep holds: finished, finished under another identity (reads NEW), failed
    (with a traceback), cancelled, a finished run whose result.json is truncated (reads FAILED), a RUNNING
    run whose process is gone (INTERRUPTED); each with progress.json."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        run = RunDir(root / f"run-{i:03d}")
        run.set_status("RUNNING")
        write_json(run.progress_file, {"step": i, "max_steps": 99, "dev_score": 0.3, "best_dev_score": 0.35})
        kind = i % 6
        if kind != 0:  # kind 1: a finished record of another identity (the dir is not named for it)
            (run.path / "config.yaml").write_text(yaml.safe_dump(_config(i)))
        if kind in (0, 1):
            write_json(run.result_file, _result(i, _config(i)))
            write_json(run.path / "provenance.json", {"git_commit": "0" * 40, "host": "h"})
            run.set_status("COMPLETED", check=rehash.identity_check)
        elif kind == 2:
            (run.path / "error.txt").write_text("Traceback ...\nValueError: boom\n")
            run.set_status("FAILED", error="ValueError: boom")
        elif kind == 3:
            run.set_status("CANCELLED", error="cancelled by a signal")
        elif kind == 4:
            run.result_file.write_text('{"status": "COMPLE')
            run.set_status("COMPLETED", check=rehash.identity_check)
        else:  # RUNNING under a process that is gone
            write_json(
                run.status_file,
                {"state": "RUNNING", "host": socket.gethostname(), "pid": 2**22 + 7, "updated": 1.0},
            )
    write_json(root / "sweep.json", {"runs": [f"run-{i:03d}" for i in range(n + 2)]})  # two not started
    return root


def from_files(func, *args):
    """What the code answers without any index (PETSWEEP_INDEX=0: every run read from its files)."""
    saved = os.environ.get(index.ENV)
    os.environ[index.ENV] = "0"
    try:
        return func(*args)
    finally:
        os.environ[index.ENV] = saved


def read_counts(func, *args):
    index.READS.clear()
    out = func(*args)
    return out, dict(index.READS)


def test_the_index_answers_as_the_run_dirs_do_and_a_rebuild_equals_it(tmp_path):
    sweep = make_sweep(tmp_path / "study")
    files_rows, files_table = from_files(status_rows, sweep), from_files(collect, [sweep])
    assert [r["state"] for r in files_rows].count("NEW") == 2 + 2  # 2 not started, 2 of another id
    assert {"COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"} <= {r["state"] for r in files_rows}

    rows, reads = read_counts(status_rows, sweep)  # the runs' own lines, written by set_status
    assert rows == files_rows and reads == {"info": 2}  # the 2 RUNNING runs: status.json written by hand
    table, reads = read_counts(collect, [sweep])
    pd.testing.assert_frame_equal(table, files_table)
    # the finished and failed runs' rows came from their own lines (written with COMPLETED or FAILED); the
    # RUNNING and CANCELLED runs' rows were read from their files, and now the manifest holds them all
    assert reads == {"row": 4}
    assert (sweep / ".index" / index.MANIFEST).exists()
    again, reads = read_counts(collect, [sweep])
    pd.testing.assert_frame_equal(again, files_table)
    assert reads == {}
    assert read_counts(status_rows, sweep) == (files_rows, {})
    assert read_counts(status_table, sweep)[0] == from_files(status_table, sweep)

    shutil.rmtree(sweep / ".index")  # a rebuild from the run dirs
    rebuilt, reads = read_counts(collect, [sweep])
    pd.testing.assert_frame_equal(rebuilt, files_table)
    assert reads == {"row": 12}
    assert read_counts(status_rows, sweep) == (files_rows, {"info": 12})
    assert read_counts(status_rows, sweep) == (files_rows, {})


def test_a_runs_root_reads_each_sweeps_index(tmp_path):
    make_sweep(tmp_path / "a", 4)
    make_sweep(tmp_path / "b", 5)
    assert status_rows(tmp_path) == from_files(status_rows, tmp_path)
    pd.testing.assert_frame_equal(collect([tmp_path]), from_files(collect, [tmp_path]))
    assert read_counts(collect, [tmp_path])[1] == {}


def test_a_sweep_reached_by_another_path_collects_its_run_dirs_there(tmp_path, monkeypatch):
    """R37 F1: rows taken from the manifest kept `run_dir` as the reader that wrote it named the sweep: after
    a move, through a symlink or a relative path, collect named dirs that were gone or another sweep's."""
    sweep = make_sweep(tmp_path / "study", 12)
    collect([sweep])
    index.Snapshot(sweep, read_info=read_info).compact()  # every row in the manifest, named at `study`
    moved = sweep.rename(tmp_path / "moved")
    (tmp_path / "alias").symlink_to(moved)
    monkeypatch.chdir(tmp_path)
    for path in (moved, tmp_path / "alias", Path("moved"), Path("./alias/")):
        table, reads = read_counts(collect, [path])
        pd.testing.assert_frame_equal(table, from_files(collect, [path]))
        assert reads == {} and all(Path(d).parent == Path(path) for d in table["run_dir"]), path
    make_sweep(tmp_path / "study", 12)  # a new sweep where the old one was: the same run names
    table = collect([moved])
    assert all(Path(d).parent == moved for d in table["run_dir"])


def test_hidden_dirs_are_neither_runs_nor_sweeps_with_or_without_the_index(tmp_path):
    """R37 F2: the index's listing skipped a hidden run dir (and a hidden sweep under a runs root), the
    files' path (pathlib's glob) listed it: status and collect answered otherwise with the index."""
    root = tmp_path / "runs"
    sweep = make_sweep(root / "study", 6)
    (sweep / "run-001").rename(sweep / ".run-001")  # hidden by hand: no longer a run (planned: NEW)
    make_sweep(root / ".old", 3)  # a sweep moved aside
    for path in (sweep, root):
        rows = status_rows(path)
        assert rows == from_files(status_rows, path)
        assert [r["sweep"] for r in rows] == ["study"] * 8, path
        assert [r["state"] for r in rows if r["run"] == "run-001"] == ["NEW"]
        table = collect([path])
        pd.testing.assert_frame_equal(table, from_files(collect, [path]))
        assert len(table) == 5 and not any("/." in d for d in table["run_dir"])


def _one_writer(i: int, root: str) -> None:
    run = RunDir(f"{root}/run-{i:02d}")
    run.set_status("RUNNING")
    write_json(run.result_file, _result(i, _config(i)))
    run.set_status("COMPLETED", check=rehash.identity_check)


def test_64_writer_processes_lose_no_line(tmp_path):
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_one_writer, args=(i, str(tmp_path))) for i in range(64)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    files = sorted((tmp_path / ".index").glob("*.jsonl"))
    assert len(files) == 64  # one file per process: no two processes append to one file
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted((line["run"], line["state"]) for line in lines) == sorted(
        (f"run-{i:02d}", state) for i in range(64) for state in ("RUNNING", "COMPLETED")
    )
    rows, reads = read_counts(status_rows, tmp_path)
    assert reads == {} and rows == from_files(status_rows, tmp_path)
    assert {r["state"] for r in rows} == {"COMPLETED"}


def test_a_run_edited_behind_the_index_is_read_from_its_files(tmp_path):
    sweep = make_sweep(tmp_path / "study")
    collect([sweep])
    status_rows(sweep)
    result = sweep / "run-006" / "result.json"  # edited in place: the dir's mtime stays, the file's moves
    edited = {**json.loads(result.read_text()), "score": 0.123}
    with result.open("w") as fh:
        json.dump(edited, fh)
    rows, reads = read_counts(status_rows, sweep)
    assert reads == {"info": 1} and rows == from_files(status_rows, sweep)
    assert [r["score"] for r in rows if r["run"] == "run-006"] == [0.123]
    table, reads = read_counts(collect, [sweep])
    assert reads == {"row": 1}
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    assert read_counts(status_rows, sweep)[1] == {}  # repaired

    shutil.copytree(sweep / "run-000", sweep / "run-900")  # a run dir copied in from elsewhere
    rows, reads = read_counts(status_rows, sweep)
    assert reads == {"info": 1} and rows == from_files(status_rows, sweep)


def test_a_crash_between_status_json_and_its_line_is_repaired(tmp_path):
    sweep = make_sweep(tmp_path / "study")
    status_rows(sweep)
    run = RunDir(sweep / "run-002")  # FAILED; rerun and finished by a process killed before its line
    write_json(run.result_file, _result(2, _config(2)))
    write_json(run.status_file, {"state": "COMPLETED", "host": "h", "pid": 1, "updated": 5.0})
    rows, reads = read_counts(status_rows, sweep)
    assert reads == {"info": 1} and rows == from_files(status_rows, sweep)
    assert [r["state"] for r in rows if r["run"] == "run-002"] == ["NEW"]  # its record is of another id
    assert read_counts(status_rows, sweep)[1] == {}
    pd.testing.assert_frame_equal(collect([sweep]), from_files(collect, [sweep]))


def test_old_run_dirs_without_an_index(tmp_path):
    sweep = from_files(make_sweep, tmp_path / "study")  # written by a petsweep before the index
    assert not (sweep / ".index").exists()
    rows, reads = read_counts(status_rows, sweep)
    assert reads == {"info": 12} and rows == from_files(status_rows, sweep)
    assert (sweep / ".index" / index.MANIFEST).exists()  # the first reader builds it
    assert read_counts(status_rows, sweep) == (rows, {})


def test_incremental_collect_reads_only_changed_runs_and_equals_a_full_collect(tmp_path):
    sweep = make_sweep(tmp_path / "study", 60)
    collect([sweep])
    for name, steps in (("run-000", 12), ("run-031", 12.5)):  # rewritten as runs write them (renamed in)
        run = RunDir(sweep / name)  # 12.5: a column of ints in the manifest gets a float
        write_json(run.result_file, {**run.result(), "score": 0.99, "steps": steps, "new_key": [steps]})
    (sweep / "run-030" / "transfer").mkdir()
    write_json(sweep / "run-030" / "transfer" / "x.json", {"score": 0.7})  # as petsweep transfer writes it
    os.utime(sweep / "run-030")  # what petsweep.run.transfer does after writing
    table, reads = read_counts(collect, [sweep])
    assert reads == {"row": 3}
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    assert "transfer.x.score" in table.columns
    assert read_counts(collect, [sweep])[1] == {}
    index.Snapshot(sweep).compact()  # the changed rows folded in: `steps` is no longer of one type (JSON)
    again, reads = read_counts(collect, [sweep])
    pd.testing.assert_frame_equal(again, table)
    assert reads == {} and "j:steps" in pq.read_schema(sweep / ".index" / index.MANIFEST).names


def test_a_compaction_cut_short_leaves_an_index_that_answers_right(tmp_path):
    sweep = make_sweep(tmp_path / "study")
    collect([sweep])  # manifest with rows
    write_json(RunDir(sweep / "run-001").result_file, _result(77, _config(1)))
    status_rows(sweep)  # a repair line
    lines = {p: p.read_bytes() for p in (sweep / ".index").glob("*.jsonl")}
    assert lines
    snapshot = index.Snapshot(sweep, read_info=read_info)
    snapshot.compact()  # renamed the new manifest over the old one, then unlinked the lines ...
    for path, data in lines.items():  # ... where a crash kept them
        path.write_bytes(data)
    (sweep / ".index" / ".manifest.parquet.h-1.tmp").write_bytes(b"PAR1 half a manifest")
    (sweep / ".index" / "h-2-3.jsonl").write_bytes(b'{"run": "run-001", "sig": [1, 2')  # cut short
    assert status_rows(sweep) == from_files(status_rows, sweep)
    pd.testing.assert_frame_equal(collect([sweep]), from_files(collect, [sweep]))


def test_a_collect_that_compacts_keeps_the_status_fields(tmp_path):
    sweep = from_files(make_sweep, tmp_path / "study")
    status_rows(sweep)  # builds the manifest with the status fields of every run
    for name in ("run-003", "run-004"):
        write_json(sweep / name / "provenance.json", {"host": "elsewhere"})
    rows = from_files(status_rows, sweep)
    snapshot = index.Snapshot(sweep, compute={"row": lambda path: ({"p": path}, True)})  # as collect reads
    assert len(list(snapshot.iter_field("row"))) == 12
    snapshot.compact()  # it read no status fields: the manifest's are kept, changed runs' are dropped
    assert read_counts(status_rows, sweep) == (rows, {"info": 2})


def test_racy_entries_are_not_stored(tmp_path, monkeypatch):
    """An entry read in the clock tick its files were written in could miss a second write of that tick:
    it answers this read and is read again next time."""
    sweep = from_files(make_sweep, tmp_path / "study", 3)
    monkeypatch.setattr(index, "RACY_S", 3600.0)
    assert read_counts(status_rows, sweep)[1] == {"info": 3}
    assert read_counts(status_rows, sweep)[1] == {"info": 3}


def test_invalidate_reads_the_index_and_moves_what_the_files_say(tmp_path):
    sweep = make_sweep(tmp_path / "study")
    status_rows(sweep)
    dry = (["method.r=2"], "all", "", True)
    files = from_files(invalidate, sweep, *dry)
    assert len(files) == 3  # r=2: a run of another identity (NEW), a failed one, one interrupted
    assert read_counts(invalidate, sweep, *dry) == (files, {"config": 12})
    assert read_counts(invalidate, sweep, *dry) == (files, {})
    with pytest.raises(Exception, match="did you mean method.r"):
        invalidate(sweep, ["method.rr=2"])
    failed = (["method.r=3"], "failed")  # run-010's result.json is truncated: it reads FAILED
    assert from_files(invalidate, sweep, *failed, "", True) == [sweep / "run-002", sweep / "run-010"]
    assert invalidate(sweep, *failed) == [sweep / "run-002", sweep / "run-010"]
    assert not (sweep / "run-002").exists()
    assert status_rows(sweep) == from_files(status_rows, sweep)


def test_a_line_without_the_identity_check_never_hides_one_with_it(tmp_path):
    """A writer that has no identity check writes none in its line (RunDir.set_status without `check`); a
    reader checks once."""
    run = RunDir(tmp_path / "run-000")
    run.path.mkdir()
    write_json(run.result_file, _result(0, _config(0)))
    run.set_status("COMPLETED")
    [file] = (tmp_path / ".index").glob("*.jsonl")
    unchecked = file.read_text()
    assert "stale" not in unchecked
    assert read_counts(status_rows, tmp_path)[1] == {"info": 1}  # read, and its repair line has the check
    with file.open("a") as fh:
        fh.write(unchecked)  # the unchecked line again, after the checked one
    assert read_counts(status_rows, tmp_path) == (from_files(status_rows, tmp_path), {})


def _finished_sweep(root, extra: tuple[str, ...] = ()) -> list[str]:
    """A planned sweep (the default job, 3 ranks x 2 seeds, and `extra`) whose runs all finished, as runs
    leave them (config.yaml, result.json with its config and config_sha256, status.json through RunDir, so
    each writes its index line); returns the sweep's arguments."""
    from launchers.expand import expand
    from launchers.planning import plan
    from petsweep.compose import compose
    from petsweep.model.resolve import semantic_config

    arguments = [f"paths.runs_root={root}", "sweep_name=study", "method.r=1,2,3", "seed=0,1", *extra]
    for run in plan(expand(arguments), compose):
        run.path.mkdir(parents=True)
        text = yaml.safe_dump(run.cfg, sort_keys=False).encode()
        (run.path / "config.yaml").write_bytes(text)
        record = _result(0, semantic_config(run.cfg))
        record.update(run_id=run.run_hash, config_sha256=hashlib.sha256(text).hexdigest())
        write_json(run.path / "result.json", record)
        RunDir(run.path).set_status("COMPLETED", check=rehash.identity_check)
    return arguments


def _counting(read, opened: Counter):
    def counted(self, *args, **kwargs):
        if self.name in ("result.json", "config.yaml"):
            opened[self.parent.name] += 1
        return read(self, *args, **kwargs)

    return counted


def _resume(arguments) -> tuple[dict, list[str], Counter]:
    """A resume (`run.py -m`'s run_sweep) of the sweep: each run's state, what it would launch, and how often
    each run's result.json and config.yaml were opened (by run dir)."""
    from pathlib import Path

    from launchers.sweep import run_sweep
    from petsweep.compose import compose

    opened = Counter()
    launched = []
    with pytest.MonkeyPatch.context() as patch:
        for method in ("read_text", "read_bytes"):
            patch.setattr(Path, method, _counting(getattr(Path, method), opened))
        runs = run_sweep(arguments, None, compose, lambda todo: launched.extend(r.path.name for r in todo))
    return {r.path.name: r.status for r in runs}, launched, opened


def test_a_resume_of_a_finished_sweep_reads_no_record_when_the_index_is_current(tmp_path, caplog):
    """#25: a resume read each finished run's status.json, result.json and config.yaml (YAML parse and
    identity hash: ~1.2 ms a run, ~20 min at 10^6); it now answers from the sweep's index, and a run edited
    behind the index's back is still read from its files."""
    arguments = _finished_sweep(tmp_path)
    sweep = tmp_path / "study"
    states, launched, opened = _resume(arguments)
    assert set(states.values()) == {"COMPLETED"} and not launched
    assert opened == {}, opened  # the runs' own index lines answered (written when each run finished)
    assert (states, launched) == from_files(_resume, arguments)[:2]

    names = sorted(states)
    edited = sweep / names[0] / "config.yaml"  # edited in place after it finished: reused, with a warning
    with edited.open("a") as fh:
        fh.write("# a note\n")
    other = RunDir(sweep / names[1])  # a record of another identity (it trained r=9): NEW, launched
    config = yaml.safe_load(other.config_file.read_text())
    config["method"]["r"] = 9
    body = yaml.safe_dump(config, sort_keys=False)
    other.config_file.write_text(body)
    record = {**other.result(), "config_sha256": hashlib.sha256(body.encode()).hexdigest()}
    with other.result_file.open("w") as fh:  # in place: the run dir's mtime stays
        json.dump(record, fh)
    answers = []
    for how in (_resume, _resume, lambda *args: from_files(_resume, *args)):  # files + repair, index, files
        rehash._checked.cache_clear()  # each as a fresh process: the identity check's memo is per process,
        rehash._WARNED.clear()  # and so is what it has warned of
        caplog.clear()
        states, launched, opened = how(arguments)
        warned = [r.getMessage() for r in caplog.records if "config.yaml was changed" in r.getMessage()]
        answers.append((states, launched, warned))
        if len(answers) == 2:  # the repaired index answered; the run launched is read after its launch
            assert set(opened) == {names[1]}, opened
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0][names[1]] == "NEW" and answers[0][1] == [names[1]]
    assert len(answers[0][2]) == 1 and names[0] in answers[0][2][0]


def test_a_manifest_of_many_row_groups_reads_as_the_files(tmp_path, monkeypatch):
    """Row groups (index.BATCH runs each) decode their dictionaries apart: rows, a compaction of changed
    runs and status still answer as the files do."""
    monkeypatch.setattr(index, "BATCH", 4)
    sweep = make_sweep(tmp_path / "study", 30)
    collect([sweep])
    for name in ("run-000", "run-013", "run-025"):
        run = RunDir(sweep / name)
        write_json(run.result_file, {**run.result(), "score": 0.99, "steps": 3.5})
    index.Snapshot(sweep, read_info=read_info).compact()
    table, reads = read_counts(collect, [sweep])
    pd.testing.assert_frame_equal(table, from_files(collect, [sweep]))
    assert reads == {"row": 3}
    assert read_counts(collect, [sweep])[1] == {}
    assert status_rows(sweep) == from_files(status_rows, sweep)


def test_every_fingerprinted_source_exists_and_the_budget_solver_counts():
    """R23 F2: _SOURCES named petsweep/records/rehash.py after it moved (a missing file was skipped
    silently) and not the budget solver, whose choice a `budget=` run's id holds: an edit to it left the
    index's stale answers standing."""
    root = Path(index.__file__).resolve().parent.parent.parent
    listed = index.sources()
    assert [name for name in listed if not (root / name).is_file()] == []
    needed_by_ids = ("spec/identity.py", "spec/shape.py", "model/budget.py", "model/resolve.py")
    for needed in (f"petsweep/{name}" for name in (*needed_by_ids, "model/params.py")):
        assert needed in listed
    hooks = [p for p in (root / "petsweep/methods").rglob("*.py") if "budget_" in p.read_text()]
    assert hooks and all(str(p.relative_to(root)) in listed for p in hooks)


def test_status_leaves_a_budget_record_unchecked_and_a_plan_checks_it(tmp_path):
    """R23 F1: `petsweep status` reads a `budget=` record without the budget solver (torch): its entry has no
    `stale` answer, so the planner's reads (reuse, launch) still check its identity in full; this record
    sits under a name that is not its id, so a plan trains it again."""
    from launchers import planning
    from petsweep.records.status import State

    run = tmp_path / "study" / "tiny-bert-lora-bbc_news-s0-000000000000"
    run.mkdir(parents=True)
    old = Path(__file__).parent / "fixtures" / "old_records" / "1a02139" / "lora-encoder"
    (run / "config.yaml").write_text((old / "config.yaml").read_text() + "budget: 8000\n")
    result = json.loads((old / "result.json").read_text())
    result["config"]["budget"] = 8000
    (run / "result.json").write_text(json.dumps(result))
    RunDir(run).set_status("COMPLETED", check=rehash.identity_check)
    shutil.rmtree(run.parent / index.INDEX_DIR, ignore_errors=True)  # as a copied sweep without its index
    [row] = status_rows(run.parent)
    assert row["state"] == "COMPLETED" and row["notes"] == [
        "identity unchecked (budget=; `petsweep plan` checks it)"
    ]
    # R37 F8: the unchecked entry is stored and answers the next status (it was read from the files at
    # every status until a plan), in both of its paths; the readers that check still check
    assert read_counts(status_rows, run.parent) == ([row], {})
    index.Snapshot(run.parent, read_info=read_info).compact()
    table, reads = read_counts(status_table, run.parent)
    assert reads == {} and "identity unchecked (budget=" in table
    info = index.Snapshot(run.parent, read_info=read_info).entry(run.name)
    assert info.get("unchecked") and "stale" not in info
    info = index.Snapshot(run.parent, read_info=planning.read_info).entry(run.name)
    assert info["stale"] is not None and "not of tiny-bert-lora-bbc_news-s0-000000000000" in info["stale"]
    assert planning.run_status(run) == State.NEW


def test_a_run_id_prefix_names_no_run_in_a_hidden_sweep(tmp_path):
    """R37 W5: method.init_from's lookup of a run id under a runs root counted a sweep copied aside as
    `.old` (hidden dirs are never runs or sweeps: status.run_dirs): "matches 2 runs"."""
    from petsweep.model.init_from import WEIGHTS, resolve_source

    run = tmp_path / "runs" / "study" / "tiny-bert-lora-bbc_news-s0-2b13c05c7acf"
    run.mkdir(parents=True)
    write_json(run / "result.json", {"run_id": "2b13c05c7acf" + "0" * 52})
    (run / WEIGHTS).write_bytes(b"weights")
    shutil.copytree(run.parent, tmp_path / "runs" / ".old")
    assert resolve_source("2b13c05c", tmp_path / "runs") == run
