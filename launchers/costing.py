"""What a planned run will cost: calibrated from finished runs where there are any, from FLOPs where not.

Every estimate is training plus evaluation (dev evaluations while training, the test split and the train
subset at the end), per device kind (cpu, cuda):

1. measured: finished runs of the same device kind, backbone and method give seconds per token slot of
   training (batch x accumulation x max_length) and per example slot of evaluation; the planned run is
   scaled from them;
2. otherwise FLOPs: 6 (every weight trained: full) or 4 x params per trained token, 2 x params per evaluated
   token (times the label candidates a text-to-text model scores), at the FLOP/s that finished runs on that
   device kind achieved (any backbone), or at a default rate. Tokens per sequence are max_length times the
   fill that finished runs of the task measured (real tokens / padded slots), else max_length.
Both add the run's start-up (process start to its first step: imports, loading, attaching; issue #26: short
runs were estimated 5-8x low without it): the median of finished runs of the same device kind and backbone,
else of that device kind, else DEFAULT_STARTUP_S. `petsweep plan` calibrates from every finished run under the
runs root, not only the planned sweep's dir.
The basis is reported with each estimate; only the first is not marked as a guess (~).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from petsweep.spec.shape import run_shape

# about a third of an A100's bf16 peak; one run on 1-2 cores of the project machine
DEFAULT_FLOPS = {"cuda": 1e14, "cpu": 1.5e11}
# a run's start-up where no finished run measured one: MiniLM on the project machine took 10-60 s to its
# first step (imports, data, model); a GPU node's first CUDA call and larger models take longer
DEFAULT_STARTUP_S = {"cuda": 60.0, "cpu": 20.0}


@dataclass
class Measured:
    """One finished run, reduced to what scales: its config and its times."""

    device: str
    backbone: str
    method: str
    task: str
    train_s_per_slot: float
    eval_s_per_slot: float | None
    flops_per_s: float
    fill: float
    startup_s: float | None = None  # process (or warm worker's job) start to the first step


def device_kind(cfg: dict) -> str:
    """Where a planned run will train: the trainer's device, or for `auto`, a GPU if it asks for one or this
    machine has one."""
    device = cfg["trainer"].get("device", "auto")
    if device != "auto":
        return "cuda" if device.startswith("cuda") else "cpu"
    if run_shape(cfg).on_gpus:
        return "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _slots(cfg: dict) -> int:
    t = cfg["trainer"]
    return int(t["max_steps"] * t["batch_size"] * t["grad_accum"] * cfg["task"]["max_length"])


def eval_examples(cfg: dict, sizes: dict | None = None) -> int:
    """Examples a run evaluates: dev at every evaluation, then test and the train subset."""
    t, task = cfg["trainer"], cfg["task"]
    sizes = sizes or {}
    cap = task.get("max_eval_examples")
    dev = sizes.get("dev") or min(task.get("dev_size") or 0, cap or math.inf)
    test = sizes.get("test") or min(task.get("test_size") or cap or 1000, cap or math.inf)
    evals = math.ceil(t["max_steps"] / t["eval_every"])
    return int(evals * dev + test + min(task.get("train_eval_size") or 0, sizes.get("train", math.inf)))


def _candidates(cfg: dict) -> int:
    """Forward passes per evaluated example: text-to-text classification scores every label word."""
    family, task = cfg["backbone"]["family"], cfg["task"]
    if family != "encoder" and task.get("kind", "classification") == "classification":
        return max(1, len(task.get("label_words") or []))
    return 1


def _frozen_factor(method: str) -> int:
    """FLOPs per parameter and trained token: forward 2, backward 2 for the activations' gradients, and 2 more
    where the method's backward computes every weight's gradient (PETMethod.trains_every_weight)."""
    from petsweep.methods import METHODS  # here: `status` and `show` load no method (tests/test_floors.py)

    trains_every_weight = method in METHODS.names() and METHODS.get(method).trains_every_weight
    return 6 if trains_every_weight else 4


def measure(cfg: dict, result: dict) -> Measured | None:
    """A finished run's rates (None for records from before evaluation times were recorded)."""
    if not result.get("train_time_s") or not result.get("steps"):
        return None
    slots = (
        result["steps"]
        * cfg["trainer"]["batch_size"]
        * cfg["trainer"]["grad_accum"]
        * cfg["task"]["max_length"]
    )
    eval_s = (result.get("dev_eval_time_s") or 0.0) + (result.get("final_eval_time_s") or 0.0)
    sizes = (result.get("data") or {}).get("sizes")
    evaluated = eval_examples({**cfg, "trainer": {**cfg["trainer"], "max_steps": result["steps"]}}, sizes)
    eval_per_slot = (
        eval_s / (evaluated * cfg["task"]["max_length"]) if "final_eval_time_s" in result else None
    )
    tokens = result.get("tokens") or slots
    flops = _frozen_factor(result["method"]) * result["total_params"] * tokens
    return Measured(
        device="cuda" if str(result.get("device", "cpu")).startswith("cuda") else "cpu",
        backbone=result["backbone"],
        method=result["method"],
        task=result["task"],
        train_s_per_slot=result["train_time_s"] / slots,
        eval_s_per_slot=eval_per_slot,
        flops_per_s=flops / result["train_time_s"],
        fill=min(1.0, tokens / slots),
        startup_s=result.get("time_to_first_step_s") or result.get("load_time_s"),
    )


