"""What ships: the manylinux wheel the test command built (ENTITLE_WHEEL) and the sdist
(ENTITLE_SDIST): tags, a stripped extension without debug information, the Rust sources the sdist
carries, and a clear error when it is built without cargo."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

WHEEL = os.environ.get("ENTITLE_WHEEL")
SDIST = os.environ.get("ENTITLE_SDIST")
needs_wheel = pytest.mark.skipif(not WHEEL, reason="run by scripts/test-python.sh (ENTITLE_WHEEL)")
needs_sdist = pytest.mark.skipif(not SDIST, reason="run by scripts/test-python.sh (ENTITLE_SDIST)")


@needs_wheel
def test_the_wheel_is_manylinux_and_its_extension_is_stripped(tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile  # installed with auditwheel

    assert WHEEL is not None
    name = Path(WHEEL).name
    assert "manylinux" in name and name.endswith(".whl"), name
    with zipfile.ZipFile(WHEEL) as z:
        names = z.namelist()
        ext = [n for n in names if n.startswith("entitle/_entitle") and n.endswith(".so")]
        assert len(ext) == 1, names
        for wanted in ("entitle/py.typed", "entitle/_entitle.pyi", "entitle/asgi.py",
                       "entitle/django.py", "entitle/flask.py", "entitle/openfeature.py"):
            assert wanted in names
        assert not any(n.startswith("entitle.libs/") for n in names), "no bundled libraries"
        z.extract(ext[0], tmp_path)
    with open(tmp_path / ext[0], "rb") as f:
        elf = ELFFile(f)
        sections = {s.name for s in elf.iter_sections()}
        assert ".symtab" not in sections, "the extension is not stripped"
        assert not any(s.startswith(".debug") for s in sections), sections
        dynsyms = [s.name for s in elf.get_section_by_name(".dynsym").iter_symbols()
                   if s["st_shndx"] != "SHN_UNDEF" and s.name]
        # Only the module's init function is exported; the Rust library stays hidden.
        assert dynsyms == ["PyInit__entitle"], dynsyms


@needs_sdist
def test_the_sdist_carries_the_engine_sources() -> None:
    assert SDIST is not None
    with tarfile.open(SDIST) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
        manifest = t.extractfile(next(m for m in t.getmembers()
                                      if m.name.endswith("/rust/Cargo.toml")))
        assert manifest is not None
        text = manifest.read().decode()
    for wanted in ("setup.py", "pyproject.toml", "src/entitle/_entitle.c", "rust/Cargo.lock",
                   "rust/core/src/lib.rs", "rust/core/src/events.rs", "rust/ffi/src/lib.rs",
                   "rust/ffi/include/entitle.h"):
        assert wanted in names, wanted
    assert 'members = ["core", "ffi"]' in text and "[profile.dist]" in text
    assert not any(n.startswith("rust/cli") or "/tests/" in n for n in names)


@needs_sdist
def test_building_the_sdist_without_cargo_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ENTITLE_", "CARGO"))}
    env.update(PATH=str(Path(sys.executable).parent), HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path / "out"), str(SDIST)],
        capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0
    assert "building from source needs Rust: `cargo` was not found on PATH" in \
        out.stdout + out.stderr
