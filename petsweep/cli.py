"""The `petsweep` command and the checks `run.py` makes before Hydra starts.

petsweep count [--json] backbone=bert-base method=lora    # parameter counts, no weights, no network
petsweep plan method=lora,full seed=1,2,3                 # every run of a sweep: status, params, cost
petsweep status runs/<sweep_name> [--json]                # step/N, dev, ETA, result (also a run dir or root)
petsweep show <run dir or hash prefix> [--root runs]      # one run: config, status, scores, counts, paths
petsweep invalidate runs/<sweep> --where method.lr=0.1    # redo runs after a fix (moved aside, not deleted)
petsweep cancel runs/<sweep_name>                         # stop its running runs (rerun resumes them)
petsweep sync runs/<sweep_name> [--parallel 4]            # upload finished runs' offline W&B runs
petsweep collect runs/<sweep_name> -o table.parquet       # one tidy row per run
petsweep plot table.parquet --kind curves -o curves.png   # figures (see analysis.plots.KINDS)
petsweep thresholds table.parquet -o thresholds.csv       # low/high budget thresholds per task, backbone
petsweep transfer runs/<sweep_name> --task <other task>   # finished runs scored on another task
petsweep rehash runs [--dry-run]                          # rename run dirs of an older identity rule
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from petsweep.spec.errors import ConfigError, PetsweepError, exit_on_user_error

INFO_CHOICES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def run_args_parser() -> argparse.ArgumentParser:
    """run.py's flags as Hydra 1.3's @hydra.main declares them (its parser is private API): which flags take
    a value, so that a value is never taken for an override. Hydra parses the command line again itself."""
    parser = argparse.ArgumentParser(add_help=False, description="Hydra")
    for flags in [("--help", "-h"), ("--hydra-help",), ("--version",)]:
        parser.add_argument(*flags, action="store_true")  # --version: Hydra prints its version
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
    parser.add_argument("--resolve", action="store_true")
    parser.add_argument("--package", "-p")
    for flags in [("--run", "-r"), ("--multirun", "-m"), ("--shell-completion", "-sc")]:
        parser.add_argument(*flags, action="store_true")
    for flags in [("--config-path", "-cp"), ("--config-name", "-cn"), ("--config-dir", "-cd")]:
        parser.add_argument(*flags)
    parser.add_argument("--experimental-rerun")
    parser.add_argument("--info", "-i", const="all", nargs="?", choices=INFO_CHOICES)
    return parser


def _hydra_args(argv: list[str]):
    """run.py's command line as Hydra parses it (its flags, their values, the overrides)."""
    args, extra = run_args_parser().parse_known_args(argv)
    # overrides after a flag (`run.py a=1 -m b=2`) land in `extra`: they are overrides all the same
    args.overrides += [e for e in extra if not e.startswith("-")]
    return args


def hydra_argv(argv: list[str]) -> list[str]:
    """The command line with Hydra's flags first and every override after them: argparse cannot take
    positional overrides on both sides of a flag (`run.py a=1 -m b=2`), which users write all the time."""
    overrides = _hydra_args(argv).overrides
    taken = set(overrides)
    # the threshold sweeper's hydra.sweeper.budget=interval(lo,hi) is a setting, not a sweep of Hydra's
    # config (which Hydra refuses): it reaches Hydra quoted, as the text the sweeper parses
    budget = "hydra.sweeper.budget=interval("
    overrides = [f"{o[:20]}='{o[21:]}'" if o.startswith(budget) else o for o in overrides]
    return [a for a in argv if a not in taken] + overrides


def needs_base_nodes(argv: list[str], completed: str | None) -> bool:
    """Whether run.py's command line composes a config, which needs the base nodes (register_base_nodes:
    the methods' modules, torch, seconds). Hydra's shell completion (-sc) of a key press does not where it
    installs or uninstalls its script, or completes a choice of one of conf/'s groups (`method=lo`: Hydra
    lists the group's files) or a file name; it composes for a key (`trainer.max_st`), a value or an empty
    word.
    `completed`: the line being completed (COMP_LINE), where the shell gives it."""
    args = _hydra_args(argv)
    if not args.shell_completion:
        return True
    if not any(o.startswith("query=") for o in args.overrides):
        return False  # install=, uninstall=: a script is printed
    if completed is None or not completed.strip() or completed[-1].isspace():
        return True  # a new word: Hydra offers the groups and the config's keys
    word = completed.split()[-1].lstrip("+~")
    if "=" not in word:
        return True
    group, value = word[: word.rfind("=")], word[word.rfind("=") + 1 :]
    if value.startswith((".", "/", "\\")):
        return False  # a file name
    from petsweep import CONF_DIR

    return not any((CONF_DIR / group).glob("*.yaml"))


