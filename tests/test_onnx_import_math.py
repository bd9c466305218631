"""ONNX import of the math ops (graphc/onnx/_ops_math.py): elementwise math, logic, variadic
Max/Min/Sum/Mean, Clip, activations, reductions, ArgMax/ArgMin and the softmax family.

Each case is one ONNX node built with onnx.helper; the cases of one opset share one model (one
compile).  graphc's result is compared with onnx.reference.ReferenceEvaluator (the spec's
executable reference) and, where it runs the case, with onnxruntime.  Inputs include NaN,
±inf, ±0, halves (rounding) and negative ints (Div/Mod).  Handlers must refuse what they cannot
match: the refusal tests check the typed error and its message.
"""

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.errors import OnnxUnsupportedError  # noqa: E402

try:
    import onnxruntime as ort
except ImportError:  # pragma: no cover - onnxruntime is a test extra
    ort = None

_TP = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE, "int32": TensorProto.INT32,
       "int64": TensorProto.INT64, "bool": TensorProto.BOOL}
NEWEST = onnx.defs.onnx_opset_version()
F = ("float32", "float64")
I = ("int32", "int64")  # noqa: E741
NAN, INF = math.nan, math.inf
_SPECIAL = [NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.3, -0.7, 3.7, -3.7,
            1e-30, -1e-30, 20.0, -20.0, 88.0, -100.0, 1e4]
RNG = np.random.default_rng(15)


def special(dt):
    """Every value where definitions part (NaN, ±inf, ±0, halves, tiny, overflow of exp)."""
    return np.array(_SPECIAL, dt).reshape(4, 6)


def rand(shape, dt, low=-3.0, high=3.0):
    if dt in I:
        return RNG.integers(int(low), int(high) + 1, size=shape).astype(dt)
    if dt == "bool":
        return RNG.random(shape) < 0.5
    return RNG.uniform(low, high, size=shape).astype(dt)


def ints(dt):
    info = np.iinfo(dt)
    return np.array([info.min, info.min + 1, -7, -3, -1, 0, 1, 2, 5, info.max], dt)


# what onnxruntime (CPU) has no kernel for (Shrink: its float64 kernel rounds through float32):
# those cases run against ONNX's reference only
ORT_MISSING = {(op, "float64") for op in ("Erf", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh",
                                          "Atanh", "Celu", "Hardmax", "Mean", "Gelu", "Shrink")}


class Case:
    """One ONNX node: ``inputs`` (arrays; None = omitted optional input) become graph inputs
    except those in ``consts`` ({index: array}, initializers known at import)."""

    def __init__(self, op, inputs, attrs=None, consts=None, opset=18, outputs=1, ort=True, note="", expect=None):
        self.op, self.inputs, self.attrs = op, list(inputs), dict(attrs or {})
        # expect: the result computed independently, where ONNX's reference evaluator is wrong
        # (the case's note says how); compared instead of the reference's output
        self.expect = expect
        self.consts = dict(consts or {})
        dt = next((np.asarray(x).dtype.name for x in self.inputs if x is not None), None)
        self.opset, self.outputs, self.note = opset, outputs, note
        self.ort = ort and (op, dt) not in ORT_MISSING

    def __repr__(self):
        return f"{self.op}{self.attrs} {self.note}"


