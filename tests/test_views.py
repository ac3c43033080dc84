"""Names and views (#26): what tells a sweep's runs apart, in sweep lines, status and W&B; every planned run
in a sweep's status."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_NAMES, run_cli, sweep_argv

from launchers.report import status_rows, status_table
from petsweep.records.labels import differing

WANDB = str(Path(sys.executable).with_name("wandb"))


def _inspect(run_path: Path, *flags: str) -> str:
    [offline] = sorted((run_path / "wandb").glob("offline-run-*"))
    command = [WANDB, "leet", "inspect", "--json", *flags, str(offline)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def _wandb_run(run_path: Path) -> tuple[dict, dict]:
    """What W&B wrote: the run's summary, and its run record (name, tags, job_type as W&B holds them)."""
    records = [json.loads(line) for line in _inspect(run_path).splitlines() if line.startswith("{")]
    record = [r["run"] for r in records if r.get("type") == "run"][0]
    return json.loads(_inspect(run_path, "--summary")), record


def test_differing_overrides_are_those_whose_values_vary():
    runs = [
        ["apet.scale=lora", "apet.seed=1", "method=apet"],
        ["apet.scale=4096", "apet.seed=1", "method=apet"],
    ]
    assert differing(runs) == [["apet.scale=lora"], ["apet.scale=4096"]]
    assert differing([["seed=1", "+x=2"], ["seed=1"]]) == [["+x=2"], []]  # set by some runs only
    assert differing([["seed=1"]]) == [[]]


def test_sweep_lines_status_and_wandb_show_what_differs_and_status_lists_every_planned_run(
    tiny_conf, tmp_path
):
    """Four APET runs on one backbone read `minilm...-apet-...-s0-<hash>` alike; now each sweep line, status
    row and W&B run name/tags carry `apet.scale=8 apet.seed=1` etc. (W&B job_type: the method). A run the
    sweep planned that has no run dir yet is listed as NEW by status (it listed only the started ones)."""
    axes = [f"backbone={TINY_NAMES['encoder']}", "logger=wandb", "apet.scale=8,16", "apet.seed=1,2"]
    out = run_cli(*sweep_argv(tiny_conf, tmp_path, *axes, parallel=2))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = tmp_path / "study"
    labels = json.loads((sweep / "sweep.json").read_text())["labels"]
    wanted = {f"apet.scale={k} apet.seed={s}" for k in (8, 16) for s in (1, 2)}
    assert {" ".join(v) for v in labels.values()} == wanted
    for name, label in labels.items():
        text = " ".join(label)
        assert f"{name}  [{text}]" in out.stdout  # the line printed as the run ended
        assert any(
            line.startswith("COMPLETED") and name in line and f"[{text}]" in line
            for line in status_table(sweep).splitlines()
        )
        summary, record = _wandb_run(sweep / name)
        assert summary["name"].startswith(text + " ")  # then the hash: runs differing in lr alone differ
        assert set(label) <= set(summary["tags"]) and {"apet", "bbc_news"} <= set(summary["tags"])
        assert record["job_type"] == "apet" and record["display_name"] == summary["name"]

    gone = sorted(labels)[:2]
    for name in gone:  # as if the sweep had been cancelled before these two started
        shutil.rmtree(sweep / name)
    rows = {r["run"]: r for r in status_rows(sweep)}
    assert len(rows) == 4 and {n for n, r in rows.items() if r["state"] == "NEW"} == set(gone)
    table = status_table(sweep)
    assert "4 runs: 2 done, 2 new" in table
    for name in gone:
        assert any(
            line.startswith("NEW") and name in line and " ".join(labels[name]) in line
            for line in table.splitlines()
        )


