"""entitle.openfeature with the real OpenFeature SDK: evaluations of each type, reasons, errors,
initialization, and provider events on change and staleness."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

from entitle import Engine
from entitle.openfeature import INTEGER_UNLIMITED, EntitleProvider

from conftest import Edge, catalog, wait_until


@pytest.fixture(autouse=True)
def clean_api() -> Iterator[None]:
    yield
    api.clear_providers()  # also forgets the event handlers
    api.clear_hooks()


def ctx(customer: str) -> EvaluationContext:
    return EvaluationContext(targeting_key=customer)


def test_evaluations_and_reasons() -> None:
    engine = Engine.from_catalog(catalog())
    api.set_provider_and_wait(EntitleProvider(engine))
    client = api.get_client()
    assert client.get_provider_status() == ProviderStatus.READY

    sso = client.get_boolean_details("sso", False, ctx("cus_pro"))
    assert (sso.value, sso.reason, sso.error_code) == (True, Reason.TARGETING_MATCH, None)
    assert sso.flag_metadata == {"reason": "subscription", "version": 0, "unlimited": False}
    override = client.get_integer_details("projects", 0, ctx("cus_override"))
    assert (override.value, override.reason) == (7, Reason.TARGETING_MATCH)
    default = client.get_integer_details("projects", 0, ctx("cus_nobody"))
    assert (default.value, default.reason) == (3, Reason.DEFAULT)
    assert default.flag_metadata["reason"] == "customer_not_found"
    no_sso = client.get_boolean_details("sso", True, ctx("cus_nobody"))
    assert (no_sso.value, no_sso.reason) == (False, Reason.DEFAULT)
    # A limit as a boolean: enabled when unlimited or above 0.
    assert client.get_boolean_value("projects", False, ctx("cus_pro")) is True
    assert client.get_float_value("projects", 0.0, ctx("cus_pro")) == 50.0

    # Unlimited: INT64_MAX as an integer (variant "unlimited"), inf as a float.
    unlimited = client.get_integer_details("projects", 0, ctx("cus_ent"))
    assert (unlimited.value, unlimited.variant) == (INTEGER_UNLIMITED, "unlimited")
    assert unlimited.flag_metadata["unlimited"] is True
    assert client.get_float_value("projects", 0.0, ctx("cus_ent")) == math.inf

    # Errors return the caller's default.
    missing = client.get_boolean_details("no_such_feature", True, ctx("cus_pro"))
    assert (missing.value, missing.reason, missing.error_code) == (
        True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    mismatch = client.get_integer_details("sso", 9, ctx("cus_pro"))
    assert (mismatch.value, mismatch.error_code) == (9, ErrorCode.TYPE_MISMATCH)
    text = client.get_string_details("sso", "x", ctx("cus_pro"))
    assert (text.value, text.error_code) == ("x", ErrorCode.TYPE_MISMATCH)
    no_key = client.get_boolean_details("sso", True, EvaluationContext())
    assert (no_key.value, no_key.error_code) == (True, ErrorCode.TARGETING_KEY_MISSING)
    engine.close()


def test_initialize_waits_and_events_follow_the_edge(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    edge.publish(catalog())
    edge.start()
    heard: Dict[ProviderEvent, List[EventDetails]] = {e: [] for e in ProviderEvent}
    lock = threading.Lock()

    def handler(event: ProviderEvent):  # type: ignore[no-untyped-def]
        def record(details: EventDetails) -> None:
            with lock:
                heard[event].append(details)
        return record

    for event in ProviderEvent:
        api.add_handler(event, handler(event))
    try:
        engine = Engine.connect(edge.url, poll_interval=0.05, max_backoff=0.1,
                                max_staleness=0.5)
        provider = EntitleProvider(engine, ready_timeout=20, close_engine=True)
        api.set_provider_and_wait(provider)  # initialize() waits for the engine's data
        client = api.get_client()
        assert client.get_provider_status() == ProviderStatus.READY
        assert client.get_integer_value("projects", 0, ctx("cus_pro")) == 50
        assert wait_until(lambda: len(heard[ProviderEvent.PROVIDER_READY]) >= 1, 10)

        edge.publish(catalog(projects_for_pro=60))
        assert wait_until(lambda: client.get_integer_value("projects", 0, ctx("cus_pro")) == 60)
        assert wait_until(
            lambda: any(d.metadata.get("new_version") == 2
                        for d in heard[ProviderEvent.PROVIDER_CONFIGURATION_CHANGED]), 10)

        edge.stop()
        assert wait_until(lambda: len(heard[ProviderEvent.PROVIDER_STALE]) >= 1, 20)
        assert wait_until(lambda: client.get_provider_status() == ProviderStatus.STALE, 10)
        # Stale data still answers.
        assert client.get_integer_value("projects", 0, ctx("cus_pro")) == 60
        api.shutdown()  # shuts the provider down (on a thread of the SDK's), closing the engine
        assert wait_until(lambda: engine.closed, 10)
    finally:
        edge.stop()


def test_initialize_fails_without_data_then_becomes_ready(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    edge.publish(catalog())
    # An edge that is not up yet: the provider starts in error, then gets ready by itself.
    edge.start()
    port = int(edge.url.rsplit(":", 1)[1])
    edge.stop()
    engine = Engine.connect(f"http://127.0.0.1:{port}", poll_interval=0.05, max_backoff=0.1)
    try:
        api.set_provider(EntitleProvider(engine, ready_timeout=0.3))
        client = api.get_client()
        assert wait_until(lambda: client.get_provider_status() == ProviderStatus.ERROR, 10)
        edge.start_on(port)
        assert wait_until(lambda: client.get_provider_status() == ProviderStatus.READY, 20)
        assert client.get_boolean_value("sso", False, ctx("cus_pro")) is True
    finally:
        edge.stop()
        engine.close()
