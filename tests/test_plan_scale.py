"""Sweep bookkeeping that scales (#25): plan costs from statistics computed once equal the per-run path."""

from __future__ import annotations

import statistics

from launchers.costing import DEFAULT_FLOPS, DEFAULT_STARTUP_S, Calibration, Measured, device_kind, estimate
from petsweep.compose import compose
from petsweep.spec.identity import plain


def _reference(cfg: dict, total_params: int, measured: list[Measured]) -> tuple[float, str, bool]:
    """The straightforward estimate (before #25): every planned run filters every finished run."""
    from launchers.costing import _candidates, _frozen_factor, _slots, eval_examples

    device, backbone, method = device_kind(cfg), cfg["backbone"]["name"], cfg["method"]["name"]
    max_len = cfg["task"]["max_length"]
    started = [m.startup_s for m in measured if (m.device, m.backbone) == (device, backbone) and m.startup_s]
    on_kind = [m.startup_s for m in measured if m.device == device and m.startup_s]
    if started:
        startup, where = statistics.median(started), f"start-up measured on {backbone}"
    elif on_kind:
        startup, where = statistics.median(on_kind), f"start-up measured on {device}"
    else:
        startup, where = DEFAULT_STARTUP_S[device], "default start-up"
    same = [m for m in measured if (m.device, m.backbone, m.method) == (device, backbone, method)]
    if same and all(m.eval_s_per_slot is not None for m in same):
        train = _slots(cfg) * statistics.median(m.train_s_per_slot for m in same)
        evaluation = eval_examples(cfg) * max_len * statistics.median(m.eval_s_per_slot for m in same)
        basis = f"measured ({len(same)} run(s) of {backbone}/{method} on {device}), {where}"
        return train + evaluation + startup, basis, False
    on_device = [m for m in measured if m.device == device]
    rate = statistics.median(m.flops_per_s for m in on_device) if on_device else DEFAULT_FLOPS[device]
    fills = [m.fill for m in measured if m.task == cfg["task"]["name"]]
    fill = statistics.median(fills) if fills else 1.0
    train_flops = _frozen_factor(method) * total_params * _slots(cfg) * fill
    eval_flops = 2 * total_params * eval_examples(cfg) * max_len * fill * _candidates(cfg)
    basis = f"FLOPs at {rate:.2g}/s on {device}" + (" (measured rate)" if on_device else " (default rate)")
    return (train_flops + eval_flops) / rate + startup, f"{basis}, {where}", True


def _finished() -> list[Measured]:
    runs = []
    for i in range(60):
        runs.append(
            Measured(
                device=("cpu", "cuda")[i % 2],
                backbone=("minilm-l1", "minilm-l6", "t5-small")[i % 3],
                method=("lora", "bitfit", "adapter", "apet")[i % 4],
                task=("bbc_news", "rte")[i % 5 % 2],
                train_s_per_slot=1e-5 * (1 + (i * 7) % 11),
                # minilm-l6/bitfit on cpu has a run from before evaluation times were recorded: FLOPs basis
                eval_s_per_slot=None if i == 13 else 1e-6 * (1 + (i * 5) % 13),
                flops_per_s=1e10 * (1 + (i * 3) % 17),
                fill=0.3 + 0.01 * i,
                # start-up: cpu runs have one (gpt2 none: the cpu median); cuda runs predate it (default)
                startup_s=None if i % 2 else 5.0 + i % 7,
            )
        )
    return runs


