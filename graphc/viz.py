"""Drawing graphs and plans with graphviz.

Each node is a box labelled with its op, its name and its key attrs; each edge
carries the value's dtype and shape (for plans also where it lives: the arena
offset and size, a view, persistent or constant storage).  Nodes are coloured by
role (forward, gradient, optimizer, recompute), name scopes become nested
clusters, and in SVG output hovering a node shows where it was built (file:line).
Big graphs read better with ``collapse=True`` (each top-level scope drawn as one
box) or ``depth=N`` (scopes nested N deep stay clusters, deeper ones become boxes).

Example::

    import graphc as gc
    import graphc.viz
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 4))
        with gc.name_scope("fc1"):
            w = gc.variable("w", (4, 2), init=gc.init.ones())
            y = gc.relu(x @ w)
    gc.viz.draw(g, "graph.svg")          # or .png, .pdf, .dot
    gc.viz.to_digraph(g)                 # a graphviz.Digraph; notebooks display it

``draw`` and ``to_digraph`` take a Graph, a Plan (or graphc_pb2.Plan), a Program or a
path to a ``.pb`` model, ``.plan`` or program file.  ``entry=NAME`` draws one entry point:
of a program, that entry's plan (required when it has several); of a Graph, the part of
the graph the entry computes (its fetches and, for a training entry, its loss).
"""

import os
import shutil
from collections import Counter

from graphc import registry, serialize
from graphc._proto import graphc_pb2 as pb
from graphc.errors import GraphcError
from graphc.fileio import atomic_write
from graphc.graph import Graph
from graphc.plan import Plan, load_plan
from graphc.program import Program, load_plan_or_program
from graphc.proto_enums import dtype_from_proto

FORMATS = ("svg", "png", "pdf", "dot")

# Fill colours by role; the legend in docs/cli.md names them.
ROLE_COLORS = {
    "forward": "#cfe2f3",    # light blue
    "gradient": "#f4cccc",   # light red
    "optimizer": "#d9ead3",  # light green
    "recompute": "#fff2cc",  # light yellow
}
INPUT_COLOR = "#ffffff"
VARIABLE_COLOR = "#e6e6e6"
STATE_COLOR = "#d0d0d0"
CONSTANT_COLOR = "#f3f3f3"

_ROLE_NAMES = {pb.FORWARD: "forward", pb.GRADIENT: "gradient", pb.OPTIMIZER: "optimizer",
               pb.RECOMPUTE: "recompute"}
_SHORT_DTYPE = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "bool"}
_MAX_ATTR_CHARS = 40

INSTALL_HINT = ("install graphviz's 'dot' program to render it: apt-get install graphviz (Debian/Ubuntu), "
                "brew install graphviz (macOS), conda install -c conda-forge graphviz, "
                "or see https://graphviz.org/download/")


class GraphvizNotFoundError(GraphcError):
    """The graphviz ``dot`` program is missing; the .dot file was written instead."""

    def __init__(self, message, dot_path):
        super().__init__(message)
        self.dot_path = dot_path


# -- a neutral picture: items (boxes) and edges ----------------------------------------

class _Item:
    __slots__ = ("key", "kind", "lines", "role", "scope", "provenance", "op", "fetched", "members")

    def __init__(self, key, kind, lines, role=None, scope="", provenance=None, op=None, fetched=False, members=()):
        self.key = key              # unique id within the picture
        self.kind = kind            # "op", "input", "variable", "state", "constant"
        self.lines = lines          # label lines
        self.role = role            # for ops
        self.scope = scope          # "a/b" or ""
        self.provenance = provenance
        self.op = op
        self.fetched = fetched
        self.members = members      # a fused step's (node, op, provenance), in program order


class _Picture:
    def __init__(self, title):
        self.title = title
        self.items = []
        self.edges = []   # (src key, dst key, value name, label lines, style) style: None | "update"

    def add(self, item):
        self.items.append(item)
        return item


def _fmt_dims(dims):
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def _type_label(dtype, dims):
    return f"{_SHORT_DTYPE.get(dtype, dtype)}{_fmt_dims(dims)}"


def _scope_of_name(name):
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _fmt_prov(prov):
    if not prov or not prov[0]:
        return None
    return f"{prov[0]}:{prov[1]}"