def build_model(cases, opset):
    nodes, ginputs, goutputs, inits, feeds = [], [], [], [], {}
    for k, c in enumerate(cases):
        names = []
        for j in range(max(len(c.inputs), max(c.consts, default=-1) + 1)):
            arr = c.consts.get(j, c.inputs[j] if j < len(c.inputs) else None)
            if arr is None:
                names.append("")
                continue
            name = f"c{k}_in{j}"
            names.append(name)
            arr = np.asarray(arr)
            if j in c.consts:
                inits.append(helper.make_tensor(name, _TP[arr.dtype.name], arr.shape, arr.reshape(-1).tolist()))
            else:
                ginputs.append(helper.make_tensor_value_info(name, _TP[arr.dtype.name], arr.shape))
                feeds[name] = arr
        outs = [f"c{k}_out{j}" for j in range(c.outputs)]
        nodes.append(helper.make_node(c.op, names, outs, name=f"c{k}_{c.op}", **c.attrs))
        goutputs += [onnx.ValueInfoProto(name=o) for o in outs]  # type left to inference
    graph = helper.make_graph(nodes, "math", ginputs, goutputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model, feeds


def run_graphc(model, feeds):
    g = gc.onnx.load(model, trainable=False)
    names = g.onnx_names
    plan = gc.compile(g, shapes={names[k]: v.shape for k, v in feeds.items()})
    # an input a handler does not read (an empty reduction's result is a constant) is no feed
    fed = set(plan.feeds)
    out = gc.Session(plan).run({names[k]: v for k, v in feeds.items() if names[k] in fed})
    return {o.name: out[names[o.name]] for o in model.graph.output}


def assert_same(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if want.dtype.kind == "f":
        tol = dict(rtol=2e-6, atol=1e-6) if want.dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got, want, equal_nan=True, err_msg=what, **tol)
        # infinities and NaN agree exactly (assert_allclose treats inf == inf only with equal sign)
        assert np.array_equal(np.isnan(got), np.isnan(want)), what
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def check(cases):
    """Import, compile and run every case; compare with ONNX's reference (or the case's
    independent ``expect``) and with onnxruntime."""
    by_opset = {}
    for c in cases:
        by_opset.setdefault(c.opset, []).append(c)
    for opset, group in sorted(by_opset.items()):
        model, feeds = build_model(group, opset)
        got = run_graphc(model, feeds)
        for k, c in enumerate(group):
            if c.expect is not None:
                assert_same(got[f"c{k}_out0"], c.expect, f"{c} (opset {opset}) vs the expected value")
        ref_cases = [c for c in group if c.expect is None]
        if ref_cases:
            _compare(ref_cases, opset, ReferenceEvaluator, "the ONNX reference")
        ort_cases = [c for c in group if c.ort]
        if ort is not None and ort_cases:
            _compare(ort_cases, opset, _ort_session, "onnxruntime")


def _ort_session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _compare(cases, opset, runner, what):
    model, feeds = build_model(cases, opset)
    got = run_graphc(model, feeds)
    sess = runner(model)
    with np.errstate(all="ignore"):
        want = dict(zip([o.name for o in model.graph.output], sess.run(None, feeds)))
    for k, c in enumerate(cases):
        for j in range(c.outputs):
            name = f"c{k}_out{j}"
            assert_same(got[name], want[name], f"{c} (opset {opset}) vs {what}")


def refuses(case, *words):
    model, _ = build_model([case], case.opset)
    with pytest.raises(OnnxUnsupportedError) as e:
        gc.onnx.load(model, trainable=False)
    msg = str(e.value)
    assert f"c0_{case.op}" in msg and case.op in msg, msg
    for w in words:
        assert w in msg, msg


# -- elementwise ------------------------------------------------------------------------------

FLOAT_UNARY = ["Neg", "Abs", "Sign", "Relu", "Reciprocal", "Sqrt", "Exp", "Log", "Erf", "Floor", "Ceil", "Round",
               "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Sigmoid",
               "Tanh", "IsNaN"]


def test_unary_float():
    cases = []
    for op in FLOAT_UNARY:
        for dt in F:
            if (op, dt) != ("Erf", "float64"):
                cases.append(Case(op, [special(dt)], note=f"{dt} special"))
                cases.append(Case(op, [rand((2, 3, 5), dt, -0.99, 0.99)], note=dt))
    # the reference's Erf rounds through float32 (np.vectorize(erf, otypes="f")): float64 against math.erf
    for x in (special("float64"), rand((2, 3, 5), "float64")):
        cases.append(Case("Erf", [x], note="float64 vs math.erf", expect=np.vectorize(math.erf)(x)))
    # Round is half to even; halves of every parity
    cases.append(Case("Round", [np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5000002, 1e8 + 0.5], "float64")]))
    check(cases)


def test_unary_int_and_bool():
    cases = [Case(op, [ints(dt)], note=dt) for op in ("Neg", "Abs", "Sign", "Relu") for dt in I]
    cases.append(Case("Not", [np.array([[True, False], [False, False]])]))
    cases.append(Case("Not", [np.zeros((0, 3), bool)], note="empty"))
    check(cases)


def test_isinf_attrs():
    cases = [Case("IsInf", [special(dt)], {"detect_positive": p, "detect_negative": n}, note=dt)
             for dt in F for p in (0, 1) for n in (0, 1)]
    cases.append(Case("IsInf", [special("float32")], note="defaults"))
    check(cases)


