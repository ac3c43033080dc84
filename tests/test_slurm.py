"""SLURM through submitit, against the real one-node cluster that conftest starts (.ci/slurm.sh)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml
from conftest import QUICK, run_cli
from test_resume import _assert_same_run

from petsweep.records.status import RunDir, State

LONG = [
    "trainer.max_steps=1000",
    "trainer.save_every=20",
    "trainer.eval_every=1000",
    "task.k_shot=40",
    "method.dropout=0.1",
    "backbone=tiny-bert",
]  # long enough (~7 s) to be caught running after its first checkpoint (step 20)


# the test node's 2 fake GPUs: a task of 2 SLURM tasks, one rank each
TWO_RANKS = ["backbone.resources.gpus=2"]


def slurm_sweep(tiny_conf, root, *axes, launcher="slurm_localhost"):
    return run_cli(
        "run.py",
        "-m",
        f"launcher={launcher}",
        f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={root}",
        "sweep_name=study",
        *QUICK,
        *axes,
    )


def states(root):
    return {p.parent.name: json.loads(p.read_text())["state"] for p in sorted(root.glob("*/status.json"))}


def wait_for(predicate, timeout=240, what="condition"):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_array_results_land_chunked_and_resubmit_is_a_no_op(slurm_cluster, tiny_conf, tmp_path):
    out = slurm_sweep(tiny_conf, tmp_path, "backbone=tiny-bert", "seed=1,2,3,4,5")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert set(states(tmp_path / "study").values()) == {"COMPLETED"} and len(states(tmp_path / "study")) == 5
    finished = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert len(finished) == 5 and all(" COMPLETED accuracy " in line for line in finished)  # a line per run
    jobs = [json.loads(p.read_text())["job_id"] for p in (tmp_path / "study").glob("*/slurm.json")]
    arrays: dict[str, list[str]] = {}
    for job in jobs:
        array, _, index = job.partition("_")
        arrays.setdefault(array, []).append(index)
    # the test cluster's MaxArraySize is 4: 5 runs become an array of 4 indexed from 0, and one more job
    # (submitit submits a batch of one as a plain job)
    assert sorted(sorted(v) for v in arrays.values()) == [[""], ["0", "1", "2", "3"]]
    for run in (tmp_path / "study").glob("*/slurm.out"):
        assert run.resolve().exists()  # the job's log, linked into its run dir

    again = slurm_sweep(tiny_conf, tmp_path, "backbone=tiny-bert", "seed=1,2,3,4,5")
    assert "5 runs (5 done); launching 0" in again.stdout and "submitted" not in again.stdout


def test_scontrol_requeue_resumes_from_checkpoint_with_parity(slurm_cluster, tiny_conf, tmp_path):
    out = slurm_sweep(tiny_conf, tmp_path / "slurm", *LONG, "hydra.launcher.detach=true")
    assert out.returncode == 0, out.stderr[-3000:]
    [run_path] = (tmp_path / "slurm" / "study").glob("tiny-bert-*")
    run = RunDir(run_path)
    wait_for(
        lambda: len(list(run.checkpoints.glob("step-*"))) > 0 and run.state() == "RUNNING", what="checkpoint"
    )
    job_id = json.loads((run_path / "slurm.json").read_text())["job_id"]
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    wait_for(lambda: run.state() == "COMPLETED", what="the requeued job to finish")
    assert "resumed from" in (run_path / "train.log").read_text()

    local = run_cli(
        "run.py",
        f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={tmp_path}/local",
        "sweep_name=study",
        *QUICK,
        *LONG,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    [reference] = (tmp_path / "local" / "study").glob("tiny-bert-*")
    assert reference.name == run_path.name  # same config, same identity, wherever it ran
    _assert_same_run(RunDir(reference), run)


def test_scancel_records_cancelled_and_a_rerun_finishes(slurm_cluster, tiny_conf, tmp_path):
    out = slurm_sweep(tiny_conf, tmp_path, *LONG, "hydra.launcher.detach=true")
    assert out.returncode == 0, out.stderr[-3000:]
    [run_path] = (tmp_path / "study").glob("tiny-bert-*")
    run = RunDir(run_path)
    wait_for(lambda: run.state() == "RUNNING" and len(list(run.checkpoints.glob("step-*"))) > 0, what="start")
    cancel = run_cli("-m", "petsweep.cli", "cancel", str(tmp_path / "study"))
    assert "cancelled 1 running run(s)" in cancel.stdout
    wait_for(lambda: run.state() == "CANCELLED", what="CANCELLED")
    status = run_cli("-m", "petsweep.cli", "status", str(tmp_path / "study"))
    assert "cancelled" in status.stdout

    again = slurm_sweep(tiny_conf, tmp_path, *LONG)
    assert again.returncode == 0, again.stdout[-3000:]
    assert "1 runs (1 cancelled); launching 1" in again.stdout
    assert run.state() == "COMPLETED" and "resumed from" in (run_path / "train.log").read_text()


def test_a_task_trains_on_the_cpus_slurm_gave_it_unless_num_threads_says(tiny, monkeypatch):
    """torch's default is every core of the node, which the node's other tasks and the job's other ranks
    share: a task's run takes SLURM_CPUS_PER_TASK threads (the launcher's cpus_per_task), where neither
    trainer.num_threads nor OMP_NUM_THREADS sets them."""
    from launchers.slurm import _on_task_cpus
    from petsweep.compose import compose
    from petsweep.model.resolve import resolved_run

    spec = resolved_run(compose(tiny("encoder", "trainer.num_threads=null"))).to_dict()
    threads = lambda s: s["config"]["trainer"]["num_threads"]  # noqa: E731
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads(_on_task_cpus(spec)) is None
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    on_three = _on_task_cpus(spec)
    assert threads(on_three) == 3 and on_three["run_id"] == spec["run_id"]
    pinned = resolved_run(compose(tiny("encoder", "trainer.num_threads=5"))).to_dict()
    assert threads(_on_task_cpus(pinned)) == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the site's or the job's choice: torch takes it
    assert threads(_on_task_cpus(spec)) is None


def test_launcher_preset_missing_a_required_key_is_one_line(tiny_conf, tmp_path):
    out = slurm_sweep(tiny_conf, tmp_path, "backbone=tiny-bert", "seed=1,2", launcher="slurm_cluster")
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1 and "hydra.launcher.partition" in errors[0], out.stderr
    assert not list(tmp_path.rglob("status.json"))


@pytest.mark.parametrize("ranks", [1, 2])
def test_usr2_saves_at_the_next_step_and_requeues_with_parity(slurm_cluster, tiny_conf, tmp_path, ranks):
    """SLURM's pre-timeout/preemption signal: checkpoint at a step boundary, requeue through submitit. SLURM
    signals every task of a two-rank run; the ranks agree on the step they save (one may see the signal a
    step after the other), and rank 0 hands over to the requeue."""
    long = [
        a for a in LONG if not a.startswith(("trainer.save_every", "trainer.max_steps", "trainer.eval_every"))
    ]
    long += ["trainer.save_every=100000", "trainer.max_steps=1000", "trainer.eval_every=1000"]
    two = TWO_RANKS if ranks == 2 else []
    out = slurm_sweep(tiny_conf, tmp_path / "slurm", *long, *two, "hydra.launcher.detach=true")
    assert out.returncode == 0, out.stderr[-3000:]
    [run_path] = (tmp_path / "slurm" / "study").glob("tiny-bert-*")
    run = RunDir(run_path)
    wait_for(
        lambda: (
            run.state() == "RUNNING"
            and (run_path / "train.log").exists()
            and "trainable" in (run_path / "train.log").read_text()
        ),
        what="training",
    )
    time.sleep(1)
    job_id = json.loads((run_path / "slurm.json").read_text())["job_id"]
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    wait_for(lambda: run.state() == "COMPLETED", what="the requeued job to finish")
    log = (run_path / "train.log").read_text()
    assert "on the cluster's signal" in log and "resumed from" in log and run.result()["ranks"] == ranks

    local = run_cli(
        "run.py",
        f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={tmp_path}/local",
        "sweep_name=study",
        f"trainer.ranks={ranks}",
        *QUICK,
        *long,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    [reference] = (tmp_path / "local" / "study").glob("tiny-bert-*")
    _assert_same_run(RunDir(reference), run)


def test_a_queued_run_whose_job_left_the_queue_is_interrupted(slurm_cluster, tmp_path):
    """A pending job cancelled (or a node lost) before the run started: QUEUED is checked against squeue."""
    from launchers.planning import run_status

    held = subprocess.run(
        ["sbatch", "--hold", "--parsable", "-o", "/dev/null", "--wrap", "sleep 60"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        waiting, gone = RunDir(tmp_path / "waiting"), RunDir(tmp_path / "gone")
        waiting.set_status("QUEUED", slurm_job_id=held)
        gone.set_status("QUEUED", slurm_job_id="999999")
        assert run_status(waiting.path) == State.QUEUED and run_status(gone.path) == State.INTERRUPTED
        subprocess.run(["scancel", held], check=True)
        wait_for(
            lambda: run_status(waiting.path) == State.INTERRUPTED,
            timeout=30,
            what="the job to leave the queue",
        )
    finally:
        subprocess.run(["scancel", held], check=False)


def test_a_two_gpu_run_is_two_ranks_and_resumes_both_after_requeue(slurm_cluster, tiny_conf, tmp_path):
    """tasks_per_node=2 from the backbone's GPUs; both ranks join gloo from SLURM's environment; scontrol
    requeue mid-run resumes both from the checkpoint they wrote together, and the run ends exactly where the
    same two-rank run ends uninterrupted on this machine; one set of records."""
    out = slurm_sweep(tiny_conf, tmp_path / "slurm", *LONG, *TWO_RANKS, "hydra.launcher.detach=true")
    assert out.returncode == 0, out.stderr[-3000:]
    [run_path] = (tmp_path / "slurm" / "study").glob("tiny-bert-*")
    run = RunDir(run_path)
    wait_for(
        lambda: len(list(run.checkpoints.glob("step-*"))) > 0 and run.state() == "RUNNING", what="checkpoint"
    )
    assert {p.name for p in next(run.checkpoints.glob("step-*")).iterdir()} >= {"rng-rank1.safetensors"}
    job_id = json.loads((run_path / "slurm.json").read_text())["job_id"]
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    wait_for(lambda: run.state() == "COMPLETED", what="the requeued job to finish")
    assert run.result()["ranks"] == 2 and "resumed from" in (run_path / "train.log").read_text()
    assert len(list((tmp_path / "slurm" / "study").glob("*/result.json"))) == 1

    local = run_cli(
        "run.py",
        f"hydra.searchpath=[file://{tiny_conf}]",
        f"paths.runs_root={tmp_path}/local",
        "sweep_name=study",
        "trainer.ranks=2",
        *QUICK,
        *LONG,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    [reference] = (tmp_path / "local" / "study").glob("tiny-bert-*")
    assert reference.name == run_path.name and RunDir(reference).result()["ranks"] == 2
    _assert_same_run(RunDir(reference), run)


def test_a_two_gpu_zero3_run_holds_half_on_each_rank(slurm_cluster, tiny_conf, tmp_path):
    zero3 = ["deepspeed=zero3", "deepspeed.param_persistence_threshold=0", "backbone=tiny-bert"]
    out = slurm_sweep(tiny_conf, tmp_path, *zero3, *TWO_RANKS)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    [result] = [json.loads(p.read_text()) for p in (tmp_path / "study").glob("*/result.json")]
    held, total = result["shards"]["params"], result["total_params"]
    assert result["ranks"] == 2 and result["shards"]["loaded_into_shards"]
    assert len(held) == 2 and all(0.45 * total <= h <= 0.55 * total for h in held), held


def test_more_gpus_than_a_node_has_is_one_line_before_submitting(slurm_cluster, tiny_conf, tmp_path):
    out = slurm_sweep(tiny_conf, tmp_path, "backbone=tiny-bert", "backbone.resources.gpus=4", "seed=1,2")
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr[-3000:]
    assert "asks for 4 GPUs per node" in errors[0] and "at most 2 (sinfo: gpu:2" in errors[0]
    assert not list(tmp_path.rglob("status.json")) and not list(tmp_path.rglob("slurm.json"))


def test_runs_per_task_packs_runs_into_one_task_and_a_failure_stays_alone(slurm_cluster, tiny_conf, tmp_path):
    # lr 1e30 turns the loss into NaN on tiny-bert: those two runs fail, the others of their tasks finish
    axes = ["backbone=tiny-bert", "seed=1,2", "method.lr=0.002,1e30", "hydra.launcher.runs_per_task=3"]
    out = slurm_sweep(tiny_conf, tmp_path, *axes)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "submitted 2 SLURM task(s)" in out.stdout
    by_state = states(tmp_path / "study")
    assert sorted(by_state.values()) == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"]
    for name, state in by_state.items():
        config = yaml.safe_load((tmp_path / "study" / name / "config.yaml").read_text())
        assert (state == "FAILED") == (config["method"]["lr"] == 1e30)
    jobs = [json.loads(p.read_text())["job_id"] for p in (tmp_path / "study").glob("*/slurm.json")]
    assert sorted(jobs.count(job) for job in set(jobs)) == [1, 3]  # 4 runs in tasks of 3 and 1


def test_a_requeued_pack_skips_its_finished_run_and_resumes_the_other(slurm_cluster, tiny_conf, tmp_path):
    long = [a for a in LONG if not a.startswith("trainer.max_steps")] + ["trainer.max_steps=1000"]
    out = slurm_sweep(
        tiny_conf, tmp_path, *long, "seed=1,2", "hydra.launcher.runs_per_task=2", "hydra.launcher.detach=true"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [RunDir(p) for p in sorted((tmp_path / "study").glob("tiny-bert-*"))]
    [job_id] = {json.loads((run.path / "slurm.json").read_text())["job_id"] for run in runs}

    def one_done_one_saved():
        done = [r for r in runs if r.state() == "COMPLETED"]
        going = [r for r in runs if r.state() == "RUNNING" and list(r.checkpoints.glob("step-*"))]
        return len(done) == 1 and len(going) == 1

    wait_for(one_done_one_saved, what="the first run to finish and the second to save")
    [finished] = [r for r in runs if r.state() == "COMPLETED"]
    finished_at = finished.result_file.stat().st_mtime_ns
    subprocess.run(["scontrol", "requeue", job_id], check=True)
    wait_for(lambda: all(r.state() == "COMPLETED" for r in runs), what="the requeued task to finish")
    [resumed] = [r for r in runs if r is not finished]
    assert "resumed from" in (resumed.path / "train.log").read_text()
    assert finished.result_file.stat().st_mtime_ns == finished_at  # answered from its record, not retrained
    assert (finished.path / "train.log").read_text().count("trainable") == 1


def test_the_threshold_sweeper_searches_through_the_slurm_launcher(slurm_cluster, tiny_conf, tmp_path):
    """hydra/sweeper=threshold with launcher=slurm_localhost: every round's probes and the full target's
    references are SLURM jobs; the search ends with its thresholds table; a rerun reads the records and
    submits nothing."""
    search = [
        "hydra/sweeper=threshold",
        "backbone=tiny-bert",  # one cell
        "method=apet",
        "hydra.sweeper.budget=interval(100,1600)",
        "hydra.sweeper.resolution=4",  # a ladder of 100, 400, 1600
        "hydra.sweeper.max_runs=2",
        "hydra.sweeper.reference_seeds=1",
        "hydra.sweeper.targets=[random+0.05,full-0.01]",
        "hydra.launcher.runs_per_task=3",  # a round's runs in one SLURM task: one job start, not three
    ]
    out = slurm_sweep(tiny_conf, tmp_path, *search)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    root = tmp_path / "study"
    results = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/result.json")}
    configs = [yaml.safe_load((root / name / "config.yaml").read_text()) for name in results]
    methods = sorted(c["method"]["name"] for c in configs)
    assert methods[0] == "apet" and methods.count("full") == 1 and 2 <= len(methods) <= 3
    assert all((root / name / "slurm.json").exists() for name in results)  # each one a SLURM job
    assert "submitted" in out.stdout and f"{len(results)} runs trained" in out.stdout
    table = json.loads((root / "thresholds_search.json").read_text())
    assert [(r["cell"], r["target"]) for r in table] == [
        ("backbone=tiny-bert method=apet", "random+0.05"),
        ("backbone=tiny-bert method=apet", "full-0.01"),
    ]
    assert (root / "thresholds_search.csv").exists() and all(r["runs"] <= 2 for r in table)

    again = slurm_sweep(tiny_conf, tmp_path, *search)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 runs trained" in again.stdout and "submitted" not in again.stdout
    assert {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/result.json")} == results
    assert json.loads((root / "thresholds_search.json").read_text()) == table
