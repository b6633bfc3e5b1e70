"""The public API: constructors, lookups, UNLIMITED, Decision, entitlements, updates, lifecycle."""

from __future__ import annotations

import copy
import datetime
import json
import math
import pickle
import sys
from pathlib import Path
from typing import Dict

import pytest

import entitle
from entitle import (UNLIMITED, ArgumentError, ClosedError, Decision, Engine, FeatureType, Reason,
                     SyncState, Unlimited)

from conftest import AT, catalog


@pytest.fixture
def engine() -> Engine:
    return Engine.from_catalog(catalog())


# --- constructors ---------------------------------------------------------------------------


def test_from_catalog_accepts_a_dict_json_text_and_bytes() -> None:
    text = json.dumps(catalog())
    for source in (catalog(), text, text.encode(), bytearray(text.encode()),
                   memoryview(text.encode())):
        engine = Engine.from_catalog(source)
        assert engine.limit("cus_pro", "projects") == 50
        assert isinstance(engine, Engine)


def test_from_catalog_dict_may_use_unlimited() -> None:
    data = catalog()
    data["features"][1]["default"] = UNLIMITED
    engine = Engine.from_catalog(data)
    assert engine.limit("nobody", "projects") is UNLIMITED


def test_from_file_reads_catalogs_and_snapshots(catalog_file: Path,
                                                snapshots: Dict[str, Path]) -> None:
    assert Engine.from_file(catalog_file).limit("cus_pro", "projects") == 50
    assert Engine.from_file(str(catalog_file)).version == 0
    snap = Engine.from_file(snapshots["v1"])
    assert snap.version == 1
    assert snap.limit("cus_pro", "projects") == 50
    assert Engine.from_file(bytes(snapshots["v2"])).version == 2


def test_from_bytes_reads_a_snapshot(snapshots: Dict[str, Path]) -> None:
    data = snapshots["v2"].read_bytes()
    engine = Engine.from_bytes(data)
    assert (engine.version, engine.limit("cus_pro", "projects")) == (2, 60)
    assert Engine.from_bytes(bytearray(data)).version == 2
    assert Engine.from_bytes(memoryview(data)).version == 2


def test_engines_are_made_by_the_constructors_only() -> None:
    with pytest.raises(TypeError, match="from_file"):
        Engine()
    with pytest.raises(TypeError):
        Decision()


def test_subclasses_get_their_own_type(catalog_file: Path) -> None:
    class MyEngine(Engine):
        __slots__ = ()

    assert type(MyEngine.from_catalog(catalog())) is MyEngine
    assert type(MyEngine.from_file(catalog_file)) is MyEngine


# --- lookups --------------------------------------------------------------------------------


def test_enabled(engine: Engine) -> None:
    assert engine.enabled("cus_pro", "sso") is True
    assert engine.enabled("cus_free", "sso") is False  # unknown customer: default
    assert engine.enabled("cus_pro", "no_such_feature") is False
    assert engine.enabled("cus_ent", "projects") is True  # unlimited
    assert engine.enabled(b"cus_pro", b"sso") is True  # bytes work too


def test_limit(engine: Engine) -> None:
    assert engine.limit("cus_pro", "projects") == 50
    assert engine.limit("cus_pro", "seats") == 5  # per unit x quantity 5
    assert engine.limit("cus_override", "projects") == 7
    assert engine.limit("cus_free", "projects") == 3
    assert engine.limit("cus_ent", "projects") is UNLIMITED
    # An API that must return a number returns 0 for flags and unknown features (SEMANTICS 2.1).
    assert engine.limit("cus_pro", "sso") == 0
    assert engine.limit("cus_pro", "nope") == 0
    assert type(engine.limit("cus_pro", "api_calls")) is int


