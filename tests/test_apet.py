"""APET: exactly K scalars at seeded positions that any machine draws alike, nothing else moves, and the
merged dense model computes what the delta model does."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from omegaconf import OmegaConf
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from launchers.expand import expand
from petsweep.cli import count
from petsweep.compose import compose
from petsweep.model.backbones import load_pretrained
from petsweep.model.params import attach_method
from petsweep.model.resolve import resolve_run, run_dir
from petsweep.run.app import run
from petsweep.run.export import export_merged
from petsweep.spec.errors import ConfigError

APET_TABLE = [  # PET_Scaling's apet_scale.py (pet_methods.md 1.4) for the backbones it lists, exactly
    ("bloom-560m", {"lora": 786_432, "adapter": 2_409_600, "prompt": 102_400, "bitfit": 272_384}),
    ("t5-v1_1-small", {"lora": 229_376, "adapter": 803_584, "prompt": 51_200, "bitfit": 121_216}),
]
# the table's two wrong rows, and what petsweep computes from the formula instead
TABLE_ERRATA = [("bloom-1b1", "adapter", 3_613_824), ("t5-v1_1-xxl", "bitfit", 2_497_920)]


@pytest.mark.parametrize(("backbone", "budgets"), APET_TABLE)
def test_named_budgets_reproduce_the_pet_scaling_table(backbone, budgets):
    for scale, expected in budgets.items():
        assert count([f"backbone={backbone}", "method=apet", f"apet.scale={scale}"])["pet_params"] == expected


@pytest.mark.parametrize(("backbone", "scale", "expected"), TABLE_ERRATA)
def test_the_tables_wrong_rows_are_computed_from_the_formula(backbone, scale, expected):
    assert count([f"backbone={backbone}", "method=apet", f"apet.scale={scale}"])["pet_params"] == expected


def _attached(tiny, *extra):
    spec = resolve_run(compose(tiny("encoder", "method=apet", *extra)))
    model, _ = load_pretrained(spec.backbone, spec.task.num_labels)
    return spec, attach_method(model, spec)


def test_exactly_k_scalars_train_and_the_record_says_where(tiny):
    spec, (attached, counts) = _attached(tiny, "apet.scale=1000", "apet.seed=3")
    method_params = [p for g in attached.groups if g.name != "head" for p in g.params]
    assert counts.pet_params == sum(p.numel() for p in method_params) == 1000
    assert spec.method.record["requested"] == spec.method.record["achieved"] == 1000
    assert len(spec.method.record["positions_sha256"]) == 64


DIGEST = """
import sys; sys.path.insert(0, "tests")
from petsweep.model.backbones import load_pretrained
from petsweep.model.resolve import resolve_run
from petsweep.compose import compose
from petsweep.model.params import attach_method
spec = resolve_run(compose([f"hydra.searchpath=[file://{sys.argv[1]}]", "backbone=tiny-bert", "method=apet",
                            "apet.scale=777", "apet.seed=5"]))
