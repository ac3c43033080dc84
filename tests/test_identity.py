"""Run identity covers what changes the numbers, not where things live or what a scheduler is asked for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli

from petsweep.compose import compose
from petsweep.model.resolve import run_dir, run_hash
from petsweep.records.status import RunDir
from petsweep.run.app import run
from petsweep.spec.identity import plain as plain_config


def test_resources_weight_and_data_locations_are_not_identity():
    base = compose([])
    for change in (
        "backbone.resources.time_min=600",
        "backbone.resources.mem_gb=64",
        "backbone.path=/moved/weights",
        "backbone.package=other_pkg/model",
        "task.hf_path=/data/copy",
        "+backbone.modules.q=.*attention\\.self\\.query",  # where q sits; targets say what trains
    ):
        assert run_hash(compose([change])) == run_hash(base), change


def test_numbers_compare_as_numbers_and_a_disabled_group_adds_nothing():
    assert run_hash(compose(["method.lr=1"])) == run_hash(compose(["method.lr=1.0"]))
    assert run_hash(compose(["trainer.max_grad_norm=2"])) == run_hash(compose(["trainer.max_grad_norm=2.0"]))
    assert run_hash(compose(["method.lr=0.001"])) == run_hash(compose(["method.lr=1e-3"]))
    assert run_hash(compose(["method.lr=0.001"])) != run_hash(compose(["method.lr=0.002"]))
    assert run_hash(compose(["apet.seed=5"])) == run_hash(compose([]))  # APET off: its seed is not a run's


def test_local_files_count_by_content_not_path(tmp_path):
    rows = "".join(json.dumps({"inputs": f"t{i}", "outputs": ["a", "b"][i % 2]}) + "\n" for i in range(10))
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "train.jsonl").write_text(rows)
    shutil.copytree(tmp_path / "one", tmp_path / "moved")

    def digest(folder):
        return run_hash(
            compose(
                [
                    "task=local",
                    f"task.files.train={tmp_path}/{folder}/train.jsonl",
                    f"task.files.test={tmp_path}/{folder}/train.jsonl",
                ]
            )
        )

    before = digest("one")
    assert digest("moved") == before
    (tmp_path / "moved" / "train.jsonl").write_text(
        rows + json.dumps({"inputs": "new", "outputs": "a"}) + "\n"
    )
    assert digest("moved") != before


def test_rehash_moves_a_run_made_under_an_older_rule_so_it_is_found_again(tiny, capsys):
    cfg = compose(tiny("encoder"))
    result = run(cfg)
    current = run_dir(cfg)
    old = current.with_name(current.name[:-12] + "0123456789ab")  # the name an older rule gave it
    current.rename(old)
    out = run_cli("-m", "petsweep.cli", "rehash", str(old.parent))
    assert out.returncode == 0 and "1 run dir(s) renamed" in out.stdout, out.stdout + out.stderr
    assert not old.exists() and RunDir(current).result()["run_id"] == result["run_id"]
    capsys.readouterr()
    run(cfg)
    assert "already COMPLETED" in capsys.readouterr().out  # found, not retrained
    again = run_cli("-m", "petsweep.cli", "rehash", str(old.parent))
    assert "0 run dir(s) renamed" in again.stdout


def test_frozen_dtype_auto_is_identified_as_what_it_holds():
    """Runs recorded before trainer.frozen_dtype held fp32 frozen weights: fp32 (and auto where it resolves to
    fp32) keeps their ids; bf16 frozen weights change the numbers, so the id."""
    from petsweep.spec.config import TrainerConfig
    from petsweep.train.loop import frozen_dtype

    assert run_hash(compose([]))[:12] == "9deb1d1591df"
    assert run_hash(compose(["trainer.frozen_dtype=fp32"])) == run_hash(compose([]))
    old_bf16 = run_hash(compose(["trainer.precision=bf16", "trainer.frozen_dtype=fp32"]))  # what they did
    assert run_hash(compose(["trainer.precision=bf16"])) != old_bf16  # auto on a bf16 run holds bf16
    assert run_hash(compose(["trainer.precision=bf16"])) == run_hash(
        compose(["trainer.precision=bf16", "trainer.frozen_dtype=bf16"])
    )
    record = plain_config(compose(["trainer.precision=bf16"]))
    del record["trainer"]["frozen_dtype"]  # a config.yaml written before the key existed
    assert run_hash(record) == old_bf16
    # precision=auto computes in bf16 on GPUs; its frozen weights stay fp32, as before
    assert frozen_dtype(TrainerConfig(), bf16=True) == torch.float32
    assert frozen_dtype(TrainerConfig(precision="bf16"), bf16=True) == torch.bfloat16


def test_modules_count_where_they_differ_from_the_architectures_map():
    default_q = "+backbone.modules.q=.*attention\\.self\\.query"  # BERT's own map: nothing changes
    assert run_hash(compose([default_q])) == run_hash(compose([]))
    wider = '+backbone.modules.q=".*attention\\.self\\.(query|key)"'  # LoRA on q now trains k too
    assert run_hash(compose([wider])) != run_hash(compose([]))


def test_ranks_count_when_dropout_draws_masks():
    assert run_hash(compose(["trainer.ranks=1"])) == run_hash(compose([]))  # 1-rank runs keep their ids
    assert run_hash(compose(["trainer.ranks=2"])) != run_hash(compose([]))  # dropout: masks per rank
    no_dropout = run_hash(compose(["backbone.dropout=0"]))
    assert run_hash(compose(["backbone.dropout=0", "trainer.ranks=2"])) == no_dropout
    assert run_hash(compose(["backbone.dropout=0", "trainer.ranks=2", "method.dropout=0.1"])) != no_dropout
    # ranks=null starts the backbone's GPUs (SLURM's tasks): counted as such where dropout is on
    assert run_hash(compose(["backbone.resources.gpus=2"])) == run_hash(compose(["trainer.ranks=2"]))
    assert run_hash(compose(["backbone.resources.gpus=2", "backbone.dropout=0"])) == no_dropout


def test_a_run_that_would_start_other_ranks_than_its_id_counts_is_refused(tiny):
    out = run_cli("run.py", *tiny("encoder", "backbone.resources.gpus=2", "trainer.device=cpu"))
    assert out.returncode != 0, out.stderr
    assert "trainer.ranks=None: this run would start 1 rank(s) but its id counts 2" in out.stderr, out.stderr


def _local_task(folder) -> list[str]:
    return ["task=local", f"task.files.train={folder}/train.jsonl", f"task.files.test={folder}/test.jsonl"]


def _write_rows(folder, extra=0):
    folder.mkdir(exist_ok=True)
    for split in ("train", "test"):
        rows = [{"inputs": f"{split} {i} w{i % 3}", "outputs": ["a", "b"][i % 2]} for i in range(24 + extra)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_rehash_identifies_a_run_by_the_data_it_was_trained_on(tiny, tmp_path, capsys):
    data = tmp_path / "data"
    _write_rows(data)
    cfg = compose(tiny("encoder", *_local_task(data), "task.dev_size=4"))
    first = run(cfg)
    trained = run_dir(cfg)
    old = trained.with_name(trained.name[:-12] + "0123456789ab")
    trained.rename(old)
    _write_rows(data, extra=3)  # the file edited after training
    out = run_cli("-m", "petsweep.cli", "rehash", str(old.parent))
    assert "1 run dir(s) renamed" in out.stdout, out.stdout + out.stderr
    assert trained.exists() and RunDir(trained).result()["run_id"] == first["run_id"]  # not the new data's id
    capsys.readouterr()
    again = run(cfg)  # the edited data: a run of its own, trained
    assert "already COMPLETED" not in capsys.readouterr().out and again["run_id"] != first["run_id"]

    trained.rename(old)
    shutil.move(data, tmp_path / "elsewhere")  # the data moved away: nothing to check the record against
    out = run_cli("-m", "petsweep.cli", "rehash", str(old.parent))
    assert "0 run dir(s) renamed" in out.stdout and "refused" in out.stdout and "missing" in out.stdout
    assert old.exists()


def test_rehash_moves_aside_a_run_whose_new_id_is_taken(tiny):
    from analysis.load import collect

    cfg = compose(tiny("encoder"))
    run(cfg)
    current = run_dir(cfg)
    # the same run finished, and interrupted, under older rules' names (the sweep ran again after the change)
    old, cut = (current.with_name(current.name[:-12] + tail) for tail in ("0123456789ab", "ba9876543210"))
    shutil.copytree(current, old)
    result = json.loads((old / "result.json").read_text())
    (old / "result.json").write_text(json.dumps({**result, "run_id": "0123456789ab" + "0" * 52}))
    shutil.copytree(current, cut)
    (cut / "result.json").unlink()
    status = json.loads((cut / "status.json").read_text())
    (cut / "status.json").write_text(json.dumps({**status, "state": "RUNNING", "pid": 999999999}))
    assert len(collect([current.parent])) == 3  # three rows for one config and seed
    assert "INTERRUPTED" in run_cli("-m", "petsweep.cli", "status", str(current.parent)).stdout
    out = run_cli("-m", "petsweep.cli", "rehash", str(current.parent))
    assert out.returncode == 0 and out.stdout.count("moved aside") == 2, out.stdout
    assert not old.exists() and not cut.exists() and current.exists()
    for moved in (old, cut):
        aside = list((current.parent / ".invalidated").glob(f"*/{moved.name}"))
        assert len(aside) == 1 and "rehash" in (aside[0].parent / "invalidated.json").read_text()
    assert len(collect([current.parent])) == 1
    status_out = run_cli("-m", "petsweep.cli", "status", str(current.parent))
    assert "INTERRUPTED" not in status_out.stdout, status_out.stdout


def test_rehash_puts_a_finished_run_in_place_of_a_dead_attempt_at_its_new_id(tiny):
    cfg = compose(tiny("encoder"))
    run(cfg)
    current = run_dir(cfg)
    # the finished run sits under an older rule's name; the new id holds an attempt killed mid-training
    old = current.with_name(current.name[:-12] + "0123456789ab")
    current.rename(old)
    current.mkdir()
    (current / "config.yaml").write_text((old / "config.yaml").read_text())
    status = json.loads((old / "status.json").read_text())
    (current / "status.json").write_text(json.dumps({**status, "state": "RUNNING", "pid": 999999999}))
    out = run_cli("-m", "petsweep.cli", "rehash", str(current.parent))
    assert out.returncode == 0 and not old.exists(), out.stdout
    assert RunDir(current).state() == "COMPLETED" and RunDir(current).result() is not None
    aside = list((current.parent / ".invalidated").glob(f"*/{current.name}"))
    assert len(aside) == 1 and RunDir(aside[0]).result() is None  # the dead attempt, kept aside


OLD_RECORDS = Path(__file__).parent / "fixtures" / "old_records"
# what the current code must do with each old record: reproduce it under its id, or give the run a new id
COMPATIBLE = {
    ("1a02139", "lora-encoder", ()): "same",
    ("1a02139", "lora-decoder", ()): "same",
    ("1a02139", "bitfit-encoder-dropout", ()): "same",
    # frozen weights in bf16 changed bf16 runs: a new id; frozen_dtype=fp32 is what the old record did
    ("1a02139", "lora-encoder-bf16", ()): "new",
    ("1a02139", "lora-encoder-bf16", ("trainer.frozen_dtype=fp32",)): "same",
}


def _case_id(value) -> str:
    return value if isinstance(value, str) else "+".join(value) or "as-is"


@pytest.mark.parametrize("commit,name,extra", list(COMPATIBLE), ids=_case_id)
def test_runs_recorded_by_older_commits_are_reproduced_or_re_identified(tiny, commit, name, extra):
    folder = OLD_RECORDS / commit / name
    record = json.loads((folder / "result.json").read_text())
    case = json.loads((folder / "case.json").read_text())
    assert run_hash(yaml.safe_load((folder / "config.yaml").read_text())) == record["run_id"]  # rehash: stays
    cfg = compose(tiny(case["family"], *case["overrides"], *extra))
    same = run_hash(cfg) == record["run_id"]
    assert ("same" if same else "new") == COMPATIBLE[(commit, name, extra)]
    if same:  # the record answers this config: the current code must compute what it recorded
        fresh = run(cfg)
        assert fresh["run_id"] == record["run_id"] and fresh["steps"] == record["steps"]
        assert fresh["metrics"] == pytest.approx(record["metrics"], abs=1e-6), name
        assert fresh["train_subset_metrics"] == pytest.approx(record["train_subset_metrics"], abs=1e-6)
        logged = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        now = [json.loads(line) for line in RunDir(run_dir(cfg)).metrics_file.read_text().splitlines()]
        assert [r["step"] for r in now] == [r["step"] for r in logged]
        for key in ("train_loss", "dev_accuracy"):  # the losses show a changed computation long before scores
            assert [r[key] for r in now] == pytest.approx([r[key] for r in logged], abs=1e-6), key


def test_the_default_job_keeps_the_id_older_commits_gave_it():
    for commit in OLD_RECORDS.iterdir():
        if commit.is_dir():
            assert (commit / "default_job_id.txt").read_text().strip() == run_hash(compose([]))[:12]
    assert run_hash(compose([]))[:12] == "9deb1d1591df"


def test_rehash_counts_the_ranks_a_run_recorded(tmp_path):
    """An old 1-rank record of a backbone that asks for 2 GPUs: ranks=null now counts 2 ranks, but the run
    trained on one, and rehash identifies it by what it did."""
    folder = OLD_RECORDS / "1a02139" / "lora-encoder"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["backbone"]["resources"]["gpus"] = 2
    record = json.loads((folder / "result.json").read_text())
    one_rank = run_hash({**config, "trainer": {**config["trainer"], "ranks": 1}})
    assert run_hash(config) != one_rank  # dropout on: a fresh null run would start 2 ranks
    sweep = tmp_path / "study"
    old = sweep / json.loads((folder / "case.json").read_text())["dir"]
    old.mkdir(parents=True)
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    (old / "result.json").write_text(json.dumps(record))
    (old / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))
    out = run_cli("-m", "petsweep.cli", "rehash", str(sweep))
    assert out.returncode == 0, out.stderr
    assert [p.name for p in sweep.iterdir() if p.is_dir()] == [f"{old.name[:-12]}{one_rank[:12]}"]


def test_rehash_gives_a_run_that_held_bf16_frozen_weights_the_id_of_bf16(tmp_path):
    """Between trainer.frozen_dtype and this rule, auto held bf16 frozen weights on GPUs (precision=auto):
    such a record (backbone_dtype bfloat16) moves to the id of frozen_dtype=bf16, not auto's fp32 one."""
    folder = OLD_RECORDS / "1a02139" / "lora-encoder"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["trainer"]["frozen_dtype"] = "auto"
    record = {**json.loads((folder / "result.json").read_text()), "backbone_dtype": "bfloat16", "ranks": 1}
    bf16 = run_hash({**config, "trainer": {**config["trainer"], "frozen_dtype": "bf16"}})
    assert run_hash(config) == record["run_id"] != bf16
    sweep = tmp_path / "study"
    old = sweep / json.loads((folder / "case.json").read_text())["dir"]
    old.mkdir(parents=True)
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    (old / "result.json").write_text(json.dumps(record))
    (old / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))
    out = run_cli("-m", "petsweep.cli", "rehash", str(sweep))
    assert "1 run dir(s) renamed" in out.stdout, out.stdout + out.stderr
    [moved] = [p for p in sweep.iterdir() if p.is_dir()]
    assert moved.name.endswith(bf16[:12]) and RunDir(moved).result()["previous_run_ids"] == [record["run_id"]]


