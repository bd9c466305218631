"""The ``graphc`` command line tool: compile, info, viz, run, bench, import and export.

::

    graphc compile model.pb -o model.plan --shape x=128,784 [--train loss --optimizer adam:lr=1e-3]
    graphc compile model.pb --entry sample -o sample.plan      # one entry point -> a plan
    graphc compile model.pb --entries all -o gan.program       # several (--entry A --entry B) -> a program
    graphc compile model.pb --emit c -o out/ [--name mlp] [--embed-weights]   # a C library source tree
    graphc info  model.pb|model.plan|gan.program [--json]
    graphc viz   model.pb|model.plan|gan.program -o graph.svg [--entry NAME] [--collapse] [--depth N]
    graphc run   model.plan|gan.program [--entry NAME] --feed x=x.npy [--steps N] [-o out.npz] [--checkpoint ckpt]
    graphc bench model.plan|gan.program [--entry NAME] [--warmup 10 --iters 100]
    graphc import model.onnx -o model.pb [--constants] [--shape x=1,3,224,224]   # ONNX -> graphc (docs/onnx.md)
    graphc export model.pb -o model.onnx [--opset N]                              # graphc -> ONNX

Bad input (a missing or wrong-kind file, a bad flag value, an unknown shape name,
feeds that do not match the plan) prints one line on stderr and exits with 2; ``-v``
adds the traceback.  Outputs are written to a temp file and renamed into place, so
an existing file is never left half written.  ``python -m graphc`` runs the same tool.
See docs/cli.md for a worked example of every subcommand.
"""

import argparse
import copy
import inspect
import json
import os
import re
import sys
import tempfile
import time
import traceback

import numpy as np

from graphc import compiler, distributed, dtypes, optim, registry, serialize, viz
from graphc import onnx as gc_onnx
from graphc._version import __version__
from graphc.aot.c_text import check_name, name_from_stem
from graphc.aot.emit import emit_c
from graphc.compiler.data_parallel import DataParallel
from graphc.errors import CompileError, FeedError, GraphcError, ModelFormatError, quote
from graphc.plan import load_plan
from graphc.program import is_program_bytes, load_program
from graphc.proto_enums import dtype_from_proto
from graphc.session import Session

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2

_ROLE_NAMES = {0: "forward", 1: "gradient", 2: "optimizer", 3: "recompute"}
_OPTIMIZERS = ("sgd", "adam", "adamw")
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class UsageError(GraphcError, ValueError):
    """A bad command line: a flag value that cannot be parsed or does not fit."""


# -- small helpers ------------------------------------------------------------------------

def parse_bytes(text):
    """'64MB' → 64000000, '64MiB' → 67108864, '1.5GB', '4096' (bytes).  Units: B, KB, MB,
    GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024), case-insensitive."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m:
        raise UsageError(f"bad size {text!r}: expected a number with an optional unit, e.g. 64MB or 512MiB")
    number, unit = float(m.group(1)), m.group(2).lower() or "b"
    if unit not in _UNITS:
        raise UsageError(f"bad size {text!r}: unknown unit {m.group(2)!r}; use B, KB, MB, GB, KiB, MiB or GiB")
    return int(round(number * _UNITS[unit]))


def parse_shape(text):
    """'x=128,784' → ('x', (128, 784)); 'x=' is a scalar."""
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise UsageError(f"bad --shape {text!r}: expected NAME=D0,D1,... (e.g. x=128,784)")
    out = []
    for d in (dims.split(",") if dims.strip() else []):
        d = d.strip()
        if not d.isdigit():
            raise UsageError(f"bad --shape {text!r}: dimension {d!r} is not an integer >= 0")
        out.append(int(d))
    return name, tuple(out)


def parse_optimizer(text):
    """'adam:lr=1e-3,beta1=0.9' → ('adam', {'lr': 0.001, 'beta1': 0.9})."""
    kind, _, rest = text.partition(":")
    kind = kind.strip().lower()
    if kind not in _OPTIMIZERS:
        raise UsageError(f"bad --optimizer {text!r}: unknown optimizer {quote(kind)}; expected one of "
                         f"{', '.join(_OPTIMIZERS)} (e.g. sgd:lr=0.1,momentum=0.9)")
    params = {}
    for item in (rest.split(",") if rest.strip() else []):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"bad --optimizer {text!r}: {item!r} is not KEY=VALUE")
        try:
            params[key] = float(value)
        except ValueError:
            raise UsageError(f"bad --optimizer {text!r}: {key}={value!r} is not a number") from None
        if not np.isfinite(params[key]):
            raise UsageError(f"bad --optimizer {text!r}: {key} must be finite")
    return kind, params


def format_bytes(n):
    n = int(n)
    if n < 1024:
        return f"{n} B"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} B)"
    return f"{n} B"


def _fmt_shape(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _numel(dims):
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _prov(p):
    file, line = (p.file, p.line) if hasattr(p, "file") else (p or ("", 0))
    return f"{file}:{line}" if file else ""


def _atomic_target(path):
    """A temp file name beside ``path`` with the same extension (for writers that add one)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{base}.", suffix=".tmp" + ext)
    os.close(fd)
    return tmp


def _replace_or_remove(tmp, path, ok):
    if ok:
        os.replace(tmp, path)
    else:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _check_exists(path):
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory, not a file")


# -- loading models and plans --------------------------------------------------------------

def _load_model(path):
    return serialize.load(path)


def _load_plan(path):
    return load_plan(path)


def _is_program_file(path):
    try:
        with open(path, "rb") as f:
            return is_program_bytes(f.read())
    except OSError:
        return False


def load_any(path):
    """('model', Graph), ('plan', Plan) or ('program', Program); the extension picks what is
    tried first (a program file is told by its content: it has entries)."""
    _check_exists(path)
    if _is_program_file(path):
        return "program", load_program(path)
    order = [("plan", _load_plan), ("model", _load_model)]
    if not path.endswith(".plan"):
        order.reverse()
    first = None
    for kind, loader in order:
        try:
            return kind, loader(path)
        except ModelFormatError as e:
            first = first or e
    raise ModelFormatError(f"{path}: neither a graphc model nor a plan ({first})")


def load_plan_arg(path, command, entry=None):
    """The Plan to run: a plan file's (``entry`` None or its own entry name), or entry
    ``entry`` of a program file (required when the program has several).  Returns
    ``(plan, program or None, entry name or None)``."""
    kind, obj = load_any(path)
    if kind == "model":
        raise UsageError(f"{path} is a model (.pb), but {command} needs a compiled plan; "
                         f"make one with: graphc compile {path} -o MODEL.plan")
    if kind == "program":
        if entry is None:
            if len(obj.entries) != 1:
                raise UsageError(f"{path} is a program of {len(obj.entries)} entries; choose one with --entry NAME "
                                 f"({', '.join(obj.entries)})")
            entry = obj.entries[0]
        if entry not in obj.entries:
            raise UsageError(f"--entry {entry}: {path} has no such entry; its entries: {', '.join(obj.entries)}")
        return obj.plan(entry), obj, entry
    own = obj.proto.metadata.get("entry") or None
    if entry is not None and entry != own:
        have = f"entry {own!r}" if own else "no entry name"
        raise UsageError(f"--entry {entry}: {path} is a single compiled plan ({have}); --entry selects an entry "
                         f"of a program file")
    return obj, None, own


