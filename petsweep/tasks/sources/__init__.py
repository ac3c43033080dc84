"""Row loaders: `load(spec) -> {source split: [row dict, ...]}`; each module registers one source."""

from petsweep.spec.registry import Registry

SOURCES = Registry("task source", "petsweep.tasks.sources")
