"""The GPU benchmark of issue #25: a 1B-class decoder built from its config (random weights), trained through
petsweep's own run path in bf16 at sequence 2048. Run it through benchmarks/gpu.sh (which finds a Python with
CUDA torch and petsweep's packages); `--tiny --device cpu` runs every part on tiny models in seconds, to test
the plumbing (tests/test_gpu_bench.py). Its numbers are not results.

    bash benchmarks/gpu.sh                        # on a GPU machine: at most 8 minutes on one H100
    bash benchmarks/gpu.sh --tiny --device cpu    # the plumbing, anywhere

Parts (each a real petsweep run: petsweep.run.app.run, or petsweep.run.group.run_group for the fused group;
each one time-boxed):
- LoRA (r 8 on q, v) on a TinyLlama-shaped decoder (hidden 2048, 22 layers, FFN 5632, 32 heads, 4 KV heads,
  vocab 32000; ~1.1B parameters), batch 8 x 2048 tokens, frozen backbone in bf16: step time, tokens/s and MFU
  = 4 x N x tokens per step / step time / the GPU's bf16 dense peak (N: the backbone's parameters less its
  input embedding table, a lookup; full fine-tuning counts 6 x N);
- full fine-tuning at the same shape: step time and peak GPU memory beside LoRA's;
- APET at K = LoRA's budget and at K = 4096: step time against LoRA's;
- 8 LoRA runs (ranks 1..32, seeds 0..7) one after another against the same 8 fused (petsweep.train.fused), on
  a BERT-shaped encoder of the same width and depth (~1B; fused training covers encoders with a head,
  petsweep/run/fusable.py), 1 x 2048 tokens per run-step: wall time and training time;
- ZeRO-3 on one rank (deepspeed=zero3, petsweep.train.distributed) for LoRA and for full fine-tuning, against
  the same runs without DeepSpeed.
Every run takes 2 warm-up steps that its step time leaves out (result.json step_time_s: the median of the
later
steps); on a GPU each step is bracketed by torch.cuda.synchronize() so that a step's time is its device work.
The data: random words over a word-level vocabulary built here, rows of exactly the sequence length.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

for _key, _value in dict(  # the device machine reaches no network; nothing here needs one
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
    WANDB_MODE="disabled",
).items():
    os.environ.setdefault(_key, _value)

# bf16 dense peaks (FLOP/s) from the datasheets, by what torch.cuda.get_device_name() says
PEAKS = {"H100 SXM": 989e12, "H100 PCIe": 756e12, "H200": 989e12, "A100": 312e12}
GOALS = {"mfu": 0.45, "fused": 0.6, "apet": 1.15}
WARMUP = 2  # steps each run takes before the ones its step time counts (train.py: median of step_times[2:])
LABELS = ["alpha", "beta"]

# TinyLlama-1.1B's shape; the encoder for the fused part has the same width and depth
DECODER = dict(
    hidden_size=2048,
    num_hidden_layers=22,
    intermediate_size=5632,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)
ENCODER = {k: v for k, v in DECODER.items() if k not in ("num_key_value_heads", "tie_word_embeddings")}
TINY_DIMS = dict(
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
    num_attention_heads=4,
    vocab_size=512,
    max_position_embeddings=64,
)
TINY_DECODER = dict(DECODER, **TINY_DIMS, num_key_value_heads=2)
TINY_ENCODER = dict(ENCODER, **TINY_DIMS)


@dataclass
class Shape:
    """The sizes of one benchmark: the real one (GPU) or the tiny one (plumbing)."""

    decoder: dict
    encoder: dict
    seq: int  # tokens per row (every row exactly this long)
    batch: int  # rows per step of the LoRA / full FT / APET / ZeRO-3 runs
    fused_batch: int  # rows per step of each of the 8 fused runs
    steps: dict = field(default_factory=dict)  # timed steps (after WARMUP) per part
    words: int = 1000  # the vocabulary's plain words
    rows: int = 24  # training rows
    matmul: int = 8192  # side of the bf16 matrix product that measures the device's ceiling
    boxes: dict = field(default_factory=dict)  # seconds each part may take at most
    budget_s: float = 450.0  # the whole script (setup included)


STEPS = {"lora": 10, "full": 5, "apet": 10, "fused": 50, "zero3": 5}  # 50: loads do not swamp the fused ratio
REAL = Shape(
    DECODER, ENCODER, seq=2048, batch=8, fused_batch=1, steps=STEPS,
    boxes={"lora": 60, "full": 90, "apet": 80, "fused": 210, "zero3": 150},
)  # fmt: skip
TINY = Shape(
    TINY_DECODER, TINY_ENCODER, seq=64, batch=2, fused_batch=1,
    steps={"lora": 2, "full": 2, "apet": 2, "fused": 2, "zero3": 2}, words=200, rows=12, matmul=256,
    boxes={"lora": 120, "full": 120, "apet": 120, "fused": 240, "zero3": 180}, budget_s=900.0,
)  # fmt: skip

# peak memory: CUDA's max allocated on a GPU (the RSS high-water mark on the CPU), from each run's start
COLUMNS = ["part", "run", "step (s)", "tokens/s", "MFU", "peak memory", "wall (s)", "ratio", "goal"]

log = logging.getLogger("gpu_bench")


class PartTimeout(BaseException):
    """A part ran past its box. A BaseException: a fused group's members catch Exception and go on."""