def test_rehash_refuses_a_dir_whose_config_does_not_parse_and_rehashes_the_others(tmp_path):
    """One unparsable config.yaml was a 58-line YAML traceback and stopped rehash before the other dirs."""
    folder = OLD_RECORDS / "1a02139" / "lora-encoder"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["trainer"]["frozen_dtype"] = "auto"
    record = {**json.loads((folder / "result.json").read_text()), "backbone_dtype": "bfloat16", "ranks": 1}
    sweep = tmp_path / "study"
    for name, text in (("a-broken-000000000000", "method: [unclosed"), (case_dir(folder), None)):
        run = sweep / name
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(text or yaml.safe_dump(config))
        (run / "result.json").write_text(json.dumps(record))
        (run / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))
    out = run_cli("-m", "petsweep.cli", "rehash", str(sweep))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert "refused" in out.stdout and "a-broken-000000000000" in out.stdout
    assert "does not parse" in out.stdout
    assert "1 run dir(s) renamed" in out.stdout, out.stdout


def case_dir(folder) -> str:
    return json.loads((folder / "case.json").read_text())["dir"]


def test_bbc_headlines_split_on_its_input_is_a_new_id_and_bbc_news_keeps_its_own():
    """task.dedupe_inputs changes bbc_headlines' train split (it reads the headline, splits by article): a new
    id, and =false is the id its runs were recorded under; bbc_news reads what it dedupes on, so the key
    removes nothing there and its id stays."""
    assert run_hash(compose(["task=bbc_headlines", "task.dedupe_inputs=false"]))[:12] == "37667544a610"
    assert run_hash(compose(["task=bbc_headlines"]))[:12] != "37667544a610"
    assert run_hash(compose(["task.dedupe_inputs=false"]))[:12] == "9deb1d1591df"
    assert run_hash(compose([]))[:12] == "9deb1d1591df"


