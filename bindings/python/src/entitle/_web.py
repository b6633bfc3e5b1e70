"""What the web integrations (entitle.asgi, entitle.django, entitle.flask) share: which feature a
path needs, and the JSON bodies of their refusals."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import Decision


class Routes:
    """Route prefixes and the feature each needs; the longest matching prefix wins.

    A prefix matches itself and what lies below it: ``"/reports"`` gates ``/reports`` and
    ``/reports/2024``, not ``/reportsx``. A trailing slash makes no difference.
    """

    def __init__(self, features: Mapping[str, str]) -> None:
        pairs: List[Tuple[str, str]] = []
        for prefix, feature in features.items():
            if not prefix.startswith("/"):
                raise ValueError(f"route prefix {prefix!r} must start with '/'")
            pairs.append((prefix.rstrip("/") or "/", feature))
        # Longest prefix first, so "/reports/export" can need more than "/reports".
        self._pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)

    def feature_for(self, path: str) -> Optional[str]:
        """The feature ``path`` needs, or None when no prefix covers it."""
        for prefix, feature in self._pairs:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return feature
        return None


UNAUTHENTICATED: Dict[str, Any] = {"error": "unauthenticated"}
"""The body of a 401: a gated route was requested without a customer."""


def refusal(feature: str, decision: Decision) -> Dict[str, Any]:
    """The body of a 403: the customer may not use ``feature``, and why."""
    return {"error": "feature_not_available", "feature": feature,
            "reason": decision.reason.value}