def test_plan_costs_from_statistics_computed_once_equal_the_per_run_path(monkeypatch):
    measured = _finished()
    cfgs = []
    for backbone in ("minilm-l1", "minilm-l6", "t5-small", "gpt2"):
        for method in ("lora", "bitfit", "adapter", "prompt"):
            for task in ("bbc_news", "rte"):
                data = plain(compose([f"backbone={backbone}", f"method={method}", f"task={task}"]))
                for device in ("cpu", "cuda"):
                    cfgs.append({**data, "trainer": {**data["trainer"], "device": device}})
    calibration = Calibration(measured)
    bases, starts = set(), set()
    for cfg in cfgs:
        new = estimate(cfg, 10**7, calibration)
        assert new == _reference(cfg, 10**7, measured), (cfg["backbone"]["name"], cfg["method"]["name"])
        assert new == estimate(cfg, 10**7, measured)  # a plain list still works
        bases.add((new[1].split(" ")[0], new[2]))
        starts.add(new[1].rsplit(", ", 1)[1])
    assert bases == {("measured", False), ("FLOPs", True)}  # both bases were compared
    where = {s.split(" on ")[-1] for s in starts}
    assert where == {"minilm-l1", "minilm-l6", "t5-small", "cpu", "default start-up"}, starts
    # the medians are taken when the calibration is built, not per planned run
    calls = []
    real = statistics.median
    monkeypatch.setattr(statistics, "median", lambda values: calls.append(1) or real(values))
    for cfg in cfgs:
        estimate(cfg, 10**7, calibration)
    assert not calls


def _reference_plan(run_overrides: list[list[str]]) -> list[tuple]:
    """The per-run path (before #25): Hydra composes every run, which is validated, counted and hashed."""
    from petsweep.model.params import check_on_meta
    from petsweep.model.resolve import resolve_run, run_dir, run_hash

    rows = {}
    for overrides in run_overrides:
        cfg = plain(compose(overrides))
        spec = resolve_run(cfg)
        counts = check_on_meta(spec)
        digest = run_hash(cfg)
        budget = {"budget": spec.budget.as_dict()} if spec.budget is not None else {}
        rows.setdefault(digest, (digest, run_dir(cfg), cfg, {**counts.as_dict(), **budget}))
    return list(rows.values())


MIXED = [
    ["method=prompt,prefix", "method.length=1,4", "method.lr=0.1,0.3", "seed=range(0,3)"],
    ["backbone=minilm-l1,minilm-l3", "method=lora,bitfit", "seed=0,1", "trainer.max_steps=10,20"],
    ["apet.scale=lora,4096", "apet.seed=1,2", "seed=0,1"],
    ["method=lora,adapter", "budget=bitfit", "seed=0,1,2"],
    ["method=lora", "method.r=4,8", "seed=0,0,1"],  # a duplicate config: planned once
]


def test_plan_validates_once_per_config_but_its_seed_and_equals_the_per_run_path(tmp_path, monkeypatch):
    """#25: a plan validates (resolve_run, the meta-device attach) once per distinct config but for its seed,
    builds each meta model once over learning rates, hashes each run once, and shares with the cached
    composition what no override writes; hashes, paths, configs and counts are those of the per-run path."""
    import petsweep.model.backbones
    import petsweep.model.params
    import petsweep.model.resolve
    from launchers.expand import expand
    from launchers.planning import plan

    calls = {"resolve_run": 0, "build_on_meta": 0, "semantic_config": 0}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(petsweep.model.resolve, "resolve_run")
    counted(petsweep.model.backbones, "build_on_meta")
    counted(petsweep.model.resolve, "semantic_config")
    petsweep.model.params._counted_on_meta.cache_clear()  # counted afresh: earlier tests counted prompt
    runs = plan(
        expand(["method=prompt", "method.lr=0.1,0.3", "seed=range(0,20)", f"paths.runs_root={tmp_path}"]),
        compose,
    )
    assert len(runs) == 40 and len({r.run_hash for r in runs}) == 40
    assert calls["resolve_run"] == 2  # one per learning rate (40 before)
    assert calls["build_on_meta"] == 1  # counts do not depend on the lr (2 before)
    assert calls["semantic_config"] <= 2 * 2  # a hasher per config, checked once (80 before: twice a run)
    monkeypatch.undo()

    for axes in MIXED:
        overrides = expand([*axes, f"paths.runs_root={tmp_path}", "sweep_name=mixed"])
        planned = plan(overrides, compose)
        reference = _reference_plan(overrides)
        assert [r.run_hash for r in planned] == [row[0] for row in reference], axes
        assert [r.path for r in planned] == [row[1] for row in reference]
        assert [r.cfg for r in planned] == [row[2] for row in reference]
        assert [{k: r.extra[k] for k in row[3]} for r, row in zip(planned, reference)] == [
            row[3] for row in reference
        ]
    # a run's config shares no dict it overrides with another run's
    a, b = plan(expand(["method=lora", "method.r=4,8", f"paths.runs_root={tmp_path}"]), compose)
    assert (a.cfg["method"]["r"], b.cfg["method"]["r"]) == (4, 8)


