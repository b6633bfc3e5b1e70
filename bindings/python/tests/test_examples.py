"""The examples, run verbatim as their docstrings say, as real servers on loopback: a local edge
(`entitle publish` + `entitle serve`) serves the repository's examples/catalog.json, each app
answers 401 / 403 with the reason / 200, and a change published to the edge reaches it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import httpx
import pytest

from entitle import Engine

from conftest import REPO, Edge, wait_until

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CATALOG = REPO / "examples" / "catalog.json"


@pytest.fixture
def example_edge(tmp_path: Path) -> Iterator[Edge]:
    e = Edge(tmp_path)
    e.publish(json.loads(CATALOG.read_text()))
    e.start()
    try:
        yield e
    finally:
        e.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: List[str], edge: Edge, port: int) -> subprocess.Popen:
    env = {**os.environ, "ENTITLE_EDGE": edge.url}
    process = subprocess.Popen(command, cwd=EXAMPLES, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)

    def up() -> bool:
        if process.poll() is not None:
            return True
        try:
            httpx.get(f"http://127.0.0.1:{port}/admin/audit", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    if not wait_until(up, 60, 0.1) or process.poll() is not None:
        out = process.communicate(timeout=10)[0] if process.poll() is not None else ""
        process.kill()
        pytest.fail(f"{command} did not start: {out}")
    return process


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        out = process.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        out = process.communicate(timeout=10)[0]
    return out or ""


def get(port: int, path: str, customer: Optional[str]) -> httpx.Response:
    headers: Dict[str, str] = {} if customer is None else {"X-Customer-Id": customer}
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)


def check_app(port: int, edge: Edge) -> None:
    assert get(port, "/admin/audit", None).status_code == 401
    refused = get(port, "/admin/audit", "cus_pro_bob")
    assert refused.status_code == 403
    reason = Engine.from_file(CATALOG).check("cus_pro_bob", "audit_log").reason.value
    assert refused.json() == {"error": "feature_not_available", "feature": "audit_log",
                              "reason": reason}
    ok = get(port, "/admin/audit", "cus_enterprise_dee")
    assert ok.status_code == 200
    assert ok.json()["entitlement"] == {"feature_type": "flag", "value": True, "enabled": True,
                                        "reason": "subscription", "version": 1}
    assert get(port, "/support", "cus_enterprise_dee").status_code == 200
    assert get(port, "/support", "cus_free_ada").status_code == 403
    # Publish a change: enterprise customers lose the audit log.
    data = json.loads(CATALOG.read_text())
    data["products"][2]["features"]["audit_log"] = False
    edge.publish(data)
    assert wait_until(lambda: get(port, "/admin/audit", "cus_enterprise_dee").status_code == 403,
                      30)


def test_fastapi_example(example_edge: Edge) -> None:
    port = free_port()
    p = start([sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port", str(port)],
              example_edge, port)
    try:
        url = f"http://127.0.0.1:{port}/projects"
        created = [httpx.post(url, headers={"x-customer-id": "cus_free_ada"}, timeout=10)
                   for _ in range(4)]
        assert [r.status_code for r in created] == [201, 201, 201, 402]
        assert created[3].json() == {"detail": "your plan allows 3 projects"}
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json()["entitlements"] == "ready"
        check_app(port, example_edge)
    finally:
        stop(p)


def test_django_example(example_edge: Edge) -> None:
    port = free_port()
    p = start([sys.executable, "django_app.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
              example_edge, port)
    try:
        check_app(port, example_edge)
    finally:
        stop(p)


def test_flask_example(example_edge: Edge) -> None:
    port = free_port()
    p = start([sys.executable, "-m", "flask", "--app", "flask_app", "run", "--port", str(port)],
              example_edge, port)
    try:
        assert get(port, "/sso", "cus_pro_bob").status_code == 200
        assert get(port, "/sso", "cus_free_ada").json()["feature"] == "sso"
        check_app(port, example_edge)
    finally:
        stop(p)


def test_examples_refuse_to_start_without_an_edge() -> None:
    port = free_port()
    env = {**os.environ, "ENTITLE_EDGE": f"http://127.0.0.1:{free_port()}"}
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "uvicorn", "fastapi_app:app", "--port",
                          str(port)], cwd=EXAMPLES, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "no entitlement data from" in out.stdout + out.stderr
    assert time.monotonic() - started < 50
