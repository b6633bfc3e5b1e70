"""A FastAPI app gated by entitle: a middleware for route prefixes, a limit check in a route, and a
health check, with the engine made at import (it returns at once) and waited for in the lifespan.

Try it against a local edge serving the repository's examples/catalog.json (from the repository's
root, with the `entitle` CLI built: `cargo build --release -p entitle-cli`)::

    target/release/entitle publish examples/catalog.json --edge /tmp/entitle-edge
    target/release/entitle serve /tmp/entitle-edge --addr 127.0.0.1:8787 &
    pip install fastapi uvicorn entitle
    cd bindings/python/examples && uvicorn fastapi_app:app --port 8000

    curl -i localhost:8000/admin/audit                                        # 401
    curl -i -H 'x-customer-id: cus_pro_bob' localhost:8000/admin/audit        # 403, with the reason
    curl -i -H 'x-customer-id: cus_enterprise_dee' localhost:8000/admin/audit # 200
    curl -i -X POST -H 'x-customer-id: cus_free_ada' localhost:8000/projects  # 201 (3 allowed)

ENTITLE_EDGE names another edge (default http://127.0.0.1:8787); ENTITLE_CACHE a cache directory.
"""

from __future__ import annotations

import asyncio
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, Optional

from fastapi import FastAPI, Header, HTTPException, Request

from entitle import Engine
from entitle.asgi import EntitlementMiddleware

EDGE = os.environ.get("ENTITLE_EDGE", "http://127.0.0.1:8787")
engine = Engine.connect(EDGE, cache_dir=os.environ.get("ENTITLE_CACHE"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Serve nothing until the entitlements are known (or a cache had them): a process that answers
    # "feature not found" for everyone is worse than one that starts a few seconds later. The wait
    # runs on a worker thread, off the event loop.
    if not await asyncio.to_thread(engine.wait_ready, 10):
        raise RuntimeError(f"no entitlement data from {EDGE}: {engine.status.last_error}")
    yield
    engine.close()


app = FastAPI(lifespan=lifespan)
app.add_middleware(EntitlementMiddleware, engine=engine,
                   features={"/admin/audit": "audit_log", "/support": "priority_support"})

# Your own count of each customer's projects (a database in a real application).
projects: Dict[str, int] = {}


@app.post("/projects", status_code=201)
def create_project(x_customer_id: Optional[str] = Header(default=None)) -> Dict[str, Any]:
    if x_customer_id is None:
        raise HTTPException(401, "unauthenticated")
    used = projects.get(x_customer_id, 0)
    if not engine.allows(x_customer_id, "projects", usage=used):
        limit = engine.limit(x_customer_id, "projects")
        raise HTTPException(402, f"your plan allows {limit} projects")
    projects[x_customer_id] = used + 1
    return {"created": True, "projects": used + 1}


@app.get("/admin/audit")
def audit_log(request: Request) -> Dict[str, Any]:
    # Only reached when the middleware allowed it; its decision is in request.state.
    return {"audit_log": [], "entitlement": request.state.entitlement.to_dict()}


@app.get("/support")
def support() -> Dict[str, str]:
    return {"support": "priority"}


@app.get("/healthz")
def health() -> Dict[str, Any]:
    status = engine.status
    return {"entitlements": status.state.value, "version": status.version,
            "data_age_seconds": status.data_age}
