"""Architecture check: the import graph of the project's own modules, read with ``ast``.

Layers (docs/ARCHITECTURE.md): ``sea_core`` is the library and never imports
``pipelines``; no import cycle between project modules, whether the import is at
module level or inside a function (a function-level cycle is still a loop in
the design; it only fails later, at call time). ``infra`` and ``benchmarks``
may import both.

The graph: every ``.py`` under sea_core/, pipelines/, infra/ and benchmarks/
is a module named by its path (``pipelines/transforms/decode.py`` ->
``pipelines.transforms.decode``, ``pkg/__init__.py`` -> ``pkg``). An
``import a.b.c`` is an edge to the deepest project module among ``a.b.c``,
``a.b``, ``a``; ``from a.b import y`` is an edge to ``a.b.y`` when that is a
module, else to ``a.b``; relative imports are resolved against the importing
module's package. Edges to the parent packages Python also executes are not
added (every ``sea_core.x`` would otherwise "import" ``sea_core``).

Modules over 500 lines are only reported (a warning), not failed: the closing
note of a restructuring gives the reason for each.
"""
from __future__ import annotations

import ast
import re
import textwrap
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sea_core", "pipelines", "infra", "benchmarks")
LIBRARY, JOBS = "sea_core", "pipelines"
MAX_LINES = 500


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    file: str
    """Path of the importing file, relative to the scanned root."""
    line: int
    kind: str = "import"
    """``import`` (statement or ``importlib.import_module("literal")``) or ``string`` (a string
    constant naming a project module, e.g. a table of modules imported later by name)."""

    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Graph:
    modules: dict[str, Path]
    """module name -> file."""
    edges: list[Edge]
    lines: dict[str, int]


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _deepest(name: str, modules) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in modules:
            return cand
    return None


def _targets(node: ast.AST, importer: str, is_package: bool, modules) -> list[str]:
    """Project modules an ``import`` / ``from ... import`` node refers to."""
    if isinstance(node, ast.Import):
        return [m for m in (_deepest(a.name, modules) for a in node.names) if m]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        pkg = importer.split(".") if is_package else importer.split(".")[:-1]
        up = node.level - 1
        if up > len(pkg):
            return []
        base = pkg[:len(pkg) - up] if up else pkg
        base_name = ".".join(base + ([node.module] if node.module else []))
    else:
        base_name = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{base_name}.{alias.name}" if base_name else alias.name
        if sub in modules:
            out.append(sub)
        else:
            m = _deepest(base_name, modules) if base_name else None
            if m:
                out.append(m)
    return out


def _dynamic_import(call: ast.Call) -> str | None:
    """The literal module of ``importlib.import_module("x")`` / ``__import__("x")``."""
    f = call.func
    fname = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
    if fname in ("import_module", "__import__") and call.args and \
            isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def scan(root: Path, packages=PACKAGES) -> Graph:
    """Modules and import edges (module-level and function-level) of ``packages`` under ``root``."""
    files = {}
    for pkg in packages:
        for f in sorted((root / pkg).rglob("*.py")):
            if any(part.startswith(".") or part == "__pycache__" for part in f.relative_to(root).parts):
                continue
            files[module_name(f.relative_to(root))] = f
    edges, lines = [], {}
    for name, f in files.items():
        text = f.read_text(encoding="utf-8")
        lines[name] = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        tree = ast.parse(text, filename=str(f))
        is_package = f.name == "__init__.py"
        seen: set[int] = set()  # string arguments of dynamic imports (not also "names" edges)
        for node in ast.walk(tree):
            rel = str(f.relative_to(root))
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for dst in _targets(node, name, is_package, files):
                    if dst != name:
                        edges.append(Edge(name, dst, rel, node.lineno))
            elif isinstance(node, ast.Call) and _dynamic_import(node) in files:
                edges.append(Edge(name, _dynamic_import(node), rel, node.lineno))
                seen.add(id(node.args[0]))
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in seen
                  and node.value in files and node.value != name):
                edges.append(Edge(name, node.value, rel, node.lineno, kind="string"))
    return Graph(files, edges, lines)


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def layer_violations(graph: Graph, lower: str = LIBRARY, upper: str = JOBS) -> list[str]:
    """``file:line: a imports b`` for every import of ``upper`` from inside ``lower``."""
    bad = {(e.file, e.line, e.src, ("names " if e.kind == "string" else "imports ") + e.dst)
           for e in graph.edges
           if _top(e.src) == lower and _top(e.dst) == upper}
    return [f"{f}:{n}: {a} {b}" for f, n, a, b in sorted(bad)]


