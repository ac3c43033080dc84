"""What conf/task/<name>.yaml says about a task, validated when the config is composed."""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from petsweep.spec.errors import ConfigError

KINDS = ("classification", "regression", "generation")
MAPPINGS = ("original", "number")
LABEL_FORMATS = ("word", "index")
DECODINGS = ("greedy", "model_default")


@dataclass
class TaskSpec:
    """A task: where its rows come from, how a row becomes model input, and how it is scored.

    Attributes:
        name: registry key, equal to the YAML stem.
        kind: classification | regression | generation.
        source: a registered loader (bbc_news, hf, files).
        hf_path, hf_name: `datasets.load_dataset(hf_path, hf_name)` for source=hf (a local dir works too).
        files: split -> local JSONL/CSV/TSV file, for source=files.
        splits: our split (train, dev, test) -> the source's split; a missing dev (or test) comes from train.
        fields: row fields the templates use.
        label_field: row field holding the label (class id, label string, float, or target text).
        label_words: the verbalizer: words for class 0..C-1 (also the class order of string labels).
        label_format: word (a row's label is one of label_words; the default) or index (a class id 0..C-1, as
            hub datasets store ClassLabel columns). Never guessed: an integer 3 in a file is the word "3".
        label_mapping_type: original (label_words) or number ("0", "1", ...), as Delta Tuning compared.
        templates: name -> format string over `fields`; `plain` joins the fields when not given.
        template: which template to use (plain, manual, ...).
        metric: the main metric (selection and result score); metrics: every metric reported.
        max_length, target_max_length: token budgets of input and target (target_max_length >= 1).
        decoding: how a generation task decodes: greedy (every method the same plain greedy search through
            its own forward, methods/layers/decoding.py) or model_default (the model's generate() with its
            generation_config, e.g. BART's beams, forced EOS and n-gram bans; what runs did before the key).
        dev_size, test_size: examples carved from train when the source has no such split.
        split_seed: seed of those carvings and of capped samples (fixed: every run of a sweep sees one split).
        dedupe_fields: the fields whose normalised text identifies a row when repeats are removed before
            splitting (null: `fields`); tasks built on the same corpus name the same ones to split alike.
        dedupe_inputs: where dedupe_fields differ from `fields`, also drop dev and train rows whose model
            input (`fields`) is a held-out input (false: runs before it, whose train held 12 bbc_headlines
            test headlines); it changes nothing where the two agree, and is then left out of the run's id.
        k_shot: keep k training examples per class (seeded by the run seed); null keeps all.
        max_train_examples, max_eval_examples: caps, for quick runs on large tasks: seeded samples, stratified
            by class (never the first rows of the source).
        train_eval_size: size of the fixed train subset scored at the end (generalisation gap).
    """

    name: str
    kind: str = "classification"
    source: str = "hf"
    hf_path: str | None = None
    hf_name: str | None = None
    files: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)
    fields: list = field(default_factory=lambda: ["sentence"])
    label_field: str = "label"
    label_words: list = field(default_factory=list)
    label_format: str = "word"
    label_mapping_type: str = "original"
    templates: dict = field(default_factory=dict)
    template: str = "plain"
    metric: str = "accuracy"
    metrics: list = field(default_factory=list)
    max_length: int = 128
    target_max_length: int = 16
    decoding: str = "greedy"
    dev_size: int = 200
    test_size: int | None = None
    split_seed: int = 0
    dedupe_fields: list | None = None
    dedupe_inputs: bool = True
    k_shot: int | None = None
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    train_eval_size: int = 200

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError("task.kind", self.kind, f"choose one of: {', '.join(KINDS)}")
        if self.label_mapping_type not in MAPPINGS:
            raise ConfigError(
                "task.label_mapping_type", self.label_mapping_type, f"choose one of: {', '.join(MAPPINGS)}"
            )
        if self.label_format not in LABEL_FORMATS:
            raise ConfigError(
                "task.label_format", self.label_format, f"choose one of: {', '.join(LABEL_FORMATS)}"
            )
        if self.template != "plain" and self.template not in self.templates:
            raise ConfigError(
                "task.template", self.template, f"choose one of: {', '.join(['plain', *self.templates])}"
            )
        if self.kind == "classification" and len(self.label_words) < 2 and self.source != "files":
            raise ConfigError(
                "task.label_words", self.label_words, "a classification task needs >= 2 label words"
            )
        if self.decoding not in DECODINGS:
            raise ConfigError("task.decoding", self.decoding, f"choose one of: {', '.join(DECODINGS)}")
        if not isinstance(self.target_max_length, int) or self.target_max_length < 1:
            raise ConfigError(
                "task.target_max_length", self.target_max_length, "must be a positive number of target tokens"
            )
        if self.k_shot is not None and self.k_shot < 1:
            raise ConfigError("task.k_shot", self.k_shot, "must be a positive number of examples per class")
        self.metrics = list(dict.fromkeys([self.metric, *self.metrics]))
        self._check_template_fields()
        for key in ("max_train_examples", "max_eval_examples"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(
                    f"task.{key}", getattr(self, key), "must be a positive number of examples or null"
                )

    def _check_template_fields(self) -> None:
        template = self.template_string()
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        missing = used - set(self.fields)
        if missing:
            raise ConfigError(
                f"task.templates.{self.template}", template, f"uses {sorted(missing)}, not in task.fields"
            )

    def template_string(self) -> str:
        if self.template in self.templates:
            return self.templates[self.template]
        return " ".join("{" + f + "}" for f in self.fields)

    @property
    def num_labels(self) -> int | None:
        """Classes of a classification task, 1 for regression, None for generation."""
        return {"classification": len(self.label_words) or None, "regression": 1}.get(self.kind)

    def verbalizer(self) -> list[str]:
        """The target strings of classes 0..C-1 (what text-to-text backbones are trained to produce)."""
        if self.label_mapping_type == "number":
            return [str(i) for i in range(len(self.label_words))]
        return [str(w) for w in self.label_words]
