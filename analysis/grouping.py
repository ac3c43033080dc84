"""What a figure or table may pool: runs that differ only in their seeds, never in anything else.

Figures group runs by a few named columns (task, backbone, method, budget). Any other config key that
varies inside such a group (learning rate, steps, k-shot, template, LoRA alpha, ...), and what an `auto`
setting resolved to on the machine (precision, deepspeed), splits the group into variants instead of being
averaged away. Only the seeds are pooled unless the user names more keys to pool.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

SEEDS = ("cfg.seed", "cfg.apet.seed")  # the run seed and APET's position seed: what "over seeds" means
RESOLVED = ("precision", "deepspeed", "backbone_dtype", "ranks")  # what `auto` settings became
NO_VALUE = "-"
# what records written before a resolved field existed did: one rank, fp32 frozen weights
RESOLVED_BEFORE = {"backbone_dtype": "float32", "ranks": "1"}
# trainer.head_lr null (every record before #26, and LoRA's runs since) trains the head at the method's lr:
# compared as that value, so APET's runs at head_lr=2e-3 pair with LoRA's at lr=2e-3 (#26)
HEAD_LR, METHOD_LR = "cfg.trainer.head_lr", "cfg.method.lr"


def _candidates(table: pd.DataFrame, pool: tuple[str, ...]) -> list[str]:
    return [
        c
        for c in table.columns
        if (c.startswith("cfg.") or c in RESOLVED) and c not in SEEDS and c not in pool
    ]


def _text(value) -> str:
    if isinstance(
        value, (list, tuple, np.ndarray)
    ):  # a list (a numpy array once read from parquet): its JSON
        return json.dumps(value.tolist() if isinstance(value, np.ndarray) else list(value))
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return NO_VALUE  # a missing value is one value of its own
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a column with gaps holds 16 as 16.0
    return str(value)


def _as_text(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Columns as comparable strings (a list as its JSON)."""
    text = table[columns].apply(lambda col: col.map(_text))
    if HEAD_LR in text.columns and METHOD_LR in table:  # a null head_lr is the method's lr (identity.py)
        unset = text[HEAD_LR] == NO_VALUE
        text.loc[unset, HEAD_LR] = table.loc[unset, METHOD_LR].map(_text)
    for column, before in RESOLVED_BEFORE.items():
        if column in text.columns:
            text[column] = text[column].replace(NO_VALUE, before)
    return text


def variant_keys(table: pd.DataFrame, by: list[str], pool: tuple[str, ...] = ()) -> list[str]:
    """Config columns (and resolved settings) that vary within a group of `by`: they must split it.

    Args:
        table: a collected table; only COMPLETED runs are looked at.
        by: the columns the figure already groups by.
        pool: columns the user chose to pool over as well as the seeds.
    """
    done = table[table["status"] == "COMPLETED"]
    candidates = [c for c in _candidates(done, tuple(pool)) if c not in by]
    if done.empty or not candidates:
        return []
    text = _as_text(done, candidates)
    keys = done[by].astype(str)
    varying = text.groupby([keys[b] for b in by], dropna=False).nunique().max()
    return [c for c in candidates if varying[c] > 1]


def short_name(column: str) -> str:
    """cfg.trainer.max_steps -> trainer.max_steps (what the user typed on the command line)."""
    return column[4:] if column.startswith("cfg.") else column


def _label_keys(text: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys worth naming in a label: a key that its group's `name` key determines (backbone.arch.* once
    backbone.name differs) is left out of the label, though it still splits the group."""
    named = []
    for key in keys:
        group_name = key.rsplit(".", 1)[0] + ".name"
        if group_name != key and group_name in keys and text.groupby(group_name)[key].nunique().max() <= 1:
            continue
        named.append(key)
    return named


def describe(table: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Each row's values of `keys` as a label ("trainer.max_steps=20, backbone.pooling=mean"; "" without
    keys); a key the run does not have (LoRA's r on BitFit) is not named."""
    if not keys or table.empty:
        return pd.Series("", index=table.index, dtype=object)
    text = _as_text(table, keys)
    shown = _label_keys(text, keys)
    return text.apply(
        lambda row: ", ".join(f"{short_name(k)}={row[k]}" for k in shown if row[k] != NO_VALUE), axis=1
    )


def with_variants(
    table: pd.DataFrame, by: list[str], pool: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """COMPLETED runs with a `variant` column ("" where nothing splits a group), and the splitting keys."""
    done = table[table["status"] == "COMPLETED"].copy()
    keys = variant_keys(table, by, pool)
    done["variant"] = describe(done, keys)
    return done, keys


def shared_settings(table: pd.DataFrame, by: list[str], own: tuple[str, ...]) -> list[str]:
    """The keys that split groups of `by` (variant_keys) but those of the methods' own config (key prefixes
    `own`, e.g. "cfg.method.", "cfg.apet."): the settings two methods' runs must share to be compared
    (APET(X) against X: the same steps, pooling, task setup; #26 review)."""
    return [k for k in variant_keys(table, by) if not k.startswith(tuple(own))]


def seeds_present(table: pd.DataFrame) -> list[str]:
    """The seed columns that hold a value for some COMPLETED run of `table`: APET's position seed only where
    the figure has APET runs (#26 review: "pooled over apet.seed" under a figure without any)."""
    done = table[table["status"] == "COMPLETED"] if "status" in table else table
    return [s for s in SEEDS if s in done and done[s].notna().any()]


def pooled_note(
    keys: list[str], counts: pd.Series, pool: tuple[str, ...] = (), seeds_in=SEEDS, bars: bool = True
) -> str:
    """One line for a caption: what each point averages over (the seed columns among `seeds_in`, and
    `pool`), and what was kept apart; `bars=False` for a figure that draws no error bars (it says nothing
    of bars then)."""
    low, high = (int(counts.min()), int(counts.max())) if len(counts) else (0, 0)
    n = f"{low}" if low == high else f"{low}-{high}"
    pooled = ", ".join(short_name(c) for c in (*[s for s in SEEDS if s in set(seeds_in)], *pool)) or "nothing"
    note = f"points: mean over {n} runs each{', bars: ± 1 std' if bars else ''}; pooled over {pooled} only"
    if low == 1 and bars:  # not a spread of zero
        note += " (a point of one run has no bar)"
    if keys:
        note += f"; kept apart: {', '.join(short_name(k) for k in keys)}"
    return note
