"""Collective ops: the in-place gradient sum of data-parallel training.

A data-parallel plan (graphc/compiler/data_parallel.py) groups its gradients into buckets;
each bucket is one ``allreduce_start`` node and one ``allreduce_wait`` node, ``bucket`` naming
the communicator slot (runtime/comm_abi.h).  The bucket's gradients are laid out back to back
in one arena range (``contiguous_inputs``) and both ops write that range in place (``alias``:
output k is a view of input k), so a bucket is summed across ranks with no packing copy.
``schedule`` lets the scheduler start a reduction as soon as its gradients exist and wait for
it only where an update first reads it, so communication overlaps the rest of the backward pass.

With no communicator (a Session outside mpirun) or a world of one process both ops are the
identity, which is also their numpy reference: the sum over a world of one.
"""

import numpy as np

from graphc import dtypes
from graphc.ops._common import Example, build, rand, special
from graphc.registry import ALIAS_EACH, AttrSpec, register_op


def _collective_infer(ctx):
    if not 0 <= ctx.attrs["bucket"] < 2 ** 31:  # a communicator slot: a C int (runtime/comm_abi.h)
        ctx.fail(f"expects attr bucket in [0, 2^31) (a communicator slot), got {ctx.attrs['bucket']}")
    return [(ctx.dtype(i), ctx.shape(i)) for i in range(len(ctx.inputs))]


def _identity_ref(inputs, attrs):
    return tuple(np.array(x, copy=True) for x in inputs)


def _collective_examples(rng):
    out = []
    for dt in dtypes.FLOATS:
        for shapes in [[()], [(1,)], [(0,)], [(7,)], [(72, 73, 74)], [(5, 3), (0,), (1,), (17,)],
                       [(3,), (3, 4), (2, 2, 2)]]:
            out.append(Example([rand(rng, s, dt) for s in shapes], {"bucket": 0}, note=dt))
        out.append(Example([special(rng, (3, 4), dt), rand(rng, (5,), dt)], {"bucket": 3},
                           note=f"{dt} special values"))
    return out


_DOC_TAIL = ("Inputs: one bucket's gradients, one float dtype, laid out back to back (contiguous_inputs); "
             "output k is input k's bytes (alias).  A world of one process: the identity.")

register_op(
    "allreduce_start",
    doc="Start the in-place sum over all ranks of one gradient bucket: after the matching "
        "allreduce_wait, every output holds Σ_ranks input (returns at once; the communicator's slot "
        "is attr bucket).  " + _DOC_TAIL,
    inputs=[("g", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"bucket": AttrSpec("int", doc="the communicator slot of this bucket, in [0, 2^31)")},
    variadic=True,
    infer=_collective_infer,
    reference=_identity_ref,
    examples=_collective_examples,
    differentiable=False,
    alias=ALIAS_EACH,
    contiguous_inputs=True,
    schedule="asap",
)

register_op(
    "allreduce_wait",
    doc="Wait until the sum allreduce_start began for attr bucket is in place (host memory: blocks; "
        "a device stream: orders the stream after it); outputs the summed gradients.  " + _DOC_TAIL,
    inputs=[("r", "T")],
    type_vars={"T": dtypes.FLOATS},
    attrs={"bucket": AttrSpec("int", doc="the communicator slot of this bucket, in [0, 2^31)")},
    variadic=True,
    infer=_collective_infer,
    reference=_identity_ref,
    examples=_collective_examples,
    differentiable=False,
    alias=ALIAS_EACH,
    contiguous_inputs=True,
    schedule="alap",
)


def allreduce_start(values, bucket, name=None):
    """Start summing ``values`` (one bucket's gradients) over all ranks, in place; returns one
    Tensor per value, to pass to :func:`allreduce_wait` with the same bucket."""
    outs = build("allreduce_start", list(values), {"bucket": bucket}, name=name)
    return outs if isinstance(outs, tuple) else (outs,)


def allreduce_wait(values, bucket, name=None):
    """The summed gradients: the outputs of :func:`allreduce_start` once the sum is in place."""
    outs = build("allreduce_wait", list(values), {"bucket": bucket}, name=name)
    return outs if isinstance(outs, tuple) else (outs,)
