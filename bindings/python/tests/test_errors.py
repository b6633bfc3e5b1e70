"""Errors: the exception hierarchy, the library's detail messages, and content kept on failure."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from entitle import (ArgumentError, CatalogError, ClosedError, ConnectError, DeltaError, Engine,
                     EntitleError, FileError, FormatError, SnapshotError, _entitle)

from conftest import catalog


def test_hierarchy() -> None:
    for cls in (CatalogError, SnapshotError, DeltaError, FileError, ConnectError, ArgumentError,
                ClosedError):
        assert issubclass(cls, EntitleError)
    assert issubclass(FileError, OSError)
    assert issubclass(ArgumentError, ValueError) and issubclass(ClosedError, ValueError)
    assert EntitleError("x", 4).code == 4 and str(EntitleError("x")) == "x"


# Every result code of the C ABI and the class it raises: a function of the code alone.
CLASS_OF_CODE = {
    1: ArgumentError,  # NULL_PARAMETER
    2: ArgumentError,  # INVALID_UTF8
    3: ArgumentError,  # INVALID_PARAMETER (also too many feature keys)
    4: EntitleError,  # PANIC
    5: EntitleError,  # BUFFER_TOO_SMALL
    6: EntitleError,  # OUT_OF_RANGE
    7: FileError,  # IO (also a thread that could not be started)
    8: CatalogError,  # INVALID_CATALOG
    9: FormatError,  # BAD_MAGIC
    10: FormatError,  # UNSUPPORTED_VERSION
    11: FormatError,  # CORRUPT
    12: FormatError,  # TOO_LARGE
    13: DeltaError,  # WRONG_BASE
    14: DeltaError,  # FEATURE_MISMATCH
    15: ConnectError,  # INVALID_CONFIG
    16: EntitleError,  # TIMEOUT (next_event returns None instead)
    17: ClosedError,  # CLOSED
    18: EntitleError,  # a code of a newer library
}


@pytest.mark.parametrize("code", sorted(CLASS_OF_CODE))
def test_the_class_follows_from_the_code(code: int) -> None:
    assert _entitle._error_class(code) is CLASS_OF_CODE[code]
    assert issubclass(FormatError, SnapshotError) and issubclass(FormatError, DeltaError)


def test_real_failures_raise_the_class_of_their_code(
    tmp_path: Path, snapshots: Dict[str, Path]
) -> None:
    v1 = snapshots["v1"].read_bytes()
    newer = bytearray(v1)
    newer[8] = 99  # the format version, after the 8-byte magic
    engine = Engine.from_file(snapshots["v2"])
    closed = Engine.from_catalog(catalog())
    closed.close()
    failures = [
        (lambda: Engine.from_catalog("{"), 8),
        (lambda: Engine.from_bytes(b"junk"), 9),
        (lambda: Engine.from_bytes(bytes(newer)), 10),
        (lambda: Engine.from_bytes(v1[:100]), 11),
        (lambda: engine.apply_delta(b"junk"), 9),
        (lambda: engine.apply_delta(snapshots["delta"].read_bytes()), 13),
        (lambda: Engine.from_file(tmp_path / "missing.snap"), 7),
        (lambda: Engine.connect("ftp://example.invalid"), 15),
    ]
    for call, code in failures:
        with pytest.raises(EntitleError) as info:
            call()
        assert info.value.code == code, (code, info.value)
        assert isinstance(info.value, CLASS_OF_CODE[code]), (code, info.value)
    with pytest.raises(ClosedError):
        closed.limit("cus_pro", "projects")


def test_catalog_error_names_the_path() -> None:
    data = catalog()
    data["customers"][3]["overrides"]["projects"] = -1
    with pytest.raises(CatalogError) as info:
        Engine.from_catalog(data)
    assert str(info.value).startswith("customers[3].overrides.projects: ")
    assert info.value.code == 8


def test_catalog_error_for_text_that_is_not_json() -> None:
    with pytest.raises(CatalogError, match="^catalog: "):
        Engine.from_catalog("{not json")
    with pytest.raises(CatalogError, match="^catalog: "):
        Engine.from_catalog("[]")


def test_catalog_that_is_not_utf8() -> None:
    with pytest.raises(ArgumentError, match="UTF-8"):
        Engine.from_catalog(b'{"features": [], "x": "\xff"}')


def test_catalog_dict_that_json_cannot_write() -> None:
    # Every catalog problem is a CatalogError naming the value's path, like the library's own.
    data = catalog()
    data["features"][1]["default"] = float("inf")
    with pytest.raises(CatalogError, match=r"^features\[1\]\.default: inf .*unlimited") as info:
        Engine.from_catalog(data)
    assert info.value.code == 8
    with pytest.raises(CatalogError, match=r"^default: inf"):
        Engine.from_catalog({"default": float("inf")})
    with pytest.raises(CatalogError, match=r"^x: nan"):
        Engine.from_catalog({"features": [], "x": float("nan")})
    with pytest.raises(CatalogError, match=r"^x\[0\]: a object is not a catalog value"):
        Engine.from_catalog({"features": [], "x": [object()]})
    with pytest.raises(CatalogError, match=r"^catalog: key 1 is not a string"):
        Engine.from_catalog({1: []})
    with pytest.raises(TypeError, match="dict or JSON text"):
        Engine.from_catalog(42)  # type: ignore[arg-type]


def test_file_errors_are_os_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.snap"
    with pytest.raises(FileError) as info:
        Engine.from_file(missing)
    assert str(missing) in str(info.value) and info.value.code == 7
    with pytest.raises(OSError):
        Engine.from_file(tmp_path)  # a directory


def test_file_errors_are_the_matching_os_error_subclass(tmp_path: Path) -> None:
    import errno
    import pickle

    missing = tmp_path / "missing.snap"
    with pytest.raises(FileNotFoundError) as info:
        Engine.from_file(missing)
    e = info.value
    assert isinstance(e, FileError) and isinstance(e, EntitleError)
    assert (e.errno, e.filename, e.code) == (errno.ENOENT, str(missing), 7)
    assert e.strerror == "No such file or directory"
    assert type(e).__name__ == "FileError"
    with pytest.raises(IsADirectoryError) as dir_info:
        Engine.from_file(tmp_path)
    assert dir_info.value.errno == errno.EISDIR and dir_info.value.filename == str(tmp_path)
    with pytest.raises(NotADirectoryError):
        Engine.from_file(_file(tmp_path) / "x")
    # replace_file maps the same way, and keeps the content.
    engine = Engine.from_catalog(catalog())
    with pytest.raises(FileNotFoundError):
        engine.replace_file(missing)
    assert engine.limit("cus_pro", "projects") == 50
    # A pickled FileError comes back as the same subclass with the same fields.
    again = pickle.loads(pickle.dumps(e))
    assert isinstance(again, FileNotFoundError) and again.filename == str(missing)
    # Built by hand without a system error, it is a plain FileError.
    plain = FileError("something odd", 7)
    assert type(plain) is FileError and plain.errno is None and str(plain) == "something odd"


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "plain-file"
    path.write_text("x")
    return path


def test_snapshot_errors(tmp_path: Path, snapshots: Dict[str, Path]) -> None:
    with pytest.raises(SnapshotError, match="magic"):
        Engine.from_bytes(b"definitely not a snapshot")
    data = bytearray(snapshots["v1"].read_bytes())
    data[-20] ^= 0xFF
    with pytest.raises(SnapshotError) as info:
        Engine.from_bytes(bytes(data))
    assert info.value.code == 11  # CORRUPT
    truncated = tmp_path / "truncated.snap"
    truncated.write_bytes(snapshots["v1"].read_bytes()[:100])
    with pytest.raises(SnapshotError):
        Engine.from_file(truncated)
    with pytest.raises(TypeError, match="bytes-like"):
        Engine.from_bytes("text")  # type: ignore[arg-type]


def test_failed_updates_keep_the_content(snapshots: Dict[str, Path]) -> None:
    engine = Engine.from_file(snapshots["v2"])
    with pytest.raises(DeltaError) as info:
        engine.apply_delta(snapshots["delta"].read_bytes())  # made for v1, not v2
    assert info.value.code == 13  # WRONG_BASE
    with pytest.raises(DeltaError, match="magic"):
        engine.apply_delta(b"junk")
    with pytest.raises(SnapshotError):
        engine.replace(b"junk")
    with pytest.raises(FileError):
        engine.replace_file("/nonexistent/entitle.snap")
    assert (engine.version, engine.limit("cus_pro", "projects")) == (2, 60)


def test_connect_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="ftp://example.invalid"):
        Engine.connect("ftp://example.invalid")
    with pytest.raises(ConnectError):
        Engine.connect("http://127.0.0.1:9", token="bad\ntoken")
    with pytest.raises(ConnectError, match="poll_interval must be a number of seconds > 0"):
        Engine.connect("http://127.0.0.1:9", poll_interval=0)
    with pytest.raises(ConnectError, match="long_poll"):
        Engine.connect("http://127.0.0.1:9", long_poll=-1)
    with pytest.raises(TypeError):
        Engine.connect("http://127.0.0.1:9", poll_interval="soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Engine.connect(url=None)  # type: ignore[arg-type]
