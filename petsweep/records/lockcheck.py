"""The installed packages against requirements.lock: what a run's numbers were computed with.

`python -m petsweep.records.lockcheck` prints one line per package that differs from the lock (install.sh runs
it and fails on any); `environment()` is what each run's provenance records: the lock's sha256 and every
difference, so a record says exactly which versions produced it without copying 150 pins into every run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import sys
import sysconfig
from pathlib import Path

from petsweep import CONF_DIR

LOCK_FILE = CONF_DIR.parent / "requirements.lock"
# Installed by the venv itself, or petsweep (editable): never pinned in the lock.
UNPINNED = {"pip", "petsweep"}


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (Hydra-Core, hydra_core and hydra.core are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path | None = None) -> dict[str, str]:
    """{normalized name: exact version} from `name==version` lines (comments and blanks skipped)."""
    pins = {}
    for line in (path or LOCK_FILE).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalize(name)] = version.strip()
    return pins


def installed() -> dict[str, str]:
    """{normalized name: version} of the venv's own site-packages (not of whatever else is on sys.path:
    importing setuptools puts its vendored copies there)."""
    found = {}
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    for dist in importlib.metadata.distributions(path=paths):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(normalize(name), dist.version)
    return found


def imported_elsewhere(pins: dict[str, str]) -> dict[str, dict]:
    """Locked packages this process would import from outside the venv's site-packages (a PYTHONPATH entry
    or a `module load` ahead of it), or from an editable source tree: the same version string, other code.
    {package: {"lock": version, "installed": version, "from": where}}."""
    venv = {Path(sysconfig.get_paths()[key]).resolve() for key in ("purelib", "platlib")}
    out = {}
    for name in pins:
        try:
            dist = importlib.metadata.distribution(name)  # the first on sys.path: what `import` gets
        except importlib.metadata.PackageNotFoundError:
            continue
        where = Path(dist.locate_file("")).resolve()
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        if (direct.get("dir_info") or {}).get("editable"):
            where = direct.get("url", str(where))
        elif where in venv:
            continue
        out[name] = {"lock": pins[name], "installed": dist.version, "from": str(where)}
    return out


def differences(pins: dict[str, str], have: dict[str, str]) -> dict[str, dict]:
    """{package: {"lock": version or None, "installed": version or None}} for every mismatch, and every
    locked package imported from elsewhere than the venv (with "from")."""
    out = {}
    for name in sorted(set(pins) | set(have) - UNPINNED):
        if pins.get(name) != have.get(name):
            out[name] = {"lock": pins.get(name), "installed": have.get(name)}
    for name, entry in imported_elsewhere(pins).items():
        out.setdefault(name, entry)["from"] = entry["from"]
    return dict(sorted(out.items()))


def environment() -> dict:
    """The lock this process was installed from and how the installed packages differ from it."""
    if not LOCK_FILE.exists():
        return {"lock": None, "lock_sha256": None, "matches_lock": None, "differs_from_lock": None}
    diff = differences(read_lock(), installed())
    return {
        "lock": LOCK_FILE.name,
        "lock_sha256": hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest(),
        "matches_lock": not diff,
        "differs_from_lock": diff,
    }


def main() -> int:
    diff = differences(read_lock(), installed())
    for name, versions in diff.items():
        print(
            f"lockcheck: {name}: requirements.lock has {versions['lock'] or 'nothing'}, "
            f"installed {versions['installed'] or 'nothing'}"
            + (f" (imported from {versions['from']})" if "from" in versions else ""),
            file=sys.stderr,
        )
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
