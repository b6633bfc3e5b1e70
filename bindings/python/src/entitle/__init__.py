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
import json
import math
import numbers
import os
import weakref
from typing import Any, Dict, Mapping, Optional, Union

from . import _entitle
from ._entitle import Decision, Feature, formats, library_version

__all__ = [
    "UNLIMITED",
    "ArgumentError",
    "CatalogError",
    "ClosedError",
    "ConnectError",
    "Decision",
    "DeltaError",
    "Engine",
    "EntitleError",
    "Feature",
    "FeatureType",
    "FileError",
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
    """A delta is unreadable, or was made for another base or feature list. Content is kept."""


class FileError(EntitleError, OSError):
    """A file could not be read. Also an ``OSError``."""


class ConnectError(EntitleError):
    """The edge configuration given to :meth:`Engine.connect` is invalid."""


class ArgumentError(EntitleError, ValueError):
    """An argument is out of its domain (a negative usage, bytes that are not UTF-8...)."""


class ClosedError(EntitleError, ValueError):
    """The engine was closed."""


# --------------------------------------------------------------------------------------------
# Engine

_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def _track(engine: Engine) -> Engine:
    _engines.add(engine)
    return engine


def _catalog_default(value: object) -> object:
    if value is UNLIMITED:
        return "unlimited"
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Engine(_entitle.Engine):
    """An in-process entitlement engine.

    Create one with :meth:`from_file`, :meth:`from_bytes`, :meth:`from_catalog` or
    :meth:`connect`. Lookups (:meth:`enabled`, :meth:`limit`, :meth:`allows`, :meth:`check`)
    take no lock and may be called from any number of threads; updates swap the content whole,
    so a lookup sees the old or the new data, never a mix.

    An engine is also a context manager that closes it on exit.
    """

    __slots__ = ()

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
            catalog = json.dumps(catalog, default=_catalog_default, allow_nan=False)
        return _track(cls._from_catalog_json(catalog))

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        token: Optional[str] = None,
        cache_dir: Union[str, "os.PathLike[str]", None] = None,
        poll_interval: Optional[float] = None,
        connect_timeout: Optional[float] = None,
        request_timeout: Optional[float] = None,
        max_staleness: Optional[float] = None,
        long_poll: Optional[float] = None,
        max_backoff: Optional[float] = None,
        persist_interval: Optional[float] = None,
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
                deltas (default 30).

        Raises:
            ConnectError: the URL or token is invalid, or the sync thread cannot start.
        """
        return _track(
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
            )
        )

    def replace_file(self, path: Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]) -> None:
        """Replaces the whole content with a snapshot or catalog file (told apart by content).

        Lookups meanwhile see the old or the new content, never a mix. On failure the content
        is kept and FileError, SnapshotError or CatalogError is raised.
        """
        super().replace_file(os.fspath(path))

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
        engine._after_fork()


def _stop_all() -> None:
    # At interpreter exit, stop the sync threads while the interpreter is still whole, rather
    # than during module teardown. Engines keep answering (from their last content) for the rest
    # of the shutdown, e.g. to other atexit handlers; their memory goes with the objects.
    for engine in list(_engines):
        engine._stop_sync()


_entitle._setup(
    tuple(Reason),
    (FeatureType.FLAG, FeatureType.LIMIT),
    UNLIMITED,
    {
        "base": EntitleError,
        "catalog": CatalogError,
        "snapshot": SnapshotError,
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
