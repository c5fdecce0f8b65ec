"""``reproduce``: the whole original study, end to end, in one resumable command.

Steps, each skipped when already done in ``out`` (so a killed reproduction continues):

1. ``data``: the Lines dataset (seed 0, with its preview) in ``out/data/lines``, and the other
   renderings of its classes (:data:`TRANSFER_VARIANTS`, seed 1) in ``out/data/lines-<variant>``;
   MNIST is read from ``mnist_dir`` / ``$CNNLAB_MNIST_DIR`` or downloaded once into the cache.
2. ``train <preset>`` for every model of the study (:data:`RUNS`) into ``out/runs/<preset>``;
   an interrupted training is resumed exactly, not restarted.
3. ``evaluate`` and ``visualize`` each run (activations, filters, Grad-CAM; on Lines the
   heatmaps are scored against the line masks); ``transfer`` evaluates each Lines run on the
   other renderings. Steps 2-3 of a run are one task of the executor (:mod:`cnnlab.execution`):
   ``jobs`` runs at a time in worker processes of this machine, or on a Ray cluster.
4. ``study <name>``: the variation studies (:data:`STUDIES`) into ``out/studies/<name>``.
5. ``report``: ``out/report.html`` (front page: cnnlab beside the study's table) and
   ``out/summary.md``; always rebuilt.

``quick`` trains on a few thousand images for 2 epochs: every
step exercised, every page labelled as quick. ``out/reproduce.json`` records the mode, the
runs it plans (for ``cnnlab status``: :mod:`cnnlab.jobs`) and the seconds each step took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, Interrupted
from cnnlab.execution import Executor, Outcome, Task
from cnnlab.fileio import write_json
from cnnlab.jobs.folder import PLANNED, REPRODUCTION_FILE, Planned, plan_record, run_folder
from cnnlab.jobs.live import LiveStatus
from cnnlab.jobs.run import job_executor, run_job
from cnnlab.runfolder import RunFolder
from cnnlab.training.run import resolve_device


@dataclass(frozen=True)
class Model:
    """One model of the reproduction: its run preset, its place when workers take runs longest
    first (by measured wall time), and whether it goes beyond the study's table."""

    preset: str
    longest: int
    beyond: bool = False


MODELS: tuple[Model, ...] = (
    Model("part1-mnist", 5),
    Model("part1-lines", 3),
    Model("part2-mnist", 4),
    Model("part2-lines", 8),
    Model("multihead-lines", 6),
    Model("multihead-lines-plus", 7, beyond=True),
    Model("part2-lines-robust", 2, beyond=True),
    Model("multihead-lines-plus-robust", 1, beyond=True),
)
"""The study's models (Task 1 part 1 and 2, Task 2) plus cnnlab's stronger multi-head net and
the two Lines nets trained with the ``degrade`` augmentation (robust to another rendering), in
the report's order."""

RUNS: tuple[str, ...] = tuple(m.preset for m in MODELS)
BEYOND: tuple[str, ...] = tuple(m.preset for m in MODELS if m.beyond)
"""Runs that go beyond the study's table (shown under it on the front page)."""
LONGEST_FIRST: tuple[str, ...] = tuple(m.preset for m in sorted(MODELS, key=lambda m: m.longest))
"""The order in which workers take the runs."""

STUDIES: tuple[str, ...] = ("variations-mnist", "variations-lines")
"""The variation studies of Task 1, part 2."""

QUICK: dict[str, tuple[str, ...]] = {
    "mnist": ("data.train_limit=6000", "data.test_limit=2000", "train.epochs=2"),
    "lines": ("data.train_limit=4800", "data.test_limit=1920", "train.epochs=2"),
}
"""Overrides of ``quick`` mode, by dataset."""

TRANSFER_VARIANTS: tuple[str, ...] = ("centred", "sharp", "jpeg", "noisy")
"""Lines renderings (``cnnlab.data.VARIANTS``) every Lines run is also tested on: drawn with
another seed than the training data, so their lines sit at other places."""

TRANSFER_SEED = 1

TRANSFER_PER_CLASS = {False: 1000, True: 50}
"""Images per class of each transfer rendering (full, quick)."""

SCORE_IMAGES = {False: 128, True: 16}
"""Test images of the scoreboard of explanation methods (full, quick): every run is scored by
faithfulness and the randomisation check, Lines runs also against the line masks. 128 keeps
the scoreboard of all six runs near 4 minutes of CPU (BENCHMARKS.md)."""

