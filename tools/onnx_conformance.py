"""ONNX's own backend test cases run through graphc (graphc.onnx.backend.GraphcBackend).

Usage::

    python tools/onnx_conformance.py            # run every case, print the summary and failures
    python tools/onnx_conformance.py --write    # also rewrite docs/onnx_conformance.md and README's block
    python tools/onnx_conformance.py -k conv -v # only cases whose name contains "conv", every result

The cases: every one ``onnx.backend.test.loader.load_model_tests`` gives for the kinds node
(built in memory by onnx's case generators), pytorch-converted, pytorch-operator and simple
(stored under the installed onnx's backend/test/data).  The "real" kind (model zoo
downloads) is not run.  Each case is

* UNSUPPORTED when graphc refuses it with OnnxUnsupportedError, at import or at compile: the
  op_type the refusal names is recorded;
* PASS when it is accepted and every output of every data set matches ONNX's expected output
  the way onnx's backend runner checks (same shape, same dtype, ``assert_allclose`` with the
  case's rtol/atol);
* FAIL otherwise: a wrong result, a wrong shape or dtype, or any other error while importing,
  compiling or running it (a bug: graphc must give ONNX's result or refuse).

Nothing is skipped: every case of those kinds is in one of the three classes.
tests/test_onnx_backend.py runs the same classification (this module's ``run_suite``),
asserts that no case fails and that docs/onnx_conformance.md is what ``render_doc`` makes of
the run.

Generating the node cases runs all of onnx's case scripts (tens of seconds); their models
and data are kept in a cache file (GRAPHC_ONNX_CASE_CACHE, default
build/onnx_conformance/node-cases-<onnx version>.pkl, read back with an unpickler that only
makes numpy arrays, lists and plain values); ``--no-cache`` regenerates them.
"""

import argparse
import glob
import io
import json
import os
import pickle
import re
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from graphc.errors import OnnxUnsupportedError  # noqa: E402
from graphc.onnx import backend  # noqa: E402

KINDS = ("node", "pytorch-converted", "pytorch-operator", "simple")
DOC = os.path.join(ROOT, "docs", "onnx_conformance.md")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- onnx-conformance:begin -->", "<!-- onnx-conformance:end -->"
PASS, FAIL, UNSUPPORTED = "PASS", "FAIL", "UNSUPPORTED"
CACHE_FORMAT = 1

_OP_IN_MESSAGE = re.compile(r"node (?:'[^']*'|\"[^\"]*\") \(([A-Za-z][A-Za-z0-9_]*)[,)]")
_DTYPE_IN_MESSAGE = re.compile(r"element type (?:type )?([A-Za-z0-9_]+)")
_TYPE_IN_MESSAGE = re.compile(r"of ONNX type ([a-z_]+)")
_EXPANDED = re.compile(r"_expanded(_ver\d+)?$")


@dataclass
class Case:
    """One backend test case: its model (serialized ModelProto) and data sets of (inputs,
    expected outputs); an input/output is a numpy array, a list of them (an ONNX sequence)
    or None (an empty optional)."""
    name: str
    kind: str
    model: bytes
    data_sets: list
    rtol: float
    atol: float


@dataclass
class Result:
    name: str
    kind: str
    status: str
    op: str = ""            # UNSUPPORTED: the op_type the refusal names ("" when it names none)
    message: str = ""       # UNSUPPORTED: the refusal; FAIL: what went wrong
    seconds: float = 0.0
    ops: list = field(default_factory=list)   # op_types in the model's graph


# -- loading the cases ---------------------------------------------------------------------------

def _to_value(item):
    """A case's input/output as plain data: TensorProto → array, sequences → lists."""
    import onnx
    from onnx import numpy_helper
    if isinstance(item, onnx.TensorProto):
        return numpy_helper.to_array(item)
    if isinstance(item, (list, tuple)):
        return [_to_value(x) for x in item]
    if item is None or isinstance(item, np.ndarray):
        return item
    return np.asarray(item)