def test_wandb_gets_train_loss_and_lr_every_log_every_steps(tiny):
    """W&B got train/loss and train/lr only at evaluation steps (3 and 6 here); now every trainer.log_every
    steps, as train.log prints them: the mean loss over those steps and the lr after the step."""
    import re

    from petsweep.compose import compose
    from petsweep.model.resolve import run_dir
    from petsweep.run.app import run

    cfg = compose(tiny("encoder", "logger=wandb", "trainer.log_every=2"))
    run(cfg)
    path = run_dir(cfg)
    rows = [json.loads(line) for line in _inspect(path).splitlines() if '"history"' in line]
    history = [row["history"]["item"] for row in rows]
    trained = {h["_step"]: h for h in history if "train/loss" in h}
    assert sorted(trained) == [2, 4, 6] and all("train/lr" in h for h in trained.values())
    printed = re.findall(r"step (\d+)/6  loss ([0-9.]+)", (path / "train.log").read_text())
    assert [(int(s), float(v)) for s, v in printed] == [
        (s, pytest.approx(h["train/loss"], rel=1e-3)) for s, h in sorted(trained.items())
    ]
    assert trained[6]["train/lr"] == 0 and trained[2]["train/lr"] > trained[4]["train/lr"] > 0  # linear decay
    assert sorted(h["_step"] for h in history if "eval/accuracy" in h) == [3, 6]


def test_the_table_names_columns_as_wandb_does_gives_a_cut_backbone_its_depth_and_keeps_lists(tiny, tmp_path):
    """Columns were metric.accuracy / train_metric.* / dev_accuracy beside W&B's test/accuracy, eval/...;
    cfg.backbone.arch.num_hidden_layers read the full model's depth for a backbone cut to its first layers;
    lists were JSON strings. Now: W&B's names, a `depth` column and the cut depth, lists as lists (parquet
    and CSV round trips too)."""
    from analysis.grouping import variant_keys
    from analysis.load import collect, history, load, save
    from petsweep.compose import compose
    from petsweep.run.app import run

    run(compose(tiny("encoder", "backbone.num_layers=1", "method.targets=[q,v]")))
    sweep = tmp_path / "runs" / "single"
    table = collect([sweep])
    row = table.iloc[0]
    assert row["test/accuracy"] == row["score"] and "test/f1" in table and "train_subset/accuracy" in table
    assert row["eval/best_accuracy"] == row["best_dev_score"]
    assert not [c for c in table.columns if c.startswith(("metric.", "train_metric."))]
    assert row["depth"] == 1 and row["cfg.backbone.arch.num_hidden_layers"] == 1  # the tiny model has 2
    assert row["cfg.method.targets"] == ["q", "v"]
    for suffix in (".parquet", ".csv"):
        back = load(save(table, tmp_path / f"table{suffix}"))
        assert back.iloc[0]["cfg.method.targets"] == ["q", "v"], suffix
        assert variant_keys(back, ["backbone", "method"]) == []  # figures group on list columns too
    steps = history([sweep])
    assert {"train/loss", "train/lr", "eval/accuracy"} <= set(steps.columns)
    assert not {"train_loss", "lr", "dev_accuracy"} & set(steps.columns)


def test_plan_shows_what_differs_between_runs_and_the_units_of_its_columns(tmp_path):
    """`petsweep plan` printed six APET budgets as six slug + hash names and `mem`, `time` without units;
    a run's row now ends with what differs, as the sweep's lines and status show it (the same function)."""
    from petsweep.cli import plan_command

    sweep = ["method=apet", "apet.scale=lora,bitfit", "apet.seed=1,2", "backbone=minilm-l1"]
    header, *rows = plan_command([*sweep, f"paths.runs_root={tmp_path}"]).splitlines()
    assert header.split()[3:9] == ["gpus", "mem", "GB", "time", "min", "hours"]
    at = header.index("differs")
    assert [row[at:].split("]")[0] + "]" for row in rows[:4]] == [
        "[apet.scale=lora apet.seed=1]",
        "[apet.scale=lora apet.seed=2]",
        "[apet.scale=bitfit apet.seed=1]",
        "[apet.scale=bitfit apet.seed=2]",
    ]
    assert (
        "  gpus, mem GB, time min: what each run asks for (backbone.resources); hours, gpu-h: the estimate"
        in rows
    )
    header, *rows = plan_command(["backbone=minilm-l1", f"paths.runs_root={tmp_path}"]).splitlines()
    assert "differs" not in header and "[" not in rows[0]  # one run: nothing differs


