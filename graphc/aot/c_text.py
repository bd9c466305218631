"""C and C++ text for the AOT emitter: exact literals, identifiers and safe comments.

Every literal round-trips exactly: a double is written as a C hex-float (``float.hex``), so the
compiler reads back the very bits; infinities and NaNs (which have no literal) use GCC/Clang
builtins that are constant expressions; an int64 goes through ``INT64_C`` (INT64_MIN, whose
magnitude is no int64 literal, as ``(-INT64_C(9223372036854775807) - 1)``); a string is a
literal whose every byte outside printable ASCII is a three-digit octal escape (an octal escape
stops after three digits, so no following character can run on into it, unlike ``\\x``), with its
length kept separately by the caller so NUL bytes survive.
"""

import math
import re
import struct

from graphc.errors import AotError

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1
UINT64_MAX = 2 ** 64 - 1

_C_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
# C and C++ keywords and names the emitted code itself uses: an artifact name must not be one.
_RESERVED = frozenset("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t char32_t class
    compl const constexpr const_cast continue decltype default delete do double dynamic_cast else enum
    explicit export extern false float for friend goto if inline int long mutable namespace new noexcept
    not not_eq nullptr operator or or_eq private protected public register reinterpret_cast restrict
    return short signed sizeof static static_assert static_cast struct switch template this
    thread_local throw true try typedef typeid typename union unsigned using virtual void volatile
    wchar_t while xor xor_eq std graphc
""".split())
MAX_NAME = 64


def double_literal(x):
    """An exact C/C++ literal of the double ``x`` (a constant expression)."""
    x = float(x)
    if math.isinf(x):
        return "(-__builtin_inf())" if x < 0 else "__builtin_inf()"
    if math.isnan(x):
        bits = struct.unpack("<Q", struct.pack("<d", x))[0]
        sign = "-" if bits >> 63 else ""
        quiet = (bits >> 51) & 1
        payload = bits & ((1 << 51) - 1)
        fn = "__builtin_nan" if quiet else "__builtin_nans"
        return f"({sign}{fn}(\"0x{payload:x}\"))"
    return float.hex(x)


def int64_literal(n):
    """An exact C/C++ int64_t literal (needs <stdint.h> / <cstdint>)."""
    n = int(n)
    if not INT64_MIN <= n <= INT64_MAX:
        raise AotError(f"{n} does not fit in int64")
    if n == INT64_MIN:
        return "(-INT64_C(9223372036854775807) - 1)"
    return f"INT64_C({n})"


def uint64_literal(n):
    n = int(n)
    if not 0 <= n <= UINT64_MAX:
        raise AotError(f"{n} does not fit in uint64")
    return f"UINT64_C({n})"


def string_literal(data):
    """A C string literal of ``data`` (str: its UTF-8 bytes; or bytes): printable ASCII as is
    (``"``, ``\\`` and ``?`` escaped: no trigraphs), every other byte as a 3-digit octal escape."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    out = ['"']
    for b in bytes(data):
        c = chr(b)
        if c in '"\\?':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


def comment_text(text, limit=160):
    """``text`` made safe inside a ``//`` or ``/* */`` comment: printable ASCII only (others as
    ``\\xNN``), no ``*/`` or ``/*``, never ending in a backslash (a line splice), shortened."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out = []
    for ch in text:
        o = ord(ch)
        if 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    s = "".join(out).replace("*/", "*\\/").replace("/*", "/\\*")
    if len(s) > limit:
        s = s[:limit] + "..."
    if s.endswith("\\"):
        s += " "
    return s


def quoted(text, limit=160):
    """``'text'`` for a comment (the closing quote also keeps a trailing backslash harmless)."""
    return "'" + comment_text(text, limit) + "'"


def macro_id(name):
    """The upper-case identifier part of a name: every character outside [A-Za-z0-9] -> '_'."""
    return _NOT_ALNUM.sub("_", name).upper() or "_"


def unique_ids(names):
    """``macro_id`` of every name, a repeated one numbered ``_2``, ``_3``... (in order)."""
    out, used = [], set()
    for name in names:
        base = macro_id(name)
        ident, k = base, 1
        while ident in used:
            k += 1
            ident = f"{base}_{k}"
        used.add(ident)
        out.append(ident)
    return out


def check_name(name):
    """An artifact name given by the user (``--name``): a lower-case C identifier, not a
    keyword, at most 64 characters; AotError otherwise."""
    if not isinstance(name, str):
        raise AotError(f"the artifact name must be a string, got {type(name).__name__}")
    if not _C_NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise AotError(f"bad artifact name {name!r}: it is the C prefix of every function and macro, so it "
                       f"must be a lower-case C identifier ([a-z_][a-z0-9_]*, at most {MAX_NAME} characters)")
    if name in _RESERVED:
        raise AotError(f"bad artifact name {name!r}: a C/C++ keyword or a name the artifact uses itself")
    return name


def name_from_stem(stem):
    """An artifact name made from a file stem: lower-case, other characters -> '_', a leading
    digit prefixed with 'm', a keyword suffixed with '_model'; "model" when nothing is left."""
    s = _NOT_ALNUM.sub("_", stem).lower().strip("_")[:MAX_NAME]
    if not s:
        return "model"
    if s[0].isdigit():
        s = ("m" + s)[:MAX_NAME]
    if s in _RESERVED:
        s += "_model"
    return s