def run_entries(sweep: Path) -> list[str]:
    """A sweep dir's entries but its index (a cache beside the runs): a run renamed or moved aside shows."""
    return sorted(p.name for p in sweep.iterdir() if p.name != ".index")


def test_an_edited_config_yaml_never_renames_a_finished_record(tiny, caplog):
    """#22 review: config.yaml of a finished rank-1 LoRA run edited to r: 4 renamed the record to the r=4 id
    (rehash, or the reuse check of any request for it), and it then answered r=4 requests with rank-1
    numbers. result.json records config.yaml's sha256; an edited copy is refused by rehash and the record
    keeps its name; it is still reused for its own request (with a warning), also where it does not parse."""
    from petsweep.run.rehash import reusable_result

    cfg = compose(tiny("encoder", "method.r=1"))
    run(cfg)
    path = run_dir(cfg)
    record = RunDir(path).result()
    text = (path / "config.yaml").read_text()
    assert "  r: 1\n" in text
    (path / "config.yaml").write_text(text.replace("  r: 1\n", "  r: 4\n"))
    out = run_cli("-m", "petsweep.cli", "rehash", str(path.parent))
    assert out.returncode == 0 and "changed after the run finished" in out.stdout, out.stdout
    assert run_entries(path.parent) == [path.name]
    assert reusable_result(path)["run_id"] == record["run_id"]
    assert "config.yaml was changed after the run finished" in caplog.text
    assert not run_dir(compose(tiny("encoder", "method.r=4"))).exists()
    assert caplog.text.count("config.yaml was changed") == 1  # once per state of the files
    (path / "result.json").write_text(json.dumps({**record, "config_sha256": None}))  # an older record
    (path / "config.yaml").write_text("method: [unclosed")
    assert reusable_result(path)["run_id"] == record["run_id"]
    assert "config.yaml does not parse" in caplog.text
    assert run_entries(path.parent) == [path.name]


