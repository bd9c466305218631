"""graphc: a static-graph deep learning framework.

Build a graph in Python, save it as a protobuf ``.pb``, compile it ahead of time into
a plan, and run the plan with the C++ runtime::

    import graphc as gc
    with gc.Graph() as g:
        x = gc.placeholder("x", (None, 784))
        w = gc.variable("w", (784, 10), init=gc.init.xavier_uniform(seed=0))
        y = gc.softmax(x @ w)
    g.save("model.pb")
"""

# The layers, in the order data flows; each imports only from the lines above it
# (tests/test_imports.py checks, and that the IR never loads protobuf):
#   errors, dtypes, shapes, init, fileio, checkpoint, datasets, text, images,  plain-Python basics
#   distributed (the MPI launcher and world; mpi4py only when a data-parallel plan runs)
#   dataloader (gc.data)
#   registry → graph → ops → autodiff, optim, nn                 the IR and the builder (nn: layers)
#   reference                                                    numpy evaluation of a graph
#   proto_enums → serialize                                      the model file (protobuf from here on)
#   plan → program → aot → session                               the plan, a program of plans, the C artifact
#                                                                emitter (gc.emit_c), the runtime's face
#   compiler                                                     model → plan (never imported by the runtime)
#   onnx                                                         ONNX import/export (the onnx package lazily)
#   viz → cli                                                    the tools
# A lower layer reaches a higher one only through a hook the higher one installs when it is
# imported: graphc.ops gives Tensor operators their builders, graphc.serialize backs Graph.save.
import sys as _sys

from graphc import (  # noqa: F401
    checkpoint,
    dataloader,
    datasets,
    distributed,
    dtypes,
    errors,
    images,
    init,
    onnx,
    optim,
    proto_enums,
    reference,  # noqa: E402,F401
    registry,
    serialize,
    shapes,
    text,
    viz,
)
from graphc import nn as _nn_layers
from graphc._version import __version__  # noqa: F401
from graphc.aot.emit import EmitResult, emit_c  # noqa: F401
from graphc.autodiff import gradients
from graphc.compiler import compile  # noqa: E402,A004
from graphc.compiler.data_parallel import DataParallel
from graphc.compiler.verify_plan import PlanVerificationError
from graphc.compiler.verify_plan import verify_plan as verify
from graphc.dtypes import bool_, float32, float64, int32, int64  # noqa: F401
from graphc.graph import (  # noqa: F401
    Graph,
    Node,
    Tensor,
    get_default_graph,
    name_scope,
    placeholder,
    reset_default_graph,
    variable,
)
from graphc.ops import *  # noqa: F401,F403
from graphc.ops import (  # noqa: F401
    abs,
    add,
    broadcast_to,
    cast,
    concat,
    constant,
    div,
    equal,
    exp,
    expand_dims,
    greater,
    less,
    log,
    log_softmax,
    logical_not,
    matmul,
    max,
    maximum,
    mean,
    minimum,
    mul,
    neg,
    one_hot,
    pow,
    relu,
    reshape,
    sigmoid,
    slice,
    softmax,
    softmax_cross_entropy,
    split,
    sqrt,
    squeeze,
    stop_gradient,
    sub,
    sum,
    tanh,
    transpose,
    where,
)
from graphc.plan import Plan, load_plan, memory_report  # noqa: E402
from graphc.program import Program, load_program
from graphc.session import IOBinding, Session

# gc.data is the module graphc/dataloader.py: the folder graphc/data/ holds package data, so
# the module cannot take that name; registering it also makes `import graphc.data` find it
# instead of the data folder as a namespace package.
data = dataloader
_sys.modules.setdefault("graphc.data", dataloader)

# gc.nn is the layers package graphc/nn/; `from graphc.ops import *` above bound the name nn to
# the op module graphc.ops.nn (softmax, cross-entropy), which stays reachable as gc.ops.nn.
nn = _nn_layers


def load(path):
    """Load a model saved with ``Graph.save``; returns a Graph.  Raises
    ``graphc.errors.ModelFormatError`` for anything malformed."""
    return serialize.load(path)
