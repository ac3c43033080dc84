"""Task transfer: a finished run's trained weights scored on another task's test split, nothing retrained.

    petsweep transfer runs/<sweep> --task bbc_headlines

For each COMPLETED run, the backbone is loaded and the run's method applied exactly as in the run (its own
config.yaml), its best weights (pet_weights.safetensors, task head included) are loaded, and the other task
is scored. The result goes to `<run dir>/transfer/<task>.json`, which `analysis.collect` reads as
`transfer.<task>.*` columns. The run's own files are never touched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from omegaconf import OmegaConf
from safetensors.torch import load_file

from petsweep.compose import compose
from petsweep.model.resolve import resolve_run
from petsweep.records import index
from petsweep.records.retention import require_weights
from petsweep.records.status import COMPLETED, RunDir, find_runs, write_json
from petsweep.run.rehash import identity_check
from petsweep.spec.config import RunSpec
from petsweep.spec.errors import ConfigError, PetsweepError
from petsweep.train.checkpoint import load_trainable


def transfer_file(run_dir: Path, task: str) -> Path:
    return Path(run_dir) / "transfer" / f"{task}.json"


def task_node(task: str, overrides: tuple[str, ...] = ()) -> dict:
    """The evaluated task's config, composed once: an unknown task or key fails here, listing the choices."""
    for override in overrides:
        if not override.startswith("task."):
            raise ConfigError(
                "--override", override, "only task.* keys of the evaluated task can be set here"
            )
    return OmegaConf.to_container(compose([f"task={task}", *overrides]).task, resolve=True)


def _specs(run_dir: Path, target_task: dict, label_map: dict[str, str] | None = None):
    """The run as it trained, the same run with the other task, and how the head's classes map onto the other
    task's (None: the same classes): all validated, before any loading."""
    config = RunDir(run_dir).config()
    source = with_label_words(resolve_run(config))
    target = with_label_words(resolve_run({**config, "task": target_task}))
    return source, target, fit_check(source, target, label_map)


def with_label_words(spec: RunSpec) -> RunSpec:
    """Local-file tasks take their classes from the data when they run: fill them so before any check."""
    if spec.task.kind == "classification" and not spec.task.label_words:
        from petsweep.tasks import prepare_task

        prepare_task(spec.task, spec.seed)
    return spec


def fit_check(source: RunSpec, target: RunSpec, label_map: dict[str, str] | None = None) -> list[int] | None:
    """Weights trained on one task can be scored on another only if the output side fits.

    An encoder's head predicts the source task's classes, so the target task must have the same label words,
    or `label_map` (target word -> source word, one to one) must say which head class stands for which target
    class. Returns the target class id of each head class where the orders differ, else None.
    """
    if source.backbone.family != "encoder":
        return None  # text-to-text: the verbalizer is the target task's own, any task is scored the same way
    if target.task.kind != source.task.kind or target.task.num_labels != source.task.num_labels:
        raise ConfigError(
            "--task",
            target.task.name,
            f"an encoder's trained head has {source.task.num_labels} output(s) for {source.task.name}; "
            f"{target.task.name} is {target.task.kind} with {target.task.num_labels}: choose a task "
            f"with the same {source.task.num_labels} classes",
        )
    if source.task.kind != "classification":
        return None
    source_words, target_words = (
        [str(w) for w in source.task.label_words],
        [str(w) for w in target.task.label_words],
    )
    if not label_map:
        if source_words != target_words:
            raise ConfigError(
                "--task",
                target.task.name,
                f"its classes {target_words} are not the head's {source_words} ({source.task.name}); "
                f"say which is which with --label-map TARGET=SOURCE (one per class)",
            )
        return None
    if sorted(label_map) != sorted(target_words) or sorted(label_map.values()) != sorted(source_words):
        raise ConfigError(
            "--label-map",
            ",".join(f"{k}={v}" for k, v in label_map.items()),
            f"must map each of {target.task.name}'s classes {target_words} to a different one of "
            f"{source.task.name}'s {source_words}",
        )
    return [target_words.index(next(t for t, s in label_map.items() if s == word)) for word in source_words]