def test_allows(engine: Engine) -> None:
    assert engine.allows("cus_pro", "projects", 49) is True
    assert engine.allows("cus_pro", "projects", 50) is False
    assert engine.allows("cus_pro", "projects", 48, 2) is True
    assert engine.allows("cus_pro", "projects", 48, 3) is False
    assert engine.allows("cus_pro", "projects", usage=50, requested=0) is True
    assert engine.allows("cus_pro", "projects", requested=1, usage=49) is True
    assert engine.allows("cus_ent", "projects", 10**30) is True  # unlimited allows anything
    assert engine.allows("cus_pro", "projects", 10**30) is False  # above u64: never fits
    assert engine.allows("cus_pro", "projects", 2**63 - 1, 2**63) is False  # overflowing sum
    assert engine.allows("cus_pro", "sso", 10**6) is True  # a flag allows when enabled
    assert engine.allows("cus_free", "sso", 0) is False
    assert engine.allows("cus_pro", "nope", 0) is False


def test_counts_accept_int_like_objects(engine: Engine) -> None:
    class Count:
        def __index__(self) -> int:
            return 49

    assert engine.allows("cus_pro", "projects", Count()) is True
    assert engine.allows("cus_pro", "projects", True) is True  # bool is an int


def test_at_selects_the_evaluation_time(engine: Engine) -> None:
    before, after = AT, AT + 3600  # cus_cancelling's subscription ends at AT + 3600
    assert engine.enabled("cus_cancelling", "sso", at=before) is True
    assert engine.enabled("cus_cancelling", "sso", at=after) is False
    assert engine.limit("cus_cancelling", "projects", at=before) == 50
    assert engine.limit("cus_cancelling", "projects", at=after) == 3
    assert engine.allows("cus_cancelling", "projects", 10, at=after) is False
    assert engine.check("cus_cancelling", "projects", at=after).reason is Reason.DEFAULT
    assert engine.entitlements("cus_cancelling", at=after)["sso"].enabled is False
    # datetimes and floats (floored) work too; None means now.
    when = datetime.datetime.fromtimestamp(after, tz=datetime.timezone.utc)
    assert engine.enabled("cus_cancelling", "sso", at=when) is False
    assert engine.enabled("cus_cancelling", "sso", at=after - 0.5) is True
    assert engine.enabled("cus_cancelling", "sso", at=None) is engine.enabled("cus_cancelling", "sso")


def test_keys_are_exact_utf8_bytes() -> None:
    data = {"features": [{"key": "ø-feature", "type": "flag", "default": True}],
            "customers": [{"id": "cüs_😀", "overrides": {"ø-feature": False}}]}
    engine = Engine.from_catalog(data)
    assert engine.enabled("cüs_😀", "ø-feature") is False
    assert engine.enabled("cüs_😀".encode(), "ø-feature".encode()) is False
    assert engine.check("CÜS_😀", "ø-feature").reason is Reason.CUSTOMER_NOT_FOUND
    assert engine.enabled("", "ø-feature") is True  # empty id: not found, not an error


# --- UNLIMITED ------------------------------------------------------------------------------


def test_unlimited_compares_above_every_number(engine: Engine) -> None:
    limit = engine.limit("cus_ent", "projects")
    for usage in (0, 1, 50, 2**63 - 1, 2**64, 10**100):
        assert usage < limit
        assert usage <= limit
        assert limit > usage
        assert limit >= usage
        assert not usage > limit
        assert limit != usage
    assert 1e308 < limit and limit == math.inf and not limit < math.inf
    assert limit == UNLIMITED and limit is UNLIMITED and limit >= UNLIMITED
    assert max(5, limit) is UNLIMITED and min(5, limit) == 5
    assert sorted([UNLIMITED, 3, 1]) == [1, 3, UNLIMITED]
    assert float(limit) == math.inf
    assert hash(limit) == hash(math.inf)
    assert bool(limit)
    assert not limit < math.nan and not limit > math.nan and limit != math.nan
    # The usual check reads right for finite and unlimited limits alike.
    pro = engine.limit("cus_pro", "projects")
    assert (49 < pro, 50 < pro) == (True, False)


def test_unlimited_is_not_a_number_in_disguise() -> None:
    with pytest.raises(OverflowError):
        int(UNLIMITED)
    with pytest.raises(TypeError):
        UNLIMITED - 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        UNLIMITED < "a"  # type: ignore[operator]
    with pytest.raises(TypeError):
        json.dumps(UNLIMITED)
    assert UNLIMITED != "unlimited"
    assert repr(UNLIMITED) == "UNLIMITED"