def load_model_arg(path):
    kind, obj = load_any(path)
    if kind != "model":
        raise UsageError(f"{path} is a compiled {kind}; compile takes a model (.pb) saved with Graph.save")
    return obj


# -- compile -------------------------------------------------------------------------------

def _training_spec(graph, args):
    """The model's training spec with --train/--optimizer applied (a TrainingSpec or None)."""
    if args.inference:
        if args.train or args.optimizer:
            raise UsageError("--inference cannot be combined with --train or --optimizer")
        return None
    spec = None
    if graph.training is not None:
        spec = copy.deepcopy(graph.training)
    if args.train is None and args.optimizer is None:
        return spec
    if spec is None:
        if args.train is None:
            raise UsageError("--optimizer needs --train LOSS: the model has no training spec to update")
        if args.optimizer is None:
            raise UsageError(f"--train {args.train} needs --optimizer (e.g. sgd:lr=0.1): the model has no "
                             f"optimizer to keep")
        spec = optim.TrainingSpec()
    if args.train is not None:
        if not graph.has_value(args.train):
            raise UsageError(f"--train {args.train}: the model has no value named {args.train!r}; its "
                             f"outputs are {', '.join(graph.default_fetches()) or 'none'}")
        t = graph.tensor(args.train)
        if not dtypes.is_float(t.dtype) or len(t.shape) != 0:
            raise UsageError(f"--train {args.train}: the loss must be a float scalar, got {t.dtype} "
                             f"{_fmt_shape(t.shape)}")
        spec.loss = args.train
    if args.optimizer is not None:
        kind, params = parse_optimizer(args.optimizer)
        clip = params.pop("clip_global_norm", 0.0)
        spec.optimizer = optim.OptimizerSpec(kind, dict(params), clip)
    return spec


def _has_training_steps(plan):
    return any(step.role in (1, 2) for step in plan.steps)


def _selected_entries(args):
    """None (no --entry/--entries), one name (a plan), or a list / "all" (a program)."""
    if args.entries is not None and args.entry:
        raise UsageError("give --entry NAME (repeatable) or --entries all|A,B,..., not both")
    if args.entries is not None:
        text = args.entries.strip()
        if text == "all":
            return "all"
        names = [n.strip() for n in text.split(",")]
        if not text or not all(names):
            raise UsageError(f"bad --entries {args.entries!r}: expected 'all' or names separated by commas")
        return names
    if not args.entry:
        return None
    if len(set(args.entry)) != len(args.entry):
        raise UsageError(f"--entry names an entry twice: {', '.join(args.entry)}")
    return args.entry[0] if len(args.entry) == 1 else list(args.entry)


def _compile_shapes(texts, graph):
    """--shape NAME=DIMS (every entry) and ENTRY:NAME=DIMS (that entry only) → the compiler's
    shapes dict (flat, with one nested dict per entry that overrides)."""
    entries = getattr(graph, "entries", None) or {}
    shapes = {}
    for text in texts:
        name, dims = parse_shape(text)
        entry, sep, rest = name.partition(":")
        if sep and entry in entries and rest:
            table = shapes.setdefault(entry, {})
            if not isinstance(table, dict):
                raise UsageError(f"--shape {text}: {entry!r} names both an entry and a placeholder")
            if rest in table:
                raise UsageError(f"--shape {name} is given twice")
            table[rest] = dims
            continue
        if name in shapes:
            raise UsageError(f"--shape {name} is given twice")
        shapes[name] = dims
    return shapes


EMIT_FORMATS = ("plan", "c")


def _check_emit(args):
    """--emit plan (default) or c; --name and --embed-weights belong to --emit c, which needs -o."""
    if args.emit not in EMIT_FORMATS:
        raise UsageError(f"unknown --emit {args.emit!r}: expected one of {', '.join(EMIT_FORMATS)} (plan: a .plan or "
                         f".program file; c: a C library source tree, docs/aot.md)")
    if args.emit == "c":
        if not args.output:
            raise UsageError("--emit c needs -o FOLDER: the folder the C artifact is written into")
        if args.name is not None:
            check_name(args.name)   # before compiling: a bad name fails fast
        return
    for flag, given in (("--name", args.name is not None), ("--embed-weights", args.embed_weights)):
        if given:
            raise UsageError(f"{flag} applies to --emit c only")


def _write_compiled(args, result, out):
    """Save the plan or program at ``out``, or with --emit c write the C artifact there; returns
    the line to print after the summary (None for a plan)."""
    if args.emit != "c":
        result.save(out)
        return None
    name = args.name if args.name is not None else name_from_stem(os.path.splitext(os.path.basename(args.model))[0])
    res = emit_c(result, out, name=name, embed_weights=args.embed_weights)
    return (f"C artifact {res.name!r}: {len(res.files)} files ({res.name}.h, {res.name}.cc, {res.name}.weights"
            f"{', ' + res.name + '_weights.S' if res.embedded else ''}, Makefile, CMakeLists.txt, graphc/); "
            f"build it with: make -C {out}")


def cmd_compile(args):
    _check_emit(args)
    graph = load_model_arg(args.model)
    selected = _selected_entries(args)
    if selected is not None:
        return _compile_entries(args, graph, selected)
    shapes = _compile_shapes(args.shape, graph)
    budget = parse_bytes(args.memory_budget) if args.memory_budget is not None else None
    out = args.output or os.path.splitext(args.model)[0] + ".plan"
    if os.path.abspath(out) == os.path.abspath(args.model):
        raise UsageError(f"-o {out} would overwrite the model")
    graph.training = _training_spec(graph, args)

    params = inspect.signature(compiler.compile).parameters
    kwargs = {"shapes": shapes, "target": args.target}
    if args.no_fuse:
        kwargs["fuse"] = False
    if args.fetch:
        kwargs["fetches"] = list(args.fetch)
    if "train" in params:   # the spec already sits on the graph; say so explicitly (False: inference)
        kwargs["train"] = graph.training if graph.training is not None else False
    if budget is not None:
        if "memory_budget" not in params:
            raise UsageError("--memory-budget: this graphc's compiler has no memory budget support yet "
                             "(graphc.compiler.compile takes no memory_budget)")
        kwargs["memory_budget"] = budget
    _data_parallel_kwarg(args, params, kwargs)

    timings = []
    last = [0.0]

    def on_pass(name, g):
        now = time.perf_counter()
        timings.append((name, now - last[0], len(g.nodes)))
        last[0] = now

    started = time.perf_counter()
    if args.verbose and "on_pass" not in params:
        # The compiler cannot report its passes yet: time the graph passes on their own.
        last[0] = time.perf_counter()
        extra = {"train": kwargs["train"]} if "train" in kwargs else {}
        compiler.lower_graph(graph, shapes, kwargs.get("fetches"), on_pass=on_pass, **extra)
        started = time.perf_counter()
    elif args.verbose:
        kwargs["on_pass"] = on_pass
    last[0] = started
    plan = compiler.compile(graph, **kwargs)
    total = time.perf_counter() - started
    if plan.training is not None and not _has_training_steps(plan):
        raise CompileError("the model has a training spec but the compiler added no gradient or optimizer "
                           "steps: training support is not present in this graphc (use --inference to "
                           "compile the forward pass only)")
    emitted = _write_compiled(args, plan, out)

    if args.verbose:
        print(f"{'pass':<20} {'ms':>9} {'nodes':>7}")
        for name, secs, nodes in timings:
            print(f"{name:<20} {secs * 1e3:>9.2f} {nodes:>7}")
        print(f"{'compile (total)':<20} {total * 1e3:>9.2f} {len(plan.steps):>7}")
    print(f"wrote {out} (target {plan.target})")
    _print_plan_summary(plan)
    if emitted:
        print(emitted)
    return EXIT_OK


