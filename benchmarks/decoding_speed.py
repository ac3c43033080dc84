"""Greedy decoding speed on a tiny GPT-2 (built from a config, random weights, 1 CPU thread).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decoding_speed.py

Times, for 16 rows of 24 tokens and 16 rows of 16-32 tokens, decoding 32 new tokens each: transformers'
generate() on the bare model (batched, cached), petsweep's greedy decoding without a cache (what
prompt/prefix/DePT did before) and with one (what every method does now), for the bare model and a
prompt-tuned one. Tokens of the two petsweep paths must be identical.
"""

from __future__ import annotations

import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from petsweep.methods.layers.decoding import greedy_decode
from petsweep.methods.layers.prompt import SoftPrompt
from petsweep.methods.prompt import install


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = GPT2Config(n_embd=64, n_layer=2, n_head=2, n_positions=256, vocab_size=1000, eos_token_id=None)
    bare = GPT2LMHeadModel(config).eval()
    prompted = GPT2LMHeadModel(config).eval()
    prompt = install(prompted, SoftPrompt(10, prompted.get_input_embeddings()), decoder_only=True)
    torch.nn.init.normal_(prompt.embedding)
    equal = torch.randint(1, 1000, (16, 24))
    lengths = torch.randint(16, 33, (16,))  # rows of 16 to 32 tokens, left-padded as evaluation pads them
    varied = torch.randint(1, 1000, (16, 32)) * (torch.arange(32) >= 32 - lengths[:, None])
    new = 32

    def timed(fn):
        fn()  # warm up
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out

    kwargs = dict(encoder_decoder=False, max_new_tokens=new, eos_token_id=[], pad_token_id=0)
    with torch.no_grad():
        for batch, ids in (("16 rows of 24 tokens", equal), ("16 rows of 16-32 tokens", varied)):
            mask = (ids != 0).long()
            hf, _ = timed(
                lambda ids=ids, mask=mask: bare.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    do_sample=False,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    pad_token_id=0,
                )
            )
            print(
                f"{batch}, {new} new tokens: bare model, transformers generate() (batched, cached) {hf:.3f}s"
            )
            for name, model in (("bare", bare), ("prompt", prompted)):
                plain, a = timed(lambda m=model, i=ids, k=mask: greedy_decode(m, i, k, cache=False, **kwargs))
                cached, b = timed(lambda m=model, i=ids, k=mask: greedy_decode(m, i, k, cache=True, **kwargs))
                assert torch.equal(a, b), name
                print(
                    f"  {name:6s} petsweep greedy: no cache {plain:.3f}s, cache {cached:.3f}s "
                    f"({plain / cached:.1f}x faster; {cached / hf:.1f}x generate()'s time); tokens identical"
                )


if __name__ == "__main__":
    main()
