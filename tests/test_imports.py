"""The import structure of the graphc package: one-way layers, a protobuf-free core.

Every module of graphc is parsed with ``ast`` and every import is collected, those inside
functions and classes included, to build the graph "module A imports graphc module B".
The tests assert that

* the graph is acyclic (the layers run one way, as the data flows in DESIGN.md);
* the core (the IR and the builder: graph, registry, dtypes, shapes, the op modules,
  autodiff, optim) reaches neither ``graphc._proto`` nor ``google.protobuf``, directly or
  transitively: the protobuf lives on the file side (serialize, plan, the compiler's emit,
  session, cli, viz);
* ``import graphc.graph`` and ``import graphc.registry`` work in a fresh interpreter, and the
  core modules import without ``graphc/__init__`` and without protobuf loaded.

The rule: imports of graphc modules sit at the top of a module.  An import inside a function
is allowed only for an optional, heavy third-party module (graphviz, tqdm, torch, and the
OpenBLAS wheel that ``graphc._load_blas`` loads) or for the compiled extension
``graphc._runtime``, which is loaded when the first Session starts so that the package imports
(and compiles models) without a built extension.  A lower layer reaches a higher one only
through a hook the higher one installs at import (Tensor operators, ``Graph.save``, the op
builders that gradient functions call).

Edges run from a module to the module its import names; the implicit import of parent
packages is left out (``graphc/__init__`` imports everything by design).
"""

import ast
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "graphc")

# Imports allowed inside a function body (see the module docstring).
LAZY_ALLOWED = ("graphviz", "tqdm", "torch", "onnx", "onnxruntime", "scipy_openblas32", "mpi4py", "graphc._runtime",
                "graphc._mpi")

# The compiled extensions (graphc._runtime; graphc._mpi._comm, built only where MPI is installed):
# they import no Python module of graphc, so they are no node of the import graph.
EXTENSIONS = ("graphc._runtime", "graphc._mpi._comm")

# The layers in the order data flows (DESIGN.md); a module imports only modules of its own
# layer or of layers before it.  The plan and the session sit before the compiler: the
# runtime never imports the compiler.
LAYERS = (
    ("graphc.errors", "graphc._version", "graphc._mpi", "graphc.distributed", "graphc.dtypes", "graphc.shapes",
     "graphc.init", "graphc.fileio",
     "graphc.checkpoint", "graphc.datasets", "graphc._load_blas", "graphc._cuda_libs", "graphc.feeds",
     "graphc.dataloader",
     "graphc.text", "graphc.images"),
    ("graphc.registry",),
    ("graphc.graph",),
    ("graphc.ops",),
    ("graphc.autodiff", "graphc.optim", "graphc.nn"),
    ("graphc.reference", "graphc.schema_codegen"),
    ("graphc._proto", "graphc.proto_enums"),
    ("graphc.serialize",),
    ("graphc.plan",),
    ("graphc.program",),
    ("graphc.aot",),
    ("graphc.session",),
    ("graphc.compiler",),
    ("graphc.onnx",),
    ("graphc.viz",),
    ("graphc.cli", "graphc.__main__"),
)

# The protobuf-free core.
CORE = ("graphc.errors", "graphc.dtypes", "graphc.shapes", "graphc.registry", "graphc.graph", "graphc.init",
        "graphc.autodiff", "graphc.optim")
PROTO = ("graphc._proto", "google.protobuf")


