"""Build script: maps ``export/`` and ``firmware_bridge/`` into the ``edgensd`` namespace and compiles
every Cython wrapper found in ``csrc/`` together with the C99 sources beside it."""

from __future__ import annotations

import glob
import os

import numpy as np
from setuptools import find_packages, setup
from setuptools.extension import Extension

HERE = os.path.dirname(os.path.abspath(__file__))


def _extensions() -> list:
    """One extension per ``csrc/*.pyx``, linked with all ``csrc/*.c`` (the portable core)."""
    pyx_files = sorted(glob.glob(os.path.join("csrc", "*.pyx")))
    if not pyx_files:
        return []
    from Cython.Build import cythonize

    c_sources = sorted(glob.glob(os.path.join("csrc", "*.c")))
    c_sources = [c for c in c_sources if not os.path.basename(c).endswith("_wrap.c")]
    exts = []
    for pyx in pyx_files:
        mod = os.path.splitext(os.path.basename(pyx))[0]
        exts.append(
            Extension(
                f"edgensd.{mod}",
                sources=[pyx, *c_sources],
                include_dirs=["csrc", np.get_include()],
                extra_compile_args=["-std=c99", "-O2"],
                libraries=["m"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            )
        )
    return cythonize(exts, language_level=3, build_dir="build/cython")


packages = find_packages(include=["edgensd", "edgensd.*"])
package_dir = {"edgensd.export": "export", "edgensd.firmware_bridge": "firmware_bridge"}
for top, mapped in (("export", "edgensd.export"), ("firmware_bridge", "edgensd.firmware_bridge")):
    for root, _dirs, files in os.walk(top):
        if "__init__.py" in files and "__pycache__" not in root:
            rel = os.path.relpath(root, top)
            name = mapped if rel == "." else mapped + "." + rel.replace(os.sep, ".")
            packages.append(name)
            package_dir[name] = root

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={
        "edgensd": ["assets/*", "assets/**/*"],
        # the wire format and the device-side C framer/parser travel with the wheel, for firmware builds
        "edgensd.firmware_bridge": ["PROTOCOL.md", "c/*.c", "c/*.h", "c/Makefile", "c/*.mk"],
    },
    ext_modules=_extensions(),
)
