"""Tasks: a spec per YAML, row loaders that register themselves, and the preparation that casts rows
into model inputs (templates, verbalizers, splits, k-shot) and scores predictions."""

from petsweep.spec.task import TaskSpec
from petsweep.tasks.data import TaskData, prepare_task
from petsweep.tasks.sources import SOURCES

__all__ = ["SOURCES", "TaskData", "TaskSpec", "prepare_task"]
