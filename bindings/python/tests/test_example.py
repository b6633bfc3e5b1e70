"""The ASGI middleware example (examples/entitlement_middleware.py), driven without a framework."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from entitle import Engine, Reason

from conftest import catalog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from entitlement_middleware import EntitlementMiddleware  # noqa: E402


async def app(scope: Dict[str, Any], receive: Any, send: Any) -> None:
    decision = scope.get("state", {}).get("entitlement")
    body = json.dumps({"ok": True, "limit": None if decision is None else str(decision.value)})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body.encode()})


def request(middleware: EntitlementMiddleware, path: str,
            customer: Optional[str]) -> Tuple[int, Dict[str, Any]]:
    sent: List[Dict[str, Any]] = []

    async def receive() -> Dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    headers = [] if customer is None else [(b"x-customer-id", customer.encode())]
    scope = {"type": "http", "path": path, "headers": headers}
    asyncio.run(middleware(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_middleware_gates_routes_by_feature() -> None:
    engine = Engine.from_catalog(catalog())
    mw = EntitlementMiddleware(app, engine=engine,
                               features={"/sso": "sso", "/projects": "projects"})
    assert request(mw, "/sso/login", "cus_pro") == (200, {"ok": True, "limit": "True"})
    assert request(mw, "/projects", "cus_ent") == (200, {"ok": True, "limit": "UNLIMITED"})
    assert request(mw, "/sso", "cus_free") == (
        403, {"error": "feature_not_available", "feature": "sso",
              "reason": Reason.CUSTOMER_NOT_FOUND.value})
    assert request(mw, "/sso", None) == (401, {"error": "unauthenticated"})
    assert request(mw, "/ssomething", "cus_free") == (200, {"ok": True, "limit": None})
    assert request(mw, "/public", None) == (200, {"ok": True, "limit": None})