def _outer(dt):
    s = special(dt).reshape(-1)
    return s[:, None].copy(), s[None, :].copy()


def test_binary_arithmetic():
    cases = []
    for op in ("Add", "Sub", "Mul", "Div"):
        for dt in F:
            cases.append(Case(op, list(_outer(dt)), note=f"{dt} special x special"))
            cases.append(Case(op, [rand((3, 1, 4), dt), rand((5, 1), dt)], note=f"{dt} broadcast"))
        for dt in I:
            a, b = rand((4, 5), dt, -9, 9), rand((5,), dt, 1, 4) * np.array([1, -1, 1, -1, 1], dt)
            cases.append(Case(op, [a, b], note=f"{dt} negative operands"))
        cases.append(Case(op, [rand((0, 3), "float32"), rand((3,), "float32")], note="empty"))
    for dt in I:  # wraparound, as numpy and ONNX's reference
        info = np.iinfo(dt)
        a = np.array([info.max, info.min, info.max, -5], dt)
        cases += [Case(op, [a, np.array([1, -1, 2, 3], dt)], note=f"{dt} overflow") for op in ("Add", "Sub", "Mul")]
    check(cases)


def test_int_div_truncates_and_never_traps():
    cases = []
    for dt in I:
        a = np.arange(-7, 8, dtype=dt)[:, None]
        b = np.array([-3, -2, -1, 1, 2, 3], dt)[None, :]
        cases.append(Case("Div", [a, b], note=f"{dt} truncation toward zero"))
        info = np.iinfo(dt)
        # x / 0 and INT_MIN / -1: ONNX's reference gives 0 and INT_MIN (onnxruntime traps: not run there)
        cases.append(Case("Div", [np.array([5, -5, 0, info.min], dt), np.array([0, 0, 0, -1], dt)],
                          ort=False, note=f"{dt} by zero"))
    check(cases)


def test_mod():
    cases = []
    for dt in I:
        a = np.arange(-7, 8, dtype=dt)[:, None]
        b = np.array([-3, -2, -1, 1, 2, 3], dt)[None, :]
        cases += [Case("Mod", [a, b], {"fmod": f}, note=dt) for f in (0, 1)]
        cases += [Case("Mod", [np.array([5, -5, 0], dt), np.array([0, 0, 0], dt)], {"fmod": f}, ort=False,
                       note=f"{dt} mod 0") for f in (0, 1)]
    for dt in F:
        a, b = _outer(dt)
        cases.append(Case("Mod", [a, b], {"fmod": 1}, note=f"{dt} special"))
        cases.append(Case("Mod", [rand((4, 5), dt, -9, 9), rand((5,), dt, 0.5, 3)], {"fmod": 1}, note=dt))
    check(cases)


def test_pow():
    cases = []
    for dt in F:
        a, b = _outer(dt)
        cases.append(Case("Pow", [a, b], note=f"{dt} special x special"))
        cases.append(Case("Pow", [rand((3, 4), dt, 0.1, 3), rand((4,), dt)], note=f"{dt} broadcast"))
        for et in I:
            e = np.array([-3, -2, -1, 0, 1, 2, 3, 7], et)
            cases.append(Case("Pow", [special(dt)[:, :, None], e], note=f"{dt} ** {et} tensor"))
        for p in (np.array(2.0, dt), np.array(0.5, dt), np.array(3, "int64"), np.array([-1.5], dt)):
            # a scalar exponent: numpy's power takes a sqrt fast path for 0.5 (NaN at -inf), which
            # ONNX's reference inherits and onnxruntime's C pow (inf) does not: specials vs the reference
            cases.append(Case("Pow", [special(dt), None], consts={1: p}, ort=False, note=f"{dt} ** const {p}"))
            cases.append(Case("Pow", [rand((3, 5), dt, 0.0, 3), None], consts={1: p}, note=f"{dt} ** const {p}"))
    # a float64 exponent on a float32 base: computed in float64, rounded (ONNX's reference)
    cases.append(Case("Pow", [rand((5,), "float32", 0.1, 3), rand((5,), "float64")], note="f32 ** f64"))
    cases.append(Case("Pow", [special("float32"), None], consts={1: np.array(0.1, "float64")}, note="f32 ** 0.1"))
    check(cases)


