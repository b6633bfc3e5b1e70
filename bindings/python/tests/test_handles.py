"""Feature handles (Engine.feature) and the batch calls, through the shared conformance suite and
the API: every case again through a Feature resolved on the engine, one resolved before a swap (on
an engine without the feature), one resolved on the same features in reverse order, and the batch
calls Feature.check_many / enabled_many and Engine.check_features; then the reverse swap (a
feature renamed away answers FEATURE_NOT_FOUND) and misuse."""

from __future__ import annotations

import gc
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

import entitle
from entitle import UNLIMITED, ArgumentError, ClosedError, Decision, Engine, Feature, Reason

from conftest import AT, CONFORMANCE, catalog
from test_conformance import expected_limit, load

VALID = sorted(CONFORMANCE.glob("*.json"))


def decision_problems(how: str, d: Decision, case: Dict[str, Any]) -> List[str]:
    expected = case["expected"]
    problems = []
    ftype = None if d.feature_type is None else d.feature_type.value
    if ftype != expected["feature_type"]:
        problems.append(f"{how}: feature_type {ftype!r}")
    if d.enabled is not expected["enabled"]:
        problems.append(f"{how}: enabled {d.enabled!r}")
    want = expected_limit(expected["limit"])
    if not (d.limit is want if want is None or want is UNLIMITED else d.limit == want):
        problems.append(f"{how}: limit {d.limit!r}")
    if d.reason.value != expected["reason"]:
        problems.append(f"{how}: reason {d.reason.value!r}")
    return problems


def handle_problems(how: str, f: Feature, case: Dict[str, Any]) -> List[str]:
    customer, at, expected = case["customer"], case["at"], case["expected"]
    problems = decision_problems(how, f.check(customer, at=at), case)
    if f.enabled(customer, at=at) is not expected["enabled"]:
        problems.append(f"{how}: enabled()")
    want = expected_limit(expected["limit"])
    got = f.limit(customer, at=at)
    if not (got is want if want is UNLIMITED else got == (0 if want is None else want)):
        problems.append(f"{how}: limit() {got!r}")
    if "usage" in case:
        allowed = f.allows(customer, case["usage"], case.get("requested", 1), at=at)
        if allowed is not expected["allowed"]:
            problems.append(f"{how}: allows() {allowed!r}")
    return problems


