"""A tiny name -> class registry, filled by decorators when a package's modules are imported."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

from petsweep.spec.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps registry keys (equal to YAML file stems) to classes.

    Args:
        kind: what the registry holds, used in error messages ("method", "task source").
        package: dotted package whose modules register themselves on import; imported lazily so
            that adding a module is all it takes to add an entry.
    """

    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._entries: dict[str, T] = {}
        self._broken: dict[str, str] = {}  # module name -> why it did not import
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def _load(self) -> None:
        if self._loaded:
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                try:
                    importlib.import_module(f"{self.package}.{info.name}")
                except Exception as err:  # one broken module must not take every other entry with it
                    self._broken[info.name] = (
                        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    )
        self._loaded = True

    def broken(self) -> dict[str, str]:
        """Modules of the package that failed to import, with the reason (their entries are missing)."""
        self._load()
        return dict(self._broken)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str, key: str | None = None) -> T:
        self._load()
        if name not in self._entries:
            if name in self._broken:
                raise ConfigError(
                    key or self.kind,
                    name,
                    f"its module {self.package}.{name} failed to import ({self._broken[name]})",
                )
            broken = f" ({', '.join(sorted(self._broken))} failed to import)" if self._broken else ""
            raise ConfigError(
                key or self.kind,
                name,
                f"unknown {self.kind}; choose one of: {', '.join(self.names())}{broken}",
            )
        return self._entries[name]