def test_an_old_record_whose_config_yaml_was_edited_or_lost_keeps_its_name(tmp_path, caplog):
    """#22 review: a record from before config_sha256 was still renamed by a hand edit (r: 8 -> 4 moved it to
    the r=4 id and rewrote its result.json's config), and one without config.yaml crashed every sweep that
    planned it (KeyError). Its result.json's own config now says what it computed."""
    from petsweep.run.rehash import reusable_result

    folder = OLD_RECORDS / "1a02139" / "lora-encoder"
    path = tmp_path / "study" / case_dir(folder)
    path.mkdir(parents=True)
    for name in ("config.yaml", "result.json"):
        shutil.copy(folder / name, path / name)
    (path / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))
    record = RunDir(path).result()
    assert "config_sha256" not in record and record["config"]["method"]["r"] == 8
    text = (path / "config.yaml").read_text()
    (path / "config.yaml").write_text(text.replace("  r: 8\n", "  r: 4\n"))
    out = run_cli("-m", "petsweep.cli", "rehash", str(path.parent))
    assert out.returncode == 0 and "method.r 4, recorded 8" in out.stdout, out.stdout
    assert path.exists() and RunDir(path).result() == record
    assert reusable_result(path) == record and "method.r 4, recorded 8" in caplog.text
    (path / "config.yaml").unlink()
    assert reusable_result(path) == record and "no config.yaml" in caplog.text
    assert run_entries(path.parent) == [path.name]