@contextlib.contextmanager
def time_box(seconds: float):
    def expired(signum, frame):
        raise PartTimeout(f"stopped at its {seconds:.0f} s time box")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bf16_peak(name: str) -> tuple[float | None, str]:
    """(the device's bf16 dense peak in FLOP/s, or None; what it was taken for, or why there is none)."""
    upper = name.upper()
    if "H200" in upper and "NVL" not in upper:
        return PEAKS["H200"], "H200"
    if "H100" in upper:
        if "PCIE" in upper:
            return PEAKS["H100 PCIe"], "H100 PCIe"
        if "SXM" in upper or "HBM3" in upper:  # 'NVIDIA H100 80GB HBM3' is the SXM part
            return PEAKS["H100 SXM"], "H100 SXM"
    if "A100" in upper:
        return PEAKS["A100"], "A100"
    known = ", ".join(f"{k} {v / 1e12:.0f}" for k, v in PEAKS.items())
    return None, f"no bf16 peak known for {name!r} (known, TFLOP/s: {known})"


# ---------------------------------------------------------------------------------------------------- checks


def refusal(device: str) -> str | None:
    """One line naming what is missing for a run on `device`, or None."""
    try:
        import torch
    except ImportError:
        return f"benchmarks/gpu.sh: {sys.executable} has no torch"
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return (
            f"benchmarks/gpu.sh: needs a CUDA GPU, and torch {torch.__version__} ({build}) at "
            f"{sys.executable} sees none (torch.cuda.is_available() is False); --tiny --device cpu runs "
            "the plumbing"
        )
    missing = []
    for module, dist in (
        ("omegaconf", "omegaconf"),
        ("hydra", "hydra-core"),
        ("transformers", "transformers"),
        ("peft", "peft"),
        ("deepspeed", "deepspeed"),
        ("tokenizers", "tokenizers"),
        ("safetensors", "safetensors"),
    ):
        try:
            __import__(module)
        except Exception as err:  # deepspeed raises more than ImportError where its deps are missing
            missing.append(f"{dist} ({type(err).__name__}: {str(err)[:60]})")
    if missing:
        return (
            f"benchmarks/gpu.sh: {sys.executable} cannot import {', '.join(missing)}; carry the wheels "
            "(`bash benchmarks/gpu.sh prepare` here, then run with carry ['.gpu-wheels'])"
        )
    return None


# ---------------------------------------------------------------------------------------------------- setup


@dataclass
class Workspace:
    root: Path
    conf: Path  # a user conf dir (hydra.searchpath) with the two backbone YAMLs
    train: Path
    test: Path
    decoder_flops_params: int  # N of the MFU: the decoder's parameters less its input embedding table
    decoder_params: int
    encoder_params: int