def _fmt_attr_value(value):
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "(" + ",".join(_fmt_attr_value(v) for v in value) + ")"
    elif hasattr(value, "shape") and hasattr(value, "dtype"):   # numpy array (constant values)
        text = _type_label(str(value.dtype), value.shape)
    else:
        text = str(value)
    return text if len(text) <= _MAX_ATTR_CHARS else text[:_MAX_ATTR_CHARS - 1] + "…"


def _proto_attr_value(attr):
    which = attr.WhichOneof("value")
    if which is None:
        return None
    if which == "ints":
        return list(attr.ints.values)
    if which == "floats":
        return list(attr.floats.values)
    if which == "dtype":
        try:
            return dtype_from_proto(attr.dtype)
        except KeyError:
            return f"dtype#{attr.dtype}"
    if which == "tensor":
        try:
            name = dtype_from_proto(attr.tensor.dtype)
        except KeyError:
            name = "?"
        return _type_label(name, list(attr.tensor.dims))
    return getattr(attr, which)


def _attr_lines(op, attrs):
    """The attrs worth a label: set and different from the op's default."""
    if not attrs:
        return []
    specs = registry.get_op(op).attrs if registry.has_op(op) else {}

    def is_default(k, v):
        spec = specs.get(k)
        if spec is None or spec.required:
            return False
        try:
            return bool(spec.coerce(v) == spec.default) if not hasattr(v, "shape") else False
        except (TypeError, ValueError):
            return False

    parts = [f"{k}={_fmt_attr_value(v)}" for k, v in sorted(attrs.items()) if v is not None and not is_default(k, v)]
    return [", ".join(parts)] if parts else []


def _fused_lines(op, attrs, members):
    """A fused step's label: its attrs but the program, then one line per member it runs (the
    user's node, its op and line), so the drawing names what the user built."""
    lines = _attr_lines(op, {k: v for k, v in attrs.items() if k != "program"})
    lines.append(f"fused {len(members)} nodes:")
    for name, member_op, prov in members:
        line = f"  {name} ({member_op})"
        if prov and prov[1]:
            line += f" line {prov[1]}"
        lines.append(line)
    return lines


def _entry_part(graph, entry):
    """(names of the nodes, placeholders and variables that entry ``entry`` of ``graph``
    computes from, its fetched values); GraphcError for an unknown entry."""
    entries = getattr(graph, "entries", None) or {}
    spec = entries.get(entry)
    if spec is None:
        raise GraphcError(f"the model has no entry {entry!r}; its entries: {list(entries) or 'none'}")
    targets = list(spec.fetches)
    if spec.training is not None and spec.training.loss:
        targets.insert(0, spec.training.loss)
    keep, todo = set(), list(targets)
    while todo:
        value = todo.pop()
        if not graph.has_value(value):
            continue
        producer = graph.tensor(value).producer
        name = getattr(producer, "name", None)
        if name is None or name in keep:
            continue
        keep.add(name)
        todo.extend(getattr(producer, "inputs", ()))
    return keep, set(targets)


def _picture_of_graph(graph, entry=None):
    pic = _Picture("graph")
    producer = {}
    fetched = set(graph.default_fetches())
    keep = None
    if entry is not None:
        keep, fetched = _entry_part(graph, entry)
    for ph in graph.inputs:
        if keep is not None and ph.name not in keep:
            continue
        item = pic.add(_Item("in:" + ph.name, "input", [ph.name, "input " + _type_label(ph.dtype, ph.shape)],
                             scope=_scope_of_name(ph.name), provenance=ph.provenance))
        producer[ph.name] = item
    for var in graph.variables:
        if keep is not None and var.name not in keep:
            continue
        kind = "variable" if var.trainable else "state"
        item = pic.add(_Item("var:" + var.name, kind, [var.name, f"{kind} {_type_label(var.dtype, var.shape)}"],
                             scope=_scope_of_name(var.name), provenance=var.provenance))
        producer[var.name] = item
    nodes = [n for n in graph.nodes if keep is None or n.name in keep]
    for node in nodes:
        members = tuple((m.name, m.op, m.provenance) for m in node.fused)
        if members:
            lines = [node.op, node.name] + _fused_lines(node.op, node.attrs, members)
        else:
            lines = [node.op, node.name] + _attr_lines(node.op, node.attrs)
        item = pic.add(_Item("node:" + node.name, "op", lines, role=node.role, scope=node.scope,
                             provenance=node.provenance, op=node.op,
                             fetched=any(o in fetched for o in node.outputs), members=members))
        for o in node.outputs:
            producer[o] = item
    for node in nodes:
        for value in node.inputs:
            src = producer.get(value)
            if src is None:
                continue
            t = graph.tensor(value)
            label = _type_label(t.dtype, t.shape)
            if ":" in value:
                label = value.rsplit(":", 1)[1] + ": " + label
            pic.edges.append((src.key, "node:" + node.name, value, [label], None))
    return pic


