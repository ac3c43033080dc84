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
        return [_parse_one(a, loader) for a in arguments]
    except Exception as err:
        raise ConfigError(
            "overrides", " ".join(arguments), f"cannot parse: {str(err).splitlines()[0]}"
        ) from None


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
            axes[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
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
