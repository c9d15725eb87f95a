"""The compiled parts: ``surestep._core`` from ``ext/_core.pyx``, and ``surestep._lmdb``,
our binding of LMDB, from ``ext/_lmdb.pyx`` and the LMDB sources in ``ext/lmdb/``.

Everything else about the package lives in ``pyproject.toml``. Switches:
``SURESTEP_DEBUG=1`` builds with assertions and no optimisation;
``SURESTEP_SANITIZE=1`` adds AddressSanitizer and UBSan (run under an
ASan-preloaded interpreter); ``SURESTEP_PROFILE=1`` lets profilers see Cython
lines.
"""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("SURESTEP_DEBUG") == "1"
sanitize = os.environ.get("SURESTEP_SANITIZE") == "1"
profile = os.environ.get("SURESTEP_PROFILE") == "1"

compile_args = ["-O0", "-g3", "-UNDEBUG"] if debug or sanitize else ["-O3"]
link_args: list[str] = []
if sanitize:
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    compile_args += flags
    link_args += flags

directives = {
    "language_level": "3",
    "boundscheck": debug,
    "wraparound": False,
    "cdivision": True,
    "embedsignature": True,
    "profile": profile,
    "linetrace": profile,
}

macros = [("CYTHON_TRACE_NOGIL", "1")] if profile else []

setup(
    ext_modules=cythonize(
        [
            Extension(
                "surestep._core",
                ["ext/_core.pyx"],
                extra_compile_args=compile_args,
                extra_link_args=link_args,
                define_macros=macros,
            ),
            Extension(
                "surestep._lmdb",
                ["ext/_lmdb.pyx", "ext/lmdb/mdb.c", "ext/lmdb/midl.c"],
                include_dirs=["ext/lmdb"],
                extra_compile_args=compile_args,
                extra_link_args=link_args,
                define_macros=macros,
            ),
        ],
        compiler_directives=directives,
        include_path=["ext"],
        force=debug or sanitize or profile,  # the directives above change the generated C
    ),
)