# a DePT budget= run made at 38fdf24 (before 31d3fc9 replaced DePT's solver in place, before budget_rule):
# config.yaml holds (m 10, r 2) and no budget_rule; the rule such a config is read by (OLD_RULE) chooses
# (11, 1) on it
OLD_BUDGET_RECORD = (
    Path(__file__).parent / "fixtures" / "old_budget_records" / "38fdf24" / "dept-minilm-l1-budget-bitfit"
)


def test_a_dept_budget_record_of_the_solver_before_31d3fc9_keeps_its_id():
    """R review F4: the record re-identifies as what it computed (its config.yaml's knobs, no rule hashed),
    where it was refused ('method.rank=2: and budget=bitfit both size dept'); a config that names a rule is
    solved by that rule as before."""
    from petsweep.model.resolve import resolve_run
    from petsweep.spec.errors import ConfigError

    config = yaml.safe_load((OLD_BUDGET_RECORD / "config.yaml").read_text())
    record = json.loads((OLD_BUDGET_RECORD / "result.json").read_text())
    assert "budget_rule" not in config and config["budget"] == "bitfit"
    assert resolve_run(config).budget.knobs == {"length": 10, "rank": 2}
    assert run_hash(config) == record["run_id"]
    with pytest.raises(ConfigError, match=r"method\.rank=2: and budget='bitfit' both size dept"):
        run_hash({**config, "budget_rule": "below"})  # below (OLD_RULE by name) chooses (11, 1) here
    edited = {**config, "method": {**config["method"], "rank": 3}}  # no solver chose (10, 3)
    with pytest.raises(ConfigError, match=r"method\.rank=3"):
        run_hash(edited)


