"""Builds entitle._entitle: a small C extension linked statically against libentitle.a.

The Rust library is built with ``cargo build --release -p entitle-ffi`` in the repository this
package sits in (two folders up), unless ``ENTITLE_LIB_DIR`` names a folder that already holds
``libentitle.a``. ``ENTITLE_INCLUDE_DIR`` may name the folder of ``entitle.h`` (default: the
repository's ``ffi/include``). ``CARGO_TARGET_DIR`` is honoured. The installed wheel needs no
shared library at run time.
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# What a Rust static library needs from the system (`cargo rustc -- --print native-static-libs`).
NATIVE_LIBS = ["pthread", "dl", "m", "rt", "util", "gcc_s"]


def _fail(message):
    raise SystemExit(f"entitle: {message}")


class BuildWithCargo(build_ext):
    """Builds (or finds) libentitle.a, then compiles and links the extension against it."""

    def run(self):
        lib_dir, include_dir = self._native_library()
        for ext in self.extensions:
            ext.include_dirs.append(str(include_dir))
            ext.extra_objects.append(str(lib_dir / "libentitle.a"))
            ext.depends.extend([str(lib_dir / "libentitle.a"), str(include_dir / "entitle.h")])
        super().run()

    def _native_library(self):
        in_repo = (REPO / "Cargo.toml").is_file() and (REPO / "ffi").is_dir()
        prebuilt = os.environ.get("ENTITLE_LIB_DIR")
        if not in_repo and not (prebuilt and os.environ.get("ENTITLE_INCLUDE_DIR")):
            _fail(
                f"no entitle repository at {REPO}: set ENTITLE_LIB_DIR to a folder holding "
                "libentitle.a and ENTITLE_INCLUDE_DIR to one holding entitle.h"
            )
        include_dir = Path(os.environ.get("ENTITLE_INCLUDE_DIR", REPO / "ffi" / "include"))
        if not (include_dir / "entitle.h").is_file():
            _fail(f"entitle.h not found in {include_dir}")
        if prebuilt:
            lib_dir = Path(prebuilt)
        else:
            cargo = shutil.which("cargo") or _fail("cargo not found: install Rust, or set ENTITLE_LIB_DIR")
            subprocess.run([cargo, "build", "--release", "-p", "entitle-ffi"], cwd=REPO, check=True)
            target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
            if not target.is_absolute():
                target = REPO / target
            lib_dir = target / "release"
        if not (lib_dir / "libentitle.a").is_file():
            _fail(f"libentitle.a not found in {lib_dir}")
        return lib_dir, include_dir


extension = Extension(
    "entitle._entitle",
    sources=["src/entitle/_entitle.c"],
    libraries=NATIVE_LIBS,
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"],
    # Keep the Rust library's symbols out of the extension's dynamic symbol table, and drop its
    # debug information and unused sections: the wheel carries only what the engine needs.
    extra_link_args=["-Wl,--exclude-libs,ALL", "-Wl,--gc-sections", "-Wl,--strip-debug"],
)

setup(ext_modules=[extension], cmdclass={"build_ext": BuildWithCargo})
