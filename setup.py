"""Declares the Cython extension(s) only; metadata lives in pyproject.toml."""

from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# Every sensor/**/_*.pyx is one extension module named after its path
# (sensor/_fastpath.pyx -> sensor._fastpath; its parts are the .pxi files of sensor/engine/,
# where its C headers live too). records.h is the shared schema.
extensions = [
    Extension(
        ".".join(path.with_suffix("").parts),
        [str(path)],
        include_dirs=[numpy.get_include(), str(path.parent), "sensor/engine", "netwarden/records"],
        extra_compile_args=["-O3", "-Wno-unused-function", "-Wno-unreachable-code"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(Path("sensor").rglob("_*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
