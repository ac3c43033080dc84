"""Sweep bookkeeping that scales (#25): plan costs from statistics computed once equal the per-run path."""

from __future__ import annotations

import statistics

from launchers.costing import DEFAULT_FLOPS, DEFAULT_STARTUP_S, Calibration, Measured, device_kind, estimate
from petsweep.config import compose
from petsweep.identity import plain


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