def test_comparisons_and_logic():
    cases = []
    for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        for dt in F:
            cases.append(Case(op, list(_outer(dt)), note=f"{dt} special"))
        for dt in I:
            cases.append(Case(op, [ints(dt)[:, None], ints(dt)[None, :]], note=dt))
    cases.append(Case("Equal", [rand((3, 4), "bool"), rand((4,), "bool")], note="bool"))
    for op in ("And", "Or", "Xor"):
        cases.append(Case(op, [np.array([True, False])[:, None], np.array([True, False, True])], note="table"))
    check(cases)


def test_variadic():
    cases = []
    for op in ("Max", "Min", "Sum", "Mean"):
        for dt in F:
            a, b = _outer(dt)
            full = (a + b[:, ::-1]).astype(dt)  # ONNX's reference of Mean adds into a copy of input 0:
            cases.append(Case(op, [a], note=f"{dt} one input"))  # input 0 has the broadcast shape
            cases.append(Case(op, [full, a, b], note=f"{dt} special"))
            cases.append(Case(op, [rand((3, 5, 4), dt), rand((5, 1), dt), rand((4,), dt)], note=f"{dt} three"))
            if op == "Mean" and dt == "float32":  # input 0 smaller than the result (the reference fails)
                x0, x1 = rand((5, 1), dt), rand((3, 5, 4), dt)
                cases.append(Case(op, [x0, x1], note="broadcast input 0", expect=(x0 + x1) / np.float32(2)))
        if op in ("Max", "Min"):
            for dt in I:
                cases.append(Case(op, [ints(dt)[:, None], ints(dt)[None, :], rand((1,), dt)], note=dt))
    check(cases)


def test_clip():
    cases = []
    for dt in F + I:
        x = special(dt) if dt in F else ints(dt)
        lo, hi = np.array(-1.5 if dt in F else -3, dt), np.array(2.5 if dt in F else 4, dt)
        # onnxruntime clamps ±inf to the float's finite range when a bound is missing (the spec and
        # its reference keep them): those special cases against the reference only
        cases += [Case("Clip", [x], ort=dt in I, note=f"{dt} no bounds"),
                  Case("Clip", [x, lo], ort=dt in I, note=f"{dt} min"),
                  Case("Clip", [x, None, hi], ort=dt in I, note=f"{dt} max"),
                  Case("Clip", [rand((3, 4), dt), lo], note=f"{dt} min"),
                  Case("Clip", [rand((3, 4), dt), None, hi], note=f"{dt} max"),
                  Case("Clip", [x, lo, hi], note=f"{dt} both"),
                  Case("Clip", [x, hi, lo], note=f"{dt} min > max")]
    cases.append(Case("Clip", [special("float32"), None], consts={1: np.array(-1.0, "float32")}, ort=False,
                      note="const min"))
    cases.append(Case("Clip", [special("float32"), np.array(NAN, "float32")], ort=False, note="NaN min"))
    check(cases)


# -- activations ---------------------------------------------------------------------------------

def test_activations():
    cases = []
    acts = [("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.3}), ("Elu", {}), ("Elu", {"alpha": 0.7}),
            ("Selu", {}), ("Selu", {"alpha": 2.0, "gamma": 3.0}), ("Celu", {}), ("Celu", {"alpha": 2.5}),
            ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.4, "beta": 0.3}), ("HardSwish", {}),
            ("Softplus", {}), ("Softsign", {}), ("ThresholdedRelu", {}), ("ThresholdedRelu", {"alpha": -0.5}),
            ("Mish", {}), ("Shrink", {}), ("Shrink", {"bias": 1.5, "lambd": 1.0})]
    for op, attrs in acts:
        for dt in F:
            # onnxruntime's float64 Softplus overflows to inf at 1e4 (log(1 + e^x)); the reference's
            # logaddexp does not
            cases.append(Case(op, [special(dt)], attrs, ort=(op, dt) != ("Softplus", "float64"),
                              note=f"{dt} special"))
            cases.append(Case(op, [rand((3, 7), dt, -4, 4)], attrs, note=dt))
            # near 0: Elu/Selu/Celu need expm1's accuracy there
            cases.append(Case(op, [np.array([-1e-3, -1e-5, -1e-7, -3e-9, 1e-7, -0.02], dt)], attrs, note=f"{dt} tiny"))
    for dt in I:
        cases.append(Case("Shrink", [ints(dt)[2:-1]], {"bias": 2.0, "lambd": 1.0}, note=dt))
    check(cases)