class _CaseUnpickler(pickle.Unpickler):
    """Makes only numpy arrays/dtypes (ml_dtypes' too) and plain containers: the cache file is
    data, never code."""

    def find_class(self, module, name):
        root = module.split(".")[0]
        if root in ("numpy", "ml_dtypes") and name in ("_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"):
            return super().find_class(module, name)
        if root == "ml_dtypes" or (root == "numpy" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the ONNX case cache holds {module}.{name}, which it never writes; "
                                     f"delete the file to regenerate it")


def _cache_path():
    import onnx
    default = os.path.join(ROOT, "build", "onnx_conformance", f"node-cases-{onnx.__version__}.pkl")
    return os.environ.get("GRAPHC_ONNX_CASE_CACHE", default)


def _generate_node_cases():
    from onnx.backend.test.loader import load_model_tests
    out = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        tests = load_model_tests(kind="node")
    for t in tests:
        sets = [([_to_value(x) for x in ins], [_to_value(x) for x in outs]) for ins, outs in t.data_sets]
        out.append(Case(t.name, "node", t.model.SerializeToString(), sets, float(t.rtol), float(t.atol)))
    return out


def load_node_cases(use_cache=True):
    """The node cases (onnx's case generators), from the cache file when it is there."""
    import onnx
    path = _cache_path()
    key = (CACHE_FORMAT, onnx.__version__, np.__version__)
    if use_cache and os.path.exists(path):
        try:
            with open(path, "rb") as f:
                stored_key, cases = _CaseUnpickler(f).load()
            if tuple(stored_key) == key:
                return [Case(name, "node", model, sets, rtol, atol) for name, model, sets, rtol, atol in cases]
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
            pass    # stale or damaged: regenerate below
    cases = _generate_node_cases()
    if use_cache:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            rows = [(c.name, c.model, c.data_sets, c.rtol, c.atol) for c in cases]
            pickle.dump((key, rows), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    return cases


def _load_proto(path, type_proto):
    import onnx
    from onnx import numpy_helper
    with open(path, "rb") as f:
        data = f.read()
    if type_proto.HasField("sequence_type"):
        seq = onnx.SequenceProto()
        seq.ParseFromString(data)
        return [_to_value(x) for x in numpy_helper.to_list(seq)]
    if type_proto.HasField("optional_type"):
        opt = onnx.OptionalProto()
        opt.ParseFromString(data)
        return _to_value(numpy_helper.to_optional(opt))
    tensor = onnx.TensorProto()
    tensor.ParseFromString(data)
    return numpy_helper.to_array(tensor)


def load_data_cases(kind):
    """The cases of a kind stored under onnx/backend/test/data (model.onnx + test_data_set_*)."""
    import onnx
    from onnx.backend.test.loader import load_model_tests
    out = []
    for t in load_model_tests(kind=kind):
        if t.model_dir is None:
            raise RuntimeError(f"ONNX case {kind}/{t.name} needs a download ({t.url}); the runner uses stored "
                               f"cases only")
        model = onnx.load(os.path.join(t.model_dir, "model.onnx"))
        sets = []
        for d in sorted(glob.glob(os.path.join(t.model_dir, "test_data_set*"))):
            n_in = len(glob.glob(os.path.join(d, "input_*.pb")))
            n_out = len(glob.glob(os.path.join(d, "output_*.pb")))
            ins = [_load_proto(os.path.join(d, f"input_{i}.pb"), model.graph.input[i].type) for i in range(n_in)]
            outs = [_load_proto(os.path.join(d, f"output_{i}.pb"), model.graph.output[i].type)
                    for i in range(n_out)]
            sets.append((ins, outs))
        out.append(Case(t.name, kind, model.SerializeToString(), sets, float(t.rtol), float(t.atol)))
    return out


def load_cases(kinds=KINDS, use_cache=True):
    cases = []
    for kind in kinds:
        cases += load_node_cases(use_cache) if kind == "node" else load_data_cases(kind)
    order = {k: i for i, k in enumerate(KINDS)}
    return sorted(cases, key=lambda c: (order[c.kind], c.name))


# -- running one case ----------------------------------------------------------------------------

def _short(text, limit=400):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _describe(exc):
    return _short(f"{type(exc).__name__}: {exc}")


def _refusal_op(exc):
    """The op_type a refusal names (``e.op_type``, else ``node 'n' (Conv, opset 17): ...``); for a
    refusal of the model's inputs/outputs, what it refuses: ``dtype FLOAT16``, ``sequence_type``."""
    if getattr(exc, "op_type", None):
        return exc.op_type
    text = str(exc)
    for pattern, form in ((_OP_IN_MESSAGE, "{}"), (_DTYPE_IN_MESSAGE, "dtype {}"), (_TYPE_IN_MESSAGE, "{}")):
        m = pattern.search(text)
        if m:
            return form.format(m.group(1))
    return ""


def compare(refs, outs, rtol, atol):
    """None when ``outs`` equal ``refs`` as onnx's backend runner requires (its own
    ``assert_similar_outputs`` decides), else what differs."""
    from onnx.backend.test.runner import Runner
    try:
        Runner.assert_similar_outputs(refs, outs, rtol=rtol, atol=atol)
        return None
    except Exception as e:  # noqa: BLE001 — onnx raises AssertionError, or TypeError/AttributeError on a type mismatch
        return _difference(refs, outs, rtol, atol) or _describe(e)


def _difference(refs, outs, rtol, atol):
    """What differs between ``outs`` and ``refs``, in words (None when this finds nothing)."""
    if len(outs) != len(refs):
        return f"{len(outs)} outputs, expected {len(refs)}"
    for i, (ref, out) in enumerate(zip(refs, outs)):
        if isinstance(ref, list) or ref is None:
            return f"output {i}: expected an ONNX {'sequence' if ref is not None else 'optional'}, graphc gave a tensor"
        out = np.asarray(out)
        if out.shape != ref.shape:
            return f"output {i}: shape {out.shape}, expected {ref.shape}"
        if out.dtype != ref.dtype:
            return f"output {i}: dtype {out.dtype}, expected {ref.dtype}"
        try:
            np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)
        except AssertionError as e:
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            detail = "; ".join(ln for ln in lines if ln.startswith(("Mismatched", "Max absolute", "Max relative")))
            bad = ~np.isclose(out, ref, rtol=rtol, atol=atol, equal_nan=True)
            first = np.argwhere(bad)[0] if bad.ndim else ()
            idx = tuple(int(j) for j in first)
            return (f"output {i}: {detail or 'values differ'}; first at {idx}: got {out[idx]!r}, "
                    f"expected {ref[idx]!r} (rtol={rtol}, atol={atol})")
    return None


