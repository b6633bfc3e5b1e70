"""ASGI middleware that checks a feature on every request (FastAPI, Starlette, any ASGI app).

Each route prefix names the feature it needs; the customer comes from the request (here a
header set by your authentication layer — use your own session or token lookup). A request
whose customer lacks the feature gets a 403 with the reason; others go through with the
decision in ``scope["state"]["entitlement"]`` (``request.state.entitlement`` in FastAPI).

The check is one call of about a hundred nanoseconds, made on the event loop: it never blocks.

    from entitle import Engine
    engine = Engine.connect("https://edge.example.com/entitle", cache_dir="/var/cache/entitle")
    app.add_middleware(EntitlementMiddleware, engine=engine,
                       features={"/reports": "advanced_reports", "/sso": "sso"})
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional

from entitle import Engine

Scope = Dict[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class EntitlementMiddleware:
    """Refuses requests whose customer may not use the feature their path needs."""

    def __init__(self, app: ASGIApp, engine: Engine, features: Mapping[str, str],
                 customer_header: str = "x-customer-id") -> None:
        self.app = app
        self.engine = engine
        # Longest prefix first, so "/reports/export" can need more than "/reports".
        self.features = sorted(features.items(), key=lambda item: len(item[0]), reverse=True)
        self.customer_header = customer_header.lower().encode("latin-1")

    def feature_for(self, path: str) -> Optional[str]:
        for prefix, feature in self.features:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return feature
        return None

    def customer_of(self, scope: Scope) -> Optional[str]:
        for name, value in scope.get("headers", ()):
            if name == self.customer_header:
                return str(value.decode("latin-1"))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        feature = self.feature_for(scope["path"])
        if feature is None:
            await self.app(scope, receive, send)
            return
        customer = self.customer_of(scope)
        if customer is None:
            await respond(send, 401, {"error": "unauthenticated"})
            return
        decision = self.engine.check(customer, feature)
        if not decision.enabled:
            await respond(send, 403, {"error": "feature_not_available", "feature": feature,
                                      "reason": decision.reason.value})
            return
        scope.setdefault("state", {})["entitlement"] = decision
        await self.app(scope, receive, send)


async def respond(send: Send, status: int, body: Dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
