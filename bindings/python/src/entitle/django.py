"""Django integration: a middleware that gates route prefixes by feature.

In settings.py::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "entitle.django.EntitlementMiddleware",
    ]
    ENTITLE = {
        "EDGE_URL": "http://127.0.0.1:8787",          # or "FILE": a snapshot or catalog file
        "CACHE_DIR": "/var/cache/entitle",             # optional
        "FEATURES": {"/admin/audit": "audit_log", "/support": "priority_support"},
        "CUSTOMER": "myapp.entitlements.customer_of",  # optional: request -> customer id or None
        "WAIT_READY": 10,                              # seconds to wait for data at start-up
    }

The engine is made when Django loads its middleware (at start-up, not at import), shared by
every request of the process, and kept syncing after a pre-fork server forks (gunicorn; uWSGI with
``py-call-osafterfork = true``). Start-up fails when no data came within ``WAIT_READY`` seconds.

A request to a gated prefix without a customer gets 401 ``{"error": "unauthenticated"}``; one whose
customer may not use the feature gets 403 ``{"error": "feature_not_available", "feature": ...,
"reason": ...}``; others go through with the :class:`~entitle.Decision` in
``request.entitlement``. :func:`get_engine` gives views the same engine for their own checks.

The default ``CUSTOMER`` reads ``request.user.customer_id`` for a signed-in user (None for an
anonymous one); point it at your own function to find the customer elsewhere (an organisation's
Stripe customer, a header set by a gateway...).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string

from . import DEFAULT_WAIT_READY_TIMEOUT, Engine
from ._web import UNAUTHENTICATED, Routes, refusal

__all__ = ["EntitlementMiddleware", "default_customer", "get_engine"]

_lock = threading.Lock()
_engine: Optional[Engine] = None


def _config() -> Dict[str, Any]:
    config = getattr(settings, "ENTITLE", None)
    if not isinstance(config, dict):
        raise ImproperlyConfigured("entitle: set ENTITLE = {...} in the Django settings")
    return config


def get_engine() -> Engine:
    """The process's engine, made from ``settings.ENTITLE`` on first use: ``EDGE_URL`` (with
    ``CACHE_DIR`` and ``TOKEN``) syncs from an edge, ``FILE`` serves a snapshot or catalog
    file. The first call waits up to ``WAIT_READY`` seconds (default 5) for an edge's data and
    raises ``ImproperlyConfigured`` when none came."""
    global _engine
    with _lock:
        if _engine is None or _engine.closed:
            config = _config()
            if "EDGE_URL" in config:
                engine = Engine.connect(config["EDGE_URL"], token=config.get("TOKEN"),
                                        cache_dir=config.get("CACHE_DIR"))
                timeout = config.get("WAIT_READY", DEFAULT_WAIT_READY_TIMEOUT)
                if not engine.wait_ready(timeout):
                    error = engine.status.last_error
                    engine.close()
                    raise ImproperlyConfigured(
                        f"entitle: no entitlement data from {config['EDGE_URL']} after "
                        f"{timeout} s: {error}")
            elif "FILE" in config:
                engine = Engine.from_file(config["FILE"])
            else:
                raise ImproperlyConfigured("entitle: ENTITLE needs EDGE_URL or FILE")
            _engine = engine
        return _engine


def default_customer(request: HttpRequest) -> Optional[str]:
    """``request.user.customer_id`` for a signed-in user; None for anonymous requests."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    customer = getattr(user, "customer_id", None)
    return str(customer) if customer else None


class EntitlementMiddleware:
    """Refuses requests whose customer may not use the feature their path needs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        config = _config()
        self.routes = Routes(config.get("FEATURES", {}))
        customer = config.get("CUSTOMER", default_customer)
        self.customer_of: Callable[[HttpRequest], Optional[str]] = (
            import_string(customer) if isinstance(customer, str) else customer)
        self.engine = get_engine()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        feature = self.routes.feature_for(request.path)
        if feature is not None:
            customer = self.customer_of(request)
            if customer is None:
                return JsonResponse(UNAUTHENTICATED, status=401)
            decision = self.engine.check(customer, feature)
            if not decision.enabled:
                return JsonResponse(refusal(feature, decision), status=403)
            request.entitlement = decision
        return self.get_response(request)