FILTER_STEPS = {False: 256, True: 64}
"""Gradient-ascent steps of the filter images (full, quick)."""

PIPELINE_STEPS = ("train", "evaluate", "transfer", "visualize")


@dataclass(frozen=True)
class Pipeline:
    """One run's steps that are left to do: what a worker process needs (picklable)."""

    preset: str
    run_dir: str
    overrides: list[str]
    device: str | None
    quick: bool
    todo: tuple[str, ...]
    transfers: tuple[tuple[str, str], ...] = ()
    """(name, dataset folder) of each other rendering to evaluate on."""
    quiet: bool = True
    """No training progress bars (they would mix when several runs train at once)."""


def reproduce(
    out: str | Path = "reproduction",
    *,
    quick: bool = False,
    mnist_dir: str | Path | None = None,
    device: str | None = None,
    overrides: Sequence[str] = (),
    studies: bool = True,
    jobs: int = 2,
    threads: int | None = None,
    executor: Executor | str = "local",
    address: str | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> Path:
    """Run (or continue) the whole study into ``out``; returns the report's path.

    ``overrides`` (``key=value``, as ``cnnlab train --set``) apply to every training, after the
    quick-mode ones: e.g. tiny slices for a test. ``studies=False`` skips the variation studies.
    ``executor``: ``local`` runs ``jobs`` runs at once, each in a process of its own with
    ``threads`` (cores // jobs) threads (docs/studies.md gives the gain measured on a small CPU; on
    a GPU one run at a time); ``ray`` runs each on the Ray cluster at ``address`` (a local Ray
    without one), asking ``threads`` (1) CPUs and a GPU where there are GPUs; an
    :class:`~cnnlab.execution.Executor` is used as given and left open. The six models are
    taken longest first, then the studies' runs. The thread count changes float rounding, so
    an interrupted reproduction continues bit-identically when run again with as many threads
    per run. ``progress``: the live status of the trainings beside the lines given to ``log``
    (:class:`~cnnlab.jobs.LiveStatus`).
    """
    if not isinstance(executor, Executor):
        on_gpu = resolve_device(device or "auto").type == "cuda"
        jobs = 1 if on_gpu and executor == "local" else jobs  # one run at a time on a GPU
    with job_executor(executor, jobs=jobs, threads=threads, address=address) as chosen:
        return _reproduce(
            Path(out), quick, mnist_dir, device, overrides, studies, chosen, log, progress
        )


def _reproduce(
    out: Path,
    quick: bool,
    mnist_dir: str | Path | None,
    device: str | None,
    overrides: Sequence[str],
    studies: bool,
    executor: Executor,
    log: Callable[[str], None],
    progress: bool,
) -> Path:
    """:func:`reproduce` on an executor: its steps in order (see the module's docstring)."""
    state = _load_state(out, quick, list(overrides), mnist_dir)
    job = _Reproduction(out, quick, mnist_dir, device, tuple(overrides), executor, log, state)
    job.plan(studies)
    job.step("data", lambda: _prepare_data(out / "data", mnist_dir, quick))
    with LiveStatus(out, log, enabled=progress) as live:
        job.log = live.say  # from here on every line goes above the live status
        run_dirs = job.models(bars=not progress and executor.here)
        study_dirs = job.studies() if studies else []
    return job.report(run_dirs, study_dirs)


@dataclass
class _Reproduction:
    """One reproduction in ``out`` and its state file: each step done once, the seconds it
    took recorded (``steps``), so that running it again continues where it stopped."""

    out: Path
    quick: bool
    mnist_dir: str | Path | None
    device: str | None
    overrides: tuple[str, ...]
    executor: Executor
    log: Callable[[str], None]
    state: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.earlier = float(self.state.get("wall_seconds", 0.0))  # of the runs before this

    @property
    def steps(self) -> dict[str, float]:
        return self.state["steps"]

    @property
    def lines_file(self) -> Path:
        return self.out / "data" / "lines" / "lines.npz"

    def save(self) -> None:
        self.state["wall_seconds"] = round(self.earlier + time.perf_counter() - self.started, 1)
        write_json(self.out / REPRODUCTION_FILE, self.state)

    def step(self, name: str, action: Callable[[], Any]) -> None:
        """Do ``action`` unless the step ``name`` is recorded as done; record its seconds."""
        if name not in self.steps:
            self.log(f"[....] {name}")
            start = time.perf_counter()
            action()
            self.steps[name] = round(time.perf_counter() - start, 1)
            self.save()
        self.log(f"[done] {name} ({self.steps[name]:.0f} s)")

    def plan(self, studies: bool) -> None:
        """The runs this reproduction plans, recorded first (for ``cnnlab status``)."""
        planned = planned_runs(self.out, self.quick, self.overrides, studies)
        self.state[PLANNED] = plan_record(self.out, planned)
        self.save()

    def models(self, bars: bool) -> list[Path]:
        """Train, evaluate, test on the other renderings and look inside every model, one
        executor task per model (``bars``: training progress bars, when nothing else draws)."""
        transfers = tuple((v, str(self.out / "data" / f"lines-{v}")) for v in TRANSFER_VARIANTS)
        pending = []
        for preset in LONGEST_FIRST:
            dataset = preset_dataset(preset)
            overrides = _run_overrides(
                dataset, self.quick, self.overrides, self.lines_file, self.mnist_dir
            )
            todo = self._todo(preset, dataset)
            for name in (f"{s} {preset}" for s in PIPELINE_STEPS):
                if name in self.steps:
                    self.log(f"[done] {name} ({self.steps[name]:.0f} s)")
            if todo:
                folder = str(run_folder(self.out, preset))
                lines = transfers if dataset == "lines" else ()
                pending.append(
                    Pipeline(preset, folder, overrides, self.device, self.quick, todo, lines,
                             quiet=not bars)
                )  # fmt: skip

        def finished(pipeline: Pipeline, seconds: dict[str, float]) -> None:
            for name, value in seconds.items():
                self.steps[f"{name} {pipeline.preset}"] = value
                self.log(f"[done] {name} {pipeline.preset} ({value:.0f} s)")
            self.save()

        _run_pipelines(pending, self.executor, self.out, finished, self.log)
        return [run_folder(self.out, preset) for preset in RUNS]

    def _todo(self, preset: str, dataset: str) -> tuple[str, ...]:
        """A model's steps left to do: not recorded as done, or done but their output is
        missing or stale."""
        wanted = [s for s in PIPELINE_STEPS if s != "transfer" or dataset == "lines"]
        for name in stale_steps(RunFolder(run_folder(self.out, preset)), wanted):
            self.steps.pop(f"{name} {preset}", None)
        return tuple(s for s in wanted if f"{s} {preset}" not in self.steps)

    def studies(self) -> list[Path]:
        """The variation studies, each one step."""
        study_dirs = []
        for name in STUDIES:
            study_dir = self.out / "studies" / name
            data = _data_overrides(study_dataset(name), self.lines_file, self.mnist_dir)
            extra = [*data, *self.overrides]
            self.step(
                f"study {name}",
                lambda n=name, d=study_dir, e=extra: _study(
                    n, d, self.quick, e, self.executor, self.log
                ),
            )
            study_dirs.append(study_dir)
        return study_dirs

    def report(self, run_dirs: list[Path], study_dirs: list[Path]) -> Path:
        """The report and summary, always rebuilt."""
        start = time.perf_counter()
        wall = self.state.get("wall_seconds")
        report = _report(self.out, run_dirs, study_dirs, self.quick, self.steps, wall)
        self.log(f"report written in {time.perf_counter() - start:.0f} s: {report}")
        return report


def planned_runs(out: Path, quick: bool, overrides: Sequence[str], studies: bool) -> list[Planned]:
    """Every training the reproduction in ``out`` plans: the models, then the studies' runs
    (named ``<study>/<run>``)."""
    from cnnlab.study import load_study
    from cnnlab.training import load_config

    runs = []
    for preset in RUNS:
        quick_set = list(QUICK[preset_dataset(preset)]) if quick else []
        config = load_config(preset, quick_set + list(overrides))
        folder = run_folder(out, preset)
        runs.append(Planned(preset, folder, config.train.epochs, config.data.train_limit))
    for name in STUDIES if studies else ():
        spec = load_study(name, quick=quick, extra=tuple(overrides))
        runs += [
            Planned(
                f"{name}/{r.name}",
                run_folder(out / "studies" / name, r.name),
                r.config.train.epochs,
                r.config.data.train_limit,
            )
            for r in spec.runs
        ]
    return runs


def stale_steps(folder: RunFolder, steps: Sequence[str]) -> list[str]:
    """The steps of a trained run whose output is missing or older than its model, or was made
    by an older cnnlab (an evaluation without its error analysis, pictures without the
    scoreboard, transfers without theirs): to be done again."""
    if not folder.weights.is_file():
        return []  # not trained yet: every step is to do anyway
    current = {
        "evaluate": folder.evaluated(),
        "transfer": all(folder.errors("test", v).summary.is_file() for v in TRANSFER_VARIANTS),
        "visualize": folder.pictures_current() and _scored(folder),
    }
    return [s for s in steps if not current.get(s, True)]


def _scored(folder: RunFolder) -> bool:
    """Whether the run's pictures hold the scoreboard (every run of a reproduction has one)."""
    try:
        pictures = folder.read_pictures()
    except CnnlabError:
        return False
    return pictures is not None and pictures.scores is not None


def _run_pipelines(
    pipelines: list[Pipeline],
    executor: Executor,
    out: Path,
    finished: Callable[[Pipeline, dict[str, float]], None],
    log: Callable[[str], None],
) -> None:
    """Train, evaluate and visualise each run, one executor task per run."""
    by_name = {p.preset: p for p in pipelines}

    def heard(outcome: Outcome, say: Callable[[str], None]) -> None:
        pipeline = by_name[outcome.task.name]
        if outcome.value:  # done, or stopped between steps: the steps it did count
            finished(pipeline, outcome.value)
        if outcome.status == "failed":
            say(f"[FAIL] {pipeline.preset}: {outcome.error}")

    tasks = [Task(p.preset, run_pipeline, (p,)) for p in pipelines]
    intro = f"[....] {len(pipelines)} runs"
    failed = run_job(out, tasks, executor, heard, intro=intro, say=log, progress=False)
    if failed:
        said = "; ".join(f"{o.task.name}: {o.error}" for o in failed)
        raise CnnlabError(
            f"{len(failed)} run(s) failed ({said}); run the same command again to retry"
        )


def run_pipeline(pipeline: Pipeline) -> dict[str, float]:
    """Run a pipeline's steps that are left (in a worker); returns the seconds each took.
    Stopped (Ctrl-C), it raises :class:`Interrupted` with the seconds of the steps it did."""
    run_dir = Path(pipeline.run_dir)
    actions = {
        "train": lambda: _train_preset(
            pipeline.preset, run_dir, pipeline.overrides, pipeline.device, pipeline.quiet
        ),
        "evaluate": lambda: _evaluate(run_dir),
        "transfer": lambda: _transfer(run_dir, pipeline.transfers),
        "visualize": lambda: _visualize(run_dir, pipeline.quick),
    }
    seconds: dict[str, float] = {}
    for name in pipeline.todo:
        start = time.perf_counter()
        try:
            actions[name]()
        except (Interrupted, KeyboardInterrupt) as exc:
            what = exc.what if isinstance(exc, Interrupted) else "interrupted"
            raise Interrupted(f"{name}: {what}", partial=seconds) from None
        seconds[name] = round(time.perf_counter() - start, 1)
    return seconds


def _load_state(
    out: Path, quick: bool, overrides: list[str], mnist_dir: str | Path | None
) -> dict[str, Any]:
    """The reproduction's state file; refuses to mix modes or overrides in one folder."""
    mode = "quick" if quick else "full"
    path = out / REPRODUCTION_FILE
    if path.is_file():
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CnnlabError(f"{path}: not a readable reproduction state ({error})") from None
        if state.get("mode") != mode or state.get("overrides") != overrides:
            raise CnnlabError(
                f"{out} holds a {state.get('mode')} reproduction with overrides "
                f"{state.get('overrides')}; this one is {mode} with {overrides}: use another --out"
            )
        state.setdefault("steps", {})
        return state
    if out.exists() and any(out.iterdir()):
        raise CnnlabError(f"{out} exists and is not a reproduction folder: choose another --out")
    state = {"mode": mode, "overrides": overrides, "mnist_dir": str(mnist_dir or ""), "steps": {}}
    write_json(path, state)
    return state


def _prepare_data(data_dir: Path, mnist_dir: str | Path | None, quick: bool) -> None:
    from cnnlab.data import generate_lines, lines_config, load_mnist, save_lines
    from cnnlab.data.lines_files import save_preview

    data = generate_lines(lines_config(seed=0))
    save_lines(data, data_dir / "lines")
    save_preview(data, data_dir / "lines" / "preview.png")
    for variant in TRANSFER_VARIANTS:
        config = lines_config(variant, seed=TRANSFER_SEED, per_class=TRANSFER_PER_CLASS[quick])
        other = generate_lines(config)
        save_lines(other, data_dir / f"lines-{variant}")
        save_preview(other, data_dir / f"lines-{variant}" / "preview.png")
    load_mnist(mnist_dir)  # reads the folder (or downloads) once, with every check


def _data_overrides(dataset: str, lines_file: Path, mnist_dir: str | Path | None) -> list[str]:
    if dataset == "lines":
        return [f"data.dataset={lines_file}"]
    return [f"data.mnist_dir={mnist_dir}"] if mnist_dir else []


def preset_dataset(preset: str) -> str:
    """The dataset a run preset trains on (``mnist`` or ``lines``)."""
    from cnnlab.training import load_config

    return load_config(preset).data.dataset


def study_dataset(name: str) -> str:
    """The dataset a study preset's runs train on."""
    from cnnlab.study import load_study

    return load_study(name, quick=True).runs[0].config.data.dataset


def _run_overrides(
    dataset: str,
    quick: bool,
    overrides: Sequence[str],
    lines_file: Path,
    mnist_dir: str | Path | None,
) -> list[str]:
    quick_set = list(QUICK[dataset]) if quick else []
    return _data_overrides(dataset, lines_file, mnist_dir) + quick_set + list(overrides)


def _train_preset(
    preset: str, run_dir: Path, overrides: list[str], device: str | None, quiet: bool
) -> None:
    from cnnlab.training.run import continue_run

    continue_run(preset, run_dir, overrides=tuple(overrides), device=device, quiet=quiet)


def _evaluate(run_dir: Path) -> None:
    from cnnlab.evaluate import evaluate_run

    evaluate_run(run_dir)


def _transfer(run_dir: Path, transfers: tuple[tuple[str, str], ...]) -> None:
    from cnnlab.evaluate import evaluate_run

    for name, folder in transfers:
        evaluate_run(run_dir, dataset=folder, name=name)


def _visualize(run_dir: Path, quick: bool) -> None:
    from cnnlab.visualize import FilterSettings, visualize_run

    folder = RunFolder(run_dir)
    visualize_run(
        run_dir,
        folder.visualize,
        score=True,  # the scoreboard: faithfulness for every run, localisation on Lines
        score_images=SCORE_IMAGES[quick],
        filter_settings=FilterSettings(steps=FILTER_STEPS[quick]),
    )


def _study(
    name: str,
    study_dir: Path,
    quick: bool,
    overrides: list[str],
    executor: Executor,
    log: Callable[[str], None],
) -> None:
    from cnnlab.study import run_study

    run_study(
        name,
        out=study_dir,
        quick=quick,
        overrides=overrides,
        executor=executor,
        log=log,
        progress=False,  # the reproduction shows its own
    )


def _report(
    out: Path,
    run_dirs: list[Path],
    study_dirs: list[Path],
    quick: bool,
    steps: dict[str, float],
    wall_seconds: float | None,
) -> Path:
    from cnnlab.report import build_report
    from cnnlab.report.front import FrontView, front_view
    from cnnlab.report.records import RunRecord
    from cnnlab.study.report import StudyView, study_view

    studies = [(f"study-{d.name}", f"Variation study: {d.name}") for d in study_dirs]

    def front(records: Sequence[RunRecord]) -> FrontView:
        pairs = zip(run_dirs, records, strict=True)
        by_name = {d.name: (i, r) for i, (d, r) in enumerate(pairs, 1)}
        return front_view(
            by_name,
            quick=quick,
            steps=list(steps.items()),
            wall_seconds=wall_seconds,
            extra=BEYOND,
            studies=studies,
            transfer_order=TRANSFER_VARIANTS,
        )

    def appendix(fig_dir: Path) -> list[StudyView]:
        return [study_view(d, fig_dir) for d in study_dirs]

    return build_report(
        run_dirs,
        out / "report.html",
        out / "summary.md",
        title="cnnlab: the CNN study reproduced" + (" (quick mode)" if quick else ""),
        front=front,
        appendix=appendix,
    )
