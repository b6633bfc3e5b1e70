"""close() while a call is converting its arguments: Python code that runs inside a call (a
datetime's Python tzinfo, an object's timestamp(), an int subclass's __index__) may close the engine,
itself or from another thread. The call then raises ClosedError or answers from the content it
started with; it never touches freed memory (the process would crash)."""

from __future__ import annotations

import datetime
import json
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from conftest import catalog, run_python
from entitle import ClosedError, Engine


@pytest.fixture
def make_engine() -> Callable[[], Engine]:
    text = json.dumps(catalog())
    return lambda: Engine.from_catalog(text)


class ClosingTime:
    """An object with timestamp(), which closes the engine first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def timestamp(self) -> float:
        self.engine.close()
        return 1_700_000_000.0


class ClosingTz(datetime.tzinfo):
    """A Python tzinfo (as pytz and dateutil provide) that closes the engine when consulted."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def utcoffset(self, dt: Any) -> datetime.timedelta:
        self.engine.close()
        return datetime.timedelta(hours=1)

    def dst(self, dt: Any) -> datetime.timedelta:
        return datetime.timedelta(0)

    def tzname(self, dt: Any) -> str:
        return "closing"


class ClosingIndex:
    """An int-like usage whose __index__ closes the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __index__(self) -> int:
        self.engine.close()
        return 3


CALLS: Dict[str, Callable[[Engine, Any], Any]] = {
    "enabled": lambda e, at: e.enabled("cus_pro", "sso", at=at),
    "limit": lambda e, at: e.limit("cus_pro", "projects", at=at),
    "allows": lambda e, at: e.allows("cus_pro", "projects", 1, at=at),
    "check": lambda e, at: e.check("cus_pro", "projects", at=at),
    "entitlements": lambda e, at: e.entitlements("cus_pro", at=at),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("kind", ["timestamp", "tzinfo"])
def test_at_that_closes_the_engine_raises_closed(
    make_engine: Callable[[], Engine], call: str, kind: str
) -> None:
    engine = make_engine()
    at: Any = (
        ClosingTime(engine)
        if kind == "timestamp"
        else datetime.datetime(2024, 1, 1, tzinfo=ClosingTz(engine))
    )
    with pytest.raises(ClosedError):
        CALLS[call](engine, at)
    assert engine.closed


def test_usage_that_closes_the_engine_raises_closed(make_engine: Callable[[], Engine]) -> None:
    engine = make_engine()
    with pytest.raises(ClosedError):
        engine.allows("cus_pro", "projects", ClosingIndex(engine))
    engine = make_engine()
    with pytest.raises(ClosedError):
        engine.allows("cus_pro", "projects", 1, ClosingIndex(engine))


def test_status_after_close_from_a_finalizer(make_engine: Callable[[], Engine]) -> None:
    # The status getter allocates between native calls; a collection may run a finalizer that
    # closes the engine. The getter must finish on the engine it leased (or raise ClosedError).
    import gc

    engine = make_engine()

    class Closer:
        def __del__(self) -> None:
            engine.close()

    gc.collect()
    threshold = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        for _ in range(200):
            a: List[Any] = [Closer()]
            a.append(a)  # a cycle: only the collector frees it, at an allocation
            del a
            try:
                engine.status
            except ClosedError:
                break
    finally:
        gc.set_threshold(*threshold)
    assert engine.closed


SCRIPT = textwrap.dedent(
    """
    import datetime, sys, threading, json
    from entitle import ClosedError, Engine

    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows

    class Tz(datetime.tzinfo):
        # Python code inside the call: the interpreter may switch threads here.
        def utcoffset(self, dt):
            sum(range(50))
            return datetime.timedelta(hours=2)
        def dst(self, dt):
            return datetime.timedelta(0)

    catalog = json.loads(sys.argv[1])
    at = datetime.datetime(2024, 1, 1, tzinfo=Tz())
    answered = closed = 0
    lock = threading.Lock()
    for _ in range(int(sys.argv[2])):
        engine = Engine.from_catalog(catalog)
        go = threading.Barrier(4)

        def reader():
            global answered, closed
            go.wait()
            for _ in range(200):
                try:
                    engine.enabled("cus_pro", "sso", at=at)
                    engine.check("cus_pro", "projects", at=at)
                    engine.entitlements("cus_pro", at=at)
                    with lock:
                        answered += 1
                except ClosedError:
                    with lock:
                        closed += 1
                    return

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        go.wait()
        sum(range(2000))
        engine.close()
        for t in threads:
            t.join()
    print(answered, closed)
    """
)


def test_three_threads_looking_up_with_at_while_main_closes() -> None:
    # In a child interpreter: a use-after-free crashes the process instead of the test run.
    result = run_python(SCRIPT, timeout=300, args=[json.dumps(catalog()), "60"])
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    answered, closed = map(int, result.stdout.split())
    assert closed > 0  # the engines were closed under the readers, and they noticed