def test_a_bad_seed_is_one_line_where_its_config_was_validated_already(tmp_path):
    import pytest

    from launchers.expand import expand
    from launchers.planning import plan
    from petsweep.spec.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        plan(expand(["seed=0,abc,true", f"paths.runs_root={tmp_path}"]), compose)
    assert str(err.value).startswith("seed='abc': must be an integer (in run: seed=abc"), str(err.value)
    assert "\n" not in str(err.value)


def test_seeded_run_hash_is_run_hash_for_every_seed():
    from petsweep.model.resolve import run_hash, seeded_run_hash

    for overrides in (
        [],
        ["method=prompt", "method.lr=0.1"],
        ["method=apet", "apet.scale=lora", "apet.seed=3"],
        ["method=lora", "budget=bitfit"],
        ["backbone=t5-small", "task=rte", "method=prefix"],
    ):
        cfg = plain(compose(overrides))
        hasher = seeded_run_hash(cfg)
        for seed in (0, 1, 7, 12345, 2**40, -3):
            assert hasher(seed) == run_hash({**cfg, "seed": seed}), (overrides, seed)
    assert hasher(0) != hasher(1)


def test_a_resume_composes_once_per_choice_of_groups_and_keeps_its_one_line_errors(monkeypatch, tmp_path):
    """#25: run.py -m's pre-flight composed once per value of every axis (seed=range(0,1000): 1,000
    compositions) before the plan validated every run again. #23: a sweep of petsweep's sweepers is composed
    and validated by its plan alone (the pre-flight composes none of it), once per choice of groups; the same
    bad values still fail in one line, naming the run."""
    import pytest

    import petsweep.compose
    from launchers.expand import expand
    from launchers.planning import plan
    from petsweep.cli import preflight
    from petsweep.spec.errors import ConfigError

    composed = []
    real = petsweep.compose.compose

    def counted(overrides, config_name="config", with_hydra=False):
        composed.append(with_hydra)
        return real(overrides, config_name=config_name, with_hydra=with_hydra)

    monkeypatch.setattr(petsweep.compose, "compose", counted)
    axes = ["method=lora,bitfit", "method.lr=0.1,0.2", "seed=range(0,40)"]
    preflight(["-m", *axes])
    assert composed == []
    assert len(plan(expand([*axes, f"paths.runs_root={tmp_path}"]), counted)) == 160
    assert len(composed) == 2  # one per method (43 in the pre-flight before, then the plan's)
    for argv, error in (
        (["seed=0,1,abc"], "seed='abc': must be an integer"),
        (["method.lr=0.1,-1", "seed=0,1"], "method.lr=-1: the learning rate must be positive"),
        (["method=lora,nope"], "method='nope': unknown option; choose one of:"),
        (["method.rr=1,2", "seed=0,1"], "method.rr='1': unknown key; valid keys there:"),
    ):
        preflight(["-m", *argv])  # petsweep's sweeper: nothing to refuse before Hydra starts
        with pytest.raises(ConfigError) as err:
            plan(expand([*argv, f"paths.runs_root={tmp_path}"]), real)
        assert str(err.value).startswith(error), str(err.value)
        assert "\n" not in str(err.value) and "in run:" in str(err.value)