def _overrides(args) -> list[str]:
    """The overrides petsweep validates: every config override (deletions `~key` too), the hydra/ groups the
    run composes with, and the search path (with --config-dir added to it, as Hydra adds it); Hydra's own
    settings (hydra.*) are Hydra's."""
    kept = [o for o in args.overrides if not o.startswith("hydra.") or o.startswith("hydra.searchpath")]
    if args.config_dir:
        extra = f"file://{Path(args.config_dir).resolve()}"
        given = [o for o in kept if o.startswith("hydra.searchpath=")]
        paths = given[-1].split("=", 1)[1].strip("[]") if given else ""
        kept = [o for o in kept if not o.startswith("hydra.searchpath=")]
        kept.append(f"hydra.searchpath=[{','.join(p for p in (paths, extra) if p)}]")
    return kept


# Hydra launchers that run petsweep's runs without what petsweep's launchers give them: the backbone's
# resources (GPUs, memory, time), ranks, arrays chunked under MaxArraySize, claims, and requeue with resume
FOREIGN_LAUNCHERS = {
    "submitit_slurm": "launcher=slurm_<cluster> (copy conf/launcher/slurm_cluster.yaml)",
    "submitit_local": "launcher=local",
}


def _refuse_foreign_launchers(overrides: list[str]) -> None:
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key == "hydra/launcher" and value in FOREIGN_LAUNCHERS:
            raise ConfigError(
                "hydra/launcher",
                value,
                f"runs there would ignore the backbone's resources (GPUs, memory, ranks) and lose petsweep's "
                f"claims and requeue-with-resume; use {FOREIGN_LAUNCHERS[value]}",
            )


def preflight(argv: list[str]):
    """Compose and validate what the command line names before Hydra starts, so that bad input is one line.

    A plain run: its config, composed and validated once. A sweep of petsweep's sweepers (petsweep,
    threshold): the overrides, parsed and checked as above, and nothing composed: Hydra's start composes the
    sweep's config (an error in it in one line: start_errors_in_one_line), the sweeper's setup checks its
    launcher and its plan validates every run before anything launches (launchers.planning.plan), so no
    config is validated twice and nothing travels from here to the sweeper but the command line. A sweep of
    another sweeper (Optuna), whose trials reach petsweep only as overrides:
    every value of each axis, composed (at most once each) and validated here; the launcher check and the
    sweeper's direction read the hydra node of its first config, composed once, and its direction follows the
    optimised metric of the configs the validation composed: `argv` gains hydra.sweeper.direction=maximize
    where the command line does not set it (_sweeper_direction).

    Hydra's own modes (shell completion, help, --version, --info, --experimental-rerun, another
    --config-path) are left to Hydra; --cfg only composes.

    Returns:
        The run, resolved (petsweep.spec.resolved.ResolvedRun, typed), when the command line is one plain run
        (no -m, --cfg or --info): run.py executes it as composed and validated here, without validating again
        (under Hydra's start where a hydra.* setting asks for it: needs_hydra_start).

    Raises:
        ConfigError: on the first unknown option, unknown key or invalid value, before anything runs.
    """
    from petsweep.compose import compose
    from petsweep.model.resolve import resolved_run

    args = _hydra_args(argv)
    hydra_own = args.shell_completion or args.help or args.hydra_help or args.version
    if hydra_own or args.experimental_rerun or args.config_path:
        return
    overrides = _overrides(args)
    _refuse_foreign_launchers(overrides)
    parsed, fixed = _parsed(overrides)
    other_sweeper = args.multirun and _other_sweeper(overrides)  # the launcher and sweeper it picks
    if other_sweeper:
        _refuse_globs(parsed)
    axes = [(o.get_key_element(), _sweep_values(o)) for o in parsed if o.is_sweep_override()]
    variants = [fixed + [f"{k}={values[0]}" for k, values in axes]]
    for i, (_key, values) in enumerate(axes):
        for value in values[1:]:
            variants.append(
                fixed + [f"{k}={(value if j == i else vals[0])}" for j, (k, vals) in enumerate(axes)]
            )
    if args.multirun and (args.cfg or args.info):  # Hydra raises a traceback for these together
        raise PetsweepError(
            f"-m with --{'cfg' if args.cfg else 'info'}: Hydra shows one run's config and takes no -m; "
            f"petsweep plan {' '.join(args.overrides)} lists the sweep's runs"
        )
    presets = [o for o in overrides if o.lstrip("+").startswith("sweep=")]
    if presets and not args.multirun:
        shown = args.cfg or args.info or args.resolve  # Hydra takes none of them beside -m: say what works
        raise PetsweepError(
            f"{presets[0]}: a sweep preset defines the sweep's axes, which only a multirun expands: "
            + (
                f"petsweep plan {' '.join(args.overrides)} lists its runs (Hydra's --cfg/--info show one "
                f"run's config and take no -m)"
                if shown
                else f"python run.py -m {' '.join(argv)}"
            )
        )
    if axes and not args.multirun:  # Hydra's start refuses it in 5 lines, exit 1
        swept = next(o for o in parsed if o.is_sweep_override())
        raise ConfigError(
            swept.get_key_element(),
            swept.get_value_string(),
            f"several values are a sweep: add -m to sweep them (petsweep plan lists a sweep's runs), "
            f"or quote one value that holds a comma ({swept.get_key_element()}='...')",
        )
    config_name = args.config_name or "config"
    hydra_args = [o for o in args.overrides if o.startswith("hydra.") and o not in overrides]
    if other_sweeper:
        hydra_node, configs = _validate_variants(variants, hydra_args, config_name)
        check_launcher(hydra_node.launcher)
        argv += _sweeper_direction(configs, hydra_args, hydra_node.sweeper)
    elif not args.multirun:
        [variant] = variants
        cfg = compose(variant, config_name=config_name)
        if args.cfg is None and args.info is None:
            return resolved_run(cfg)
    return None


