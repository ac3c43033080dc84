"""APET as petsweep builds it vs the dense-masked implementation: step time and gradient + optimizer memory.

    .venv/bin/python benchmarks/apet_masked.py [--steps 8] [--rounds 2] [--out BENCHMARKS.md]

The dense-masked implementation is the obvious one the issue warns against: every eligible tensor trains
whole, a hook zeroes its gradient outside the K positions, and AdamW (weight decay 0: decay would move the
masked entries) keeps state for the whole tensor. Both train MiniLM-L6 (batch 16, sequence 128, the same K
positions from petsweep.methods.apet.positions.place) in one textbook loop, each configuration in a fresh
process so that its peak RSS is its own; rounds alternate the configurations. "grad + optim" is the bytes of
every `.grad` and every optimizer state tensor after a step, counted exactly; "train peak" is how far the
process's RSS rose above its level before the first step (Linux's high-water mark, reset once the model is
built: loading dominates the whole process's peak).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import emit, in_fresh_process, timed_steps  # noqa: E402

os.environ.update(
    HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
)

BUDGETS = {"lora": "LoRA's budget", "4096": "4096"}
KINDS = ("apet", "masked")


def _spec(scale: str):
    from petsweep.compose import compose
    from petsweep.model.resolve import resolve_run

    return resolve_run(compose(["method=apet", f"apet.scale={scale}", "backbone.pooling=pooler"]))


def _masked(model, spec) -> list:
    """Whole eligible tensors trainable, their gradients masked to the same K positions as APET's."""
    import torch

    from petsweep.methods.apet.positions import eligible_tensors, place
    from petsweep.methods.base import AttachContext
    from petsweep.model.params import _head

    head = _head(model, spec.backbone)
    for param in model.parameters():
        param.requires_grad_(False)
    ctx = AttachContext(backbone=spec.backbone, head=head, task=spec.task, tokenizer=None)
    tensors = eligible_tensors(model, ctx, spec.method.budget.spec)
    sizes = [t.numel() for *_, t in tensors]
    local = place(sizes, spec.method.budget.resolve(sum(sizes)), spec.method.budget.spec.seed)
    trained = []
    for (*_, tensor), idx in zip(tensors, local):
        if idx.numel():
            mask = torch.zeros(tensor.numel()).index_fill_(0, idx, 1.0).view_as(tensor)
            tensor.requires_grad_(True)
            tensor.register_hook(lambda grad, mask=mask: grad * mask)
            trained.append(tensor)
    return trained + head


def _apet(model, spec) -> list:
    from petsweep.model.params import attach_method

    attached, _ = attach_method(model, spec)
    return [p for g in attached.groups for p in g.params]


def _state_bytes(params: list, optimizer) -> int:
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    state = sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if hasattr(t, "numel") and t.dim() > 0
    )
    return grads + state


def _status_mb(field: str) -> float:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_peak_rss() -> float:
    """Reset Linux's RSS high-water mark to the current RSS, and return that RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def one(kind: str, scale: str, steps: int) -> dict:
    import torch

    from petsweep.model.backbones import load_pretrained

    torch.manual_seed(0)
    spec = _spec(scale)
    model, tokenizer = load_pretrained(spec.backbone, num_labels=5)
    params = _apet(model, spec) if kind == "apet" else _masked(model, spec)
    model.train()
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    state = []
    before = _reset_peak_rss()
    times = timed_steps(
        model, tokenizer, optimizer, steps, lambda: state.append(_state_bytes(params, optimizer))
    )
    return {
        "step_s": statistics.median(times[2:]),
        "state_mb": state[-1] / 2**20,
        "peak_mb": _status_mb("VmHWM") - before,
    }


def measure(kind: str, scale: str, steps: int) -> dict:
    return in_fresh_process(__file__, "--one", kind, scale, "--steps", str(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="append the table to this markdown file")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SCALE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.steps)))
        return
    configs = [(kind, scale) for scale in BUDGETS for kind in KINDS]
    samples: dict[tuple[str, str], list[dict]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for config in configs:
            samples[config].append(measure(*config, args.steps))
    med = {c: {k: statistics.median(s[k] for s in rows) for k in rows[0]} for c, rows in samples.items()}
    lines = [
        f"MiniLM-L6, batch 16, seq 128, {args.steps} steps x {args.rounds} rounds (median), "
        f"{os.cpu_count()} CPUs",
        "",
        "| K | implementation | step | grad + optim | train peak | APET / masked: step | grad + optim "
        "| train peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scale, label in BUDGETS.items():
        apet, masked = med[("apet", scale)], med[("masked", scale)]
        for kind, row in (("apet", apet), ("masked", masked)):
            ratios = (
                f"{apet['step_s'] / masked['step_s']:.3f} | {apet['state_mb'] / masked['state_mb']:.4f} | "
                f"{apet['peak_mb'] / masked['peak_mb']:.3f}"
                if kind == "apet"
                else " | | "
            )
            lines.append(
                f"| {label} | {kind} | {row['step_s']:.3f} s | {row['state_mb']:.2f} MB | "
                f"{row['peak_mb']:.0f} MB | {ratios} |"
            )
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