def evaluate_transfer(
    run_dir: str | Path, task: str, overrides: tuple[str, ...] = (), label_map: dict[str, str] | None = None
) -> dict:
    """Score run `run_dir`'s trained weights on `task`'s test split; returns (and writes) the record.

    Args:
        overrides: task.* overrides of the evaluated task (e.g. task.test_size=100), as run.py takes them.
        label_map: target label word -> the run's label word, where the tasks name their classes differently.
    """
    run = RunDir(run_dir)
    result = run.result()
    if run.state() != COMPLETED or not result:
        raise PetsweepError(f"{run_dir}: not COMPLETED; only finished runs have trained weights to transfer")
    require_weights(run.path)  # trainer.keep=records (or petsweep prune) removed them: one line says so
    return _evaluate(
        run.path,
        result,
        *_specs(run.path, task_node(task, tuple(overrides)), label_map),
        tuple(overrides),
        label_map,
    )


def _evaluate(
    run_dir: Path,
    result: dict,
    source: RunSpec,
    target: RunSpec,
    head_to_target: list[int] | None,
    overrides: tuple[str, ...],
    label_map: dict[str, str] | None = None,
) -> dict:
    """Load the run's trained model, score the target task's test split, write transfer/<task>.json."""
    from petsweep.model.backbones import load_pretrained
    from petsweep.model.objectives import make_objective
    from petsweep.model.params import attach_method
    from petsweep.tasks import prepare_task
    from petsweep.train.loop import evaluate, pick_device, use_bf16
    from petsweep.train.seeding import seed_everything

    started = time.time()
    seed_everything(source.seed)
    data = prepare_task(target.task, source.seed)
    model, tokenizer = load_pretrained(source.backbone, source.task.num_labels)
    model = attach_method(model, source, tokenizer=tokenizer, training=False)[0].model
    load_trainable(model, load_file(run_dir / "pet_weights.safetensors"))
    device = pick_device(source.trainer)
    model.to(device)
    objective = make_objective(source.backbone.family, target.task, data, tokenizer)
    scores = evaluate(
        model,
        objective,
        objective.encode(data.test),
        data.test,
        target,
        device,
        use_bf16(source.trainer, device),
        remap=head_to_target,
    )
    record = {
        "run_id": result["run_id"],
        "source_task": source.task.name,
        "task": target.task.name,
        "metric": target.task.metric,
        "score": scores[target.task.metric],
        "metrics": scores,
        "random_guess_score": data.random_guess,
        "test_examples": len(data.test),
        "overrides": list(overrides),
        "label_map": label_map or None,
        "eval_time_s": time.time() - started,
    }
    path = transfer_file(run_dir, target.task.name)
    path.parent.mkdir(exist_ok=True)
    write_json(path, record)
    os.utime(run_dir)  # the run dir's mtime moves: a verified read of the sweep index reads its row again
    index.record(RunDir(run_dir), identity_check)  # its line (with its row) tells a quick read (R39 W3, V5)
    return record


def transfer_sweeps(
    sweep_dirs: list[str | Path],
    tasks: list[str],
    overrides: tuple[str, ...] = (),
    redo: bool = False,
    label_map: dict[str, str] | None = None,
):
    """Evaluate every COMPLETED run of the sweeps on each task other than its own.

    Yields (run dir, task, record), record None where an earlier score is kept (unless `redo`). Every pair
    is validated before anything is evaluated, so a bad --task costs nothing.
    """
    finished = {}  # run dir -> its result record (COMPLETED runs that have one)
    for sweep in sweep_dirs:
        for run_dir in find_runs(sweep):
            run = RunDir(run_dir)
            result = run.result() if run.state() == COMPLETED else None
            if result:
                finished[run_dir] = result
    nodes = {task: task_node(task, overrides) for task in tasks}  # composed once per task, not once per run
    # its own task is the run's test score already; every other pair is validated before any evaluation
    specs = {
        (d, t): _specs(d, nodes[t], label_map)
        for d, result in finished.items()
        for t in tasks
        if t != result["task"]
    }
    for run_dir, task in specs:  # weights removed by trainer.keep=records: one line, before any evaluation
        if redo or not transfer_file(run_dir, task).exists():
            require_weights(run_dir)
    for (run_dir, task), checked in specs.items():
        if transfer_file(run_dir, task).exists() and not redo:
            yield run_dir, task, None
        else:
            yield run_dir, task, _evaluate(run_dir, finished[run_dir], *checked, overrides, label_map)
