"""The web integrations under real servers on loopback: entitle.asgi under uvicorn (FastAPI and
Starlette), entitle.django under Django's WSGI handler served by wsgiref, entitle.flask under
Werkzeug's server. Each: 401 without a customer, 403 with the reason, 200 when entitled, and a
change published to a local edge (`entitle publish` + `entitle serve`) reaching the running
server."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
from typing import Any, Callable, Dict, Iterator, Optional

import httpx
import pytest
from fastapi import FastAPI, Request  # module level: FastAPI resolves the annotations here

from entitle import Engine

from conftest import Edge, catalog, wait_until

HEADERS = {"x-customer-id": "cus_pro"}


class Served:
    """A server running in a thread on 127.0.0.1 (a free port), stopped by `stop()`."""

    def __init__(self, url: str, stop: Callable[[], None]) -> None:
        self.url = url
        self.stop = stop
        self.client = httpx.Client(base_url=url, timeout=10)

    def get(self, path: str, customer: Optional[str] = None) -> httpx.Response:
        headers = {} if customer is None else {"x-customer-id": customer}
        return self.client.get(path, headers=headers)


def serve_asgi(app: Any) -> Served:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started or not thread.is_alive(), 30), "uvicorn did not start"
    assert server.started, "uvicorn failed to start (lifespan?)"

    def stop() -> None:
        server.should_exit = True
        thread.join(30)
        sock.close()

    return Served(f"http://127.0.0.1:{sock.getsockname()[1]}", stop)


def serve_wsgi(app: Any) -> Served:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(30)
        server.server_close()

    return Served(f"http://127.0.0.1:{server.server_port}", stop)


def check_gating(served: Served, edge: Edge) -> None:
    """What every integration must do, with /sso gated by the "sso" flag."""
    unauthenticated = served.get("/sso/settings")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json() == {"error": "unauthenticated"}
    refused = served.get("/sso/settings", "cus_nobody")
    assert refused.status_code == 403
    assert refused.json() == {"error": "feature_not_available", "feature": "sso",
                              "reason": "customer_not_found"}
    ok = served.get("/sso/settings", "cus_pro")
    assert ok.status_code == 200
    assert ok.json() == {"sso": True, "version": 1}
    assert served.get("/ssomething", None).status_code == 200  # not under the prefix
    assert served.get("/public", None).json() == {"public": True}
    # A change published to the edge reaches the running server: the pro plan loses SSO.
    data = catalog()
    data["products"][0]["features"]["sso"] = False
    edge.publish(data)
    assert wait_until(lambda: served.get("/sso/settings", "cus_pro").status_code == 403, 30)
    reason = Engine.from_catalog(data).check("cus_pro", "sso").reason.value
    body = served.get("/sso/settings", "cus_pro").json()
    assert body == {"error": "feature_not_available", "feature": "sso", "reason": reason}


def test_fastapi_under_uvicorn(edge: Edge) -> None:
    from entitle.asgi import EntitlementMiddleware, lifespan

    engine = Engine.connect(edge.url, poll_interval=0.1)
    app = FastAPI(lifespan=lifespan(engine, timeout=20))
    app.add_middleware(EntitlementMiddleware, engine=engine, features={"/sso": "sso"})

    @app.get("/sso/settings")
    def sso_settings(request: Request) -> Dict[str, Any]:
        decision = request.state.entitlement
        return {"sso": decision.value, "version": decision.version}

    @app.get("/public")
    def public() -> Dict[str, Any]:
        return {"public": True}

    @app.get("/ssomething")
    def other() -> Dict[str, Any]:
        return {"other": True}

    served = serve_asgi(app)
    try:
        check_gating(served, edge)
    finally:
        served.stop()
    assert engine.closed  # the lifespan closes it at shutdown


def test_starlette_lifespan_refuses_to_start_without_data(refusing_edge_url: str) -> None:
    from starlette.applications import Starlette

    from entitle.asgi import lifespan

    engine = Engine.connect(refusing_edge_url, poll_interval=0.05, max_backoff=0.1)
    app = Starlette(lifespan=lifespan(engine, timeout=0.5))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(RuntimeError, match="no entitlement data after 0.5 s"):
        asyncio.run(start())
    engine.close()


@pytest.fixture
def refusing_edge_url() -> Iterator[str]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
    finally:
        s.close()


def test_starlette_with_a_customer_function(edge: Edge) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from entitle.asgi import EntitlementMiddleware, lifespan

    def customer_of(scope: Dict[str, Any]) -> Optional[str]:
        for key, value in scope["headers"]:
            if key == b"x-customer-id":
                return str(value.decode())
        return None

    async def sso_settings(request: Request) -> JSONResponse:
        d = request.state.entitlement
        return JSONResponse({"sso": d.value, "version": d.version})

    async def public(request: Request) -> JSONResponse:
        return JSONResponse({"public": True})

    engine = Engine.connect(edge.url, poll_interval=0.1)
    app = Starlette(routes=[Route("/sso/settings", sso_settings), Route("/public", public),
                            Route("/ssomething", public)],
                    lifespan=lifespan(engine, timeout=20))
    app.add_middleware(EntitlementMiddleware, engine=engine, features={"/sso/": "sso"},
                       customer=customer_of)
    served = serve_asgi(app)
    try:
        check_gating(served, edge)
    finally:
        served.stop()


def test_django(edge: Edge) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        pytest.skip("Django was configured by another test in this process")
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__ + "_django_urls",
        SECRET_KEY="test",
        MIDDLEWARE=["entitle.django.EntitlementMiddleware"],
        INSTALLED_APPS=[],
        ENTITLE={"EDGE_URL": edge.url, "FEATURES": {"/sso": "sso"},
                 "CUSTOMER": lambda request: request.headers.get("X-Customer-Id"),
                 "WAIT_READY": 20},
    )
    from django.http import HttpRequest, JsonResponse
    from django.urls import path

    def sso_settings(request: HttpRequest) -> JsonResponse:
        d = request.entitlement  # type: ignore[attr-defined]
        return JsonResponse({"sso": d.value, "version": d.version})

    def public(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"public": True})

    urls = type(sys)(__name__ + "_django_urls")
    urls.urlpatterns = [path("sso/settings", sso_settings), path("public", public),  # type: ignore[attr-defined]
                        path("ssomething", public)]
    sys.modules[urls.__name__] = urls
    django.setup()
    from django.core.wsgi import get_wsgi_application

    import entitle.django

    served = serve_wsgi(get_wsgi_application())
    try:
        # The middleware is made on the first request: it waits for the edge's data then.
        check_gating(served, edge)
        # The default customer getter: anonymous requests have none.
        request = HttpRequest()
        assert entitle.django.default_customer(request) is None
    finally:
        served.stop()
        entitle.django.get_engine().close()


def test_flask(edge: Edge) -> None:
    from flask import Flask, g

    from entitle.flask import Entitle

    app = Flask(__name__)
    engine = Engine.connect(edge.url, poll_interval=0.1)
    ext = Entitle(app, engine=engine, features={"/sso": "sso"}, wait_ready=20)

    @app.get("/sso/settings")
    def sso_settings() -> Dict[str, Any]:
        return {"sso": g.entitlement.value, "version": g.entitlement.version}

    @app.get("/public")
    def public() -> Dict[str, Any]:
        return {"public": True}

    @app.get("/ssomething")
    def other() -> Dict[str, Any]:
        return {"other": True}

    @app.get("/projects/new")
    @ext.require("projects")
    def new_project() -> Dict[str, Any]:
        return {"limit": str(g.entitlement.value)}

    served = serve_wsgi(app)
    try:
        assert served.get("/projects/new", "cus_ent").json() == {"limit": "UNLIMITED"}
        assert served.get("/projects/new").status_code == 401
        check_gating(served, edge)
    finally:
        served.stop()
        engine.close()


def test_flask_refuses_to_start_without_data(refusing_edge_url: str) -> None:
    from flask import Flask

    from entitle.flask import Entitle

    engine = Engine.connect(refusing_edge_url, poll_interval=0.05, max_backoff=0.1)
    with pytest.raises(RuntimeError, match="no entitlement data"):
        Entitle(Flask(__name__), engine=engine, wait_ready=0.3)
    engine.close()