attach_method(load_pretrained(spec.backbone, spec.task.num_labels)[0], spec)
print(spec.method.record["positions_sha256"])
"""


def test_positions_are_the_same_in_another_process_and_differ_with_the_seed(tiny, tiny_conf):
    digests = [
        subprocess.run(
            [sys.executable, "-c", DIGEST, str(tiny_conf)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        for _ in range(2)
    ]
    here = _attached(tiny, "apet.scale=777", "apet.seed=5")[0].method.record["positions_sha256"]
    other = _attached(tiny, "apet.scale=777", "apet.seed=6")[0].method.record["positions_sha256"]
    assert digests[0] == digests[1] == here != other


def test_only_the_chosen_positions_move_and_the_merged_model_computes_the_same(tiny, tmp_path):
    cfg = compose(
        tiny("encoder", "method=apet", "apet.scale=500", "method.lr=0.05", "trainer.weight_decay=0.1")
    )
    result = run(cfg)
    assert result["apet"]["achieved"] == 500 and result["pet_params"] == 500
    spec = resolve_run(cfg)
    bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    before = {n: p.detach().clone() for n, p in bare.named_parameters()}
    merged = AutoModelForSequenceClassification.from_pretrained(export_merged(run_dir(cfg), tmp_path / "m"))
    after = dict(merged.named_parameters())
    head = {n for n in before if n.startswith("classifier.")}
    moved = sum(int((after[n] != before[n]).sum()) for n in before if n not in head)
    weights = load_file(run_dir(cfg) / "pet_weights.safetensors")
    assert 0 < moved <= 500 and moved == sum(
        int((t != 0).sum()) for n, t in weights.items() if n.endswith("delta")
    )

    tuned = attach_method(load_pretrained(spec.backbone, spec.task.num_labels)[0], spec)[0].model
    from petsweep.train.checkpoint import load_trainable

    load_trainable(tuned, weights)
    batch = tokenizer(["one sentence", "and a second, longer one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(merged.eval()(**batch).logits, tuned.eval()(**batch).logits)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("apet.scale=100000000",), ["apet.scale=100000000", "eligible"]),
        (("apet.scale=0",), ["apet.scale=0", "positive"]),
        (("apet.scale=ratio", "apet.ratio=1.5"), ["apet.ratio=1.5", "(0, 1]"]),
        (("apet.scale=loar",), ["apet.scale='loar'", "lora", "adapter"]),
        (("apet.granularity=tensors",), ["apet.granularity='tensors'", "element, tensor"]),
        (("apet.scale=100", "apet.seed=null"), ["apet.seed=None", "integer"]),
        # random.seed(-1) is random.seed(1): the same tensors under another id
        (("apet.scale=100", "apet.granularity=tensor", "apet.seed=-1"), ["apet.seed=-1", "[0, 2147483647]"]),
        # seed_by_budget seeds K x seed: seed 0 gives every budget seed 0, nested again
        (("apet.scale=100", "apet.seed_by_budget=true", "apet.seed=0"), ["apet.seed=0", "nested"]),
        # K x 1e17 overflowed the generator's seed after the claim
        (("apet.scale=100", "apet.seed_by_budget=true", "apet.seed=100000000000000000"), ["[0, 2147483647]"]),
    ],
)
def test_bad_budgets_are_one_line_before_anything_runs(tiny, extra, words):
    cfg = compose(tiny("encoder", "method=apet", *extra))
    with pytest.raises(ConfigError) as err:
        run(cfg)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value), str(err.value)
    assert not run_dir(cfg).exists()


def test_records_from_before_the_apet_group_had_a_seed_still_resolve(tiny):
    """Runs recorded before APET landed hold `apet: {scale: null, seed: null}`; transfer and export read them
    back through resolve_run, and a disabled group's seed is never read."""
    config = OmegaConf.to_container(compose(tiny("encoder", "method=lora")), resolve=True)
    config["apet"] = {"scale": None, "seed": None}
    assert resolve_run(config).method.config.name == "lora"


def test_a_budget_makes_a_sweep_an_apet_sweep_and_a_single_run_must_say_so(tiny):
    runs = expand(["apet.scale=lora,4096", "apet.seed=1,2"])
    assert all("method=apet" in r for r in runs) and len(runs) == 4
    assert expand(["apet.scale=4096", "method=lora"]) == [["apet.scale=4096", "method=lora"]]
    with pytest.raises(ConfigError, match="apet.scale=4096: APET runs are method=apet"):
        resolve_run(compose(tiny("encoder", "apet.scale=4096")))
    assert json.dumps(resolve_run(compose(tiny("encoder", "method=apet"))).apet.spec.scale) == '"lora"'


def _delta_grads(tiny, gradient: str, arch: str = "encoder") -> dict[str, torch.Tensor]:
    from petsweep.model.objectives import make_objective
    from petsweep.tasks import prepare_task

    spec = resolve_run(compose(tiny(arch, "method=apet", "apet.scale=3000", f"method.gradient={gradient}")))
    torch.manual_seed(0)  # the same task head on both sides
    model, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, _ = attach_method(model, spec)
    data = prepare_task(spec.task, spec.seed)
    objective = make_objective(spec.backbone.family, spec.task, data, tokenizer)
    batch = objective.train_batch(objective.encode(data.train[:4]))
    with torch.no_grad():  # a trained state: deltas away from zero
        for name, p in attached.model.named_parameters():
            if name.endswith("delta"):
                p.copy_(torch.linspace(-0.1, 0.1, p.numel()))
    objective.loss(attached.model.eval(), batch).backward()
    rename = {
        ".apet_weight.delta": ".weight",
        ".parametrizations.weight.0.delta": ".weight",
        ".parametrizations.bias.0.delta": ".bias",
    }
    grads = {}
    for name, p in attached.model.named_parameters():
        for suffix, attr in rename.items():
            if name.endswith(suffix):
                grads[name[: -len(suffix)] + attr] = p.grad
    return grads


