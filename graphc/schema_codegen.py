"""Generate the C++ twin of the op registry: ``runtime/op_schema.h``.

The Python registry (graphc/registry.py, graphc/ops/*.py) is the one source of every
op's attrs (kind, default, doc), input dtypes and properties.  The runtime needs some
of it too — kernels read attrs with their defaults, the plan validator asks whether an
op may write its output over a dying input — so this module writes it out as a C++
header, committed beside the runtime.  ``tests/test_op_schema.py`` fails when the
committed header differs from what the registry generates now.

    python -m graphc.schema_codegen            # rewrite runtime/op_schema.h
    python -m graphc.schema_codegen --check    # exit 1 when it is stale

The header holds, in namespace ``graphc::schema``, one ``OpInfo`` per op (inputs with
their allowed dtypes as bit masks, attrs with kinds, flags) and ``find_op(name)``; and
in namespace ``graphc::attrs`` one struct per op with attrs, each member typed and
initialised from the step's attrs with the registry's default, so a kernel writes
``attrs::Concat a(args); a.axis`` and never spells a default itself.
"""

import math
import os
import sys

import graphc.ops  # noqa: F401  (declares every op in the registry)
from graphc import registry
from graphc.fileio import atomic_write
from graphc.registry import REQUIRED

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime", "op_schema.h")

_CPP_DTYPE = {"float32": "F32", "float64": "F64", "int32": "I32", "int64": "I64", "bool": "Bool"}
_KIND = {"int": "Int", "float": "Float", "str": "String", "bool": "Bool", "ints": "Ints", "floats": "Floats",
         "dtype": "DTypeKind", "tensor": "Tensor"}


def _camel(name):
    return "".join(part.capitalize() for part in name.split("_"))


def _mask(allowed):
    return " | ".join(f"bit(DType::{_CPP_DTYPE[d]})" for d in allowed) or "0u"