def build_tokenizer(words: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[EOS]": 1, "[UNK]": 2}
    for word in [*LABELS, *(f"w{i}" for i in range(words))]:
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", eos_token="[EOS]", unk_token="[UNK]"
    )


def write_data(root: Path, shape: Shape) -> tuple[Path, Path]:
    """Rows of random words longer than the sequence (a decoder keeps a source's end, an encoder its start,
    so every row is exactly `seq` tokens), labelled alpha / beta at random."""
    import random

    rng = random.Random(0)
    paths = []
    for split, n in (("train", shape.rows), ("test", 4)):
        path = root / f"{split}.jsonl"
        with path.open("w") as fh:
            for _ in range(n):
                text = " ".join(f"w{rng.randrange(shape.words)}" for _ in range(shape.seq + 16))
                fh.write(json.dumps({"inputs": text, "outputs": rng.choice(LABELS)}) + "\n")
        paths.append(path)
    return paths[0], paths[1]


def save_random(kind: str, dims: dict, path: Path, tokenizer, device: str) -> tuple[int, int]:
    """A model built from its config with random weights, saved in bf16 with the tokenizer (what petsweep
    loads with from_pretrained); (its parameters, its input embedding's)."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model_type = "llama" if kind == "decoder" else "bert"
    config = AutoConfig.for_model(model_type, **dims, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    torch.manual_seed(0)
    auto = AutoModelForCausalLM if kind == "decoder" else AutoModel  # petsweep adds an encoder's head
    with torch.device(device):
        model = auto.from_config(config, dtype=torch.bfloat16)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    del model
    return total, embedding


def setup(root: Path, shape: Shape, device: str) -> Workspace:
    import yaml

    tokenizer = build_tokenizer(shape.words)
    train, test = write_data(root, shape)
    conf = root / "conf" / "backbone"
    conf.mkdir(parents=True)
    counts = {}
    for kind, dims, model_type, family in (
        ("decoder", shape.decoder, "llama", "decoder"),
        ("encoder", shape.encoder, "bert", "encoder"),
    ):
        path = root / "models" / kind
        counts[kind] = save_random(kind, dims, path, tokenizer, device)
        body = dict(
            name=f"gpu-bench-{kind}",
            family=family,
            model_type=model_type,
            hub_id=f"local/gpu-bench-{kind}",
            path=str(path),
            arch=dims,
            resources={"gpus": 0, "mem_gb": 16, "time_min": 10},
        )
        (conf / f"gpu-bench-{kind}.yaml").write_text(yaml.safe_dump(body))
    release(device)
    (total, embedding), (enc_total, _) = counts["decoder"], counts["encoder"]
    return Workspace(root, root / "conf", train, test, total - embedding, total, enc_total)


def release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------- runs


def overrides(ws: Workspace, shape: Shape, device: str, kind: str, part: str, *extra: str) -> list[str]:
    """A run of `part`'s length on the `kind` backbone (decoder, encoder), under runs/<part>."""
    steps = WARMUP + shape.steps[part]
    batch = shape.fused_batch if part == "fused" else shape.batch
    return [
        f"hydra.searchpath=[file://{ws.conf}]",
        f"backbone=gpu-bench-{kind}",
        "backbone.dropout=0",
        f"paths.runs_root={ws.root / 'runs' / part}",
        "task=local",
        f"task.files.train={ws.train}",
        f"task.files.test={ws.test}",
        f"task.label_words=[{','.join(LABELS)}]",
        f"task.max_length={shape.seq}",
        "task.dev_size=4",
        "task.train_eval_size=4",
        f"trainer.batch_size={batch}",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={steps}",
        f"trainer.save_every={steps}",
        f"trainer.log_every={steps}",
        "trainer.eval_batch_size=4",
        "trainer.precision=bf16",
        f"trainer.device={device}",
        "trainer.ranks=1",
        *(["trainer.num_threads=1"] if device == "cpu" else []),
        "deepspeed=none",
        *extra,
    ]


def one_run(args: list[str], device: str) -> dict:
    """One run through petsweep.run.app.run, as a warm worker runs it (peak memory measured from its
    start)."""
    from petsweep.compose import compose
    from petsweep.run.app import run
    from petsweep.train import resources

    resources.begin_run(args)
    try:
        return run(compose(args))
    finally:
        release(device)


