"""Which runtime sources an AOT artifact (``graphc compile --emit c``) ships.

An artifact compiles the runtime's own CPU kernels, so it copies their sources: the files that
register the plan's ops (one row of runtime/cpu/kernel_files.cc each, read through
``graphc._runtime.kernel_files()``), the runtime files every artifact needs (the kernel
registry, the plan structs, the AOT runtime), and their closure: every ``#include "..."``
(headers and ``.inc`` files, resolved like the compiler does) and every ``.cc`` file a header
names in an ``// aot-sources: a.cc b.cc`` line (the files that define what it declares).

Paths are relative to the runtime source folder (:func:`runtime_source_dir`), with ``/``; the
artifact keeps that layout under ``out/graphc/``.
"""
import functools
import os
import re

from graphc._load_blas import load_openblas
from graphc.errors import AotError, quote

# Every artifact ships these (relative to the runtime folder).  The AOT runtime's files are
# listed one by one: a missing one is an error when the artifact is emitted, never skipped.
CORE_SOURCES = (
    "plan.h",
    "kernel_registry.h",
    "kernel_registry.cc",
    "errors.h",
    "op_schema.h",
)
AOT_RUNTIME_SOURCES = (
    "aot/tables.h",
    "aot/aot_runtime.h",
    "aot/aot_runtime.cc",
    "aot/npz.h",
    "aot/npz.cc",
    "aot/sha256.h",
    "aot/sha256.cc",
    "aot/weights_file.h",
    "aot/weights_file.cc",
)
BASE_SOURCES = CORE_SOURCES + AOT_RUNTIME_SOURCES

# The kernel files' folder inside the runtime folder.
KERNEL_DIR = "cpu"

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.MULTILINE)
_COMPANIONS = re.compile(r"^[ \t]*//[ \t]*aot-sources:(.*)$", re.MULTILINE)


def runtime_source_dir(package_dir=None):
    """The folder holding the runtime's C++ sources.

    ``<graphc>/_runtime_src`` in an installed package (setup.py copies runtime/ there), else
    ``<repo>/runtime`` beside the graphc package (an in-place development build).  AotError
    when neither holds kernel_registry.cc.  ``package_dir``: the graphc package folder
    (default: this one's).
    """
    if package_dir is None:
        package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [os.path.join(package_dir, "_runtime_src"),
                  os.path.join(os.path.dirname(os.path.abspath(package_dir)), "runtime")]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "kernel_registry.cc")):
            return folder
    raise AotError("graphc's runtime sources are not installed: no kernel_registry.cc in "
                   + " or ".join(candidates) + " (reinstall graphc, or build it in place from "
                   "a source checkout)")


@functools.lru_cache(maxsize=None)
def kernel_table():
    """``[(kernel file, register function, sorted ops)]``, kernel files relative to the
    runtime folder (``cpu/elementwise.cc``), in the registry's order."""
    load_openblas()  # the extension needs OpenBLAS loaded first (graphc/session.py's _load_runtime)
    from graphc import _runtime

    return tuple((KERNEL_DIR + "/" + source, register, tuple(ops))
                 for source, register, ops in _runtime.kernel_files())


@functools.lru_cache(maxsize=None)
def _op_files():
    owner = {}
    for path, _register, ops in kernel_table():
        for op in ops:
            if op in owner:
                raise AotError(f"op {op!r} is registered by two kernel files, {owner[op]} "
                               f"and {path}")
            owner[op] = path
    return owner


def kernel_file_for_op(op):
    """The kernel file (relative to the runtime folder) that registers ``op``'s CPU kernels."""
    if not isinstance(op, str):
        raise AotError(f"an op name must be a str, got {type(op).__name__}")
    path = _op_files().get(op)
    if path is None:
        raise AotError(f"op {quote(op)} has no CPU kernel file: no register function of "
                       "runtime/cpu/kernel_files.cc registers it, so an artifact cannot run it")
    return path


def _read(root, rel, needed_by):
    path = os.path.join(root, *rel.split("/"))
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        why = f" (needed by {needed_by})" if needed_by else ""
        raise AotError(f"runtime source {rel} is missing from {root}{why}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AotError(f"cannot read runtime source {path}: {e}") from None


def _resolve(root, including, name, what):
    """``name`` from ``including`` (both relative to root): first beside the including file,
    then from the runtime folder (the artifact's include path), as the compiler searches."""
    folder = os.path.dirname(including)
    for base in ((folder, "") if folder else ("",)):
        rel = os.path.normpath(os.path.join(base, name)).replace(os.sep, "/")
        if rel.startswith("../") or rel == ".." or os.path.isabs(rel):
            continue
        if os.path.isfile(os.path.join(root, *rel.split("/"))):
            return rel
    raise AotError(f"{including}: {what} {name!r} is not a file of the runtime sources in {root}")


def closure(start, root=None, companions=True):
    """Every runtime file reachable from the files ``start`` (relative to ``root``, default
    :func:`runtime_source_dir`) by ``#include "..."`` and, with ``companions``, by the
    ``// aot-sources:`` lines of what is reached: a sorted list, ``start`` included."""
    root = runtime_source_dir() if root is None else root
    seen = set()
    todo = [(rel, None) for rel in start]
    while todo:
        rel, needed_by = todo.pop()
        if rel in seen:
            continue
        text = _read(root, rel, needed_by)
        seen.add(rel)
        for name in _INCLUDE.findall(text):
            todo.append((_resolve(root, rel, name, "#include"), rel))
        if companions:
            for line in _COMPANIONS.findall(text):
                for name in line.split():
                    todo.append((_resolve(root, rel, name, "aot-sources file"), rel))
    return sorted(seen)


def select_sources(ops, root=None, base=BASE_SOURCES):
    """The runtime sources an artifact whose plan runs ``ops`` needs: a sorted list of paths
    relative to ``root`` (default :func:`runtime_source_dir`): ``base`` (every artifact's
    files), the kernel file of each op, and their :func:`closure`.  AotError for an op that no
    kernel file registers, or a source that is missing."""
    if isinstance(ops, (str, bytes)):
        raise AotError("select_sources expects a collection of op names, not one string")
    root = runtime_source_dir() if root is None else root
    kernels = sorted({kernel_file_for_op(op) for op in ops})
    return closure(list(base) + kernels, root)


def register_functions(files):
    """The register_* functions of the kernel files among ``files`` (paths as
    :func:`select_sources` returns them), in the registry's order: what the artifact's
    ``register_kernels`` calls."""
    chosen = set(files)
    return [register for path, register, _ops in kernel_table() if path in chosen]
