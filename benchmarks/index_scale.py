"""`petsweep status` and `collect` of 10^4..10^6 finished runs, without and with the sweep index (#25).

    .venv/bin/python benchmarks/index_scale.py --runs 10000 100000 [--root DIR] [--keep]

Builds N finished runs in petsweep's own layout (status.json, heartbeat, result.json with every RunRecord
field and the full config, config.yaml, provenance.json, progress.json, metrics.jsonl, train.log, the
claim lock, checkpoints/: about 37 KB and 10 inodes a run; dirs named by their identity, so they read
COMPLETED), written as a petsweep from before the index left them (no index lines). Then, each in a fresh
process (its own peak RSS), old code (PETSWEEP_INDEX=0: every run's files read every time) beside new:
`status` (status_table) and `collect` (collect + the parquet write `petsweep collect -o` does), the first
read with the index (it builds the index from the run dirs), the next one, and a re-collect and status
after 1% of the runs were trained again (result.json and status.json rewritten through RunDir, as a run
writes them). Prints the markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _record(config: dict, i: int) -> dict:
    """A finished run's result.json (every RunRecord field)."""
    from petsweep.records.record import RunRecord

    record = dict.fromkeys(RunRecord.keys())
    record.update(
        status="COMPLETED",
        backbone=config["backbone"]["name"],
        method=config["method"]["name"],
        task=config["task"]["name"],
        seed=config["seed"],
        sweep_name="scale",
        metric="accuracy",
        score=0.5 + (i % 997) / 2000,
        random_guess_score=0.2,
        metrics={"accuracy": 0.5 + (i % 997) / 2000, "macro_f1": 0.45, "loss": 1.234567},
        train_subset_metrics={"accuracy": 0.61, "macro_f1": 0.6},
        train_subset_score=0.61,
        best_step=200,
        best_dev_score=0.55,
        steps=400,
        stopped_early=False,
        total_params=22_713_216,
        nonembedding_params=21_000_000,
        head_params=1925,
        pet_params=73_728,
        trainable_params=75_653,
        count_notes=[],
        train_time_s=123.4,
        dev_eval_time_s=4.5,
        dev_evals=8,
        final_eval_time_s=2.1,
        tokens=819_200,
        tokens_per_s=6638.2,
        step_time_s=0.308,
        peak_memory_mb=812.5,
        rank_peak_memory_mb=[812.5],
        device="cpu",
        precision="fp32",
        deepspeed="none",
        ranks=1,
        backbone_dtype="float32",
        load_time_s=1.2,
        time_to_first_step_s=2.3,
        wall_time_s=131.0,
        data={
            "train": 800,
            "dev": 200,
            "test": 500,
            "classes": 5,
            "label_map": {str(k): k for k in range(5)},
        },
        eval_only=False,
        config=config,
    )
    return record