def _cstr(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _float(x):
    if math.isnan(x):
        return "std::numeric_limits<double>::quiet_NaN()"
    if math.isinf(x):
        return ("" if x > 0 else "-") + "std::numeric_limits<double>::infinity()"
    return repr(float(x))


def _comment(text):
    return " ".join(text.split())


def _op_info(op):
    c = _camel(op.name)
    lines = []
    if op.inputs:
        lines.append(f"inline constexpr InputInfo k{c}Inputs[] = {{")
        for i in range(len(op.inputs)):
            name, allowed, tv = op.input_spec(i)
            lines.append(f"    {{{_cstr(name)}, {_cstr(tv or '')}, {_mask(allowed)}}},")
        lines.append("};")
    if op.attrs:
        lines.append(f"inline constexpr AttrInfo k{c}Attrs[] = {{")
        for name, spec in op.attrs.items():
            lines.append(f"    {{{_cstr(name)}, AttrValue::{_KIND[spec.kind]}, "
                         f"{'true' if spec.required else 'false'}, {'true' if spec.optional else 'false'}}},")
        lines.append("};")
    if op.inplace:
        pairs = ", ".join(f"{o}, {i}" for o, i in sorted(op.inplace.items()))
        lines.append(f"inline constexpr int k{c}Inplace[] = {{{pairs}}};")
    if op.alias and op.alias != registry.ALIAS_EACH:
        pairs = ", ".join(f"{o}, {i}" for o, i in sorted(op.alias.items()))
        lines.append(f"inline constexpr int k{c}Alias[] = {{{pairs}}};")
    return lines


def _op_row(op):
    c = _camel(op.name)
    inputs = f"k{c}Inputs" if op.inputs else "nullptr"
    attrs = f"k{c}Attrs" if op.attrs else "nullptr"
    inplace = f"k{c}Inplace" if op.inplace else "nullptr"
    b = lambda v: "true" if v else "false"  # noqa: E731
    kernels = _mask_devices(op.kernels)
    each = op.alias == registry.ALIAS_EACH
    alias = f"k{c}Alias" if op.alias and not each else "nullptr"
    num_alias = 0 if each else len(op.alias)
    return (f"    {{{_cstr(op.name)}, {inputs}, {len(op.inputs)}, {b(op.variadic)}, {attrs}, {len(op.attrs)}, "
            f"{inplace}, {len(op.inplace)}, {_mask(op.dispatch_dtypes)}, {b(op.elementwise)}, {b(op.view)}, "
            f"{b(op.constant)}, {b(op.differentiable)}, {kernels}, {alias}, {num_alias}, {b(each)}, "
            f"{b(op.contiguous_inputs)}, {_SCHEDULE[op.schedule]}}},")


_SCHEDULE = {None: "Schedule::Any", "asap": "Schedule::Asap", "alap": "Schedule::Alap"}


DEVICES = ("cpu", "cuda")


def _mask_devices(devices):
    return " | ".join(f"kDevice{d.capitalize()}" for d in devices) or "0u"


def _attr_member(op, name, spec):
    """(declaration lines, initialiser lines) of one attr in the op's attrs struct."""
    k, d = spec.kind, spec.default
    doc = f"  // {_comment(spec.doc)}" if spec.doc else ""
    req = spec.default is REQUIRED
    decl, init = [], []
    if k == "tensor":
        return [f"  // {name}: a tensor attr, stored by the compiler as constant data{doc}"], []
    if spec.optional:
        decl.append(f"  bool has_{name} = false;  // false: the attr is None")
        init.append(f"    has_{name} = a.has({_cstr(name)});")
    ctype, read = {
        "int": ("int64_t", "a.attr_int({n})"),
        "float": ("double", "a.attr_float({n})"),
        "str": ("std::string", "a.attr_string({n}, std::string())"),
        "bool": ("bool", "a.attr_bool({n}, false)"),
        "ints": ("std::vector<int64_t>", "a.attr_ints({n})"),
        "floats": ("std::vector<double>", "a.attr_floats({n})"),
        "dtype": ("DType", "a.attr_dtype({n}, DType::Invalid)"),
    }[k]
    if req or d is None:
        default = ""
    elif k == "int":
        default = f" = {int(d)}"
    elif k == "float":
        default = f" = {_float(d)}"
    elif k == "str":
        default = f" = {_cstr(d)}"
    elif k == "bool":
        default = f" = {'true' if d else 'false'}"
    elif k == "ints":
        default = " = {" + ", ".join(str(int(v)) for v in d) + "}"
    elif k == "floats":
        default = " = {" + ", ".join(_float(v) for v in d) + "}"
    elif k == "dtype":
        default = f" = DType::{_CPP_DTYPE[d]}"
    if k in ("int", "bool") and req:
        default = " = 0" if k == "int" else " = false"
    if k == "dtype" and (req or d is None):
        default = " = DType::Invalid"
    decl.append(f"  {ctype} {name}{default};{doc}")
    n = _cstr(name)
    if req:
        init.append(f"    if (!a.has({n})) a.fail(\"missing attr '{name}'\");")
        init.append(f"    {name} = {read.format(n=n)};")
    else:
        init.append(f"    if (a.has({n})) {name} = {read.format(n=n)};")
    return decl, init


def _attrs_struct(op):
    c = _camel(op.name)
    lines = [f"// {op.name}: {_comment(op.doc)[:150]}", f"struct {c} {{"]
    inits = []
    for name, spec in op.attrs.items():
        decl, init = _attr_member(op, name, spec)
        lines += decl
        inits += init
    if inits:
        lines.append(f"  explicit {c}(const KernelArgs& a) {{")
        lines += inits
        lines.append("  }")
    else:
        lines.append(f"  explicit {c}(const KernelArgs&) {{}}")
    lines.append("};")
    return lines


def generate():
    """The header's text for the current registry."""
    ops = registry.all_ops()
    out = [
        "// op_schema.h — GENERATED from graphc's op registry by graphc/schema_codegen.py.",
        "// DO NOT EDIT: change the op's declaration in graphc/ops/*.py and run",
        "//     python -m graphc.schema_codegen",
        "// tests/test_op_schema.py fails when this file is stale.",
        "#pragma once",
        "",
        "#include <cstdint>",
        "#include <cstring>",
        "#include <limits>",
        "#include <string>",
        "#include <vector>",
        "",
        "#include \"kernel_registry.h\"",
        "#include \"plan.h\"",
        "",
        "namespace graphc {",
        "namespace schema {",
        "",
        "constexpr uint32_t bit(DType t) { return 1u << static_cast<int32_t>(t); }",
        "constexpr uint32_t kDeviceCpu = 1u;",
        "constexpr uint32_t kDeviceCuda = 2u;",
        "",
        "enum class Schedule : uint8_t { Any, Asap, Alap };",
        "",
        "struct InputInfo {",
        "  const char* name;",
        "  const char* type_var;  // inputs naming one type var share one dtype; \"\" = none",
        "  uint32_t dtypes;        // bit(DType) of each allowed dtype",
        "};",
        "",
        "struct AttrInfo {",
        "  const char* name;",
        "  AttrValue::Kind kind;",
        "  bool required;",
        "  bool optional;  // may be absent (None)",
        "};",
        "",
        "struct OpInfo {",
        "  const char* name;",
        "  const InputInfo* inputs;",
        "  int num_inputs;         // with variadic, the last input repeats one or more times",
        "  bool variadic;",
        "  const AttrInfo* attrs;",
        "  int num_attrs;",
        "  const int* inplace;     // (output, input) pairs whose storage the output overwrites",
        "  int num_inplace;",
        "  uint32_t dispatch_dtypes;  // dtypes kernels are keyed by (input 0's; any for no inputs)",
        "  bool elementwise;       // an output may take over a dying same-size input's bytes",
        "  bool view;              // the output aliases input 0 (no kernel call)",
        "  bool constant;          // value fixed at build time, stored as constant data",
        "  bool differentiable;",
        "  uint32_t kernels;       // kDevice* bits: devices with a kernel (else expanded)",
        "  const int* alias;       // (output, input) pairs: the output is a VIEW of the input's bytes,",
        "                          // which the step writes in place (storage VIEW, alias_of = the input)",
        "  int num_alias;",
        "  bool alias_each;        // output k is a view of input k, for every k (variadic collectives)",
        "  bool contiguous_inputs; // the inputs' roots lie back to back in one arena range, in input",
        "                          // order, each at a 64-byte aligned offset (a gradient bucket)",
        "  Schedule schedule;      // where the scheduler places the node (informational at run time)",
        "};",
        "",
        "// The input an output is a VIEW of (alias), or -1 when output `out` is not an alias.",
        "inline int alias_input(const OpInfo& op, int out) {",
        "  if (op.alias_each) return out;",
        "  for (int k = 0; k < op.num_alias; ++k)",
        "    if (op.alias[2 * k] == out) return op.alias[2 * k + 1];",
        "  return -1;",
        "}",
        "",
    ]
    for op in ops:
        out += _op_info(op)
    out += ["", "// Sorted by name (find_op does a binary search).", "inline constexpr OpInfo kOps[] = {"]
    out += [_op_row(op) for op in ops]
    out += [
        "};",
        f"inline constexpr int kNumOps = {len(ops)};",
        "",
        "// The schema of op `name`, or nullptr for an op the registry does not know.",
        "inline const OpInfo* find_op(const std::string& name) {",
        "  int lo = 0, hi = kNumOps;",
        "  while (lo < hi) {",
        "    int mid = (lo + hi) / 2;",
        "    int c = std::strcmp(kOps[mid].name, name.c_str());",
        "    if (c == 0) return &kOps[mid];",
        "    if (c < 0) lo = mid + 1; else hi = mid;",
        "  }",
        "  return nullptr;",
        "}",
        "",
        "inline bool allows_dtype(const OpInfo& op, DType t) {",
        "  return dtype_valid(t) && (op.dispatch_dtypes & bit(t)) != 0;",
        "}",
        "",
        "}  // namespace schema",
        "",
        "// One struct per op: its attrs, typed, read from a step with the registry's defaults.",
        "namespace attrs {",
        "",
    ]
    for op in ops:
        out += _attrs_struct(op)
        out.append("")
    out += ["}  // namespace attrs", "}  // namespace graphc", ""]
    return "\n".join(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    text = generate()
    if "--check" in argv:
        with open(HEADER, encoding="utf-8") as f:
            if f.read() != text:
                print(f"{HEADER} is stale: run python -m graphc.schema_codegen", file=sys.stderr)
                return 1
        return 0
    atomic_write(HEADER, text.encode("utf-8"))
    print(f"wrote {HEADER} ({len(registry.all_ops())} ops)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