@contextlib.contextmanager
def synchronized_steps(device: str):
    """On a GPU, each training step's clock (Training.begin_step .. end_step) brackets its device work: a
    torch.cuda.synchronize() before the step starts and before it is counted. The loop is petsweep's own."""
    if device != "cuda":
        yield
        return
    import torch

    from petsweep.train.loop import Training

    begin, end = Training.begin_step, Training.end_step

    def begin_step(self):
        torch.cuda.synchronize()
        begin(self)

    def end_step(self):
        torch.cuda.synchronize()
        end(self)

    Training.begin_step, Training.end_step = begin_step, end_step
    try:
        yield
    finally:
        Training.begin_step, Training.end_step = begin, end


# ---------------------------------------------------------------------------------------------------- parts


@dataclass
class Bench:
    ws: Workspace
    shape: Shape
    device: str
    peak: float | None
    peak_why: str
    started: float
    rows: list = field(default_factory=list)
    records: dict = field(default_factory=dict)  # part -> raw numbers (gpu_bench.json)
    notes: list = field(default_factory=list)

    def left(self) -> float:
        return self.shape.budget_s - (time.time() - self.started)

    def mfu_value(self, record: dict, factor: int = 4) -> float | None:
        if self.peak is None:
            return None
        return (
            factor
            * self.ws.decoder_flops_params
            * tokens_per_step(record)
            / record["step_time_s"]
            / self.peak
        )

    def mfu(self, record: dict, factor: int = 4) -> str:
        value = self.mfu_value(record, factor)
        return "n/a" if value is None else f"{value:.1%}"

    def run_row(self, part: str, label: str, record: dict, factor: int = 4, **cells) -> dict:
        tokens = tokens_per_step(record)
        row = {
            "part": part,
            "run": label,
            "step (s)": f"{record['step_time_s']:.3f}",
            "tokens/s": f"{tokens / record['step_time_s']:,.0f}",
            "MFU": self.mfu(record, factor) if factor else "",
            "peak memory": gib(record["peak_memory_mb"]),
        }
        row.update(cells)
        return row


def tokens_per_step(record: dict) -> float:
    return record["tokens"] / record["steps"]


def count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.3f}M"


def gib(mb: float) -> str:
    return f"{mb / 1024:.2f} GiB"


def ratio_goal(value: float, goal: float, what: str) -> str:
    return f"{what} <= {goal}: {'met' if value <= goal else 'missed'}"


def part_lora(b: Bench) -> None:
    s, ws, dev = b.shape, b.ws, b.device
    shape = f"{s.batch} x {s.seq}"
    lora = one_run(overrides(ws, s, dev, "decoder", "lora", "method=lora"), dev)
    b.records["lora"] = lora
    mfu = b.mfu_value(lora)
    verdict = "n/a (no peak)" if mfu is None else ("met" if mfu >= GOALS["mfu"] else "missed")
    goal = f"MFU >= {GOALS['mfu']:.0%}: {verdict}"
    b.rows.append(b.run_row("LoRA r 8 on q, v, bf16", shape, lora, goal=goal, ratio="1"))
    emit_progress(b)


def part_full(b: Bench) -> None:
    s, ws, dev = b.shape, b.ws, b.device
    full = one_run(overrides(ws, s, dev, "decoder", "full", "method=full"), dev)
    b.records["full"] = full
    lora = b.records.get("lora")
    ratio = (
        f"LoRA's peak memory / this: {lora['peak_memory_mb'] / full['peak_memory_mb']:.2f}; step / LoRA's: "
        f"{full['step_time_s'] / lora['step_time_s']:.2f}"
        if lora
        else ""
    )
    b.rows.append(b.run_row("full fine-tuning, bf16", f"{s.batch} x {s.seq}", full, factor=6, ratio=ratio))
    emit_progress(b)


