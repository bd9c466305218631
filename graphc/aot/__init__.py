"""AOT native artifacts: a compiled plan or program as a C library (``graphc compile --emit c``).

``gc.emit_c(plan_or_program, out_dir)`` writes a self-contained source tree (a C header, the
generated C++ source, the weights image, the runtime sources the plan needs, a Makefile and a
CMakeLists.txt) that builds a static and a shared library with no Python; docs/aot.md.

Modules: sources (which runtime sources an artifact ships), weights (the weights image),
c_text (exact C literals and identifiers), build_files (Makefile, CMakeLists.txt), emit (the
generator).  Errors: graphc.errors.AotError.
"""
