"""Hydra's own command line works as Hydra documents it, with petsweep's one-line errors on top; standard
sweepers (Optuna) get the run's score back; runs print their progress."""

from __future__ import annotations

import json

import yaml
from conftest import QUICK, run_cli


def base(tiny_conf, root, *extra):
    return [
        f"hydra.searchpath=[file://{tiny_conf}]",
        "backbone=tiny-bert",
        f"paths.runs_root={root}",
        *QUICK,
        *extra,
    ]


def errors(out) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.startswith("error:")]


def test_shell_completion_install_is_hydras():
    out = run_cli("run.py", "-sc", "install=bash")
    assert out.returncode == 0, out.stderr
    assert "hydra_bash_completion" in out.stdout and not errors(out)


def test_glob_on_a_sweep_axis_expands_over_the_group(tiny_conf, tmp_path):
    """glob() picks group options by pattern (validated before anything runs, like any axis)."""
    out = run_cli("run.py", "-m", *base(tiny_conf, tmp_path, "sweep_name=g", "method=glob([bit*,lo*])"))
    assert out.returncode == 0, out.stderr[-2000:]
    methods = sorted(json.loads(p.read_text())["method"] for p in (tmp_path / "g").glob("*/result.json"))
    assert methods == ["bitfit", "lora"]


def test_a_glob_that_matches_nothing_is_one_line(tiny_conf, tmp_path):
    out = run_cli("run.py", "-m", *base(tiny_conf, tmp_path, "method=glob(nothing*)"))
    assert out.returncode == 2 and len(errors(out)) == 1 and "glob() matches no option" in errors(out)[0]