def _picture_of_plan(plan):
    proto = plan.proto if hasattr(plan, "proto") else plan
    pic = _Picture("plan")
    values = proto.values
    producer = {}
    fetched = set(proto.fetches)
    for s, step in enumerate(proto.steps):
        for i in step.outputs:
            producer.setdefault(i, s)
    sources = {}
    feeds = set(proto.feeds)
    for i, v in enumerate(values):
        if i in producer or v.storage == pb.VIEW:
            continue
        dtype = dtype_from_proto(v.dtype)
        tlabel = _type_label(dtype, v.dims)
        if v.storage == pb.PERSISTENT:
            var = proto.persistent[v.index]
            kind = "variable" if var.trainable else "state"
            item = _Item("val:" + v.name, kind, [v.name, f"{kind} {tlabel}"], scope=_scope_of_name(v.name),
                         provenance=(var.provenance.file, var.provenance.line))
        elif v.storage == pb.CONSTANT:
            item = _Item("val:" + v.name, "constant", [v.name, f"constant {tlabel}"], scope=_scope_of_name(v.name))
        else:
            kind = "input" if i in feeds else "arena"
            item = _Item("val:" + v.name, "input", [v.name, f"{kind} {tlabel}"], scope=_scope_of_name(v.name))
        sources[i] = pic.add(item)
    persistent_source = {values[i].index: item for i, item in sources.items()
                         if values[i].storage == pb.PERSISTENT}
    for s, step in enumerate(proto.steps):
        attrs = {k: _proto_attr_value(a) for k, a in step.attrs.items()}
        members = tuple((m.node, m.op, (m.provenance.file, m.provenance.line)) for m in step.fused)
        if members:
            lines = [step.op, step.node or f"step {s}"] + _fused_lines(step.op, attrs, members) + [f"step {s}"]
        else:
            lines = [step.op, step.node or f"step {s}"] + _attr_lines(step.op, attrs) + [f"step {s}"]
        pic.add(_Item(f"step:{s}", "op", lines, role=_ROLE_NAMES.get(step.role, "forward"),
                      scope=_scope_of_name(step.node), provenance=(step.provenance.file, step.provenance.line),
                      op=step.op, fetched=any(o in fetched for o in step.outputs), members=members))

    def where_label(i):
        v = values[i]
        tlabel = _type_label(dtype_from_proto(v.dtype), v.dims)
        if v.storage == pb.ARENA:
            return [tlabel, f"@{v.offset} +{v.nbytes}B"]
        if v.storage == pb.VIEW:
            return [tlabel, f"view of {values[v.alias_of].name}"]
        if v.storage == pb.PERSISTENT:
            return [tlabel, f"persistent {v.nbytes}B"]
        return [tlabel, f"constant {v.nbytes}B"]

    for s, step in enumerate(proto.steps):
        for i in step.inputs:
            if i in producer and producer[i] != s:
                src = f"step:{producer[i]}"
            elif i in sources:
                src = sources[i].key
            else:
                continue
            pic.edges.append((src, f"step:{s}", values[i].name, where_label(i), None))
        for i in step.outputs:
            # A step that writes a variable in place (an optimizer update) points back at it.
            if values[i].storage == pb.PERSISTENT and values[i].index in persistent_source:
                target = persistent_source[values[i].index]
                pic.edges.append((f"step:{s}", target.key, values[i].name, ["update"], "update"))
    return pic


def _as_picture(obj, entry=None):
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if path.endswith(".pb"):
            obj = serialize.load(path)
        elif path.endswith(".plan"):
            obj = load_plan(path)
        else:
            obj = load_plan_or_program(path)
    if isinstance(obj, Graph):
        return _picture_of_graph(obj, entry)
    if isinstance(obj, Program):
        if entry is None:
            if len(obj.entries) != 1:
                raise GraphcError(f"the program has {len(obj.entries)} entries; name the one to draw (entry=, "
                                  f"--entry): {obj.entries}")
            entry = obj.entries[0]
        if entry not in obj.entries:
            raise GraphcError(f"the program has no entry {entry!r}; its entries: {obj.entries}")
        return _picture_of_plan(obj.entry_proto(entry))
    if isinstance(obj, (Plan, pb.Plan)):
        if entry is not None:
            proto = obj.proto if isinstance(obj, Plan) else obj
            own = proto.metadata.get("entry")
            if entry != own:
                have = f"entry {own!r}" if own else "no entry name"
                raise GraphcError(f"the plan is one compiled plan ({have}); cannot draw entry {entry!r}")
        return _picture_of_plan(obj)
    raise TypeError(f"viz draws a Graph, a Plan, a Program or a path to a .pb/.plan/program file, got "
                    f"{type(obj).__name__}")


