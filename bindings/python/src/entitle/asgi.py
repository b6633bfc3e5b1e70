"""ASGI integration (Starlette, FastAPI, any ASGI 3 framework): a middleware that gates route
prefixes by feature, and a lifespan that waits for the engine at start-up.

::

    import asyncio
    from fastapi import FastAPI
    from entitle import Engine
    from entitle.asgi import EntitlementMiddleware, lifespan

    engine = Engine.connect("http://127.0.0.1:8787")     # returns at once
    app = FastAPI(lifespan=lifespan(engine, timeout=10))  # waits off the event loop at start-up
    app.add_middleware(EntitlementMiddleware, engine=engine,
                       features={"/admin/audit": "audit_log", "/support": "priority_support"})

A request to a gated prefix without a customer gets 401 ``{"error": "unauthenticated"}``; one whose
customer may not use the feature gets 403 ``{"error": "feature_not_available", "feature": ...,
"reason": ...}``; others go through with the :class:`~entitle.Decision` in
``scope["state"]["entitlement"]`` (``request.state.entitlement`` in Starlette and FastAPI). The
check is one in-memory lookup on the event loop; it never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Mapping, Optional, Union

from . import DEFAULT_WAIT_READY_TIMEOUT, Engine
from ._web import UNAUTHENTICATED, Routes, refusal

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
CustomerOf = Callable[[Scope], Optional[str]]

__all__ = ["EntitlementMiddleware", "customer_header", "lifespan", "wait_ready"]


def customer_header(name: str = "x-customer-id") -> CustomerOf:
    """A customer getter reading a request header (set by your authentication layer, or by a
    gateway in front of the application). Replace it with your own session or token lookup."""
    wanted = name.lower().encode("latin-1")

    def customer_of(scope: Scope) -> Optional[str]:
        for key, value in scope.get("headers", ()):
            if key == wanted:
                return str(value.decode("latin-1")) or None
        return None

    return customer_of


class EntitlementMiddleware:
    """Refuses requests whose customer may not use the feature their path needs.

    Args:
        app: the ASGI application to wrap.
        engine: the engine to ask.
        features: route prefix -> feature key, e.g. ``{"/admin/audit": "audit_log"}``.
        customer: how to find the request's customer id: a header name (default
            ``"x-customer-id"``) or a function of the ASGI scope returning the id or None.
    """

    def __init__(self, app: ASGIApp, engine: Engine, features: Mapping[str, str],
                 customer: Union[str, CustomerOf] = "x-customer-id") -> None:
        self.app = app
        self.engine = engine
        self.routes = Routes(features)
        self.customer_of = customer_header(customer) if isinstance(customer, str) else customer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        feature = self.routes.feature_for(scope["path"])
        if feature is None:
            await self.app(scope, receive, send)
            return
        customer = self.customer_of(scope)
        if customer is None:
            await _respond(send, 401, UNAUTHENTICATED)
            return
        decision = self.engine.check(customer, feature)
        if not decision.enabled:
            await _respond(send, 403, refusal(feature, decision))
            return
        scope.setdefault("state", {})["entitlement"] = decision
        await self.app(scope, receive, send)


async def wait_ready(engine: Engine, timeout: Optional[float] = DEFAULT_WAIT_READY_TIMEOUT) -> bool:
    """:meth:`Engine.wait_ready` for async code: waits on a worker thread
    (``asyncio.to_thread``), so the event loop keeps serving meanwhile."""
    return await asyncio.to_thread(engine.wait_ready, timeout)


def lifespan(engine: Engine, *, timeout: Optional[float] = DEFAULT_WAIT_READY_TIMEOUT,
             required: bool = True,
             close: bool = True) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)``.

    At start-up it waits (off the event loop) up to ``timeout`` seconds for the engine's
    content; when none came and ``required`` is true, start-up fails with the engine's last
    error, so the server does not take traffic it would answer with "feature not found". At
    shutdown it closes the engine when ``close`` is true.
    """

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        if not await wait_ready(engine, timeout) and required:
            raise RuntimeError(
                f"entitle: no entitlement data after {timeout} s: {engine.status.last_error}")
        try:
            yield
        finally:
            if close:
                await asyncio.to_thread(engine.close)

    return run


async def _respond(send: Send, status: int, body: Mapping[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