def test_prelu():
    cases = []
    for dt in F:
        x = special(dt).reshape(2, 3, 4)
        cases += [Case("PRelu", [x, np.array([0.25], dt)], note=f"{dt} scalar slope"),
                  Case("PRelu", [x, rand((3, 1), dt)], note=f"{dt} per channel"),
                  Case("PRelu", [x, rand((2, 3, 4), dt)], note=f"{dt} full")]
    cases.append(Case("PRelu", [ints("int32").reshape(2, 5), np.array([2, -3, 1, 0, 4], "int32")], note="int32"))
    check(cases)


def _gelu64(x, approximate):
    """ONNX's Gelu definition evaluated in float64 (the reference runs its function body with
    float32 constants, so its float64 results carry float32 rounding)."""
    with np.errstate(all="ignore"):
        if approximate == "none":
            return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def test_gelu_and_swish():
    cases = []
    for approx in ("none", "tanh"):
        for x in (special("float32"), rand((3, 7), "float32", -5, 5)):
            cases.append(Case("Gelu", [x], {"approximate": approx}, opset=20, note="float32"))
        for x in (special("float64"), rand((3, 7), "float64", -5, 5)):
            cases.append(Case("Gelu", [x], {"approximate": approx}, opset=20, note="float64 vs its formula",
                              expect=_gelu64(x, approx)))
    if NEWEST >= 24:
        for dt in F:
            for alpha in (1.0, 0.6):
                cases.append(Case("Swish", [special(dt)], {"alpha": alpha}, opset=24, note=f"{dt} special"))
    check(cases)


# -- reductions --------------------------------------------------------------------------------------

REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
_FLOAT_ONLY = ("ReduceMean", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp")


def _reduce_case(op, x, axes, keepdims, opset, expect=None, **kw):
    attrs = {"keepdims": keepdims}
    if axes is None:
        c = Case(op, [x], attrs, opset=opset, **kw)
    elif opset >= 18 or op == "ReduceSum":
        c = Case(op, [x, None], attrs, consts={1: np.array(axes, "int64")}, opset=opset, **kw)
    else:
        c = Case(op, [x], dict(attrs, axes=axes), opset=opset, **kw)
    c.expect = expect
    return c


def test_reductions():
    cases = []
    for op in REDUCE:
        for opset in (13, 18):
            for dt in F + (() if op in _FLOAT_ONLY else I):
                low = 0.1 if op == "ReduceLogSum" else -2
                for axes in (None, [1], [0, 2], [-1]):
                    for keepdims in (0, 1):
                        x = rand((3, 4, 5), dt, low, 2)
                        c = _reduce_case(op, x, axes, keepdims, opset, note=f"{dt} axes={axes}")
                        if op == "ReduceSumSquare" and dt == "int32":
                            # the reference's np.sum promotes int32 to int64; ONNX keeps T
                            c.expect = np.sum(x * x, axis=None if axes is None else tuple(axes),
                                              keepdims=bool(keepdims), dtype="int32")
                        cases.append(c)
            # ONNX leaves the mean of nothing undefined: the reference gives NaN (graphc too),
            # onnxruntime 0
            cases.append(_reduce_case(op, rand((2, 0, 4), "float32"), [1], 1, opset, note="empty set",
                                      ort=op != "ReduceMean"))
            cases.append(_reduce_case(op, rand((2, 0, 4), "float32"), [0], 0, opset, note="empty output"))
        cases.append(_reduce_case(op, special("float64"), [1], 0, 18, note="special"))
        cases.append(_reduce_case(op, special("float32"), None, 1, 18, note="special, all axes"))
    for n in range(1, 10):  # pairwise product: every odd / even split
        cases.append(_reduce_case("ReduceProd", rand((2, n), "float64", 0.5, 1.5), [1], 0, 18, note=f"n={n}"))
        cases.append(_reduce_case("ReduceProd", rand((n, 3), "int64", -3, 3), [0], 1, 18, note=f"int n={n}"))
    x = np.array([[INF, 1.0, 2.0], [-INF, -INF, -INF], [-INF, 0.0, 1.0], [INF, -INF, 0.0]], "float32")
    # log Σ e^x of an all -inf row is -inf (the spec's formula, onnxruntime); the reference's
    # max-shifted form gives NaN there
    with np.errstate(divide="ignore"):
        lse = np.log(np.sum(np.exp(x.astype("float64")), axis=1)).astype("float32")
    cases.append(_reduce_case("ReduceLogSumExp", x, [1], 0, 18, note="infinite rows", expect=lse))
    cases.append(_reduce_case("ReduceLogSumExp", np.array([[100.0, 100.0], [1e4, 0.0]], "float32"), [1], 1, 18,
                              note="large"))
    for dt in I:
        cases.append(_reduce_case("ReduceMin", ints(dt).reshape(2, 5), [1], 0, 18, note=f"{dt} extremes"))
        cases.append(_reduce_case("ReduceMax", ints(dt).reshape(2, 5), [1], 0, 18, note=f"{dt} extremes"))
    check(cases)


def test_reduce_noop_with_empty_axes():
    cases = []
    for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd"):
        x = rand((2, 3), "float32")
        cases.append(Case(op, [x, None], {"noop_with_empty_axes": 1}, consts={1: np.zeros(0, "int64")}, opset=18))
        cases.append(Case(op, [x], {"noop_with_empty_axes": 1}, opset=18, note="axes omitted"))
        cases.append(Case(op, [x, None], {"noop_with_empty_axes": 0}, consts={1: np.zeros(0, "int64")}, opset=18,
                          note="empty axes: every axis"))
    check(cases)
    refuses(Case("ReduceL2", [rand((2, 3), "float32"), None], {"noop_with_empty_axes": 1},
                 consts={1: np.zeros(0, "int64")}), "noop_with_empty_axes")


def test_reduce_symbolic_dims():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 5])
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0)
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
                              initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    g = gc.onnx.load(model)
    for n in (1, 3):
        xv = rand((n, 5), "float32")
        out = gc.Session(gc.compile(g, shapes={g.onnx_names["x"]: (n, 5)})).run({g.onnx_names["x"]: xv})
        assert_same(out[g.onnx_names["y"]], ReferenceEvaluator(model).run(None, {"x": xv})[0], f"batch {n}")


