"""A resume of a finished sweep from its plan memo (launchers.plan_memo, #25): it answers as a plan does,
plans no run, and plans again whenever anything a plan's outcome depends on moved, or a run is not done."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from launchers import plan_memo
from launchers import sweep as sweeps
from petsweep.compose import compose
from petsweep.records import index
from petsweep.records.status import RunDir
from tests.test_index import _finished_sweep, from_files


@pytest.fixture(autouse=True)
def _memo_on(monkeypatch):
    monkeypatch.setenv(index.ENV, "1")
    monkeypatch.setenv(plan_memo.ENV, "1")
    monkeypatch.setattr(index, "RACY_S", 0.0)  # files written a moment ago are stored too


def _resume(arguments, compose_fn=compose) -> tuple[list[tuple], list[str], int]:
    """run_sweep as `run.py -m` calls it: (each run as planned, the runs launched, how often it planned)."""
    planned = Counter()
    launched: list[str] = []
    real_plan = sweeps.plan

    def counted(*args, **kwargs):
        planned["plan"] += 1
        return real_plan(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweeps, "plan", counted)
        runs = sweeps.run_sweep(
            arguments, None, compose_fn, lambda todo: launched.extend(r.path.name for r in todo)
        )
    seen = [(r.path, str(r.status), r.run_hash, r.duplicates, r.overrides) for r in runs]
    return seen, launched, planned["plan"]


def _memos(sweep) -> list:
    return sorted((sweep / index.INDEX_DIR / plan_memo.MEMO_DIR).glob("*.parquet"))


def test_a_finished_sweep_resumes_from_its_memo_as_a_plan_answers(tmp_path):
    arguments = _finished_sweep(tmp_path, ("method.r=1,1,2",))  # r=1 twice: a duplicate config merged
    sweep = tmp_path / "study"
    first, launched, planned = _resume(arguments)
    assert planned == 1 and not launched and len(_memos(sweep)) == 1
    marker = (sweep / sweeps.SWEEP_MARKER).stat().st_mtime_ns
    again, launched, planned = _resume(arguments)
    assert planned == 0 and not launched  # the memo answered: no run composed, validated or hashed
    assert again == first and {state for _, state, *_ in again} == {"COMPLETED"}
    assert sum(dups for *_, dups, _ in again) == 2  # two seeds of the duplicate r=1
    assert (sweep / sweeps.SWEEP_MARKER).stat().st_mtime_ns == marker  # same names and labels: left as is
    assert from_files(_resume, arguments)[:2] == (first, [])  # no index, no memo: the files say the same


@pytest.mark.parametrize("how", ["failed", "gone", "edited"])
def test_a_run_not_finished_now_is_planned_and_launched(tmp_path, how):
    arguments = _finished_sweep(tmp_path)
    _resume(arguments)
    sweep = tmp_path / "study"
    name = sorted(p.name for p in sweep.iterdir() if not p.name.startswith("."))[2]
    if how == "failed":
        RunDir(sweep / name).set_status("FAILED")
    elif how == "gone":
        os.rename(sweep / name, tmp_path / name)
    else:  # status.json rewritten in place, behind the index's back (the run dir's mtime stays)
        status = sweep / name / "status.json"
        status.write_text(status.read_text().replace("COMPLETED", "CANCELLED"))
    _, launched, planned = _resume(arguments)
    assert planned == 1 and launched == [name]


def test_what_decides_a_plan_keys_its_memo(tmp_path, monkeypatch):
    """Another order of the axes, a composed config that differs (a conf file edited), another working
    directory, other code: each plans again (and keeps a memo of its own)."""
    arguments = _finished_sweep(tmp_path)
    _resume(arguments)
    assert _resume(arguments)[2] == 0

    assert _resume([*arguments[2:], *arguments[:2]])[2] == 1

    def edited_conf(overrides):
        cfg = compose(overrides)
        cfg.trainer.max_steps = cfg.trainer.max_steps + 1
        return cfg

    _, launched, planned = _resume(arguments, edited_conf)
    assert planned == 1 and len(launched) == 6  # other ids: every run is new

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _resume(arguments)[2] == 1
    monkeypatch.setattr(plan_memo, "code_fingerprint", lambda: "other code")
    assert _resume(arguments)[2] == 1


def test_a_local_data_file_edited_plans_its_runs_again(tmp_path):
    """A run's id hashes its local data files' bytes (spec.identity): the memo keeps their fingerprints."""
    for split in ("train", "test"):
        rows = (f'{{"inputs": "{split} {i}", "outputs": "{"ab"[i % 2]}"}}\n' for i in range(30))
        (tmp_path / f"{split}.jsonl").write_text("".join(rows))
    data = tmp_path / "train.jsonl"
    files = ("task=local", f"task.files.train={data}", f"task.files.test={tmp_path}/test.jsonl")
    files += ("task.label_words=[a,b]", "task.dev_size=5")
    arguments = _finished_sweep(tmp_path / "runs", files)
    _resume(arguments)
    assert _resume(arguments)[2] == 0
    with data.open("a") as fh:
        fh.write('{"inputs": "new", "outputs": "a"}\n')
    _, launched, planned = _resume(arguments)
    assert planned == 1 and len(launched) == 6


def _data(tmp_path, *names: str) -> list[str]:
    """Train files of the same 30 rows (`names`) and a test file: task=local settings for each train file."""
    rows = "".join(f'{{"inputs": "train {i}", "outputs": "{"ab"[i % 2]}"}}\n' for i in range(30))
    for name in names:
        (tmp_path / name).write_text(rows)
    (tmp_path / "test.jsonl").write_text(rows.replace("train", "test"))
    trains = ",".join(str(tmp_path / name) for name in names)
    return [
        "task=local",
        f"task.files.train={trains}",
        f"task.files.test={tmp_path}/test.jsonl",
        "task.dev_size=5",
    ]


def test_every_runs_data_files_key_the_memo_duplicates_too(tmp_path):
    """R38 X1: two train files of the same bytes make the same runs (duplicates merged); the memo keyed the
    files of the runs the plan kept only, so an edit to the other file was not seen."""
    arguments = _finished_sweep(tmp_path / "runs", tuple(_data(tmp_path, "a.jsonl", "b.jsonl")))
    first, launched, planned = _resume(arguments)
    assert planned == 1 and not launched and sum(dups for *_, dups, _ in first) == 6
    assert _resume(arguments)[2] == 0
    with (tmp_path / "b.jsonl").open("a") as fh:
        fh.write('{"inputs": "new", "outputs": "a"}\n')
    _, launched, planned = _resume(arguments)
    assert planned == 1 and len(launched) == 6  # b's runs are other runs now
    (tmp_path / "b.jsonl").unlink()
    with pytest.raises(Exception, match="b.jsonl"):
        _resume(arguments)  # the plan refuses a missing file, as it would without a memo


def test_a_data_file_edited_while_the_launch_plans_gives_the_next_launch_another_key(tmp_path, monkeypatch):
    """R38 X2: the memo fingerprinted the files after the plan: an edit during a long plan kept the new
    bytes' fingerprint beside ids hashed from the old ones."""
    arguments = _finished_sweep(tmp_path / "runs", tuple(_data(tmp_path, "a.jsonl")))
    real_plan = sweeps.plan

    def edited_while_planning(*args, **kwargs):
        with (tmp_path / "a.jsonl").open("a") as fh:
            fh.write('{"inputs": "new", "outputs": "a"}\n')
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(sweeps, "plan", edited_while_planning)
    sweeps.run_sweep(arguments, None, compose, lambda todo: None)
    monkeypatch.setattr(sweeps, "plan", real_plan)
    assert _memos(tmp_path / "runs" / "study") == []  # R38 Y2: the files moved under the plan: none kept
    _, launched, planned = _resume(arguments)
    assert planned == 1 and len(launched) == 6  # the runs of the new bytes: never trained