def _data_parallel_kwarg(args, params, kwargs):
    """--data-parallel [N] [--bucket-cap SIZE] → compile(..., data_parallel=True | N | DataParallel)."""
    if args.data_parallel is None:
        if args.bucket_cap is not None:
            raise UsageError("--bucket-cap needs --data-parallel [N]")
        return
    if "data_parallel" not in params:
        raise UsageError("--data-parallel: this graphc's compiler has no data-parallel support "
                         "(graphc.compiler.compile takes no data_parallel=)")
    if args.emit == "c":
        raise UsageError("--data-parallel with --emit c: data-parallel plans run in a Session under mpirun, "
                         "not as a C artifact")
    world = None
    if args.data_parallel != "auto":
        text = args.data_parallel.strip()
        if not text.isdigit() or int(text) < 1:
            raise UsageError(f"--data-parallel {args.data_parallel}: expected a number of ranks >= 1")
        world = int(text)
    if args.bucket_cap is not None:
        parse_bytes(args.bucket_cap)   # a bad size is a usage error here, with the flag's name
        kwargs["data_parallel"] = DataParallel(world_size=world, bucket_cap=args.bucket_cap)
    else:
        kwargs["data_parallel"] = True if world is None else world


def _compile_entries(args, graph, selected):
    """compile --entry NAME (a plan) or --entry A --entry B / --entries all (a program)."""
    for flag, given in (("--train", args.train), ("--optimizer", args.optimizer), ("--inference", args.inference),
                        ("--fetch", args.fetch)):
        if given:
            raise UsageError(f"{flag} cannot be combined with --entry/--entries: an entry carries its own loss, "
                             f"optimizer and fetches (give them to minimize(..., name=) or graph.entry())")
    params = inspect.signature(compiler.compile).parameters
    if "entries" not in params or "entry" not in params:
        raise UsageError("--entry/--entries: this graphc's compiler has no entry points (graphc.compiler.compile "
                         "takes no entry=/entries=)")
    kwargs = {"shapes": _compile_shapes(args.shape, graph), "target": args.target}
    if args.no_fuse:
        kwargs["fuse"] = False
    if args.memory_budget is not None:
        kwargs["memory_budget"] = parse_bytes(args.memory_budget)
    _data_parallel_kwarg(args, params, kwargs)
    single = isinstance(selected, str) and selected != "all"
    ext = ".plan" if single else ".program"
    out = args.output or os.path.splitext(args.model)[0] + ext
    if os.path.abspath(out) == os.path.abspath(args.model):
        raise UsageError(f"-o {out} would overwrite the model")
    started = time.perf_counter()
    if single:
        result = compiler.compile(graph, entry=selected, **kwargs)
    else:
        result = compiler.compile(graph, entries=selected, **kwargs)
    total = time.perf_counter() - started
    emitted = _write_compiled(args, result, out)
    if args.verbose:
        print(f"compile (total) {total * 1e3:.2f} ms")
    if single:
        print(f"wrote {out} (entry {selected}, target {result.target})")
        _print_plan_summary(result)
        if emitted:
            print(emitted)
        return EXIT_OK
    mem = result.memory_report()
    print(f"wrote {out} (program of {len(result.entries)} entries, target {result.target})")
    for name in result.entries:
        print(f"entry {name}:")
        _print_plan_summary(result.plan(name))
    print(f"shared: arena {format_bytes(mem['arena_bytes'])} (separate arenas would be "
          f"{format_bytes(mem['separate_arenas_bytes'])}), persistent {format_bytes(mem['persistent_bytes'])}")
    if emitted:
        print(emitted)
    return EXIT_OK


def _print_plan_summary(plan):
    roles = {}
    for step in plan.steps:
        r = _ROLE_NAMES.get(step.role, str(step.role))
        roles[r] = roles.get(r, 0) + 1
    role_text = ", ".join(f"{r} {n}" for r, n in _role_histogram(
        r for r, n in roles.items() for _ in range(n)).items())
    info = _params(plan.proto.persistent)
    mem = plan.memory_report()
    print(f"  steps: {len(plan.steps)}" + (f" ({role_text})" if role_text else ""))
    fused = [step for step in plan.proto.steps if step.fused]
    if fused:
        print(f"  fused: {len(fused)} steps run {sum(len(step.fused) for step in fused)} graph nodes")
    print(f"  parameters: {info['count']} in {info['variables']} variables, {format_bytes(info['bytes'])}")
    naive = mem["naive_bytes"]
    ratio = f", {mem['arena_bytes'] / naive:.2f}x of naive" if naive else ""
    print(f"  arena: {format_bytes(mem['arena_bytes'])} vs naive {format_bytes(naive)}{ratio}; "
          f"lower bound {format_bytes(mem['lower_bound_bytes'])}")
    dp = _data_parallel_info(plan.proto)
    if dp:
        print(f"  data-parallel: {dp}")


def _data_parallel_info(proto):
    """'N ranks, B allreduce buckets (sizes)' from a data-parallel plan's metadata, else ''."""
    meta = proto.metadata
    world = meta.get(distributed.WORLD_SIZE_KEY)
    if world is None:
        return ""
    sizes = [t for t in meta.get("data_parallel.bucket_bytes", "").split(",") if t.strip().isdigit()]
    listing = f" ({', '.join(format_bytes(int(t)) for t in sizes)})" if sizes else ""
    text = f"{world} ranks, {meta.get('data_parallel.buckets', len(sizes))} allreduce buckets{listing}"
    copied = meta.get("data_parallel.copied_bytes", "0")
    if copied.isdigit() and int(copied):
        text += f"; {format_bytes(int(copied))} of gradients copied into buckets"
    return text


def _params(variables):
    """Counts over trainable variables (parameters) and the rest (state)."""
    count = nbytes = n = state_count = state_bytes = 0
    for v in variables:
        dtype = v.dtype if isinstance(v.dtype, str) else dtype_from_proto(v.dtype)
        dims = getattr(v, "shape", None)
        dims = dims if dims is not None else tuple(v.dims)
        numel = _numel(dims)
        if v.trainable:
            n += 1
            count += numel
            nbytes += numel * dtypes.itemsize(dtype)
        else:
            state_count += numel
            state_bytes += numel * dtypes.itemsize(dtype)
    return {"variables": n, "count": count, "bytes": nbytes, "state_count": state_count,
            "state_bytes": state_bytes}


# -- info ----------------------------------------------------------------------------------

def _spec_dict(spec):
    if spec is None:
        return None
    return {"loss": spec.loss,
            "optimizer": {"kind": spec.optimizer.kind,
                          "hyperparameters": dict(sorted(spec.optimizer.hyperparameters.items())),
                          "clip_global_norm": spec.optimizer.clip_global_norm},
            "var_list": list(spec.var_list)}


def _histogram(ops):
    hist = {}
    for op in ops:
        hist[op] = hist.get(op, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def _role_histogram(roles):
    hist = _histogram(roles)
    order = list(_ROLE_NAMES.values())
    return dict(sorted(hist.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else 99, kv[0])))