def build(root: Path, runs: int) -> None:
    """N finished runs in one sweep dir, named by their identity (rehash reads them as their own)."""
    import hashlib

    import yaml

    from petsweep.compose import compose
    from petsweep.model.resolve import run_hash, semantic_config
    from petsweep.spec.identity import plain, run_slug

    base = plain(compose([]))
    base["trainer"]["ranks"] = base["trainer"].get("ranks") or 1  # as rehash reads a finished record
    root.mkdir(parents=True, exist_ok=True)
    lrs = [1e-4 * (k + 1) for k in range(10)]
    log_text = "".join(f"step {s} loss 1.2345 lr 0.0001 dev accuracy 0.5\n" for s in range(300))
    metrics_text = "".join(
        json.dumps({"step": s, "train_loss": 1.2345, "lr": 1e-4, "dev_accuracy": 0.5}) + "\n"
        for s in range(40)
    )
    # the files as text once, with each run's values put in (YAML and JSON of a whole config per run
    # would make building 10^5 runs take an hour)
    marked = json.loads(json.dumps(base))
    marked["seed"], marked["method"]["r"], marked["method"]["lr"] = "@SEED@", "@R@", "@LR@"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    config_template = yaml.dump(marked, Dumper=dumper, sort_keys=False)
    record = _record(semantic_config(marked), 0)
    record.update(run_id="@ID@", config_sha256="@SHA@", score="@SCORE@")
    record_template = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
    for i in range(runs):
        seed, r, lr = i // 50, 1 + (i // 10) % 5, lrs[i % 10]
        config = json.loads(json.dumps(base))
        config["seed"], config["method"]["r"], config["method"]["lr"] = seed, r, lr
        run_id = run_hash(config)  # as rehash.stale_record names a record
        run = root / f"{run_slug(config)}-{run_id[:12]}"
        run.mkdir()
        (run / "checkpoints").mkdir()
        values = {"@SEED@": str(seed), "@R@": str(r), "@LR@": repr(lr)}
        config_text = config_template
        for mark, value in values.items():
            config_text = config_text.replace(f"'{mark}'", value)  # YAML quotes a leading @
        (run / "config.yaml").write_text(config_text)
        values.update(
            {
                "@ID@": run_id,
                "@SHA@": hashlib.sha256(config_text.encode()).hexdigest(),
                "@SCORE@": repr(0.5 + (i % 997) / 2000),
            }
        )
        record_text = record_template
        for mark, value in values.items():
            record_text = record_text.replace(
                f'"{mark}"', value if mark not in ("@ID@", "@SHA@") else f'"{value}"'
            )
        (run / "result.json").write_text(record_text)
        (run / "provenance.json").write_text(
            json.dumps({"git_commit": "0" * 40, "git_dirty": False, "host": "node-001", "python": "3.11"})
        )
        (run / "progress.json").write_text(json.dumps({"step": 400, "max_steps": 400, "dev_score": 0.55}))
        (run / "metrics.jsonl").write_text(metrics_text)
        (run / "train.log").write_text(log_text)
        (run / "heartbeat").write_text(f"{time.time():.3f}")
        (run / ".claim.lock").write_text("")
        (run / "status.json").write_text(
            json.dumps({"state": "COMPLETED", "host": "node-001", "pid": 4242, "updated": 1.7e9 + i}) + "\n"
        )


def prepare(sweep: Path, runs: int, reuse: bool) -> None:
    """Build N runs, or (--reuse) take those a run before built and left unchanged (their indexes dropped)."""
    marker = sweep.parent / "built"
    if reuse and marker.exists() and marker.read_text() == str(runs):
        for path in sweep.glob(".index*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return
    shutil.rmtree(sweep.parent, ignore_errors=True)
    started = time.time()
    build(sweep, runs)
    marker.write_text(str(runs))
    print(f"built {runs} runs in {time.time() - started:.0f} s", file=sys.stderr, flush=True)


def change(root: Path, fraction: float) -> int:
    """Train `fraction` of the runs again: result.json then status.json rewritten through RunDir."""
    (root.parent / "built").unlink(missing_ok=True)  # no longer as built
    return _change(root, fraction)


def _change(root: Path, fraction: float) -> int:
    """Train `fraction` of the runs again: result.json then status.json rewritten through RunDir."""
    from petsweep.records.status import RunDir, write_json

    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))  # runs
    every = max(1, round(1 / fraction))
    for name in names[::every]:
        run = RunDir(root / name)
        write_json(run.result_file, {**run.result(), "score": 0.99})
        run.set_status("COMPLETED")
    return len(names[::every])


