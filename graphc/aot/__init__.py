"""AOT native artifacts: a compiled plan or program as a C library (``graphc compile --emit c``).

``gc.emit_c(plan_or_program, out_dir)`` writes a self-contained source tree (a C header, the
generated C++ source, the weights image, the runtime sources the plan needs, a Makefile and a
CMakeLists.txt) that builds a static and a shared library with no Python; docs/aot.md.

Modules: errors (AotError), sources (which runtime sources an artifact ships), weights (the
weights image writer), emit (the generator).
"""

from graphc.aot.errors import AotError  # noqa: F401
