"""The shared conformance suite (tests/conformance), read as its README says, through the public API.

Every valid file's catalog is handed to Engine.from_catalog as its exact text, and every case is
checked field by field through check(), enabled(), limit() and allows() at the case's time. Every
invalid file must raise CatalogError whose message starts with `expect_error` + ':'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import entitle
from entitle import UNLIMITED, CatalogError, Engine

from conftest import CONFORMANCE

MARKER = '\n  "catalog": '


def raw_catalog(text: str) -> str:
    """The exact text of the top-level `catalog` value (never a re-serialized parse)."""
    assert text.count(MARKER) == 1, "the catalog marker must occur exactly once"
    start = text.index(MARKER) + len(MARKER)
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end]


def load(path: Path) -> Tuple[Dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    return json.loads(text), raw_catalog(text)


VALID = sorted(CONFORMANCE.glob("*.json"))
INVALID = sorted((CONFORMANCE / "invalid").glob("*.json"))


def test_the_suite_is_there() -> None:
    # A runner that finds no files would pass vacuously.
    assert len(VALID) >= 17
    assert len(INVALID) >= 90


def test_raw_catalog_keeps_the_exact_text() -> None:
    text = '{\n  "description": "x",\n  "catalog": {"a": 1.0e3, "a": "\\u00f8"},\n  "cases": []\n}\n'
    assert raw_catalog(text) == '{"a": 1.0e3, "a": "\\u00f8"}'


def expected_limit(value: Any) -> Any:
    return UNLIMITED if value == "unlimited" else value


def run_case(engine: Engine, case: Dict[str, Any]) -> List[str]:
    """Checks one case; returns what differs (empty when it passes)."""
    customer, feature, at = case["customer"], case["feature"], case["at"]
    expected = case["expected"]
    problems: List[str] = []

    def compare(what: str, got: Any, want: Any) -> None:
        # `is` for None/bool/UNLIMITED so that 0 == False and 1 == True cannot hide a mistake.
        same = got is want if isinstance(want, bool) or want is None or want is UNLIMITED else (
            type(got) is int and got == want)
        if not same:
            problems.append(f"{what}: got {got!r}, expected {want!r}")

    decision = engine.check(customer, feature, at=at)
    feature_type = decision.feature_type
    if feature_type is None:
        compare("feature_type", feature_type, expected["feature_type"])
    elif feature_type.value != expected["feature_type"]:
        problems.append(f"feature_type: got {feature_type!r}, expected {expected['feature_type']!r}")
    compare("check().enabled", decision.enabled, expected["enabled"])
    compare("enabled()", engine.enabled(customer, feature, at=at), expected["enabled"])
    want_limit = expected_limit(expected["limit"])
    compare("check().limit", decision.limit, want_limit)
    # limit() must return a number: 0 where the suite says null (SEMANTICS 2.1).
    compare("limit()", engine.limit(customer, feature, at=at), 0 if want_limit is None else want_limit)
    if decision.reason != expected["reason"] or not isinstance(decision.reason, entitle.Reason):
        problems.append(f"reason: got {decision.reason!r}, expected {expected['reason']!r}")
    if "usage" in case:
        if "requested" in case:
            allowed = engine.allows(customer, feature, case["usage"], case["requested"], at=at)
        else:
            allowed = engine.allows(customer, feature, case["usage"], at=at)
        compare("allows()", allowed, expected["allowed"])
    else:
        assert "allowed" not in expected, "`allowed` without `usage`"
    return problems


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_file(path: Path) -> None:
    doc, raw = load(path)
    engine = Engine.from_catalog(raw)
    assert doc["cases"], "a valid file without cases tests nothing"
    names = [case["name"] for case in doc["cases"]]
    assert len(names) == len(set(names)), "case names must be unique"
    failures = []
    for case in doc["cases"]:
        problems = run_case(engine, case)
        if problems:
            failures.append(f"{case['name']}: " + "; ".join(problems))
    assert not failures, f"{path.name}:\n  " + "\n  ".join(failures)
    # The same text as bytes gives the same engine.
    again = Engine.from_catalog(raw.encode("utf-8"))
    for case in doc["cases"]:
        at = case["at"]
        assert again.check(case["customer"], case["feature"], at=at) == engine.check(
            case["customer"], case["feature"], at=at), case["name"]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_file(path: Path) -> None:
    doc, raw = load(path)
    with pytest.raises(CatalogError) as info:
        Engine.from_catalog(raw)
    message = str(info.value)
    assert message.startswith(doc["expect_error"] + ":"), (
        f"{path.name}: error {message!r} does not start with {doc['expect_error'] + ':'!r}")
    assert info.value.code == 8  # ENTITLE_RESULT_INVALID_CATALOG
