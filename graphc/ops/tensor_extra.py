"""Structural ops the ONNX importer maps onto (kernels: runtime/cpu/tensor_extra.cc).

* ``identity(x)``: y = x, any dtype, a view (no copy); the gradient passes through.  The ONNX
  importer names a graph output with it when the tensor producing it has another name.
"""

from graphc import dtypes
from graphc.ops._common import ODD, Example, as_tensors, build, rand, special
from graphc.registry import defgrad, register_op

# -- identity --------------------------------------------------------------------------------------

_IDENTITY_SHAPES = [(), (1,), (0,), (0, 3), (5, 4), (3, 1, 7), ODD]


def _identity_examples(rng):
    out = []
    for dt in dtypes.ALL:
        for shape in _IDENTITY_SHAPES:
            out.append(Example([rand(rng, shape, dt)], {}, note=dt))
        # data moves bit for bit: NaN payloads, -0.0 and extremes included
        out.append(Example([special(rng, (6, 7), dt)], {}, grad=False, note=f"{dt} special values"))
    return out


register_op(
    "identity",
    doc="y = x (ONNX Identity), any dtype.  A view: the output aliases the input's bytes.",
    inputs=[("x", dtypes.ALL)],
    infer=lambda ctx: (ctx.dtype(0), ctx.shape(0)),
    reference=lambda inputs, attrs: inputs[0].copy(),
    examples=_identity_examples,
    view=True,
)


@defgrad("identity")
def _grad_identity(ctx):
    return [ctx.g]


def identity(x, name=None):
    """y = x under a new name (a view, no copy); the gradient passes through."""
    return build("identity", as_tensors(x), name=name)
