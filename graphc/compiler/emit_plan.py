"""Pass 7: emit_plan — write the Plan message.

Needs: a scheduled Graph with concrete shapes whose ``outputs`` are the fetches (after
prune_graph and schedule_nodes), and its :class:`BufferAssignment`.
Guarantees: a ``graphc_pb2.Plan`` (format_version 1) that ``graphc.plan.validate_plan``
accepts: one PlanValue per buffer (same order), one PlanStep per node that is not a
constant or a view (schedule order; attrs encoded as in models, reshape's ``shape``
replaced by the concrete output shape; ``frees``: the ARENA values dead after the
step; ``workspaces``: its scratch values), feeds (every placeholder of the graph, in
order), fetches, persistent variables and constants with inline data, the memory
report, the training spec and metadata.  Deterministic: the same inputs give the
same bytes under ``SerializeToString(deterministic=True)``.  With the environment
variable GRAPHC_VERIFY=1 the plan is checked by ``verify_plan`` before it is returned.
"""

import os

from graphc import registry
from graphc._proto import graphc_pb2 as pb
from graphc._version import __version__
from graphc.compiler.attrs import TensorEncoder, encode_attrs
from graphc.compiler.verify_plan import verify_plan
from graphc.graph import FORWARD, GRADIENT, OPTIMIZER, RECOMPUTE
from graphc.plan import FORMAT_VERSION, MIN_CONSUMER_VERSION, fill_memory_report
from graphc.proto_enums import dtype_to_proto
from graphc.serialize import training_to_proto

_ROLE_TO_PROTO = {FORWARD: pb.FORWARD, GRADIENT: pb.GRADIENT, OPTIMIZER: pb.OPTIMIZER, RECOMPUTE: pb.RECOMPUTE}


def _producer_version():
    return __version__


def _set_provenance(msg, provenance):
    file, line = provenance if provenance else ("", 0)
    if file or line:
        msg.provenance.file = file
        msg.provenance.line = int(line)


def emit_plan(graph, buffers, target="cpu"):
    plan = pb.Plan()
    plan.format_version = FORMAT_VERSION
    plan.min_consumer_version = MIN_CONSUMER_VERSION
    plan.producer_name = "graphc"
    plan.producer_version = _producer_version()
    plan.target = target
    encoder = TensorEncoder()

    # One add(**fields) call per message: the upb runtime sets every field in C, several times
    # faster than an attribute assignment per field (tools/bench_compile.py, "lower").
    index = {name: k for k, name in enumerate(buffers.buffers)}
    add_value = plan.values.add
    storage_enum = {s: pb.Storage.Value(s) for s in pb.Storage.keys()}
    dtype_code = {}
    for name, buf in buffers.buffers.items():
        code = dtype_code.get(buf.dtype)
        if code is None:
            code = dtype_code[buf.dtype] = dtype_to_proto(buf.dtype)
        add_value(name=name, dtype=code, dims=buf.dims, storage=storage_enum[buf.storage],
                  offset=buf.offset, nbytes=buf.nbytes, index=buf.index, kind=buf.kind,
                  alias_of=index[buf.alias_of] if buf.alias_of else 0)

    constant_nodes = {}
    add_step = plan.steps.add
    workspaces = buffers.workspaces
    frees = buffers.frees
    for node in graph.nodes:
        opdef = registry.get_op(node.op)
        if opdef.constant:
            constant_nodes[node.outputs[0]] = node
            continue
        if opdef.view:
            continue
        s = len(plan.steps)
        step = add_step(op=node.op, node=node.name, inputs=[index[i] for i in node.inputs],
                        outputs=[index[o] for o in node.outputs], role=_ROLE_TO_PROTO[node.role],
                        workspaces=[index[w] for w in workspaces.get(node.name, ())],
                        frees=[index[f] for f in frees[s]] if frees else ())
        if node.attrs:
            encode_attrs(opdef, node.attrs, step.attrs, encoder, node.describe())
        _set_provenance(step, node.provenance)
        for member in node.fused:
            _set_provenance(step.fused.add(node=member.name, op=member.op, role=_ROLE_TO_PROTO[member.role]),
                            member.provenance)

    plan.feeds.extend(index[ph.name] for ph in graph.inputs)
    plan.fetches.extend(index[name] for name in graph.outputs)

    variables = {var.name: var for var in graph.variables}
    for name in buffers.persistent:
        var = variables[name]
        p = plan.persistent.add()
        p.name = var.name
        p.dtype = dtype_to_proto(var.dtype)
        p.dims.extend(var.shape)
        encoder.tensor(p.init, var.init_value, f"variable {var.name!r}")
        p.trainable = var.trainable
        _set_provenance(p, var.provenance)
    for name in buffers.constants:
        node = constant_nodes[name]
        encoder.tensor(plan.constants.add(), node.attrs["value"], node.describe())

    plan.arena_bytes = buffers.arena_bytes
    fill_memory_report(plan)
    if os.environ.get("GRAPHC_VERIFY", "") not in ("", "0"):
        verify_plan(plan)
    if graph.training is not None:
        plan.training.CopyFrom(training_to_proto(graph.training))
    for key in sorted(graph.metadata):
        plan.metadata[str(key)] = str(graph.metadata[key])
    return plan
