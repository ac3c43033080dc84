"""APET's delta gradient for one Linear: the dense product gathered vs the sampled products, by density.

    .venv/bin/python benchmarks/apet_gradient.py [--tokens 2048] [--out 384] [--in 1536]

The numbers behind petsweep.methods.apet.grad.DENSE_FROM: the dense G^T X costs the same at any k, the sampled
products (gathers of k columns of G and X) grow with k. Both are timed on the same random factors.
"""

from __future__ import annotations

import argparse
import time

import torch


def timed(fn, repeats: int = 5) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--out", type=int, default=384)
    parser.add_argument("--in", dest="inp", type=int, default=1536)
    args = parser.parse_args()
    torch.manual_seed(0)
    g, x = torch.randn(args.tokens, args.out), torch.randn(args.tokens, args.inp)
    print(f"N = {args.tokens} tokens, a {args.out} x {args.inp} matrix, {torch.get_num_threads()} threads\n")
    print("| positions / matrix | k | dense, gathered | sampled products |")
    print("|---|---|---|---|")
    for share in (1 / 1024, 1 / 256, 0.005, 0.014, 0.05):
        k = int(share * args.out * args.inp)
        idx = torch.randperm(args.out * args.inp)[:k].sort().values
        rows, cols = idx // args.inp, idx % args.inp
        dense = timed(lambda idx=idx: (g.t() @ x).reshape(-1)[idx])
        sampled = timed(lambda rows=rows, cols=cols: (g[:, rows] * x[:, cols]).sum(0))
        print(f"| {share:.4f} | {k} | {dense * 1000:.1f} ms | {sampled * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
