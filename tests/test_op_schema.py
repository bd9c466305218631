"""The op schema: one declaration per op, read by Python and (generated) by C++.

- runtime/op_schema.h is exactly what graphc.schema_codegen generates from the registry
  now (a stale header fails here, like the proto module in test_proto.py);
- the declared input dtypes are what inference accepts: every example re-typed to every
  dtype infers iff the declaration allows that dtype;
- properties are declared in a form generic passes can use (index ranges, costs).
"""

import os

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes, registry, schema_codegen
from graphc.errors import DTypeError
from graphc.graph import Graph

OPS = registry.all_ops()


# The checkout's header (graphc itself may be imported from site-packages).
HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime", "op_schema.h")


def test_generated_header_is_current():
    with open(HEADER, encoding="utf-8") as f:
        committed = f.read()
    assert committed == schema_codegen.generate(), (
        "runtime/op_schema.h is stale: run `python -m graphc.schema_codegen` and commit it")


def test_check_flag_reports_stale_header(tmp_path, monkeypatch):
    stale = tmp_path / "op_schema.h"
    stale.write_text("// old\n")
    monkeypatch.setattr(schema_codegen, "HEADER", str(stale))
    assert schema_codegen.main(["--check"]) == 1
    assert schema_codegen.main([]) == 0
    assert schema_codegen.main(["--check"]) == 0


def test_header_lists_every_op_with_its_attrs_and_defaults():
    text = schema_codegen.generate()
    for op in OPS:
        assert f'{{"{op.name}", ' in text, op.name
        struct = text.split(f"struct {schema_codegen._camel(op.name)} {{", 1)[1].split("};", 1)[0]
        for name, spec in op.attrs.items():
            assert name in struct, (op.name, name)
            if spec.kind == "int" and not spec.required and spec.default is not None:
                assert f"int64_t {name} = {spec.default};" in struct, (op.name, name)


def _retyped(op, ex, dtype):
    """The example with input 0 (and every input sharing its type var) cast to dtype."""
    _, _, tv = op.input_spec(0)
    out = []
    for i, x in enumerate(ex.inputs):
        same = i == 0 or (tv is not None and op.input_spec(i)[2] == tv)
        out.append(np.zeros(np.shape(x), dtype) if same else x)
    return out


def _infers(op, inputs, attrs):
    g = Graph()
    with g:
        ins = [gc.placeholder(f"in{i}", np.shape(x), np.asarray(x).dtype.name) for i, x in enumerate(inputs)]
        try:
            g.add_node(op.name, ins, attrs)
        except DTypeError:
            return False
    return True


@pytest.mark.parametrize("op", [o for o in OPS if o.inputs], ids=lambda o: o.name)
def test_declared_dtypes_are_what_inference_accepts(op):
    ex = op.examples(np.random.default_rng(0))[0]
    for dt in dtypes.ALL:
        accepted = _infers(op, _retyped(op, ex, dt), ex.attrs)
        assert accepted == (dt in op.dispatch_dtypes), (op.name, dt, op.dispatch_dtypes)


def test_every_input_declares_a_name_and_dtypes():
    for op in OPS:
        assert len({name for name, _ in op.inputs}) == len(op.inputs), op.name
        for i in range(len(op.inputs)):
            _, allowed, _ = op.input_spec(i)
            assert allowed and set(allowed) <= set(dtypes.ALL), op.name


def test_every_attr_is_documented():
    undocumented = [f"{op.name}.{k}" for op in OPS for k, spec in op.attrs.items() if not spec.doc]
    assert not undocumented, undocumented


def test_index_inputs_name_integer_inputs_and_valid_bounds():
    for op in OPS:
        for i, rng in op.index_inputs.items():
            _, allowed, _ = op.input_spec(i)
            assert set(allowed) <= set(dtypes.INTS), (op.name, i)
            for ex in op.examples(np.random.default_rng(0)):
                bound = rng.bound([np.shape(x) for x in ex.inputs], ex.attrs)
                assert bound >= 0, (op.name, ex)


def test_cost_of_matmul_counts_multiply_adds():
    op = registry.get_op("matmul")
    assert op.flops([(3, 5), (5, 4)], [(3, 4)], {"transpose_a": False}) == 2 * 3 * 4 * 5
    assert op.flops([(5, 3), (5, 4)], [(3, 4)], {"transpose_a": True}) == 2 * 3 * 4 * 5
    relu = registry.get_op("relu")
    assert relu.flops([(7, 3)], [(7, 3)], {}) == 42  # one read and one write per element


def test_register_op_refuses_a_bad_input_declaration():
    op = registry.get_op("relu")
    kw = dict(doc="x", infer=op.infer, reference=op.reference, examples=op.examples)
    with pytest.raises(gc.errors.RegistryError, match="undeclared type var"):
        registry.register_op("bad_schema_op", inputs=[("x", "T")], **kw)
    with pytest.raises(gc.errors.RegistryError, match="unknown dtypes"):
        registry.register_op("bad_schema_op", inputs=[("x", ("float16",))], **kw)
    with pytest.raises(gc.errors.RegistryError, match="neither a kernel nor a composite"):
        registry.register_op("bad_schema_op", inputs=[("x", ("float32",))], kernels=(), **kw)
    assert not registry.has_op("bad_schema_op")


def _has_specials(op):
    """Whether some example feeds NaN, +inf, -inf and -0.0 through a float input."""
    seen = set()
    for ex in op.examples(np.random.default_rng(0)):
        for x in ex.inputs:
            x = np.asarray(x)
            if x.dtype.kind != "f" or not x.size:
                continue
            seen |= {"nan"} if np.isnan(x).any() else set()
            seen |= {"+inf"} if np.isposinf(x).any() else set()
            seen |= {"-inf"} if np.isneginf(x).any() else set()
            seen |= {"-0.0"} if (np.signbit(x) & (x == 0)).any() else set()
    return seen == {"nan", "+inf", "-inf", "-0.0"}


@pytest.mark.parametrize("op", [o for o in OPS if o.inputs and set(o.dispatch_dtypes) & set(dtypes.FLOATS)],
                         ids=lambda o: o.name)
def test_examples_include_special_float_values(op):
    assert _has_specials(op), f"{op.name}: no example feeds NaN, ±inf and -0.0 through a float input"


def test_kernels_match_the_schema_on_every_built_device():
    """Every (op, dtype) the schema accepts has a kernel on each device the op declares,
    and no kernel exists that the schema does not allow (nor for an unknown op)."""
    from graphc import _runtime

    for device in ("cpu",) + (("cuda",) if _runtime.cuda_built() else ()):
        have = {}
        for op, dt in _runtime.kernel_keys(device):
            have.setdefault(op, set()).add(dt)
        unknown = sorted(set(have) - {o.name for o in OPS})
        assert not unknown, f"{device} kernels for ops the registry does not know: {unknown}"
        for op in OPS:
            want = set(op.dispatch_dtypes) if device in op.kernels else set()
            got = have.get(op.name, set())
            assert got == want, (f"{op.name} on {device}: schema allows {sorted(want)}, kernels exist for "
                                 f"{sorted(got)}")
