"""A study worker: claim a run nobody holds, train (or resume) and evaluate it, repeat.

Runs live in ``DIR/runs/<variant>-seed<k>/`` as ordinary run folders. A run's state is read
from its folder alone (:meth:`cnnlab.runfolder.RunFolder.state`), so workers need no other
shared state than the claim files. ``done`` and ``diverged`` are final: retrying a diverged run
would diverge again (remove the folder to retry).

A run that fails otherwise gets ``claims/<run>.failed`` (the error) and is skipped by every
worker until the study is started again.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.runfolder import FINAL_STATES, RunFolder
from cnnlab.study.claims import STALE_AFTER_SECONDS, Claim, try_claim
from cnnlab.study.spec import PlannedRun, Study
from cnnlab.training.config import RunConfig, load_config
from cnnlab.training.engine import Interrupted

POLL_SECONDS = 2.0


def run_dir(out: Path, run: PlannedRun) -> Path:
    return out / "runs" / run.name


def run_state(folder: Path) -> str:
    """The run's :meth:`~cnnlab.runfolder.RunFolder.state`."""
    return RunFolder(folder).state()


def check_config(folder: Path, expected: RunConfig) -> None:
    """Refuse a run folder whose config is not the one the study asks for now."""
    path = RunFolder(folder).config
    if not path.is_file():
        return
    try:
        found = load_config(path).to_dict()
    except CnnlabError as exc:
        raise CnnlabError(f"{folder}: unreadable run config ({exc})") from None
    wanted = expected.to_dict()
    if found != wanted:
        key, old, new = next(_differences(found, wanted))
        raise CnnlabError(
            f"{folder} holds a run with another config than the study asks for ({key}: "
            f"{old!r} there, {new!r} now); use another --out, or remove that folder"
        )


def check_folders(study: Study, out: Path) -> None:
    for run in study.runs:
        check_config(run_dir(out, run), run.config)


def failed_path(out: Path, run: PlannedRun) -> Path:
    return out / "claims" / f"{run.name}.failed"


def work(
    study: Study,
    out: Path,
    *,
    stale_after: float = STALE_AFTER_SECONDS,
    poll: float = POLL_SECONDS,
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Work on ``study`` in ``out`` until every run is done, diverged or failed.

    Returns the names of the runs this worker trained or evaluated. Ctrl-C (or SIGTERM in a
    worker process) saves a checkpoint of the current run, releases its claim and raises.
    """
    out = Path(out)
    claims = out / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()}:{os.getpid()}"
    handled: list[str] = []
    try:
        while True:
            pending = [
                r
                for r in study.runs
                if run_state(run_dir(out, r)) not in FINAL_STATES
                and not failed_path(out, r).exists()
            ]
            if not pending:
                return handled
            claim, run = _claim_one(claims, pending, stale_after)
            if claim is None:
                time.sleep(poll)  # all held by others: wait, and look again (stale claims)
                continue
            try:
                if _execute(run, run_dir(out, run), claim, quiet, log, me):
                    handled.append(run.name)
            except Interrupted:
                raise
            except Exception as exc:
                _record_failure(out, run, exc, me, log)
            finally:
                claim.release()
    finally:
        (claims / f".clock-{socket.gethostname()}-{os.getpid()}").unlink(missing_ok=True)


def _claim_one(
    claims: Path, pending: list[PlannedRun], stale_after: float
) -> tuple[Claim | None, Any]:
    for run in pending:
        claim = try_claim(claims, run.name, stale_after)
        if claim is not None:
            return claim, run
    return None, None


def _execute(
    run: PlannedRun,
    folder: Path,
    claim: Claim,
    quiet: bool,
    log: Callable[[str], None],
    me: str,
) -> bool:
    """Bring one claimed run to ``done``; False if another worker had already finished it."""
    from cnnlab.evaluate import evaluate_run
    from cnnlab.training.run import continue_run

    check_config(folder, run.config)
    state = run_state(folder)  # again: it may have finished while we were claiming
    if state in FINAL_STATES:
        return False
    claim.start_heartbeat()
    start = time.perf_counter()
    if state != "trained":
        log(f"[{me}] {'resuming' if state == 'partial' else 'training'} {run.name}")
    continue_run(run.config, folder, quiet=quiet)
    metrics = evaluate_run(folder)
    log(
        f"[{me}] {'trained' if state != 'trained' else 'evaluated'} {run.name}: test accuracy "
        f"{metrics['accuracy']:.4f}, loss {metrics['loss']:.4f} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return True


def _record_failure(
    out: Path, run: PlannedRun, exc: Exception, me: str, log: Callable[[str], None]
) -> None:
    if run_state(run_dir(out, run)) == "diverged":
        log(f"[{me}] {run.name} diverged: {exc}")
        return
    from cnnlab.fileio import write_json

    message = str(exc) if isinstance(exc, CnnlabError) else f"{type(exc).__name__}: {exc}"
    write_json(
        failed_path(out, run),
        {
            "run": run.name,
            "worker": me,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "error": message,
            "traceback": traceback.format_exc(),
        },
    )
    log(f"[{me}] {run.name} FAILED: {message}")


def _differences(a: Any, b: Any, prefix: str = "") -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            yield from _differences(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip("."), a, b
