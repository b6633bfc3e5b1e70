"""entitle: an embedded entitlement engine.

Answers "may this customer use this feature, and up to what limit?" from memory, in about a
hundred nanoseconds, with the same answers as every other entitle package (see the project's
docs/SEMANTICS.md). Data comes from a snapshot file, a catalog, or an edge that the engine keeps
syncing from in a background thread::

    import entitle

    engine = entitle.Engine.from_file("catalog.snap")
    if engine.enabled("cus_123", "sso"):
        ...
    if engine.allows("cus_123", "projects", usage=project_count):
        ...

    sso = engine.feature("sso")          # resolved once: faster lookups, correct across updates
    if sso.enabled("cus_123"):
        ...
    answers = sso.enabled_many(["cus_1", "cus_2", "cus_3"])   # one call, overlapped memory loads

Limits are ints, or :data:`UNLIMITED`, which compares above every number, so
``usage < engine.limit(customer, feature)`` is right for every limit.
"""

from __future__ import annotations

import atexit
import dataclasses
import enum
import errno as _errno
import json
import math
import numbers
import os
import re
import weakref
from typing import Any, Callable, Dict, Mapping, Optional, Type, Union

from . import _entitle
from ._entitle import Decision, Feature, formats, library_version

__all__ = [
    "UNLIMITED",
    "ArgumentError",
    "CatalogError",
    "ClosedError",
    "ConnectError",
    "DEFAULT_WAIT_READY_TIMEOUT",
    "Decision",
    "DeltaError",
    "Engine",
    "EntitleError",
    "Event",
    "EventKind",
    "Feature",
    "FeatureType",
    "FileError",
    "FormatError",
    "Limit",
    "Reason",
    "SnapshotError",
    "Status",
    "SyncState",
    "Unlimited",
    "after_fork",
    "formats",
    "library_version",
]

__version__ = "0.1.0"


# --------------------------------------------------------------------------------------------
# Unlimited


class Unlimited:
    """The type of :data:`UNLIMITED`, the limit above every number.

    ``UNLIMITED`` orders like positive infinity against ints and floats: ``n < UNLIMITED`` is
    true for every int ``n``, ``max(5, UNLIMITED) is UNLIMITED``, and ``UNLIMITED == math.inf``.
    It is not an int: arithmetic on it raises ``TypeError`` and ``int(UNLIMITED)`` raises
    ``OverflowError``, so code that would turn "unlimited" into a number has to say how.
    There is exactly one instance; test with ``limit is UNLIMITED``.
    """

    __slots__ = ()
    _instance: Optional[Unlimited] = None

    def __new__(cls) -> Unlimited:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNLIMITED"

    def __reduce__(self) -> str:
        return "UNLIMITED"

    def __copy__(self) -> Unlimited:
        return self

    def __deepcopy__(self, memo: Any) -> Unlimited:
        return self

    def __bool__(self) -> bool:
        return True

    def __float__(self) -> float:
        return math.inf

    def __int__(self) -> int:
        raise OverflowError("UNLIMITED has no int value")

    def __hash__(self) -> int:
        return hash(math.inf)

    @staticmethod
    def _order(other: object) -> Optional[int]:
        """-1 if ``other`` is below UNLIMITED, 0 if equal, None if unordered or not a number."""
        if other is UNLIMITED:
            return 0
        if isinstance(other, int):
            return -1
        if isinstance(other, numbers.Real):
            f = float(other)
            if f != f:  # NaN orders with nothing
                return None
            return 0 if f == math.inf else -1
        return None

    def __eq__(self, other: object) -> bool:
        order = self._order(other)
        if order is None:
            return NotImplemented if not isinstance(other, numbers.Real) else False
        return order == 0

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __lt__(self, other: object) -> bool:
        order = self._order(other)
        if order is None:
            return NotImplemented if not isinstance(other, numbers.Real) else False
        return False

    def __le__(self, other: object) -> bool:
        order = self._order(other)
        if order is None:
            return NotImplemented if not isinstance(other, numbers.Real) else False
        return order == 0

    def __gt__(self, other: object) -> bool:
        order = self._order(other)
        if order is None:
            return NotImplemented if not isinstance(other, numbers.Real) else False
        return order < 0

    def __ge__(self, other: object) -> bool:
        order = self._order(other)
        if order is None:
            return NotImplemented if not isinstance(other, numbers.Real) else False
        return True


UNLIMITED = Unlimited()
"""The limit of a feature with no limit. Compares above every int; see :class:`Unlimited`."""

