"""The layering of docs/architecture.md, checked on the source tree (ast only; nothing is imported).

Each rule is one test, so a failure names the rule and the modules that break it.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "parallelzarr"

#: Layer of each top-level module or subpackage: a module imports only its own package and lower layers.
LAYERS = {
    "errors": 0, "units": 0, "redact": 0, "hooks": 0,
    "plan": 1,
    "store": 2,
    "inputs": 3, "graph": 3,
    "commit": 4,
    "reports": 5,
    "run": 6,
    "entry": 7,
    "cluster": 7,
    "demo": 8, "testing": 8,
    "cli": 9, "__init__": 9,
}
#: Imports that break a rule on purpose, each with its reason.
ALLOWED_IMPORTS = {
    # Fault injection in a subprocess is armed by an environment variable, before any test code runs
    # there: the no-op hook imports the testing module only then (never in a user's process).
    ("parallelzarr.hooks", "parallelzarr.testing"),
}
#: Module-level mutable objects that are process state by nature, each with its reason.
ALLOWED_STATE = {
    # One threading.Lock per lock name within a process: dask threads of one worker share them.
    ("parallelzarr.store.locks", "_THREAD_LOCKS"),
    # Ids of the unpublished writes this process runs: a marker of this process that is not listed
    # belongs to a write that failed here (its "failed" note may not have reached the store).
    ("parallelzarr.store.staging", "_RUNNING"),
    # zarr I/O loops this process started for chunk I/O in worker threads, stopped at exit (weak refs).
    ("parallelzarr.store.zarr_compat", "_holders"),
    # Writer threads of small appends, started once per process (a pool per append cost 1.7 ms of 16).
    ("parallelzarr.store.writer_threads", "_POOLS"),
    # The test harness's own counters and armed faults (parallelzarr.testing is not production code).
    ("parallelzarr.testing", "*"),
}
MAX_FUNCTION_LINES = 60
LONG_REASON = "Long because"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """The parallelzarr modules ``module`` imports at run time (``TYPE_CHECKING`` blocks left out)."""
    tree = ast.parse(MODULES[module].read_text())
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name) if name.startswith("parallelzarr") else None
            if target and target not in (module, "parallelzarr"):
                found.add(target)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _layer_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return top, LAYERS[top]


def test_every_module_has_a_layer():
    assert not [m for m in MODULES if _layer_of(m)[0] not in LAYERS]


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert cycles == []


def test_layers_import_only_their_own_package_and_lower_layers():
    wrong = []
    for module, targets in GRAPH.items():
        top, rank = _layer_of(module)
        for target in targets:
            ttop, trank = _layer_of(target)
            if (module, target) in ALLOWED_IMPORTS or ttop == top or rank == trank == 0:
                continue
            if trank >= rank:
                wrong.append(f"{module} (layer {rank}) imports {target} (layer {trank})")
    assert wrong == []


def test_production_code_never_imports_the_testing_module():
    wrong = [m for m, targets in GRAPH.items()
             if "parallelzarr.testing" in targets and m != "parallelzarr.testing"
             and (m, "parallelzarr.testing") not in ALLOWED_IMPORTS]
    assert wrong == []


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _code_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of ``fn`` from its ``def`` to its end, its docstring left out."""
    lines = fn.end_lineno - fn.lineno + 1
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_functions_are_short_or_say_why():
    """Over MAX_FUNCTION_LINES lines of code (docstrings not counted), the docstring says why."""
    long = []
    for module, path in MODULES.items():
        for fn in _functions(ast.parse(path.read_text())):
            lines = _code_lines(fn)
            if lines > MAX_FUNCTION_LINES and LONG_REASON not in (ast.get_docstring(fn) or ""):
                long.append(f"{module}.{fn.name}: {lines} lines")
    assert long == []


_MUTABLE_CALLS = {"set", "dict", "list", "defaultdict", "OrderedDict", "Counter", "deque", "WeakValueDictionary",
                  "WeakKeyDictionary", "WeakSet"}


def _is_mutable(value: ast.expr) -> bool:
    if isinstance(value, ast.List | ast.Dict | ast.Set | ast.ListComp | ast.DictComp | ast.SetComp):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        return name in _MUTABLE_CALLS
    return False


def test_no_module_level_mutable_state():
    found = collections.defaultdict(list)
    for module, path in MODULES.items():
        if (module, "*") in ALLOWED_STATE:
            continue
        for node in ast.parse(path.read_text()).body:
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            for target in targets:
                name = getattr(target, "id", None)
                if name and name != "__all__" and _is_mutable(value) and (module, name) not in ALLOWED_STATE:
                    found[module].append(name)
    assert dict(found) == {}


@pytest.mark.parametrize("module", ["parallelzarr.plan.write", "parallelzarr.plan.grid", "parallelzarr.plan.rechunk"])
def test_planners_are_pure(module):
    """The planners import no zarr, xarray, fsspec or dask.distributed: they compute plans from facts."""
    tree = ast.parse(MODULES[module].read_text())
    heavy = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        heavy |= {n for n in names if n.split(".")[0] in {"zarr", "xarray", "fsspec", "distributed"}}
    assert heavy == set()
