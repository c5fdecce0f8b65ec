"""``cnnlab study``: spec validation, grid expansion, a tiny study end to end with resume,
worker processes, failures, the statistics and the FLOP count."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest
import torch
import yaml
from scipy import stats as scipy_stats
from torch import nn

from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.flops import training_flops_per_image
from cnnlab.report.render import render
from cnnlab.study import load_study, run_study, study_names, study_view
from cnnlab.study import stats as study_stats
from cnnlab.training.engine import Engine

REPO_ROOT = Path(__file__).resolve().parent.parent


def write_study(folder: Path, spec: dict, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tiny_study(mnist_dir: Path, **extra) -> dict:
    """Two variants x two seeds of a small part1 on 200 MNIST images, 2 epochs of 4 batches."""
    return {
        "name": "tiny",
        "base": "part1-mnist",
        "set": {
            "data.mnist_dir": str(mnist_dir),
            "data.train_limit": 200,
            "data.test_limit": 100,
            "train.epochs": 2,
            "train.batch_size": 50,
            "model.filters": 4,
            "model.dense_units": 32,
        },
        "seeds": [0, 1],
        "target": 0.3,
        "variants": {"base": {}, "kernel-5": {"model.kernel_size": 5}},
        **extra,
    }


# -- the study file -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 3}, r"unknown key\(s\) seed; valid keys: name, description, base"),
        ({"variants": {"a": {"train.lrr": 1}}}, r"variants\.a: unknown key.*train\.lrr"),
        (
            {"variants": {"a": {"model.kernal_size": 3}}},
            r"variants\.a: model 'part1': unknown option\(s\) kernal_size; valid options: kern",
        ),
        ({"variants": {"a": {"train.lr": "fast"}}}, r"variants\.a: train\.lr must be float"),
        ({"variants": {"a b": {}}}, r"variants: 'a b' is not a usable name"),
        ({"seeds": [0, 0]}, r"seeds lists a seed twice"),
        ({"seeds": "all"}, r"seeds must be a list of whole numbers"),
        ({"baseline": "nope"}, r"baseline 'nope' is not a variant; variants: base, kernel-5"),
        ({"set": {"seed": 1}}, r"set: seed is set by the study"),
        ({"variants": {}}, r"no variants"),
        ({"base": "no-such-preset"}, r"config 'no-such-preset': no such file and no such preset"),
        ({"quick": {"epochs": 1}}, r"unknown key\(s\) quick\.epochs; valid keys in quick"),
        ({"target": 98}, r"target must be an accuracy in \(0, 1\]"),
        ({"grid": {"train.lr": 0.1}}, r"grid: train\.lr must list at least one value"),
    ],
)
def test_bad_study_files_are_refused_in_one_line(
    tmp_path: Path, change: dict, message: str
) -> None:
    spec = {**tiny_study(tmp_path), **change}
    path = write_study(tmp_path, spec)
    with pytest.raises(CnnlabError, match=message) as caught:
        load_study(path)
    text = str(caught.value)
    assert "\n" not in text
    assert (str(path) in text) or "no-such-preset" in text


def test_grid_expands_to_one_variant_per_combination(tmp_path: Path) -> None:
    spec = tiny_study(tmp_path, grid={"model.kernel_size": [3, 5], "train.lr": [0.001, 0.01]})
    spec["variants"] = {"base": {}}
    study = load_study(write_study(tmp_path, spec), seeds=(0, 2))
    names = [v.name for v in study.variants]
    assert names == [
        "base",
        "kernel_size-3_lr-0.001",
        "kernel_size-3_lr-0.01",
        "kernel_size-5_lr-0.001",
        "kernel_size-5_lr-0.01",
    ]
    assert [r.name for r in study.runs[:5]] == [f"{n}-seed0" for n in names]  # seed-major
    assert [r.seed for r in study.runs] == [0] * 5 + [2] * 5
    run = next(r for r in study.runs if r.name == "kernel_size-5_lr-0.01-seed2")
    assert run.config.model.options["kernel_size"] == 5 and run.config.train.lr == 0.01
    assert run.config.seed == 2 and run.config.train.epochs == 2  # the study's set applies
    assert study.baseline == "base"
    spec["variants"] = {"kernel_size-3_lr-0.01": {}}
    with pytest.raises(CnnlabError, match=r"two variants are named 'kernel_size-3_lr-0\.01'"):
        load_study(write_study(tmp_path, spec))


def test_presets_are_valid_and_packaged() -> None:
    assert {"variations-mnist", "variations-lines"} <= set(study_names())
    for name in ("variations-mnist", "variations-lines"):
        study = load_study(name)
        assert len(study.variants) == 15 and study.seeds == (0, 1, 2)
        assert study.baseline == "base" and study.variant("base").overrides == {}
        quick = load_study(name, quick=True)
        assert quick.seeds == (0,) and quick.runs[0].config.data.train_limit == 500
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert '"presets/studies/*.yaml"' in pyproject


# -- end to end ---------------------------------------------------------------------------------


def test_tiny_study_resumes_after_a_kill_and_reports(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_study(tmp_path, tiny_study(mnist_dir))
    out = tmp_path / "out"
    original = Engine._step
    steps = {"n": 0}

    def interrupting_step(self, *args):
        if steps["n"] == 2 * 8 + 5:  # 8 steps per run: in epoch 2 of the third run
            signal.raise_signal(signal.SIGINT)  # Ctrl-C: the loop stops after this step
        steps["n"] += 1
        return original(self, *args)

    monkeypatch.setattr(Engine, "_step", interrupting_step)
    with pytest.raises(CnnlabError, match=r"interrupted in epoch 2.*Run the same command again"):
        run_study(path, out=out, quiet=True)
    runs = out / "runs"
    assert json.loads((runs / "base-seed1" / "run.json").read_text())["status"] == "interrupted"
    finished = {n: (runs / n / "model.safetensors").stat().st_mtime_ns for n in ("base-seed0",)}
    finished["kernel-5-seed0"] = (runs / "kernel-5-seed0" / "model.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(Engine, "_step", original)
    import cnnlab.training.run as run_module

    calls = []
    real_train = run_module.train

    def recording_train(config, **kwargs):
        resume = kwargs.get("resume")
        calls.append((getattr(config, "name", None), resume and Path(resume)))
        return real_train(config, **kwargs)

    monkeypatch.setattr(run_module, "train", recording_train)
    summary = run_study(path, out=out, quiet=True)
    assert calls == [(None, runs / "base-seed1"), ("tiny-kernel-5-seed1", None)]
    for name, mtime in finished.items():
        assert (runs / name / "model.safetensors").stat().st_mtime_ns == mtime, name

    # results, summary and report
    results = (out / "results.csv").read_text().splitlines()
    assert len(results) == 5 and all(",done," in line for line in results[1:])
    assert summary.names == ["base", "kernel-5"]
    kernel = summary.variant("kernel-5")
    assert kernel["verdict"] in ("better", "worse", "within noise")
    assert kernel["accuracy_diff"]["n"] == 2 and kernel["seeds_done"] == 2
    accuracies = {
        s: json.loads((runs / f"{v}-seed{s}" / "metrics-test.json").read_text())["accuracy"]
        for v in ("base", "kernel-5")
        for s in (0, 1)
    }
    assert kernel["accuracy_diff"]["mean"] == pytest.approx(
        sum(kernel["per_seed"][str(s)]["test_accuracy"] for s in (0, 1)) / 2
        - sum(summary.variant("base")["per_seed"][str(s)]["test_accuracy"] for s in (0, 1)) / 2
    )
    assert accuracies
    assert kernel["parameters"] == sum(
        p.numel()
        for p in create_model("part1", 1, 10, kernel_size=5, filters=4, dense_units=32).parameters()
    )
    header = (out / "summary.csv").read_text().splitlines()[0]
    assert header.startswith("variant,overrides,parameters,training_flops_per_image")
    page = (out / "report.html").read_text()
    assert "cnnlab study: tiny" in page and "data:image/png;base64," in page
    assert "within noise" in page and "kernel-5" in page
    view = study_view(out, tmp_path / "figs")
    assert (view.anchor, view.title) == ("study-tiny", "Variation study: tiny")
    assert {f.alt for f in view.curves} == {"test_acc per epoch", "test_loss per epoch"}
    assert (tmp_path / "figs" / "study-tiny-differences.png").is_file()
    section = render("study_section.html.j2", study=view)
    assert section.startswith("<section class='study' id='study-tiny'>")
    assert section.rstrip().endswith("</section>") and "<h2>Study: tiny</h2>" in section

    # a changed study does not silently mix with the runs already there
    changed = tiny_study(mnist_dir)
    changed["set"]["train.epochs"] = 3
    with pytest.raises(CnnlabError, match=r"runs/base-seed0 holds a run with another config.*"):
        run_study(write_study(tmp_path, changed, "changed.yaml"), out=out, quiet=True)


def test_two_worker_processes_train_each_run_once(tmp_path: Path, mnist_dir: Path) -> None:
    path = write_study(tmp_path, tiny_study(mnist_dir))
    out = tmp_path / "out"
    summary = run_study(path, out=out, jobs=2, threads=1, quiet=True)
    assert summary.runs_done == 4
    for run in ("base-seed0", "base-seed1", "kernel-5-seed0", "kernel-5-seed1"):
        history = (out / "runs" / run / "history.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in history[1:]] == ["1", "2"], run


def test_failed_runs_are_retried_and_diverged_runs_kept(
    tmp_path: Path, mnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_study(mnist_dir, seeds=[0])
    spec["variants"] = {"base": {}, "huge-lr": {"train.optimizer": "sgd", "train.lr": 1.0e6}}
    path, out = write_study(tmp_path, spec), tmp_path / "out"
    import cnnlab.training.run as run_module

    real_train = run_module.train

    def flaky_train(config, **kwargs):
        if config.name == "tiny-base-seed0":
            raise RuntimeError("disk on fire")
        return real_train(config, **kwargs)

    monkeypatch.setattr(run_module, "train", flaky_train)
    with pytest.raises(CnnlabError, match=r"1 run\(s\) failed \(base-seed0\).*run the same"):
        run_study(path, out=out, quiet=True)
    failure = json.loads((out / "failures" / "base-seed0.json").read_text())
    assert failure["error"] == "RuntimeError: disk on fire"
    info = json.loads((out / "runs" / "huge-lr-seed0" / "run.json").read_text())
    assert info["status"] == "diverged"

    monkeypatch.setattr(run_module, "train", real_train)
    summary = run_study(path, out=out, quiet=True)  # the failed run again; the diverged one not
    assert not (out / "failures" / "base-seed0.json").exists()
    huge = summary.variant("huge-lr")
    assert huge["diverged"] == 1 and huge["seeds_done"] == 0 and huge["verdict"] == "n/a"
    assert "huge-lr-seed0,huge-lr,0,diverged" in (out / "results.csv").read_text()


# -- statistics and FLOPs -----------------------------------------------------------------------


def test_statistics_agree_with_scipy_and_by_hand() -> None:
    values = [0.981, 0.985, 0.979, 0.983]
    estimate = study_stats.mean_ci(values)
    low, high = scipy_stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / 4, scale=scipy_stats.sem(values)
    )
    assert estimate.low == pytest.approx(low) and estimate.high == pytest.approx(high)
    assert math.isnan(study_stats.mean_ci([0.5]).half_width)

    variant = {0: 0.990, 1: 0.991, 2: 0.989}
    base = {0: 0.982, 1: 0.984, 2: 0.983, 7: 0.5}  # seed 7 has no partner: left out
    comparison = study_stats.compare_accuracy(variant, base, test_images=5000)
    paired = scipy_stats.ttest_rel([0.990, 0.991, 0.989], [0.982, 0.984, 0.983])
    ci = paired.confidence_interval(0.95)
    assert comparison.difference.low == pytest.approx(ci.low)
    assert comparison.difference.high == pytest.approx(ci.high)
    p_a, p_b = 0.990, 0.983
    assert comparison.noise == pytest.approx(
        1.96 * math.sqrt((p_a * (1 - p_a) + p_b * (1 - p_b)) / 15000)
    )
    assert comparison.ci_includes_zero is False and comparison.below_noise is False
    assert comparison.verdict == "better" and not comparison.within_noise

    close = study_stats.compare_accuracy({0: 0.9850, 1: 0.9860}, {0: 0.9840, 1: 0.9855}, 5000)
    assert close.ci_includes_zero is True and close.verdict == "within noise"
    single = study_stats.compare_accuracy({0: 0.955}, {0: 0.96}, 5000)
    assert single.ci_includes_zero is None and single.below_noise and single.within_noise
    assert study_stats.compare_accuracy({0: 0.9}, {1: 0.9}, 100) is None
    assert study_stats.epochs_to_target([0.5, 0.97, 0.99, 0.98], 0.975) == 3
    assert study_stats.epochs_to_target([0.5, 0.6], 0.975) is None


def test_training_flops_match_a_hand_count() -> None:
    # Conv 1->2 (3x3) on 5x5 -> 2x3x3 = 18 outputs, then Linear 18->4.
    # forward: conv 2*9*18 = 324, linear 2*18*4 = 144; backward: conv weights only (the input
    # needs no gradient) 324, linear weights and input 2*144: 1,080 per image.
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 4))
    assert training_flops_per_image(model, 1, (5, 5), batch_size=8) == 1080
    # part1 on MNIST: conv 2*49*32*22*22, fc1 2*3872*1024, fc2 2*1024*10; backward as above.
    part1 = create_model("part1", 1, 10)
    before = {k: v.clone() for k, v in part1.state_dict().items()}
    conv, fc1, fc2 = 2 * 49 * 32 * 22 * 22, 2 * 3872 * 1024, 2 * 1024 * 10
    assert training_flops_per_image(part1, 1, (28, 28)) == 2 * conv + 3 * fc1 + 3 * fc2
    after = part1.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched


def test_part1_options_make_the_variations() -> None:
    default = create_model("part1", 1, 10)
    assert sum(p.numel() for p in default.parameters()) == 3_977_866
    strided = create_model("part1", 1, 10, downsample="stride")
    assert "pool1" not in dict(strided.features.named_children())
    assert strided.features.conv1.stride == (2, 2)
    assert strided(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    plain = create_model("part1", 3, 96, batchnorm=False, dropout=0.25, dense_dropout=0.5)
    names = [n for n, _ in plain.named_modules()]
    assert "features.bn1" not in names
    assert "features.drop1" in names and "classifier.drop_fc1" in names
    with pytest.raises(CnnlabError, match="downsample must be maxpool or stride"):
        create_model("part1", 1, 10, downsample="avg")


def test_cli_study_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["study", "no-such-study"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cnnlab: error: study 'no-such-study': no such file and no such")
    assert "variations-mnist" in error and error.count("\n") == 1
    assert main(["study", "variations-mnist", "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
