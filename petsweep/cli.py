"""The `petsweep` command and the checks `run.py` makes before Hydra starts.

    petsweep count [--json] backbone=bert-base method=lora    # parameter counts, no weights, no network
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

from petsweep.errors import PetsweepError

# run.py flags after which the config is only printed or explained, not run
_INSPECT_FLAGS = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--resolve")


@contextlib.contextmanager
def exit_on_user_error():
    """Turn a PetsweepError into one line on stderr and exit status 2 (no traceback)."""
    try:
        yield
    except PetsweepError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _overrides(argv: list[str]) -> list[str]:
    # Hydra settings are for Hydra, except the search path, which can add config options (your own backbones)
    return [a for a in argv if "=" in a and not a.startswith("-")
            and (not a.startswith(("hydra.", "hydra/")) or a.startswith("hydra.searchpath"))]


def preflight(argv: list[str]) -> None:
    """Compose every config the command line names (each value of a sweep axis) and validate it.

    Raises:
        ConfigError: on the first unknown option, unknown key or invalid value, before anything runs.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from petsweep.config import compose, resolve_run

    try:
        parsed = OverridesParser.create().parse_overrides(_overrides(argv))
    except Exception as err:
        raise PetsweepError(f"cannot parse overrides: {str(err).splitlines()[0]}") from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    axes = [(o.get_key_element(), list(o.sweep_string_iterator())) for o in parsed if o.is_sweep_override()]
    variants = [fixed + [f"{k}={values[0]}" for k, values in axes]]
    for i, (key, values) in enumerate(axes):
        for value in values[1:]:
            variants.append(fixed + [f"{k}={(value if j == i else vals[0])}" for j, (k, vals) in enumerate(axes)])
    inspect_only = any(a in _INSPECT_FLAGS for a in argv)
    for overrides in variants:
        cfg = compose(overrides)
        if not inspect_only:
            resolve_run(cfg)


def count(overrides: list[str]) -> dict:
    """Parameter counts of a composed run, from the backbone YAML's dimensions on the meta device."""
    from petsweep.backbones import build_on_meta, head_parameter_names
    from petsweep.config import compose, resolve_run
    from petsweep.params import count_backbone, count_trainable

    spec = resolve_run(compose(overrides))
    model = build_on_meta(spec.backbone, spec.task.num_labels or 2)
    head_names = head_parameter_names(model, spec.backbone)
    counts = count_backbone(model, head_names)
    model = spec.method.apply(model, spec.backbone)
    for name, param in model.named_parameters():
        if name in head_names:
            param.requires_grad_(spec.method.config.train_head)
    counts = count_trainable(model, head_names, counts)
    return {"backbone": spec.backbone.name, "method": spec.method.config.name, "task": spec.task.name,
            **counts.as_dict()}


def _print_count_table(row: dict) -> None:
    print(f"{row['backbone']} / {row['method']} / {row['task']}")
    for key in ("total_params", "nonembedding_params", "head_params", "pet_params", "trainable_params"):
        print(f"  {key:<20} {row[key]:>16,}")
    print(f"  {'trainable share':<20} {100 * row['trainable_params'] / row['total_params']:>15.4f}%")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="petsweep", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_count = sub.add_parser("count", help="parameter counts of a config (meta device: no weights, no network)")
    p_count.add_argument("--json", action="store_true", help="print one JSON object")
    p_count.add_argument("overrides", nargs="*", help="Hydra overrides, as for run.py")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        if args.command == "count":
            row = count(args.overrides)
            print(json.dumps(row)) if args.json else _print_count_table(row)


if __name__ == "__main__":
    main()
