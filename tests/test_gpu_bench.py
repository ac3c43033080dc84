"""benchmarks/gpu.sh (issue #25) on the CPU: its plumbing only. Every part runs on tiny models through
petsweep's own run path and the table comes out with its rows and columns; without a GPU the plain mode
refuses in one line. No timing is asserted: CPU numbers of a tiny model are not results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gpu import COLUMNS, bf16_peak

REPO = Path(__file__).resolve().parent.parent

PARTS = [  # the rows, in order: (the part cell's start, the goal cell's start or None)
    ("LoRA r 8 on q, v, bf16", "MFU >= 45%: n/a"),
    ("full fine-tuning, bf16", None),
    ("APET, K = LoRA's budget (", "x LoRA <= 1.15: "),
    ("APET, K = 4096 (4,096)", None),
    ("8 LoRA runs, one after another", None),
    ("8 LoRA runs, fused", "wall ratio <= 0.6: "),
    ("ZeRO-3, one rank: LoRA", None),
    ("ZeRO-3, one rank: full fine-tuning", None),
]


def gpu_sh(*args: str, out: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    env.pop("OUT", None)
    # an in-process DeepSpeed test earlier in this worker leaves its one-rank cluster's RANK, MASTER_PORT in
    # os.environ; inherited, ZeRO-3's part reused that port and failed with EADDRINUSE (CI, twice)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    if out is not None:
        env["OUT"] = str(out)
    return subprocess.run(
        ["bash", "benchmarks/gpu.sh", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=3300
    )


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.slow
def test_tiny_cpu_run_prints_every_part_as_one_table(tmp_path):
    imports = tmp_path / "imports.txt"
    # the plumbing, never its time budget: --tiny's 900 s (and its parts' time boxes) ran out twice in CI on
    # 2 loaded cores, and a part stopped at its box leaves one row where it has two; 3000 s stretches each box
    # as much (the run takes ~85 s on a quiet machine)
    done = gpu_sh("--tiny", "--device", "cpu", "--budget", "3000", "--imports", str(imports), out=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| part |"))
    assert cells(lines[start]) == COLUMNS and lines[start + 1] == "|" + "---|" * len(COLUMNS)
    rows = [cells(line) for line in lines[start + 2 :]]
    shaped = len(rows) == len(PARTS) and all(len(row) == len(COLUMNS) for row in rows)
    assert shaped, (rows, done.stderr[-3000:])
    for row, (part, goal) in zip(rows, PARTS):
        assert row[0].startswith(part), (row, part)
        assert "not measured" not in row[1], row
        float(row[2].split()[0])  # a step time
        assert " GiB" in row[5]  # peak memory
        assert row[8].startswith(goal) if goal else row[8] == "", row
    [title] = [line for line in lines if line.startswith("GPU benchmark (issue #25)")]
    assert "plumbing only" in title and "MFU n/a" in title  # a CPU run says its numbers are not results
    # the same table under $OUT, with the raw records and the log
    written = (tmp_path / "gpu_bench.md").read_text().strip()
    assert written.startswith(title) and done.stdout.strip().endswith(written)
    records = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert {"lora", "full", "apet_lora", "apet_4096", "fused", "zero3_lora", "zero3_full"} <= set(records)
    assert records["fused"]["fused"][0]["fused_with"]  # the fused rows came from a fused group
    assert records["zero3_full"]["deepspeed"] == "zero3" and records["lora"]["precision"] == "bf16"
    # what `gpu.sh prepare` carries to the device: the distributions the run imported
    imported = {line.split("==")[0].lower() for line in imports.read_text().split()}
    assert {"hydra-core", "omegaconf", "transformers", "peft", "deepspeed"} <= imported


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the plain mode would run")
def test_without_a_gpu_the_plain_mode_refuses_in_one_line(tmp_path):
    done = gpu_sh(out=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert "needs a CUDA GPU" in line and "torch.cuda.is_available() is False" in line
    assert not (tmp_path / "gpu_bench.md").exists()


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA H100 NVL", None),  # not in the table: MFU n/a, and the line says why
        ("NVIDIA L4", None),
    ],
)
def test_bf16_peak_by_device_name(name, peak):
    found, why = bf16_peak(name)
    assert found == peak and (peak is not None or name in why)