# -- arg max / min, softmax ------------------------------------------------------------------------

def test_argmax_argmin():
    cases = []
    for op in ("ArgMax", "ArgMin"):
        for dt in F + I:
            x = rand((4, 6, 3), dt, -2, 2)  # small ints: many ties
            for axis in (0, 1, -1):
                for keepdims in (0, 1):
                    for last in (0, 1):
                        cases.append(Case(op, [x], {"axis": axis, "keepdims": keepdims, "select_last_index": last},
                                          note=dt))
        for dt in F:
            x = np.array([[1.0, NAN, 3.0, NAN], [2.0, 2.0, -INF, INF], [-0.0, 0.0, 0.0, -0.0]], dt)
            cases += [Case(op, [x], {"axis": 1, "select_last_index": last}, note=f"{dt} NaN and ties", ort=False)
                      for last in (0, 1)]
        for dt in I:
            cases += [Case(op, [ints(dt).reshape(2, 5)], {"axis": 1, "select_last_index": last}, note=f"{dt} extremes")
                      for last in (0, 1)]
    check(cases)


def test_softmax_family():
    cases = []
    for op in ("Softmax", "LogSoftmax", "Hardmax"):
        for dt in F:
            x = rand((3, 4, 5), dt, -4, 4)
            cases += [Case(op, [x], {"axis": a}, note=dt) for a in (0, 1, -1)]
            cases.append(Case(op, [x], note=f"{dt} default axis"))
        cases.append(Case(op, [rand((2, 0, 3), "float32")], {"axis": 1}, note="empty"))
    cases.append(Case("Softmax", [np.array([[1000.0, 0.0, -1000.0], [-INF, 0.0, 1.0]], "float32")], note="large"))
    x = np.array([[1.0, 3.0, 3.0, 2.0], [NAN, 1.0, NAN, 0.0], [-INF, -INF, -INF, -INF]], "float32")
    cases.append(Case("Hardmax", [x], note="ties, NaN, -inf", ort=False))
    cases.append(Case("Hardmax", [x[:, :3].T.copy()], {"axis": 0}, note="ties on axis 0", ort=False))
    check(cases)