Limit = Union[int, Unlimited]
"""The type of a limit: an ``int``, or :data:`UNLIMITED`. Narrow it with
``isinstance(limit, int)`` or ``limit is UNLIMITED``; :meth:`Engine.limit` and
:attr:`Decision.limit` return it."""


# --------------------------------------------------------------------------------------------
# Enums


class Reason(str, enum.Enum):
    """Why a decision came out as it did (docs/SEMANTICS.md section 2).

    Members are also strings, equal to the conformance suite's spelling:
    ``Reason.OVERRIDE == "override"``.
    """

    DEFAULT = "default"
    """No granting subscription gave more than the feature's default."""
    SUBSCRIPTION = "subscription"
    """A granting subscription's products gave the value."""
    OVERRIDE = "override"
    """A customer override replaced the value."""
    CUSTOMER_NOT_FOUND = "customer_not_found"
    """The customer is not in the data: the feature's default applied."""
    FEATURE_NOT_FOUND = "feature_not_found"
    """The feature is not in the data."""

    def __str__(self) -> str:
        return self.value


class FeatureType(str, enum.Enum):
    """A feature's type. An unknown feature has no type: ``Decision.feature_type`` is None."""

    FLAG = "flag"
    """On or off."""
    LIMIT = "limit"
    """A number, or UNLIMITED."""

    def __str__(self) -> str:
        return self.value


class SyncState(str, enum.Enum):
    """Where an engine's sync from an edge stands (:attr:`Status.state`)."""

    STARTING = "starting"
    """No content yet and no sync round has finished: every feature reads as unknown."""
    READY = "ready"
    """Serving content confirmed by the edge (or read from the cache) within ``max_staleness``.
    Engines that do not sync are always ready."""
    STALE = "stale"
    """Serving content, but the last confirmation is older than ``max_staleness``."""
    FAILED = "failed"
    """No content, and syncing has failed so far: every feature reads as unknown."""

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Status:
    """What an engine's sync has done, for health checks and operators (:attr:`Engine.status`).

    Times are unix seconds; ``data_age`` is in seconds. Engines that do not sync report
    ``READY``, their version and zero counters.
    """

    state: SyncState
    """Where the sync stands."""
    syncing: bool
    """Whether the engine syncs from an edge."""
    version: int
    """The content version being served."""
    last_success: Optional[int]
    """When a sync round last succeeded; None before the first."""
    data_age: Optional[float]
    """How old the content is (now minus its creation time); None without content."""
    last_error: Optional[str]
    """The most recent sync error, kept after recovery: compare ``last_error_at`` with
    ``last_success``."""
    last_error_at: Optional[int]
    """When ``last_error`` happened."""
    edge_version: Optional[int]
    """The latest version the edge announced."""
    syncs: int
    """Successful sync rounds (including those that found nothing new)."""
    failures: int
    """Failed sync rounds."""
    consecutive_failures: int
    """Failed rounds since the last success."""
    updates: int
    """Rounds that changed the content."""
    deltas_applied: int
    """Deltas applied."""
    snapshots_fetched: int
    """Full snapshots fetched from the edge."""
    warm_start: bool
    """Whether the content came from the cache directory at start."""
    long_poll: bool
    """Whether the edge honors long-polling (changes then arrive as soon as they are published)."""
    cache_error: Optional[str]
    """The last problem with the cache file; syncing goes on regardless."""
    lineage: Optional[str]
    """The lineage of the content being served, when known."""

    @property
    def has_data(self) -> bool:
        """Whether the engine serves real content (READY or STALE)."""
        return self.state in (SyncState.READY, SyncState.STALE)


def _make_status(fields: Dict[str, Any]) -> Status:
    fields["state"] = SyncState(fields["state"])
    return Status(**fields)


# --------------------------------------------------------------------------------------------
# Errors


class EntitleError(Exception):
    """Base class of every error entitle raises.

    ``str(error)`` is the library's detail, e.g.
    ``customers[3].overrides.seats: expected a whole number or "unlimited"``; ``code`` is the C
    ABI's result code (an ``entitle_result``), or 0 for errors raised by the package itself.
    """

    code: int

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class CatalogError(EntitleError):
    """The catalog is invalid. The message starts with the offending value's path and ':'."""


class SnapshotError(EntitleError):
    """Snapshot bytes are not a snapshot, of an unsupported format version, corrupt, or too large."""


class DeltaError(EntitleError):
    """A delta was made for another base or feature list (or is unreadable: :class:`FormatError`).
    Content is kept."""


