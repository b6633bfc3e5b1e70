"""Interpreter exit with live engines: no crash, no hang, no traceback, exit status kept.

Each scenario runs in a fresh interpreter that leaves without closing anything: engines syncing
(polling, long-polling, retrying an unreachable edge), engines from catalogs, engines kept alive by
reference cycles, and daemon threads still doing lookups while the interpreter shuts down."""

from __future__ import annotations

import textwrap

import pytest

from conftest import Edge, catalog, run_python

EXIT_BOUND = 60  # seconds: a hang fails the test instead of stalling the suite

PRELUDE = textwrap.dedent("""
    import json, sys, threading, entitle
    url, catalog = sys.argv[1], json.loads(sys.argv[2])
    polling = entitle.Engine.connect(url, poll_interval=0.05)
    assert polling.wait_ready(20), polling.status
    long_polling = entitle.Engine.connect(url, long_poll=20)
    assert long_polling.wait_ready(20), long_polling.status
    retrying = entitle.Engine.connect("http://127.0.0.1:9", poll_interval=0.05, max_backoff=0.1)
    static = entitle.Engine.from_catalog(catalog)
    # Listener threads (every connected engine has one; the static engine gets one here) wait
    # in native code without the GIL while the interpreter shuts down.
    static.on_change(lambda old, new: None)
    polling.on_event(lambda event: None)

    class Holder:
        pass

    cycle = Holder()
    cycle.self, cycle.engine = cycle, entitle.Engine.connect(url, poll_interval=0.05)
    del cycle

    def hammer(engine):
        while True:
            engine.enabled("cus_pro", "sso")
            engine.check("cus_pro", "projects")
            engine.limit("nobody", "projects")

    for e in (polling, long_polling, retrying, static):
        threading.Thread(target=hammer, args=(e,), daemon=True).start()
    assert polling.limit("cus_pro", "projects") == 50
    print("started", flush=True)
""")

SCENARIOS = {
    "falls off the end": "",
    "sys.exit with a status": "sys.exit(7)",
    "unhandled exception": "raise RuntimeError('boom')",
    "engines only in a thread": textwrap.dedent("""
        del polling, long_polling, retrying, static
        import time; time.sleep(0.2)
    """),
    "exit from a non-daemon thread's end": textwrap.dedent("""
        t = threading.Thread(target=lambda: polling.wait_ready(0.5))
        t.start()
    """),
}

EXPECTED_CODE = {"sys.exit with a status": 7, "unhandled exception": 1}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_exit_with_live_engines(edge: Edge, scenario: str) -> None:
    import json

    result = run_python(PRELUDE + SCENARIOS[scenario], timeout=EXIT_BOUND,
                        args=[edge.url, json.dumps(catalog())])
    assert result.stdout == "started\n", result.stderr
    assert result.returncode == EXPECTED_CODE.get(scenario, 0), result.stderr
    if scenario == "unhandled exception":
        assert result.stderr.rstrip().endswith("RuntimeError: boom")
    else:
        assert result.stderr == ""


def test_exit_while_the_edge_hangs() -> None:
    # A server that accepts connections and never answers: the sync thread sits in a request.
    code = textwrap.dedent("""
        import socket, entitle
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        url = "http://127.0.0.1:%d" % server.getsockname()[1]
        engine = entitle.Engine.connect(url, request_timeout=3600, poll_interval=0.05)
        assert not engine.wait_ready(0.5)
        print("started", flush=True)
    """)
    result = run_python(code, timeout=EXIT_BOUND)
    assert (result.returncode, result.stdout, result.stderr) == (0, "started\n", "")