def test_old_opsets_are_converted():
    # opset 11 Softmax coerces to 2-D at 'axis'; opset 6 Clip has min/max attributes
    x = rand((2, 3, 4), "float32")
    # (the reference evaluator applies opset 13's per-axis Softmax at every opset: compared with
    # the flattened softmax instead)
    flat = np.exp(x.reshape(2, 12) - x.reshape(2, 12).max(1, keepdims=True))
    flat = (flat / flat.sum(1, keepdims=True)).reshape(x.shape)
    check([Case("Softmax", [x], {"axis": 1}, opset=11, note="opset 11", expect=flat),
           Case("Clip", [special("float32")], {"min": -1.0, "max": 2.0}, opset=6, note="opset 6"),
           Case("ReduceSum", [x], {"axes": [1]}, opset=11, note="opset 11 axes attr")])


# -- constant folding ------------------------------------------------------------------------------

def test_all_constant_inputs_fold():
    # every input known at import: the handler's ops fold with the registry references
    cases = [Case("Add", [None, None], consts={0: rand((3,), "float32"), 1: rand((3,), "float32")}),
             Case("Div", [None, None], consts={0: np.array([7, -7], "int64"), 1: np.array([-2, 2], "int64")}),
             Case("ReduceProd", [None, None], {"keepdims": 0}, consts={0: rand((2, 5), "int64"), 1: np.array([1])}),
             Case("Elu", [None], consts={0: special("float64")}),
             Case("ArgMax", [None], {"axis": 1, "select_last_index": 1}, consts={0: rand((3, 4), "int32", 0, 2)})]
    model, feeds = build_model(cases, 18)
    assert not feeds
    g = gc.onnx.load(model, trainable=False)
    assert {n.op for n in g.nodes} <= {"constant", "identity", "reshape", "squeeze", "expand_dims"}, \
        sorted({n.op for n in g.nodes})
    want = ReferenceEvaluator(model).run(None, {})
    got = gc.Session(gc.compile(g)).run({})
    for k, w in enumerate(want):
        assert_same(got[g.onnx_names[f"c{k}_out0"]], w, repr(cases[k]))


# -- refusals ---------------------------------------------------------------------------------------

def test_refusals():
    f32 = rand((3,), "float32")
    refuses(Case("Mod", [f32, f32], {"fmod": 0}), "fmod=0")
    refuses(Case("Pow", [np.array([2, 3], "int32"), np.array([2, 3], "int32")]), "base", "int32")
    refuses(Case("Add", [np.array([1], "int32"), np.array([1], "int64")]), "int32", "int64")
    refuses(Case("Gelu", [f32], {"approximate": "erf"}, opset=20), "approximate")
    refuses(Case("IsNaN", [np.array([1], "int64")]), "int64")
    refuses(Case("Sum", [np.array([1], "int32"), np.array([2], "int32")]), "int32")
    refuses(Case("Celu", [f32], {"alpha": -1.0}), "alpha")
    refuses(Case("Shrink", [np.array([1], "int32")], {"lambd": 0.5}), "lambd")
    refuses(Case("ReduceSum", [rand((2, 3), "float32"), np.array([1], "int64")]), "axes", "known at import")
    refuses(Case("ReduceMax", [rand((2, 3), "float32"), None], consts={1: np.array([1, -1], "int64")}), "repeats")
    refuses(Case("Clip", [f32, np.array([0.0, 1.0], "float32")]), "min", "scalar")
    refuses(Case("PRelu", [f32, rand((2, 3), "float32")]), "slope")


def test_refuses_select_last_index_on_a_symbolic_dim():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "n"])
    node = helper.make_node("ArgMax", ["x"], ["y"], name="am", axis=1, select_last_index=1)
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(OnnxUnsupportedError, match="select_last_index"):
        gc.onnx.load(model)
    gc.onnx.load(model, shapes={"x": (2, 7)})  # pinning the dim makes it importable


# -- gradients of the composed handlers (an imported model trains) ----------------------------------

