"""Task metrics (scikit-learn, scipy, rouge-score) and the random-guess reference score."""

from __future__ import annotations

import re
import string
from collections import Counter

import numpy as np

METRICS = (
    "accuracy",
    "f1",
    "mcc",
    "pearson",
    "spearman",
    "exact_match",
    "token_f1",
    "rouge1",
    "rouge2",
    "rougeL",
)
RANDOM_DRAWS = 100
# Whether a larger value of a metric is better: what a sweeper that optimises a run's score must maximise.
GREATER_IS_BETTER = dict.fromkeys(METRICS, True)


def _normalise_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def _token_f1(prediction: str, answer: str) -> float:
    pred, gold = _normalise_answer(prediction).split(), _normalise_answer(answer).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _generation_metric(name: str, predictions: list[str], answers: list[list[str]]) -> float:
    if name == "exact_match":
        return float(
            np.mean(
                [
                    max(_normalise_answer(p) == _normalise_answer(a) for a in golds)
                    for p, golds in zip(predictions, answers)
                ]
            )
        )
    if name == "token_f1":
        return float(np.mean([max(_token_f1(p, a) for a in golds) for p, golds in zip(predictions, answers)]))
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([name], use_stemmer=True)
    return float(
        np.mean([scorer.score(golds[0], p)[name].fmeasure for p, golds in zip(predictions, answers)])
    )


def direction(metric: str) -> str:
    """How an optimiser (Optuna's `direction`) must treat a metric: "maximize" or "minimize"."""
    return "maximize" if GREATER_IS_BETTER[metric] else "minimize"


def compute_metric(name: str, predictions, references, num_labels: int | None = None) -> float:
    """One metric. Classification: class ids; regression: floats; generation: strings vs answer lists."""
    from scipy import stats
    from sklearn import metrics as skm

    if name in ("exact_match", "token_f1", "rouge1", "rouge2", "rougeL"):
        return _generation_metric(name, predictions, references)
    if name == "accuracy":
        return float(skm.accuracy_score(references, predictions))
    if name == "f1":
        binary = (num_labels or len(set(references))) <= 2
        return float(
            skm.f1_score(references, predictions, average="binary" if binary else "macro", zero_division=0)
        )
    if name == "mcc":
        return float(skm.matthews_corrcoef(references, predictions))
    if name in ("pearson", "spearman"):
        if np.std(predictions) == 0 or np.std(references) == 0:
            return 0.0  # undefined correlation of a constant: score it as no correlation
        fn = stats.pearsonr if name == "pearson" else stats.spearmanr
        return float(fn(predictions, references)[0])
    raise ValueError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)}")


def compute_metrics(spec, predictions, examples: list[dict]) -> dict[str, float]:
    """Every metric the task reports, on predictions aligned with `examples`."""
    references = (
        [ex["answers"] for ex in examples] if spec.kind == "generation" else [ex["label"] for ex in examples]
    )
    return {m: compute_metric(m, predictions, references, spec.num_labels) for m in spec.metrics}


def random_guess_score(spec, test: list[dict], train: list[dict]) -> float:
    """The main metric of random guessing on the test split, averaged over 100 seeded draws.

    Classification guesses a class uniformly (random guessing, the reference of the APET paper's low
    threshold; not the majority class, which scores a skewed test split's majority share); regression
    guesses by permuting the test labels (same distribution, no signal); generation answers each example
    with a random training target.
    """
    rng = np.random.default_rng(0)
    references = [ex["answers"] for ex in test] if spec.kind == "generation" else [ex["label"] for ex in test]
    scores = []
    for _ in range(RANDOM_DRAWS if spec.kind != "generation" else 5):
        if spec.kind == "classification":
            guesses = rng.integers(0, spec.num_labels, size=len(test)).tolist()
        elif spec.kind == "regression":
            guesses = rng.permutation(references).tolist()
        else:
            guesses = [train[i]["target"] for i in rng.integers(0, len(train), size=len(test))]
        scores.append(compute_metric(spec.metric, guesses, references, spec.num_labels))
    return float(np.mean(scores))
