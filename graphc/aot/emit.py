"""The AOT emitter: a compiled plan or program as a C library source tree (docs/aot.md).

``emit_c(source, out_dir, name=None, embed_weights=False)`` writes::

    out_dir/
      <name>.h          the C API and every size as a macro (C89-compatible)
      <name>.cc         the plan as static tables, register_kernels, one straight-line function
                        per entry, the extern "C" API
      <name>.weights    the weights image (graphc/aot/weights.py)
      <name>_weights.S  with embed_weights: the image assembled into the library (.incbin)
      Makefile, CMakeLists.txt
      graphc/           the runtime sources the plan needs (graphc/aot/sources.py)

The artifact runs the runtime's own CPU kernels through their factories, prepared once over
caller-owned memory by the AOT runtime (runtime/aot/aot_runtime.h), so it computes the bits a
``Session`` computes.  The output is deterministic: the same plan gives a byte-identical tree
(no timestamps; no absolute paths except the BLAS defaults of the Makefile and CMakeLists.txt).
"""

import hashlib
import os
import shutil
from dataclasses import dataclass, field

import numpy as np

from graphc._load_blas import load_openblas
from graphc._proto import graphc_pb2 as pb
from graphc.aot import build_files, sources, weights
from graphc.aot.c_text import (
    check_name,
    comment_text,
    double_literal,
    int64_literal,
    name_from_stem,
    quoted,
    string_literal,
    uint64_literal,
    unique_ids,
)
from graphc.errors import AotError, ModelFormatError
from graphc.plan import Plan, compute_memory_report, validate_plan
from graphc.program import Program, load_plan_or_program, validate_program
from graphc.proto_enums import dtype_from_proto

ABI_VERSION = 1          # runtime/aot/tables.h kAbiVersion
ALIGNMENT = 64           # runtime/aot/tables.h kAlignment
KIND_VARIABLE, KIND_OPTIMIZER_STATE, KIND_CONSTANT = 0, 1, 2   # tables.h TensorKind
_ITEMSIZE = {1: 4, 2: 8, 3: 4, 4: 8, 5: 1}
_DTYPE_MACRO = {1: "FLOAT32", 2: "FLOAT64", 3: "INT32", 4: "INT64", 5: "BOOL"}
# AttrValue::Kind (runtime/plan.h), by the proto Attr's oneof field.
_ATTR_KIND = {"i": 0, "f": 1, "s": 2, "b": 3, "ints": 4, "floats": 5, "dtype": 6, "tensor": 7}
STATUS_NAMES = ("OK", "ARGUMENT", "ALIGNMENT", "SIZE", "WEIGHTS", "NOT_FOUND", "IO", "CHECKPOINT", "RUNTIME",
                "NO_MEMORY", "STATE")


@dataclass
class EmitResult:
    """What :func:`emit_c` wrote: paths are absolute; ``files`` relative to ``out_dir``, sorted."""
    out_dir: str
    name: str
    header: str
    source: str
    weights: str
    files: list = field(default_factory=list)
    embedded: bool = False

    def __repr__(self):
        return f"<EmitResult {self.name!r} in {self.out_dir!r}: {len(self.files)} files>"