def model_info(graph, path):
    values = [graph.tensor(n) for n in graph.default_fetches()]
    return {
        "kind": "model",
        "path": path,
        "nodes": len(graph.nodes),
        "ops": _histogram(n.op for n in graph.nodes),
        "roles": _role_histogram(n.role for n in graph.nodes),
        "parameters": _params(graph.variables),
        "inputs": [{"name": p.name, "dtype": p.dtype, "shape": list(p.shape)} for p in graph.inputs],
        "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in values],
        "training": _spec_dict(graph.training),
        "entries": [_model_entry_dict(e) for e in (getattr(graph, "entries", None) or {}).values()],
        "metadata": dict(graph.metadata),
    }


def _model_entry_dict(entry):
    spec = entry.training
    out = {"name": entry.name, "kind": "training" if spec is not None else "inference",
           "fetches": list(entry.fetches)}
    if spec is not None:
        out["loss"] = spec.loss
        out["optimizer"] = spec.optimizer.kind
        out["var_list"] = len(spec.var_list)   # 0: every trainable variable
    return out


def program_info(program, path):
    mem = program.memory_report()
    entries = []
    for name in program.entries:
        proto = program.entry_proto(name)
        values = proto.values

        def value_dict(i, values=values):
            v = values[i]
            return {"name": v.name, "dtype": dtype_from_proto(v.dtype), "shape": list(v.dims)}

        training = proto.training if proto.HasField("training") else None
        entries.append({"name": name, "kind": "training" if training is not None else "inference",
                        "steps": len(proto.steps),
                        "roles": _role_histogram(_ROLE_NAMES.get(st.role, str(st.role)) for st in proto.steps),
                        "inputs": [value_dict(i) for i in proto.feeds],
                        "outputs": [value_dict(i) for i in proto.fetches],
                        "training": _spec_dict(training), "arena_bytes": int(proto.arena_bytes),
                        "data_parallel": _data_parallel_info(proto)})
    return {
        "kind": "program",
        "path": path,
        "target": program.target,
        "entries": entries,
        "parameters": _params(program.persistent),
        "memory": {"arena_bytes": mem["arena_bytes"], "separate_arenas_bytes": mem["separate_arenas_bytes"],
                   "persistent_bytes": mem["persistent_bytes"]},
        "metadata": dict(program.proto.metadata),
    }


def _print_program_info(info):
    p = info["parameters"]
    print(f"program {info['path']}: {len(info['entries'])} entries, target {info['target']}")
    for e in info["entries"]:
        print(f"entry {e['name']} ({e['kind']}): {e['steps']} steps, arena {format_bytes(e['arena_bytes'])}")
        print("  feeds:   " + (", ".join(f"{v['name']} {v['dtype']} {_fmt_shape(v['shape'])}" for v in e["inputs"])
                               or "none"))
        print("  fetches: " + (", ".join(f"{v['name']} {v['dtype']} {_fmt_shape(v['shape'])}" for v in e["outputs"])
                               or "none"))
        t = e["training"]
        if t is not None:
            hp = ", ".join(f"{k}={v:g}" for k, v in t["optimizer"]["hyperparameters"].items())
            print(f"  training: loss {t['loss']}, optimizer {t['optimizer']['kind']}" + (f" ({hp})" if hp else "")
                  + f", var_list {len(t['var_list']) or 'all'}")
        if e.get("data_parallel"):
            print(f"  data-parallel: {e['data_parallel']}")
    print(f"parameters: {p['count']} in {p['variables']} variables, {format_bytes(p['bytes'])}"
          + (f"; other state {p['state_count']} ({format_bytes(p['state_bytes'])})" if p["state_count"] else ""))
    m = info["memory"]
    print("memory:")
    print(f"  shared arena  {format_bytes(m['arena_bytes'])} (separate arenas: "
          f"{format_bytes(m['separate_arenas_bytes'])})")
    print(f"  persistent    {format_bytes(m['persistent_bytes'])} (shared by every entry)")


def plan_info(plan, path):
    proto = plan.proto
    mem = plan.memory_report()
    values = proto.values

    def value_dict(i):
        v = values[i]
        return {"name": v.name, "dtype": dtype_from_proto(v.dtype), "shape": list(v.dims)}

    peak = None
    if mem["peak_step"] >= 0:
        step = proto.steps[mem["peak_step"]]
        by_name = {v.name: v for v in values}
        largest = sorted(mem["peak_values"], key=lambda n: (-by_name[n].nbytes, n))[:5]
        peak = {"step": mem["peak_step"], "node": step.node, "op": step.op, "provenance": _prov(step.provenance),
                "live_bytes": mem["step_live_bytes"][mem["peak_step"]],
                "largest": [{"name": n, "bytes": int(by_name[n].nbytes), "kind": by_name[n].kind,
                             "shape": list(by_name[n].dims)} for n in largest]}
    return {
        "kind": "plan",
        "path": path,
        "target": proto.target,
        "steps": len(proto.steps),
        "ops": _histogram(s.op for s in proto.steps),
        "roles": _role_histogram(_ROLE_NAMES.get(s.role, str(s.role)) for s in proto.steps),
        "fused": [{"step": k, "op": s.op, "members": [m.node for m in s.fused]}
                  for k, s in enumerate(proto.steps) if s.fused],
        "parameters": _params(proto.persistent),
        "inputs": [value_dict(i) for i in proto.feeds],
        "outputs": [value_dict(i) for i in proto.fetches],
        "training": _spec_dict(plan.training),
        "memory": {"arena_bytes": mem["arena_bytes"], "naive_bytes": mem["naive_bytes"],
                   "lower_bound_bytes": mem["lower_bound_bytes"], "persistent_bytes": mem["persistent_bytes"],
                   "bytes_by_kind": mem["bytes_by_kind"],
                   "persistent_bytes_by_kind": mem.get("persistent_bytes_by_kind", {}), "peak": peak},
        "metadata": dict(proto.metadata),
        "data_parallel": _data_parallel_info(proto),
    }


