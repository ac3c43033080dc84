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
HEAVY = ("torch", "transformers", "peft", "scipy")


def _heavy_after(code: str, heavy: tuple[str, ...] = HEAVY) -> tuple[subprocess.CompletedProcess, str]:
    """Run `code` in a fresh Python at the repo's root; its output, and the `heavy` modules it had loaded at
    the end (as text: "[]" where none), printed last so the code's own output comes first."""
    script = f"import sys\n{code}\nprint('heavy:', sorted({set(heavy)!r} & set(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    loaded = out.stdout.rsplit("heavy: ", 1)[-1].strip() if "heavy: " in out.stdout else "?"
    return out, loaded


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
        elif isinstance(node, ast.Call) and _call_name(node.func) in BY_NAME:  # a module loaded by its name
            wanted.update(a.value for a in node.args if isinstance(a, ast.Constant) and a.value in modules)
    found = set()
    for target in wanted:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


# Calls that load a module by a name given as a string: importlib's, and a registry that imports its package
# on first use (spec/registry.py); they are imports all the same (#23 review, F5). A registry lives in the
# package it loads (petsweep.methods.METHODS, petsweep.tasks.sources.SOURCES): a load of itself, no edge.
BY_NAME = {"import_module", "__import__", "Registry"}


def _call_name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


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
    function-local imports count: they run all the same, and so do loads by name. The last cycle ran
    through spec/registry.py, which held the methods' registry and loaded petsweep.methods by name, while
    the methods imported it to register (composition read it from spec/); no exception is left."""
    modules = _modules()
    graph = {name: _imports(name, file, modules) for name, file in modules.items()}
    assert graph["petsweep.cli"] & {"launchers.report", "launchers.local"}  # the graph sees lazy imports
    assert _cycles(graph) == []


def test_loads_by_name_are_imports(tmp_path):
    """A module loaded by a name in a string (importlib, __import__, a Registry's package) is an edge of the
    graph, as an import statement is: the methods' registry in spec/ was an upward edge and a cycle so."""
    modules = _modules()
    file = tmp_path / "loads.py"
    file.write_text(
        "import importlib\nfrom petsweep.spec.registry import Registry\n"
        "METHODS = Registry('method', 'petsweep.methods')\n"
        "def load():\n"
        "    return importlib.import_module('petsweep.model.resolve'), __import__('launchers.local')\n"
    )
    found = _imports("petsweep.spec.loads", file, modules)
    assert found == {
        "petsweep.spec.registry",
        "petsweep.methods",
        "petsweep.model.resolve",
        "launchers.local",
    }


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
    code = f"from petsweep.cli import main\nfor command in {commands!r}:\n    main(command)"
    out, heavy = _heavy_after(code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert heavy == "[]", out.stdout[-2000:]
    assert figure.stat().st_size > 0 and table.exists()


def _budget_record(run: Path) -> None:
    """A finished run made with `budget=` (a knob method: config.yaml keeps the request beside its r)."""
    run.mkdir(parents=True)
    config = (OLD_RECORD / "config.yaml").read_text()
    (run / "config.yaml").write_text(config + "budget: 8000\n")
    result = json.loads((OLD_RECORD / "result.json").read_text())
    result["config"]["budget"] = 8000
    (run / "result.json").write_text(json.dumps(result))
    (run / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))


def test_status_and_show_of_a_budget_run_import_no_torch(tmp_path):
    """R23 F1: the stale-record check re-derived a budget= record's id through the budget solver (meta
    device: torch, transformers, peft, scipy) whenever the index could not answer: no index, a touched
    status.json, one run dir. The commands that only read records leave such a record's identity unchecked
    and say so; plan, run and rehash check it in full."""
    run = tmp_path / "study" / "tiny-bert-lora-bbc_news-s0-000000000000"
    _budget_record(run)
    commands = [
        ["status", str(run.parent)],  # no index
        ["status", str(run.parent)],  # the index the first wrote (an unchecked entry: read again)
        "touch",
        ["status", str(run.parent)],  # status.json changed behind the index
        ["status", str(run)],
        ["show", str(run)],
    ]
    code = (
        "import os\nfrom petsweep.cli import main\n"
        f"for command in {commands!r}:\n"
        f"    if command == 'touch':\n        os.utime({str(run / 'status.json')!r})\n    else:\n"
        "        main(command)"
    )
    # methods.base: the contract every method's module loads (petsweep.methods is only their registry)
    out, heavy = _heavy_after(code, (*HEAVY, "petsweep.methods.base"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert heavy == "[]", out.stdout[-2000:]
    assert "COMPLETED" in out.stdout and "identity unchecked (budget=" in out.stdout, out.stdout[-3000:]


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
    """`import petsweep.spec.config` took seconds (#23): the schema dataclasses it needs lived in modules that
    import torch (ApetSpec in petsweep.methods.apet.positions, BackboneSpec in petsweep.model.backbones), and
    it registered every method's base node on import (the methods' modules import torch). Composing loads the
    methods."""
    out, heavy = _heavy_after("import petsweep.spec.config")
    assert out.returncode == 0, out.stderr[-3000:]
    assert heavy == "[]", out.stdout


def test_composing_a_config_imports_no_torch():
    """R23 F3/F4: composing registers every method's Config (petsweep.compose.nodes.register_base_nodes loads
    petsweep.methods), and 8 of the methods' modules imported torch, peft or transformers at the top, so
    `petsweep plan` of a finished sweep and tab completion of any key loaded torch (seconds). The methods'
    modules now load torch in the functions that use it; their nn.Modules live in methods/layers/."""
    code = (
        "import petsweep.methods\n"
        "from petsweep.compose import compose\n"
        "from petsweep.methods import METHODS\n"
        "cfg = compose([])\n"
        "print('methods:', len(METHODS.names()), 'broken:', METHODS.broken(), 'method:', cfg.method.name)\n"
        "above = ('petsweep.model', 'petsweep.train', 'petsweep.run', 'petsweep.cli', 'launchers.')\n"
        "above += ('analysis',)\n"
        "print('above:', sorted(m for m in sys.modules if m.startswith(above)))"
    )
    out, heavy = _heavy_after(code)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "broken: {} method: lora" in out.stdout, out.stdout
    assert heavy == "[]", out.stdout
    # R23 (session 34) F3: Hydra imports petsweep's plugins whenever it composes, and the launcher plugin
    # imported launchers.slurm (the planner, model.resolve, run.rehash) for its settings' dataclass: a load
    # upwards no import statement of compose/ shows. The plugins are thin: composing loads only their light
    # settings module (launchers/slurm_settings.py).
    assert "above: ['launchers.slurm_settings']" in out.stdout, out.stdout


def test_plan_and_resume_of_a_finished_sweep_import_no_torch(tiny):
    """R23 F3: `petsweep plan` of a sweep whose runs are all COMPLETED loaded torch, transformers, peft and
    scipy (about 5 s): it validated each config on the meta device and counted the `trainable` column there,
    and the estimate asked torch.cuda where `trainer.device=auto` trains. A finished run's id is hashed
    without torch (no `budget=`), and its record holds its counts and device."""
    from petsweep.compose import compose
    from petsweep.run.app import run

    base = tiny("encoder", "trainer.max_steps=2")
    results = [run(compose([*base, f"seed={seed}"])) for seed in (1, 2)]
    # R23 (session 34) F11: with fusion, the plan's notes asked torch.cuda for the GPUs to group runs on,
    # although no run was left to group
    for launcher in ([], ["hydra.launcher.fuse=2"]):
        plan = f"from petsweep.cli import main\nmain(['plan', *{[*base, 'seed=1,2', *launcher]!r}])"
        out, heavy = _heavy_after(plan)
        assert out.returncode == 0, out.stderr[-3000:]
        assert heavy == "[]", out.stdout
        rows = [line.split() for line in out.stdout.splitlines() if line.startswith("COMPLETED")]
        assert sorted(row[1][-12:] for row in rows) == sorted(r["run_id"][:12] for r in results), out.stdout
        assert {row[2] for row in rows} == {f"{r['trainable_params']:,}" for r in results}, out.stdout
        assert "total: 2 runs, 0 to run" in out.stdout, out.stdout
    # #25: a resume of the finished sweep (run.py -m) validated every config on the meta device too (torch,
    # transformers and a model built per distinct config, ~10 s of a 10^4-run resume); it launches nothing
    resume = (
        "import runpy\n"
        f"sys.argv = ['run.py', '-m', *{[*base, 'seed=1,2']!r}]\n"
        "try:\n    runpy.run_path('run.py', run_name='__main__')\nexcept SystemExit as stop:\n"
        "    assert not stop.code, stop.code"
    )
    out, heavy = _heavy_after(resume)
    assert out.returncode == 0, out.stderr[-3000:]
    assert heavy == "[]", out.stdout
    assert "2 runs (2 done); launching 0" in out.stdout + out.stderr, out.stdout + out.stderr
    # a second resume changes nothing on disk: sweep.json is not rewritten, so the sweep dir's mtime (what
    # `petsweep status` lists the dir again by) stays where it was
    runs_root = next(o.split("=", 1)[1] for o in base if o.startswith("paths.runs_root="))
    sweep = next(Path(runs_root).glob("*/sweep.json")).parent
    listed = sweep.stat().st_mtime_ns
    again, heavy = _heavy_after(resume)
    assert again.returncode == 0 and heavy == "[]", again.stderr[-3000:]
    assert sweep.stat().st_mtime_ns == listed
    # review of 9b9021c: a setting outside the id is still validated in a finished run (without torch)
    bogus = [sys.executable, "run.py", "-m", *base, "seed=1,2", "optimized_metric=bogus"]
    out = subprocess.run(bogus, cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and "optimized_metric='bogus'" in out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "launching" not in out.stdout + out.stderr, out.stderr


# The floors, lowest first (docs/architecture.md): a module may import its own floor and the floors below it,
# function-local imports included. `petsweep` itself (CONF_DIR, __version__) is on the lowest floor.
FLOORS = (
    "spec",
    "records",
    "tasks",
    "methods",
    "compose",
    "model",
    "train",
    "run",
    "analysis",
    "launchers",
    "commands",
)
ONLY = {"analysis": {"spec", "records", "analysis"}}  # analysis reads records: never the floors that train
OUTSIDE = {"analysis": "analysis", "launchers": "launchers", "hydra_plugins": "commands"}
# The floor of each library module that is not (yet) in its floor's subpackage petsweep/<floor>/ (#23 moves
# them there; a new module goes straight into its floor's folder).
FLAT_FLOORS = {
    "petsweep": "spec",
    "petsweep.cli": "commands",
}
# Imports that go up (docs/architecture.md), known debt of #23; the set may only shrink, and is empty now:
# resolving a run moved from spec/ to petsweep/model/resolve.py, composition (which reads the methods' Config
# classes) to petsweep/compose/ above the methods, and the methods' registry into petsweep/methods/.
UPWARD: set[tuple[str, str]] = set()


def _floor(name: str) -> str | None:
    if name in FLAT_FLOORS:
        return FLAT_FLOORS[name]
    top, _, rest = name.partition(".")
    if top != "petsweep":
        return OUTSIDE.get(top)
    floor = rest.partition(".")[0]
    return floor if floor in FLOORS else None


def test_imports_go_down_the_floors_only():
    """Every module's imports (function-local ones too) go to its own floor or one below it (#23); the known
    upward imports are listed in UPWARD, which may only shrink: an entry that no longer happens must go."""
    modules = _modules()
    unplaced = sorted(name for name in modules if _floor(name) is None)
    assert unplaced == [], "modules on no floor: put each in its floor's folder petsweep/<floor>/"
    upward, stale = set(), set(UPWARD)
    for name, file in modules.items():
        mine = _floor(name)
        for target in _imports(name, file, modules):
            theirs = _floor(target)
            allowed = theirs in ONLY[mine] if mine in ONLY else FLOORS.index(theirs) <= FLOORS.index(mine)
            if (name, target) in UPWARD:
                stale.discard((name, target))
            elif not allowed:
                upward.add(f"{name} ({mine}) imports {target} ({theirs})")
    assert sorted(upward) == [], "an import against the floors (docs/architecture.md)"
    assert sorted(stale) == [], "no longer imported upward: take these out of UPWARD"


# Quoted method names left outside petsweep/methods/ (file -> name -> at most this many string constants),
# known debt of #23 ("no method name appears outside methods/ and conf/"). Not every one is a name check:
# `apet` is also the config group and result.json field, `head` the task head's parameter group, `opf` MPO's
# gauge.
KNOWN_METHOD_NAMES = {
    "hydra_plugins/petsweep_plugins/threshold_sweeper.py": {"full": 1},  # the reference method's default
    "launchers/threshold_search.py": {"full": 1},
    "launchers/threshold_sweep.py": {"apet": 1, "full": 4},
    # the top-level `apet` group APET's budget= folds into (the methods' budget_* hooks say the rest)
    "petsweep/model/budget.py": {"apet": 2},
    "petsweep/model/resolve.py": {"apet": 1},  # the `apet` config group among the keys a budget choice reads
    "petsweep/spec/config.py": {"apet": 2},  # the apet group
    "petsweep/compose/nodes.py": {"apet": 1},  # the apet group's base node
    "petsweep/spec/identity.py": {"apet": 4},  # the apet group's semantic rules
    "petsweep/model/params.py": {"head": 1},  # HEAD_GROUP: the head's parameter group (not the method)
    "petsweep/records/row.py": {"apet": 1},  # result.json's `apet` field, read into a collected row
    # analysis reads a study's rows by method name, as data: the figures of a named method (LoRA's ranks,
    # APET against its reference), full fine-tuning as the reference score, the head as the matched floor
    "analysis/apet.py": {"apet": 2},
    "analysis/curves.py": {"full": 2, "lora": 1},
    "analysis/matched.py": {"head": 1},
    "analysis/plots.py": {"apet": 1},
    "analysis/threshold_figure.py": {"full": 1},
    "analysis/thresholds.py": {"full": 1},
}


def _above(counts: dict[str, dict[str, int]], bound: dict[str, dict[str, int]]) -> set[str]:
    """The (file, name) counts of `counts` above those of `bound`."""
    return {
        f"{file}: {name!r} x{count} (against {bound.get(file, {}).get(name, 0)})"
        for file, names in counts.items()
        for name, count in names.items()
        if count > bound.get(file, {}).get(name, 0)
    }


def test_method_names_stay_in_the_methods():
    """A method says what it is through its class (PETMethod.fuses, trains_alone, names_a_budget, budget_keys,
    is_the_head, record_fields, trains_every_weight, no_peft_form and the peft_* hooks, merge_for_export), not
    through its name checked elsewhere: fusable.FUSED_METHODS, config's and budget's lists of methods that
    cannot name a budget, BitFit's added biases, `== "head"`, app.py's APET and OPF record fields, export.py's
    peft forms and merges and costing.py's full fine-tuning were such checks (#23). The string constants
    equal to a method name (conf/method) in the library outside petsweep/methods/ may only shrink below
    KNOWN_METHOD_NAMES."""
    names = {p.stem for p in (REPO / "conf" / "method").glob("*.yaml")}
    found: dict[str, dict[str, int]] = {}
    files = [
        f
        for package in ("petsweep", "launchers", "hydra_plugins", "analysis")
        for f in (REPO / package).rglob("*.py")
    ]
    for file in sorted([*files, REPO / "run.py"]):
        rel = str(file.relative_to(REPO))
        if rel.startswith("petsweep/methods/"):
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.setdefault(rel, {}).setdefault(node.value, 0)
                found[rel][node.value] += 1
    new = _above(found, KNOWN_METHOD_NAMES)
    assert not new, "method names outside petsweep/methods/: declare a hook on the method class instead"
    # the list may only shrink: an entry above what a file holds would let a name come back unnoticed
    stale = _above(KNOWN_METHOD_NAMES, found)
    assert not stale, "KNOWN_METHOD_NAMES lists more than the files hold: shrink it"