def _old_record_at(sweep: Path, name: str, rank: int) -> Path:
    """The fixture record copied into `sweep` as run dir `name`, its config.yaml's DePT rank set to `rank`
    (result.json's sha256 of it and its config kept in step: a record as a run writes it)."""
    import hashlib

    path = sweep / name
    shutil.copytree(OLD_BUDGET_RECORD, path)
    text = (path / "config.yaml").read_text().replace("\n  rank: 2\n", f"\n  rank: {rank}\n")
    (path / "config.yaml").write_text(text)
    result = json.loads((path / "result.json").read_text())
    result["config_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    result["config"]["method"]["rank"] = rank
    (path / "result.json").write_text(json.dumps(result))
    return path


def test_an_old_record_the_checks_refuse_is_refused_alone_by_rehash_and_status(tmp_path):
    """R review F3: one old record whose recorded config a check added since refuses gave `rehash` one
    `error:` line and nothing else. It is a refused line of its own now; the other runs are rehashed and
    `status` lists them all; a plan would not reuse it (stale_record says why)."""
    from petsweep.run.rehash import UNIDENTIFIED, stale_record

    sweep = tmp_path / "runs" / "old"
    kept = _old_record_at(sweep, "minilm-l1-dept-bbc_news-s0-6666472aa1d9", 2)
    refused = _old_record_at(sweep, "minilm-l1-dept-bbc_news-s0-0123456789ab", 3)
    out = run_cli("-m", "petsweep.cli", "rehash", "--dry-run", str(sweep))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("refused")]
    assert len(lines) == 1 and refused.name in lines[0] and UNIDENTIFIED in lines[0], out.stdout
    assert "method.rank=3" in lines[0]
    assert "0 run dir(s) would be renamed" in out.stdout and "1 run dir(s) refused" in out.stdout
    assert stale_record(kept) is None
    assert stale_record(refused).startswith(UNIDENTIFIED)
    status = run_cli("-m", "petsweep.cli", "status", str(sweep))
    assert status.returncode == 0, status.stdout + status.stderr
    assert kept.name in status.stdout and refused.name in status.stdout, status.stdout


def test_a_sweep_dir_is_named_by_the_text_of_its_sweep_name():
    """#25 review (9b9021c): the sweep dir and slug caches were keyed by the value, so sweep_name 1, True and
    1.0 in one process shared the first one's dir, and a list name raised TypeError (unhashable)."""
    from petsweep.spec.identity import sweep_dir

    def dir_of(name) -> str:
        return sweep_dir({"paths": {"runs_root": "/r"}, "sweep_name": name}).as_posix()

    assert [dir_of(v) for v in (1, True, 1.0)] == ["/r/1", "/r/True", "/r/1.0"]
    assert dir_of(["a", "b"]) == "/r/_a_b_"  # as before the cache: its text made a safe name
    assert dir_of("..") == "/r/__"
