"""Run identity covers what changes the numbers, not where things live or what a scheduler is asked for."""

from __future__ import annotations

import json
import shutil

from conftest import run_cli

from petsweep.app import run
from petsweep.config import compose
from petsweep.identity import run_dir, run_hash
from petsweep.status import RunDir


def test_resources_weight_and_data_locations_are_not_identity():
    base = compose([])
    for change in (
        "backbone.resources.time_min=600",
        "backbone.resources.mem_gb=64",
        "backbone.resources.gpus=2",
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