def needs_hydra_start(argv: list[str]) -> bool:
    """Whether the plain run the preflight resolved must start under Hydra: a hydra.* setting or flag that
    only Hydra's start honours (its run dir, chdir, logging; --resolve, --package). Hydra's job then executes
    the preflight's run, not Hydra's composition of it (validated once: R23 F1)."""
    args = _hydra_args(argv)
    hydra_settings = [o for o in args.overrides if o.lstrip("+~").startswith("hydra")]
    return bool(args.resolve or args.package) or not all(
        o.startswith("hydra.searchpath=") for o in hydra_settings
    )


@contextlib.contextmanager
def start_errors_in_one_line(argv: list[str]):
    """Hydra's start composes a sweep's config (its overrides but the sweep's values, with the hydra.*
    settings) before any sweeper runs, and prints an error in it in several lines, exit 1. HYDRA_FULL_ERROR
    (Hydra's own switch) makes it raise the error to run.py instead, and composing that config here words it
    as one ConfigError line; an error the composition does not give again is not the input's: raised as it is
    (Hydra's full traceback). A command line that is no sweep: Hydra's start as it is."""
    from petsweep.compose import compose

    args = _hydra_args(argv)
    if not args.multirun:
        yield
        return
    given = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except Exception:
        overrides = _overrides(args)  # as the preflight reads them: --config-dir is on the search path
        overrides += [o for o in args.overrides if o.startswith("hydra.") and o not in overrides]
        _, fixed = _parsed(overrides)
        compose(fixed, config_name=args.config_name or "config", with_hydra=True)
        raise
    finally:
        if given is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)


def _parsed(overrides: list[str]) -> tuple[list, list[str]]:
    """The overrides parsed by Hydra's grammar, and the input lines of those that sweep nothing (the fixed
    ones): what the preflight and start_errors_in_one_line each compose a sweep's config from. Parsed as the
    sweepers and petsweep plan parse them (launchers.expand.parse: what it refuses is refused in one line by
    every entry), glob() axes listing their group's options under the command line's search path."""
    from launchers.expand import parse

    parsed = parse(overrides, GroupLister(overrides))
    return parsed, [o.input_line for o in parsed if not o.is_sweep_override()]


def _validate_variants(variants: list[list[str]], hydra_args: list[str], config_name: str):
    """Compose and validate every value of each axis of a sweep whose sweeper is not petsweep's (its trials
    reach petsweep only as overrides). Returns the hydra node of the first, composed once with the hydra.*
    settings (an error composing that node is raised after every config's own errors), and each variant's
    config as the validation composed it (plain data), which the sweeper's direction reads: no variant is
    composed twice."""
    from launchers.planning import validate
    from petsweep.compose import compose

    try:
        first = [compose(variants[0] + hydra_args, config_name=config_name, with_hydra=True)]
        unusable = None
    except ConfigError as err:
        first, unusable = [], err
    hydra_node = first[0].hydra if first else None

    def compose_variant(variant: list[str]):
        # validate composes variants[0]'s groups first: the composition above has them (its hydra.* settings
        # and values aside, which the validation's plain copy drops or sets again)
        return first.pop() if first else compose(variant, config_name=config_name)

    configs = validate(variants, compose_variant)
    if unusable is not None:
        raise unusable
    return hydra_node, configs


def _refuse_globs(parsed) -> None:
    """A glob() axis under another sweeper (Optuna), which takes choice(), range() and interval() and asserts
    on a glob (a 39-line traceback after the preflight passed it: review of 2026-12-06, G6)."""
    from hydra.core.override_parser.types import Glob

    for override in parsed:
        if override.is_sweep_override() and isinstance(override.value(), Glob):
            raise ConfigError(
                override.get_key_element(),
                override.get_value_string(),
                "glob() is expanded by petsweep's sweepers; another sweeper (Optuna) takes choice(), range() "
                "or interval(): list the options as choice(a,b)",
            )