def test_unlimited_is_a_singleton() -> None:
    assert Unlimited() is UNLIMITED
    assert copy.copy(UNLIMITED) is UNLIMITED and copy.deepcopy(UNLIMITED) is UNLIMITED
    assert pickle.loads(pickle.dumps(UNLIMITED)) is UNLIMITED


# --- Decision -------------------------------------------------------------------------------


def test_check_returns_the_whole_decision(engine: Engine) -> None:
    d = engine.check("cus_pro", "seats")
    assert (d.feature_type, d.value, d.limit, d.enabled, d.unlimited, d.reason, d.version) == (
        FeatureType.LIMIT, 5, 5, True, False, Reason.SUBSCRIPTION, 0)
    d = engine.check("cus_ent", "projects")
    assert d.value is UNLIMITED and d.limit is UNLIMITED and d.unlimited is True
    d = engine.check("cus_pro", "sso")
    assert (d.feature_type, d.value, d.limit, d.enabled) == (FeatureType.FLAG, True, None, True)
    assert d.value is True
    d = engine.check("cus_override", "projects")
    assert (d.value, d.reason) == (7, Reason.OVERRIDE)
    d = engine.check("cus_free", "projects")
    assert (d.value, d.reason) == (3, Reason.CUSTOMER_NOT_FOUND)
    d = engine.check("cus_pro", "nope")
    assert (d.feature_type, d.value, d.limit, d.enabled, d.reason) == (
        None, None, None, False, Reason.FEATURE_NOT_FOUND)


def test_reason_and_feature_type_are_strings_too(engine: Engine) -> None:
    d = engine.check("cus_override", "projects")
    assert d.reason == "override" and str(d.reason) == "override"
    assert d.feature_type == "limit" and str(d.feature_type) == "limit"
    assert [r.value for r in Reason] == ["default", "subscription", "override",
                                         "customer_not_found", "feature_not_found"]
    assert json.dumps({"reason": d.reason}) == '{"reason": "override"}'


def test_decisions_are_values(engine: Engine) -> None:
    a, b = engine.check("cus_pro", "seats"), engine.check("cus_pro", "seats")
    assert a == b and hash(a) == hash(b) and a is not b
    assert a != engine.check("cus_pro", "projects")
    assert a != (5, "subscription")
    assert len({a, b, engine.check("cus_ent", "projects")}) == 2
    with pytest.raises(AttributeError):
        a.value = 6  # type: ignore[misc]
    assert repr(a) == ("Decision(feature_type=<FeatureType.LIMIT: 'limit'>, value=5, enabled=True, "
                       "reason=<Reason.SUBSCRIPTION: 'subscription'>, version=0)")
    assert type(a).__module__ == "entitle" and type(a) is Decision


def test_decisions_pickle(engine: Engine) -> None:
    for customer, feature in (("cus_pro", "seats"), ("cus_ent", "projects"), ("cus_pro", "sso"),
                              ("x", "nope")):
        d = engine.check(customer, feature)
        assert pickle.loads(pickle.dumps(d)) == d
    with pytest.raises(ValueError, match="inconsistent"):
        entitle._entitle._decision(5, 0, 1, 1, True, False)  # a flag of 5


def test_entitlements(engine: Engine) -> None:
    ents = engine.entitlements("cus_pro")
    assert list(ents) == ["sso", "projects", "seats", "api_calls"]  # the catalog's order
    assert ents["projects"] == engine.check("cus_pro", "projects")
    assert ents["sso"].value is True
    unknown = engine.entitlements("nobody")
    assert {d.reason for d in unknown.values()} == {Reason.CUSTOMER_NOT_FOUND}
    assert unknown["projects"].value == 3


def test_entitlements_of_an_empty_catalog() -> None:
    assert Engine.from_catalog({"features": []}).entitlements("x") == {}


# --- argument checking ----------------------------------------------------------------------


