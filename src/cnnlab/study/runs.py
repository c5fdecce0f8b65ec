"""A study's runs: where each lives, its state, and the task that brings it to ``done``.

Runs live in ``DIR/runs/<variant>-seed<k>/`` as ordinary run folders. A run's state is read
from its folder alone (:meth:`cnnlab.runfolder.RunFolder.state`), so whichever executor picks a
run up trains, resumes or skips it alike. ``done`` and ``diverged`` are final: retrying a
diverged run would diverge again (remove the folder to retry). A run that fails otherwise gets
a failure record (:func:`cnnlab.jobs.folder.record_failure`) and is tried again when the study
is started again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.jobs.folder import run_folder
from cnnlab.runfolder import FINAL_STATES, RunFolder
from cnnlab.runfolder.trust import trusting_code
from cnnlab.study.spec import PlannedRun, Study
from cnnlab.training.config import RunConfig, load_config
from cnnlab.training.recipe import as_requested


def run_dir(out: Path, run: PlannedRun) -> Path:
    return run_folder(out, run.name)


def run_state(folder: Path) -> str:
    """The run's :meth:`~cnnlab.runfolder.RunFolder.state`."""
    return RunFolder(folder).state()


def check_config(folder: Path, expected: RunConfig) -> None:
    """Refuse a run folder whose config is not the one the study asks for now."""
    path = RunFolder(folder).config
    if not path.is_file():
        return
    try:
        found = load_config(path, import_models=False).to_dict()
    except CnnlabError as exc:
        raise CnnlabError(f"{folder}: unreadable run config ({exc})") from None
    wanted = expected.to_dict()
    found = as_requested(found, wanted)  # the net and views the run chose, as asked for
    if found != wanted:
        key, old, new = next(_differences(found, wanted))
        raise CnnlabError(
            f"{folder} holds a run with another config than the study asks for ({key}: "
            f"{old!r} there, {new!r} now); use another --out, or remove that folder"
        )


def check_folders(study: Study, out: Path) -> None:
    for run in study.runs:
        check_config(run_dir(out, run), run.config)


def train_run(run: PlannedRun, folder: str) -> dict[str, Any]:
    """Bring one run of a study to ``done`` (in a worker): train, resume or only evaluate it,
    whatever state it was left in. Returns its state before, test metrics and seconds."""
    from cnnlab.evaluate import evaluate_run
    from cnnlab.training.run import continue_run

    check_config(Path(folder), run.config)
    start = time.perf_counter()
    before = run_state(Path(folder))
    if before not in FINAL_STATES:
        with trusting_code():  # the folder's config is the study's own (checked above)
            continue_run(run.config, folder, quiet=True)
            evaluate_run(folder)
    metrics = RunFolder(folder).read_metrics()
    return {
        "state_before": before,
        "accuracy": metrics["accuracy"],
        "loss": metrics["loss"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def _differences(a: Any, b: Any, prefix: str = "") -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            yield from _differences(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip("."), a, b