def part_apet(b: Bench) -> None:
    s, ws, dev = b.shape, b.ws, b.device
    lora = b.records.get("lora")
    for label, scale in (("APET, K = LoRA's budget", "lora"), ("APET, K = 4096", "4096")):
        record = one_run(overrides(ws, s, dev, "decoder", "apet", "method=apet", f"apet.scale={scale}"), dev)
        b.records[f"apet_{scale}"] = record
        k = (record.get("apet") or {}).get("achieved", record["trainable_params"])
        cells = {}
        if lora:
            versus = record["step_time_s"] / lora["step_time_s"]
            cells["ratio"] = f"step / LoRA's: {versus:.2f}"
            if scale == "lora":
                cells["goal"] = ratio_goal(versus, GOALS["apet"], "x LoRA")
        b.rows.append(b.run_row(f"{label} ({k:,})", f"{s.batch} x {s.seq}", record, **cells))
        emit_progress(b)


RANKS = [1, 2, 4, 8, 16, 32, 3, 6]  # benchmarks/fused.py's 8 runs


def part_fused(b: Bench) -> None:
    from omegaconf import OmegaConf

    from petsweep.compose import compose
    from petsweep.model.resolve import run_dir
    from petsweep.records.status import RunDir
    from petsweep.run.app import run
    from petsweep.run.group import run_group
    from petsweep.spec.identity import plain
    from petsweep.train import resources

    s, ws, dev = b.shape, b.ws, b.device

    def configs(where: str) -> list[dict]:
        return [
            plain(
                compose(
                    overrides(ws, s, dev, "encoder", "fused", "method=lora", f"method.r={r}", f"seed={seed}")
                    + [f"paths.runs_root={ws.root / 'runs' / where}"]
                )
            )
            for seed, r in enumerate(RANKS)
        ]

    alone_cfgs, fused_cfgs = configs("alone"), configs("fused")
    started = time.time()
    alone = []
    for cfg in alone_cfgs:
        resources.begin_run()
        alone.append(run(OmegaConf.create(cfg)))
        release(dev)
    alone_s = time.time() - started
    resources.begin_run()
    started = time.time()
    codes = run_group(fused_cfgs)
    fused_s = time.time() - started
    release(dev)
    if codes != [0] * len(fused_cfgs):
        raise RuntimeError(f"the fused group's exit codes: {codes} (train.log of its runs in the log)")
    together = [RunDir(run_dir(cfg)).result() for cfg in fused_cfgs]
    alone_train = sum(r["train_time_s"] for r in alone)
    fused_train = max(r["train_time_s"] for r in together)  # every member's is the group's
    b.records["fused"] = {"alone_s": alone_s, "fused_s": fused_s, "alone": alone, "fused": together}
    shape = f"8 runs x {s.fused_batch} x {s.seq} (encoder)"
    solo = max(alone, key=lambda r: r["peak_memory_mb"])
    b.rows.append(
        {
            "part": "8 LoRA runs, one after another",
            "run": shape,
            "step (s)": f"{sorted(r['step_time_s'] for r in alone)[len(alone) // 2]:.3f} (median run)",
            "tokens/s": f"{sum(r['tokens'] for r in alone) / alone_train:,.0f}",
            "peak memory": gib(solo["peak_memory_mb"]) + " (largest run)",
            "wall (s)": f"{alone_s:.1f} (training {alone_train:.1f})",
            "ratio": "1",
        }
    )
    wall_ratio = fused_s / alone_s
    b.rows.append(
        {
            "part": "8 LoRA runs, fused",
            "run": shape,
            "step (s)": f"{together[0]['step_time_s']:.3f} (the group's)",
            "tokens/s": f"{sum(r['tokens'] for r in together) / fused_train:,.0f}",
            "peak memory": gib(max(r["peak_memory_mb"] for r in together)),
            "wall (s)": f"{fused_s:.1f} (training {fused_train:.1f})",
            "ratio": f"wall {wall_ratio:.2f}, training {fused_train / alone_train:.2f}",
            "goal": ratio_goal(wall_ratio, GOALS["fused"], "wall ratio"),
        }
    )
    emit_progress(b)