GRAD_CASES = [
    # (op, attrs, extra const inputs, w values away from every kink)
    ("Elu", {"alpha": 0.7}, [], [-30.0, -2.0, -0.3, 0.2, 3.0, 40.0]),
    ("Selu", {}, [], [-5.0, -0.4, 0.3, 2.0]),
    ("Celu", {"alpha": 1.5}, [], [-4.0, -0.2, 0.5, 3.0]),
    ("HardSigmoid", {}, [], [-1.0, 0.4, 1.2, -2.0]),
    ("HardSwish", {}, [], [-1.0, 0.4, 1.2, -2.0, 4.0]),
    ("Softsign", {}, [], [-3.0, -0.5, 0.4, 2.0]),
    ("Mish", {}, [], [-3.0, -0.5, 0.4, 2.0]),
    ("Softplus", {}, [], [-30.0, -0.5, 0.4, 25.0]),
    ("Gelu", {"approximate": "tanh"}, [], [-3.0, -0.5, 0.4, 2.0]),
    ("ThresholdedRelu", {"alpha": 0.5}, [], [-1.0, 0.2, 0.9, 2.0]),
    ("Shrink", {"bias": 0.3, "lambd": 0.5}, [], [-1.0, 0.2, 0.9, 2.0]),
    ("PRelu", {}, [np.array([0.25])], [-1.0, 0.2, -0.9, 2.0]),
    ("Pow", {}, [np.array([1.5, 2.0, -0.5, 3.0])], [0.5, 1.3, 2.0, 0.7]),
    ("Clip", {}, [np.array(-0.5), np.array(1.5)], [-1.0, 0.2, 0.9, 2.0]),
    ("ReduceLogSumExp", {"keepdims": 0}, [], [-1.0, 0.2, 0.9, 2.0]),
    ("ReduceL2", {"keepdims": 0}, [], [-1.0, 0.2, 0.9, 2.0]),
    ("ReduceProd", {"keepdims": 0}, [], [-1.0, 0.3, 0.9, 2.0, 1.1]),
    ("ReduceMin", {"keepdims": 0}, [], [-1.0, 0.3, 0.9, 2.0]),
    ("LogSoftmax", {}, [], [-1.0, 0.3, 0.9, 2.0]),
]


def _grad_model(op, attrs, extra, w, as_input):
    """loss = Σ c · Op(W, *extra), c fixed weights: W an initializer (graphc: a trainable
    variable) or, for the reference's finite differences, a graph input."""
    opset = 20 if op == "Gelu" else 18
    w = np.asarray(w, "float64").reshape(1, -1)
    y_size = 1 if op.startswith("Reduce") else w.size
    c = np.linspace(0.5, 1.5, y_size)
    names = ["W"] + [f"e{i}" for i in range(len(extra))]
    inits = [helper.make_tensor(n, TensorProto.DOUBLE, np.shape(a), np.ravel(a).tolist())
             for n, a in zip(names[1:], extra)]
    inits.append(helper.make_tensor("cflat", TensorProto.DOUBLE, [y_size], c.tolist()))
    nodes = [helper.make_node(op, names, ["y"], **attrs),
             helper.make_node("Shape", ["y"], ["ys"]),
             helper.make_node("Reshape", ["cflat", "ys"], ["cy"]),
             helper.make_node("Mul", ["y", "cy"], ["yc"]),
             helper.make_node("ReduceSum", ["yc"], ["loss"], keepdims=0)]
    inputs = []
    if as_input:
        inputs.append(helper.make_tensor_value_info("W", TensorProto.DOUBLE, w.shape))
    else:
        inits.append(helper.make_tensor("W", TensorProto.DOUBLE, w.shape, w.ravel().tolist()))
    graph = helper.make_graph(nodes, "grad", inputs, [onnx.ValueInfoProto(name="loss")], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), w


def test_gradients_of_composed_handlers():
    for op, attrs, extra, w in GRAD_CASES:
        extra = [np.asarray(e, "float64") for e in extra]
        model, w_arr = _grad_model(op, attrs, extra, w, as_input=False)
        g = gc.onnx.load(model)
        loss = g.tensor(g.onnx_names["loss"])
        (grad,) = gc.gradients(loss, [g.tensor("W")])
        got = gc.Session(gc.compile(g, fetches=[grad])).run({})[grad.name]
        # central differences of ONNX's reference forward, float64
        ref = ReferenceEvaluator(_grad_model(op, attrs, extra, w, as_input=True)[0])
        h = 1e-6
        want = np.zeros_like(w_arr)
        for i in range(w_arr.size):
            d = np.zeros_like(w_arr)
            d.flat[i] = h
            up = ref.run(None, {"W": w_arr + d})[0]
            down = ref.run(None, {"W": w_arr - d})[0]
            want.flat[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"d loss / d W through {op}")