def _print_info(info):
    p = info["parameters"]
    if info["kind"] == "model":
        print(f"model {info['path']}: {info['nodes']} nodes")
    else:
        print(f"plan {info['path']}: {info['steps']} steps, target {info['target']}")
    print("ops:")
    for op, n in info["ops"].items():
        print(f"  {op:<32} {n:>6}")
    if len(info["roles"]) > 1 or "forward" not in info["roles"]:
        print("roles: " + ", ".join(f"{r} {n}" for r, n in info["roles"].items()))
    if info.get("data_parallel"):
        print(f"data-parallel: {info['data_parallel']} (run under mpirun)")
    if info.get("fused"):
        print(f"fused steps: {len(info['fused'])}")
        for f in info["fused"][:20]:
            print(f"  step {f['step']:<5} {f['op']:<18} " + " → ".join(f["members"]))
        if len(info["fused"]) > 20:
            print(f"  ... and {len(info['fused']) - 20} more")
    print(f"parameters: {p['count']} in {p['variables']} variables, {format_bytes(p['bytes'])}"
          + (f"; other state {p['state_count']} ({format_bytes(p['state_bytes'])})" if p["state_count"] else ""))
    for title, key in (("inputs", "inputs"), ("outputs", "outputs")):
        print(f"{title}:")
        for v in info[key]:
            print(f"  {v['name']:<24} {v['dtype']:<8} {_fmt_shape(v['shape'])}")
    if info.get("entries"):
        print("entries:")
        for e in info["entries"]:
            what = (f"training, loss {e['loss']}, {e['optimizer']}, var_list {e['var_list'] or 'all'}"
                    if e["kind"] == "training" else "inference")
            print(f"  {e['name']:<20} {what}; fetches: {', '.join(e['fetches']) or 'none'}")
    t = info["training"]
    if t is None and info.get("entries"):
        print("training: no default spec (compile an entry above with --entry NAME)")
    elif t is None:
        print("training: none (inference)")
    else:
        hp = ", ".join(f"{k}={v:g}" for k, v in t["optimizer"]["hyperparameters"].items())
        clip = t["optimizer"]["clip_global_norm"]
        print(f"training: loss {t['loss']}, optimizer {t['optimizer']['kind']}" + (f" ({hp})" if hp else "")
              + (f", clip_global_norm {clip:g}" if clip else "")
              + (f", var_list {t['var_list']}" if t["var_list"] else ""))
    m = info.get("memory")
    if m is not None:
        print("memory:")
        print(f"  arena        {format_bytes(m['arena_bytes'])}")
        print(f"  naive        {format_bytes(m['naive_bytes'])}")
        print(f"  lower bound  {format_bytes(m['lower_bound_bytes'])}")
        print(f"  persistent   {format_bytes(m['persistent_bytes'])}")
        if m["bytes_by_kind"]:
            print("  arena by kind: " + ", ".join(f"{k} {format_bytes(v)}" for k, v in m["bytes_by_kind"].items()))
        if m["persistent_bytes_by_kind"]:
            print("  persistent by kind: " + ", ".join(f"{k} {format_bytes(v)}"
                                                      for k, v in m["persistent_bytes_by_kind"].items()))
        peak = m["peak"]
        if peak:
            where = f" at {peak['provenance']}" if peak["provenance"] else ""
            print(f"  peak: step {peak['step']} {peak['op']}({peak['node']}){where}, "
                  f"{format_bytes(peak['live_bytes'])} live; largest:")
            for v in peak["largest"]:
                print(f"    {v['name']:<24} {format_bytes(v['bytes']):<20} {v['kind']} {_fmt_shape(v['shape'])}")


def cmd_info(args):
    kind, obj = load_any(args.file)
    if kind == "program":
        info = program_info(obj, args.file)
    else:
        info = model_info(obj, args.file) if kind == "model" else plan_info(obj, args.file)
    if args.json:
        print(json.dumps(info, indent=2))
    elif kind == "program":
        _print_program_info(info)
    else:
        _print_info(info)
    return EXIT_OK


# -- viz -----------------------------------------------------------------------------------

def cmd_viz(args):
    out = args.output
    viz.output_format(out)
    if args.depth is not None and args.depth < 0:
        raise UsageError(f"--depth must be >= 0, got {args.depth}")
    kind, obj = load_any(args.file)
    if args.entry is not None:
        entries = obj.entries if kind == "program" else list(getattr(obj, "entries", None) or {})
        if kind == "plan":
            load_plan_arg(args.file, "viz", args.entry)   # its own entry name, or a UsageError
        elif args.entry not in entries:
            raise UsageError(f"--entry {args.entry}: {args.file} has no such entry; its entries: "
                             f"{', '.join(entries) or 'none'}")
    elif kind == "program" and len(obj.entries) > 1:
        raise UsageError(f"{args.file} is a program of {len(obj.entries)} entries; choose one with --entry NAME "
                         f"({', '.join(obj.entries)})")
    try:
        written = viz.draw(obj, out, collapse=args.collapse, depth=args.depth, rankdir=args.rankdir,
                           entry=args.entry)
    except viz.GraphvizNotFoundError as e:
        print(f"graphc viz: {e}", file=sys.stderr)
        return EXIT_OK
    print(f"wrote {written}")
    return EXIT_OK


# -- feeds and sessions ----------------------------------------------------------------------

def _plan_feeds(plan):
    """name → (dtype, dims) of the plan's feeds, in order."""
    out = {}
    for i in plan.proto.feeds:
        v = plan.proto.values[i]
        out[v.name] = (dtype_from_proto(v.dtype), tuple(v.dims))
    return out


def _describe_feeds(spec):
    return ", ".join(f"{n} {d} {_fmt_shape(s)}" for n, (d, s) in spec.items()) or "none"


def load_feeds(feed_args):
    """--feed NAME=FILE.npy | NAME=FILE.npz | FILE.npz (every array, by its key) → dict."""
    feeds = {}

    def put(name, arr, src):
        if name in feeds:
            raise UsageError(f"feed {name!r} is given twice (again in {src})")
        feeds[name] = arr

    for text in feed_args:
        name, sep, path = text.partition("=")
        if not sep:
            name, path = None, text
        if sep and not name:
            raise UsageError(f"bad --feed {text!r}: expected NAME=FILE.npy or FILE.npz")
        _check_exists(path)
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise FeedError(f"--feed {text}: {path} is not a .npy or .npz file ({e})") from None
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                arrays = {k: data[k] for k in data.files}
            if name is None:
                for k, arr in arrays.items():
                    put(k, arr, path)
            elif name in arrays:
                put(name, arrays[name], path)
            elif len(arrays) == 1:
                put(name, next(iter(arrays.values())), path)
            else:
                raise FeedError(f"--feed {text}: {path} has no array named {name!r} (it has "
                                f"{', '.join(sorted(arrays)) or 'none'})")
        else:
            if name is None:
                raise UsageError(f"bad --feed {text!r}: a .npy file needs a name: --feed NAME={path}")
            put(name, data, path)
    return feeds


def check_feeds(plan, feeds, batches=False):
    """Validate feeds against the plan; returns name → list of per-step arrays (one
    array unless ``batches``, where a feed whose first dim is k times the plan's is cut
    into k consecutive batches).  Raises FeedError naming the problem."""
    spec = _plan_feeds(plan)
    unknown = sorted(set(feeds) - set(spec))
    if unknown:
        raise FeedError(f"unknown feed {unknown[0]!r}; the plan's feeds are: {_describe_feeds(spec)}")
    out = {}
    for name, (dtype, dims) in spec.items():
        if name not in feeds:
            raise FeedError(f"missing feed {name!r} ({dtype} {_fmt_shape(dims)}); pass --feed {name}=FILE.npy")
        arr = np.asarray(feeds[name])
        if arr.dtype.name != dtype:
            if arr.dtype.kind == np.dtype(dtype).kind and np.can_cast(arr.dtype, dtype, "safe"):
                arr = arr.astype(dtype)
            else:
                raise FeedError(f"feed {name!r}: expected dtype {dtype}, got {arr.dtype} "
                                f"(convert it with .astype('{dtype}'))")
        if arr.shape == dims:
            out[name] = [np.ascontiguousarray(arr)]
        elif (batches and arr.ndim == len(dims) and arr.ndim > 0 and dims[0] > 0 and arr.shape[1:] == dims[1:]
              and arr.shape[0] % dims[0] == 0 and arr.shape[0] > 0):
            k = arr.shape[0] // dims[0]
            out[name] = [np.ascontiguousarray(arr[j * dims[0]:(j + 1) * dims[0]]) for j in range(k)]
        else:
            more = " (or a multiple of it along axis 0)" if batches else ""
            raise FeedError(f"feed {name!r}: expected shape {_fmt_shape(dims)}{more}, got {_fmt_shape(arr.shape)}")
    return out