def part_zero3(b: Bench) -> None:
    s, ws, dev = b.shape, b.ws, b.device
    for method, baseline, factor in (("lora", "lora", 4), ("full", "full", 6)):
        if method == "full" and b.left() < s.boxes["zero3"] / 2:
            b.rows.append(skipped("ZeRO-3, one rank: full fine-tuning", f"{b.left():.0f} s left"))
            continue
        record = one_run(
            overrides(ws, s, dev, "decoder", "zero3", f"method={method}", "deepspeed=zero3"), dev
        )
        b.records[f"zero3_{method}"] = record
        plain_record = b.records.get(baseline)
        cells = {}
        if plain_record:
            cells["ratio"] = (
                f"step / without DeepSpeed: {record['step_time_s'] / plain_record['step_time_s']:.2f}; "
                f"memory: {record['peak_memory_mb'] / plain_record['peak_memory_mb']:.2f}"
            )
        label = "LoRA" if method == "lora" else "full fine-tuning"
        b.rows.append(
            b.run_row(f"ZeRO-3, one rank: {label}", f"{s.batch} x {s.seq}", record, factor=factor, **cells)
        )
        emit_progress(b)


PARTS = [  # (key, what its rows say when it cannot run, the function); in order of what matters most
    ("lora", "LoRA r 8 on q, v, bf16", part_lora),
    ("full", "full fine-tuning, bf16", part_full),
    ("apet", "APET, K = LoRA's budget / 4096", part_apet),
    ("fused", "8 LoRA runs, fused vs one after another", part_fused),
    ("zero3", "ZeRO-3, one rank", part_zero3),
]


def skipped(part: str, why: str) -> dict:
    return {"part": part, "run": f"not measured: {why}"}


# ---------------------------------------------------------------------------------------------------- table


def table(b: Bench) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in b.rows:
        lines.append("| " + " | ".join(str(row.get(c, "")).replace("|", "/") for c in COLUMNS) + " |")
    return "\n".join([*b.notes, "", *lines])


def emit_progress(b: Bench) -> None:
    """Each part's rows as they come (stderr), and the table so far under $OUT (a killed run keeps it)."""
    row = " | ".join(f"{k} {v}" for k, v in b.rows[-1].items() if v)
    print(f"[gpu.py {time.time() - b.started:.0f} s] {row}", file=sys.stderr, flush=True)
    out = os.environ.get("OUT")
    if out:
        (Path(out) / "gpu_bench.md").write_text(table(b) + "\n")


def versions() -> str:
    """The versions of the packages that decide the numbers, and the lock's where they differ."""
    from petsweep.records.lockcheck import normalize, read_lock

    pins = read_lock()
    out = []
    for name in ("torch", "transformers", "peft", "deepspeed", "accelerate", "tokenizers", "numpy"):
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        lock = pins.get(normalize(name))
        out.append(f"{name} {have}" + ("" if lock == have else f" (lock {lock})"))
    return ", ".join(out)


def header(b: Bench, ceiling: str) -> list[str]:
    import torch

    if b.device == "cuda":
        name = torch.cuda.get_device_name()
        cuda = f", CUDA {torch.version.cuda}"
    else:
        name, cuda = f"CPU ({os.cpu_count()} cores; plumbing only: these numbers are not results)", ""
    peak = (
        f"bf16 dense peak {b.peak / 1e12:.0f} TFLOP/s ({b.peak_why})" if b.peak else f"MFU n/a: {b.peak_why}"
    )
    s = b.shape
    return [
        f"GPU benchmark (issue #25), {time.strftime('%Y-%m-%d')}: {name}{cuda}; {peak}; {ceiling}",
        f"Python {sys.version.split()[0]}: {versions()}",
        f"decoder: llama, {count(b.ws.decoder_params)} parameters (N = {count(b.ws.decoder_flops_params)} "
        f"without the input embedding; MFU = 4 x N x tokens per step / step / peak, 6 x N for full FT); "
        f"encoder (fused part): bert, {count(b.ws.encoder_params)}; rows of {s.seq} tokens; {WARMUP} warm-up "
        f"steps per run left out of its step time; steps timed: "
        + ", ".join(f"{k} {v}" for k, v in s.steps.items()),
    ]


