"""Events: logging.getLogger("entitle"), on_change, on_event, the listener thread's life, and the
new conveniences (Decision.to_dict, Limit, the default wait_ready timeout)."""

from __future__ import annotations

import gc
import inspect
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

import entitle
from entitle import UNLIMITED, Engine, Event, EventKind

from conftest import Edge, catalog, wait_until


def listener_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "entitle-events" and t.is_alive())


@pytest.fixture
def refusing_url() -> Iterator[str]:
    """A loopback URL whose port refuses connections (bound, never listening)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


def test_on_change_hears_replace_and_apply_delta(snapshots: Dict[str, Path]) -> None:
    engine = Engine.from_file(snapshots["v1"])
    changes: List[Tuple[int, int, str]] = []
    done = threading.Event()

    @engine.on_change
    def changed(old: int, new: int) -> None:
        changes.append((old, new, threading.current_thread().name))
        done.set()

    assert changed is not None  # the decorator returns the callback
    engine.apply_delta(snapshots["delta"].read_bytes())
    assert done.wait(10)
    assert changes == [(1, 2, "entitle-events")]
    done.clear()
    engine.replace(snapshots["v1"].read_bytes())
    assert done.wait(10)
    assert changes[-1][:2] == (2, 1)
    assert engine.remove_listener(changed) and not engine.remove_listener(changed)
    engine.close()
    assert wait_until(lambda: listener_threads() == 0, 10)


def test_callback_errors_are_logged_not_raised(snapshots: Dict[str, Path],
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="entitle")
    engine = Engine.from_file(snapshots["v1"])
    heard: List[int] = []

    def broken(old: int, new: int) -> None:
        raise RuntimeError("listener bug")

    engine.on_change(broken)
    engine.on_change(lambda old, new: heard.append(new))
    engine.replace(snapshots["v2"].read_bytes())
    assert wait_until(lambda: heard == [2], 10)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "on_change callback" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "listener bug" in str(errors[0].exc_info[1])
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "entitle: content version 1 -> 2" in infos
    # Lookups keep working, and the engine closes cleanly.
    assert engine.limit("cus_pro", "projects") == 60
    engine.close()


def test_sync_failures_staleness_and_recovery_are_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="entitle")
    edge = Edge(tmp_path)
    edge.publish(catalog())
    edge.start()
    events: List[Event] = []
    try:
        engine = Engine.connect(edge.url, poll_interval=0.05, max_backoff=0.1,
                                max_staleness=0.5)
        engine.on_event(events.append)
        assert engine.wait_ready(20)
        assert wait_until(lambda: any(e.kind is EventKind.VERSION_CHANGED for e in events), 10)
        port = int(edge.url.rsplit(":", 1)[1])
        edge.stop()
        assert wait_until(lambda: any(e.kind is EventKind.STALE for e in events), 20)
        failures = [r for r in caplog.records if "sync failed" in r.getMessage()]
        assert failures and failures[0].levelno == logging.WARNING
        assert "1 in a row" in failures[0].getMessage()
        assert all(r.levelno == logging.DEBUG for r in failures[1:])
        stale = [r for r in caplog.records if "stale" in r.getMessage()]
        assert stale and stale[0].levelno == logging.WARNING
        # The edge comes back on the same port: recovery is news again.
        edge.start_on(port)
        assert wait_until(lambda: any(e.kind is EventKind.SYNC_RECOVERED for e in events), 20)
        assert any("sync recovered" in r.getMessage() and r.levelno == logging.INFO
                   for r in caplog.records)
        kinds = [e.kind for e in events]
        assert kinds.index(EventKind.SYNC_FAILED) < kinds.index(EventKind.STALE) < kinds.index(
            EventKind.SYNC_RECOVERED)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert all(isinstance(e.kind, EventKind) and e.at > 1.6e9 for e in events)
        engine.close()
    finally:
        edge.stop()


def test_an_unreachable_edge_is_logged_at_once(refusing_url: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="entitle")
    with Engine.connect(refusing_url, poll_interval=0.05, max_backoff=0.1) as engine:
        assert not engine.wait_ready(0.2)
        assert wait_until(lambda: any("sync failed" in r.getMessage() for r in caplog.records),
                          10)
        record = next(r for r in caplog.records if "sync failed" in r.getMessage())
        assert record.name == "entitle" and refusing_url.split("//")[1] in record.getMessage()


def test_the_listener_thread_stops_on_close_and_with_the_engine(
        refusing_url: str, snapshots: Dict[str, Path]) -> None:
    before = listener_threads()
    engines = [Engine.connect(refusing_url, poll_interval=0.05) for _ in range(3)]
    assert listener_threads() == before + 3
    started = time.monotonic()
    for e in engines:
        e.close()
    assert listener_threads() == before
    assert time.monotonic() - started < 10
    # A static engine gets a listener only when asked for one.
    static = Engine.from_file(snapshots["v1"])
    assert listener_threads() == before
    static.on_change(lambda old, new: None)
    assert listener_threads() == before + 1
    # Dropped without close(): the listener lets go within a wait slice, the engine is freed.
    del static
    gc.collect()
    assert wait_until(lambda: listener_threads() == before, 10)


def test_close_from_inside_a_callback(snapshots: Dict[str, Path]) -> None:
    engine = Engine.from_file(snapshots["v1"])
    closed = threading.Event()

    def close_it(old: int, new: int) -> None:
        engine.close()
        closed.set()

    engine.on_change(close_it)
    engine.replace(snapshots["v2"].read_bytes())
    assert closed.wait(10) and engine.closed
    assert wait_until(lambda: listener_threads() == 0, 10)
    with pytest.raises(entitle.ClosedError):
        engine.on_change(lambda old, new: None)


def test_many_changes_arrive_in_order(snapshots: Dict[str, Path]) -> None:
    engine = Engine.from_file(snapshots["v1"])
    seen: List[Tuple[int, int]] = []
    engine.on_change(lambda old, new: seen.append((old, new)))
    v1, v2 = snapshots["v1"].read_bytes(), snapshots["v2"].read_bytes()
    for _ in range(50):
        engine.replace(v2)
        engine.replace(v1)
    assert wait_until(lambda: len(seen) == 100, 20), len(seen)
    assert seen == [(1, 2), (2, 1)] * 50
    engine.close()


def test_decision_to_dict_is_json_ready() -> None:
    engine = Engine.from_catalog(catalog())
    d = engine.check("cus_ent", "projects")
    assert d.to_dict() == {"feature_type": "limit", "value": "unlimited", "enabled": True,
                           "reason": "subscription", "version": 0}
    assert engine.check("cus_pro", "projects").to_dict()["value"] == 50
    assert engine.check("cus_pro", "sso").to_dict() == {
        "feature_type": "flag", "value": True, "enabled": True, "reason": "subscription",
        "version": 0}
    assert engine.check("cus_pro", "nope").to_dict() == {
        "feature_type": None, "value": None, "enabled": False, "reason": "feature_not_found",
        "version": 0}
    text = json.dumps({k: v.to_dict() for k, v in engine.entitlements("cus_override").items()})
    assert json.loads(text)["projects"] == {"feature_type": "limit", "value": 7, "enabled": True,
                                            "reason": "override", "version": 0}


def test_limit_is_exported_and_wait_ready_has_a_default_timeout(refusing_url: str) -> None:
    assert "Limit" in entitle.__all__
    limit: entitle.Limit = UNLIMITED
    assert limit is UNLIMITED
    default = inspect.signature(Engine.wait_ready).parameters["timeout"].default
    assert default == entitle.DEFAULT_WAIT_READY_TIMEOUT == 5.0
    with Engine.connect(refusing_url) as engine:
        started = time.monotonic()
        assert engine.wait_ready(0.3) is False
        assert 0.25 < time.monotonic() - started < 5
