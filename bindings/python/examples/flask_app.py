"""A Flask app gated by entitle.flask: route prefixes, and one view that needs a feature.

Try it against a local edge serving the repository's examples/catalog.json (see fastapi_app.py for
`entitle publish` and `entitle serve --addr 127.0.0.1:8787`)::

    pip install flask entitle
    flask --app flask_app run --port 8000

    curl -i localhost:8000/admin/audit                                        # 401
    curl -i -H 'X-Customer-Id: cus_pro_bob' localhost:8000/admin/audit        # 403, with the reason
    curl -i -H 'X-Customer-Id: cus_enterprise_dee' localhost:8000/admin/audit # 200
    curl -i -H 'X-Customer-Id: cus_pro_bob' localhost:8000/sso                # 200
"""

from __future__ import annotations

import os
from typing import Any, Dict

from flask import Flask, g

from entitle import Engine
from entitle.flask import Entitle

app = Flask(__name__)
engine = Engine.connect(os.environ.get("ENTITLE_EDGE", "http://127.0.0.1:8787"))
# Waits up to 10 s for the entitlements, then gates /admin/audit and /support.
entitle = Entitle(app, engine=engine, wait_ready=10,
                  features={"/admin/audit": "audit_log", "/support": "priority_support"})


@app.get("/admin/audit")
def audit_log() -> Dict[str, Any]:
    return {"audit_log": [], "entitlement": g.entitlement.to_dict()}


@app.get("/support")
def support() -> Dict[str, str]:
    return {"support": "priority"}


@app.get("/sso")
@entitle.require("sso")
def sso() -> Dict[str, Any]:
    return {"sso": "configure your identity provider here"}
