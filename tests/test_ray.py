"""The Ray executor on a real two-node Ray cluster on this machine (Ray's own test cluster: a
head and a second node, one CPU each): a study spreads over both nodes, survives a killed
worker with every run trained once to the end, and stops resumably on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor's tests need: pip install 'cnnlab[ray]'")

from study_killer import (  # noqa: E402 (after the skip)
    Killer,
    check_each_run_trained_once,
    history_without_times,
    train_alone,
    write_slow_study,
)

from cnnlab.runfolder import RunFolder  # noqa: E402
from cnnlab.study import run_study  # noqa: E402

RUNS = ["base-seed0", "kernel-5-seed0", "base-seed1", "kernel-5-seed1"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The address of a two-node Ray cluster, one CPU per node."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes.address
    nodes.shutdown()


def test_a_study_spreads_over_two_nodes_and_survives_a_killed_worker(
    cluster: str, tmp_path: Path, mnist_dir: Path
) -> None:
    path, out = write_slow_study(tmp_path, mnist_dir), tmp_path / "out"
    killer = Killer(out / "runs")
    killer.start()
    said: list[str] = []
    try:
        summary = run_study(
            path, out=out, executor="ray", address=cluster, log=said.append, progress=False
        )
    finally:
        killer.done.set()
    assert killer.killed is not None, "the watcher never caught a run training"
    nodes = {line.rsplit("Ray node ", 1)[1].rstrip(")") for line in said if "] trained " in line}
    assert len(nodes) == 2, said  # both nodes trained runs
    assert summary.runs_done == 4
    check_each_run_trained_once(out / "runs", RUNS)
    alone = train_alone(out / "runs" / killer.killed, tmp_path / "alone")
    assert history_without_times(out / "runs" / killer.killed) == history_without_times(alone)


def test_ctrl_c_stops_the_ray_study_and_it_resumes(
    cluster: str, tmp_path: Path, mnist_dir: Path
) -> None:
    epochs = 6  # the stop lands with five epochs of the first runs left, whatever the CPU
    path, out = write_slow_study(tmp_path, mnist_dir, epochs=epochs), tmp_path / "out"
    command = [sys.executable, "-m", "cnnlab", "study", str(path), "--out", str(out)]
    command += ["--executor", "ray", "--address", cluster]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("runs/*/checkpoints/last.pt")):  # the event: a first checkpoint
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output
    assert "stopping: the runs in progress save a checkpoint" in output
    runs = sorted((out / "runs").iterdir())
    assert all(RunFolder(d).info.is_file() for d in runs), runs  # whole, or not there at all
    statuses = {d.name: RunFolder(d).recorded_status() for d in runs}
    assert list(statuses.values()).count("finished") < 4, statuses  # it stopped
    assert "running" not in statuses.values(), statuses
    summary = run_study(path, out=out, executor="ray", address=cluster, quiet=True)
    assert summary.runs_done == 4
    check_each_run_trained_once(out / "runs", RUNS, epochs)
