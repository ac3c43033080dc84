"""Installs are reproducible: one lock of every package at exact versions, and runs record what they used."""

import hashlib
import json
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.records import lockcheck
from petsweep.records.status import RunDir
from petsweep.run.app import run

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


def _fake_dist(root: Path, name: str, version: str, editable_from: str | None = None) -> None:
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if editable_from:
        direct = {"url": f"file://{editable_from}", "dir_info": {"editable": True}}
        (info / "direct_url.json").write_text(json.dumps(direct))


def test_a_locked_package_imported_from_outside_the_venv_is_a_difference(tmp_path):
    """The same version string on PYTHONPATH ahead of the venv (a cluster's `module load`), or installed
    editable from a source tree, is other code: lockcheck fails and names where it comes from (it passed)."""
    import subprocess
    import sys

    pins = lockcheck.read_lock()
    _fake_dist(tmp_path / "shadow", "colorlog", pins["colorlog"])
    _fake_dist(tmp_path / "shadow", "six", pins["six"], editable_from=str(tmp_path / "six-src"))
    check = subprocess.run(
        [sys.executable, "-m", "petsweep.records.lockcheck"],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "shadow")},
        capture_output=True,
        text=True,
    )
    assert check.returncode == 1
    lines = check.stderr.splitlines()
    assert len(lines) == 2, lines
    assert f"colorlog: requirements.lock has {pins['colorlog']}" in lines[0]
    assert f"imported from {tmp_path / 'shadow'}" in lines[0]
    assert f"imported from file://{tmp_path / 'six-src'}" in lines[1]


def test_a_run_in_an_environment_that_differs_from_the_lock_says_so_in_its_log(tiny, tmp_path, monkeypatch):
    lock = tmp_path / "requirements.lock"
    pins = lockcheck.read_lock()
    lock.write_text("".join(f"{n}=={'0.0.1' if n == 'six' else v}\n" for n, v in pins.items()))
    monkeypatch.setattr(lockcheck, "LOCK_FILE", lock)
    cfg = compose(tiny("encoder"))
    run(cfg)
    path = RunDir(run_dir(cfg)).path
    assert json.loads((path / "provenance.json").read_text())["environment"]["differs_from_lock"] == {
        "six": {"lock": "0.0.1", "installed": pins["six"]}
    }
    assert "environment differs from requirements.lock: six" in (path / "train.log").read_text()


def test_a_locked_build_that_pypi_lacks_has_its_index_in_the_install():
    """torch==2.13.0+cpu is not on PyPI (a machine's own wheel served it): install.sh and update-lock.sh fall
    back to PyTorch's CPU index for it."""
    pins = lockcheck.read_lock()
    assert pins["torch"].endswith("+cpu")
    root = lockcheck.LOCK_FILE.parent
    for script in ("install.sh", "update-lock.sh"):
        text = (root / script).read_text()
        assert "https://download.pytorch.org/whl/cpu" in text and "torch_pin" in text, script