def _other_sweeper(overrides: list[str]) -> bool:
    """The command line picks a sweeper other than petsweep's (petsweep, threshold), e.g. Optuna's."""
    picked = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("hydra/sweeper=")]
    return bool(picked) and picked[-1] not in ("petsweep", "threshold")


def _sweeper_direction(configs: list[dict], hydra_args: list[str], sweeper) -> list[str]:
    """Optuna minimises unless told otherwise, and a run returns a score where greater is better: the
    direction follows the optimised metric of every run of the sweep. A direction given on the command line
    that disagrees is refused in one line; none given: the one to add to the command line. `configs`: each
    variant's config as validated (_validate_variants); `sweeper`: the sweep's hydra.sweeper node."""
    from petsweep.tasks.metrics import direction

    if "optuna" not in str(sweeper.get("_target_", "")).lower():
        return []
    wanted = {}
    for cfg in configs:
        optimized = cfg.get("optimized_metric", "dev")
        task = cfg["task"]
        metric = optimized.removeprefix("test/") if optimized.startswith("test/") else task["metric"]
        wanted[direction(metric)] = f"optimized_metric={optimized} ({task['name']}: {metric})"
    if len(wanted) > 1:
        raise ConfigError(
            "optimized_metric",
            "; ".join(wanted.values()),
            "runs of one Optuna study must agree on a direction",
        )
    [(needed, why)] = wanted.items()
    given = [o.split("=", 1)[1] for o in hydra_args if o.lstrip("+").startswith("hydra.sweeper.direction=")]
    if not given:
        return [f"hydra.sweeper.direction={needed}"]
    if given[-1].strip().lower().removeprefix("direction.") != needed:
        raise ConfigError(
            "hydra.sweeper.direction",
            given[-1],
            f"{why} is better when {'greater' if needed == 'maximize' else 'smaller'}: "
            f"use {needed}, or leave it out (petsweep sets it)",
        )
    return []


def _sweep_values(override) -> list[str]:
    """The values of a sweep axis to validate: both ends of an interval (what Optuna samples from), else
    every value the axis enumerates, as the sweepers and petsweep plan enumerate them (a choice, a range, the
    group options a glob() matches; launchers.expand.sweep_values)."""
    from hydra.core.override_parser.types import IntervalSweep

    from launchers.expand import sweep_values

    value = override.value()
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    return sweep_values(override)


class GroupLister:
    """What Hydra's glob() needs of a config loader (its group's options), for petsweep plan, which has no
    Hydra app: the options under the search path the command line adds (as run.py -m lists them)."""

    def __init__(self, overrides: list[str]):
        self.overrides = [o for o in overrides if o.startswith("hydra.searchpath")]

    def get_group_options(self, group: str, results_filter=None, **_) -> list[str]:
        return _group_options(group, self.overrides)


def _group_options(group: str, overrides: list[str]) -> list[str]:
    """The options of a config group, with the search path the command line adds."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from petsweep import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        loader = GlobalHydra.instance().config_loader()
        return loader.get_group_options(group, config_name="config", overrides=list(overrides))


def check_launcher(launcher) -> None:
    """A launcher preset's required keys (???) are set, and its group sizes are numbers of runs, before
    anything is launched or submitted; `launcher`: the sweep's hydra.launcher node (the preflight's of a
    sweep of another sweeper, petsweep's sweepers' setup)."""
    from omegaconf import OmegaConf

    from launchers.fusion import check_fuse
    from launchers.slurm import check_runs_per_task

    missing = sorted(OmegaConf.missing_keys(launcher))
    if missing:
        raise ConfigError(
            missing[0],
            "???",
            f"required by the launcher preset; set {missing[0]}=<value> (missing: {', '.join(missing)})",
        )
    if "fuse" in launcher:
        check_fuse(launcher.fuse, launcher.get("warm_workers", True))
    if "runs_per_task" in launcher:
        check_runs_per_task(launcher.runs_per_task)


def count(overrides: list[str]) -> dict:
    """Parameter counts of a composed run, from the backbone YAML's dimensions on the meta device."""
    from petsweep.compose import compose
    from petsweep.model.backbones import build_on_meta
    from petsweep.model.params import attach_method
    from petsweep.model.resolve import resolve_run
    from petsweep.spec.typecheck import plain

    _parsed(overrides)  # refused as every entry refuses it (launchers.expand.parse: ~seed, ~method.r)
    spec = resolve_run(plain(compose(overrides)))
    attached, counts = attach_method(build_on_meta(spec.backbone, spec.task.num_labels or 2), spec)
    return {
        "backbone": spec.backbone.name,
        "method": spec.method.config.name,
        "task": spec.task.name,
        **counts.as_dict(),
        "notes": attached.notes,
    }


