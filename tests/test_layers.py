"""The package's layering, read from the source (ast): no import cycles between modules, no import of a higher
layer or of a sibling subpackage of the same layer, and no private name imported from another module.

Layers, lowest first (a module may import its own subpackage and anything of a lower layer):

0. ``_version``, ``errors``, ``data``, ``_moved`` (the deprecation aliases of the old module paths)
1. ``nn`` (the networks), ``sim`` (simulated and real-ray scenes)
2. ``models`` (zoo, weights, thresholds, per-camera choice, provenance, plugin cards)
3. ``inference`` (tiling, normalisation, fill, runner, batching, device path, Cleaner), ``io`` (FITS, products,
   writer, Zarr, object stores)
4. ``distributed`` (clean_dask, graphs, worker plugin, clusters, SLURM, TLS)
5. ``archive`` (layout, manifest, groups, gates, pipeline, process_archive, QA report), ``training``, ``evaluate``
6. the front door: ``ccd``, ``compat``, ``demo``, ``cli`` and the package itself
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "deepcr_dask"
LAYERS = [
    {"_version", "errors", "data", "_moved"},
    {"nn", "sim"},
    {"models"},
    {"inference", "io"},
    {"distributed"},
    {"archive", "training", "evaluate"},
    {"ccd", "compat", "demo", "cli", ""},
]
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every import of the package from ``path``, functions included."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("deepcr_dask"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if (PACKAGE.parent / f"{target}.{n}".replace(".", "/")
                                                             ).with_suffix(".py").exists()
                          or (PACKAGE.parent / f"{target}.{n}".replace(".", "/") / "__init__.py").exists()]
            found += [(m, [], node.lineno) for m in submodules]
            rest = [n for n in names if f"{target}.{n}" not in submodules]
            if rest:
                found.append((target, rest, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("deepcr_dask")]
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top(module: str) -> str:
    rest = module.split(".")[1:]
    return rest[0] if rest else ""


def _layer(module: str) -> int:
    top = _top(module)
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _resolve(target: str) -> str:
    """The module file an import lands in (a package's __init__ for a package)."""
    return target if target in MODULES else target.rpartition(".")[0]


def test_every_module_has_a_layer():
    unknown = sorted({_top(m) for m in MODULES} - set().union(*LAYERS))
    assert not unknown, f"modules outside every layer: {unknown}"


def test_no_upward_or_sideways_import_between_layers():
    wrong = []
    for module, path in MODULES.items():
        for target, _, line in _imports(path):
            target = _resolve(target)
            same = _top(target) == _top(module) or _layer(target) == _layer(module) == len(LAYERS) - 1
            if same:  # within a subpackage, and among the front door's modules, only cycles are refused
                continue
            if _layer(target) >= _layer(module):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_private_name_imported_from_another_module():
    wrong = []
    for module, path in MODULES.items():
        for target, names, line in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and _resolve(target) != module:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {', '.join(private)} from {target}")
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    graph = {module: {_resolve(t) for t, _, _ in _imports(path)} - {module} for module, path in MODULES.items()}
    # A package's __init__ re-exports its modules; those modules importing a sibling through the package name
    # is what makes a cycle, so the edges from __init__ files down to their own modules are left out.
    for module, path in MODULES.items():
        if path.name == "__init__.py":
            graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    assert not _cycles(graph), _cycles(graph)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_600_lines(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines"


def test_the_flat_layouts_module_paths_still_import_with_a_deprecation_warning():
    import subprocess
    import sys

    code = (
        "import warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "import deepcr_dask as dcr\n"  # the package itself warns about nothing
        "from deepcr_dask._moved import MOVED\n"
        "import importlib\n"
        "for old, new in sorted(MOVED.items()):\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module('deepcr_dask.' + old)\n"
        "    assert module is importlib.import_module('deepcr_dask.' + new), old\n"
        "    assert [str(w.message) for w in caught if w.category is DeprecationWarning], old\n"
        "from deepcr_dask.cleaner import Cleaner\n"
        "from deepcr_dask.engine import clean_dask\n"
        "from deepcr_dask.archive import ArchiveSummary, process_archive, process_file\n"
        "assert Cleaner is dcr.Cleaner and clean_dask is dcr.clean_dask and process_archive is dcr.process_archive\n"
        "print('ok', len(MOVED))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert run.returncode == 0 and run.stdout.startswith("ok"), run.stderr[-2000:]


def test_flat_layout_modules_as_package_attributes_warn():
    import subprocess
    import sys

    code = ("import warnings\nimport deepcr_dask as dcr\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    options = dcr.pipeline.CleanOptions()\n"
            "from deepcr_dask.archive.pipeline import CleanOptions\n"
            "assert type(options) is CleanOptions\n"
            "assert any(w.category is DeprecationWarning for w in caught)\n"
            "try:\n    dcr.no_such_module\nexcept AttributeError:\n    print('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]