@pytest.mark.parametrize("dense_from", [1.0, 0.0])  # every Linear takes the sampled product, or the gathered
@pytest.mark.parametrize("arch", ["encoder", "llama"])
def test_the_sampled_product_gradient_equals_the_dense_one(tiny, arch, dense_from, monkeypatch):
    from petsweep.methods.apet import grad as apet_grad

    monkeypatch.setattr(apet_grad, "DENSE_FROM", dense_from)
    sampled, dense = _delta_grads(tiny, "sampled", arch), _delta_grads(tiny, "dense", arch)
    assert sampled.keys() == dense.keys() and len(sampled) > 4
    for name in dense:
        torch.testing.assert_close(sampled[name], dense[name], rtol=1e-4, atol=1e-6)


def test_a_plan_counts_each_budget_of_an_apet_sweep():
    from launchers.planning import plan

    runs = plan(expand(["apet.scale=lora,4096", "task=rte"]), compose)
    counts = sorted(r.extra["pet_params"] for r in runs)
    assert counts == [4096, count(["method=lora", "task=rte"])["pet_params"]]


@pytest.mark.parametrize("arch", ["encoder", "decoder", "encoder_decoder"])
def test_tensor_granularity_picks_whole_tensors_and_records_what_it_got(tiny, arch):
    extra = ("method=apet", "apet.granularity=tensor", "apet.scale=6000", "apet.seed=2")
    cfg = compose(tiny(arch, *extra))
    spec = resolve_run(cfg)
    model, _ = load_pretrained(spec.backbone, spec.task.num_labels)
    attached, counts = attach_method(model, spec)
    record = spec.method.record
    picked = [p for g in attached.groups if g.name != "head" for p in g.params]
    assert counts.pet_params == record["achieved"] == sum(p.numel() for p in picked) > 0
    assert counts.pet_params == check_count(spec)  # the meta device picks the same tensors
    again = resolve_run(cfg)
    attach_method(load_pretrained(again.backbone, again.task.num_labels)[0], again)
    assert again.method.record["positions_sha256"] == record["positions_sha256"]
    result = run(cfg)
    assert result["apet"]["granularity"] == "tensor" and result["pet_params"] == record["achieved"]


def check_count(spec) -> int:
    from petsweep.model.params import check_on_meta

    return check_on_meta(spec).pet_params


def test_tensor_granularity_below_the_smallest_tensor_says_so(tiny):
    cfg = compose(tiny("encoder", "method=apet", "apet.granularity=tensor", "apet.scale=3"))
    with pytest.raises(ConfigError, match="smaller than the smallest candidate tensor"):
        run(cfg)
    assert not run_dir(cfg).exists()


