"""Limits and misuse at the Python API: the download cap, paths as the OS gives them, and a fork that
skips the package's fork hook."""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path
from typing import Dict

import pytest

from conftest import Edge, run_python, wait_until
from entitle import ConnectError, Engine


def test_max_artifact_bytes_refuses_a_larger_snapshot(edge: Edge) -> None:
    with Engine.connect(edge.url, poll_interval=0.05, max_backoff=0.1,
                        max_artifact_bytes=100) as engine:
        assert wait_until(lambda: "max_artifact_bytes" in (engine.status.last_error or ""))
        assert "not downloaded" in (engine.status.last_error or "")
        assert not engine.wait_ready(0.1)
        assert engine.version == 0
    with Engine.connect(edge.url, poll_interval=0.05, max_artifact_bytes=1 << 20) as engine:
        assert engine.wait_ready(20)
        assert engine.enabled("cus_pro", "sso")


@pytest.mark.parametrize("bad", [0, -1, 2**64])
def test_max_artifact_bytes_must_be_positive(edge: Edge, bad: int) -> None:
    with pytest.raises(ConnectError):
        Engine.connect(edge.url, max_artifact_bytes=bad)


def test_max_artifact_bytes_must_be_an_int(edge: Edge) -> None:
    with pytest.raises(TypeError):
        Engine.connect(edge.url, max_artifact_bytes=1.5)  # type: ignore[arg-type]


def test_paths_that_are_not_utf8(snapshots: Dict[str, Path], tmp_path: Path) -> None:
    raw_dir = os.fsencode(tmp_path)
    raw = os.path.join(raw_dir, b"snap-\xff\xfe.snap")
    shutil.copyfile(snapshots["v1"], raw)
    as_str = os.fsdecode(raw)  # surrogate escapes, as os.listdir gives such names
    for path in (raw, as_str, Path(as_str)):
        with Engine.from_file(path) as engine:
            assert engine.version == 1
    raw2 = os.path.join(raw_dir, b"v2-\xff.snap")
    shutil.copyfile(snapshots["v2"], raw2)
    with Engine.from_file(raw) as engine:
        engine.replace_file(raw2)
        assert engine.version == 2
        engine.replace_file(Path(os.fsdecode(raw)))
        assert engine.version == 1


def test_a_cache_dir_that_is_not_utf8(edge: Edge, tmp_path: Path) -> None:
    cache = os.path.join(os.fsencode(tmp_path), b"cache-\xff")
    with Engine.connect(edge.url, cache_dir=cache, poll_interval=0.05) as engine:
        assert engine.wait_ready(20)
    assert wait_until(lambda: any(n.endswith(b".snap") for n in os.listdir(cache)))
    edge.stop()
    with Engine.connect(edge.url, cache_dir=Path(os.fsdecode(cache))) as engine:
        assert engine.status.warm_start
        assert engine.version == 1


RAW_FORK = textwrap.dedent(
    """
    import ctypes, os, sys, time
    from entitle import Engine

    engine = Engine.connect(sys.argv[1], poll_interval=0.05)
    assert engine.wait_ready(20)
    # Let the listener thread log the first version and go back to waiting in native code. A
    # server that forks without Python's hooks holds the GIL across fork() (uWSGI's master does):
    # with the GIL released, any Python thread running at that instant would leave the child's
    # interpreter locked for good. PyDLL keeps the GIL through the call.
    time.sleep(0.3)
    libc = ctypes.PyDLL(None, use_errno=True)
    started = time.monotonic()
    pid = libc.fork()  # a raw fork: Python's fork hooks do not run
    if pid == 0:
        ok = engine.enabled("cus_pro", "sso") and engine.status.version == 1
        ok = ok and engine.wait_ready(0) and not engine.closed
        engine.close()
        del engine
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), round(time.monotonic() - started, 1))
    engine.close()
    """
)


def test_close_in_a_child_forked_without_the_hook_is_quiet(edge: Edge) -> None:
    result = run_python(RAW_FORK, timeout=60, args=[edge.url])
    assert result.returncode == 0, result.stderr[-2000:]
    code, seconds = result.stdout.split()
    assert code == "0", (result.stdout, result.stderr[-2000:])
    # close() in the child does not wait for the parent's listener thread (it never ends there).
    assert float(seconds) < 4.0, result.stdout
    assert "panic" not in result.stderr, result.stderr[-2000:]