class FormatError(SnapshotError, DeltaError):
    """Bytes are not a readable snapshot or delta: bad magic, unsupported format version, corrupt,
    or too large (result codes 9 to 12). Both a :class:`SnapshotError` and a :class:`DeltaError`,
    whichever call read them."""


# "<path>: <strerror> (os error <errno>)": the library's detail of an I/O error.
_OS_ERROR = re.compile(r"^(?P<path>.*): (?P<strerror>[^:]*) \(os error (?P<errno>\d+)\)$", re.S)


class FileError(EntitleError, OSError):
    """A file could not be read. Also an ``OSError`` of the matching subclass.

    ``errno``, ``strerror`` and ``filename`` are set from the system error, and the class is also
    the matching built-in subclass: a missing file is a :class:`FileNotFoundError`, an unreadable
    one a :class:`PermissionError`, a directory an :class:`IsADirectoryError`, so
    ``except FileNotFoundError`` works as for ``open()``.
    """

    def __new__(cls, message: str = "", code: int = 0) -> "FileError":
        if cls is FileError:
            found = _OS_ERROR.match(message)
            if found is not None:
                cls = _FILE_ERROR_CLASSES.get(int(found["errno"]), FileError)
        # One argument only: given two, OSError would read them as (errno, strerror).
        return OSError.__new__(cls, message)

    def __init__(self, message: str = "", code: int = 0) -> None:
        super().__init__(message, code)
        found = _OS_ERROR.match(message)
        if found is not None:
            self.errno = int(found["errno"])
            self.strerror = found["strerror"]
            self.filename = found["path"]

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> Any:
        # Rebuilt through FileError, which picks the subclass again from the message.
        return (FileError, (str(self), self.code))


class _FileNotFoundError(FileError, FileNotFoundError):
    pass


class _PermissionError(FileError, PermissionError):
    pass


class _IsADirectoryError(FileError, IsADirectoryError):
    pass


class _NotADirectoryError(FileError, NotADirectoryError):
    pass


class _InterruptedError(FileError, InterruptedError):
    pass


_FILE_ERROR_CLASSES: Dict[int, Type[FileError]] = {
    _errno.ENOENT: _FileNotFoundError,
    _errno.EACCES: _PermissionError,
    _errno.EPERM: _PermissionError,
    _errno.EISDIR: _IsADirectoryError,
    _errno.ENOTDIR: _NotADirectoryError,
    _errno.EINTR: _InterruptedError,
}
for _cls in _FILE_ERROR_CLASSES.values():
    _cls.__name__ = _cls.__qualname__ = "FileError"


class ConnectError(EntitleError):
    """The edge configuration given to :meth:`Engine.connect` is invalid."""


class ArgumentError(EntitleError, ValueError):
    """An argument is out of its domain (a negative usage, bytes that are not UTF-8...)."""


class ClosedError(EntitleError, ValueError):
    """The engine was closed."""


from . import _events  # noqa: E402  (needs the classes above)
from ._events import Event, EventKind  # noqa: E402


# --------------------------------------------------------------------------------------------
# Engine

_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def _track(engine: Engine) -> Engine:
    _engines.add(engine)
    return engine


