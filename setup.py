"""Builds django_nativecache._native with CMake (CMakeLists.txt) instead of distutils.

`pip install .`, `pip install -e .` and `python setup.py build_ext --inplace` all end in
CMakeBuild.build_extension: configure + build the `_native` target in a persistent build
directory, then copy the module to where setuptools expects it (the package directory in the
source tree for editable and in-place builds, the wheel's staging directory otherwise).

Environment:
  NATIVECACHE_BUILD_DIR   CMake build directory (default: build/python-<interpreter tag>)
  NATIVECACHE_CMAKE_ARGS  extra arguments for the CMake configure step, e.g.
                          "-DCMAKE_BUILD_TYPE=Debug"
  CMAKE_BUILD_PARALLEL_LEVEL  parallel compile jobs (default: number of CPUs)
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    """An extension whose sources CMake knows; setuptools only names it."""

    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            super().build_extension(ext)
            return

        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError(
                "cmake was not found; on Debian run `bash tests/setup.sh` "
                "(or apt-get install cmake build-essential pkg-config libboost1.81-dev "
                "zlib1g-dev libmemcached-dev)"
            )

        build_dir = self._cmake_build_dir()
        out_dir = build_dir / "lib"
        configure = [
            cmake,
            "-S", str(ROOT),
            "-B", str(build_dir),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DNATIVECACHE_BUILD_PYTHON=ON",
            "-DNATIVECACHE_BUILD_TESTS=OFF",
            "-DNATIVECACHE_SANITIZE=OFF",
            f"-DNATIVECACHE_PY_OUTPUT_DIR={out_dir}",
        ]
        configure += shlex.split(os.environ.get("NATIVECACHE_CMAKE_ARGS", ""))
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(
            self.parallel or os.cpu_count() or 1
        )
        build = [cmake, "--build", str(build_dir), "--target", "_native", "--parallel", jobs]

        build_dir.mkdir(parents=True, exist_ok=True)
        self._run(configure)
        self._run(build)

        built = self._find_module(out_dir)
        dest = Path(self.get_ext_fullpath(ext.name))
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the destination and rename over it: writing into a .so that a running
        # interpreter has mapped would crash that interpreter.
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        shutil.copy2(built, tmp)
        os.replace(tmp, dest)
        print(f"copied {built} -> {dest}")

    def _cmake_build_dir(self) -> Path:
        override = os.environ.get("NATIVECACHE_BUILD_DIR")
        if override:
            return Path(override).resolve()
        # One build directory per interpreter: a CMake cache must not be reused by a
        # different Python (pyenv vs. Debian's, a venv, another version).
        digest = hashlib.sha1(sys.executable.encode()).hexdigest()[:8]
        return ROOT / "build" / f"python-{sys.implementation.cache_tag}-{digest}"

    @staticmethod
    def _find_module(out_dir: Path) -> Path:
        expected = out_dir / f"_native{sysconfig.get_config_var('EXT_SUFFIX')}"
        if expected.is_file():
            return expected
        candidates = sorted(out_dir.glob("_native*.so"))
        if len(candidates) != 1:
            raise RuntimeError(f"CMake did not produce exactly one _native module in {out_dir}")
        return candidates[0]

    @staticmethod
    def _run(cmd: list[str]) -> None:
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)


setup(
    ext_modules=[CMakeExtension("django_nativecache._native")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
