"""PET methods: one module + one YAML each; modules register themselves, no list to edit."""

from petsweep.methods.base import METHODS, MethodConfig, PETMethod, build_method

__all__ = ["METHODS", "MethodConfig", "PETMethod", "build_method"]
