"""A FastAPI app gated by entitle: middleware for whole route prefixes, a dependency for limits.

    pip install fastapi uvicorn ./bindings/python
    ENTITLE_EDGE=http://127.0.0.1:8787 uvicorn fastapi_app:app --workers 4

With several workers each process gets its own engine (the sync thread is also restarted in
workers forked by gunicorn's pre-fork model, so the engine may as well be made at import).
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI, Header, HTTPException

from entitle import Engine
from entitlement_middleware import EntitlementMiddleware

engine = Engine.connect(
    os.environ.get("ENTITLE_EDGE", "http://127.0.0.1:8787"),
    cache_dir=os.environ.get("ENTITLE_CACHE", "/tmp/entitle-cache"),
)
# Serve nothing until the entitlements are known (or the cache had them): a process that
# answers "feature not found" for everyone is worse than one that starts a few seconds later.
if not engine.wait_ready(timeout=10):
    raise SystemExit(f"no entitlement data: {engine.status.last_error}")

app = FastAPI()
app.add_middleware(EntitlementMiddleware, engine=engine,
                   features={"/reports": "advanced_reports", "/admin/audit": "audit_log"})


def projects_of(customer: str) -> int:
    """Your own count of the customer's projects (from your database)."""
    return 0


def customer_id(x_customer_id: str = Header()) -> str:
    return x_customer_id


@app.post("/projects")
def create_project(customer: str = Depends(customer_id)) -> dict:
    if not engine.allows(customer, "projects", usage=projects_of(customer)):
        limit = engine.limit(customer, "projects")
        raise HTTPException(402, f"your plan allows {limit} projects")
    return {"created": True}


@app.get("/reports/summary")
def summary() -> dict:
    return {"report": "..."}  # only reached when the middleware allowed it


@app.get("/healthz")
def health() -> dict:
    status = engine.status
    return {"entitlements": status.state.value, "version": status.version,
            "data_age_seconds": status.data_age}
