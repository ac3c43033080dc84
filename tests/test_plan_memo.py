"""A resume of a finished sweep from its plan memo (launchers.plan_memo, #25): it answers as a plan does,
plans no run, and plans again whenever anything a plan's outcome depends on moved, or a run is not done."""

from __future__ import annotations

import os
from collections import Counter

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


def test_a_memo_others_could_write_is_not_read_and_few_are_kept(tmp_path, monkeypatch):
    arguments = _finished_sweep(tmp_path)
    _resume(arguments)
    [memo] = _memos(tmp_path / "study")
    memo.chmod(0o664)  # group-writable: a shared sweep dir's member could have written it
    assert _resume(arguments)[2] == 1
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
