"""Greedy decoding through a hooked forward: it lives in layers/decoding.py (it imports torch and
transformers); this name stays for its users and loads it on first use, so that importing
`petsweep.methods` imports no torch."""

from __future__ import annotations


def __getattr__(name: str):
    from petsweep.methods.layers import decoding

    try:
        return getattr(decoding, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