def _module_files():
    """Module name → path of every .py file of the package."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(PKG):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if not fn.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, fn), ROOT)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join(rel)] = os.path.join(dirpath, fn)
    return out


MODULES = _module_files()
PACKAGES = {name for name, path in MODULES.items() if path.endswith("__init__.py")}


def _is_module(name):
    return name in MODULES or name in EXTENSIONS


class _Collector(ast.NodeVisitor):
    """(imported module, line, inside a function or class body) for every import statement."""

    def __init__(self, module):
        self.module = module
        self.depth = 0
        self.found = []

    def _nested(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _nested

    def visit_Import(self, node):
        for alias in node.names:
            self.found.append((alias.name, node.lineno, self.depth > 0))

    def visit_ImportFrom(self, node):
        base = node.module or ""
        if node.level:
            package = self.module if self.module in PACKAGES else self.module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            # `from graphc import serialize` imports the module graphc.serialize; `from graphc import
            # Graph` reads a name of the package graphc.
            self.found.append((sub if _is_module(sub) else base, node.lineno, self.depth > 0))


def _imports():
    """Module → list of (imported name, line, lazy)."""
    out = {}
    for name, path in MODULES.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        c = _Collector(name)
        c.visit(tree)
        out[name] = c.found
    return out


IMPORTS = _imports()


def _resolve(target):
    """The graphc module an import of ``target`` names (the longest module prefix), or None.
    The compiled extension imports no Python module of graphc, so it is no node of the graph."""
    if target in EXTENSIONS:
        return None
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in MODULES:
            return name
        parts.pop()
    return None


def _graph():
    return {m: sorted({r for t, _, _ in found if (r := _resolve(t)) is not None and r != m})
            for m, found in IMPORTS.items()}


def _find_cycle(graph):
    """One cycle as a list of modules (first == last), or None."""
    color = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    stack = []

    def visit(m):
        color[m] = 1
        stack.append(m)
        for n in graph[m]:
            if color[n] == 1:
                return stack[stack.index(n):] + [n]
            if color[n] == 0:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        color[m] = 2
        return None

    for m in sorted(graph):
        if color[m] == 0:
            found = visit(m)
            if found:
                return found
    return None


def _reach(graph, start):
    """start and every module it imports, directly or not → the path that reaches it."""
    paths = {start: [start]}
    todo = [start]
    while todo:
        m = todo.pop()
        for n in graph[m]:
            if n not in paths:
                paths[n] = paths[m] + [n]
                todo.append(n)
    return paths


def test_the_parser_sees_the_package():
    # A walk that found nothing would pass every check below.
    assert {"graphc", "graphc.graph", "graphc.registry", "graphc.ops", "graphc.ops.elementwise",
            "graphc.serialize", "graphc.compiler.pipeline", "graphc._proto.graphc_pb2"} <= set(MODULES)
    graph = _graph()
    assert "graphc.registry" in graph["graphc.ops.elementwise"]
    assert "graphc._proto.graphc_pb2" in graph["graphc.serialize"]


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_module_import_graph_is_acyclic():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _layer(module):
    """The index in LAYERS of the longest entry that is module or a package above it."""
    best = None
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if (module == entry or module.startswith(entry + ".")) and (best is None or len(entry) > best[1]):
                best = (i, len(entry))
    return None if best is None else best[0]


def test_layers_point_one_way():
    graph = _graph()
    unplaced = sorted(m for m in graph if m != "graphc" and _layer(m) is None)
    assert not unplaced, f"modules in no layer of LAYERS: {unplaced}"
    upward = [f"{m} (layer {_layer(m)}) imports {n} (layer {_layer(n)})"
              for m in sorted(graph) if m != "graphc" for n in graph[m] if n != "graphc" and _layer(n) > _layer(m)]
    assert not upward, "\n".join(upward)
    # graphc/__init__ imports every layer, so a module takes a name from the module that defines it.
    importers = sorted(m for m in graph if "graphc" in graph[m])
    assert not importers, f"modules that import the package graphc itself: {importers}"


def test_no_function_level_imports_of_graphc_modules():
    bad = []
    for m, found in sorted(IMPORTS.items()):
        for target, line, lazy in found:
            if lazy and not any(target == a or target.startswith(a + ".") for a in LAZY_ALLOWED):
                bad.append(f"{MODULES[m]}:{line} imports {target} inside a function")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", CORE + tuple(sorted(m for m in MODULES if m.startswith("graphc.ops"))))
def test_core_does_not_reach_protobuf(module):
    assert module in MODULES
    graph = _graph()
    for reached, path in sorted(_reach(graph, module).items()):
        for target, line, _ in IMPORTS[reached]:
            if any(target == p or target.startswith(p + ".") for p in PROTO):
                chain = " -> ".join(path)
                pytest.fail(f"{module} reaches {target}: {chain} ({MODULES[reached]}:{line})")


def _run(code):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("module", ["graphc.graph", "graphc.registry"])
def test_import_in_a_fresh_interpreter(module):
    out = _run(f"import {module}, sys; print(sys.modules[{module!r}].__file__)")
    assert os.path.dirname(os.path.abspath(out.strip())).startswith(PKG)


# Load graphc's submodules under an empty package object, so graphc/__init__ (which imports
# everything) does not run: what gets loaded is what the module itself needs.
_STUB = """
import importlib.util, sys, types
spec = importlib.util.find_spec("graphc")
pkg = types.ModuleType("graphc")
pkg.__path__ = list(spec.submodule_search_locations)
sys.modules["graphc"] = pkg
import {module}
proto = sorted(m for m in sys.modules if m.startswith(("google.protobuf", "graphc._proto")))
assert not proto, proto
print(sorted(m for m in sys.modules if m.startswith("graphc.")))
"""


@pytest.mark.parametrize("module", CORE + ("graphc.ops",))
def test_core_imports_without_protobuf(module):
    assert importlib.util.find_spec("google.protobuf") is not None  # else the check proves nothing
    loaded = _run(_STUB.format(module=module))
    assert module in loaded


def test_hooks_say_what_is_missing():
    # graphc.graph alone (no graphc.ops, no graphc.serialize): operators and save raise a typed
    # error that names the module to import, not an AttributeError from deep inside.
    code = _STUB.format(module="graphc.graph") + """
from graphc.errors import GraphError
from graphc.graph import Graph
with Graph() as g:
    x = g.add_placeholder("x", (2,))
for what, fn in (("graphc.ops", lambda: x + x), ("graphc.serialize", lambda: g.save("unused.pb"))):
    try:
        fn()
    except GraphError as e:
        assert what in str(e), e
    else:
        raise AssertionError(what)
"""
    _run(code)


def test_stub_check_sees_protobuf():
    # The same check on a file-side module must see the protobuf load.
    with pytest.raises(AssertionError, match="google.protobuf"):
        _run(_STUB.format(module="graphc.serialize"))


def test_operators_and_gradients_work_after_a_plain_import():
    # The hooks the upper layers install (Tensor operators, the op builders gradient functions
    # call, Graph.save) are in place after `import graphc`, in a fresh interpreter.
    _run("""
import os, tempfile
import graphc as gc
with gc.Graph() as g:
    x = gc.placeholder("x", (2, 3))
    w = gc.variable("w", (3, 3), init=gc.init.ones())
    loss = ((x @ w) * 2.0 - 1.0).sum()
    (gw,) = gc.gradients(loss, [w])
assert gw.shape == (3, 3)
path = os.path.join(tempfile.mkdtemp(), "m.pb")
g.save(path)
assert len(gc.load(path).nodes) == len(g.nodes)
""")