def matmul_ceiling(shape: Shape, device: str) -> str:
    """The device's bf16 matrix-product rate as measured here (random data, synchronised clock, the median of
    10 products after 3 warm-ups)."""
    import torch

    n = shape.matmul
    a, c = (
        torch.randn(n, n, device=device, dtype=torch.bfloat16),
        torch.randn(n, n, device=device, dtype=torch.bfloat16),
    )
    times = []
    for i in range(13):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ c
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - started)
    del a, c
    release(device)
    median = sorted(times)[len(times) // 2]
    return f"a {n}^3 bf16 matrix product ran at {2 * n**3 / median / 1e12:.1f} TFLOP/s here"


# ---------------------------------------------------------------------------------------------------- main


def imported_distributions() -> list[str]:
    """`name==version` of every installed distribution this process imported (what the device must have)."""
    tops = {name.split(".")[0] for name in list(sys.modules)}
    owners = importlib.metadata.packages_distributions()
    found = set()
    for top in tops:
        for dist in owners.get(top, []):
            try:
                found.add(f"{dist}=={importlib.metadata.version(dist)}")
            except importlib.metadata.PackageNotFoundError:
                pass
    return sorted(found, key=str.lower)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny models: the plumbing, in seconds")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--check", action="store_true", help="only say (one line) what is missing; exit 2")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole script")
    parser.add_argument("--only", nargs="+", choices=[k for k, _, _ in PARTS], help="a subset of the parts")
    parser.add_argument("--imports", type=Path, help="write the distributions imported here (gpu.sh prepare)")
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.prepare)
    why = refusal(args.device) if not args.check else refusal_torch_only(args.device)
    if why:
        print(why, file=sys.stderr)
        return 2
    if args.check:
        return 0
    shape = TINY if args.tiny else REAL
    if args.budget:
        # a longer budget widens each part's time box as much: a slow machine gets more time, never fewer rows
        stretch = max(1.0, args.budget / shape.budget_s)
        shape.boxes = {key: seconds * stretch for key, seconds in shape.boxes.items()}
        shape.budget_s = args.budget
    return bench(shape, args.device, args.only, args.imports)


def refusal_torch_only(device: str) -> str | None:
    """The check gpu.sh makes before installing anything: a torch that sees the device."""
    try:
        import torch
    except ImportError:
        return f"benchmarks/gpu.sh: {sys.executable} has no torch"
    if device == "cuda" and not torch.cuda.is_available():
        return refusal(device)
    return None


def bench(shape: Shape, device: str, only: list[str] | None, imports: Path | None) -> int:
    import torch

    started = time.time()
    if device == "cpu":
        torch.set_num_threads(1)
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    root = Path(tempfile.mkdtemp(prefix="gpu_bench_"))
    log_path = (out or root) / "gpu_bench.log"
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("petsweep", "gpu_bench"):  # petsweep's own lines go to the log, not the console
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    peak, why = bf16_peak(torch.cuda.get_device_name()) if device == "cuda" else (None, "a CPU run")
    try:
        with open(log_path, "a") as sink, contextlib.redirect_stdout(sink):
            ws = setup(root, shape, device)
            ceiling = matmul_ceiling(shape, device)
        b = Bench(ws, shape, device, peak, why, started)
        b.notes = header(b, ceiling)
        print(f"[gpu.py {time.time() - started:.0f} s] set up in {root}; log {log_path}", file=sys.stderr)
        with synchronized_steps(device):
            for key, label, function in PARTS:
                if only and key not in only:
                    continue
                box = min(shape.boxes[key], b.left() - 5)
                if box < shape.boxes[key] / 3:
                    b.rows.append(
                        skipped(label, f"{b.left():.0f} s left of the {shape.budget_s:.0f} s budget")
                    )
                    continue
                try:
                    with open(log_path, "a") as sink, contextlib.redirect_stdout(sink), time_box(box):
                        function(b)
                except (Exception, PartTimeout) as err:
                    line = f"{type(err).__name__}: {err}".splitlines()[0][:160]
                    log.exception("part %s failed", key)
                    b.rows.append(skipped(label, line))
                    print(f"[gpu.py] part {key}: {line} (traceback in {log_path})", file=sys.stderr)
                finally:
                    shutil.rmtree(ws.root / "runs", ignore_errors=True)  # full FT's weights are GBs
                    release(device)
        text = table(b)
        print(text)
        if out:
            (out / "gpu_bench.md").write_text(text + "\n")
            (out / "gpu_bench.json").write_text(json.dumps(b.records, indent=1, default=str))
        if imports:
            imports.write_text("\n".join(imported_distributions()) + "\n")
        return 0
    finally:
        handler.close()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- prepare