class Calibration:
    """Finished runs' statistics, computed once per plan (#25): per (device, backbone, method) the median
    training and evaluation rates, per device the median FLOP/s, per task the median fill. Before, every
    planned run filtered every finished run and took its medians again (quadratic in a finished sweep)."""

    def __init__(self, measured: list[Measured]):
        groups: dict[tuple[str, str, str], list[Measured]] = {}
        rates: dict[str, list[float]] = {}
        fills: dict[str, list[float]] = {}
        for m in measured:
            groups.setdefault((m.device, m.backbone, m.method), []).append(m)
            rates.setdefault(m.device, []).append(m.flops_per_s)
            fills.setdefault(m.task, []).append(m.fill)
        # (runs, median train s/slot, median eval s/slot), only where every run recorded evaluation times
        self.same = {
            key: (
                len(ms),
                statistics.median(m.train_s_per_slot for m in ms),
                statistics.median(m.eval_s_per_slot for m in ms),
            )
            for key, ms in groups.items()
            if all(m.eval_s_per_slot is not None for m in ms)
        }
        self.rate = {device: statistics.median(values) for device, values in rates.items()}
        self.fill = {task: statistics.median(values) for task, values in fills.items()}
        starts: dict[tuple, list[float]] = {}
        for m in measured:
            if m.startup_s is not None:
                starts.setdefault((m.device, m.backbone), []).append(m.startup_s)
                starts.setdefault((m.device,), []).append(m.startup_s)
        self.startup = {key: statistics.median(values) for key, values in starts.items()}

    def startup_s(self, device: str, backbone: str) -> tuple[float, str]:
        """A run's start-up on `device` with `backbone`, and where the number comes from."""
        if (device, backbone) in self.startup:
            return self.startup[(device, backbone)], f"start-up measured on {backbone}"
        if (device,) in self.startup:
            return self.startup[(device,)], f"start-up measured on {device}"
        return DEFAULT_STARTUP_S[device], "default start-up"


def estimate(cfg: dict, total_params: int, measured: list[Measured] | Calibration) -> tuple[float, str, bool]:
    """(seconds, basis, is_guess) for one planned run; pass a Calibration when estimating many runs."""
    calibration = measured if isinstance(measured, Calibration) else Calibration(measured)
    device, backbone, method = device_kind(cfg), cfg["backbone"]["name"], cfg["method"]["name"]
    max_len = cfg["task"]["max_length"]
    same = calibration.same.get((device, backbone, method))
    startup, started = calibration.startup_s(device, backbone)
    if same:
        count, train_rate, eval_rate = same
        train = _slots(cfg) * train_rate
        evaluation = eval_examples(cfg) * max_len * eval_rate
        basis = f"measured ({count} run(s) of {backbone}/{method} on {device}), {started}"
        return train + evaluation + startup, basis, False
    on_device = device in calibration.rate
    rate = calibration.rate[device] if on_device else DEFAULT_FLOPS[device]
    fill = calibration.fill.get(cfg["task"]["name"], 1.0)
    train_flops = _frozen_factor(method) * total_params * _slots(cfg) * fill
    eval_flops = 2 * total_params * eval_examples(cfg) * max_len * fill * _candidates(cfg)
    basis = f"FLOPs at {rate:.2g}/s on {device}" + (" (measured rate)" if on_device else " (default rate)")
    return (train_flops + eval_flops) / rate + startup, f"{basis}, {started}", True