def test_plan_expands_glob_as_run_py_does_and_a_presets_cfg_suggests_what_works(tmp_path):
    """`petsweep plan 'method=glob(l*)'` raised HydraException (ConfigLoader is not set) where run.py -m
    runs the three methods; `run.py --cfg job +sweep=X` suggested `run.py -m --cfg job ...`, which Hydra
    refuses (one of --multirun, --cfg)."""
    import pytest

    from petsweep.cli import plan_command, preflight
    from petsweep.spec.errors import PetsweepError

    table = plan_command(["method=glob(l*)", "backbone=minilm-l1", f"paths.runs_root={tmp_path}"])
    assert [line.split()[1].split("-")[2] for line in table.splitlines()[1:4]] == ["last_layer", "ln", "lora"]
    assert "total: 3 runs" in table
    with pytest.raises(PetsweepError) as err:
        preflight(["--cfg", "job", "+sweep=cpu_demo_lora"])
    assert "petsweep plan +sweep=cpu_demo_lora lists its runs" in str(err.value)
    assert "-m --cfg" not in str(err.value)


def test_plan_calibrates_from_every_finished_run_under_the_runs_root_and_counts_start_up(tiny):
    """Estimates were 5-8x low for short runs (0.004 h estimated, 110 s taken): a run finished in another
    sweep of the same runs root did not calibrate a new sweep (a FLOPs guess); start-up was not counted."""
    from launchers.expand import expand
    from launchers.planning import plan
    from launchers.report import estimate_hours
    from petsweep.compose import compose
    from petsweep.run.app import run

    base = tiny("encoder", "trainer.max_steps=12", "trainer.eval_every=2")
    result = run(compose([*base, "seed=1", "sweep_name=earlier"]))
    [planned] = plan(expand([*base, "seed=1", "sweep_name=later"]), compose)
    estimate_hours([planned])
    assert not planned.extra["guess"] and planned.extra["basis"].startswith("measured (1 run(s) of tiny-bert")
    assert "start-up measured on tiny-bert" in planned.extra["basis"]
    work = result["train_time_s"] + result["dev_eval_time_s"] + result["final_eval_time_s"]
    assert result["time_to_first_step_s"] > 0
    assert planned.extra["hours"] * 3600 == pytest.approx(work + result["time_to_first_step_s"], rel=1e-6)


def test_a_run_whose_pet_parameters_did_not_move_says_so_on_its_sweep_line_and_in_status(
    tiny_conf, tmp_path, monkeypatch
):
    """A sweep of runs whose PET parameters changed no dev prediction (result.json pet_moved false) read
    `COMPLETED accuracy 0.2050 in 27 s` alike: identical scores went unnoticed unless one read train.log. Now
    the sweep line, `petsweep status` (from the files and from the sweep index) and its --json say so; a run
    whose parameters moved, or an old record without pet_moved, says nothing more."""
    from launchers.progress import outcome
    from petsweep.records import index
    from petsweep.records.status import RunDir

    axes = [f"backbone={TINY_NAMES['encoder']}", "method=apet", "apet.scale=10", "method.lr=1e-7,2e-7"]
    out = run_cli(*sweep_argv(tiny_conf, tmp_path, *axes))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    sweep = tmp_path / "study"
    names = sorted(p.parent.name for p in sweep.glob("*/result.json"))
    assert len(names) == 2
    for name in names:
        assert json.loads((sweep / name / "result.json").read_text())["pet_moved"] is False
        [line] = [x for x in out.stdout.splitlines() if name in x and "COMPLETED" in x]
        assert "(PET parameters did not move) in " in line, line
    monkeypatch.setattr(index, "RACY_S", 0.0)  # runs that ended a moment ago are indexed too
    for indexed in ("0", "1"):  # from the files, then from the sweep index (the runs' own lines)
        monkeypatch.setenv(index.ENV, indexed)
        index.READS.clear()
        table = status_table(sweep)
        assert indexed == "0" or not index.READS, index.READS  # no run was read from its files
        for name in names:
            [row] = [x for x in table.splitlines() if name in x]
            assert row.startswith("COMPLETED") and row.endswith("(PET parameters did not move)"), row
        assert all(r["notes"] == ["PET parameters did not move"] for r in status_rows(sweep))
    shown = run_cli("-m", "petsweep.cli", "show", str(sweep / names[0]))
    assert "on test (best dev" in shown.stdout and "(PET parameters did not move)" in shown.stdout, shown
    moved = RunDir(tmp_path / "other" / "a-run")
    moved.set_status("COMPLETED")
    for pet_moved in (True, None):  # moved, or a record older than the check
        record = {"metric": "accuracy", "score": 0.5, "pet_moved": pet_moved}
        (moved.path / "result.json").write_text(json.dumps(record))
        assert outcome(moved.path, 0, None) == "COMPLETED accuracy 0.5000"