def _sccs(nodes, succ) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(succ.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(succ.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def import_cycles(graph: Graph) -> list[str]:
    """One named cycle (with the file:line of each import) per strongly connected component."""
    succ: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for e in graph.edges:
        if e.kind != "import":
            continue
        succ.setdefault(e.src, set()).add(e.dst)
        where.setdefault((e.src, e.dst), e.where())
    found = []
    for comp in _sccs(graph.modules, succ):
        if len(comp) < 2:
            continue
        members, start = set(comp), comp[0]
        # shortest path start -> ... -> start inside the component (BFS)
        prev, queue, end = {}, deque([start]), None
        while queue and end is None:
            v = queue.popleft()
            for w in sorted(succ.get(v, ())):
                if w not in members:
                    continue
                if w == start:
                    end = v
                    break
                if w not in prev:
                    prev[w] = v
                    queue.append(w)
        path = [start]
        v = end
        while v != start:
            path.insert(1, v)
            v = prev[v]
        path.append(start)
        hops = ", ".join(where[(a, b)] for a, b in zip(path, path[1:]))
        extra = f" (component of {len(comp)}: {', '.join(comp)})" if len(comp) > len(path) - 1 else ""
        found.append(f"{' -> '.join(path)} [{hops}]{extra}")
    return found


def large_modules(graph: Graph, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    return sorted(((str(graph.modules[m].relative_to(ROOT) if graph.modules[m].is_relative_to(ROOT)
                        else graph.modules[m]), n) for m, n in graph.lines.items() if n > limit),
                  key=lambda x: -x[1])


# --------------------------------------------------------------------------- the project's tree
@pytest.fixture(scope="module")
def tree() -> Graph:
    return scan(ROOT)


def test_sea_core_never_imports_pipelines(tree):
    bad = layer_violations(tree)
    assert not bad, ("sea_core is the library and must not import pipelines:\n  "
                     + "\n  ".join(bad))


def test_no_import_cycles_between_project_modules(tree):
    cycles = import_cycles(tree)
    assert not cycles, "import cycles between project modules:\n  " + "\n  ".join(cycles)


def test_report_modules_over_500_lines(tree):
    """Information only: modules over 500 lines (the closing note gives a reason for each)."""
    graph = tree
    assert {"sea_core.errors", "pipelines.transforms.decode"} <= set(graph.modules)
    big = large_modules(graph)
    for path, n in big:
        assert n > MAX_LINES and len((ROOT / path).read_text().splitlines()) == n
    if big:
        warnings.warn("modules over 500 lines: " + ", ".join(f"{p} ({n})" for p, n in big),
                      stacklevel=1)


# --------------------------------------------------------------------------- the checker can fail
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


def test_checker_finds_library_importing_jobs(tmp_path):
    root = _write(tmp_path, {
        "sea_core/__init__.py": "",
        "sea_core/ok.py": "import os\nfrom sea_core import errors\n",
        "sea_core/errors.py": "",
        "sea_core/bad.py": "import json\n\n\ndef f():\n    from pipelines.jobs import run\n",
        "sea_core/sub/__init__.py": "",
        "sea_core/sub/worse.py": "import pipelines.jobs\n",
        "sea_core/dyn.py": "import importlib\nM = importlib.import_module('pipelines.jobs')\n"
                           "TABLE = [('jobs', 'pipelines.jobs')]\n",
        "pipelines/__init__.py": "",
        "pipelines/jobs.py": "from sea_core.errors import X\nfrom sea_core import ok\n",
    })
    g = scan(root, ("sea_core", "pipelines"))
    assert layer_violations(g) == [
        "sea_core/bad.py:5: sea_core.bad imports pipelines.jobs",
        "sea_core/dyn.py:2: sea_core.dyn imports pipelines.jobs",
        "sea_core/dyn.py:3: sea_core.dyn names pipelines.jobs",
        "sea_core/sub/worse.py:1: sea_core.sub.worse imports pipelines.jobs",
    ]
    assert import_cycles(g) == []
    # pipelines -> sea_core is the allowed direction
    assert Edge("pipelines.jobs", "sea_core.ok", "pipelines/jobs.py", 2) in g.edges


def test_checker_finds_cycles_relative_and_function_level(tmp_path):
    root = _write(tmp_path, {
        "pipelines/__init__.py": "",
        "pipelines/a.py": "from . import b\n",                      # relative, submodule
        "pipelines/b.py": "def f():\n    from pipelines.c import g\n",  # function level
        "pipelines/c.py": "from .transforms.t import h\n",
        "pipelines/transforms/__init__.py": "",
        "pipelines/transforms/t.py": "from .. import a\nimport pipelines.a as _a\n",
        "pipelines/clean.py": "from pipelines import a\n",
        "sea_core/__init__.py": "",
        "sea_core/x.py": "from sea_core.y import z\n",
        "sea_core/y.py": "import sea_core.x\n",
    })
    g = scan(root, ("sea_core", "pipelines"))
    cycles = import_cycles(g)
    assert cycles == [
        "pipelines.a -> pipelines.b -> pipelines.c -> pipelines.transforms.t -> pipelines.a "
        "[pipelines/a.py:1, pipelines/b.py:2, pipelines/c.py:1, pipelines/transforms/t.py:1]",
        "sea_core.x -> sea_core.y -> sea_core.x [sea_core/x.py:1, sea_core/y.py:1]",
    ]
    assert layer_violations(g) == []
    # removing one edge of a cycle breaks it
    (root / "sea_core/y.py").write_text("import json\n")
    assert len(import_cycles(scan(root, ("sea_core", "pipelines")))) == 1


def test_checker_reports_large_modules(tmp_path):
    root = _write(tmp_path, {"sea_core/__init__.py": "", "sea_core/big.py": "x = 1\n" * 501,
                             "sea_core/small.py": "x = 1\n" * 500})
    g = scan(root, ("sea_core",))
    assert [(Path(p).name, n) for p, n in large_modules(g)] == [("big.py", 501)]


# --------------------------------------------------------------------------- every PTransform tested
TRANSFORM_MODULES = sorted((ROOT / "pipelines" / "transforms").glob("*.py")) + [
    ROOT / "pipelines" / f"{m}.py" for m in ("select", "fit_pca", "build_training_set", "embed_corpus")]


def ptransform_classes(paths, root: Path = ROOT) -> dict[str, str]:
    """``class X(beam.PTransform)`` / ``(PTransform)`` / ``(beam.CombineFn)`` -> defining file."""
    out = {}
    for path in paths:
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases}
                if bases & {"PTransform", "CombineFn"} and not node.name.startswith("_"):
                    out[node.name] = str(path.relative_to(root))
    return out


def test_every_public_ptransform_has_a_testpipeline_test():
    """Each public PTransform / CombineFn of the Beam jobs is run by a tests/test_transforms_*.py test."""
    classes = ptransform_classes(TRANSFORM_MODULES)
    assert {"DecodeAndFrame", "SampleGroups", "ProjectAndWrite", "GroupMoments"} <= set(classes)
    files = [p.read_text() for p in sorted((ROOT / "tests").glob("test_transforms_*.py"))]
    untested = sorted(f"{name} ({where})" for name, where in classes.items()
                      if not any(re.search(rf"\b{name}\(", t) and "assert_that(" in t for t in files))
    assert not untested, "PTransforms without a TestPipeline test: " + ", ".join(untested)


def test_ptransform_finder_sees_subclasses(tmp_path):
    f = tmp_path / "t.py"
    f.write_text("import apache_beam as beam\nfrom apache_beam import PTransform\n"
                 "class A(beam.PTransform): pass\nclass B(PTransform): pass\n"
                 "class C(beam.CombineFn): pass\nclass _D(beam.PTransform): pass\nclass E: pass\n")
    assert ptransform_classes([f], root=tmp_path) == {"A": "t.py", "B": "t.py", "C": "t.py"}
