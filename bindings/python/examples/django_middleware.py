"""Django middleware that checks a feature per request.

Add it after the authentication middleware in settings.MIDDLEWARE:

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "myapp.entitlements.EntitlementMiddleware"]
    ENTITLE_FEATURES = {"/reports/": "advanced_reports", "/sso/": "sso"}

One engine per process, made at import. Under gunicorn (pre-fork) or uWSGI workers it keeps
syncing after the fork by itself; with uWSGI, enable `py-call-osafterfork = true` (or call
entitle.after_fork() from a uwsgidecorators.postfork function) so Python's fork hooks run.
"""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse

from entitle import Engine

engine = Engine.connect(settings.ENTITLE_EDGE_URL, cache_dir=settings.ENTITLE_CACHE_DIR)


class EntitlementMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.features = sorted(settings.ENTITLE_FEATURES.items(), key=lambda kv: -len(kv[0]))

    def __call__(self, request):
        feature = next((f for prefix, f in self.features if request.path.startswith(prefix)), None)
        if feature is not None:
            # Your customer id: here the Stripe customer of the signed-in user's organisation.
            customer = request.user.organisation.stripe_customer_id
            decision = engine.check(customer, feature)
            if not decision.enabled:
                return JsonResponse({"error": "feature_not_available", "feature": feature,
                                     "reason": decision.reason.value}, status=403)
            request.entitlement = decision
        return self.get_response(request)
