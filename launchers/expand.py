"""Expanding sweep overrides into runs: the Cartesian product of axes, with zipped (paired) axes.

method=lora,full seed=1,2                  -> 4 runs
method=lora,full trainer.max_steps=100,300 with zip [[method, trainer.max_steps]]
                                           -> 2 runs: (lora, 100), (full, 300)
"""

from __future__ import annotations

import functools
import itertools

from petsweep.spec.errors import ConfigError


@functools.lru_cache(maxsize=8)
def _parser(loader=None):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create(config_loader=loader)


@functools.lru_cache(maxsize=100_000)
def _parse_one(text: str, loader=None):
    # Hydra's grammar parser costs ~1 ms per override; a sweep repeats the same few strings many times
    return _parser(loader).parse_overrides([text])[0]


def parse(arguments: list[str], loader=None):
    """Hydra's parse of each override string (cached). `loader`: what lists a group's options for glob()
    axes (Hydra's config loader, which a sweeper is given, or cli.GroupLister); without one, glob() axes
    cannot be expanded."""
    try:
        parsed = [_parse_one(a, loader) for a in arguments]
    except Exception as err:
        raise ConfigError(
            "overrides", " ".join(arguments), f"cannot parse: {str(err).splitlines()[0]}"
        ) from None
    for override in parsed:
        _refuse_deleting_a_key(override)
    return parsed


def _refuse_deleting_a_key(override) -> None:
    """`~key` of a config key is refused: the schema gives every key of a run back with its default (or the
    run needs it: `~seed` was a KeyError), and the run's id hashes the config as given, so the same run
    trained under another id (R23 review F10, F11). `~group` (e.g. ~logger) deletes a config group's choice
    from the defaults list: Hydra's, left to it; so are Hydra's own settings (hydra.*, hydra/<group>)."""
    if not override.is_delete():
        return
    key = override.key_or_group
    if key.split("/")[0].split(".")[0] == "hydra" or key in _deletable_groups():
        return  # a group of the run's (~method/shapes) is refused as a key is: review of 2026-12-06, G1b
    raise ConfigError(
        key,
        override.input_line,
        f"a run's config keeps every key (deleted, the run lacks it or the schema gives its default back "
        f"under another run id); set it instead ({key}=<value>; python run.py --cfg job shows each value)",
    )


@functools.lru_cache(maxsize=1)
def _deletable_groups() -> frozenset[str]:
    """The config groups `~group` may delete: those outside a run's identity (logger, launcher). A group in it
    (`~deepspeed`) is filled back by the schema while its id hashes the config as given: the same run
    under another id (review of 2026-12-06, G1)."""
    from petsweep import CONF_DIR
    from petsweep.spec.identity import NON_SEMANTIC_KEYS

    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    return frozenset(groups & set(NON_SEMANTIC_KEYS))


def sweep_values(override) -> list[str]:
    """The values of a discrete sweep axis (a comma list, range() or glob()) as text, in Hydra's order: the
    one place a sweep's axes are enumerated (run.py -m, petsweep plan, the sweepers), so an axis Hydra cannot
    enumerate or that gives no value is one line naming it, not a traceback or an empty sweep (R23 F1, F8).
    A glob() axis needs the override parsed with a loader (parse's `loader`)."""
    from hydra.core.override_parser.types import Glob

    key, given = override.get_key_element(), override.get_value_string()
    try:
        values = list(override.sweep_string_iterator())
    except Exception as err:  # range(0,2,0): Python's range() (Hydra's, for floats) refuses a zero step
        raise ConfigError(key, given, f"{str(err).splitlines()[0]}; {_RANGE_FORM}") from None
    if values:
        return values
    if isinstance(override.value(), Glob):
        options = override.config_loader.get_group_options(override.key_or_group)
        raise ConfigError(
            key, given, f"glob() matches no option of the group; its options: {', '.join(options)}"
        )
    raise ConfigError(key, given, f"the range gives no value; {_RANGE_FORM}")


_RANGE_FORM = "range(start,stop[,step]) sweeps start, start+step, ... short of stop (step not 0, default 1)"


def axes_of(arguments: list[str], loader=None) -> list[tuple[str, list[str]]]:
    """(key, ["key=value", ...]) per override, in command-line order; fixed overrides have one value.

    A later override of the same key replaces an earlier one (presets first, command line last). `loader`:
    as for parse (glob() axes).
    """
    axes: dict[str, list[str]] = {}
    for override in parse(arguments, loader):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise ConfigError(
                    key, override.input_line, "use a comma list, range(...) or glob(...) as a sweep axis"
                )
            axes[key] = [f"{key}={v}" for v in sweep_values(override)]
        else:
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
        axes[key] = axes.pop(key)  # keep the latest position
    return list(axes.items())


def expand(arguments: list[str], zips: list[list[str]] | None = None, loader=None) -> list[list[str]]:
    """Every run's override list: the product over axes, where each zip group is one paired axis;
    `loader`: as for parse (glob() axes).

    Raises:
        ConfigError: a zip key that is not an axis, or zip axes of different lengths.
    """
    axes = dict(axes_of(arguments, loader))
    grouped: list[list[list[str]]] = []
    zipped_keys: set[str] = set()
    for group in zips or []:
        group = [_bare(k) for k in group]
        keys = [_match(k, axes) for k in group]
        lengths = {k: len(axes[k]) for k in keys}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise ConfigError("hydra.sweeper.zip", group, f"zipped axes need equal lengths; {detail} values")
        grouped.append([list(values) for values in zip(*(axes[k] for k in keys))])
        zipped_keys.update(keys)
    for key, values in axes.items():
        if key not in zipped_keys:
            grouped.append([[v] for v in values])
    runs = [[o for part in combo for o in part] for combo in itertools.product(*grouped)]
    keys = {_bare(k) for k in axes}  # every run has one override per axis: the same keys
    if "apet.scale" not in keys or "method" in keys:
        return runs  # apet_method changes none of them (#25: 10 us a run, a tenth of a resume's)
    return [apet_method(run) for run in runs]


def apet_method(overrides: list[str]) -> list[str]:
    """A run given an APET budget (apet.scale=...) and no method is an APET run: `-m apet.scale=lora,4096`
    sweeps budgets without naming method=apet (run.py's pre-flight applies it to a sweep's runs too)."""
    keys = {_bare(o.split("=", 1)[0]): o.split("=", 1)[1] for o in overrides if "=" in o}
    if keys.get("apet.scale", "null") not in ("null", "") and "method" not in keys:
        return [*overrides, "method=apet"]
    return overrides


def _bare(key: str) -> str:
    return str(key).lstrip("+~")


def _match(key: str, axes: dict[str, list[str]]) -> str:
    for candidate in axes:
        if _bare(candidate) == key:
            return candidate
    raise ConfigError("hydra.sweeper.zip", key, f"is not a sweep axis; axes: {', '.join(axes) or '(none)'}")