def _own_conf(tmp_path) -> Path:
    """A config dir of one's own (hydra.searchpath): task=mine pulls a group conf/ lacks, data (train a or b),
    and a top-level group of its own, extra."""
    conf = tmp_path / "conf"
    for group in ("task", "data", "extra"):
        (conf / group).mkdir(parents=True)
    rows = "".join(f'{{"inputs": "x {i}", "outputs": "{"ab"[i % 2]}"}}\n' for i in range(30))
    for name in ("a", "b", "t"):
        (tmp_path / f"{name}.jsonl").write_text(rows.replace("x ", f"{name} "))
    (conf / "task" / "mine.yaml").write_text("defaults:\n  - /data@_here_: small\n  - _self_\n")
    for option, train in (("small", "a"), ("big", "b")):
        files = f"{{train: {tmp_path}/{train}.jsonl, test: {tmp_path}/t.jsonl}}"
        (conf / "data" / f"{option}.yaml").write_text(
            f"name: local\nsource: files\nfiles: {files}\nsplits: {{train: train, test: test}}\n"
            "fields: [inputs]\nlabel_field: outputs\nlabel_words: [a, b]\nlabel_format: word\n"
            "metric: accuracy\ndev_size: 5\n"
        )
    (conf / "extra" / "one.yaml").write_text("note: 1\n")
    return conf


