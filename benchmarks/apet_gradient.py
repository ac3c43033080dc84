"""APET's delta gradient for one Linear, by density: the dense product gathered, the sampled products as
gathers (k columns of G and X, multiplied, summed over tokens) and as one sampled dense-dense product
(`torch.sparse.sampled_addmm` on the positions' CSR pattern).

    .venv/bin/python benchmarks/apet_gradient.py [--tokens 2048] [--out 384] [--in 1536] [--threads 1]

The numbers behind petsweep.methods.apet.grad.choose_kernel: the dense G^T X costs the same at any k, both
sampled forms grow with k (sampled_addmm from a floor: it transposes G and X). All are timed on the same
random factors, in the layout the backward gets them (G: tokens x out, X: tokens x in, both contiguous).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from petsweep.methods.apet.grad import Pattern, sampled_gradient  # noqa: E402


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
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--shares", type=float, nargs="+", default=[1 / 1024, 1 / 256, 0.007, 0.014, 0.03, 0.05]
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    g, x = torch.randn(args.tokens, args.out), torch.randn(args.tokens, args.inp)
    print(f"N = {args.tokens} tokens, a {args.out} x {args.inp} matrix, {torch.get_num_threads()} threads\n")
    print("| positions / matrix | k | dense, gathered | sampled: gathers | sampled: sampled_addmm (CSR) |")
    print("|---|---|---|---|---|")
    for share in args.shares:
        k = int(share * args.out * args.inp)
        idx = torch.randperm(args.out * args.inp)[:k].sort().values
        pattern = Pattern((args.out, args.inp))
        rows, cols = idx // args.inp, idx % args.inp
        dense = timed(lambda idx=idx: (g.t() @ x).reshape(-1)[idx])
        gathers = timed(lambda rows=rows, cols=cols: (g[:, rows] * x[:, cols]).sum(0))
        csr = timed(lambda pattern=pattern, idx=idx: sampled_gradient(g, x, pattern, idx))
        print(
            f"| {share:.4f} | {k} | {dense * 1000:.1f} ms | {gathers * 1000:.1f} ms | {csr * 1000:.1f} ms |"
        )


if __name__ == "__main__":
    main()
