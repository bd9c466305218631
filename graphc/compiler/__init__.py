"""The graphc compiler: ``compile(model, shapes=None, fetches=None, target="cpu") -> Plan``.

Each pass lives in its own module (see :mod:`graphc.compiler.pipeline` for the order).
"""

from graphc.compiler.pipeline import compile, graph_passes, lower_graph

__all__ = ["compile", "graph_passes", "lower_graph"]
