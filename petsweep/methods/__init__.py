"""PET methods: one module + one YAML each; modules register themselves, no list to edit.

The contract is petsweep.methods.base (`PETMethod`, `MethodConfig`, `build_method`). The registry lives here,
in the package it loads (as the task sources' does), so that no module of the package imports it back.
"""

from petsweep.spec.registry import Registry

# Each method's module registers its class here (`@METHODS.register(name)`); the first lookup imports every
# module of this package. Composition reads each method's Config from it (petsweep.compose.nodes).
METHODS: Registry = Registry("method", "petsweep.methods")
