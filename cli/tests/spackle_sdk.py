"""Spackle's own Python SDK against `entitle serve`: every customer and feature of a catalog must
answer like `entitle check` on the served snapshot, every customer's `subscriptions` (wrapped by the
SDK in `stripe.Subscription`) must be the catalog's subscriptions that are not canceled, an unknown
customer must raise, and the time of one `Customer.retrieve` is measured.

Usage: spackle_sdk.py API_BASE TOKEN CATALOG SNAPSHOT ENTITLE_BIN [ROUNDS]
"""

import json
import math
import statistics
import subprocess
import sys
import time

import spackle
import stripe
from spackle import Customer, SpackleException


def check(entitle: str, snapshot: str, customer: str, feature: str) -> dict:
    out = subprocess.run(
        [entitle, "check", snapshot, customer, feature],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def subscriptions_mismatch(customer: Customer, expected: list) -> str:
    """What differs between the SDK's subscriptions and the catalog's (empty when they agree)."""
    got = customer.subscriptions
    want = [s for s in expected if s["status"] != "canceled"]
    if len(got) != len(want):
        return f"{len(got)} subscriptions, the catalog has {len(want)} not canceled"
    for sub, cat in zip(got, want):
        if not isinstance(sub, stripe.Subscription):
            return f"{type(sub).__name__} is not a stripe.Subscription"
        fields = (sub.id, sub.status, sub.cancel_at, sub.customer)
        if fields != (cat["id"], cat["status"], cat.get("cancel_at"), customer.id):
            return f"{fields} != the catalog's {cat}"
        items = [(i["price"]["product"], i["quantity"]) for i in sub["items"]["data"]]
        want_items = [(i["product"], i.get("quantity", 1)) for i in cat["items"]]
        if items != want_items:
            return f"{sub.id}: items {items} != the catalog's {want_items}"
    return ""


def main() -> int:
    api_base, token, catalog_path, snapshot, entitle = sys.argv[1:6]
    rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 200
    spackle.api_base = api_base
    spackle.api_key = token
    with open(catalog_path) as f:
        catalog = json.load(f)
    features = [(f["key"], f["type"]) for f in catalog["features"]]
    customers = [c["id"] for c in catalog["customers"]]
    subscriptions = {c["id"]: c.get("subscriptions", []) for c in catalog["customers"]}

    compared = 0
    listed = 0
    for customer_id in customers:
        customer = Customer.retrieve(customer_id)
        mismatch = subscriptions_mismatch(customer, subscriptions[customer_id])
        if mismatch:
            print(f"MISMATCH {customer_id} subscriptions: {mismatch}")
            return 1
        listed += len(customer.subscriptions)
        for key, kind in features:
            expected = check(entitle, snapshot, customer_id, key)
            if kind == "flag":
                got = customer.enabled(key)
                want = expected["enabled"]
            else:
                got = customer.limit(key)
                want = math.inf if expected["limit"] == "unlimited" else expected["limit"]
            if got != want:
                print(f"MISMATCH {customer_id} {key}: sdk {got!r}, entitle check {want!r}")
                return 1
            compared += 1

    try:
        Customer.retrieve("cus_not_in_the_catalog")
    except SpackleException as e:
        if "not found" not in str(e):
            print(f"unexpected error text: {e}")
            return 1
    else:
        print("an unknown customer did not raise")
        return 1

    spackle.api_key = token + "-wrong"
    try:
        Customer.retrieve(customers[0])
    except SpackleException:
        pass
    else:
        print("a wrong token was accepted")
        return 1
    spackle.api_key = token

    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        Customer.retrieve(customers[i % len(customers)]).enabled(features[0][0])
        samples.append(time.perf_counter() - start)
    samples.sort()
    p50 = statistics.median(samples) * 1e3
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3
    print(
        f"spackle-python: {compared} answers ({len(customers)} customers x {len(features)} features) "
        f"agree with entitle check; {listed} subscriptions agree with the catalog; "
        f"unknown customer and wrong token raise; "
        f"Customer.retrieve over HTTP: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({rounds} calls)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
