"""Claims (cnnlab.study.claims): exclusive, released, taken over when stale, never two owners.

``hammer`` is the stress test of issue 16: in every round a claim of a dead worker waits, and
several workers (threads) take it over at once, each holding what it got for a few milliseconds
while recording that it holds it. Two recorded holders of one run at the same time is the bug it
looks for; reads made slow (2 ms, as on NFS) widen every window between looking and acting.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.study import claims as claims_module
from cnnlab.study.claims import HEARTBEAT_SECONDS, claim_path, try_claim
from cnnlab.study.runner import run_study


def dead_pid() -> int:
    """The id of a process of this machine that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def hammer(
    module: ModuleType,
    folder: Path,
    *,
    workers: int = 4,
    rounds: int = 100,
    read_delay: float = 0.0,
    hold: float = 0.004,
    jitter: float = 0.004,
) -> dict[str, Any]:
    """Race ``workers`` threads for a dead worker's claim, ``rounds`` times (one run each).

    Returns the runs that had two holders at once (``overlaps``), the runs nobody got
    (``untaken``) and the errors the workers raised. ``module`` is a claims module (this one, or
    an old one for comparison); only ``try_claim``, ``Claim.token`` and ``Claim.release`` are used,
    and the reading function is slowed by ``read_delay`` seconds. Each worker starts up to
    ``jitter`` seconds late, so that the workers meet in every phase of a takeover.
    """
    folder.mkdir(parents=True, exist_ok=True)
    gone = dead_pid()
    lock = threading.Lock()
    holding: dict[str, set[str]] = defaultdict(set)
    overlaps: set[str] = set()
    taken: set[str] = set()
    errors: list[BaseException] = []
    start = threading.Barrier(workers + 1, timeout=60)
    end = threading.Barrier(workers + 1, timeout=60)

    def work(seed: int) -> None:
        delays = random.Random(seed)
        for i in range(rounds):
            run = f"run{i}"
            start.wait()
            time.sleep(delays.uniform(0, jitter))
            try:
                claim = module.try_claim(folder, run, 600.0)
                if claim is not None:
                    with lock:
                        if holding[run]:
                            overlaps.add(run)
                        holding[run].add(claim.token)
                        taken.add(run)
                    time.sleep(hold)
                    with lock:
                        holding[run].discard(claim.token)
                    claim.release()
            except Exception as exc:  # reported by the caller
                errors.append(exc)
            end.wait()

    patches = []
    for name in ("read_claim", "_look"):  # the old module's reader, and this one's
        real = getattr(module, name, None)
        if real is not None and read_delay:

            def slow(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                seen = _real(*args, **kwargs)
                time.sleep(read_delay)  # a slow read: what it says is that old when it arrives
                return seen

            patches.append(mock.patch.object(module, name, slow))
    threads = [threading.Thread(target=work, args=(seed,), daemon=True) for seed in range(workers)]
    for patch in patches:
        patch.start()
    try:
        for thread in threads:
            thread.start()
        for i in range(rounds):
            with mock.patch.object(os, "getpid", lambda: gone):  # a claim of a dead process
                assert module.try_claim(folder, f"run{i}", 600.0) is not None
            start.wait()
            end.wait()
        for thread in threads:
            thread.join()
    finally:
        for patch in patches:
            patch.stop()
    untaken = {f"run{i}" for i in range(rounds)} - taken
    return {"overlaps": sorted(overlaps), "untaken": sorted(untaken), "errors": errors}


@pytest.mark.parametrize(
    ("workers", "rounds", "read_delay", "jitter"),
    [(4, 100, 0.002, 0.002), (3, 100, 0.002, 0.004), (8, 200, 0.0, 0.0002)],
    ids=["4-workers-slow-reads", "3-workers-slow-reads", "8-workers"],
)
def test_a_dead_workers_claim_gets_exactly_one_new_owner(
    tmp_path: Path, workers: int, rounds: int, read_delay: float, jitter: float
) -> None:
    found = hammer(
        claims_module,
        tmp_path / "claims",
        workers=workers,
        rounds=rounds,
        read_delay=read_delay,
        jitter=jitter,
    )
    assert not found["errors"], found["errors"][:3]
    assert not found["overlaps"], f"two owners at once in {len(found['overlaps'])} rounds"
    assert not found["untaken"], f"nobody took over {found['untaken'][:5]}"
    assert not list((tmp_path / "claims").glob(".*.new"))  # no half-made claims left behind


# -- the basics ---------------------------------------------------------------------------------


def test_claims_are_exclusive_released_and_taken_over_when_stale(tmp_path: Path) -> None:
    claims = tmp_path / "claims"
    first = try_claim(claims, "a")
    assert first is not None and first.held() and try_claim(claims, "a") is None
    first.release()
    assert not first.held() and not claim_path(claims, "a").exists()
    again = try_claim(claims, "a")
    assert again is not None and again.token != first.token
    first.release()  # a second release of an old claim leaves the new one alone
    assert again.held()
    again.release()

    gone = dead_pid()
    with mock.patch.object(os, "getpid", lambda: gone):
        dead = try_claim(claims, "b")
    assert dead is not None
    taken = try_claim(claims, "b")  # its process is gone
    assert taken is not None and taken.held() and not dead.held()
    dead.release()  # a worker judged gone that comes back takes nothing away
    assert taken.held() and claim_path(claims, "b").exists()
    taken.release()

    far = try_claim(claims, "c")
    assert far is not None
    far_file = claim_path(claims, "c") / far.token
    far_file.write_text(json.dumps({"token": far.token, "host": "elsewhere", "pid": 1}))
    assert try_claim(claims, "c", stale_after=600) is None  # fresh heartbeat
    old = time.time() - 3600
    os.utime(far_file, (old, old))
    taken = try_claim(claims, "c", stale_after=600)  # no heartbeat for an hour
    assert taken is not None and taken.held() and not far.held()
    mine = claim_path(claims, "c") / taken.token
    os.utime(mine, (old, old))
    taken.start_heartbeat(every=0.05)
    time.sleep(0.3)
    assert time.time() - mine.stat().st_mtime < 60  # the heartbeat touched it
    taken.release()
    assert not claim_path(claims, "c").exists()


def test_leftovers_do_not_block_a_run(tmp_path: Path) -> None:
    claims = tmp_path / "claims"
    husk = claim_path(claims, "a")  # a worker died between deleting its token and the folder
    husk.mkdir(parents=True)
    taken = try_claim(claims, "a")
    assert taken is not None and taken.held()

    old = time.time() - 3600
    empty = claim_path(claims, "b")  # died while writing its token
    empty.mkdir()
    (empty / "0123abcd").touch()
    assert try_claim(claims, "b") is None  # could still be being written
    os.utime(empty / "0123abcd", (old, old))
    assert try_claim(claims, "b") is not None

    legacy = claim_path(claims, "c")  # a claim file of an older cnnlab
    legacy.write_text(json.dumps({"token": "x", "host": socket.gethostname(), "pid": 1}))
    os.utime(legacy, (old, old))
    assert try_claim(claims, "c", stale_after=7200) is None  # pid 1 lives; heartbeat 1 h old
    taken = try_claim(claims, "c")
    assert taken is not None and taken.held() and claim_path(claims, "c").is_dir()


def test_a_heartbeat_stops_when_the_claim_was_taken_over(tmp_path: Path) -> None:
    claims = tmp_path / "claims"
    gone = dead_pid()
    with mock.patch.object(os, "getpid", lambda: gone):
        dead = try_claim(claims, "a")
    assert dead is not None
    dead.start_heartbeat(every=0.02)
    taken = try_claim(claims, "a")
    assert taken is not None and dead._thread is not None
    dead._thread.join(timeout=10)
    assert not dead._thread.is_alive()
    assert taken.held() and not (claim_path(claims, "a") / dead.token).exists()
    dead.release()
    taken.release()


# -- --stale-after ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, 1.0, HEARTBEAT_SECONDS, 3 * HEARTBEAT_SECONDS - 1, -5.0])
def test_a_stale_after_near_the_heartbeat_is_refused(tmp_path: Path, value: float) -> None:
    with pytest.raises(CnnlabError, match=r"--stale-after must be at least 60 seconds"):
        try_claim(tmp_path / "claims", "a", stale_after=value)
    with pytest.raises(CnnlabError, match=r"--stale-after must be at least 60 seconds"):
        run_study(tmp_path / "missing.yaml", out=tmp_path / "out", stale_after=value)
    assert not (tmp_path / "claims").exists() and not (tmp_path / "out").exists()


def test_a_stale_after_of_three_heartbeats_is_accepted(tmp_path: Path) -> None:
    claim = try_claim(tmp_path / "claims", "a", stale_after=3 * HEARTBEAT_SECONDS)
    assert claim is not None
    claim.release()
    assert try_claim(tmp_path / "claims", "a", stale_after=float("inf")) is not None
    with pytest.raises(CnnlabError, match=r"--stale-after"):
        try_claim(tmp_path / "claims", "a", stale_after=float("nan"))