def run_case(case, threads=1):
    """Classify one case (see the module docstring)."""
    import onnx
    start = time.perf_counter()
    model = onnx.ModelProto()
    model.ParseFromString(case.model)
    ops = sorted({n.op_type for n in model.graph.node})
    res = Result(case.name, case.kind, PASS, ops=ops)
    stage = "import"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            rep = backend.GraphcBackend.prepare(model, "CPU", threads=threads)
            for inputs, refs in case.data_sets:
                if any(isinstance(x, list) or x is None for x in inputs):
                    raise RuntimeError("the data set feeds an ONNX sequence/optional, yet the import accepted "
                                       "the model")
                stage = "compile"
                feeds = rep.feeds(inputs)
                rep.session(feeds)
                stage = "run"
                outs = list(rep.run(inputs))
                stage = "compare"
                diff = compare(refs, outs, case.rtol, case.atol)
                if diff is not None:
                    res.status, res.message = FAIL, _short(diff)
                    break
    except OnnxUnsupportedError as e:
        res.status, res.op, res.message = UNSUPPORTED, _refusal_op(e), _short(str(e))
    except Exception as e:  # noqa: BLE001 — any other error is the case's failure, recorded with its stage
        res.status, res.message = FAIL, f"{stage}: {_describe(e)}"
    res.seconds = time.perf_counter() - start
    return res


def run_suite(cases, threads=1, progress=None):
    results = []
    for i, case in enumerate(cases):
        r = run_case(case, threads=threads)
        results.append(r)
        if progress is not None:
            progress(i, len(cases), r)
    return results


# -- reports -------------------------------------------------------------------------------------

def _counts(results):
    c = {PASS: 0, FAIL: 0, UNSUPPORTED: 0}
    for r in results:
        c[r.status] += 1
    return c