def shard_feeds(plan, feeds, rank, world, quiet=False):
    """A data-parallel run's feeds for ``rank`` of ``world``: an array whose first dim is k × world ×
    the plan's (k global batches) gives this rank the r-th block of rows of each global batch; an
    array of exactly the plan's shape goes to every rank as it is (noted on stderr unless
    ``quiet``); a scalar feed goes to every rank."""
    spec = _plan_feeds(plan)
    out = {}
    for name, arr in feeds.items():
        dims = spec.get(name, (None, ()))[1]
        arr = np.asarray(arr)
        if name not in spec or not dims or arr.ndim != len(dims) or arr.shape[1:] != tuple(dims[1:]) or dims[0] == 0:
            out[name] = arr   # check_feeds names what is wrong
            continue
        per = dims[0]
        if arr.shape[0] > 0 and arr.shape[0] % (per * world) == 0:
            k = arr.shape[0] // (per * world)
            blocks = arr.reshape((k, world, per) + arr.shape[1:])[:, rank]
            out[name] = np.ascontiguousarray(blocks.reshape((k * per,) + arr.shape[1:]))
        elif arr.shape == tuple(dims):
            if not quiet:
                print(f"note: feed {name!r} has the plan's per-rank shape {_fmt_shape(dims)}: every rank gets the same "
                      f"array (give {world} x {per} rows to split it across the ranks)", file=sys.stderr)
            out[name] = arr
        else:
            raise FeedError(f"feed {name!r}: a data-parallel run over {world} ranks takes the global batch, "
                            f"{world} x {per} rows (or k times that for k steps) of shape {_fmt_shape(dims[1:])}, "
                            f"rank r taking the r-th block; got {_fmt_shape(arr.shape)}")
    return out


def _checkpoint_exists(sess, path):
    """Whether to load ``path``: it exists (data-parallel: on any rank; a rank that cannot read it
    then fails the load on every rank alike rather than skipping it alone)."""
    here = os.path.exists(path)
    if sess.comm is None:
        return here
    return any(b == b"1" for b in sess.comm.allgather(b"1" if here else b"0"))


def open_session(plan, device, threads, target=None, **extra):
    kwargs = {"device": device or target or getattr(plan, "target", None) or "cpu", **extra}
    if threads is not None:
        kwargs["threads"] = threads
    try:
        return Session(plan, **kwargs)
    except ImportError as e:  # the extension (graphc._runtime) is loaded by the first Session
        raise GraphcError(f"the graphc runtime is not available ({e}); build it with "
                          f"'python setup.py build_ext --inplace'") from None


