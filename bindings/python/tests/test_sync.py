"""Engines that sync from an edge (`entitle serve` on 127.0.0.1): readiness, updates, status,
the cache directory, an unreachable edge, and close()."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pytest

from entitle import ClosedError, Engine, Reason, SyncState

from conftest import Edge, catalog, wait_until

POLL = 0.1  # seconds between manifest checks in these tests


def test_connect_waits_for_content_and_follows_updates(edge: Edge) -> None:
    with Engine.connect(edge.url, poll_interval=POLL) as engine:
        assert engine.connected
        assert engine.wait_ready(20) is True
        assert engine.limit("cus_pro", "projects") == 50
        status = engine.status
        assert status.state is SyncState.READY and status.has_data and status.syncing
        assert (status.version, status.edge_version, status.last_error) == (1, 1, None)
        assert status.syncs >= 1 and status.snapshots_fetched == 1
        assert status.last_success is not None and status.lineage
        assert status.data_age is not None and status.data_age >= 0

        edge.publish(catalog(projects_for_pro=60))
        assert wait_until(lambda: engine.limit("cus_pro", "projects") == 60)
        assert engine.version == 2
        assert engine.check("cus_pro", "projects").version == 2
        assert wait_until(lambda: engine.status.deltas_applied == 1)
        assert repr(engine) == "<Engine connected version=2>"
    assert engine.closed


def test_long_poll_delivers_updates(edge: Edge) -> None:
    with Engine.connect(edge.url, long_poll=10, poll_interval=30) as engine:
        assert engine.wait_ready(20)
        assert wait_until(lambda: engine.status.long_poll)
        edge.publish(catalog(projects_for_pro=61))
        # With a 30 s poll interval only the long-poll can bring this within the wait.
        assert wait_until(lambda: engine.limit("cus_pro", "projects") == 61, timeout=15)


def test_cache_dir_gives_a_warm_start_without_the_edge(edge: Edge, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with Engine.connect(edge.url, cache_dir=cache, poll_interval=POLL) as engine:
        assert engine.wait_ready(20)
        assert not engine.status.warm_start
    assert any(cache.rglob("*")), "nothing was written to the cache directory"
    edge.stop()
    with Engine.connect(edge.url, cache_dir=str(cache), poll_interval=POLL) as engine:
        assert engine.wait_ready(0) is True  # served from the cache at once
        assert engine.status.warm_start
        assert engine.limit("cus_pro", "projects") == 50
        assert wait_until(lambda: engine.status.failures >= 1)  # the edge is gone
        assert engine.limit("cus_pro", "projects") == 50  # still serving good data


def test_unreachable_edge_is_reported_not_raised(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens, connections are refused at once.
    with Engine.connect("http://127.0.0.1:9", poll_interval=POLL, max_backoff=0.2) as engine:
        assert engine.wait_ready(0.3) is False
        assert wait_until(lambda: engine.status.failures >= 1)
        status = engine.status
        assert status.state in (SyncState.STARTING, SyncState.FAILED) and not status.has_data
        assert status.last_error and "127.0.0.1:9" in status.last_error
        assert status.last_error_at is not None and status.consecutive_failures >= 1
        # Until data arrives every feature is unknown.
        assert engine.check("cus_pro", "sso").reason is Reason.FEATURE_NOT_FOUND
        assert engine.enabled("cus_pro", "sso") is False


def test_close_wakes_a_waiting_thread() -> None:
    engine = Engine.connect("http://127.0.0.1:9", poll_interval=POLL)
    results = []
    waiter = threading.Thread(target=lambda: results.append(engine.wait_ready(60)))
    waiter.start()
    time.sleep(0.3)
    started = time.monotonic()
    engine.close()
    waiter.join(30)
    assert not waiter.is_alive(), "wait_ready() did not return after close()"
    assert results == [False]
    assert time.monotonic() - started < 30
    with pytest.raises(ClosedError):
        engine.wait_ready(0)


def test_wait_ready_checks_its_timeout(edge: Edge) -> None:
    with Engine.connect(edge.url) as engine:
        with pytest.raises(ValueError, match="timeout"):
            engine.wait_ready(-1)
        with pytest.raises(TypeError):
            engine.wait_ready("soon")  # type: ignore[arg-type]


def threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


def test_close_and_release_leave_no_threads_behind(edge: Edge) -> None:
    baseline = threads_now()
    for i in range(20):
        engine = Engine.connect(edge.url, poll_interval=POLL, long_poll=5 if i % 2 else None)
        assert engine.wait_ready(20)
        assert threads_now() > baseline  # the sync thread is running
        if i % 4 < 2:
            engine.close()
        del engine  # the others are released by garbage collection
        gc.collect()
    assert wait_until(lambda: threads_now() == baseline, timeout=10), (threads_now(), baseline)
