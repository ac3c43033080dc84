"""A module that fails to import costs its own entry, not the registry: the rest load, and asking for the
broken one says why."""

from __future__ import annotations

import sys

import pytest

from petsweep.spec.errors import ConfigError
from petsweep.spec.registry import Registry


def test_a_broken_module_is_recorded_and_the_others_still_load(tmp_path, monkeypatch):
    package = tmp_path / "fake_methods"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from petsweep.spec.registry import Registry\nREG = Registry('method', 'fake_methods')\n"
    )
    (package / "good.py").write_text(
        "from fake_methods import REG\n@REG.register('good')\nclass Good: pass\n"
    )
    (package / "broken.py").write_text("import a_package_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_methods", raising=False)
    from fake_methods import REG

    assert isinstance(REG, Registry) and REG.names() == ["good"]
    assert "ModuleNotFoundError" in REG.broken()["broken"]
    with pytest.raises(ConfigError, match=r"fake_methods\.broken failed to import \(ModuleNotFoundError"):
        REG.get("broken")
    with pytest.raises(ConfigError, match=r"choose one of: good \(broken failed to import\)"):
        REG.get("nope")