def _print_count_table(row: dict) -> None:
    print(f"{row['backbone']} / {row['method']} / {row['task']}")
    for key in ("total_params", "nonembedding_params", "head_params", "pet_params", "trainable_params"):
        print(f"  {key:<20} {row[key]:>16,}")
    print(f"  {'trainable share':<20} {100 * row['trainable_params'] / row['total_params']:>15.4f}%")
    for note in row["notes"]:
        print(f"  note: {note}")


def _hydra_node(overrides: list[str], loader=None):
    """The hydra node (sweeper, launcher) of a sweep's command line, composed once from each axis's first
    value; `loader`: what lists a group's options for glob() axes (a GroupLister of the command line where
    not given)."""
    from launchers.expand import axes_of
    from petsweep.compose import compose

    axes = axes_of(overrides, loader or GroupLister(overrides))
    return compose([values[0] for _, values in axes], with_hydra=True).hydra


def sweep_arguments(overrides: list[str], hydra=None) -> tuple[list[str], list[list[str]]]:
    """Axes and zip groups of a sweep: a preset's hydra.sweeper.params/zip, then the command line; `hydra`:
    the command line's hydra node, when the caller has composed it already."""
    from omegaconf import OmegaConf

    hydra_cfg = (hydra or _hydra_node(overrides)).sweeper
    params = [f"{k}={v}" for k, v in (hydra_cfg.get("params") or {}).items()]
    zips = OmegaConf.to_container(hydra_cfg.zip) if hydra_cfg.get("zip") is not None else []
    task_overrides = [o for o in overrides if not o.startswith("hydra.")]
    return params + task_overrides, zips


def plan_command(overrides: list[str]) -> str:
    from launchers.expand import expand
    from launchers.fusion import check_fuse, plan_notes
    from launchers.local import gpu_count
    from launchers.planning import plan
    from launchers.report import plan_table
    from petsweep.compose import compose

    loader = GroupLister(overrides)  # glob() axes list their group's options (as run.py -m)
    hydra = _hydra_node(overrides, loader)
    launcher = hydra.launcher
    fuse = launcher.get("fuse", 1)
    check_fuse(fuse, launcher.get("warm_workers", True))  # before planning what it would group
    arguments, zips = sweep_arguments(overrides, hydra)
    searchpath = [o for o in overrides if o.startswith("hydra.searchpath")]
    runs = plan(
        expand(arguments, zips, loader), lambda ov: compose(list(ov) + searchpath), finished="from_records"
    )
    if fuse < 2:
        return plan_table(runs)
    return plan_table(runs, plan_notes(runs, fuse, launcher.get("fuse_tokens"), gpu_count))


def _count_cmd(args) -> None:
    row = count(args.overrides)
    print(json.dumps(row)) if args.json else _print_count_table(row)


def _export_cmd(args) -> None:
    from petsweep.run.export import BASE_FILE, export_merged, export_peft

    if args.format == "peft":
        out = export_peft(args.run_dir, args.output)
        print(f"exported {args.run_dir} as a peft adapter to {out} (load its base as {out / BASE_FILE} says)")
    else:
        print(f"exported {args.run_dir}, method merged, to {export_merged(args.run_dir, args.output)}")


def _plan_cmd(args) -> None:
    print(plan_command(args.overrides))


def _status_cmd(args) -> None:
    from launchers.report import status_rows, status_table

    if args.json:
        print(json.dumps(status_rows(args.sweep_dir), indent=2))
    else:
        print(status_table(args.sweep_dir, every=args.all, quick=args.quick))


def _du_cmd(args) -> None:
    from petsweep.records.retention import sweep_usage, sweeps_of, usage_text

    usages = [sweep_usage(sweep) for sweep in sweeps_of(args.sweep_dir)]
    print(json.dumps(usages, indent=2) if args.json else "\n".join(usage_text(u) for u in usages))


def _prune_cmd(args) -> None:
    from petsweep.records.retention import human, prune_sweep, sweeps_of
    from petsweep.run.rehash import identity_check

    for sweep in sweeps_of(args.sweep_dir):
        done = prune_sweep(sweep, args.keep, args.dry_run, check=identity_check)
        verb = "would free" if args.dry_run else "freed"
        keep = f"--keep {args.keep}" if args.keep else "each run's own trainer.keep"
        left = f"; {done['left']} not COMPLETED, left as they are" if done["left"] else ""
        runs = f"{done['pruned']} of {done['runs']} runs"
        print(f"{sweep}: {verb} {human(done['freed'])} from {runs} ({keep}){left}")


def _invalidate_cmd(args) -> None:
    from launchers.invalidate import invalidate

    moved = invalidate(args.sweep_dir, args.where, args.state, args.reason, args.dry_run)
    verb = "would move aside" if args.dry_run else "moved aside"
    print(
        f"{verb} {len(moved)} run(s); the next launch of the sweep runs them again"
        if moved
        else "no run matches"
    )
    for path in moved:
        print(f"  {path.name}")