def test_unpicked_delta_units_leave_the_model_as_it_was(tiny):
    """Nothing picked from the delta pool (delta_fraction 0): every attached adapter and LoRA is silent."""
    spec = resolve_run(
        compose(
            tiny(
                "encoder",
                "method=apet",
                "apet.granularity=tensor",
                "apet.scale=6000",
                "apet.delta_fraction=0",
            )
        )
    )
    torch.manual_seed(0)
    bare, tokenizer = load_pretrained(spec.backbone, spec.task.num_labels)
    torch.manual_seed(0)
    tuned = attach_method(load_pretrained(spec.backbone, spec.task.num_labels)[0], spec)[0].model
    batch = tokenizer(["a sentence"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(tuned.eval()(**batch).logits, bare.eval()(**batch).logits)


def test_sampled_gradient_runs_in_bf16_over_fp32_frozen_weights(tiny):
    """precision=bf16 with frozen_dtype=fp32: autocast hands the backward a bf16 output gradient while the
    frozen weight is fp32 (SampledLinear.backward raised a dtype mismatch; the dense gradient worked)."""
    extra = ("method=apet", "apet.scale=3000", "trainer.precision=bf16", "trainer.frozen_dtype=fp32")
    for gradient in ("sampled", "dense"):
        result = run(compose(tiny("encoder", *extra, f"method.gradient={gradient}")))
        assert result["apet"]["achieved"] == 3000 and result["backbone_dtype"] == "float32"


def test_deltas_on_bf16_frozen_tensors_are_added_in_fp32(tiny):
    """With the frozen backbone in bf16, a delta of 1e-3 on a LayerNorm gain (about 1) was rounded away at
    most positions (bf16's step near 1 is 2**-7): the sum is formed in fp32, so every position moves."""
    from petsweep.train.loop import hold_frozen

    spec, (attached, _) = _attached(tiny, "apet.scale=ratio", "apet.ratio=1.0", "method.gradient=dense")
    model = attached.model
    hold_frozen(model, torch.bfloat16, staged=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm) and parametrize_on(m)]
    assert norms
    changed = total = 0
    for norm in norms:
        original = norm.parametrizations.weight.original
        assert original.dtype == torch.bfloat16
        with torch.no_grad():
            norm.parametrizations.weight[0].delta.fill_(1e-3)
        moved = norm.weight.float() - original.float()
        changed += int((moved != 0).sum())
        total += moved.numel()
        torch.testing.assert_close(moved, torch.full_like(moved, 1e-3))
    assert changed == total
    # the forward under bf16 autocast still runs and uses the fp32 gains (layer_norm computes in fp32)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.eval()(input_ids=ids)
    assert spec.trainer.frozen_dtype is not None


def parametrize_on(module) -> bool:
    return hasattr(module, "parametrizations") and "weight" in module.parametrizations


def test_delta_fp32_keeps_old_ids_where_it_changes_nothing(tiny):
    from petsweep.model.resolve import run_hash as run_id
    from petsweep.model.resolve import semantic_config

    def ident(*extra):
        return run_id(compose(tiny("encoder", "method=apet", "apet.scale=300", *extra)))

    # over fp32 frozen weights both sums are fp32: one id, the one runs had before the key
    assert ident() == ident("method.delta_fp32=false") == ident("trainer.frozen_dtype=fp32")
    # over bf16 frozen weights the fp32 sum is another computation: another id; false is the old record's
    bf16 = ("trainer.precision=bf16", "trainer.frozen_dtype=bf16")
    assert ident(*bf16) != ident(*bf16, "method.delta_fp32=false")
    old = semantic_config(
        compose(tiny("encoder", "method=apet", "apet.scale=300", *bf16, "method.delta_fp32=false"))
    )
    assert "delta_fp32" not in old["method"]


def test_tensor_granularity_splits_k_as_pet_scaling_does():
    """PET_Scaling: inner_allowed = delta_allowed = allowed_num // 2 (petsweep gave the delta pool round(K/2)
    and the inner pool the rest); apet.split=round keeps the old split, and its records their ids."""
    from petsweep.methods.apet.positions import ApetSpec
    from petsweep.methods.apet.tensor import pool_budgets

    assert pool_budgets(6001, ApetSpec(scale=6001, granularity="tensor")) == (3000, 3000)
    assert pool_budgets(6001, ApetSpec(scale=6001, granularity="tensor", split="round")) == (3000, 3001)
    assert pool_budgets(7, ApetSpec(scale=7, granularity="tensor", include_delta_pool=False)) == (0, 7)


def test_seed_by_budget_draws_independent_positions_and_says_so(tiny):
    """Positions of one seed were nested across budgets (the first K of one draw); seed_by_budget draws each
    budget with K x seed as PET_Scaling does, and the record names the seed that drew them."""

    def positions(k, *extra):
        spec, (attached, _) = _attached(tiny, f"apet.scale={k}", "apet.seed=2", *extra)
        found = set()
        for name, buf in attached.model.named_buffers():
            if name.endswith(".idx"):
                found |= {(name, int(i)) for i in buf}
        return found, spec.method.record

    small, rec_small = positions(400)
    large, _ = positions(4000)
    assert small <= large and rec_small["positions_seed"] == 2  # nested: the default, as runs were
    small, rec_small = positions(400, "apet.seed_by_budget=true")
    large, _ = positions(4000, "apet.seed_by_budget=true")
    assert not small <= large and rec_small["positions_seed"] == 800


def test_a_tensor_budget_missed_by_more_than_the_tolerance_shows_in_the_plan_and_record():
    """t5-v1_1-small APET(lora) at tensor granularity fills 60% of K: the count (what `petsweep plan`
    prints) carries a note and result.json `apet.below_requested` is true."""
    row = count(["backbone=t5-v1_1-small", "method=apet", "apet.scale=lora", "apet.granularity=tensor"])
    assert row["pet_params"] < 0.99 * 229_376
    assert any("of 229,376 requested" in note for note in row["count_notes"])
    spec = resolve_run(
        compose(["backbone=t5-v1_1-small", "method=apet", "apet.scale=lora", "apet.granularity=tensor"])
    )
    from petsweep.model.backbones import build_on_meta

    attach_method(build_on_meta(spec.backbone, 2), spec)
    assert spec.method.record["below_requested"] is True
    element = count(["backbone=t5-v1_1-small", "method=apet", "apet.scale=lora"])
    assert element["pet_params"] == 229_376 and not element["count_notes"]


@pytest.mark.parametrize("pool", ["seed", "petsweep"])
def test_tensor_pool_on_t5_is_pet_scalings_biased_t5(pool):
    """PET_Scaling builds every T5 Linear with a (zero) bias and puts LoRA in cross-attention too; without
    them tensor granularity trained 60% of APET(lora)'s K on t5-v1_1-small (71% of APET(bitfit)'s)."""
    from petsweep.model.backbones import build_on_meta

    overrides = ["backbone=t5-v1_1-small", "method=apet", "apet.granularity=tensor", f"apet.pool={pool}"]
    spec = resolve_run(compose([*overrides, "apet.scale=lora"]))
    model = attach_method(build_on_meta(spec.backbone, 2), spec)[0].model
    params = dict(model.named_parameters())
    biases = sum(p.numel() for n, p in params.items() if n.endswith(".bias") and "adapter" not in n)
    cross_lora = [n for n in params if "EncDecAttention" in n and "lora" in n]
    if pool == "petsweep":
        assert biases == 0 and not cross_lora
        return
    # q, k, v (384) and o (512) of 8 encoder, 8 decoder self- and 8 cross-attention layers; wi_0, wi_1
    # (1024) and wo (512) of 16 FFNs; the LM head (32,128): counted from t5-v1_1-small's dimensions
    assert biases == 24 * (3 * 384 + 512) + 16 * (2 * 1024 + 512) + 32_128 == 113_024
    assert len(cross_lora) == 8 * 2 * 2  # A and B on q and v of each decoder cross-attention
    row = count([*overrides, "apet.scale=lora", "apet.seed=2"])
    assert 0.99 * 229_376 <= row["pet_params"] <= 1.01 * 229_376 and not row["count_notes"]
    row = count([*overrides, "apet.scale=bitfit", "apet.seed=2"])  # 125,168: 3% over, so flagged
    assert row["pet_params"] == 125_168 and "(103%, above by more than 1%)" in row["count_notes"][0]


def test_tensor_only_keys_leave_element_ids_and_old_tensor_ids_alone(tiny):
    from petsweep.model.resolve import semantic_config

    element = semantic_config(compose(tiny("encoder", "method=apet", "apet.scale=300")))
    assert not {"pool", "split", "seed_by_budget"} & set(element["apet"])  # element ids as before the keys
    old = ("apet.granularity=tensor", "apet.pool=petsweep", "apet.split=round")
    tensor = semantic_config(compose(tiny("encoder", "method=apet", "apet.scale=300", *old)))
    assert not {"pool", "split"} & set(tensor["apet"])  # what tensor runs did before: their old ids
    new = semantic_config(
        compose(tiny("encoder", "method=apet", "apet.scale=300", "apet.granularity=tensor"))
    )
    assert new["apet"]["pool"] == "seed" and new["apet"]["split"] == "floor"


@pytest.mark.parametrize("family", ["t5", "bloom"])
def test_paper_grid_presets_run_pet_scalings_settings(family, tmp_path):
    """PET_Scaling's README: lr 1e-4, 20,000 steps, batch 16, dropout 0.1 (PET) / 0.0 (APET), HF's linear
    schedule without warmup (constant for the 4096 run), HF's training seed 42 beside apet_seed."""
    from petsweep.cli import sweep_arguments

    seen = {}
    for suffix in ("", "_apet", "_apet_4096"):
        preset = f"apet_scaling_{family}{suffix}"
        arguments, zips = sweep_arguments([f"+sweep={preset}", f"paths.runs_root={tmp_path}"])
        cfg = compose(expand(arguments, zips)[0])
        trainer = cfg.trainer
        assert (cfg.seed, cfg.method.lr, trainer.max_steps, trainer.batch_size) == (42, 1e-4, 20000, 16)
        assert (trainer.warmup_ratio, trainer.weight_decay, trainer.eval_every) == (0.0, 0.0, 1000)
        seen[suffix] = (cfg.backbone.dropout, trainer.schedule, cfg.apet.granularity if suffix else None)
        axes = dict(a.lstrip("+").split("=", 1) for a in arguments if "=" in a)
        if suffix == "_apet":
            apet_of = set(axes["apet.scale"].split(","))
        elif not suffix:
            pet = set(axes["method"].split(","))
    # the seed's --dropout_rate reaches T5 (dropout_rate) but not its BLOOM (hidden/attention_dropout)
    pet_dropout, apet_dropout = (0.1, 0.0) if family == "t5" else (None, None)
    assert seen == {
        "": (pet_dropout, "linear", None),
        "_apet": (apet_dropout, "linear", "tensor"),
        "_apet_4096": (apet_dropout, "constant", "element"),
    }
    # every APET(X) has its PET X, but T5's bitfit (no biases; the preset says so)
    assert apet_of - pet == ({"bitfit"} if family == "t5" else set())


def test_the_seed_pool_adds_zero_biases_on_t5_only():
    """PET_Scaling's BLOOM and Llama build their Linears (lm_head too) without a bias; only its T5 has them.
    pool=seed added a 250,880-scalar lm_head bias to bloom-560m; apet.zero_biases=every keeps that for the
    records of those runs (their ids), and on T5 the key changes nothing (no id)."""
    from petsweep.model.backbones import build_on_meta
    from petsweep.model.resolve import semantic_config

    overrides = ["backbone=bloom-560m", "method=apet", "apet.granularity=tensor", "apet.scale=lora"]

    def added(*extra):
        spec = resolve_run(compose([*overrides, *extra]))
        model = build_on_meta(spec.backbone, 2)
        before = {n for n, _ in model.named_parameters()}
        model = attach_method(model, spec)[0].model
        return [n for n, _ in model.named_parameters() if n not in before and n.endswith("bias")]

    assert not [n for n in added() if "lm_head" in n or "base_layer" not in n and "adapter" not in n]
    assert "lm_head.bias" in added("apet.zero_biases=every")
    old = semantic_config(compose([*overrides, "apet.zero_biases=every"]))
    assert "zero_biases" not in old["apet"]
    assert semantic_config(compose(overrides))["apet"]["zero_biases"] == "t5"
    t5 = ["backbone=t5-v1_1-small", *overrides[1:]]
    assert semantic_config(compose(t5)) == semantic_config(compose([*t5, "apet.zero_biases=every"]))


def test_bf16_frozen_weights_without_bf16_compute_are_refused_before_the_claim(tiny):
    """precision=auto computes in fp32 on a CPU: frozen_dtype=bf16 crashed after the run dir was claimed."""
    extra = ("method=apet", "apet.scale=500", "trainer.frozen_dtype=bf16", "trainer.device=cpu")
    cfg = compose(tiny("encoder", *extra))
    with pytest.raises(ConfigError, match="trainer.frozen_dtype.*precision=auto"):
        run(cfg)
    assert not run_dir(cfg).exists()


def test_k_times_seed_beyond_a_64_bit_seed_is_refused_when_k_is_known():
    from petsweep.methods.apet.positions import MAX_SEED, ApetSpec, Budget

    spec = ApetSpec(scale=2**33, seed=MAX_SEED, seed_by_budget=True)
    with pytest.raises(ConfigError, match="overflows a 64-bit seed"):
        Budget(spec, 2**33).resolve(2**34)
    assert Budget(ApetSpec(scale=2**33, seed=MAX_SEED), 2**33).resolve(2**34) == 2**33  # seeded by seed


def test_a_tensor_budget_overshot_by_more_than_the_tolerance_is_flagged_too():
    """bloom-560m APET(prompt), seed 1: a whole delta unit overshoots, 116,736 of 102,400 (114%); only a
    shortfall was flagged."""
    from petsweep.model.backbones import build_on_meta

    overrides = ["backbone=bloom-560m", "method=apet", "apet.scale=prompt", "apet.granularity=tensor"]
    row = count([*overrides, "apet.seed=1"])
    assert row["pet_params"] == 116_736
    assert row["count_notes"] == [
        "apet tensor granularity on bloom-560m: 116,736 of 102,400 requested (114%, above by more than 1%)"
    ]
    spec = resolve_run(compose([*overrides, "apet.seed=1"]))
    attach_method(build_on_meta(spec.backbone, 2), spec)
    assert spec.method.record["above_requested"] is True and spec.method.record["below_requested"] is False


def test_delta_pool_keys_enter_the_id_only_where_they_change_the_run(tiny):
    """delta_fraction and include_delta_pool are read at tensor granularity only, and delta_fraction only
    with a delta pool: elsewhere they made new ids for the same run."""
    from petsweep.model.resolve import run_hash

    def ident(*extra):
        return run_hash(compose(tiny("encoder", "method=apet", "apet.scale=300", *extra)))

    assert ident() == ident("apet.delta_fraction=0.3") == ident("apet.include_delta_pool=false")
    tensor = ("apet.granularity=tensor", "apet.include_delta_pool=false")
    assert ident(*tensor) == ident(*tensor, "apet.delta_fraction=0.3")
    assert ident("apet.granularity=tensor") != ident("apet.granularity=tensor", "apet.delta_fraction=0.3")
    assert ident("apet.granularity=tensor") != ident(*tensor)


def test_the_seed_t5s_zero_biases_count_among_the_eligible_scalars():
    """The zero biases pool=seed adds on T5 are candidates: the record's eligible count left them out, and
    scale=ratio sized K without them (apet.ratio_counts_zero_biases=false keeps that for old runs)."""
    from petsweep.model.backbones import build_on_meta
    from petsweep.model.resolve import semantic_config

    overrides = ["backbone=t5-v1_1-small", "method=apet", "apet.granularity=tensor", "apet.seed=2"]

    def record(*extra):
        spec = resolve_run(compose([*overrides, *extra]))
        attach_method(build_on_meta(spec.backbone, 2), spec)
        return spec.method.record

    rec = record("apet.scale=lora")
    petsweep_pool = record("apet.scale=lora", "apet.pool=petsweep")
    assert rec["eligible"] == petsweep_pool["eligible"] + 113_024  # the biases of the pool test above
    ratio = record("apet.scale=ratio", "apet.ratio=0.01")
    assert ratio["requested"] == round(0.01 * rec["eligible"])
    old = record("apet.scale=ratio", "apet.ratio=0.01", "apet.ratio_counts_zero_biases=false")
    assert old["requested"] == round(0.01 * petsweep_pool["eligible"])
    ratio_cfg = [*overrides, "apet.scale=ratio", "apet.ratio=0.01"]
    assert (
        "ratio_counts_zero_biases"
        not in semantic_config(compose([*ratio_cfg, "apet.ratio_counts_zero_biases=false"]))["apet"]
    )
    assert semantic_config(compose(ratio_cfg))["apet"]["ratio_counts_zero_biases"] is True
    assert "ratio_counts_zero_biases" not in semantic_config(compose([*overrides, "apet.scale=lora"]))["apet"]
