"""The library's floors (#23): imports go one way only, and commands that read records never load torch."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGES = ("petsweep", "launchers", "analysis", "hydra_plugins")
OLD_RECORD = Path(__file__).parent / "fixtures" / "old_records" / "1a02139" / "lora-encoder"


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for file in (REPO / package).rglob("*.py"):
            name = ".".join(file.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            found[name] = file
    return found


def _imports(name: str, file: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in its file (inside functions too)."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    wanted = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            wanted.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            wanted.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
    found = set()
    for target in wanted:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_of_the_library_imports_itself_back():
    """There was a circle of 11 modules (cli <-> launchers <-> app/group/spawn/worker) and three smaller ones;
    function-local imports count: they run all the same."""
    modules = _modules()
    graph = {name: _imports(name, file, modules) for name, file in modules.items()}
    assert graph["petsweep.cli"] & {"launchers.report", "launchers.local"}  # the graph sees lazy imports
    assert _cycles(graph) == []


def test_commands_that_read_records_do_not_import_torch(tmp_path):
    """`petsweep status`, `show`, `collect` and `plot` read files: status took about 6 s, most of it torch
    (through the planner's config) and scipy (through the threshold search's state)."""
    run = tmp_path / "study" / "tiny-bert-lora-bbc_news-s0-000000000000"
    run.mkdir(parents=True)
    for name in ("config.yaml", "result.json"):
        shutil.copy(OLD_RECORD / name, run / name)
    (run / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))
    table, figure = tmp_path / "t.parquet", tmp_path / "c.png"
    commands = [
        ["status", str(run.parent)],
        ["show", str(run)],
        ["collect", str(run.parent), "-o", str(table)],
        ["plot", str(table), "--kind", "curves", "-o", str(figure)],
    ]
    script = (
        "import sys\nfrom petsweep.cli import main\n"
        f"for command in {commands!r}:\n    main(command)\n"
        "heavy = sorted({'torch', 'transformers', 'scipy'} & set(sys.modules))\n"
        "print('heavy:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "heavy: []" in out.stdout, out.stdout[-2000:]
    assert figure.stat().st_size > 0 and table.exists()


def test_the_library_uses_no_private_hydra_api():
    """cli.py parsed run.py's command line with hydra._internal's parser: any Hydra release may change it."""
    files = [file for file in _modules().values()] + [REPO / "run.py"]
    private = [str(f.relative_to(REPO)) for f in files if "hydra._internal" in f.read_text()]
    assert private == []


def test_run_py_flags_parse_as_hydras_own():
    """petsweep's parser of run.py's command line (cli.run_args_parser) knows every flag of Hydra's and which
    of them take a value: else a flag's value would be taken for an override, or an override for a value."""
    from hydra._internal.utils import get_args_parser  # only here: what the public parser must agree with

    from petsweep.cli import run_args_parser

    def flags(parser) -> list:  # in order: the usage line reads as Hydra's
        return [
            (a.option_strings or a.dest, a.nargs, a.const if a.nargs == "?" else None, list(a.choices or []))
            for a in parser._actions
        ]

    assert flags(run_args_parser()) == flags(get_args_parser())


def test_importing_the_config_schema_imports_no_torch():
    """`import petsweep.config` took seconds (#23): the schema dataclasses it needs lived in modules that
    import torch (ApetSpec in petsweep.apet, BackboneSpec in petsweep.backbones), and it registered every
    method's base node on import (the methods' modules import torch). Composing loads the methods."""
    heavy = "{'torch', 'transformers', 'peft'} & set(sys.modules)"
    script = f"import sys\nimport petsweep.config\nprint('heavy:', sorted({heavy}))"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "heavy: []" in out.stdout, out.stdout