def _show_cmd(args) -> None:
    from launchers.report import find_run, show_text

    print(show_text(find_run(args.run, Path(args.root))))


def _cancel_cmd(args) -> None:
    from launchers.report import cancel

    stopped = cancel(args.sweep_dir)
    print(f"cancelled {len(stopped)} running run(s)" + "".join(f"\n  {name}" for name in stopped))


def _sync_cmd(args) -> None:
    from launchers.wandb_sync import TIMED_OUT, last_lines, sync

    results = sync(args.sweep_dir, args.parallel, args.dry_run, args.timeout)
    for folder, code, output in results:
        word = "ok" if code == 0 else "timed out" if code == TIMED_OUT else f"failed ({code})"
        print(f"{word:<11} {folder}")
        if code:
            for line in last_lines(output):
                print(f"            wandb: {line}")
    print(
        f"{sum(c == 0 for _, c, _ in results)} of {len(results)} W&B runs "
        + ("would be synced" if args.dry_run else "synced")
    )
    if any(c for _, c, _ in results):
        sys.exit(1)


QUICK_COLLECTED = (
    "(--quick: the runs changed since as the sweeps' indexes say; a run dir was checked only where the index "
    "could not say (no line of this code, a new dir): an edit in place, a run written without the index or a "
    "dir restored with older mtimes is not seen; `petsweep collect` without --quick checks every run's files)"
)
QUICK_COLLECT_FELL_BACK = (
    "(--quick: the index of {fell} of {sweeps} sweeps could not answer alone (PETSWEEP_INDEX=0, or no "
    "manifest of this code yet): their runs' files were checked{others}; first: {first})"
)


def quick_note(table) -> str:
    """What `collect --quick` built a table from: the indexes alone, or, where one could not answer, files."""
    fell, sweeps = table.attrs["quick_fell_back"], table.attrs["quick_sweeps"]
    if not fell:
        return QUICK_COLLECTED
    others = "" if len(fell) == sweeps else "; the others' as their indexes say"
    return QUICK_COLLECT_FELL_BACK.format(fell=len(fell), sweeps=sweeps, others=others, first=fell[0])


def _collect_cmd(args) -> None:
    from analysis import collect, save

    table = collect(args.sweep_dirs, quick=args.quick)
    print(f"{len(table)} runs -> {save(table, args.output)}")
    if args.quick:
        print(quick_note(table))
    if args.history:
        from analysis.load import history

        steps = history(args.sweep_dirs)
        print(f"{len(steps)} evaluations of {steps['run_dir'].nunique()} runs -> {save(steps, args.history)}")


def _plot_cmd(args) -> None:
    from analysis import collect, load, plot

    table = collect([args.table]) if Path(args.table).is_dir() else load(args.table)  # a sweep or runs root
    print(plot(table, args.kind, args.output, where=args.where, x=args.x))


