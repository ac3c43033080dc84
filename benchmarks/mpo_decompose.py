"""MPO decomposition time for every attention and FFN matrix of bert-base (random weights from its config).

    .venv/bin/python benchmarks/mpo_decompose.py [--preset bart|bert] [--layers 12] [--out BENCHMARKS.md]

What OPF pays before training when it over-parameterises matrices: petsweep.methods.opf.mpo.decompose per
matrix, with one of the OPF code's shape presets (conf/method/shapes): bart, 7 cores (768 x 768:
[3,4,1,1,4,4,4] x [4,4,1,1,4,4,3]; 1.25x), or bert, 15 cores with thirteen unit bonds (8.9x); untruncated.
Also the worst reconstruction error (fp32).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import emit  # noqa: E402
from petsweep.methods.opf.mpo import MpoShape, contract, decompose  # noqa: E402

MODULES = {  # bert-base module -> weight type
    "attention.self.query": "attention",
    "attention.self.key": "attention",
    "attention.self.value": "attention",
    "attention.output.dense": "attention",
    "intermediate.dense": "ffn_in",
    "output.dense": "ffn_out",
}


def preset(name: str) -> dict[str, MpoShape]:
    """A shape preset of conf/method/shapes as MpoShapes per weight type."""
    import yaml

    node = yaml.safe_load((REPO / "conf" / "method" / "shapes" / f"{name}.yaml").read_text())
    return {kind: MpoShape(tuple(v["rows"]), tuple(v["cols"])) for kind, v in node.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--preset", default="bart", choices=["bart", "bert", "t5"])
    parser.add_argument("--out", type=Path, default=None, help="append the table to this markdown file")
    args = parser.parse_args()
    from transformers import BertConfig, BertModel

    shapes = preset(args.preset)
    torch.manual_seed(0)
    model = BertModel(BertConfig(num_hidden_layers=args.layers))  # bert-base's shapes, random weights
    times: dict[str, list[float]] = {}
    errors: dict[str, float] = {}
    for layer in model.encoder.layer:
        for name, family in MODULES.items():
            shape = shapes[family]
            weight = layer.get_submodule(name).weight.detach()
            started = time.perf_counter()
            tensors = decompose(weight, shape)
            times.setdefault(family, []).append(time.perf_counter() - started)
            errors[family] = max(errors.get(family, 0.0), (contract(tensors) - weight).abs().max().item())
    lines = [
        f"bert-base, {args.layers} layers, random weights, shape preset {args.preset}, "
        f"{torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs",
        "",
        "| family | matrices | shape | MPO / dense params | per matrix (median) | total | max abs error |",
        "|---|---|---|---|---|---|---|",
    ]
    for family, spent in times.items():
        shape = shapes[family]
        rows, cols = (torch.Size(shape.rows).numel(), torch.Size(shape.cols).numel())
        lines.append(
            f"| {family} | {len(spent)} | {rows} x {cols} | {shape.params() / (rows * cols):.2f} | "
            f"{statistics.median(spent):.2f} s | {sum(spent):.1f} s | {errors[family]:.1e} |"
        )
    total = sum(sum(v) for v in times.values())
    lines.append(f"| all | {sum(len(v) for v in times.values())} | | | | {total:.1f} s | |")
    emit("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