def fetch_dict(out, plan):
    """Session.run's result (dict, list/tuple in fetch order, or one array) → name → array."""
    names = plan.fetches
    if isinstance(out, dict):
        return {(k if isinstance(k, str) else getattr(k, "name", str(k))): np.asarray(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return {n: np.asarray(v) for n, v in zip(names, out)}
    return {names[0] if names else "output": np.asarray(out)}


def _save_npz(path, arrays):
    tmp = _atomic_target(path)
    ok = False
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        ok = True
    finally:
        _replace_or_remove(tmp, path, ok)


def _summarize(arr):
    arr = np.asarray(arr)
    if arr.size <= 8:
        return np.array2string(arr, precision=6, separator=", ")
    return f"mean {arr.mean():.6g}, min {arr.min():.6g}, max {arr.max():.6g}"


# -- run -----------------------------------------------------------------------------------

def cmd_run(args):
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.output is not None and not args.output.endswith(".npz"):
        raise UsageError(f"-o {args.output}: run writes the fetched values as an .npz file")
    plan, program, entry = load_plan_arg(args.plan, "run", args.entry)
    training = plan.training is not None and _has_training_steps(plan)
    if args.steps > 1 and not training:
        what = f"entry {entry!r} of {args.plan} is an inference entry" if program is not None else \
            f"{args.plan} is an inference plan"
        raise UsageError(f"--steps {args.steps} needs a training plan; {what} (compile with --train LOSS "
                         f"--optimizer ...)")
    world = distributed.plan_world_size(program if program is not None else plan)
    if args.data_parallel and world is None:
        raise UsageError(f"--data-parallel: {args.plan} is not a data-parallel plan; compile it with graphc compile "
                         f"--data-parallel N, then run it under mpirun -np N")
    if args.deterministic_allreduce and world is None:
        raise UsageError("--deterministic-allreduce is for a data-parallel plan (--data-parallel)")
    extra = {"deterministic_allreduce": True} if args.deterministic_allreduce else {}
    if world is None:
        batches = check_feeds(plan, load_feeds(args.feed), batches=training)
    else:
        feeds = load_feeds(args.feed)
    # A program runs whole (every entry on one store), so a checkpoint covers all of it.
    sess = open_session(program if program is not None else plan, args.device, args.threads,
                        target=plan.target, **extra)
    if world is not None:
        # After the collective start-up: the same files give the same verdict on every rank.
        batches = check_feeds(plan, shard_feeds(plan, feeds, sess.rank, world, quiet=sess.rank != 0),
                              batches=training)
    lead = sess.rank == 0   # the rank that prints and writes
    run_entry = entry if program is not None else None
    if args.checkpoint and _checkpoint_exists(sess, args.checkpoint):
        sess.load_checkpoint(args.checkpoint)
        if lead:
            print(f"loaded checkpoint {args.checkpoint}", file=sys.stderr)

    loss_name = plan.training.loss if training else None
    fetched = {}
    steps = range(args.steps)
    bar = None
    if args.steps > 1 and lead:
        from tqdm import tqdm
        bar = tqdm(steps, desc="train", unit="step", file=sys.stderr, disable=None, dynamic_ncols=True)
        steps = bar
    for s in steps:
        feeds = {name: arrs[s % len(arrs)] for name, arrs in batches.items()}
        fetched = fetch_dict(sess.run(feeds, entry=run_entry), plan)
        if bar is not None and loss_name in fetched:
            bar.set_postfix(loss=f"{float(np.asarray(fetched[loss_name])):.6g}")
    if bar is not None:
        bar.close()
    if loss_name is not None and world is not None and loss_name in fetched:
        # Each rank's loss is the mean over its shard; the shards are equal, so the mean of
        # the ranks' losses is the loss of the global batch.
        mine = np.asarray(fetched[loss_name], np.float64).reshape(1)
        fetched[loss_name] = np.asarray(np.mean([np.frombuffer(b, np.float64)[0] for b in
                                                 sess.comm.allgather(mine.tobytes())]),
                                        np.asarray(fetched[loss_name]).dtype)
    if loss_name is not None and lead:
        what = f" (mean over {world} ranks)" if world is not None else ""
        if loss_name in fetched:
            print(f"step {args.steps}: loss {float(np.asarray(fetched[loss_name])):.6g}{what}")
        else:
            print(f"step {args.steps}: done (the plan does not fetch the loss {loss_name!r})")

    if args.checkpoint and world is not None:
        sess.save_checkpoint(args.checkpoint)   # rank 0 writes (atomically), every rank waits
        if lead:
            print(f"saved checkpoint {args.checkpoint}", file=sys.stderr)
    elif args.checkpoint:
        tmp = _atomic_target(args.checkpoint)
        ok = False
        try:
            sess.save_checkpoint(tmp)
            ok = True
        finally:
            _replace_or_remove(tmp, args.checkpoint, ok)
        print(f"saved checkpoint {args.checkpoint}", file=sys.stderr)
    if not lead:
        return EXIT_OK
    if args.output:
        _save_npz(args.output, fetched)
        print(f"wrote {args.output} ({', '.join(fetched)})")
    else:
        for name, arr in fetched.items():
            arr = np.asarray(arr)
            print(f"{name} {arr.dtype}{_fmt_shape(arr.shape)}: {_summarize(arr)}")
    return EXIT_OK


# -- bench ---------------------------------------------------------------------------------

def random_feeds(plan, seed=0):
    """Random feeds of the plan's shapes: floats ~ N(0, 1); integers in a range that
    fits their consumers (an op's declared ``index_inputs``: class labels below the
    logits' width, one_hot indices below depth); bools uniform."""
    rng = np.random.default_rng(seed)
    proto = plan.proto
    highs = {}
    for step in proto.steps:
        if not registry.has_op(step.op):
            continue
        index_inputs = registry.get_op(step.op).index_inputs
        if not index_inputs:
            continue
        shapes = [tuple(proto.values[i].dims) for i in step.inputs]
        # scalar attrs are all a bound may read (e.g. one_hot's depth)
        attrs = {k: getattr(a, a.WhichOneof("value")) for k, a in step.attrs.items()
                 if a.WhichOneof("value") in ("i", "f", "b", "s")}
        for pos, i in enumerate(step.inputs):
            if pos not in index_inputs:
                continue
            try:
                high = index_inputs[pos].bound(shapes, attrs)
            except (KeyError, IndexError, TypeError, ValueError):
                high = None  # a plan whose step lacks what the bound reads: leave the default
            if high:
                highs[i] = min(highs.get(i, high), high)
    out = {}
    for i in proto.feeds:
        v = proto.values[i]
        dtype, dims = dtype_from_proto(v.dtype), tuple(v.dims)
        if dtype in dtypes.FLOATS:
            out[v.name] = rng.standard_normal(dims).astype(dtype)
        elif dtype == "bool":
            out[v.name] = rng.integers(0, 2, dims).astype(bool)
        else:
            out[v.name] = rng.integers(0, max(int(highs.get(i, 2)), 1), dims).astype(dtype)
    return out


def per_step_seconds(result, plan):
    """A profile result → list of total seconds per step.  Accepts a list of
    (step_index or node name, seconds) pairs (extra fields between are ignored), a
    dict of the same, or a list of floats (one per step)."""
    steps = plan.proto.steps
    totals = [0.0] * len(steps)
    by_node = {}
    for s, step in enumerate(steps):
        by_node.setdefault(step.node, s)
    items = result.items() if isinstance(result, dict) else list(result)
    for pos, item in enumerate(items):
        if isinstance(item, (int, float, np.floating)):
            key, secs = pos, item
        elif isinstance(item, dict):
            key = item.get("step", item.get("node"))
            secs = item.get("seconds_total", item.get("seconds"))
        else:
            key, secs = item[0], item[-1]
        idx = by_node.get(key) if isinstance(key, str) else int(key)
        if idx is None or not 0 <= idx < len(steps):
            raise GraphcError(f"Session.profile returned a time for {key!r}, which is not a step of the plan")
        totals[idx] += float(secs)
    return totals


def cmd_bench(args):
    if args.iters < 1 or args.warmup < 0:
        raise UsageError("--iters must be >= 1 and --warmup >= 0")
    plan, _, _ = load_plan_arg(args.plan, "bench", args.entry)
    if args.feed:
        feeds = {k: v[0] for k, v in check_feeds(plan, load_feeds(args.feed)).items()}
    else:
        feeds = random_feeds(plan, args.seed)
    sess = open_session(plan, args.device, args.threads)
    for _ in range(args.warmup):
        sess.run(feeds)
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        sess.run(feeds)
        times.append(time.perf_counter() - t0)
    t = np.asarray(times) * 1e3
    profile = sess.profile(feeds, args.iters)   # every rank of a data-parallel plan takes part
    if sess.rank != 0:
        return EXIT_OK                          # rank 0 reports (its own times)
    ranks = f", rank 0 of {sess.world_size} (data-parallel)" if sess.comm is not None else ""
    print(f"{args.plan}: {args.iters} iterations after {args.warmup} warmup, device {sess_device(sess, plan, args)}"
          f"{ranks}")
    print(f"latency ms: min {t.min():.4f}  median {np.median(t):.4f}  p90 {np.percentile(t, 90):.4f}  "
          f"mean {t.mean():.4f}")
    totals = per_step_seconds(profile, plan)
    _print_node_table(plan, totals, args.iters, args.top)
    return EXIT_OK


def sess_device(sess, plan, args):
    return getattr(sess, "device", None) or args.device or plan.target or "cpu"


def _print_node_table(plan, totals, iters, top):
    steps = plan.proto.steps
    grand = sum(totals) or 1.0
    rows = sorted(range(len(steps)), key=lambda s: (-totals[s], s))[:top]
    print(f"time per node (top {min(top, len(steps))} of {len(steps)} steps, kernel time over {iters} iterations):")
    print(f"{'#':>3} {'node':<32} {'op':<22} {'role':<9} {'us/iter':>10} {'%':>6}  where")
    for rank, s in enumerate(rows, 1):
        step = steps[s]
        print(f"{rank:>3} {step.node[:32]:<32} {step.op[:22]:<22} {_ROLE_NAMES.get(step.role, '?'):<9} "
              f"{totals[s] / iters * 1e6:>10.2f} {100 * totals[s] / grand:>6.1f}  {_prov(step.provenance)}")
        for member in step.fused:   # a fused step: the user's nodes it runs, each with its line
            print(f"{'':>3}   {member.node[:30]:<30} {member.op[:22]:<22} {'':<9} {'':>10} {'':>6}  "
                  f"{_prov(member.provenance)}")


# -- import / export (ONNX) ----------------------------------------------------------------

def _default_output(path, ext):
    return os.path.splitext(path)[0] + ext


def cmd_import(args):
    _check_exists(args.model)
    shapes = dict(parse_shape(t) for t in args.shape)
    out = args.output or _default_output(args.model, ".pb")
    graph = gc_onnx.load(args.model, trainable=not args.constants, shapes=shapes or None)
    graph.save(out)
    params = _params(graph.variables)
    ops = _histogram(n.op for n in graph.nodes)
    top = ", ".join(f"{op} {k}" for op, k in list(ops.items())[:8]) + (", ..." if len(ops) > 8 else "")
    print(f"wrote {out}: {len(graph.nodes)} nodes, {len(ops)} ops ({top}), "
          f"{params['count']} parameters in {params['variables']} variables ({format_bytes(params['bytes'])})")
    names = getattr(graph, "onnx_names", {})
    for p in graph.inputs:
        print(f"  input  {p.name} {_fmt_shape(p.shape)} {p.dtype}")
    for o in graph.outputs:
        t = graph.tensor(o)
        print(f"  output {o} {_fmt_shape(t.shape)} {t.dtype}")
    renamed = {k: v for k, v in names.items() if k != v}
    for k, v in renamed.items():
        print(f"  renamed ONNX value {k!r} -> {v!r} (':' is reserved in graphc names)")
    return EXIT_OK


def cmd_export(args):
    _check_exists(args.model)
    out = args.output or _default_output(args.model, ".onnx")
    model = gc_onnx.save(args.model, out, opset=args.opset, fetches=args.fetch or None)
    opset = next((o.version for o in getattr(model, "opset_import", []) if o.domain in ("", "ai.onnx")), None)
    nodes = len(model.graph.node) if model is not None else 0
    print(f"wrote {out}: {nodes} ONNX nodes" + (f", opset {opset}" if opset is not None else ""))
    return EXIT_OK


# -- the parser ----------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (exit 2), no usage block."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    p = _Parser(prog="graphc", description="Compile, inspect, draw, run and benchmark graphc models.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def common(sp):
        sp.add_argument("-v", "--verbose", action="store_true", help="more detail; tracebacks on errors")

    c = sub.add_parser("compile", help="compile a model (.pb) into a plan")
    c.add_argument("model", help="the model .pb")
    c.add_argument("-o", "--output", help="the plan to write (default: MODEL with .plan)")
    c.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="bind a placeholder's shape (repeatable)")
    c.add_argument("--fetch", action="append", default=[], metavar="NAME", help="a value to return (repeatable)")
    c.add_argument("--train", metavar="LOSS", help="train: minimize this scalar value")
    c.add_argument("--optimizer", metavar="KIND:K=V,...", help="e.g. sgd:lr=0.1,momentum=0.9 or adam:lr=1e-3")
    c.add_argument("--inference", action="store_true", help="ignore the model's training spec")
    c.add_argument("--target", choices=("cpu", "cuda"), default="cpu")
    c.add_argument("--memory-budget", metavar="SIZE", help="e.g. 64MB, 512MiB")
    c.add_argument("--data-parallel", nargs="?", const="auto", metavar="N",
                   help="train on N ranks (run the plan under mpirun -np N; the shapes are per rank); without N: "
                        "the world size of the mpirun this runs under")
    c.add_argument("--bucket-cap", metavar="SIZE", help="--data-parallel: the most gradient bytes one allreduce "
                                                        "sums (default 25MB)")
    c.add_argument("--no-fuse", action="store_true",
                   help="one step per node: no fused elementwise chains or matmul epilogues")
    c.add_argument("--entry", action="append", default=[], metavar="NAME",
                   help="compile this entry point: once -> a plan, repeated -> a program of those entries")
    c.add_argument("--entries", metavar="all|A,B,...", help="compile these entry points (all: every one) "
                   "into a program; --shape ENTRY:NAME=D0,... binds a shape for one entry")
    c.add_argument("--emit", default="plan", metavar="plan|c",
                   help="plan (default): write the plan or program file; c: write a C library source tree into "
                   "the folder -o (header, source, weights, Makefile, CMakeLists.txt; docs/aot.md)")
    c.add_argument("--name", metavar="NAME", help="--emit c: the C prefix of the artifact (a lower-case C "
                   "identifier; default: the model file's stem)")
    c.add_argument("--embed-weights", action="store_true",
                   help="--emit c: also assemble the weights into the library (.incbin)")
    common(c)
    c.set_defaults(func=cmd_compile)

    i = sub.add_parser("info", help="ops, parameters, inputs/outputs, training spec, memory")
    i.add_argument("file", help="a model .pb or a plan")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    common(i)
    i.set_defaults(func=cmd_info)

    z = sub.add_parser("viz", help="draw a model or plan with graphviz")
    z.add_argument("file", help="a model .pb or a plan")
    z.add_argument("-o", "--output", required=True, help="graph.svg, .png, .pdf or .dot")
    z.add_argument("--collapse", action="store_true", help="draw each top-level scope as one box")
    z.add_argument("--depth", type=int, metavar="N", help="keep scopes N deep as clusters, deeper ones as boxes")
    z.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB")
    z.add_argument("--entry", metavar="NAME", help="draw one entry point: a program's plan of it, or the part "
                   "of a model's graph it computes")
    common(z)
    z.set_defaults(func=cmd_viz)

    r = sub.add_parser("run", help="run a plan on feeds from .npy/.npz files")
    r.add_argument("plan", help="a plan or a program file")
    r.add_argument("--entry", metavar="NAME", help="the entry of a program to run (required when it has several)")
    r.add_argument("--feed", action="append", default=[], metavar="NAME=FILE.npy|FILE.npz")
    r.add_argument("-o", "--output", metavar="OUT.npz", help="write the fetched values")
    r.add_argument("--steps", type=int, default=1, help="training steps (training plans)")
    r.add_argument("--checkpoint", metavar="PATH", help="load before (if present) and save after")
    r.add_argument("--device", choices=("cpu", "cuda"))
    r.add_argument("--threads", type=int)
    r.add_argument("--data-parallel", action="store_true",
                   help="the plan is data-parallel (compile --data-parallel N): run under mpirun -np N; each fed "
                        "array holds the global batch and rank r takes its r-th block of rows; rank 0 prints and "
                        "writes")
    r.add_argument("--deterministic-allreduce", action="store_true",
                   help="--data-parallel: sum gradients in rank order (bit-identical, slower)")
    common(r)
    r.set_defaults(func=cmd_run)

    im = sub.add_parser("import", help="import an ONNX model (.onnx) as a graphc model (.pb)")
    im.add_argument("model", help="the ONNX model")
    im.add_argument("-o", "--output", help="the model to write (default: MODEL with .pb)")
    im.add_argument("--constants", action="store_true",
                    help="float initializers become constants (default: trainable variables)")
    im.add_argument("--shape", action="append", default=[], metavar="NAME=D0,D1,...",
                    help="pin a graph input's shape at import (repeatable; needed when a shape computation "
                    "depends on more than one symbolic dim)")
    common(im)
    im.set_defaults(func=cmd_import)

    ex = sub.add_parser("export", help="export a graphc model (.pb) as an ONNX model")
    ex.add_argument("model", help="the graphc model .pb")
    ex.add_argument("-o", "--output", help="the ONNX file to write (default: MODEL with .onnx)")
    ex.add_argument("--opset", type=int, metavar="N", help="the default-domain opset (default: see docs/onnx.md)")
    ex.add_argument("--fetch", action="append", default=[], metavar="NAME",
                    help="an ONNX graph output (a value name or an inference entry point; repeatable; "
                         "default: the model's outputs)")
    common(ex)
    ex.set_defaults(func=cmd_export)

    b = sub.add_parser("bench", help="latency and time per node")
    b.add_argument("plan", help="a plan or a program file")
    b.add_argument("--entry", metavar="NAME", help="the entry of a program to time (required when it has several)")
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--iters", type=int, default=100)
    b.add_argument("--top", type=int, default=20, help="rows of the per-node table")
    b.add_argument("--feed", action="append", default=[], metavar="NAME=FILE.npy|FILE.npz",
                   help="feeds to use instead of random data")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", choices=("cpu", "cuda"))
    b.add_argument("--threads", type=int)
    common(b)
    b.set_defaults(func=cmd_bench)
    return p


def _version():
    return f"graphc {__version__}"


def main(argv=None):
    """Run the graphc tool; returns the exit status (0 ok, 2 bad input, 1 internal error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
    verbose = getattr(args, "verbose", False)
    prog = f"graphc {args.command}"
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `graphc info --json ... | head`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except (GraphcError, OSError) as e:
        if verbose:
            traceback.print_exc()
        if isinstance(e, OSError) and not isinstance(e, GraphcError):
            text = f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
        else:
            text = str(e)
        print(f"{prog}: error: {' '.join(text.split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in graphc: say so in one line, the traceback with -v
        if verbose:
            traceback.print_exc()
        print(f"{prog}: internal error: {type(e).__name__}: {' '.join(str(e).split())} "
              f"(rerun with -v for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