def _thresholds_cmd(args) -> None:
    from analysis import load, save, thresholds
    from analysis.plots import select

    found = thresholds(select(load(args.table), args.where), epsilon=args.epsilon, delta=args.delta)
    if found.empty:
        raise PetsweepError(f"{args.table}: no COMPLETED PET runs to take thresholds from")
    print(found.drop(columns="note").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for note in sorted(set(found["note"]) - {""}):
        groups = (found["note"] == note).sum()
        print(f"note ({groups} of {len(found)} groups): {note}")
    if args.output:
        print(f"-> {save(found, args.output)}")


def _rehash_cmd(args) -> None:
    from petsweep.run.rehash import rehash

    moved = 0
    refused = 0
    for old, outcome, new, why in rehash(args.roots, args.dry_run):
        if outcome == "live":
            print(f"live   {old} (running: left alone)")
        elif outcome == "refused":
            print(f"refused {old} (left where it is: {why})")
        elif outcome == "taken":
            print(f"taken  {old} ({why}: {new})")
        elif outcome != "same":
            print(f"{outcome:<6} {old} -> {new.name}")
        moved += outcome == "moved"
        refused += outcome == "refused"
    print(f"{moved} run dir(s) {'would be ' if args.dry_run else ''}renamed to their current identity")
    if refused:
        print(f"{refused} run dir(s) refused (each line above says why): left where they are")


def _label_map(pairs: list[str]) -> dict[str, str] | None:
    """--label-map TARGET=SOURCE pairs (repeatable or comma-separated) as a dict; None when not given."""
    items = [item for pair in pairs for item in pair.split(",") if item]
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ConfigError(
            "--label-map", bad[0], "give TARGET_WORD=SOURCE_WORD pairs, e.g. entailment=positive"
        )
    return dict(item.split("=", 1) for item in items) or None


def _transfer_cmd(args) -> None:
    from petsweep.run.transfer import transfer_sweeps

    scored = kept = 0
    label_map = _label_map(args.label_map)
    for run_dir, task, record in transfer_sweeps(
        args.sweep_dirs, args.task, tuple(args.override), redo=args.redo, label_map=label_map
    ):
        if record is None:
            kept += 1
            continue
        scored += 1
        print(
            f"{run_dir.name} -> {task}: {record['metric']} {record['score']:.4f} "
            f"(random guess {record['random_guess_score']:.4f})",
            flush=True,
        )
    print(f"{scored} transfer score(s) written, {kept} kept from before")


def _methods_cmd(args) -> None:
    from petsweep.methods import METHODS
    from petsweep.methods.base import field_help
    from petsweep.spec.config import dataclass_defaults

    for name in args.names or METHODS.names():
        cls = METHODS.get(name, key="method")
        families = ", ".join(cls.families)
        print(f"{name}  ({families})")
        defaults = dataclass_defaults(cls.Config)
        for key, text in field_help(cls.Config).items():
            if key != "name":
                print(f"  {key} = {defaults[key]!r}: {text}")
    for name, error in METHODS.broken().items():
        print(f"{name}: failed to import ({error})")


def _version() -> str:
    """The package version, and the git commit when run from a checkout (what provenance records)."""
    from petsweep import __version__
    from petsweep.records import provenance

    commit = provenance.git("rev-parse", "HEAD")
    return __version__ + (f" ({commit[:12]})" if commit else "")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petsweep",
        description="petsweep: parameter counts, sweep plans, "
        "status, cancel, W&B sync, analysis and transfer (runs themselves: python run.py)",
    )
    parser.add_argument("--version", action="version", version=f"petsweep {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("count", help="parameter counts of a config (meta device: no weights, no network)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for run.py")
    p.set_defaults(handler=_count_cmd)
    p = sub.add_parser("export", help="a finished run as a plain model (method merged) or a peft adapter")
    p.add_argument("run_dir", help="a COMPLETED run's directory")
    p.add_argument("-o", "--output", required=True, help="directory for save_pretrained (+ tokenizer)")
    p.add_argument(
        "--format",
        choices=("merged", "peft"),
        default="merged",
        help="merged: a plain transformers model; peft: an adapter dir (lora, ia3, prompt, prefix, ln)",
    )
    p.set_defaults(handler=_export_cmd)
    p = sub.add_parser("methods", help="every PET method with its keys, defaults and what each means")
    p.add_argument("names", nargs="*", help="only these methods")
    p.set_defaults(handler=_methods_cmd)
    p = sub.add_parser(
        "plan", help="every run of a sweep, launching nothing: status, params, resources, cost"
    )
    p.add_argument("overrides", nargs="*", help="sweep overrides, as for run.py -m (+sweep=<preset> works)")
    p.set_defaults(handler=_plan_cmd)
    p = sub.add_parser("collect", help="one tidy table (parquet or csv) of every run in the sweep dirs")
    p.add_argument("sweep_dirs", nargs="+", help="<runs_root>/<sweep_name> ..., or a runs root (every sweep)")
    p.add_argument("-o", "--output", required=True, help="table.parquet or table.csv")
    p.add_argument("--history", help="also a per-step table from metrics.jsonl (history.parquet or .csv)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the runs changed since the last collect as the sweep's index says, a run dir checked only "
        "where it cannot say (10^5..10^6 runs, shared filesystems): an edit in place or a run written "
        "without the index is not seen",
    )
    p.set_defaults(handler=_collect_cmd)
    p = sub.add_parser("plot", help="a figure from a collected table (PNG, PDF or SVG by suffix)")
    p.add_argument("table", help="a table from petsweep collect, or a sweep dir or runs root to collect")
    p.add_argument(
        "--kind",
        required=True,
        help="curves, pareto, gap, generalization, threshold, convergence, memory, apet, transfer, matched",
    )
    p.add_argument("-o", "--output", required=True, help="figure.png, .pdf or .svg")
    p.add_argument("--where", help="pandas query selecting runs, e.g. \"backbone == 'minilm-l6'\"")
    p.add_argument("--x", help="--kind matched's x axis: total (default), nonembedding or depth")
    p.set_defaults(handler=_plot_cmd)
    p = sub.add_parser(
        "thresholds", help="smallest budgets beating random guess / near full FT, with intervals"
    )
    p.add_argument("table", help="a table from petsweep collect")
    p.add_argument("--epsilon", type=float, default=0.01, help="high target: full FT - EPSILON")
    p.add_argument(
        "--delta",
        type=float,
        default=0.0,
        help="low target: random guess + DELTA (default 0: beat random guessing); --delta D --epsilon E are "
        "the threshold search's targets random+D, full-E",
    )
    p.add_argument("--where", help="pandas query selecting runs")
    p.add_argument("-o", "--output", help="also write thresholds.csv or .parquet")
    p.set_defaults(handler=_thresholds_cmd)
    p = sub.add_parser("transfer", help="score every finished run of the sweeps on other tasks (no training)")
    p.add_argument("sweep_dirs", nargs="+", help="<runs_root>/<sweep_name> ...")
    p.add_argument("--task", action="append", required=True, help="a task to score on (repeatable)")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="task.KEY=VALUE",
        help="set a key of the evaluated task, e.g. task.test_size=100 (repeatable)",
    )
    p.add_argument("--redo", action="store_true", help="score again where a transfer score exists")
    p.add_argument(
        "--label-map",
        action="append",
        default=[],
        metavar="TARGET=SOURCE",
        help="an encoder head's class for each class of the evaluated task, where their label words "
        "differ (repeatable or comma-separated)",
    )
    p.set_defaults(handler=_transfer_cmd)
    p = sub.add_parser(
        "rehash",
        help="rename run dirs made under an older identity rule (finished runs are "
        "then found again instead of retrained)",
    )
    p.add_argument("roots", nargs="+", help="runs roots or sweep dirs; every run dir below them is checked")
    p.add_argument("--dry-run", action="store_true", help="say what would be renamed")
    p.set_defaults(handler=_rehash_cmd)
    p = sub.add_parser(
        "invalidate", help="redo runs after a fix: move them aside, so a rerun trains them again"
    )
    p.add_argument("sweep_dir", type=Path, help="<runs_root>/<sweep_name>")
    p.add_argument("--where", action="append", default=[], help="key=value of the run's config (repeatable)")
    p.add_argument(
        "--state", default="all", help="completed, failed, cancelled, interrupted or all (default)"
    )
    p.add_argument(
        "--reason", default="", help="why (kept with the moved runs and in the reruns' provenance)"
    )
    p.add_argument("--dry-run", action="store_true", help="list the runs, move nothing")
    p.set_defaults(handler=_invalidate_cmd)
    p = sub.add_parser("du", help="bytes and inodes of a sweep's runs: checkpoints, weights, records")
    p.add_argument("sweep_dir", type=Path, help="<runs_root>/<sweep_name>, or a runs root (every sweep)")
    p.add_argument("--json", action="store_true", help="one JSON list, a sweep an item")
    p.set_defaults(handler=_du_cmd)
    p = sub.add_parser(
        "prune", help="remove what finished runs need no more: checkpoints (--keep weights) or weights too"
    )
    p.add_argument("sweep_dir", type=Path, help="<runs_root>/<sweep_name>, or a runs root (every sweep)")
    p.add_argument(
        "--keep",
        choices=("weights", "records"),
        help="weights: remove checkpoints; records: remove pet_weights.safetensors too "
        "(default: each run's own trainer.keep)",
    )
    p.add_argument("--dry-run", action="store_true", help="say how many bytes would be freed, remove nothing")
    p.set_defaults(handler=_prune_cmd)
    p = sub.add_parser("show", help="one run: config, status, scores, counts and where its files are")
    p.add_argument("run", help="a run dir, or a prefix of a run's hash (searched under --root)")
    p.add_argument(
        "--root", default="runs", help="the runs root a hash prefix is looked up in (default runs)"
    )
    p.set_defaults(handler=_show_cmd)
    for name, handler, text in (
        ("status", _status_cmd, "status of a sweep's runs, from their files"),
        ("cancel", _cancel_cmd, "stop a sweep's queued and running runs (they record CANCELLED)"),
        ("sync", _sync_cmd, "upload the offline W&B runs of a sweep's finished runs (each once)"),
    ):
        p = sub.add_parser(name, help=text)
        where = "a sweep dir (<runs_root>/<sweep_name>)"
        if name == "status":
            where += ", a runs root (every sweep in it) or one run dir"
        p.add_argument("sweep_dir", type=Path, help=where)
        p.set_defaults(handler=handler)
        if name == "status":
            p.add_argument("--json", action="store_true", help="one JSON list of the runs' rows")
            p.add_argument(
                "--all", action="store_true", help="a line per run (over 1000 runs: only those not done)"
            )
            p.add_argument(
                "--quick",
                action="store_true",
                help="the table from the sweep's index alone, no run dir checked (10^5..10^6 runs, shared "
                "filesystems): an edit in place or a run written without the index is not seen (--json "
                "reads every run)",
            )
        if name == "sync":
            p.add_argument("--parallel", type=int, default=4, help="uploads at a time")
            p.add_argument("--dry-run", action="store_true", help="list what would be uploaded")
            p.add_argument(
                "--timeout", type=float, default=120, help="seconds one upload may take (default 120)"
            )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    with exit_on_user_error():
        args.handler(args)


if __name__ == "__main__":
    main()
