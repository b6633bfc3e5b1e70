"""A Django project in one file, gated by entitle.django.EntitlementMiddleware.

Try it against a local edge serving the repository's examples/catalog.json (see fastapi_app.py for
`entitle publish` and `entitle serve --addr 127.0.0.1:8787`)::

    pip install django entitle
    python django_app.py runserver 127.0.0.1:8000

    curl -i localhost:8000/admin/audit                                        # 401
    curl -i -H 'x-customer-id: cus_pro_bob' localhost:8000/admin/audit        # 403, with the reason
    curl -i -H 'x-customer-id: cus_enterprise_dee' localhost:8000/admin/audit # 200

In a project of your own, the ENTITLE setting below goes into settings.py, the middleware after
AuthenticationMiddleware, and CUSTOMER names a function of yours (a dotted path) that finds the
signed-in user's customer id; the default reads request.user.customer_id and answers None (401)
for anonymous users.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path


def customer_of(request: HttpRequest) -> Optional[str]:
    """Here a header; in your application, your session or token lookup."""
    return request.headers.get("X-Customer-Id") or None


settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    SECRET_KEY="an example, not a secret",
    MIDDLEWARE=["entitle.django.EntitlementMiddleware"],
    ENTITLE={
        "EDGE_URL": os.environ.get("ENTITLE_EDGE", "http://127.0.0.1:8787"),
        "FEATURES": {"/admin/audit": "audit_log", "/support": "priority_support"},
        "CUSTOMER": customer_of,
        "WAIT_READY": 10,
    },
)


def audit_log(request: HttpRequest) -> JsonResponse:
    decision = request.entitlement
    return JsonResponse({"audit_log": [], "entitlement": decision.to_dict()})


def support(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"support": "priority"})


urlpatterns = [path("admin/audit", audit_log), path("support", support)]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