# -- collapsing scopes --------------------------------------------------------------------

def _collapse(pic, depth):
    """Replace the items of every scope nested deeper than ``depth`` by one box per
    scope at level ``depth + 1``; edges inside a box disappear, parallel ones merge."""
    boxes = {}     # box scope → list of items
    remap = {}
    kept = []
    for item in pic.items:
        parts = item.scope.split("/") if item.scope else []
        if len(parts) > depth:
            box = "/".join(parts[:depth + 1])
            boxes.setdefault(box, []).append(item)
            remap[item.key] = "scope:" + box
        else:
            kept.append(item)
    out = _Picture(pic.title)
    out.items = kept
    for box, members in boxes.items():
        ops = Counter(m.op for m in members if m.kind == "op")
        roles = Counter(m.role for m in members if m.kind == "op")
        nvars = sum(1 for m in members if m.kind in ("variable", "state"))
        count = sum(ops.values())
        lines = [box, f"{count} node" + ("" if count == 1 else "s")]
        if ops:
            lines.append(", ".join(f"{op}×{n}" for op, n in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))[:4])
                         + (", …" if len(ops) > 4 else ""))
        if nvars:
            lines.append(f"{nvars} variable" + ("" if nvars == 1 else "s"))
        provs = [m.provenance for m in members if _fmt_prov(m.provenance)]
        role = roles.most_common(1)[0][0] if roles else "forward"
        out.items.append(_Item("scope:" + box, "scope", lines, role=role, scope=_scope_of_name(box),
                               provenance=provs[0] if provs else None, op=None,
                               fetched=any(m.fetched for m in members)))
    seen = set()
    for src, dst, value, label, style in pic.edges:
        src, dst = remap.get(src, src), remap.get(dst, dst)
        if src == dst or (src, dst, value) in seen:
            continue
        seen.add((src, dst, value))
        out.edges.append((src, dst, value, label, style))
    return out


# -- graphviz -----------------------------------------------------------------------------

def _esc(text):
    return str(text).replace("\\", "\\\\")


def _node_attrs(item):
    attrs = {"label": "\\n".join(_esc(line) for line in item.lines), "style": "filled"}
    if item.kind == "op":
        attrs.update(shape="box", fillcolor=ROLE_COLORS.get(item.role, ROLE_COLORS["forward"]))
        attrs["style"] = "filled,rounded"
    elif item.kind == "scope":
        attrs.update(shape="box3d", fillcolor=ROLE_COLORS.get(item.role, ROLE_COLORS["forward"]))
    elif item.kind == "input":
        attrs.update(shape="ellipse", fillcolor=INPUT_COLOR)
    elif item.kind == "variable":
        attrs.update(shape="cylinder", fillcolor=VARIABLE_COLOR)
    elif item.kind == "state":
        attrs.update(shape="cylinder", fillcolor=STATE_COLOR)
    else:
        attrs.update(shape="note", fillcolor=CONSTANT_COLOR)
    if item.fetched:
        attrs["peripheries"] = "2"
    prov = _fmt_prov(item.provenance)
    tooltip = item.lines[1] if item.kind == "op" else item.lines[0]
    if item.members:   # a fused step: where the user built each node it runs
        attrs["tooltip"] = "\\n".join(
            _esc(f"{name} ({op})" + (f" — built at {_fmt_prov(p)}" if _fmt_prov(p) else ""))
            for name, op, p in item.members)
    else:
        attrs["tooltip"] = _esc(f"{tooltip} — built at {prov}" if prov else tooltip)
    return attrs


def _cluster_id(scope):
    return "cluster_" + scope.replace('"', "_")