# What never travels: torch (the image's CUDA build stays), what only torch imports (the image's torch has its
# own), and the installers. Compiled distributions travel only where the image lacks them (pydantic-core).
NEVER_CARRIED = {"torch", "triton", "sympy", "mpmath", "networkx", "pip", "setuptools", "petsweep"}
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
]
IMAGE_HAS = {  # compiled distributions the device image holds (/work/.library/device/KINDS.md, 2026-11-17)
    "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "safetensors", "tokenizers", "regex", "pyyaml",
    "psutil", "msgpack", "xxhash", "markupsafe", "charset-normalizer", "hf-xet", "ninja", "kiwisolver",
    "contourpy", "pillow", "fonttools", "matplotlib", "sentencepiece", "frozenlist", "multidict", "yarl",
    "propcache", "aiohttp", "grpcio", "protobuf", "wrapt", "cython", "llvmlite", "numba", "h5py", "lxml",
    "tiktoken", "ml-dtypes", "uvloop",
}  # fmt: skip


def prepare(where: Path) -> int:
    """Wheels of petsweep's packages for the device machine (no network there): the locked version of every
    distribution the tiny benchmark imports, pure-Python ones always (so the lock's transformers, peft,
    deepspeed, hydra-core run there), compiled ones for CPython 3.12 only where the image lacks them; torch
    stays the image's CUDA build."""
    from petsweep.records.lockcheck import normalize, read_lock

    where.mkdir(parents=True, exist_ok=True)
    listing = where / "imports.txt"
    print("gpu.sh prepare: running the tiny benchmark to see what it imports ...", file=sys.stderr)
    subprocess.run(
        [sys.executable, __file__, "--tiny", "--device", "cpu", "--imports", str(listing)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    pins = read_lock()
    wanted, kept = [], []
    for line in listing.read_text().split():
        name, _, version = line.partition("==")
        key = normalize(name)
        if key in NEVER_CARRIED or key not in pins:  # not pinned: setuptools' vendored copies
            continue
        version = pins[key]
        pure = _is_pure(name)
        if not pure and key in IMAGE_HAS:
            kept.append(key)
            continue
        wanted.append((key, version, pure))
    for stale in where.glob("*.whl"):
        stale.unlink()
    pip = [sys.executable, "-m", "pip"]
    for key, version, pure in wanted:
        spec = f"{key}=={version}"
        target = [
            "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(where),
            "--python-version", "3.12", "--implementation", "cp",
            *(f"--platform={p}" for p in PLATFORMS), spec,
        ]  # fmt: skip
        if subprocess.run(pip + target, capture_output=True).returncode == 0:
            continue
        if not pure:
            print(f"gpu.sh prepare: no CPython 3.12 wheel of {spec}", file=sys.stderr)
            return 1
        # sdist only (antlr4-python3-runtime, deepspeed): build the pure-Python wheel here (deepspeed's
        # setup.py imports torch: no build isolation, the venv's torch)
        build = ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(where), spec]
        subprocess.run(pip + build, check=True, env=dict(os.environ, DS_BUILD_OPS="0"))
    size = sum(p.stat().st_size for p in where.glob("*.whl"))
    print(
        f"gpu.sh prepare: {len(wanted)} wheels ({size / 2**20:.1f} MiB) in {where}; compiled, the image's: "
        + ", ".join(kept),
        file=sys.stderr,
    )
    return 0


def _is_pure(dist: str) -> bool:
    wheel = importlib.metadata.distribution(dist).read_text("WHEEL") or ""
    return "Root-Is-Purelib: true" in wheel


if __name__ == "__main__":
    sys.exit(main())
