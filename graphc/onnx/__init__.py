"""ONNX import and export (docs/onnx.md).

* ``gc.onnx.load(path_or_ModelProto, trainable=True, shapes=None) -> gc.Graph``: an ONNX
  model as a graphc graph, node for node; initializers become variables (``trainable``) or
  constants, graph inputs placeholders (symbolic dims kept as names), ONNX value names
  kept as graphc names.  ``graphc import model.onnx -o model.pb`` from the shell.
* ``gc.onnx.save(graph_or_path, path, opset=None)``: a graphc graph as an ONNX model that
  ONNX Runtime runs with graphc's results.  ``graphc export model.pb -o model.onnx``.
* ``graphc.onnx.backend``: graphc as an ``onnx.backend.base.Backend`` (the conformance
  suite in tests/test_onnx_backend.py).

The ``onnx`` package is needed only when one of these is called (``pip install
"graphc[onnx]"``); ``import graphc`` never imports it.
"""

from graphc.errors import GraphcError
from graphc.onnx import _ops_control, _ops_math, _ops_nn, _ops_tensor  # noqa: F401  (the handlers register on import)
from graphc.onnx._export import save_model
from graphc.onnx._import import HANDLERS, load_model  # noqa: F401


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise GraphcError('ONNX support needs the onnx package: pip install "graphc[onnx]" '
                          '(or pip install onnx)') from None


def load(model, trainable=True, shapes=None, values=None):
    """Import an ONNX model (a path, bytes, or an onnx.ModelProto) as a :class:`graphc.Graph`.

    ``trainable``: float initializers become trainable variables (True) or constants
    (False).  ``shapes``: optional ``{input name: shape}`` pinning graph-input dims at
    import time (needed only when a shape computation depends on more than one symbolic
    dim).  Raises OnnxFormatError (malformed file) or OnnxUnsupportedError (naming the
    node, op and opset).  ``values``: optional ``{input name: array}`` fixing graph inputs at
    import (they become constants: e.g. a Reshape's shape or TopK's K fed as an input).
    """
    _require_onnx()
    return load_model(model, trainable=trainable, shapes=shapes, values=values)


def save(model, path, opset=None, fetches=None):
    """Export a graphc Graph (or a .pb path) to an ONNX file at ``path``; returns the
    ModelProto.  ``opset``: the default-domain opset (default: the newest both onnx and
    onnxruntime support, see graphc.onnx._export).  ``fetches``: the ONNX graph's outputs
    (value names, Tensors, or the name of an inference entry point; default: the graph's
    outputs).  Raises OnnxExportError naming the node and op that has no ONNX form."""
    _require_onnx()
    return save_model(model, path, opset=opset, fetches=fetches)
