"""Op declarations (registered on import) and the builder functions users call.

Each module declares its ops with ``graphc.registry.register_op`` next to the Python
builder function that adds the op to a graph."""

from graphc import graph as _graph
from graphc import registry as _registry  # noqa: E402
from graphc.ops import _common
from graphc.ops import fused as _fused  # noqa: F401  (registers the fused ops)
from graphc.ops.activations import gelu, leaky_relu, silu, softplus  # noqa: F401
from graphc.ops.attention import scaled_dot_product_attention  # noqa: F401
from graphc.ops.backward import (  # noqa: F401
    broadcast_like,
    relu_grad,
    reshape_like,
    slice_grad,
    softmax_cross_entropy_grad,
    sum_to,
)
from graphc.ops.collective import allreduce_start, allreduce_wait  # noqa: F401
from graphc.ops.conv import conv2d, conv2d_grad_input, conv2d_grad_weight, conv_transpose2d  # noqa: F401
from graphc.ops.elementwise import (  # noqa: F401
    abs,
    add,
    cast,
    constant,
    div,
    equal,
    exp,
    greater,
    less,
    log,
    logical_not,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    relu,
    sigmoid,
    sqrt,
    sub,
    tanh,
    where,
)
from graphc.ops.gather import embedding, gather, take  # noqa: F401
from graphc.ops.layer_norm import layer_norm, layer_norm_grad, layer_norm_stats  # noqa: F401
from graphc.ops.math import (  # noqa: F401
    acos,
    acosh,
    asin,
    asinh,
    atan,
    atanh,
    ceil,
    cos,
    cosh,
    erf,
    floor,
    greater_equal,
    int_div,
    isinf,
    isnan,
    less_equal,
    logical_and,
    logical_or,
    logical_xor,
    mod,
    power,
    reciprocal,
    round,
    sign,
    sin,
    sinh,
    tan,
)
from graphc.ops.nn import (  # noqa: F401
    binary_cross_entropy_with_logits,
    log_softmax,
    mean_squared_error,
    one_hot,
    softmax,
    softmax_cross_entropy,
)
from graphc.ops.norm import batch_norm, batch_norm_train, batch_norm_train_grad, instance_norm  # noqa: F401
from graphc.ops.pad import flatten, pad  # noqa: F401
from graphc.ops.pool import avg_pool2d, avg_pool2d_grad, max_pool2d, max_pool2d_gather, max_pool2d_grad  # noqa: F401
from graphc.ops.random import (  # noqa: F401
    dropout,
    dropout_train,
    random_normal,
    random_normal_like,
    random_uniform,
    random_uniform_like,
    rng_step,
)
from graphc.ops.reduce import argmin, matmul, max, mean, min, sum  # noqa: F401
from graphc.ops.rnn_cell import gru_cell, gru_cell_grad, lstm_cell, lstm_cell_grad  # noqa: F401
from graphc.ops.scan import argmax, cumsum, tril, triu  # noqa: F401
from graphc.ops.shape import (  # noqa: F401
    broadcast_to,
    concat,
    expand_dims,
    getitem,
    reshape,
    slice,
    split,
    squeeze,
    stop_gradient,
    transpose,
)
from graphc.ops.tensor_extra import einsum, identity, resize, tile  # noqa: F401
from graphc.ops.topk import take_along_axis, topk  # noqa: F401
from graphc.ops.updates import assign  # noqa: F401
from graphc.ops.upsample import upsample  # noqa: F401

_registry.check_complete()

# The hooks of the lower layers: gradient functions and composites build ops of other op modules
# through _common.F, and Tensor operators (x + y, x @ w, x[1:]) call these builders.
_common.F.install({_name: _fn for _name, _fn in globals().items() if not _name.startswith("_") and callable(_fn)})
_graph.install_operators(_common.F)
