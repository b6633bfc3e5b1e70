"""Fork safety: a pre-forking server (gunicorn, uWSGI with Python's fork hooks, Celery) connects
an engine in the master, then forks workers. Each worker must keep receiving updates: threads do
not survive fork(), so the package restarts the sync thread in every child through
os.register_at_fork. The children report through pipes and exit with os._exit; every wait is
bounded."""

from __future__ import annotations

import os
import select
import signal
import time
from typing import Callable, List, Tuple

import pytest

from entitle import Engine

from conftest import Edge, catalog, wait_until

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns about forking a process with threads (pytest's, the engine's): that is
    # exactly what a pre-fork server does and what these tests exercise.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def read_line(fd: int, timeout: float) -> str:
    """One line from a pipe, or '' after `timeout` seconds or at end of file."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return ""
        chunk = os.read(fd, 256)
        if not chunk:
            return ""
        data += chunk
    return data.decode().strip()


def fork_worker(body: Callable[[int, int], int]) -> Tuple[int, int, int]:
    """Forks a child running `body(to_parent, from_parent)`; returns (pid, from_child, to_child).

    The child never returns into pytest: it leaves through os._exit with body's result (3 on an
    exception)."""
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.close(up_r)
            os.close(down_w)
            code = body(up_w, down_r)
        except BaseException as e:  # noqa: BLE001 - report anything, never unwind into pytest
            try:
                os.write(up_w, f"error {type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(up_w)
    os.close(down_r)
    return pid, up_r, down_w


def reap(pid: int, timeout: float = 30.0) -> int:
    """The child's exit status; kills it if it has not exited within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
                else status >> 8
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def worker_body(engine: Engine, before: int, after: int) -> Callable[[int, int], int]:
    def body(up: int, down: int) -> int:
        first = engine.limit("cus_pro", "projects")
        restarted_again = engine._after_fork()  # the fork hook already did it: a no-op now
        status = engine.status
        os.write(up, f"ready {first} {restarted_again} {status.syncing}\n".encode())
        if read_line(down, 30) != "published":
            return 4
        seen = wait_until(lambda: engine.limit("cus_pro", "projects") == after, timeout=20)
        os.write(up, f"seen {engine.limit('cus_pro', 'projects')} {engine.version}\n".encode())
        return 0 if seen and first == before else 1
    return body


@pytest.mark.parametrize("workers", [1, 2])
def test_forked_workers_receive_later_updates(edge: Edge, workers: int) -> None:
    engine = Engine.connect(edge.url, poll_interval=0.1)
    try:
        assert engine.wait_ready(20)
        assert engine.limit("cus_pro", "projects") == 50
        children: List[Tuple[int, int, int]] = [
            fork_worker(worker_body(engine, 50, 60)) for _ in range(workers)]
        try:
            for _, up, _ in children:
                assert read_line(up, 30) == "ready 50 False True"
            # The update is published only after every worker forked and answered.
            edge.publish(catalog(projects_for_pro=60))
            for _, _, down in children:
                os.write(down, b"published\n")
            for _, up, _ in children:
                assert read_line(up, 40) == "seen 60 2"
        finally:
            codes = [reap(pid) for pid, _, _ in children]
            for _, up, down in children:
                os.close(up)
                os.close(down)
        assert codes == [0] * workers
        # The parent's own sync thread kept working through the forks.
        assert wait_until(lambda: engine.limit("cus_pro", "projects") == 60)
    finally:
        engine.close()


def test_static_engines_work_in_children(snapshots) -> None:
    engine = Engine.from_file(snapshots["v1"])
    delta = snapshots["delta"].read_bytes()

    def body(up: int, down: int) -> int:
        ok = engine.limit("cus_pro", "projects") == 50
        ok = ok and engine.apply_delta(delta) == 2 and engine.limit("cus_pro", "projects") == 60
        os.write(up, f"{ok}\n".encode())
        return 0 if ok else 1

    pid, up, down = fork_worker(body)
    try:
        assert read_line(up, 30) == "True"
    finally:
        code = reap(pid)
        os.close(up)
        os.close(down)
    assert code == 0
    # The child's update stayed in the child.
    assert (engine.version, engine.limit("cus_pro", "projects")) == (1, 50)