def test_config_dir_adds_its_options_as_hydra_does(tiny_conf, tmp_path):
    """--config-dir/-cd adds a config dir to the search path: its backbones are options like ours."""
    out = run_cli(
        "run.py", "-cd", str(tiny_conf), "backbone=tiny-bert", f"paths.runs_root={tmp_path}", *QUICK
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(next(tmp_path.glob("*/*/result.json")).read_text())["backbone"] == "tiny-bert"


def test_deleting_a_group_runs_without_it(tiny_conf, tmp_path):
    out = run_cli("run.py", "~logger", *base(tiny_conf, tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]


def test_a_typo_in_a_hydra_group_is_one_line(tiny_conf, tmp_path):
    out = run_cli("run.py", "hydra/launcher=petsweep_locl", *base(tiny_conf, tmp_path))
    assert out.returncode == 2 and len(errors(out)) == 1, out.stderr
    assert "hydra/launcher" in errors(out)[0] and "petsweep_local" in errors(out)[0]


def test_a_sweep_preset_without_multirun_says_so(tiny_conf, tmp_path):
    out = run_cli("run.py", "+sweep=cpu_demo_lora", *base(tiny_conf, tmp_path))
    assert out.returncode == 2 and len(errors(out)) == 1 and "only a multirun expands" in errors(out)[0]
    assert not list(tmp_path.rglob("status.json"))


def test_multirun_with_cfg_job_is_one_line_pointing_at_plan(tiny_conf, tmp_path):
    """#26 review: `run.py -m method=lora,bitfit --cfg job` was Hydra's traceback ('Only one of --run,
    --multirun, --cfg ...'), though docs/sweeps.md says petsweep's checks answer in one line."""
    out = run_cli("run.py", "-m", "method=lora,bitfit", "--cfg", "job", *base(tiny_conf, tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(errors(out)) == 1, out.stderr
    assert "petsweep plan" in errors(out)[0]


def test_optuna_finds_a_better_learning_rate_and_repeats_are_answered_by_records(tiny_conf, tmp_path):
    """hydra/sweeper=optuna over method.lr: each trial's value is the run's best dev accuracy (never test);
    a learning rate proposed again is not retrained. No direction on the command line: Optuna's default
    (minimize) would report the worst trial as best; petsweep sets maximize from the task's metric."""
    out = run_cli(
        "run.py",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.sampler.seed=1",
        "method.lr=choice(0.0000001,0.03)",
        "trainer.head_lr=null",  # the head trains at method.lr too, so the lr decides (head_lr is 2e-3 else)
        *base(tiny_conf, tmp_path, "sweep_name=optuna", "trainer.max_steps=12", "trainer.eval_every=4"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "optuna").glob("*/result.json")]
    assert len(results) == 2  # five trials over two values: each config trained once
    by_lr = {r["config"]["method"]["lr"]: r["best_dev_score"] for r in results}
    best = yaml.safe_load((tmp_path / "optuna" / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(by_lr.values()) > min(by_lr.values())
    assert by_lr[best["best_params"]["method.lr"]] == best["best_value"]


def test_optuna_minimizing_a_score_is_one_line(tiny_conf, tmp_path):
    out = run_cli(
        "run.py",
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.direction=minimize",
        "method.lr=choice(0.0000001,0.03)",
        *base(tiny_conf, tmp_path, "sweep_name=optuna"),
    )
    assert out.returncode == 2 and len(errors(out)) == 1, out.stderr[-2000:]
    assert "hydra.sweeper.direction" in errors(out)[0] and "use maximize" in errors(out)[0]
    assert not list(tmp_path.rglob("status.json"))


def test_an_unknown_optimized_metric_is_one_line(tiny_conf, tmp_path):
    out = run_cli("run.py", "optimized_metric=test/precision", *base(tiny_conf, tmp_path))
    assert out.returncode == 2 and len(errors(out)) == 1 and "test/accuracy" in errors(out)[0]


def test_a_run_prints_progress_lines_and_writes_progress_json(tiny_conf, tmp_path):
    out = run_cli("run.py", *base(tiny_conf, tmp_path, "trainer.max_steps=6", "trainer.log_every=2"))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [line for line in (out.stdout + out.stderr).splitlines() if "it/s" in line]
    assert [line.split("step ")[1].split()[0] for line in lines] == ["2/6", "4/6", "6/6"]
    assert all("loss" in line and "ETA" in line for line in lines)
    progress = json.loads(next(tmp_path.glob("*/*/progress.json")).read_text())
    assert progress["step"] == 6 and progress["max_steps"] == 6 and progress["eta_s"] == 0


def test_a_sweep_prints_a_line_per_finished_run(tiny_conf, tmp_path):
    out = run_cli(
        "run.py",
        "-m",
        *base(tiny_conf, tmp_path, "sweep_name=lines", "method=lora,bitfit", "method.lr=0.001,1e30"),
    )  # lr 1e30 turns tiny-bert's loss into NaN
    done = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert len(done) == 4 and {line.split("]")[0] for line in done} == {"[1/4", "[2/4", "[3/4", "[4/4"}
    completed = [line for line in done if " COMPLETED accuracy " in line]
    failed = [line for line in done if " FAILED: " in line]
    assert len(completed) == 2 and len(failed) == 2, done
    assert all("FloatingPointError: loss is" in line for line in failed)

    again = run_cli(
        "run.py",
        "-m",
        *base(tiny_conf, tmp_path, "sweep_name=lines", "method=lora,bitfit", "method.lr=0.001,1e30"),
    )
    assert "launching 2" in again.stdout  # the two failed runs, again
    launches = sorted((tmp_path / "lines" / ".launcher").glob("*/*"))
    logs = [sorted(p.name for p in launch.glob("*.log")) for launch in launches]
    assert len(launches) == 2 and [len(names) for names in logs] == [4, 2]  # the first launch's logs kept
    assert set(logs[1]) <= set(logs[0]) and all(name.startswith("tiny-bert-") for name in logs[0])


def test_petsweep_version():
    out = run_cli("-m", "petsweep.cli", "--version")
    assert out.returncode == 0 and out.stdout.startswith("petsweep 0.")


def test_submitit_launchers_are_refused_with_what_to_use(tiny_conf, tmp_path):
    for launcher, instead in (("submitit_slurm", "launcher=slurm_"), ("submitit_local", "launcher=local")):
        out = run_cli("run.py", "-m", f"hydra/launcher={launcher}", *base(tiny_conf, tmp_path, "seed=1,2"))
        assert out.returncode == 2 and len(errors(out)) == 1, out.stderr
        assert launcher in errors(out)[0] and instead in errors(out)[0] and "resources" in errors(out)[0]
    assert not list(tmp_path.rglob("status.json"))
