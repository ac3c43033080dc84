"""method.init_from (start from a finished run's weights) and trainer.eval_only (score them, as a run)."""

from __future__ import annotations

import pytest
from conftest import run_cli

from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.records.status import COMPLETED, RunDir
from petsweep.run.app import run
from petsweep.spec.errors import ConfigError


def test_eval_only_from_a_finished_run_reproduces_its_score_as_a_run_of_its_own(tiny):
    source = run(compose(tiny("encoder", "method=lora")))
    cfg = compose(
        tiny("encoder", "method=lora", f"method.init_from={source['run_id'][:10]}", "trainer.eval_only=true")
    )
    result = run(cfg)
    assert RunDir(run_dir(cfg)).state() == COMPLETED and run_dir(cfg) != run_dir(compose(tiny("encoder")))
    assert result["score"] == source["score"] and result["metrics"] == source["metrics"]
    assert result["steps"] == 0 and result["eval_only"] is True
    assert result["init_from"]["run_id"] == source["run_id"] and result["init_from"]["tensors"] > 0


def test_training_continues_from_another_runs_weights(tiny):
    first = run(compose(tiny("decoder", "method=prompt", "method.length=4")))
    cfg = compose(
        tiny(
            "decoder",
            "method=prompt",
            "method.length=4",
            "seed=1",
            f"method.init_from={run_dir(compose(tiny('decoder', 'method=prompt', 'method.length=4')))}",
        )
    )
    result = run(cfg)
    assert result["init_from"]["run_id"] == first["run_id"] and result["steps"] == 6


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0123456789abcdef", "matches no finished run"),
        ("not-a-run", "give a finished run's directory, or its run id"),
    ],
)
def test_a_source_that_is_not_a_finished_run_is_one_line_before_anything_runs(tiny, value, words):
    cfg = compose(tiny("encoder", f"method.init_from={value}"))
    with pytest.raises(ConfigError, match=words):
        run(cfg)
    assert not run_dir(cfg).exists()
    out = run_cli("run.py", *tiny("encoder", f"method.init_from={value}"))
    assert out.returncode == 2 and out.stderr.startswith("error: method.init_from=")


def test_weights_of_another_method_are_refused(tiny):
    source = run(compose(tiny("encoder", "method=bitfit")))
    cfg = compose(tiny("encoder", "method=lora", f"method.init_from={source['run_id'][:12]}"))
    with pytest.raises(ConfigError, match="hold none of this method's parameters"):
        run(cfg)
