"""Installs are reproducible: one lock of every package at exact versions, and runs record what they used."""

import hashlib
import json
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

from petsweep import lockcheck
from petsweep.app import run
from petsweep.config import compose
from petsweep.identity import run_dir
from petsweep.status import RunDir

REPO = Path(__file__).resolve().parent.parent


def test_every_line_of_the_lock_is_an_exact_pin():
    lines = [ln for ln in lockcheck.LOCK_FILE.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines and all(line.count("==") == 1 and " " not in line for line in lines)
    assert len(lockcheck.read_lock()) == len(lines)  # no package pinned twice


def test_every_dependency_of_the_project_is_locked():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [
        r for extra in project["optional-dependencies"].values() for r in extra
    ]
    pins = lockcheck.read_lock()
    for text in wanted:
        requirement = Requirement(text)
        name = lockcheck.normalize(requirement.name)
        assert name in pins, f"{name} is a dependency but not in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_this_environment_is_the_lock():
    # The tests run on what install.sh installed: exactly the lock, nothing more, nothing less; importing
    # setuptools (as torch and deepspeed do) puts its vendored dist-infos on sys.path: not installed packages.
    import setuptools  # noqa: F401

    assert lockcheck.differences(lockcheck.read_lock(), lockcheck.installed()) == {}


def test_differences_name_each_package_both_ways():
    pins = {"torch": "2.13.0+cpu", "peft": "0.21.2", "gone": "1.0"}
    have = {"torch": "2.15.0", "peft": "0.21.2", "extra": "3.1", "pip": "23.2.1"}
    assert lockcheck.differences(pins, have) == {
        "extra": {"lock": None, "installed": "3.1"},
        "gone": {"lock": "1.0", "installed": None},
        "torch": {"lock": "2.13.0+cpu", "installed": "2.15.0"},
    }
    assert lockcheck.normalize("Hydra_Core") == lockcheck.normalize("hydra.core") == "hydra-core"


def test_a_run_records_the_lock_it_ran_on(tiny):
    cfg = compose(tiny("encoder"))
    run(cfg)
    provenance = json.loads((RunDir(run_dir(cfg)).path / "provenance.json").read_text())
    environment = provenance["environment"]
    assert environment["lock_sha256"] == hashlib.sha256(lockcheck.LOCK_FILE.read_bytes()).hexdigest()
    assert environment["matches_lock"] is True and environment["differs_from_lock"] == {}
    assert provenance["packages"]["transformers"] == lockcheck.read_lock()["transformers"]
