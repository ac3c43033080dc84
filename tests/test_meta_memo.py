"""The meta-device memos (petsweep/model/memo.py): one key holding all that a meta-device count reads of a
run, answers handed out as copies, and no dict in model/ that functions write into (#23: no state between
calls but memos that cannot change an answer)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from petsweep.compose import compose
from petsweep.model.memo import TASK_SHAPE, meta_key
from petsweep.model.params import check_on_meta
from petsweep.model.resolve import resolve_run

PETSWEEP = Path(__file__).resolve().parents[1] / "petsweep"
BASE = ["backbone=minilm-l1", "method=lora"]


def _key(*overrides: str) -> str:
    return meta_key(resolve_run(compose([*BASE, *overrides]))).text


@pytest.mark.parametrize(
    "changed",
    [
        "backbone=minilm-l2",
        "backbone=t5-small",  # another family
        "backbone.dtype=bfloat16",
        "task.max_length=128",  # the input length (prompt positions, DePT's s)
        "task=stsb",  # another kind (regression) and number of labels
        "method.r=4",
        "method.train_head=false",  # the head's parameters leave the trainable count
        "method=adapter",
    ],
)
def test_a_meta_key_changes_with_what_a_count_reads(changed):
    assert _key(changed) != _key()


def test_runs_that_count_alike_share_a_key():
    """The optimizer's settings, the seed and the trainer reach no count: one key, one meta-device build."""
    assert _key() == _key("method.lr=0.3") == _key("method.adam_eps=1e-6") == _key("seed=7")
    assert _key() == _key("trainer.max_steps=3", "trainer.head_lr=0.5")


def test_an_apet_key_holds_its_budget_and_where_it_may_fall():
    apet = ["method=apet", "apet.scale=4096"]
    assert _key(*apet) != _key(*apet, "apet.seed=1") != _key("method=apet", "apet.scale=4097")
    assert _key(*apet) != _key(*apet, "apet.granularity=tensor")


def _task_fields_read(tree: ast.AST) -> set[str]:
    """The attributes read off a name or attribute called `task` (ctx.task.max_length, task.kind)."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and (
            (isinstance(node.value, ast.Name) and node.value.id == "task")
            or (isinstance(node.value, ast.Attribute) and node.value.attr == "task")
        )
    }


def test_the_methods_read_no_task_field_the_key_leaves_out():
    """A method told the whole task (AttachContext.task) could read a field the key does not hold, and the
    memo would answer a run with another run's count: every field that the methods, the meta build and the
    solver read is in TASK_SHAPE (budget.py's width memo keyed no task length or kind before the one key).
    objectives.py is not on the way of a count: it reads the decoding and the target length."""
    counting = ("params.py", "budget.py", "backbones.py", "heads.py")
    files = [*(PETSWEEP / "methods").rglob("*.py"), *(PETSWEEP / "model" / name for name in counting)]
    read = set().union(*(_task_fields_read(ast.parse(f.read_text())) for f in files))
    assert read and read <= set(TASK_SHAPE), f"add to memo.TASK_SHAPE: {sorted(read - set(TASK_SHAPE))}"


def test_an_answer_changed_by_its_caller_is_not_the_next_answer():
    """The memos hand out copies: before, check_on_meta and solve returned the object they kept."""
    overrides = [*BASE, "budget=bitfit"]
    spec = resolve_run(compose(overrides))
    counts = check_on_meta(spec)
    first = counts.as_dict()
    counts.pet_params = 0
    counts.count_notes.append("changed by a caller")
    assert check_on_meta(spec).as_dict() == first
    knobs = dict(spec.budget.knobs)
    spec.budget.knobs["r"] = 99
    assert resolve_run(compose(overrides)).budget.knobs == knobs


def _module_dicts(tree: ast.Module) -> set[str]:
    """Names a module binds, at its top level, to a dict, list or set display."""
    containers = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
    names = set()
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and isinstance(getattr(node, "value", None), containers):
            names.add(target.id)
    return names


def _written_in_functions(tree: ast.Module, names: set[str]) -> set[str]:
    """Those of `names` a function writes into (name[k] = v, name.append/update/setdefault/...)."""
    writes = ("append", "extend", "update", "setdefault", "add", "pop", "clear", "insert")
    found = set()
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                found |= {
                    t.value.id
                    for t in targets
                    if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)
                }
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                if node.func.attr in writes and isinstance(owner, ast.Name):
                    found.add(owner.id)
    return found & names


def test_no_module_dict_of_the_model_floor_is_written_between_calls():
    """model/'s memos are functools.lru_cache on memo.MetaKey (bounded, cache_clear()), not module dicts
    that functions fill (params._CHECKED, budget._SOLVED, _COUNTED, _THIN were)."""
    written = {
        f"{f.name}: {name}"
        for f in sorted((PETSWEEP / "model").glob("*.py"))
        for tree in [ast.parse(f.read_text())]
        for name in _written_in_functions(tree, _module_dicts(tree))
    }
    assert not written, written
