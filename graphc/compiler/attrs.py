"""Attr and tensor encoding for plans — the very code graphc.serialize uses for models.

A Plan's ``PlanStep.attrs`` hold the same ``graphc.Attr`` values as a Model's
``Node.attrs``: the oneof member is chosen by the op's schema kind (int → i,
float → f, str → s, bool → b, ints, floats, dtype, tensor), an optional attr set to
None is absent, and a tensor is little-endian C-order ``raw_data``.  Plans keep
every tensor inline (no external weights file).  This module is the one place the
compiler touches serialize's encoder, so a change there shows up here.
"""

from graphc import serialize


class TensorEncoder:
    """Encodes arrays inline into graphc.Tensor messages, refusing more than protobuf's
    2 GiB message limit in total (the running total is per encoder, i.e. per plan)."""

    def __init__(self):
        self._writer = serialize._Writer(None, None)

    def tensor(self, out, array, what):
        self._writer.tensor(out, array, what)
        return out


def encode_attrs(opdef, attrs, out_map, encoder, what):
    """Write ``attrs`` (already coerced by ``opdef``'s schema) into a map<string, Attr>, sorted by key."""
    for key in sorted(attrs):
        value = attrs[key]
        if value is None:
            continue
        serialize._encode_attr(out_map[key], opdef.attrs[key].kind, value, encoder._writer, f"{what} attr {key!r}")
