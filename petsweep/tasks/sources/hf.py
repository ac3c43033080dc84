"""Datasets through `datasets.load_dataset` (hub id with network or HF cache, or a local directory)."""

from __future__ import annotations

from petsweep.spec.errors import PetsweepError
from petsweep.tasks.sources import SOURCES


@SOURCES.register("hf")
def load(spec) -> dict[str, list[dict]]:
    import datasets

    try:
        loaded = datasets.load_dataset(spec.hf_path, spec.hf_name)
    except (ConnectionError, OSError, FileNotFoundError, ValueError) as err:
        name = f"{spec.hf_path}" + (f", {spec.hf_name}" if spec.hf_name else "")
        raise PetsweepError(
            f"task={spec.name}: dataset ({name}) is not available offline (no hub, not in the HF cache); "
            f"set task.hf_path=/local/dir with its files, or HF_HOME to a cache that holds it "
            f"({type(err).__name__}: {str(err).splitlines()[0][:100]})"
        ) from None
    wanted = set(spec.splits.values())
    return {name: [dict(r) for r in loaded[name]] for name in loaded if name in wanted}
