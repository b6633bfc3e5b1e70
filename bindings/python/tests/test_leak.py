"""No leaks across the boundary: 10 million calls in a fresh interpreter, comparing its resident
memory after a warm-up with the end, and the reference counts of the objects the extension hands
out (a leaked reference to a shared object never shows in RSS)."""

from __future__ import annotations

import json
import textwrap

from conftest import catalog, run_python

CALLS = 10_000_000

PROGRAM = textwrap.dedent("""
    import json, os, sys
    import entitle
    from entitle import UNLIMITED, ArgumentError, Reason, FeatureType

    data = json.loads(sys.argv[1])
    calls = int(sys.argv[2])
    engine = entitle.Engine.from_catalog(data)
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    # Found and unknown customers, ASCII and not, str and bytes.
    customers = ["cus_pro", "cus_ent", "nobody", "cus_override", "nøbody", b"cus_pro"]
    # api_calls for cus_pro is 100000: limit() then allocates a fresh int every time.
    CALLS_PER_ROUND = 14

    def rounds(n):
        enabled, limit, allows, check = engine.enabled, engine.limit, engine.allows, engine.check
        for i in range(n):
            c = customers[i % 6]
            enabled(c, "sso")
            enabled(c, "nope")
            limit(c, "api_calls")
            limit(c, "projects")
            allows(c, "projects", 5)
            allows(c, "api_calls", 10**30, 2)
            check(c, "projects")
            check(c, "nope").reason
            d = check(c, "api_calls")
            d.value, d.limit, d.feature_type, d.version, d.enabled
            enabled(c, "sso", at=1700000000)
            limit(c, "seats", at=1700000000)
            allows(c, "seats", 1, requested=2, at=1700000000)
            check(c, "sso", at=1700000000.5).value
            if i % 64 == 0:  # the slower paths, less often
                engine.entitlements(c)
                try:
                    check(b"\\xff", "sso")
                except ArgumentError:
                    pass

    def refcounts():
        shared = [UNLIMITED, True, False, None, *Reason, *FeatureType]
        return [sys.getrefcount(o) for o in shared]

    warmup = 100_000 // CALLS_PER_ROUND
    rounds(warmup)
    before, counts = rss(), refcounts()
    rounds(calls // CALLS_PER_ROUND - warmup)
    after, counts_after = rss(), refcounts()
    print(json.dumps({"before": before, "after": after, "counts": counts,
                      "counts_after": counts_after}))
""")


def test_ten_million_calls_do_not_grow_memory() -> None:
    result = run_python(PROGRAM, timeout=600, args=[json.dumps(catalog()), str(CALLS)])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    growth = report["after"] - report["before"]
    # A leak of one small object per check would be hundreds of megabytes; allow allocator noise.
    assert growth < 2 * 1024 * 1024, f"RSS grew by {growth} bytes over {CALLS} calls"
    # A reference leaked per call would add millions; the interpreter itself moves a few.
    drift = [a - b for a, b in zip(report["counts_after"], report["counts"])]
    assert max(drift) < 100, f"references to shared objects leaked: {drift}"


def test_the_leak_check_detects_a_leak() -> None:
    # The same measurement on a program that keeps one Decision per call must see it grow.
    leaky = PROGRAM.replace("check(c, \"nope\").reason", "kept.append(check(c, \"nope\"))")
    leaky = leaky.replace("def rounds(n):", "kept = []\n\ndef rounds(n):")
    result = run_python(leaky, timeout=600, args=[json.dumps(catalog()), "1000000"])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["after"] - report["before"] > 2 * 1024 * 1024


ENGINES_PROGRAM = textwrap.dedent("""
    import json, os, sys
    import entitle

    text = sys.argv[1]
    page = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    def cycle(n):
        for i in range(n):
            engine = entitle.Engine.from_catalog(text)
            engine.entitlements("cus_pro")
            if i % 2:
                engine.close()  # the other half are freed by garbage collection
            try:
                entitle.Engine.from_catalog('{"features": 5}')
            except entitle.CatalogError:
                pass

    cycle(500)
    before = rss()
    cycle(5000)
    print(json.dumps({"before": before, "after": rss()}))
""")


def test_creating_and_freeing_engines_does_not_grow_memory() -> None:
    result = run_python(ENGINES_PROGRAM, timeout=600, args=[json.dumps(catalog())])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    growth = report["after"] - report["before"]
    assert growth < 2 * 1024 * 1024, f"RSS grew by {growth} bytes over 5000 engines"
