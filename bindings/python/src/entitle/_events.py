"""The listener thread behind ``logging.getLogger("entitle")``, ``Engine.on_change`` and
``Engine.on_event``.

One daemon thread per engine that needs it (every engine made by ``Engine.connect``; a static
engine once a callback is registered) waits for the engine's events in native code with the GIL
released, then logs each one and calls the callbacks. Lookups never involve it. The thread holds
the engine only while it waits (at most ``_WAIT`` seconds at a time), so an engine nobody
references any more is still collected; it ends when the engine is closed (``close()``, or the
package's ``atexit`` hook) or collected.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from . import ClosedError

if TYPE_CHECKING:
    from . import Engine

logger = logging.getLogger("entitle")
# A library's logger stays silent until the application configures logging (no "last resort"
# output on stderr); then its records propagate to the application's handlers.
logger.addHandler(logging.NullHandler())

# Seconds per wait: how long an unreferenced engine may outlive its last reference.
_WAIT = 1.0


class EventKind(str, enum.Enum):
    """What an :class:`Event` reports. Members are also strings (``"version_changed"``...)."""

    VERSION_CHANGED = "version_changed"
    """The content version changed: a sync round, ``replace()`` or ``apply_delta()``."""
    SYNC_FAILED = "sync_failed"
    """A sync round failed; the engine keeps its content and retries with backoff."""
    SYNC_RECOVERED = "sync_recovered"
    """A sync round succeeded after failures or staleness."""
    STALE = "stale"
    """No successful sync for longer than ``max_staleness``."""
    CACHE_ERROR = "cache_error"
    """The cache file could not be read or written; syncing goes on."""

    def __str__(self) -> str:
        return self.value


_KINDS = {
    1: EventKind.VERSION_CHANGED,
    2: EventKind.SYNC_FAILED,
    3: EventKind.SYNC_RECOVERED,
    4: EventKind.STALE,
    5: EventKind.CACHE_ERROR,
}


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing that happened to an engine, as given to :meth:`Engine.on_event` callbacks."""

    seq: int
    """Its number: 1 for the engine's first event, then one more for each."""
    kind: EventKind
    """What happened."""
    old_version: int
    """The version before (for VERSION_CHANGED); the current version otherwise."""
    new_version: int
    """The version after (for VERSION_CHANGED); the current version otherwise."""
    at: float
    """When it happened (unix seconds)."""
    message: str
    """The library's detail: the sync error, the cache problem, or a summary."""


ChangeCallback = Callable[[int, int], object]
EventCallback = Callable[[Event], object]


class Listener:
    """The listener thread of one engine, and the callbacks registered on it."""

    def __init__(self, engine: "Engine") -> None:
        self._engine = weakref.ref(engine)
        self._lock = threading.Lock()
        self._on_change: List[ChangeCallback] = []
        self._on_event: List[EventCallback] = []
        self._seq = 0
        self._failures = 0
        self._thread: Optional[threading.Thread] = None
        self._pid = 0
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="entitle-events", daemon=True)
        self._thread.start()

    def add(self, on_change: Optional[ChangeCallback], on_event: Optional[EventCallback]) -> None:
        with self._lock:
            if on_change is not None:
                self._on_change.append(on_change)
            if on_event is not None:
                self._on_event.append(on_event)

    def remove(self, callback: Callable[..., object]) -> bool:
        with self._lock:
            for callbacks in (self._on_change, self._on_event):
                for i, cb in enumerate(callbacks):
                    if cb == callback:
                        del callbacks[i]
                        return True
        return False

    def after_fork(self) -> None:
        """In a forked child: the thread does not exist here, and the lock may be held by it."""
        self._lock = threading.Lock()
        if self._engine() is not None:
            self._start()

    def join(self, timeout: float) -> None:
        thread = self._thread
        if self._pid != os.getpid():
            # A child forked without the hook: the thread is the parent's and will never end here.
            return
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _wait(self) -> Optional[Tuple[int, int, int, int, int, str]]:
        """The next raw event; None on timeout. Raises LookupError when the listener must end.

        The engine is referenced only inside this call, so that the caller holds nothing while
        it dispatches."""
        engine = self._engine()
        if engine is None:
            raise LookupError("the engine is gone")
        try:
            return engine._next_event(self._seq, _WAIT)
        except ClosedError as e:
            raise LookupError("the engine is closed") from e

    def _run(self) -> None:
        while True:
            try:
                raw = self._wait()
            except LookupError:
                return
            if raw is None:
                continue
            seq, kind, old, new, at_ms, message = raw
            self._seq = seq
            known = _KINDS.get(kind)
            if known is None:  # a kind from a newer library: nothing to say about it
                continue
            event = Event(seq, known, old, new, at_ms / 1000.0, message)
            self._log(event)
            self._dispatch(event)

    def _log(self, e: Event) -> None:
        if e.kind is EventKind.VERSION_CHANGED:
            logger.info("entitle: content version %d -> %d", e.old_version, e.new_version)
        elif e.kind is EventKind.SYNC_FAILED:
            self._failures += 1
            # The first failure of a streak is news; the retries that follow are not, until the
            # engine recovers or its content goes stale (both logged).
            level = logging.WARNING if self._failures == 1 else logging.DEBUG
            logger.log(level, "entitle: sync failed (%d in a row; serving version %d): %s",
                       self._failures, e.new_version, e.message)
        elif e.kind is EventKind.SYNC_RECOVERED:
            self._failures = 0
            logger.info("entitle: sync recovered (%s); serving version %d", e.message,
                        e.new_version)
        elif e.kind is EventKind.STALE:
            logger.warning("entitle: entitlement data is stale (%s); version %d", e.message,
                           e.new_version)
        elif e.kind is EventKind.CACHE_ERROR:
            logger.warning("entitle: cache problem: %s", e.message)

    def _dispatch(self, e: Event) -> None:
        with self._lock:
            on_change = list(self._on_change) if e.kind is EventKind.VERSION_CHANGED else []
            on_event = list(self._on_event)
        for cb in on_change:
            try:
                cb(e.old_version, e.new_version)
            except Exception:
                logger.exception("entitle: on_change callback %r raised", cb)
        for ecb in on_event:
            try:
                ecb(e)
            except Exception:
                logger.exception("entitle: on_event callback %r raised", ecb)