def test_a_group_of_ones_own_config_dir_keys_the_memo_or_keeps_none(tmp_path):
    """R38 Y1: `data@task=big` (a group conf/ lacks, with a package) was taken for a value, so the key never
    saw the option's YAML nor the file it names: an edit to that file answered "launching 0" where a plan
    launches 6. A group@package is a group choice; a key the composition lacks keeps no memo."""
    conf = _own_conf(tmp_path)
    search = f"hydra.searchpath=[file://{conf}]"
    arguments = _finished_sweep(tmp_path / "runs", (search, "task=mine", "data@task=big,small"))
    assert _resume(arguments)[2] == 1 and _resume(arguments)[2] == 0
    with (tmp_path / "b.jsonl").open("a") as fh:
        fh.write('{"inputs": "new", "outputs": "a"}\n')
    _, launched, planned = _resume(arguments)
    assert planned == 1 and len(launched) == 6  # the big runs' train file changed

    from launchers.expand import expand
    from launchers.planning import CachedComposer

    own_group = expand([f"paths.runs_root={tmp_path}", search, "extra=one", "seed=0,1"])
    assert plan_memo.key(own_group, CachedComposer(compose)) is None  # Hydra composes such runs whole


def test_a_memo_answers_only_for_its_own_key_and_runs(tmp_path):
    """R38 X3: a memo renamed to another launch's key (a group-writable plans dir), or cut short, answered
    for runs it never planned; it is now tied to its key and its number of runs."""
    import pyarrow.parquet as pq

    from launchers.expand import expand
    from launchers.planning import CachedComposer

    arguments = _finished_sweep(tmp_path)
    _resume(arguments)
    [memo] = _memos(tmp_path / "study")
    more = [*arguments[:3], "seed=0,1,2"]
    os.rename(memo, memo.with_name(f"{plan_memo.key(expand(more), CachedComposer(compose)).text}.parquet"))
    _, launched, planned = _resume(more)
    assert planned == 1 and len(launched) == 3
    _resume(arguments)
    for rows in (3, 0):
        [memo] = [
            m
            for m in _memos(tmp_path / "study")
            if m.stem == plan_memo.key(expand(arguments), CachedComposer(compose)).text
        ]
        table = pq.read_table(memo)
        pq.write_table(table.slice(0, rows), memo)
        assert _resume(arguments)[2] == 1  # planned, and kept whole again
        assert _resume(arguments)[2] == 0


