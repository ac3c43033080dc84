"""Split hygiene: no text in two splits, and capped splits that are seeded, stratified samples.

Sources are often stored in an order that carries the label (IMDB on the hub is sorted by label), and
corpora repeat texts (BBC News holds 100 repeated articles). Taking the first N rows, or carving splits
before removing repeats, gives test sets of one class or test texts seen in training: wrong scores
without any error. Everything here is a pure function of the rows and a seed.
"""

from __future__ import annotations

import unicodedata

import numpy as np


def text_key(row: dict, fields: list[str]) -> str:
    """The row's text in a normal form (NFKC, case-folded, single spaces): equal keys are the same text."""
    text = " \x1f ".join(str(row.get(f, "")) for f in fields)
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def drop_repeats(rows: list[dict], fields: list[str], seen: set[str] | None = None) -> tuple[list[dict], int]:
    """Keep the first occurrence of each text (none already in `seen`); returns (rows kept, rows removed)."""
    seen = set() if seen is None else set(seen)
    kept = []
    for row in rows:
        key = text_key(row, fields)
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def keys_of(rows: list[dict], fields: list[str]) -> set[str]:
    return {text_key(r, fields) for r in rows}


def _quotas(class_sizes: list[int], n: int) -> list[int]:
    """n split over classes in proportion to their sizes (largest remainder; ties go to earlier classes)."""
    total = sum(class_sizes)
    exact = [n * size / total for size in class_sizes]
    quotas = [int(e) for e in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in by_remainder[: n - sum(quotas)]:
        quotas[i] += 1
    return quotas


def sample(examples: list[dict], n: int | None, seed_parts: list[int], stratify: bool) -> list[dict]:
    """A seeded sample of n examples (all of them if n is None or not smaller), kept in their original order.

    With `stratify`, each class (example["label"]) keeps its share of the examples, so a source sorted by
    label gives a sample with the label mix of the whole split.
    """
    if n is None or n >= len(examples):
        return examples
    rng = np.random.default_rng(seed_parts)
    if not stratify:
        chosen = rng.choice(len(examples), size=n, replace=False)
    else:
        classes = sorted({e["label"] for e in examples})
        members = [[i for i, e in enumerate(examples) if e["label"] == c] for c in classes]
        chosen = np.concatenate(
            [
                rng.choice(m, size=q, replace=False)
                for m, q in zip(members, _quotas([len(m) for m in members], n))
            ]
        )
    return [examples[i] for i in sorted(chosen.tolist())]