def _pad(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _numel(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def _dtype_name(code):
    try:
        return dtype_from_proto(code)
    except KeyError:
        return f"dtype {code}"


def _shape_text(dims):
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def _where(prov):
    """The user's file:line of a step (the file's base name: no absolute path in the output)."""
    if not prov.file:
        return ""
    return f"{os.path.basename(prov.file)}:{prov.line}"


# -- the model: entries, persistent tensors, constants -------------------------------------------

@dataclass
class _Tensor:
    name: str
    kind: int
    dtype: int
    dims: tuple
    data: bytes
    offset: int = 0
    sha256: str = ""
    zero_init: bool = False

    @property
    def nbytes(self):
        return len(self.data)


@dataclass
class _Entry:
    name: str          # the entry's name ("main" for a plain plan: its table name is "")
    table_name: str
    ident: str         # upper-case identifier
    proto: object      # graphc_pb2.Plan
    constants: list    # the plan's constant index -> the model-wide index


class _Model:
    """A plan or program as the artifact sees it."""

    def __init__(self, source):
        if isinstance(source, Plan):
            proto = source.proto
            _refuse_data_parallel("main", proto)  # first: the clearest word for such a plan
            validate_plan(proto, "plan")
            self.plan_sha256 = hashlib.sha256(source.to_bytes()).hexdigest()
            plans = [("main", "", proto)]
            persistent = list(proto.persistent)
        elif isinstance(source, Program):
            for entry in source.proto.entries:
                _refuse_data_parallel(entry.name, entry.plan)
            validate_program(source.proto, "program")
            self.plan_sha256 = hashlib.sha256(source.to_bytes()).hexdigest()
            plans = [(e.name, e.name, e.plan) for e in source.proto.entries]
            persistent = list(source.proto.persistent)
        else:
            raise AotError(f"emit_c takes a gc.Plan, a gc.Program or a path to one, got {type(source).__name__}")
        for name, _, proto in plans:
            if proto.target and proto.target != "cpu":
                raise AotError(f"entry {name!r} is compiled for target {proto.target!r}; an AOT C artifact runs "
                               f"the CPU kernels only (compile with --target cpu)")
        _check_runtime(plans)
        self.persistent = self._persistent(plans, persistent)
        self.constants = []
        const_index = {}
        taken = {t.name for t in self.persistent}
        self.entries = []
        for ident, (name, table_name, proto) in zip(unique_ids([p[0] for p in plans]), plans):
            remap = []
            for i, t in enumerate(proto.constants):
                key = (t.dtype, tuple(t.dims), t.raw_data)
                k = const_index.get(key)
                if k is None:
                    k = const_index[key] = len(self.constants)
                    cname = self._constant_name(name, proto, i, len(plans) > 1)
                    if cname in taken:
                        cname = f"{cname} (constant {k})"
                    taken.add(cname)
                    self.constants.append(_Tensor(cname, KIND_CONSTANT, t.dtype, tuple(t.dims), bytes(t.raw_data)))
                remap.append(k)
            self.entries.append(_Entry(name, table_name, ident, proto, remap))
        self.state_bytes = self._layout(self.persistent, [KIND_VARIABLE, KIND_OPTIMIZER_STATE])
        self.variable_bytes = sum(_pad(t.nbytes) for t in self.persistent if t.kind == KIND_VARIABLE)
        self.optimizer_state_bytes = self.state_bytes - self.variable_bytes
        self.constant_bytes = self._layout(self.constants, [KIND_CONSTANT])
        self.arena_bytes = max(int(e.proto.arena_bytes) for e in self.entries)

    @staticmethod
    def _persistent(plans, variables):
        """Model variables (trainable ones and other model state such as batch-norm statistics)
        and optimizer state (not trainable, written by an OPTIMIZER step of some entry), as
        Session._model_variable_names tells them apart."""
        by_optimizer = set()
        for _, _, proto in plans:
            for step in proto.steps:
                if step.role == pb.OPTIMIZER:
                    for i in step.outputs:
                        v = proto.values[i]
                        if v.storage == pb.PERSISTENT:
                            by_optimizer.add(v.index)
        out = []
        for k, var in enumerate(variables):
            kind = KIND_VARIABLE if var.trainable or k not in by_optimizer else KIND_OPTIMIZER_STATE
            out.append(_Tensor(var.name, kind, var.dtype, tuple(var.dims), bytes(var.init.raw_data)))
        return out

    @staticmethod
    def _constant_name(entry, proto, i, several):
        for v in proto.values:
            if v.storage == pb.CONSTANT and v.index == i:
                return f"{entry}:{v.name}" if several else v.name
        return f"{entry}:constant {i}" if several else f"constant {i}"

    @staticmethod
    def _layout(tensors, kinds):
        """Offsets in their memory block: the kinds in order, each tensor 64-aligned."""
        offset = 0
        for kind in kinds:
            for t in tensors:
                if t.kind == kind:
                    t.offset = offset
                    offset += _pad(t.nbytes)
        return offset

    def ops(self):
        return sorted({s.op for e in self.entries for s in e.proto.steps})

    def memory_peak(self):
        """(lower bound bytes, peak step, its node, entry name) of the entry with the largest
        lower bound (the plans' memory reports, recomputed when absent)."""
        best = None
        for e in self.entries:
            report = compute_memory_report(e.proto)
            lb, step = report["lower_bound_bytes"], report["peak_step"]
            if best is None or lb > best[0]:
                node = e.proto.steps[step].node if 0 <= step < len(e.proto.steps) else ""
                best = (lb, step, node, e.name)
        return best


# The steps of a data-parallel plan (graphc/ops/collective.py) sum gradients over the ranks of the
# MPI or NCCL communicator that a Session joins; an artifact has no communicator and no launcher.
COLLECTIVE_OPS = ("allreduce_start", "allreduce_wait")


def _refuse_data_parallel(name, proto):
    """AotError for a plan compiled with data_parallel (metadata data_parallel.world_size) or
    holding collective steps."""
    steps = sorted({s.op for s in proto.steps if s.op in COLLECTIVE_OPS})
    world = proto.metadata.get("data_parallel.world_size")
    if steps or world is not None:
        what = f"world size {world}" if world is not None else "no recorded world size"
        raise AotError(f"entry {name!r} is a data-parallel plan ({what}; steps {', '.join(steps) or 'none'}): "
                       f"data-parallel plans run in a Session under mpirun (mpirun -np N python train.py); "
                       f"compile without data_parallel for an AOT C artifact")


def _check_runtime(plans):
    """The C++ validator on every entry's plan, when the extension is built: the artifact's
    runtime trusts its tables, so they must be what graphc's runtime accepts.  No memory limit:
    the artifact runs on another machine."""
    try:
        load_openblas()   # the extension links it (graphc/_load_blas.py)
        from graphc import _runtime
    except (ImportError, OSError):  # compiling models works without a built extension; so does emitting
        return
    for name, _, proto in plans:
        try:
            _runtime.validate_plan(proto, memory_limit=2 ** 64 - 1)
        except ValueError as e:
            raise ModelFormatError(f"entry {name!r}: {e}") from None


# -- text helpers -------------------------------------------------------------------------------

class _Arrays:
    """Static arrays of the .cc, identical ones shared."""

    def __init__(self):
        self.lines = []
        self._seen = {}

    def add(self, ctype, prefix, items):
        if not items:
            return "nullptr"
        key = (ctype, tuple(items))
        name = self._seen.get(key)
        if name is None:
            name = f"{prefix}{len(self._seen)}"
            self._seen[key] = name
            body = ", ".join(items)
            self.lines.append(f"static const {ctype} {name}[] = {{{body}}};")
        return name


def _int32s(arrays, xs):
    return arrays.add("int32_t", "x", [str(int(x)) for x in xs])


def _dims(arrays, dims):
    return arrays.add("int64_t", "d", [int64_literal(d) for d in dims])


# -- the .cc -------------------------------------------------------------------------------------

class _Source:
    def __init__(self, model, name, register_fns, embedded):
        self.m = model
        self.name = name
        self.register_fns = register_fns
        self.embedded = embedded
        self.arrays = _Arrays()
        self.body = []

    def attr_row(self, key, a):
        which = a.WhichOneof("value")
        if which not in _ATTR_KIND:
            raise AotError(f"attr {key!r} has no value set")
        kind = _ATTR_KIND[which]
        i, f, s, s_len, n, ints, floats = "INT64_C(0)", "0.0", "nullptr", "UINT64_C(0)", 0, "nullptr", "nullptr"
        if which == "i":
            i = int64_literal(a.i)
        elif which == "b":
            i = int64_literal(1 if a.b else 0)
        elif which == "dtype":
            i = int64_literal(a.dtype)
        elif which == "f":
            f = double_literal(a.f)
        elif which == "s":
            data = a.s.encode("utf-8")
            s, s_len = string_literal(data), uint64_literal(len(data))
        elif which == "ints":
            n = len(a.ints.values)
            ints = self.arrays.add("int64_t", "d", [int64_literal(x) for x in a.ints.values])
        elif which == "floats":
            n = len(a.floats.values)
            floats = self.arrays.add("double", "f", [double_literal(x) for x in a.floats.values])
        return (f"{{{string_literal(key)}, {kind}, {i}, {f}, {s}, {s_len}, {n}, {ints}, {floats}}}")

    def value_ptr(self, e, idx):
        """The C expression of value idx's bytes (its root's) in entry e's function."""
        v = e.proto.values[idx]
        if v.storage == pb.VIEW:
            v = e.proto.values[v.alias_of]
        if v.storage == pb.ARENA:
            return f"A + {v.offset}"
        if v.storage == pb.PERSISTENT:
            return f"S + {self.m.persistent[v.index].offset}"
        return f"C + {self.m.constants[e.constants[v.index]].offset}"

    def persistent_root(self, e, idx):
        v = e.proto.values[idx]
        if v.storage == pb.VIEW:
            v = e.proto.values[v.alias_of]
        return v.index if v.storage == pb.PERSISTENT else None

    def entry_tables(self, k, e):
        p = e.proto
        rows = []
        for v in p.values:
            index = v.index
            if v.storage == pb.CONSTANT:
                index = e.constants[v.index]
            rows.append(f"  {{{string_literal(v.name)}, {v.dtype}, {v.storage}, {uint64_literal(v.offset)}, "
                        f"{uint64_literal(v.nbytes)}, {index}, {v.alias_of}, {len(v.dims)}, "
                        f"{_dims(self.arrays, v.dims)}}},")
        values = f"e{k}_values"
        self.body.append(f"static const graphc::aot::ValueTable {values}[] = {{")
        self.body.extend(rows)
        self.body.append("};")
        steps = "nullptr"
        if p.steps:
            srows = []
            for s, step in enumerate(p.steps):
                attrs = "nullptr"
                keys = sorted(step.attrs.keys(), key=lambda x: x.encode("utf-8"))
                if keys:
                    attrs = f"e{k}_s{s}_attrs"
                    self.body.append(f"static const graphc::aot::AttrTable {attrs}[] = {{")
                    self.body.extend("  " + self.attr_row(key, step.attrs[key]) + "," for key in keys)
                    self.body.append("};")
                srows.append(f"  {{{string_literal(step.op)}, {string_literal(step.node)}, "
                             f"{string_literal(_where(step.provenance))}, {len(step.inputs)}, "
                             f"{_int32s(self.arrays, step.inputs)}, {len(step.outputs)}, "
                             f"{_int32s(self.arrays, step.outputs)}, {len(step.workspaces)}, "
                             f"{_int32s(self.arrays, step.workspaces)}, {len(keys)}, {attrs}}},")
            steps = f"e{k}_steps"
            self.body.append(f"static const graphc::aot::StepTable {steps}[] = {{")
            self.body.extend(srows)
            self.body.append("};")
        training = int(any(self.persistent_root(e, i) is not None for st in p.steps for i in st.outputs))
        return (f"  {{{string_literal(e.table_name)}, {training}, {len(p.values)}, {values}, {len(p.steps)}, "
                f"{steps}, {len(p.feeds)}, {_int32s(self.arrays, p.feeds)}, {len(p.fetches)}, "
                f"{_int32s(self.arrays, p.fetches)}, {uint64_literal(p.arena_bytes)}}},")

    def tensor_rows(self, tensors):
        rows = []
        for t in tensors:
            rows.append(f"  {{{string_literal(t.name)}, {t.kind}, {t.dtype}, {len(t.dims)}, "
                        f"{_dims(self.arrays, t.dims)}, {uint64_literal(t.offset)}, {uint64_literal(t.nbytes)}, "
                        f"{string_literal(t.sha256)}, {int(t.zero_init)}}},")
        return rows

    def entry_function(self, k, e):
        p = e.proto
        L = [f"// entry {quoted(e.name)} (index {k}): {len(p.steps)} steps",
             f"void run_{e.ident.lower()}(graphc::aot::Context& c, const void* const* feeds, void* const* fetches) {{",
             "  uint8_t* const A = c.arena;",
             "  uint8_t* const S = c.state;",
             "  const uint8_t* const C = c.constants;",
             f"  const graphc::Kernel* const k = c.kernels({k});",
             "  uint64_t* const v = c.versions();",
             "  (void)A; (void)S; (void)C; (void)k; (void)v; (void)feeds; (void)fetches;"]
        for j, idx in enumerate(p.feeds):
            val = p.values[idx]
            desc = f"feed {j} {quoted(val.name)} {_dtype_name(val.dtype)} {_shape_text(val.dims)}"
            r = self.persistent_root(e, idx)
            if r is not None:
                L.append(f"  v[{r}] = graphc::aot::next_version();  // {desc} is persistent")
            if val.nbytes:
                L.append(f"  std::memcpy({self.value_ptr(e, idx)}, feeds[{j}], {val.nbytes});  // {desc}")
            else:
                L.append(f"  // {desc}: no bytes")
        for s, step in enumerate(p.steps):
            bumps = []
            for i in step.outputs:
                r = self.persistent_root(e, i)
                if r is not None and r not in bumps:
                    bumps.append(r)
            what = f"{comment_text(step.op, 60)} {quoted(step.node, 100)}"
            if bumps:
                names = ", ".join(quoted(self.m.persistent[r].name, 60) for r in bumps)
                pre = " ".join(f"v[{r}] = graphc::aot::next_version();" for r in bumps)
                L.append(f"  {pre} c.at = {s}; k[{s}]();  // {what} writes {names}")
            else:
                L.append(f"  c.at = {s}; k[{s}]();  // {what}")
        for j, idx in enumerate(p.fetches):
            val = p.values[idx]
            desc = f"fetch {j} {quoted(val.name)} {_dtype_name(val.dtype)} {_shape_text(val.dims)}"
            if val.nbytes:
                L.append(f"  if (fetches && fetches[{j}]) std::memcpy(fetches[{j}], {self.value_ptr(e, idx)}, "
                         f"{val.nbytes});  // {desc}")
            else:
                L.append(f"  // {desc}: no bytes")
        L.append("}")
        return L

    def text(self):
        m, n = self.m, self.name
        out = [f"// {n}.cc - the graphc AOT artifact {quoted(n)}: its plan as static tables, one straight-line",
               f"// function per entry, and the C API of {n}.h.  Generated by `graphc compile --emit c`; do not edit.",
               f"// Plan sha256 {m.plan_sha256}.",
               "#include <cstdint>",
               "#include <cstring>",
               "",
               f"#include \"{n}.h\"",
               "#include \"aot/aot_runtime.h\"",
               "#include \"aot/tables.h\"",
               "#include \"kernel_registry.h\"",
               "",
               "namespace {", ""]
        entry_rows = [self.entry_tables(k, e) for k, e in enumerate(m.entries)]
        self.body.append("static const graphc::aot::EntryTable entries[] = {")
        self.body.extend(entry_rows)
        self.body.append("};")
        persistent = "nullptr"
        if m.persistent:
            persistent = "persistent"
            self.body.append("static const graphc::aot::TensorTable persistent[] = {")
            self.body.extend(self.tensor_rows(m.persistent))
            self.body.append("};")
        constants = "nullptr"
        if m.constants:
            constants = "constants"
            self.body.append("static const graphc::aot::TensorTable constants[] = {")
            self.body.extend(self.tensor_rows(m.constants))
            self.body.append("};")
        out += ["// Shared arrays (dims, indices, attr lists)."] + self.arrays.lines + [""]
        out += self.body + [""]
        out.append("// The kernels of exactly the runtime/cpu files this artifact ships.")
        out.append("void register_kernels(graphc::KernelRegistry& r) {")
        out.extend(f"  graphc::{fn}(r);" for fn in self.register_fns)
        out.append("  (void)r;")
        out += ["}", ""]
        if self.embedded:
            out += ["}  // namespace", "",
                    "// The weights image, assembled into the library by " + n + "_weights.S (.incbin).",
                    f"extern \"C\" __attribute__((visibility(\"hidden\"))) const unsigned char "
                    f"{n}_graphc_weights_begin[];",
                    f"extern \"C\" __attribute__((visibility(\"hidden\"))) const unsigned char "
                    f"{n}_graphc_weights_end[];",
                    "", "namespace {", ""]
            begin, end = f"{n}_graphc_weights_begin", f"{n}_graphc_weights_end"
        else:
            begin = end = "nullptr"
        out += ["const graphc::aot::ModelTable model = {",
                f"  {ABI_VERSION}u, {string_literal(n)}, {string_literal(m.plan_sha256)},",
                f"  {uint64_literal(m.arena_bytes)}, {uint64_literal(m.state_bytes)}, "
                f"{uint64_literal(m.constant_bytes)},",
                f"  {len(m.persistent)}, {persistent}, {len(m.constants)}, {constants},",
                f"  {len(m.entries)}, entries, register_kernels, {begin}, {end},",
                "};", ""]
        for k, e in enumerate(m.entries):
            out += self.entry_function(k, e) + [""]
        fns = ", ".join(f"run_{e.ident.lower()}" for e in m.entries)
        out += [f"const graphc::aot::EntryFn entry_fns[{len(m.entries)}] = {{{fns}}};", "",
                "}  // namespace", ""]
        out += _c_api(n, m)
        return "\n".join(out) + "\n"


def _c_api(n, m):
    N = n.upper()
    L = ["// The C handle is the runtime's Context (an opaque type to C).",
         f"struct {n}_context;",
         "namespace {",
         f"graphc::aot::Context* ctx_of({n}_context* c) {{ return reinterpret_cast<graphc::aot::Context*>(c); }}",
         f"const graphc::aot::Context* ctx_of(const {n}_context* c) {{",
         "  return reinterpret_cast<const graphc::aot::Context*>(c);",
         "}",
         "}  // namespace", "",
         "extern \"C\" {", "",
         f"int {n}_create({n}_context** out, void* arena, size_t arena_bytes, void* state, size_t state_bytes,",
         "               void* constants, size_t constant_bytes, int threads) {",
         "  if (out == nullptr) {",
         f"    graphc::aot::set_thread_error(\"{n}_create: out is NULL\");",
         f"    return {N}_E_ARGUMENT;",
         "  }",
         "  graphc::aot::Context* c = nullptr;",
         "  const int status = graphc::aot::create_context(&model, &c, arena, arena_bytes, state, state_bytes,",
         "                                                 constants, constant_bytes, threads);",
         f"  *out = status == 0 ? reinterpret_cast<{n}_context*>(c) : nullptr;",
         "  return status;",
         "}", "",
         f"void {n}_destroy({n}_context* ctx) {{ graphc::aot::destroy_context(ctx_of(ctx)); }}", "",
         f"const char* {n}_last_error(const {n}_context* ctx) {{",
         "  return ctx == nullptr ? graphc::aot::thread_error() : ctx_of(ctx)->last_error();",
         "}", ""]

    def guarded(sig, call):
        return [sig + " {",
                "  if (ctx == nullptr) {",
                f"    graphc::aot::set_thread_error(\"{sig.split('(')[0].split()[-1]}: ctx is NULL\");",
                f"    return {N}_E_ARGUMENT;",
                "  }",
                f"  return ctx_of(ctx)->{call};",
                "}", ""]

    L += guarded(f"int {n}_load_weights({n}_context* ctx, const char* path)", "load_weights_file(path)")
    L += guarded(f"int {n}_load_weights_from_memory({n}_context* ctx, const void* data, size_t nbytes)",
                 "load_weights_memory(data, nbytes)")
    L += guarded(f"int {n}_load_embedded_weights({n}_context* ctx)", "load_embedded_weights()")
    L += [f"int {n}_run({n}_context* ctx, int entry, const void* const* feeds, void* const* fetches) {{",
          f"  const graphc::aot::EntryFn fn = entry >= 0 && entry < {len(m.entries)} ? entry_fns[entry] : nullptr;",
          "  return graphc::aot::run_entry(ctx_of(ctx), entry, feeds, fetches, fn);",
          "}", ""]
    for k, e in enumerate(m.entries):
        L += [f"int {n}_run_{e.ident.lower()}({n}_context* ctx, const void* const* feeds, void* const* fetches) {{",
              f"  return graphc::aot::run_entry(ctx_of(ctx), {k}, feeds, fetches, "
              f"run_{e.ident.lower()});",
              "}", ""]
    L += guarded(f"int {n}_read_variable({n}_context* ctx, const char* name, void* dst, size_t nbytes)",
                 "read_variable(name, dst, nbytes)")
    L += guarded(f"int {n}_write_variable({n}_context* ctx, const char* name, const void* src, size_t nbytes)",
                 "write_variable(name, src, nbytes)")
    L += guarded(f"int {n}_variable_info(const {n}_context* ctx, int index, const char** name, int* dtype, "
                 f"int* ndim, const int64_t** dims, size_t* nbytes)",
                 "variable_info(index, name, dtype, ndim, dims, nbytes)")
    L += guarded(f"int {n}_save_checkpoint({n}_context* ctx, const char* path)", "save_checkpoint(path)")
    L += guarded(f"int {n}_load_checkpoint({n}_context* ctx, const char* path)", "load_checkpoint(path)")
    L += ["}  // extern \"C\""]
    return L


# -- the header ----------------------------------------------------------------------------------

def _header(model, name):
    m, n, N = model, name, name.upper()
    lb, peak_step, peak_node, peak_entry = m.memory_peak()
    names = ", ".join(quoted(e.name, 60) for e in m.entries)
    L = [f"/* {n}.h - the C API of the graphc AOT artifact {quoted(n)} (generated by `graphc compile --emit c`;",
         " * do not edit).  docs/aot.md describes the API in full.",
         " *",
         f" * Entries: {names}.",
         " * Memory: the caller owns three blocks, each aligned to " + N + "_ALIGNMENT bytes: the arena",
         " * (" + N + "_ARENA_BYTES, scratch of a run), the state (" + N + "_STATE_BYTES: the variables, then the",
         " * optimizer state) and the constants (" + N + "_CONSTANT_BYTES).  A 0-byte block may be NULL.",
         " * Order: create, load weights (a file, memory or the embedded image), then run entries, read and",
         " * write variables, save and load checkpoints (numpy .npz, the format of Session.save_checkpoint).",
         " * Every function returns " + N + "_OK (0) or an error status; " + n + "_last_error(ctx) says what",
         " * went wrong (" + n + "_last_error(NULL): why " + n + "_create failed, per thread).  No exception",
         " * crosses the API and an entry call allocates no memory.",
         " * Threads: one context per thread.  Process-wide, shared by every context: the OpenBLAS thread",
         " * count (set to 1 by every BLAS call: the products run on the CPU worker pool), the CPU worker",
         " * pool and the version counter.  `threads` = the threads of gc.Session(..., threads=) for",
         " * identical bits.",
         " */",
         f"#ifndef {N}_H_",
         f"#define {N}_H_",
         "",
         "#include <stddef.h>",
         "#include <stdint.h>",
         "",
         f"#define {N}_ABI_VERSION {ABI_VERSION}",
         f"#define {N}_PLAN_SHA256 \"{m.plan_sha256}\"",
         f"#define {N}_ALIGNMENT {ALIGNMENT}",
         f"#define {N}_ARENA_BYTES {m.arena_bytes}u  /* lower bound {lb} bytes; peak at step {peak_step} "
         f"({quoted(peak_node, 60)}) of entry {quoted(peak_entry, 60)} */",
         f"#define {N}_VARIABLE_BYTES {m.variable_bytes}u  /* model variables (each padded to {ALIGNMENT}) */",
         f"#define {N}_OPTIMIZER_STATE_BYTES {m.optimizer_state_bytes}u  /* optimizer state (each padded to "
         f"{ALIGNMENT}) */",
         f"#define {N}_STATE_BYTES {m.state_bytes}u  /* = {N}_VARIABLE_BYTES + {N}_OPTIMIZER_STATE_BYTES */",
         f"#define {N}_CONSTANT_BYTES {m.constant_bytes}u",
         f"#define {N}_NUM_VARIABLES {len(m.persistent)}  /* every persistent tensor (variables + optimizer state) */",
         f"#define {N}_NUM_ENTRIES {len(m.entries)}",
         ""]
    for code in sorted(_DTYPE_MACRO):
        L.append(f"#define {N}_{_DTYPE_MACRO[code]} {code}")
    L.append("")
    for k, s in enumerate(STATUS_NAMES):
        L.append(f"#define {N}_OK 0" if k == 0 else f"#define {N}_E_{s} {k}")
    L.append("")
    if m.persistent:
        L.append("/* Persistent tensors (index: name, kind, dtype, shape, offset in the state block):")
        for k, t in enumerate(m.persistent):
            kind = "variable" if t.kind == KIND_VARIABLE else "optimizer state"
            L.append(f" *   {k}: {quoted(t.name, 100)} {kind} {_dtype_name(t.dtype)} {_shape_text(t.dims)} "
                     f"at {t.offset}")
        L.append(" */")
        L.append("")
    for k, e in enumerate(m.entries):
        p, E = e.proto, f"{N}_{e.ident}"
        kind = "training" if any(v.storage == pb.PERSISTENT for st in p.steps for i in st.outputs
                                 for v in [p.values[p.values[i].alias_of] if p.values[i].storage == pb.VIEW
                                           else p.values[i]]) else "inference"
        L.append(f"/* entry {quoted(e.name, 100)} (index {k}): {kind} */")
        L.append(f"#define {N}_ENTRY_{e.ident} {k}")
        for what, idxs in (("FEED", p.feeds), ("FETCH", p.fetches)):
            L.append(f"#define {E}_NUM_{'FEEDS' if what == 'FEED' else 'FETCHES'} {len(idxs)}")
            ids = unique_ids([p.values[i].name for i in idxs])
            for j, (idx, ident) in enumerate(zip(idxs, ids)):
                v = p.values[idx]
                M = f"{E}_{what}_{ident}"
                L.append(f"#define {M} {j}  /* {quoted(v.name, 100)} {_dtype_name(v.dtype)} {_shape_text(v.dims)} */")
                L.append(f"#define {M}_BYTES {v.nbytes}u")
                L.append(f"#define {M}_DTYPE {N}_{_DTYPE_MACRO[v.dtype]}")
                L.append(f"#define {M}_NDIM {len(v.dims)}")
                shape = ", ".join(str(d) for d in v.dims) if v.dims else "0"
                note = "  /* ndim 0: a scalar, no dims */" if not v.dims else ""
                L.append(f"#define {M}_SHAPE {{{shape}}}{note}")
        L.append("")
    L += ["#if defined(__GNUC__) || defined(__clang__)",
          f"#define {N}_API __attribute__((visibility(\"default\")))",
          "#else",
          f"#define {N}_API",
          "#endif",
          "",
          "#ifdef __cplusplus",
          "extern \"C\" {",
          "#endif",
          "",
          f"typedef struct {n}_context {n}_context;",
          "",
          "/* A context over caller-owned memory (alignment and sizes checked; threads >= 1).  On failure",
          f"   *out is NULL and {n}_last_error(NULL) tells why (per thread). */",
          f"{N}_API int {n}_create({n}_context** out, void* arena, size_t arena_bytes, void* state, "
          f"size_t state_bytes,",
          f"{' ' * (len(N) + 17 + len(n))}void* constants, size_t constant_bytes, int threads);",
          f"{N}_API void {n}_destroy({n}_context* ctx);",
          "/* \"\" when the last call on ctx succeeded. */",
          f"{N}_API const char* {n}_last_error(const {n}_context* ctx);",
          "/* The weights image (sizes and per-tensor sha256 checked; all or nothing). */",
          f"{N}_API int {n}_load_weights({n}_context* ctx, const char* path);",
          f"{N}_API int {n}_load_weights_from_memory({n}_context* ctx, const void* data, size_t nbytes);",
          f"/* {N}_E_WEIGHTS when the artifact was emitted without --embed-weights. */",
          f"{N}_API int {n}_load_embedded_weights({n}_context* ctx);",
          "/* feeds[k]: the bytes of feed k (NULL only for a 0-byte feed).  fetches may be NULL (nothing",
          "   copied) and any fetches[k] may be NULL (skipped). */",
          f"{N}_API int {n}_run({n}_context* ctx, int entry, const void* const* feeds, void* const* fetches);"]
    for e in m.entries:
        L.append(f"{N}_API int {n}_run_{e.ident.lower()}({n}_context* ctx, const void* const* feeds, "
                 f"void* const* fetches);  /* entry {quoted(e.name, 60)} */")
    L += ["/* Variables by name; nbytes must equal the variable's.  A write is seen by the next run. */",
          f"{N}_API int {n}_read_variable({n}_context* ctx, const char* name, void* dst, size_t nbytes);",
          f"{N}_API int {n}_write_variable({n}_context* ctx, const char* name, const void* src, size_t nbytes);",
          f"/* index < {N}_NUM_VARIABLES; any out pointer may be NULL. */",
          f"{N}_API int {n}_variable_info(const {n}_context* ctx, int index, const char** name, int* dtype, "
          f"int* ndim,",
          f"{' ' * (len(N) + 24 + len(n))}const int64_t** dims, size_t* nbytes);",
          "/* Every persistent tensor as numpy .npz (Session.save_checkpoint's format), written atomically;",
          "   loading is strict and all-or-nothing. */",
          f"{N}_API int {n}_save_checkpoint({n}_context* ctx, const char* path);",
          f"{N}_API int {n}_load_checkpoint({n}_context* ctx, const char* path);",
          "",
          "#ifdef __cplusplus",
          "}  /* extern \"C\" */",
          "#endif",
          "",
          f"#endif  /* {N}_H_ */"]
    seen = set()
    for line in L:
        if line.startswith("#define ") and not line.startswith(f"#define {N}_API"):
            macro = line.split()[1]
            if macro in seen:   # e.g. entries named "entry" and "num_feeds": ENTRY_NUM_FEEDS twice
                raise AotError(f"the names of the plan make the header macro {macro} twice; rename an entry, "
                               f"feed or fetch")
            seen.add(macro)
    return "\n".join(L) + "\n"


def _embed_asm(name):
    """<name>_weights.S: the weights image in the library's read-only data (.incbin, searched in
    the assembler's include path: the artifact folder, given with -Wa,-I)."""
    b, e = f"{name}_graphc_weights_begin", f"{name}_graphc_weights_end"
    return f"""/* {name}_weights.S - the weights image {name}.weights assembled into the library (generated by
   `graphc compile --emit c --embed-weights`; do not edit).  .incbin copies the file's bytes, so a
   large model assembles in about the time it takes to read it. */
#if defined(__APPLE__)
  .const
  .p2align 6
  .globl _{b}
  .private_extern _{b}
_{b}:
  .incbin "{name}.weights"
  .globl _{e}
  .private_extern _{e}
_{e}:
  .byte 0
#else
  .section .rodata
  .p2align 6
  .globl {b}
  .hidden {b}
  .type {b}, @object
{b}:
  .incbin "{name}.weights"
  .globl {e}
  .hidden {e}
  .type {e}, @object
{e}:
  .byte 0
  .section .note.GNU-stack,"",@progbits
#endif
"""


# -- writing -------------------------------------------------------------------------------------

def _write_text(path, text):
    """Write text unless the file already holds exactly it (so make rebuilds nothing)."""
    data = text.encode("utf-8")
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    with open(path, "wb") as f:
        f.write(data)


def _resolve(source, name):
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        loaded = load_plan_or_program(path)
        stem = os.path.splitext(os.path.basename(path))[0]
        return loaded, (check_name(name) if name is not None else name_from_stem(stem))
    return source, (check_name(name) if name is not None else "model")


def emit_c(source, out_dir, name=None, embed_weights=False):
    """Write the AOT C artifact of ``source`` (a gc.Plan, a gc.Program, or a path to a saved
    plan or program) into ``out_dir`` (created if needed).  ``name``: the C prefix of every
    function and macro (a lower-case C identifier; default: the file stem, or "model").
    ``embed_weights``: also assemble the weights image into the library (``<name>_weights.S``).
    Returns an :class:`EmitResult`.  Raises AotError (bad name, non-CPU target, an op no kernel
    file registers) or ModelFormatError (an invalid plan)."""
    loaded, name = _resolve(source, name)
    model = _Model(loaded)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise AotError(f"output folder {out_dir!r} exists and is not a folder")
    os.makedirs(out_dir, exist_ok=True)

    runtime_dir = sources.runtime_source_dir()
    selected = sources.select_sources(model.ops())
    register_fns = sources.register_functions(selected)

    weights_path = os.path.join(out_dir, f"{name}.weights")
    tensors = ([(t.name, t.kind, t.dtype, list(t.dims), None if _all_zero(t.data) else t.data)
                for t in model.persistent]
               + [(t.name, t.kind, t.dtype, list(t.dims), None if _all_zero(t.data) else t.data)
                  for t in model.constants])
    records = weights.write_weights(weights_path, model.plan_sha256, tensors)
    for t, (offset, nbytes, sha, zero) in zip(model.persistent + model.constants, records):
        if (offset, nbytes) != (t.offset, t.nbytes):  # one layout rule, written twice: they must agree
            raise AotError(f"internal error: tensor {t.name!r} is at {t.offset} ({t.nbytes} bytes) in the tables "
                           f"but at {offset} ({nbytes} bytes) in the weights layout")
        t.sha256, t.zero_init = sha, bool(zero)

    files = [f"{name}.h", f"{name}.cc", f"{name}.weights", "Makefile", "CMakeLists.txt"]
    _write_text(os.path.join(out_dir, f"{name}.h"), _header(model, name))
    _write_text(os.path.join(out_dir, f"{name}.cc"), _Source(model, name, register_fns, embed_weights).text())
    asm_path = os.path.join(out_dir, f"{name}_weights.S")
    if embed_weights:
        files.append(f"{name}_weights.S")
        _write_text(asm_path, _embed_asm(name))
    elif os.path.isfile(asm_path):   # left by an earlier --embed-weights emit: no longer built
        os.remove(asm_path)
    cc_sources = [f"graphc/{p}" for p in selected if p.endswith(".cc")]
    _write_text(os.path.join(out_dir, "Makefile"), build_files.makefile(name, cc_sources, embed_weights))
    _write_text(os.path.join(out_dir, "CMakeLists.txt"), build_files.cmakelists(name, cc_sources, embed_weights))
    for rel in selected:
        src = os.path.join(runtime_dir, rel)
        dst = os.path.join(out_dir, "graphc", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            shutil.copy2(src, dst)
        except OSError as e:
            raise AotError(f"cannot copy the runtime source {rel!r} from {runtime_dir!r}: {e.strerror or e}") from None
        files.append(f"graphc/{rel}")
    _remove_stale_sources(os.path.join(out_dir, "graphc"), set(selected))
    return EmitResult(out_dir=out_dir, name=name, header=os.path.join(out_dir, f"{name}.h"),
                      source=os.path.join(out_dir, f"{name}.cc"), weights=weights_path, files=sorted(files),
                      embedded=bool(embed_weights))


def _remove_stale_sources(folder, keep):
    """Runtime sources an earlier emit into the same folder shipped and this plan does not need
    (only .h/.cc/.inc files under out/graphc/, which the emitter owns)."""
    for dirpath, _, names in os.walk(folder):
        for fn in names:
            rel = os.path.relpath(os.path.join(dirpath, fn), folder).replace(os.sep, "/")
            if rel not in keep and fn.endswith((".h", ".cc", ".inc")):
                os.remove(os.path.join(dirpath, fn))


def _all_zero(data):
    return not np.frombuffer(data, dtype=np.uint8).any() if data else True