def test_argument_errors(engine: Engine) -> None:
    with pytest.raises(TypeError, match="customer must be str or bytes, not int"):
        engine.enabled(1, "sso")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="feature must be str or bytes, not NoneType"):
        engine.limit("cus_pro", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        engine.enabled("cus_pro")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="at most 2 positional"):
        engine.check("cus_pro", "sso", 5)  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'when'"):
        engine.enabled("cus_pro", "sso", when=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        engine.allows("cus_pro", "projects", 1, usage=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="missing required argument 'usage'"):
        engine.allows("cus_pro", "projects")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="usage must be an int, not float"):
        engine.allows("cus_pro", "projects", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="usage must be >= 0"):
        engine.allows("cus_pro", "projects", -1)
    with pytest.raises(ValueError, match="requested must be >= 0"):
        engine.allows("cus_pro", "projects", 1, -(10**30))
    with pytest.raises(TypeError, match="at must be unix seconds"):
        engine.enabled("cus_pro", "sso", at="tomorrow")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        engine.enabled("cus_pro", "sso", at=2**63)
    with pytest.raises(UnicodeEncodeError):
        engine.enabled("\udc80", "sso")  # a lone surrogate has no UTF-8
    with pytest.raises(ArgumentError, match="not valid UTF-8"):
        engine.check(b"\xff", "sso")
    assert engine.enabled(b"\xff", "sso") is False  # never matches


# --- updates --------------------------------------------------------------------------------


def test_replace_and_apply_delta(snapshots: Dict[str, Path]) -> None:
    engine = Engine.from_file(snapshots["v1"])
    assert engine.apply_delta(snapshots["delta"].read_bytes()) == 2
    assert (engine.version, engine.limit("cus_pro", "projects")) == (2, 60)
    engine.replace(snapshots["v1"].read_bytes())
    assert (engine.version, engine.limit("cus_pro", "projects")) == (1, 50)
    engine.replace(bytearray(snapshots["v2"].read_bytes()))
    assert engine.version == 2
    engine.replace_file(str(snapshots["v1"]))
    assert engine.check("cus_pro", "projects").version == 1
    engine.replace_file(snapshots["v2"])  # a PathLike
    assert engine.version == 2


# --- lifecycle ------------------------------------------------------------------------------


def test_close_is_idempotent_and_later_calls_raise(engine: Engine) -> None:
    assert not engine.closed
    engine.close()
    engine.close()
    assert engine.closed
    assert repr(engine) == "<Engine closed>"
    for call in (lambda: engine.enabled("cus_pro", "sso"), lambda: engine.limit("c", "f"),
                 lambda: engine.allows("c", "f", 1), lambda: engine.check("c", "f"),
                 lambda: engine.entitlements("c"), lambda: engine.version,
                 lambda: engine.status, lambda: engine.wait_ready(0),
                 lambda: engine.replace(b""), lambda: engine.apply_delta(b"")):
        with pytest.raises(ClosedError, match="closed"):
            call()


def test_context_manager_closes() -> None:
    with Engine.from_catalog(catalog()) as engine:
        assert engine.enabled("cus_pro", "sso")
    assert engine.closed


def test_static_engines_are_ready(engine: Engine) -> None:
    assert engine.wait_ready(0) is True
    assert engine.wait_ready() is True
    status = engine.status
    assert status.state is SyncState.READY and status.has_data and not status.syncing
    assert (status.syncs, status.failures, status.last_error) == (0, 0, None)
    assert not engine.connected
    assert repr(engine) == "<Engine static version=0>"


def test_engine_memory_is_released_with_the_object() -> None:
    import gc
    import weakref

    engine = Engine.from_catalog(catalog())
    ref = weakref.ref(engine)
    del engine
    gc.collect()
    assert ref() is None


def test_module_facts() -> None:
    assert entitle.library_version() == entitle.__version__
    snapshot_format, delta_format = entitle.formats()
    assert snapshot_format >= 1 and delta_format >= 1
    assert sys.modules["entitle._entitle"].Engine in Engine.__mro__
