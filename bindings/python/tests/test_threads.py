"""Eight threads looking up while the content is swapped, deltas applied, and the engine closed.

Lookups keep the GIL, so Python threads interleave between calls rather than inside them; the
library is still exercised from eight OS threads, with updates that release the GIL running
concurrently with them. Every answer must be one a whole version gives (never a mix)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Dict, List

from entitle import ClosedError, Engine, Reason

THREADS = 8
ROUNDS = 20_000


def test_lookups_race_updates(snapshots: Dict[str, Path]) -> None:
    v1, v2 = snapshots["v1"].read_bytes(), snapshots["v2"].read_bytes()
    delta = snapshots["delta"].read_bytes()
    engine = Engine.from_bytes(v1)
    # Per version: cus_pro's projects limit.
    allowed = {1: 50, 2: 60}
    errors: List[str] = []
    seen_versions = set()
    start = threading.Barrier(THREADS + 1)

    def reader(n: int) -> None:
        start.wait()
        customer = "cus_pro" if n % 2 else "cus_ent"
        for i in range(ROUNDS):
            d = engine.check("cus_pro", "projects")
            if d.value != allowed.get(d.version) or d.reason is not Reason.SUBSCRIPTION:
                errors.append(f"thread {n}: {d!r}")
                return
            seen_versions.add(d.version)
            if not engine.enabled(customer, "sso") or not engine.allows(customer, "projects", 49):
                errors.append(f"thread {n}: {customer} lost sso or projects")
                return
            if i % 500 == 0 and len(engine.entitlements(customer)) != 4:
                errors.append(f"thread {n}: entitlements")
                return

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    start.wait()
    swaps = 0
    while any(t.is_alive() for t in threads):
        engine.replace(v1)
        assert engine.apply_delta(delta) == 2
        engine.replace(v2)
        swaps += 1
    for t in threads:
        t.join()
    assert not errors, errors[:5]
    assert swaps > 0 and seen_versions == {1, 2}


def test_close_while_threads_use_the_engine(snapshots: Dict[str, Path]) -> None:
    engine = Engine.from_file(snapshots["v1"])
    data = snapshots["v2"].read_bytes()
    outcomes: List[str] = []
    lock = threading.Lock()
    started = threading.Barrier(THREADS + 1)

    def user(n: int) -> None:
        started.wait()
        try:
            for _ in range(1_000_000):
                if n % 4 == 0:
                    engine.replace(data)  # releases the GIL while it loads
                elif n % 4 == 1:
                    engine.wait_ready(0.01)
                else:
                    assert engine.limit("cus_pro", "projects") in (50, 60)
            result = "finished"
        except ClosedError:
            result = "closed"
        except BaseException as e:  # noqa: BLE001 - any other outcome is the failure to report
            result = f"{type(e).__name__}: {e}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.05)  # let every kind of call get going
    engine.close()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert outcomes == ["closed"] * THREADS
