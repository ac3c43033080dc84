"""Every shipped YAML composes and validates; methods are found by themselves; identity ignores locations."""

from __future__ import annotations

import dataclasses

import pytest

from petsweep import CONF_DIR
from petsweep.compose import compose
from petsweep.methods import METHODS
from petsweep.model.resolve import resolve_run, run_dir, run_hash
from petsweep.records.status import State
from petsweep.tasks.sources import SOURCES


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("backbone", _options("backbone"))
def test_every_backbone_composes(backbone):
    spec = resolve_run(compose([f"backbone={backbone}"]))
    assert spec.backbone.name == backbone
    arch = spec.backbone.module_map()  # from petsweep.spec.architectures, once per model_type
    assert {"q", "v", "o", "ffn_in", "ffn_out", "norms", "blocks"} <= set(arch.modules) | set(arch.fused)


@pytest.mark.parametrize("task", _options("task"))
def test_every_task_composes(task):
    family = "encoder" if task not in ("nq_open", "samsum", "multi_news") else "decoder"
    backbone = "minilm-l6" if family == "encoder" else "gpt2"
    spec = resolve_run(compose([f"task={task}", f"backbone={backbone}"]))
    assert spec.task.name == task and spec.task.source in SOURCES.names()
    for template in ["plain", *spec.task.templates]:
        resolve_run(compose([f"task={task}", f"backbone={backbone}", f"task.template={template}"]))


@pytest.mark.parametrize("method", _options("method"))
def test_every_method_yaml_has_a_module_and_states_every_key(method):
    cfg = compose([f"method={method}"])
    config_cls = METHODS.get(method).Config
    assert set(cfg.method) == {f.name for f in dataclasses.fields(config_cls)}
    assert resolve_run(cfg).method.config.name == method


@pytest.mark.parametrize("method", _options("method"))
def test_every_method_key_has_help_and_its_yaml_states_only_differences(method):
    import yaml

    from petsweep.methods.base import field_help
    from petsweep.spec.config import dataclass_defaults

    config_cls = METHODS.get(method).Config
    assert all(field_help(config_cls).values()), field_help(config_cls)
    stated = yaml.safe_load((CONF_DIR / "method" / f"{method}.yaml").read_text())
    values = dataclass_defaults(config_cls)
    entries = stated.pop("defaults")
    assert entries[0] == f"/base/method/{method}@_here_" and entries[-1] == "_self_"
    nested = {p.name for p in (CONF_DIR / "method").iterdir() if p.is_dir()}  # e.g. OPF's shapes presets
    assert all(
        isinstance(d, dict) and (next(iter(d)).startswith("override /") or next(iter(d)) in nested)
        for d in entries[1:-1]
    )
    assert all(value != values[key] for key, value in stated.items())


def test_every_registered_method_has_a_yaml():
    assert METHODS.names() == _options("method")


@pytest.mark.parametrize("group", ["apet", "trainer", "logger", "paths"])
def test_other_groups_compose(group):
    for option in _options(group):
        with_method = ["method=apet"] if group == "apet" and option != "none" else []  # a budget is APET's
        resolve_run(compose([f"{group}={option}", *with_method]))


def test_run_identity_ignores_locations_and_threads():
    base = compose([])
    same = compose(
        ["paths.runs_root=/elsewhere", "logger=wandb", "sweep_name=study", "trainer.num_threads=1"]
    )
    assert run_hash(base) == run_hash(same)
    assert run_dir(same).parts[-2:-1] == ("study",) and run_dir(base).name == run_dir(same).name
    for change in ("seed=1", "method.r=4", "trainer.max_steps=7", "task.k_shot=4", "backbone=minilm-l3"):
        assert run_hash(compose([change])) != run_hash(base), change
    assert run_dir(base).name.startswith("minilm-l6-lora-bbc_news-s0-")


@pytest.mark.parametrize("preset", _options("sweep"))
def test_every_sweep_preset_expands_and_plans(preset, tmp_path):
    from launchers.expand import expand
    from launchers.planning import plan
    from petsweep.cli import sweep_arguments

    arguments, zips = sweep_arguments([f"+sweep={preset}", f"paths.runs_root={tmp_path}"])
    runs = expand(arguments, zips)
    assert len(runs) > 1 and all(f"+sweep={preset}" in r for r in runs)  # a grid, not one run
    planned = plan(runs[:: max(1, len(runs) // 12)], compose)  # a spread of the grid: every axis value varies
    assert all(p.status == State.NEW and p.path.parent.name == p.cfg["sweep_name"] for p in planned)


@pytest.mark.parametrize("launcher", _options("launcher"))
def test_every_launcher_preset_composes(launcher):
    hydra_launcher = compose([f"launcher={launcher}"], with_hydra=True).hydra.launcher
    assert hydra_launcher._target_.startswith("hydra_plugins.petsweep_plugins.launcher.")