def _catalog_json(value: object, path: str = "") -> Any:
    """``value`` as JSON-ready data; a value JSON cannot carry is a CatalogError naming its path
    (``customers[0].overrides.seats``), as the library names the values it refuses."""
    if value is UNLIMITED:
        return "unlimited"
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            where = path or "catalog"
            raise CatalogError(
                f"{where}: {value!r} is not a catalog value (write \"unlimited\" or "
                "entitle.UNLIMITED for no limit)", 8)
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CatalogError(f"{path or 'catalog'}: key {key!r} is not a string", 8)
            out[key] = _catalog_json(item, f"{path}.{key}" if path else key)
        return out
    if isinstance(value, (list, tuple)):
        return [_catalog_json(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise CatalogError(f"{path or 'catalog'}: a {type(value).__name__} is not a catalog value", 8)


def _json_text(data: Any) -> str:
    return json.dumps(data, allow_nan=False, separators=(",", ":"))


DEFAULT_WAIT_READY_TIMEOUT = 5.0
"""Seconds :meth:`Engine.wait_ready` waits when no timeout is given."""


class Engine(_entitle.Engine):
    """An in-process entitlement engine.

    Create one with :meth:`from_file`, :meth:`from_bytes`, :meth:`from_catalog` or
    :meth:`connect`. Lookups (:meth:`enabled`, :meth:`limit`, :meth:`allows`, :meth:`check`)
    take no lock and may be called from any number of threads; updates swap the content whole,
    so a lookup sees the old or the new data, never a mix.

    An engine is also a context manager that closes it on exit.
    """

    __slots__ = ("_listener",)

    @classmethod
    def from_file(cls, path: Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]) -> Engine:
        """An engine serving a snapshot file (from ``entitle build``) or a catalog JSON file.

        The two are told apart by content.

        Raises:
            FileError: the file cannot be read (also an ``OSError``).
            SnapshotError: the snapshot is corrupt or of an unsupported format version.
            CatalogError: the catalog is invalid.
        """
        return _track(cls._from_file(os.fspath(path)))

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview]) -> Engine:
        """An engine serving snapshot bytes (as written by ``entitle build``); they are copied.

        Raises:
            SnapshotError: the bytes are not a valid snapshot.
        """
        return _track(cls._from_snapshot(data))

    @classmethod
    def from_catalog(cls, catalog: Union[Mapping[str, Any], str, bytes]) -> Engine:
        """An engine compiled from a catalog: a dict, or its JSON text (str or bytes).

        Meant for tests and small applications; production serves snapshots. In a dict,
        ``UNLIMITED`` may stand for ``"unlimited"``. JSON text is used exactly as given.

        Raises:
            CatalogError: the catalog is invalid; the message starts with the path of the
                offending value, e.g. ``customers[0].overrides.seats: ...``.
        """
        if isinstance(catalog, Mapping):
            catalog = _json_text(_catalog_json(catalog))
        elif not isinstance(catalog, (str, bytes, bytearray, memoryview)):
            raise TypeError(
                f"catalog must be a dict or JSON text, not {type(catalog).__name__}")
        return _track(cls._from_catalog_json(catalog))

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        token: Optional[str] = None,
        cache_dir: Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]", None] = None,
        poll_interval: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        request_timeout: Optional[float] = None,
        max_staleness: Optional[float] = None,
        long_poll: Optional[float] = None,
        max_backoff: Optional[float] = None,
        persist_interval: Optional[float] = None,
        max_artifact_bytes: Optional[int] = None,
    ) -> Engine:
        """An engine that keeps itself up to date from an edge, in a background thread.

        Returns at once, without waiting for the network. With a snapshot in ``cache_dir`` the
        engine serves it immediately (warm start); otherwise every feature reads as unknown
        until the first sync succeeds: call :meth:`wait_ready` before serving traffic, and
        watch :attr:`status`. An unreachable edge is not an error: the engine retries with
        backoff, keeps serving its last good content, and reports the problem in its status.

        The sync thread survives ``os.fork()`` (it is restarted in the child), stops on
        :meth:`close`, and stops by itself at interpreter exit.

        Args:
            url: the edge's base URL, ``http://`` or ``https://`` (the manifest is
                ``{url}/manifest.json``).
            token: a bearer token sent with every request.
            cache_dir: a directory for the last good snapshot, so the next process starts warm.
            poll_interval: seconds between manifest checks (default 5, varied by 20 %).
            connect_timeout: seconds allowed to connect (default 2).
            request_timeout: seconds allowed for a whole request (default 60).
            max_staleness: seconds without a successful sync before the state is STALE
                (default 120).
            long_poll: ask the edge to hold manifest requests up to this many seconds (at most
                25) and answer as soon as a new version is published; default: poll.
            max_backoff: the longest pause in seconds between retries after failures
                (default 60).
            persist_interval: the shortest time in seconds between two cache writes after
                deltas (default 30); :meth:`close` writes what is newer.
            max_artifact_bytes: the largest snapshot or delta to download, in bytes after
                decompression (default 256 MiB). A larger one is refused (before it is requested
                when the manifest announces its size), reported in ``status.last_error``, and the
                engine keeps serving its content.

        Raises:
            ConnectError: the URL, token or an option is invalid, or the sync thread cannot start.
        """
        engine = _track(
            cls._connect(
                url,
                token,
                None if cache_dir is None else os.fspath(cache_dir),
                poll_interval,
                connect_timeout,
                request_timeout,
                max_staleness,
                long_poll,
                max_backoff,
                persist_interval,
                max_artifact_bytes,
            )
        )
        # Sync failures, recoveries, staleness and changes go to logging.getLogger("entitle").
        engine._listen()
        return engine

    def replace_file(self, path: Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]) -> None:
        """Replaces the whole content with a snapshot or catalog file (told apart by content).

        Lookups meanwhile see the old or the new content, never a mix. On failure the content
        is kept and FileError, SnapshotError or CatalogError is raised.
        """
        super().replace_file(os.fspath(path))

    def wait_ready(self, timeout: Optional[float] = DEFAULT_WAIT_READY_TIMEOUT) -> bool:
        """Waits until the engine has content (from its cache or a first successful sync).

        Waits at most ``timeout`` seconds (default :data:`DEFAULT_WAIT_READY_TIMEOUT`, 5;
        ``None``: as long as it takes) and returns whether the content came. Engines that do
        not sync are ready at once. Lookups on other threads go on meanwhile; Ctrl-C
        interrupts the wait. In async code, wait off the event loop:
        ``await asyncio.to_thread(engine.wait_ready, 10)``.
        """
        return bool(super().wait_ready(timeout))

    def on_change(self, callback: Callable[[int, int], object]) -> Callable[[int, int], object]:
        """Calls ``callback(old_version, new_version)`` after each change of the content.

        Changes come from the sync thread, :meth:`replace`, :meth:`replace_file` and
        :meth:`apply_delta`. The callback runs on the engine's listener thread (never on the
        thread doing lookups, which it does not slow down), in order, one at a time; an
        exception it raises is logged to ``logging.getLogger("entitle")``, not raised. Returns
        ``callback``, so it also works as a decorator; :meth:`remove_listener` unregisters it.
        """
        self._listen().add(callback, None)
        return callback

    def on_event(self, callback: Callable[[Event], object]) -> Callable[[Event], object]:
        """Calls ``callback(event)`` for every :class:`Event` of the engine: version changes,
        sync failures and recoveries, staleness, cache problems. Same thread and error rules as
        :meth:`on_change`; returns ``callback``."""
        self._listen().add(None, callback)
        return callback

    def remove_listener(self, callback: Callable[..., object]) -> bool:
        """Unregisters a callback given to :meth:`on_change` or :meth:`on_event`; returns
        whether it was registered."""
        listener: Optional[_events.Listener] = getattr(self, "_listener", None)
        return listener is not None and listener.remove(callback)

    def _listen(self) -> _events.Listener:
        if self.closed:
            raise ClosedError("the engine is closed", 17)
        listener: Optional[_events.Listener] = getattr(self, "_listener", None)
        if listener is None:
            listener = self._listener = _events.Listener(self)
        return listener

    def close(self) -> None:
        """Stops the engine's sync thread (if any) and its listener, and frees its memory.

        Idempotent; later lookups raise :class:`ClosedError`."""
        super().close()
        listener: Optional[_events.Listener] = getattr(self, "_listener", None)
        if listener is not None:
            listener.join(5.0)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<{type(self).__name__} closed>"
        kind = "connected" if self.connected else "static"
        return f"<{type(self).__name__} {kind} version={self.version}>"