def test_a_resume_with_a_run_left_stops_reading_the_index_at_it(tmp_path, monkeypatch):
    """R38 X4: where a run of the launch is not COMPLETED the plan reads the sweep anyway: the memo's check
    stops at the first such run instead of stat'ing every run first."""
    monkeypatch.setattr(index, "BATCH", 2)
    arguments = _finished_sweep(tmp_path)
    _resume(arguments)
    sweep = tmp_path / "study"
    RunDir(sweep / sorted(p.name for p in sweep.iterdir() if not p.name.startswith("."))[0]).set_status(
        "FAILED"
    )
    batches = []
    stats = index._stats
    monkeypatch.setattr(index, "_stats", lambda *args: batches.append(len(args[1])) or stats(*args))
    runs = {p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert plan_memo._all_completed(sweep, runs) is False
    assert batches == [2]  # of 3 batches of 2 runs


def test_a_memo_others_could_write_is_not_read_and_few_are_kept(tmp_path, monkeypatch):
    arguments = _finished_sweep(tmp_path)
    _resume(arguments)
    [memo] = _memos(tmp_path / "study")
    memo.chmod(0o664)  # group-writable: a shared sweep dir's member could have written it
    assert _resume(arguments)[2] == 1
    [memo] = _memos(tmp_path / "study")
    memo.write_bytes(memo.read_bytes()[:100])  # cut short: planned, and kept anew
    assert _resume(arguments)[2] == 1 and _resume(arguments)[2] == 0
    monkeypatch.setattr(plan_memo, "KEPT", 2)
    for order in range(3):
        _resume([*arguments[order:], *arguments[:order]])
    assert len(_memos(tmp_path / "study")) == 2


def test_a_budget_sweep_keeps_no_memo(tmp_path):
    """A `budget=` run's id holds what the solver chose on the meta device, from model configs the key does
    not hash: such a plan is never kept."""
    from launchers.expand import expand
    from launchers.planning import CachedComposer, plan

    arguments = [f"paths.runs_root={tmp_path}", "sweep_name=study", "method=lora", "budget=ln", "seed=0,1"]
    overrides = expand(arguments)
    composer = CachedComposer(compose)
    key = plan_memo.key(overrides, composer)
    runs = plan(overrides, compose, composer=composer)
    assert key is not None and runs
    plan_memo.save(key, runs, [[] for _ in runs], overrides)
    assert _memos(tmp_path / "study") == []


def test_no_memo_where_a_value_interpolates_or_the_memo_is_off(tmp_path, monkeypatch):
    from launchers.expand import expand
    from launchers.planning import CachedComposer

    arguments = [f"paths.runs_root={tmp_path}", "seed=0,1", "method.lr=${optimizer.lr}"]
    assert plan_memo.key(expand(arguments), CachedComposer(compose)) is None
    arguments = _finished_sweep(tmp_path)
    monkeypatch.setenv(plan_memo.ENV, "0")
    _resume(arguments)
    assert _resume(arguments)[2] == 1 and _memos(tmp_path / "study") == []


def test_the_memo_warns_of_the_launchs_own_runs_only(tmp_path, caplog):
    """R38 Y3: a finished run whose config.yaml was edited is warned of at every resume (from its index
    entry); the memo's check warned of every such run of the sweep dir, another command's too."""
    from launchers.report import read_info, status_table
    from petsweep.run import rehash

    _finished_sweep(tmp_path)
    sweep = tmp_path / "study"
    names = sorted(p.name for p in sweep.iterdir() if not p.name.startswith("."))
    for name in names[:2]:
        with (sweep / name / "config.yaml").open("a") as fh:
            fh.write("# a note\n")
    status_table(sweep)  # reads the two edited runs and keeps their warnings in the index
    index.Snapshot(sweep, read_info=read_info).compact()
    rehash._WARNED.clear()
    caplog.clear()
    assert plan_memo._all_completed(sweep, set(names[1:]))
    warned = [r.getMessage() for r in caplog.records if "config.yaml was changed" in r.getMessage()]
    assert len(warned) == 1 and names[1] in warned[0], warned
