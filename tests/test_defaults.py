"""Defaults that compare methods fairly (#26): one head learning rate for every method."""

from __future__ import annotations

from petsweep.backbones import load_pretrained
from petsweep.config import compose, resolve_run
from petsweep.identity import run_hash, semantic_config
from petsweep.params import attach_method


def _group_lrs(overrides: list[str]) -> dict[str, float]:
    spec = resolve_run(compose(overrides))
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, _ = attach_method(model, spec, tokenizer=tokenizer)
    return {g.name: g.lr for g in attached.groups}


def test_the_task_head_trains_at_one_lr_for_every_method_and_null_keeps_the_old_rule(tiny):
    """Prompt tuning's 0.3 and full FT's 5e-5 went to the new random head too (trainer.head_lr: null), so a
    method comparison compared head learning rates. Now every method's head trains at trainer.head_lr
    (2e-3); null is the old rule and keeps old records' ids; method=head's head is its own lr."""
    for method, lr in (("prompt", 0.3), ("full", 5e-5), ("lora", 2e-3), ("bitfit", 2e-3)):
        lrs = _group_lrs(tiny("encoder", f"method={method}"))
        assert lrs["head"] == 2e-3 and lrs["method"] == lr, method
    assert _group_lrs(tiny("encoder", "method=prompt", "trainer.head_lr=null"))["head"] == 0.3
    assert _group_lrs(tiny("encoder", "method=head", "method.lr=1e-2")) == {"head": 1e-2}

    def ids(*overrides: str) -> str:
        return run_hash(compose(["task=bbc_news", *overrides]))

    assert ids("method=lora", "backbone=minilm-l6") == "9deb1d1591df" + ids()[12:]  # the default job
    # LoRA's head trained at 2e-3 before too: the same run, the same id as head_lr=null
    assert ids("method=lora", "trainer.head_lr=null") == ids("method=lora")
    assert ids("method=prompt", "trainer.head_lr=null") != ids("method=prompt")  # computes otherwise
    assert semantic_config(compose(["method=prompt", "trainer.head_lr=null"]))["trainer"]["head_lr"] is None
    # no head petsweep adds (T5), or method=head: head_lr changes nothing, hashed as null as before
    t5 = ("backbone=t5-small", "method=prompt")
    assert ids(*t5) == ids(*t5, "trainer.head_lr=null")
    assert ids("method=head") == ids("method=head", "trainer.head_lr=null")