def after_fork() -> None:
    """Restarts every live engine's background threads in a forked child process.

    Runs by itself after ``os.fork()`` (through ``os.register_at_fork``), so gunicorn, Celery,
    multiprocessing and Django's autoreloader need nothing. Call it yourself only in a child
    made by a server that forks without Python's fork hooks (uWSGI without
    ``py-call-osafterfork``). Calling it again in the same process does nothing.
    """
    for engine in list(_engines):
        if engine._after_fork():
            listener: Optional[_events.Listener] = getattr(engine, "_listener", None)
            if listener is not None and not engine.closed:
                listener.after_fork()


def _stop_all() -> None:
    # At interpreter exit, stop the sync threads while the interpreter is still whole, rather
    # than during module teardown. Engines keep answering (from their last content) for the rest
    # of the shutdown, e.g. to other atexit handlers; their memory goes with the objects.
    engines = list(_engines)
    for engine in engines:
        engine._stop_sync()
    # Closing woke every listener thread: let them finish their last callbacks.
    for engine in engines:
        listener: Optional[_events.Listener] = getattr(engine, "_listener", None)
        if listener is not None:
            listener.join(2.0)


_entitle._setup(
    tuple(Reason),
    (FeatureType.FLAG, FeatureType.LIMIT),
    UNLIMITED,
    {
        "base": EntitleError,
        "catalog": CatalogError,
        "format": FormatError,
        "delta": DeltaError,
        "file": FileError,
        "connect": ConnectError,
        "argument": ArgumentError,
        "closed": ClosedError,
    },
    _make_status,
)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=after_fork)
atexit.register(_stop_all)
