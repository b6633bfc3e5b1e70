"""Builds entitle._entitle: a small C extension linked statically against libentitle.a.

Where libentitle.a comes from, in order:

1. ``ENTITLE_LIB_DIR``: a folder already holding ``libentitle.a`` (with ``ENTITLE_INCLUDE_DIR``
   holding ``entitle.h`` when it is not next to the Rust sources).
2. The Rust sources: those of the repository this package sits in (two folders up), or, in an
   sdist, the copy under ``rust/`` that the sdist carries. They are built with
   ``cargo build --profile dist -p entitle-ffi`` (the release profile without debug information)
   into ``CARGO_TARGET_DIR`` when set, else into setuptools' temporary build folder: the build
   never writes into the source tree, so a read-only checkout builds too.

The installed extension needs no shared library at run time and is stripped of symbols.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUNDLED = HERE / "rust"
PROFILE = "dist"

# What a Rust static library needs from the system (`cargo rustc -- --print native-static-libs`).
NATIVE_LIBS = ["pthread", "dl", "m", "rt", "util", "gcc_s"]

# What the sdist carries of the Rust workspace: the engine and its C ABI, nothing else.
RUST_CRATES = ["core", "ffi"]
RUST_SKIP = {"tests", "bench", "examples", "target", "fuzz"}


def _fail(message):
    raise SystemExit(f"entitle: {message}")


def _rust_root():
    """The folder of the Rust workspace to build, or None."""
    for root in (REPO, BUNDLED):
        if (root / "Cargo.toml").is_file() and (root / "ffi" / "Cargo.toml").is_file():
            return root
    return None


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
        prebuilt = os.environ.get("ENTITLE_LIB_DIR")
        root = _rust_root()
        default_include = (root / "ffi" / "include") if root else None
        include_dir = Path(os.environ.get("ENTITLE_INCLUDE_DIR", default_include or ""))
        if prebuilt:
            lib_dir = Path(prebuilt)
        elif root is None:
            _fail(
                "no Rust sources to build from (neither a repository around this package nor "
                "an sdist's rust/ folder): set ENTITLE_LIB_DIR to a folder holding "
                "libentitle.a and ENTITLE_INCLUDE_DIR to one holding entitle.h"
            )
        else:
            lib_dir = self._cargo_build(root)
        if not (include_dir / "entitle.h").is_file():
            _fail(f"entitle.h not found in {include_dir or '(unset ENTITLE_INCLUDE_DIR)'}")
        if not (lib_dir / "libentitle.a").is_file():
            _fail(f"libentitle.a not found in {lib_dir}")
        return lib_dir, include_dir

    def _cargo_build(self, root):
        cargo = shutil.which("cargo") or shutil.which(
            str(Path.home() / ".cargo" / "bin" / "cargo"))
        if cargo is None:
            _fail(
                "building from source needs Rust: `cargo` was not found on PATH. Install Rust "
                "(https://rustup.rs, 1.85 or newer) and retry, install a prebuilt wheel "
                "instead (pip install --only-binary :all: entitle), or set ENTITLE_LIB_DIR to "
                "a folder holding a libentitle.a built elsewhere"
            )
        target = os.environ.get("CARGO_TARGET_DIR")
        target = Path(target) if target else Path(self.build_temp).resolve() / "cargo"
        if not target.is_absolute():
            target = root / target
        command = [cargo, "build", "--profile", PROFILE, "-p", "entitle-ffi",
                   "--manifest-path", str(root / "Cargo.toml")]
        print("entitle: " + " ".join(command) + f"  (CARGO_TARGET_DIR={target})")
        env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
        try:
            subprocess.run(command, cwd=root, env=env, check=True)
        except subprocess.CalledProcessError as e:
            _fail(f"`cargo build` failed with status {e.returncode} (output above)")
        return target / PROFILE


class SdistWithRust(sdist):
    """An sdist that carries the Rust sources of the engine (core and ffi) under rust/, with a
    workspace manifest of just those two crates and the repository's Cargo.lock."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        if not (REPO / "Cargo.toml").is_file():
            if (BUNDLED / "Cargo.toml").is_file():  # an sdist made from an sdist
                shutil.copytree(BUNDLED, Path(base_dir) / "rust", dirs_exist_ok=True)
                return
            _fail("an sdist is made from the repository (its Rust sources go into it)")
        dest = Path(base_dir) / "rust"
        manifest = (REPO / "Cargo.toml").read_text()
        members = ", ".join(f'"{c}"' for c in RUST_CRATES)
        manifest, n = re.subn(r"(?m)^members\s*=\s*\[[^\]]*\]", f"members = [{members}]",
                              manifest)
        if n != 1:
            _fail("cannot find the workspace members in Cargo.toml")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "Cargo.toml").write_text(manifest)
        shutil.copy2(REPO / "Cargo.lock", dest / "Cargo.lock")
        for crate in RUST_CRATES:
            src = REPO / crate
            for path in src.rglob("*"):
                rel = path.relative_to(src)
                if path.is_dir() or (rel.parts and rel.parts[0] in RUST_SKIP and
                                     not (crate == "core" and rel.parts[0] == "examples")):
                    continue
                out = dest / crate / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)


extension = Extension(
    "entitle._entitle",
    sources=["src/entitle/_entitle.c"],
    libraries=NATIVE_LIBS,
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"],
    # Keep the Rust library's symbols out of the extension's dynamic symbol table, drop unused
    # sections, and strip the result: the wheel carries only what the engine needs.
    extra_link_args=["-Wl,--exclude-libs,ALL", "-Wl,--gc-sections", "-Wl,--strip-all"],
)

setup(ext_modules=[extension], cmdclass={"build_ext": BuildWithCargo, "sdist": SdistWithRust})
