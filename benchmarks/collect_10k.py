"""`petsweep collect` of 10,000 synthetic run records (target <= 5 s).

    .venv/bin/python benchmarks/collect_10k.py [--runs 10000]

The records have the shape real runs write (status.json, result.json with the full config, provenance.json,
metrics.jsonl); the timer covers reading them all into one table and writing it as parquet.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def synthesize(root: Path, runs: int) -> None:
    from petsweep.compose import compose
    from petsweep.records.status import RunDir, write_json
    from petsweep.spec.identity import plain

    config = plain(compose([]))
    for i in range(runs):
        run = RunDir(root / f"run-{i:05d}")
        run.set_status("COMPLETED")
        config = {**config, "seed": i % 3, "method": {**config["method"], "r": 1 + i % 64}}
        write_json(
            run.result_file,
            {
                "status": "COMPLETED",
                "run_id": f"{i:064x}",
                "backbone": "minilm-l6",
                "method": "lora",
                "task": "bbc_news",
                "seed": i % 3,
                "metric": "accuracy",
                "score": 0.9,
                "metrics": {"accuracy": 0.9, "f1": 0.89},
                "trainable_params": i,
                "random_guess_score": 0.2,
                "config": config,
            },
        )
        write_json(run.path / "provenance.json", {"git_commit": "0" * 40, "host": "h"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    from analysis import collect, save

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sweep"
        synthesize(root, args.runs)
        started = time.time()
        table = collect([root])
        save(table, Path(tmp) / "table.parquet")
        elapsed = time.time() - started
    print(
        f"| `petsweep collect` of {len(table):,} run records (+ parquet write) | {elapsed:.1f} s | <= 5 s |"
    )


if __name__ == "__main__":
    main()
