"""What a run is, as data: composition, the schema dataclasses, type checks, run identity, the
registries, the architecture map, one-line errors. Imports no torch (validating a run builds its method:
tests/test_floors.py lists those imports)."""
