"""The GPUs and ranks a run wants are one rule (petsweep/spec/shape.py): the local pool's GPUs, the sbatch
script SLURM gets, the ranks a run's process starts and the ranks its identity counts agree, on one node and
on several, with trainer.ranks set and null, for GPU and CPU backbones."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from launchers.local import gpus_wanted
from launchers.slurm import SlurmSettings, _executor, shape
from petsweep.model.resolve import run_hash
from petsweep.run.fusable import why_alone
from petsweep.spec.errors import ConfigError
from petsweep.spec.identity import ranks_counted
from petsweep.spec.shape import RunShape, run_shape

# a record's config as petsweep wrote it (LoRA on an encoder, the backbone's own dropout: ranks count)
RECORD = Path(__file__).parent / "fixtures" / "old_records" / "1a02139" / "lora-encoder" / "config.yaml"


def config(gpus: int, nodes: int, ranks: int | None, **backbone) -> dict:
    cfg = copy.deepcopy(yaml.safe_load(RECORD.read_text()))
    cfg["backbone"].update(backbone, resources={"gpus": gpus, "nodes": nodes, "mem_gb": 8, "time_min": 10})
    cfg["trainer"]["ranks"] = ranks
    return cfg


def sbatch_lines(cfg: dict, tmp_path: Path) -> dict[str, str]:
    """The #SBATCH options submitit writes for the run's shape (what the cluster is asked for)."""
    executor = _executor(tmp_path, SlurmSettings(), shape(cfg), runs_per_task=1)
    text = executor._executor._make_submission_file_text("python -c pass", "uid")
    return dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", text, flags=re.M))


# (gpus per node, nodes, trainer.ranks) -> (world size, GPUs per node, ranks per node)
CASES = {
    (0, 1, None): (1, 0, 1),  # a CPU run: one rank
    (0, 1, 2): (2, 0, 2),  # two CPU ranks (gloo)
    (4, 1, None): (4, 4, 4),  # one rank per GPU
    (4, 1, 2): (2, 2, 2),  # trainer.ranks is the world: a GPU per rank
    (4, 2, None): (8, 4, 4),  # one rank per GPU on every node
    (4, 2, 8): (8, 4, 4),
    (4, 2, 2): (2, 1, 1),  # trainer.ranks spread evenly over the nodes
    (0, 2, None): (2, 0, 1),  # a CPU run: one rank per node
    (0, 2, 4): (4, 0, 2),
}


@pytest.mark.parametrize(("asked", "expected"), CASES.items(), ids=[str(k) for k in CASES])
def test_the_pool_sbatch_the_ranks_and_the_identity_agree(asked, expected, tmp_path):
    cfg = config(*asked)
    world, gpus_per_node, ranks_per_node = expected
    run = run_shape(cfg)
    assert (run.world_size, run.gpus_per_node, run.ranks_per_node) == expected
    assert gpus_wanted(cfg) == world  # the local pool: a GPU per rank (a CPU backbone's run trains there too)
    sbatch = sbatch_lines(cfg, tmp_path)
    assert int(sbatch["nodes"]) * int(sbatch["ntasks-per-node"]) == world
    assert int(sbatch["ntasks-per-node"]) == ranks_per_node
    assert int(sbatch.get("gpus-per-node", 0)) == gpus_per_node
    assert run.ranks_here(visible_gpus=gpus_wanted(cfg)) == world  # the process the pool gave its GPUs
    assert ranks_counted(cfg) == world  # dropout on: the id counts the world
    assert ranks_counted(config(*asked, dropout=0)) is None  # no dropout: any world computes alike


def test_a_null_world_follows_the_gpus_the_process_sees_and_a_set_one_does_not():
    two_nodes = RunShape.of({"gpus": 4, "nodes": 2}, None)
    assert [two_nodes.ranks_here(visible) for visible in (0, 1, 4, 8, 16)] == [1, 1, 4, 8, 8]
    fixed = RunShape.of({"gpus": 4, "nodes": 2}, 2)
    assert [fixed.ranks_here(visible) for visible in (0, 4, 8)] == [2, 2, 2]


def test_the_identity_counts_every_node_and_keeps_one_node_ids():
    record = yaml.safe_load(RECORD.read_text())
    assert run_hash(config(0, 1, None)) == run_hash(record)  # a 1-rank CPU run: the id it always had
    assert run_hash(config(4, 1, None)) == run_hash(config(0, 1, 4))  # one node: its GPUs, as before
    assert run_hash(config(4, 2, None)) == run_hash(config(0, 1, 8))  # 2 nodes x 4 GPUs: a world of 8
    assert run_hash(config(4, 2, None)) != run_hash(config(0, 1, 4))  # (the rule before counted one node)
    assert run_hash(config(4, 2, None, dropout=0)) == run_hash(config(0, 1, None, dropout=0))


@pytest.mark.parametrize(
    ("resources", "ranks", "key"),
    [
        ({"gpus": 4, "nodes": 2}, 3, "trainer.ranks"),
        ({"gpus": 4, "nodes": 2}, 1, "trainer.ranks"),
        ({"gpus": 4, "nodes": 0}, None, "backbone.resources.nodes"),
        ({"gpus": -1}, None, "backbone.resources.gpus"),
        ({"gpus": 1.5}, None, "backbone.resources.gpus"),
    ],
)
def test_a_shape_no_cluster_can_start_is_refused_by_every_reader(resources, ranks, key, tmp_path):
    cfg = config(0, 1, ranks)
    cfg["backbone"]["resources"] = resources
    for reader in (run_shape, gpus_wanted, shape, ranks_counted):
        with pytest.raises(ConfigError) as refused:
            reader(cfg)
        assert refused.value.key == key


def test_ranks_that_do_not_divide_over_the_nodes_are_one_line_before_anything_runs(tiny, tmp_path):
    out = run_cli("run.py", *tiny("encoder", "+backbone.resources.nodes=2", "trainer.ranks=3"))
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr[-2000:]
    assert "trainer.ranks=3: must divide evenly over backbone.resources.nodes=2" in errors[0]
    assert not list(tmp_path.rglob("status.json"))


def test_a_local_run_that_would_start_fewer_ranks_than_its_nodes_hold_is_refused(tiny, tmp_path):
    """A CPU backbone over 2 nodes is a world of 2 (a rank per node); a local CPU process of
    trainer.ranks=null starts one, and with dropout its id counts 2: refused in one line, as on one node."""
    out = run_cli("run.py", *tiny("encoder", "+backbone.resources.nodes=2", "trainer.device=cpu"))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "this run would start 1 rank(s) but its id counts 2" in out.stderr, out.stderr[-2000:]
    assert not list(tmp_path.rglob("status.json"))


def test_a_run_of_several_ranks_trains_alone_whoever_set_them():
    """Fused training is one process of one rank: a run whose world is larger (its GPUs, its nodes or
    trainer.ranks) is not grouped."""
    assert why_alone(config(1, 1, None, dropout=0)) is None
    for asked in ((2, 1, None), (0, 2, None), (0, 1, 2)):
        assert why_alone(config(*asked, dropout=0)) == "several ranks or DeepSpeed", asked
