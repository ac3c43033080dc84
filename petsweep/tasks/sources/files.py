"""Local JSONL / CSV / TSV files (the CrossFit layout of the APET code: `inputs` and `outputs` fields)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from petsweep.spec.errors import DataError
from petsweep.tasks.sources import SOURCES


def _read_jsonl(path: Path, columns: list[str]) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{path}:{number}: malformed JSON line ({err.msg}); expected one object per line"
                ) from None
            _check_columns(row, columns, path, number)
            rows.append(row)
    return rows


def _read_delimited(path: Path, columns: list[str]) -> list[dict]:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    with path.open(encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh, delimiter=delimiter))
    has_header = bool(lines) and set(columns) <= set(lines[0])
    header = lines[0] if has_header else columns  # CrossFit TSVs have no header: input<TAB>output
    rows = []
    for number, values in enumerate(lines[1:] if has_header else lines, start=2 if has_header else 1):
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise DataError(
                f"{path}:{number}: {len(values)} columns, expected {len(header)} ({', '.join(header)})"
            )
        rows.append(dict(zip(header, values)))
    return rows


def _check_columns(row, columns: list[str], path: Path, number: int) -> None:
    if not isinstance(row, dict):
        raise DataError(
            f"{path}:{number}: expected a JSON object with keys {columns}, got {type(row).__name__}"
        )
    missing = [c for c in columns if c not in row]
    if missing:
        raise DataError(f"{path}:{number}: missing field(s) {missing}; the task reads {columns}")


@SOURCES.register("files")
def load(spec) -> dict[str, list[dict]]:
    columns = [*spec.fields, spec.label_field]
    out = {}
    for split, name in spec.files.items():
        if not name:
            raise DataError(
                f"task.files.{split} is not set; give a .jsonl, .csv or .tsv path (task.files.{split}=...)"
            )
        path = Path(name).expanduser()
        if not path.is_file():
            raise DataError(f"task.files.{split}={name!r}: no such file")
        reader = _read_jsonl if path.suffix in (".jsonl", ".json") else _read_delimited
        if path.suffix not in (".jsonl", ".json", ".csv", ".tsv"):
            raise DataError(f"task.files.{split}={name!r}: unknown file type; use .jsonl, .csv or .tsv")
        out[split] = reader(path, columns)
    return out