def to_digraph(obj, collapse=False, depth=None, rankdir="TB", entry=None):
    """A ``graphviz.Digraph`` of a Graph, Plan, Program or .pb/.plan/program path (see the
    module doc; ``entry``: draw that entry point only).

    ``collapse=True`` draws each top-level name scope as one box; ``depth=N`` keeps
    scopes nested up to N deep as clusters and draws deeper ones as boxes
    (``collapse=True`` is ``depth=0``).  In a notebook the returned object displays
    itself; ``.source`` is the DOT text.
    """
    import graphviz

    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise ValueError(f"depth must be an int >= 0, got {depth!r}")
    pic = _as_picture(obj, entry)
    if collapse or depth is not None:
        pic = _collapse(pic, 0 if depth is None else depth)

    ids = {item.key: f"n{i}" for i, item in enumerate(pic.items)}
    by_scope = {}
    for item in pic.items:
        by_scope.setdefault(item.scope, []).append(item)
    # every ancestor of a used scope is a cluster too
    scopes = set()
    for scope in by_scope:
        parts = scope.split("/") if scope else []
        for k in range(1, len(parts) + 1):
            scopes.add("/".join(parts[:k]))
    children = {}
    for scope in sorted(scopes):
        children.setdefault(_scope_of_name(scope), []).append(scope)

    dot = graphviz.Digraph(name=pic.title, graph_attr={"rankdir": rankdir, "fontname": "Helvetica"},
                           node_attr={"fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "8"})

    def fill(g, scope):
        for item in by_scope.get(scope, []):
            g.node(ids[item.key], **_node_attrs(item))
        for child in children.get(scope, []):
            sub = graphviz.Digraph(name=_cluster_id(child))
            sub.attr(label=_esc(child.rsplit("/", 1)[-1]), tooltip=_esc(child), style="rounded,dashed",
                     color="#888888", fontname="Helvetica")
            fill(sub, child)
            g.subgraph(sub)

    fill(dot, "")
    for src, dst, value, label, style in pic.edges:
        attrs = {"label": "\\n".join(_esc(line) for line in label), "tooltip": _esc(value)}
        if style == "update":
            attrs.update(style="dashed", constraint="false", color="#6aa84f")
        dot.edge(ids[src], ids[dst], **attrs)
    return dot


def to_dot(obj, **kwargs):
    """The DOT text of :func:`to_digraph`."""
    return to_digraph(obj, **kwargs).source


def _atomic_write(path, data):
    atomic_write(path, data)


def output_format(path):
    """'svg', 'png', 'pdf' or 'dot' from a file name; raises GraphcError otherwise."""
    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    if ext == "gv":
        ext = "dot"
    if ext not in FORMATS:
        raise GraphcError(f"cannot tell the drawing format from {os.fspath(path)!r}: "
                          f"use a name ending in {', '.join('.' + f for f in FORMATS)}")
    return ext


def draw(obj, path, collapse=False, depth=None, rankdir="TB", entry=None):
    """Draw a Graph, Plan, Program or .pb/.plan/program path into ``path``; the format comes
    from its extension (.svg, .png, .pdf or .dot); ``entry``: that entry point only.  Returns
    the path written.

    The file is replaced only once the whole drawing is produced.  Without graphviz's
    ``dot`` program a non-.dot drawing cannot be rendered: the DOT text is written
    beside it (``graph.svg`` → ``graph.dot``) and GraphvizNotFoundError says how to
    install graphviz.
    """
    import graphviz

    path = os.fspath(path)
    fmt = output_format(path)
    digraph = to_digraph(obj, collapse=collapse, depth=depth, rankdir=rankdir, entry=entry)
    if fmt == "dot":
        _atomic_write(path, digraph.source.encode("utf-8"))
        return path
    if shutil.which("dot") is None:
        dot_path = os.path.splitext(path)[0] + ".dot"
        _atomic_write(dot_path, digraph.source.encode("utf-8"))
        raise GraphvizNotFoundError(f"graphviz's 'dot' program was not found, so {path} was not drawn; "
                                    f"wrote {dot_path} instead; {INSTALL_HINT}", dot_path)
    try:
        data = digraph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        dot_path = os.path.splitext(path)[0] + ".dot"
        _atomic_write(dot_path, digraph.source.encode("utf-8"))
        raise GraphvizNotFoundError(f"graphviz's 'dot' program could not run, so {path} was not drawn; "
                                    f"wrote {dot_path} instead; {INSTALL_HINT}", dot_path) from None
    except graphviz.CalledProcessError as e:
        raise GraphcError(f"graphviz failed to draw {path}: {e}") from None
    _atomic_write(path, data)
    return path