def change_with(root: Path, fraction: float, tree: Path) -> int:
    """_change run by the code of `tree` (the after version) in its own process: its set_status writes the
    index lines that version writes (with its fingerprint, so that version's reader takes them; this
    checkout's fingerprint moves while others edit it)."""
    env = dict(os.environ, PETSWEEP_INDEX="1", OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
    script = [sys.executable, str(tree / "benchmarks" / "index_scale.py"), "--root", str(root)]
    out = subprocess.run(
        [*script, "--change", str(fraction)], cwd=tree, env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


def measure(what: str, root: Path) -> dict:
    started = time.time()
    last = None
    if what == "status":
        from launchers.report import status_table

        text = status_table(root)
        lines, last = text.count("\n"), text.rsplit("\n", 1)[-1]
    else:
        from analysis import collect, save

        table = collect([root], quick=what == "collect-quick")
        save(table, root.parent / "table.parquet")
        lines = len(table)
    seconds = time.time() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss / 1024**2  # KiB -> GiB
    cpu = usage.ru_utime + usage.ru_stime  # imports included, as the peak
    return {"seconds": seconds, "cpu_s": cpu, "rss_gb": peak, "lines": lines, "last": last}


def child(what: str, root: Path, indexed: bool, tree: Path = REPO) -> dict:
    """One measurement in a fresh process, of the code in `tree` (this one, or --base's export)."""
    env = dict(os.environ, PETSWEEP_INDEX="1" if indexed else "0", OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / "index_scale.py"), "--measure", what, "--root", str(root)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell(got: dict) -> str:
    return f"{got['seconds']:.1f} s / {got['rss_gb']:.2f} GB"


def _swap(sweep: Path, tree: str) -> None:
    """Each version keeps its own index (their manifests differ): the other's is moved aside."""
    active, mine = sweep / ".index", sweep / f".index-{tree}"
    marker = sweep / ".index-owner"
    owner = marker.read_text().strip() if marker.exists() else None
    if owner == tree:
        return
    if owner is not None and active.exists():
        active.rename(sweep / f".index-{owner}")
    if mine.exists():
        mine.rename(active)
    marker.write_text(tree)


def base_table(args) -> str:
    """Before (the index of --base, exported with git archive) and after (this tree) side by side, one
    fresh process per cell, on the same synthetic runs; each version reads its own index."""
    import tempfile

    commit = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    rows = [
        f"before = {commit} (its index), after = this tree; no index = PETSWEEP_INDEX=0 (this tree)",
        "",
        "| runs | | `status` | `collect` | re-collect after 1% changed | `status` after 1% changed |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "base"
        old.mkdir()
        archive = subprocess.run(["git", "archive", args.base], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        trees = {"before": old, "after": REPO}
        for runs in args.runs:
            sweep = args.root / f"n{runs}" / "sweep"
            prepare(sweep, runs, args.reuse)
            got = {}
            plan = [
                (f"{name}_{what}{n}", what, name)
                for name in trees
                for what in ("collect", "status")
                for n in (1, 2)
            ]
            for key, what, name in [
                ("none_collect", "collect", None),
                *plan,
                ("none_status", "status", None),
            ]:
                if name is not None:
                    _swap(sweep, name)
                got[key] = child(what, sweep, name is not None, trees.get(name, REPO))
                print(f"{runs}: {key} {cell(got[key])}", file=sys.stderr, flush=True)
            _swap(sweep, "after")
            change(sweep, 0.01)
            for name in trees:
                _swap(sweep, name)
                for what in ("collect", "status"):
                    key = f"{name}_{what}_after"
                    got[key] = child(what, sweep, True, trees[name])
                    print(f"{runs}: {key} {cell(got[key])}", file=sys.stderr, flush=True)
            got["none_collect_after"] = child("collect", sweep, False)
            lines = {got[k]["lines"] for k in got if k.endswith("collect1") or k == "none_collect"}
            assert len(lines) == 1, got
            rows.append(
                f"| {runs:,} | no index | {cell(got['none_status'])} | {cell(got['none_collect'])} | "
                f"{cell(got['none_collect_after'])} | {cell(got['none_status'])} |"
            )
            for name in trees:
                rows += [
                    f"| | {name}: first read (builds its index) | {cell(got[f'{name}_status1'])} | "
                    f"{cell(got[f'{name}_collect1'])} | | |",
                    f"| | {name}: index | {cell(got[f'{name}_status2'])} | {cell(got[f'{name}_collect2'])} | "
                    f"{cell(got[f'{name}_collect_after'])} | {cell(got[f'{name}_status_after'])} |",
                ]
            print("\n".join(rows[-5:]), file=sys.stderr, flush=True)
            if not args.keep:
                shutil.rmtree(sweep.parent, ignore_errors=True)
    return "\n".join(rows)


def _trees(args, tmp: Path) -> dict[str, Path]:
    """The before and after source trees (`--base`, `--after` exported under tmp; no --after: this tree), each
    measured by this script's measure() (CPU, the last line)."""
    trees = {"before": _export(args.base, tmp / "before")}
    trees["after"] = _export(args.after, tmp / "after") if args.after else REPO
    for tree in trees.values():
        if tree != REPO:
            shutil.copy(__file__, tree / "benchmarks" / "index_scale.py")
    return trees


def _export(revision: str, into: Path) -> Path:
    """The tree of a git revision, exported (git archive) into `into`: code that does not change under the
    measurement (the checkout may be edited meanwhile, and the index's fingerprint hashes its sources)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", revision], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _compact(sweep: Path, tree: Path) -> None:
    """Fold the sweep's index into a new manifest with the code of `tree` (its listing of the sweep dir is
    then the dir's as it is: a `status` after it need not list the dir)."""
    code = (
        "import sys; from launchers.report import read_info; from petsweep.records import index; "
        "index.Snapshot(sys.argv[1], read_info=read_info).compact()"
    )
    env = dict(os.environ, PETSWEEP_INDEX="1", OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
    subprocess.run([sys.executable, "-c", code, str(sweep)], cwd=tree, env=env, check=True)


def cells(got: dict) -> str:
    return f"{got['seconds']:.1f} s | {got['cpu_s']:.1f} s | {got['rss_gb']:.2f} GB"


def status_only(args) -> str:
    """`status` alone, before (--base) and after (--after, or this tree), each exported with git archive and
    reading its own index, on the same runs: the first read (builds that index), a warm read, a warm read
    after 1% of the runs were trained again; for after also a warm read after a compaction (the sweep dir
    not listed: _swap renames index dirs in it, which moves its mtime). One fresh process a cell."""
    import tempfile

    rows = [
        f"before = {args.base}, after = {args.after or 'this tree'}; wall | CPU | peak RSS, imports included",
        "",
        "| runs | | first read (builds the index) | warm | warm, sweep dir not listed | "
        "warm, 1% trained again |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        trees = _trees(args, Path(tmp))
        for runs in args.runs:
            sweep = args.root / f"n{runs}" / "sweep"
            if not (sweep.parent / "built").exists():  # runs built before keep their indexes (--reuse)
                prepare(sweep, runs, False)
            got = {}
            for name, tree in trees.items():
                _swap(sweep, name)
                for key in ("first", "warm"):
                    if key == "first" and (sweep / ".index" / "manifest.parquet").exists() and args.reuse:
                        continue  # built by an earlier run of this script
                    got[f"{name}_{key}"] = child("status", sweep, True, tree)
                    print(f"{runs}: {name} {key} {got[f'{name}_{key}']}", file=sys.stderr, flush=True)
                if name == "after":
                    _compact(sweep, tree)
                    got["after_unlisted"] = child("status", sweep, True, tree)
                    print(f"{runs}: after unlisted {got['after_unlisted']}", file=sys.stderr, flush=True)
            assert got["before_warm"]["last"] == got["after_warm"]["last"], got  # the same counts
            if args.changed:
                _swap(sweep, "after")
                change_with(sweep, 0.01, trees["after"])
                for name, tree in trees.items():
                    _swap(sweep, name)
                    got[f"{name}_changed"] = child("status", sweep, True, tree)
                    print(f"{runs}: {name} changed {got[f'{name}_changed']}", file=sys.stderr, flush=True)
                (sweep.parent / "built").unlink(missing_ok=True)
            for name in trees:
                first = got.get(f"{name}_first")
                rows.append(
                    f"| {runs:,} | {name} | {cells(first) if first else '(earlier)'} | "
                    f"{cells(got[f'{name}_warm'])} | "
                    f"{cells(got['after_unlisted']) if name == 'after' else ''} | "
                    f"{cells(got[f'{name}_changed']) if args.changed else ''} |"
                )
            print("\n".join(rows[-2:]), file=sys.stderr, flush=True)
    return "\n".join(rows)


def collect_only(args) -> str:
    """`collect` (with the parquet write) alone, before (--base) and after (--after, or this tree), each
    exported with git archive and reading its own index, on the same runs: the first read (builds that
    index), a warm collect, the same again, after 1% of the runs were trained again, and the same again. One
    fresh process a cell; each cell's table must be the other version's, file for file."""
    import tempfile

    import pyarrow.parquet as pq

    steps = ("first", "warm", "warm again", "1% trained again", "again after 1%")
    rows = [
        f"before = {args.base}, after = {args.after or 'this tree'}; wall | CPU | peak RSS, imports included",
        "",
        "| runs | | " + " | ".join(f"{step}: wall | CPU | peak RSS" for step in steps) + " |",
        "|---|---|" + "---|---|---|" * len(steps),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        trees = _trees(args, Path(tmp))
        for runs in args.runs:
            sweep = args.root / f"n{runs}" / "sweep"
            prepare(sweep, runs, args.reuse)
            got: dict = {}

            for step in steps:
                if step == "1% trained again":
                    _swap(sweep, "after")
                    change_with(sweep, 0.01, trees["after"])
                for name in trees:
                    _swap(sweep, name)
                    got[name, step] = child("collect", sweep, True, trees[name])
                    table = sweep.parent / f"table-{name}-{step}.parquet"
                    (sweep.parent / "table.parquet").rename(table)
                    print(f"{runs}: {name} {step} {got[name, step]}", file=sys.stderr, flush=True)
                before, after = (pq.read_table(sweep.parent / f"table-{n}-{step}.parquet") for n in trees)
                assert before.equals(after, check_metadata=True), (runs, step)  # the same table
            (sweep.parent / "built").unlink(missing_ok=True)
            for name in trees:
                rows.append(f"| {runs:,} | {name} | " + " | ".join(cells(got[name, s]) for s in steps) + " |")
            print("\n".join(rows[-2:]), file=sys.stderr, flush=True)
    return "\n".join(rows)


def quick_compare(sweep: Path, repeat: int) -> str:
    """`collect` and `collect --quick` of one sweep (this tree, its index built first), alternating, one
    fresh process a cell: warm (nothing changed), and after 1% of the runs were trained again (a fresh 1%
    before each cell). After each quick re-collect, a collect without --quick must give the same table."""
    import pyarrow.parquet as pq

    child("collect", sweep, True)  # the index and the kept table, built (or current)
    got: dict = {}
    for _ in range(repeat):
        for what in ("collect", "collect-quick"):
            got.setdefault(("warm", what), []).append(child(what, sweep, True))
        for what in ("collect", "collect-quick"):
            change_with(sweep, 0.01, REPO)
            got.setdefault(("1% trained again", what), []).append(child(what, sweep, True))
            if what == "collect-quick":
                quick = pq.read_table(sweep.parent / "table.parquet")
                child("collect", sweep, True)
                assert pq.read_table(sweep.parent / "table.parquet").equals(quick), "quick != verified"
            print(f"{what}: {got['1% trained again', what][-1]}", file=sys.stderr, flush=True)

    def median(cells: list[dict]) -> str:
        mid = lambda key: sorted(c[key] for c in cells)[len(cells) // 2]  # noqa: E731
        return f"{mid('seconds'):.1f} s / {mid('cpu_s'):.1f} s / {mid('rss_gb'):.2f} GB"

    runs = got["warm", "collect"][0]["lines"]
    rows = [
        f"{runs:,} runs; medians of {repeat}; wall / CPU / peak RSS, imports included",
        "",
        "| | `collect -o` | `collect --quick -o` |",
        "|---|---|---|",
    ]
    for step in ("warm", "1% trained again"):
        rows.append(f"| {step} | {median(got[step, 'collect'])} | {median(got[step, 'collect-quick'])} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--root", type=Path, default=Path("/tmp/petsweep-index-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the synthetic runs")
    parser.add_argument("--measure", choices=("status", "collect", "collect-quick"), help=argparse.SUPPRESS)
    parser.add_argument("--change", type=float, help=argparse.SUPPRESS)  # change_with's process
    parser.add_argument("--base", help="also measure the index of the code at this git revision (before)")
    parser.add_argument("--reuse", action="store_true", help="take runs built by an earlier --keep run")
    parser.add_argument("--build-only", action="store_true", help="build the runs and stop (for --reuse)")
    parser.add_argument(
        "--status-only", action="store_true", help="with --base: `status` alone (status_only)"
    )
    parser.add_argument(
        "--after", help="with --status-only: the revision measured as after (default: this tree)"
    )
    parser.add_argument(
        "--changed", action="store_true", help="with --status-only: also after 1%% trained again"
    )
    parser.add_argument(
        "--collect-only", action="store_true", help="with --base: `collect` alone (collect_only)"
    )
    parser.add_argument("--quick-compare", type=Path, help="collect and collect --quick of this sweep")
    parser.add_argument("--repeat", type=int, default=2, help="with --quick-compare: rounds")
    args = parser.parse_args()
    if args.quick_compare:
        print(quick_compare(args.quick_compare, args.repeat), flush=True)
        return
    if args.measure:
        print(json.dumps(measure(args.measure, args.root)))
        return
    if args.change:
        print(_change(args.root, args.change))
        return
    if args.build_only:
        for runs in args.runs:
            prepare(args.root / f"n{runs}" / "sweep", runs, True)
        return
    if args.base and args.collect_only:
        print(collect_only(args), flush=True)
        return
    if args.base and args.status_only:
        print(status_only(args), flush=True)
        return
    if args.base:
        print(base_table(args), flush=True)
        return
    rows = [
        "| runs | | `status` | `collect` | re-collect after 1% changed | `status` after 1% changed |",
        "|---|---|---|---|---|---|",
    ]
    for runs in args.runs:
        sweep = args.root / f"n{runs}" / "sweep"
        started = time.time()
        prepare(sweep, runs, args.reuse)
        built = time.time() - started
        size = int(
            subprocess.run(["du", "-sk", str(sweep)], capture_output=True, text=True).stdout.split()[0]
        )
        print(f"built {runs} runs in {built:.0f} s, {size / runs:.1f} KB a run", file=sys.stderr, flush=True)
        got = {}
        for key, what, indexed in (  # collect first: status without an index reads every record
            ("old_collect", "collect", False),
            ("first_collect", "collect", True),
            ("new_collect", "collect", True),
            ("first_status", "status", True),
            ("new_status", "status", True),
            ("old_status", "status", False),
        ):
            got[key] = child(what, sweep, indexed)
            print(f"{runs}: {key} {cell(got[key])}", file=sys.stderr, flush=True)
        changed = change(sweep, 0.01)
        for key, what, indexed in (
            ("new_recollect", "collect", True),
            ("new_status_after", "status", True),
            ("old_recollect", "collect", False),
        ):
            got[key] = child(what, sweep, indexed)
            print(f"{runs}: {key} {cell(got[key])}", file=sys.stderr, flush=True)
        old_status, old_collect, old_recollect = got["old_status"], got["old_collect"], got["old_recollect"]
        first_status, new_status, new_status_after = (
            got["first_status"],
            got["new_status"],
            got["new_status_after"],
        )
        first_collect, new_collect, new_recollect = (
            got["first_collect"],
            got["new_collect"],
            got["new_recollect"],
        )
        index_kb = int(
            subprocess.run(
                ["du", "-sk", str(sweep / ".index")], capture_output=True, text=True
            ).stdout.split()[0]
        )
        assert new_status["lines"] == old_status["lines"] and new_collect["lines"] == old_collect["lines"]
        rows += [
            f"| {runs:,} | before (every run's files) | {cell(old_status)} | {cell(old_collect)} | "
            f"{cell(old_recollect)} | {cell(old_status)} |",
            f"| | index, first read (builds it) | {cell(first_status)} | {cell(first_collect)} | | |",
            f"| | index | {cell(new_status)} | {cell(new_collect)} | {cell(new_recollect)} | "
            f"{cell(new_status_after)} |",
        ]
        print(
            f"{runs}: {changed} runs changed; index {index_kb / 1024:.0f} MB "
            f"({index_kb * 1024 / runs:.0f} B a run)",
            file=sys.stderr,
            flush=True,
        )
    print("\n".join(rows))
    if not args.keep:  # after the table: deleting 10^5 run dirs takes minutes
        for runs in args.runs:
            shutil.rmtree(args.root / f"n{runs}", ignore_errors=True)


if __name__ == "__main__":
    main()