def reversed_features(raw: str) -> str:
    doc = json.loads(raw)
    return json.dumps({"features": list(reversed(doc.get("features") or []))})


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_conformance_through_handles_and_batches(path: Path, tmp_path: Path) -> None:
    doc, raw = load(path)
    cases = doc["cases"]
    keys = sorted({case["feature"] for case in cases})
    real = tmp_path / "catalog.json"
    real.write_text(raw, encoding="utf-8")
    none = tmp_path / "none.json"
    none.write_text('{"features": []}', encoding="utf-8")

    engine = Engine.from_catalog(raw)
    direct = {k: engine.feature(k) for k in keys}
    # Resolved before a swap: on content without the features, then on reordered features.
    swapped = Engine.from_catalog('{"features": []}')
    before_swap = {k: swapped.feature(k) for k in keys}
    swapped.replace_file(str(real))
    reordered = Engine.from_catalog(reversed_features(raw))
    from_reordered = {k: reordered.feature(k) for k in keys}
    reordered.replace_file(str(real))

    problems: List[str] = []
    for case in cases:
        key = case["feature"]
        for how, f in [
            ("handle", direct[key]),
            ("handle resolved before a swap that added the feature", before_swap[key]),
            ("handle resolved before a swap that reordered the features", from_reordered[key]),
        ]:
            problems += [f"{case['name']}: {p}" for p in handle_problems(how, f, case)]

    # Batches: every case with the same feature and time in one check_many / enabled_many, and
    # every case with the same customer and time in one check_features.
    by_feature: Dict[Tuple[str, int], List[int]] = defaultdict(list)
    by_customer: Dict[Tuple[str, int], List[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        by_feature[(case["feature"], case["at"])].append(i)
        by_customer[(case["customer"], case["at"])].append(i)
    for (key, at), idx in by_feature.items():
        customers = [cases[i]["customer"] for i in idx]
        decisions = before_swap[key].check_many(customers, at=at)
        flags = direct[key].enabled_many(tuple(customers), at=at)
        assert len(decisions) == len(flags) == len(idx)
        for i, d, flag in zip(idx, decisions, flags):
            problems += [f"{cases[i]['name']}: {p}" for p in decision_problems("check_many", d, cases[i])]
            if flag is not cases[i]["expected"]["enabled"]:
                problems.append(f"{cases[i]['name']}: enabled_many {flag!r}")
    for (customer, at), idx in by_customer.items():
        features = [from_reordered[cases[i]["feature"]] for i in idx]
        decisions = reordered.check_features(customer, features, at=at)
        assert len(decisions) == len(idx)
        for i, d in zip(idx, decisions):
            problems += [
                f"{cases[i]['name']}: {p}" for p in decision_problems("check_features", d, cases[i])
            ]

    # The reverse swap: features removed answer FEATURE_NOT_FOUND, never another feature's value.
    engine.replace_file(str(none))
    for case in cases:
        d = direct[case["feature"]].check(case["customer"], at=case["at"])
        if d.reason is not Reason.FEATURE_NOT_FOUND or d.value is not None:
            problems.append(f"{case['name']}: after the feature was removed: {d!r}")
    assert not problems, "\n".join(problems)


def test_feature_api(tmp_path: Path) -> None:
    engine = Engine.from_catalog(catalog())
    sso, projects = engine.feature("sso"), engine.feature(b"projects")
    assert isinstance(sso, Feature) and isinstance(sso, entitle.Feature)
    assert sso.key == "sso" and projects.key == b"projects" and sso.engine is engine
    assert repr(sso) == "<entitle.Feature 'sso'>"
    assert sso.enabled("cus_pro", at=AT) is engine.enabled("cus_pro", "sso", at=AT)
    assert projects.limit("cus_pro", at=AT) == engine.limit("cus_pro", "projects", at=AT)
    assert projects.limit("nobody") == 3
    assert projects.allows("nobody", 2) is True
    assert projects.allows("nobody", 2, 2) is False
    assert projects.allows(customer="nobody", usage=2, requested=1, at=AT) is True
    assert projects.check("nobody").reason is Reason.CUSTOMER_NOT_FOUND
    later = engine.feature("not_yet")
    assert later.check("cus_pro").reason is Reason.FEATURE_NOT_FOUND
    assert later.enabled("cus_pro") is False and later.limit("cus_pro") == 0

    # Batches accept any sequence (and iterables), return lists in order.
    ids = ["cus_pro", "nobody", b"cus_pro"]
    assert projects.enabled_many(ids) == [True, True, True]
    decisions = projects.check_many(iter(ids), at=AT)
    assert [d.reason for d in decisions][1] is Reason.CUSTOMER_NOT_FOUND
    assert decisions[0] == engine.check("cus_pro", "projects", at=AT) == decisions[2]
    assert projects.check_many([]) == []
    many = engine.check_features("cus_pro", [sso, projects, later], at=AT)
    assert many == [engine.check("cus_pro", k, at=AT) for k in ("sso", "projects", "not_yet")]
    assert engine.check_features("cus_pro", ()) == []

    # Misuse.
    with pytest.raises(TypeError):
        projects.check_many("cus_pro")
    with pytest.raises(TypeError):
        projects.check_many([1])
    with pytest.raises(TypeError):
        engine.check_features("cus_pro", ["sso"])
    with pytest.raises(TypeError):
        engine.feature(3)
    with pytest.raises(ArgumentError):
        projects.check(b"\xff")
    with pytest.raises(ArgumentError):
        engine.check_features(b"\xff", [sso])
    with pytest.raises(TypeError):
        sso.enabled()
    with pytest.raises(TypeError):
        Feature()

    # A feature outlives nothing: after close() its lookups raise ClosedError.
    engine.close()
    with pytest.raises(ClosedError):
        sso.enabled("cus_pro")
    with pytest.raises(ClosedError):
        sso.enabled_many(["cus_pro"])
    with pytest.raises(ClosedError):
        engine.feature("sso")


def test_feature_in_a_cycle_is_collected() -> None:
    class Holder(Engine):
        pass

    engine = Holder.from_catalog(catalog())
    engine.sso = engine.feature("sso")  # type: ignore[attr-defined]
    import weakref

    ref = weakref.ref(engine)
    del engine
    gc.collect()
    assert ref() is None


def test_batch_conversion_runs_no_code_under_the_lease() -> None:
    # Converting a customer may run Python code (a generator here); that code closes the engine:
    # the batch must then fail cleanly with ClosedError, never read freed memory.
    engine = Engine.from_catalog(catalog())
    sso = engine.feature("sso")

    def customers() -> Any:
        yield "cus_pro"
        engine.close()
        yield "nobody"

    with pytest.raises(ClosedError):
        sso.check_many(customers())


def test_the_readme_example_runs() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Feature handles and batches", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
