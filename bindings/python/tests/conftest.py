"""Shared fixtures: the repository, the `entitle` command, catalogs, and a local edge server."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
CONFORMANCE = REPO / "tests" / "conformance"


def _target_dir() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target if target.is_absolute() else REPO / target


ENTITLE_BIN = Path(os.environ.get("ENTITLE_BIN", _target_dir() / "release" / "entitle"))

# A fixed evaluation time, before every cancel_at and expires_at in CATALOG.
AT = 1_700_000_000


def catalog(projects_for_pro: int = 50) -> Dict[str, Any]:
    """A small catalog; `projects_for_pro` lets tests publish a changed version."""
    return {
        "features": [
            {"key": "sso", "type": "flag", "default": False},
            {"key": "projects", "type": "limit", "default": 3},
            {"key": "seats", "type": "limit", "default": 1, "per_unit": True},
            {"key": "api_calls", "type": "limit", "default": 1000},
        ],
        "products": [
            {"id": "prod_pro", "features": {"sso": True, "projects": projects_for_pro, "seats": 1,
                                            "api_calls": 100_000}},
            {"id": "prod_enterprise", "features": {"sso": True, "projects": "unlimited",
                                                   "api_calls": "unlimited"}},
        ],
        "customers": [
            {"id": "cus_pro", "subscriptions": [
                {"id": "sub_1", "status": "active",
                 "items": [{"product": "prod_pro", "quantity": 5}]}]},
            {"id": "cus_ent", "subscriptions": [
                {"id": "sub_2", "status": "active", "items": [{"product": "prod_enterprise"}]}]},
            {"id": "cus_cancelling", "subscriptions": [
                {"id": "sub_3", "status": "active", "cancel_at": AT + 3600,
                 "items": [{"product": "prod_pro"}]}]},
            {"id": "cus_override", "overrides": {"projects": 7, "sso": True}},
        ],
    }


def run_cli(*args: str) -> subprocess.CompletedProcess:
    if not ENTITLE_BIN.is_file():
        pytest.fail(f"{ENTITLE_BIN} not found: build it with `cargo build --release`")
    return subprocess.run([str(ENTITLE_BIN), *args], check=True, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog()))
    return path


@pytest.fixture
def snapshots(tmp_path: Path) -> Dict[str, Path]:
    """v1.snap and v2.snap (pro plan: 50 then 60 projects) and the delta between them."""
    out: Dict[str, Path] = {}
    for version, projects in ((1, 50), (2, 60)):
        src = tmp_path / f"v{version}.json"
        src.write_text(json.dumps(catalog(projects)))
        out[f"v{version}"] = tmp_path / f"v{version}.snap"
        run_cli("build", str(src), "-o", str(out[f"v{version}"]), "--version", str(version))
    out["delta"] = tmp_path / "v1-v2.delta"
    run_cli("diff", str(out["v1"]), str(out["v2"]), "-o", str(out["delta"]))
    return out


class Edge:
    """An edge directory served by `entitle serve` on 127.0.0.1 (a free port)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "edge"
        self.work = root
        self.process: Optional[subprocess.Popen] = None
        self.url = ""
        self.published = 0

    def publish(self, data: Dict[str, Any]) -> None:
        self.published += 1
        path = self.work / f"publish-{self.published}.json"
        path.write_text(json.dumps(data))
        run_cli("publish", str(path), "--edge", str(self.dir))

    def start_on(self, port: int) -> None:
        """Starts serving again on a port it served on before (to test recovery)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start(port)
                return
            except pytest.fail.Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def start(self, port: int = 0) -> None:
        if not ENTITLE_BIN.is_file():
            pytest.fail(f"{ENTITLE_BIN} not found: build it with `cargo build --release`")
        self.process = subprocess.Popen(
            [str(ENTITLE_BIN), "serve", str(self.dir), "--addr", f"127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline() if ready else ""
        found = re.search(r"https?://[0-9.]+:[0-9]+", line)
        if found is None:
            self.stop()
            pytest.fail(f"`entitle serve` did not name its address; first line: {line!r}")
        self.url = found.group(0)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
            self.process = None


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    """An edge at version 1 of `catalog()`, served until the test ends."""
    e = Edge(tmp_path)
    e.publish(catalog())
    e.start()
    try:
        yield e
    finally:
        e.stop()


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Polls `predicate` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def run_python(code: str, timeout: float, env: Optional[Dict[str, str]] = None,
               args: List[str] = ()) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (the one running the tests)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