def _rate(c):
    accepted = c[PASS] + c[FAIL]
    return f"{100.0 * c[PASS] / accepted:.1f}%" if accepted else "n/a"


def _tested_op(results):
    """name → the ONNX op a node case tests (its one node's op_type; an ``_expanded`` case
    tests the op of the case it expands)."""
    single = {r.name: r.ops[0] for r in results if r.kind == "node" and len(r.ops) == 1}
    out = {}
    for r in results:
        if r.kind != "node":
            continue
        base = _EXPANDED.sub("", r.name)
        op = single.get(base) if base != r.name else single.get(r.name)
        out[r.name] = op or (r.ops[0] if len(r.ops) == 1 else "(several)")
    return out


def _refusals(results):
    """op_type named by the refusals → (number of cases, the first case's name and message)."""
    by_op = {}
    for r in results:
        if r.status == UNSUPPORTED:
            key = r.op or "(no op named)"
            n, example = by_op.get(key, (0, None))
            by_op[key] = (n + 1, example or (f"{r.kind}/{r.name}", r.message))
    return dict(sorted(by_op.items(), key=lambda kv: (-kv[1][0], kv[0])))


def summary_lines(results):
    total = _counts(results)
    lines = ["| kind | cases | accepted | pass | fail | unsupported | pass rate (of accepted) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for kind in KINDS:
        rs = [r for r in results if r.kind == kind]
        if not rs:
            continue
        c = _counts(rs)
        lines.append(f"| {kind} | {len(rs)} | {c[PASS] + c[FAIL]} | {c[PASS]} | {c[FAIL]} | {c[UNSUPPORTED]} | "
                     f"{_rate(c)} |")
    lines.append(f"| **all** | {len(results)} | {total[PASS] + total[FAIL]} | {total[PASS]} | {total[FAIL]} | "
                 f"{total[UNSUPPORTED]} | **{_rate(total)}** |")
    return lines


def _md(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render_doc(results):
    """docs/onnx_conformance.md for ``results`` (deterministic: no times, sorted lists)."""
    import onnx
    total = _counts(results)
    out = ["# ONNX backend conformance",
           "",
           "Generated by `python tools/onnx_conformance.py --write` (checked by tests/test_onnx_backend.py);",
           "do not edit.  ONNX's own backend test cases, run through `graphc.onnx.backend.GraphcBackend`,",
           f"with onnx {onnx.__version__} (default-domain opsets up to {onnx.defs.onnx_opset_version()}).",
           "",
           "A case is **accepted** when graphc imports and compiles it; graphc refuses the others with",
           "`OnnxUnsupportedError` naming the node, op and opset (**unsupported**).  Every accepted case must",
           "match ONNX's expected outputs (same shape and dtype, the case's rtol/atol): pass rate "
           f"**{_rate(total)}** of {total[PASS] + total[FAIL]} accepted cases, {len(results)} cases in all.",
           "The kinds: node (one ONNX op per case, built in memory by onnx's case scripts; `_expanded` cases run",
           "the op's function body), pytorch-converted and pytorch-operator (models exported from PyTorch),",
           "simple (small models).  The `real` kind (model-zoo downloads) is not run.  Where a case feeds a",
           "value the import needs as a graph input (a Reshape's shape, a ReduceSum's axes, ...), the backend",
           "imports the model at run time with that input fixed to the case's value (when the value is computed",
           "from graph inputs, the integer graph inputs are fixed; graphc/onnx/backend.py).  What the import can",
           "compute from fixed values alone it computes then, with the ops' numpy references.",
           "",
           *summary_lines(results),
           ""]
    fails = [r for r in results if r.status == FAIL]
    if fails:
        out += ["## Failing cases", "", "| case | what went wrong |", "|---|---|"]
        out += [f"| {r.kind}/{r.name} | {_md(r.message)} |" for r in fails]
        out.append("")
    out += ["## Unsupported: the op each refusal names", "",
            "Cases refused at import, by the op_type the refusal names (an op graphc lacks, or an attribute",
            "value, dtype or input form of that op it does not support), with the first such case's message.",
            "", "| op | cases | example |", "|---|---:|---|"]
    for op, (n, (case, msg)) in _refusals(results).items():
        out.append(f"| {op} | {n} | {case}: {_md(msg)} |")
    out += ["", "## Node cases by op", "",
            "Every ONNX op the node cases test (a case's one node; an `_expanded` case counts for the op it",
            "expands), with how many of its cases pass, fail, or are refused.", "",
            "| op | cases | pass | fail | unsupported |", "|---|---:|---:|---:|---:|"]
    tested = _tested_op(results)
    per_op = {}
    for r in results:
        if r.kind == "node":
            per_op.setdefault(tested[r.name], []).append(r)
    for op in sorted(per_op):
        c = _counts(per_op[op])
        out.append(f"| {op} | {len(per_op[op])} | {c[PASS]} | {c[FAIL]} | {c[UNSUPPORTED]} |")
    out.append("")
    return "\n".join(out)


def render_readme_block(results):
    total = _counts(results)
    refused = _refusals(results)
    typed = {k: n for k, (n, _) in refused.items() if k.startswith("dtype ") or k.endswith("_type")}
    ops = ", ".join(f"{op} ({n})" for op, (n, _) in refused.items() if op not in typed)
    kinds = ", ".join(k.replace("dtype ", "") for k in typed)
    return "\n".join([
        f"Pass rate **{_rate(total)}** of the {total[PASS] + total[FAIL]} accepted cases "
        f"({total[PASS]} pass, {total[FAIL]} fail); {total[UNSUPPORTED]} of {len(results)} cases are refused "
        f"as unsupported.",
        "",
        *summary_lines(results),
        "",
        f"Refused for a dtype or value type graphc lacks: {sum(typed.values())} cases ({kinds or 'none'}).  "
        f"Refused by op (cases): {ops or 'none'}.  Details: [docs/onnx_conformance.md](docs/onnx_conformance.md).",
    ])


def readme_with_block(text, block):
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"README.md must hold exactly one {BEGIN} … {END} pair")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def _write(path, text):
    tmp = f"{path}.tmp"
    with io.open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="rewrite docs/onnx_conformance.md and README.md's block")
    ap.add_argument("-k", dest="pattern", help="only the cases whose name contains this text (no --write)")
    ap.add_argument("--kind", action="append", choices=KINDS, help="only these kinds (repeatable; no --write)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case's result")
    ap.add_argument("--threads", type=int, default=1, help="Session threads (default 1)")
    ap.add_argument("--no-cache", action="store_true", help="regenerate the node cases (no cache file)")
    ap.add_argument("--json", help="write every result as JSON to this file")
    args = ap.parse_args(argv)
    if args.write and (args.pattern or args.kind):
        ap.error("--write needs the whole suite: drop -k/--kind")
    start = time.perf_counter()
    cases = load_cases(args.kind or KINDS, use_cache=not args.no_cache)
    if args.pattern:
        cases = [c for c in cases if args.pattern in c.name]
    loaded = time.perf_counter() - start

    def progress(i, n, r):
        if args.verbose or r.status == FAIL:
            extra = f"  [{r.op}] {r.message}" if r.status == UNSUPPORTED else f"  {r.message}" if r.message else ""
            print(f"{r.status:11s} {r.kind}/{r.name} ({r.seconds:.2f}s){extra}", flush=True)

    results = run_suite(cases, threads=args.threads, progress=progress)
    elapsed = time.perf_counter() - start
    print("\n".join(summary_lines(results)))
    slow = sorted(results, key=lambda r: -r.seconds)[:5]
    print(f"{len(results)} cases in {elapsed:.1f} s (loading {loaded:.1f} s); slowest: "
          + ", ".join(f"{r.name} {r.seconds:.2f}s" for r in slow))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([r.__dict__ for r in results], f, indent=1)
    if args.write:
        _write(DOC, render_doc(results))
        with open(README, encoding="utf-8") as f:
            readme = f.read()
        _write(README, readme_with_block(readme, render_readme_block(results)))
        print(f"wrote {os.path.relpath(DOC, ROOT)} and README.md's block")
    return 1 if any(r.status == FAIL for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
