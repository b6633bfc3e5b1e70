"""Flask integration: an extension that gates route prefixes (or single views) by feature.

::

    from flask import Flask, g
    from entitle import Engine
    from entitle.flask import Entitle

    app = Flask(__name__)
    engine = Engine.connect("http://127.0.0.1:8787")
    entitle = Entitle(app, engine=engine,
                      features={"/admin/audit": "audit_log", "/support": "priority_support"})

    @app.get("/sso/config")
    @entitle.require("sso")
    def sso_config():
        return {"sso": True, "version": g.entitlement.version}

``Entitle(app, ...)`` waits up to ``wait_ready`` seconds (default 5) for the engine's data when it
is attached, and raises ``RuntimeError`` when none came, so the server does not start answering
"feature not found". A request to a gated prefix (or a ``require``-d view) without a customer gets
401 ``{"error": "unauthenticated"}``; one whose customer may not use the feature gets 403
``{"error": "feature_not_available", "feature": ..., "reason": ...}``; others go through with the
:class:`~entitle.Decision` in ``flask.g.entitlement``.

The customer comes from the ``X-Customer-Id`` header by default; pass ``customer=`` a function
returning the id (or None) from your own session or token.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional, TypeVar, cast

from flask import Flask, Response, g, jsonify, request

from . import DEFAULT_WAIT_READY_TIMEOUT, Engine
from ._web import UNAUTHENTICATED, Routes, refusal

__all__ = ["Entitle", "header_customer"]

F = TypeVar("F", bound=Callable[..., Any])


def header_customer() -> Optional[str]:
    """The ``X-Customer-Id`` header of the current request (None when absent or empty)."""
    return request.headers.get("X-Customer-Id") or None


class Entitle:
    """The Flask extension. Use ``Entitle(app, engine=...)`` or ``Entitle(engine=...)`` then
    ``init_app(app)``."""

    def __init__(self, app: Optional[Flask] = None, *, engine: Engine,
                 features: Optional[Mapping[str, str]] = None,
                 customer: Callable[[], Optional[str]] = header_customer,
                 wait_ready: Optional[float] = DEFAULT_WAIT_READY_TIMEOUT) -> None:
        self.engine = engine
        self.routes = Routes(features or {})
        self.customer_of = customer
        self.wait_ready = wait_ready
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Waits for the engine's data, then checks every request against ``features``."""
        if not self.engine.wait_ready(self.wait_ready):
            raise RuntimeError(
                f"entitle: no entitlement data after {self.wait_ready} s: "
                f"{self.engine.status.last_error}")
        app.extensions["entitle"] = self
        app.before_request(self._before_request)

    def _check(self, feature: str) -> Optional[Response]:
        customer = self.customer_of()
        if customer is None:
            response = jsonify(UNAUTHENTICATED)
            response.status_code = 401
            return response
        decision = self.engine.check(customer, feature)
        if not decision.enabled:
            response = jsonify(refusal(feature, decision))
            response.status_code = 403
            return response
        g.entitlement = decision
        return None

    def _before_request(self) -> Optional[Response]:
        feature = self.routes.feature_for(request.path)
        return None if feature is None else self._check(feature)

    def require(self, feature: str) -> Callable[[F], F]:
        """A view decorator: the view runs only for customers who may use ``feature``."""

        def decorate(view: F) -> F:
            @functools.wraps(view)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                refused = self._check(feature)
                return refused if refused is not None else view(*args, **kwargs)

            return cast(F, wrapped)

        return decorate
