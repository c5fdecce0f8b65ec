"""The report in a real headless Chromium: it renders, and every image decodes.

Needs Debian's ``chromium`` on PATH (``apt-get install -y chromium``); skipped without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.pipeline import prepare_runs
from cnnlab.report import build_report
from cnnlab.training import train

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (install it: apt-get install -y chromium)"
)
EVIL = "<script>alert(1)</script>"

# Added to the test's own copy of the page only: the report itself has no JavaScript.
PROBE = """<script>
window.addEventListener("load", function () {
  var rows = [];
  document.querySelectorAll("img").forEach(function (img) {
    rows.push(img.complete + " " + img.naturalWidth + " " + img.naturalHeight);
  });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = document.scripts.length + "|" + rows.join(";");
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny Lines run in a folder (and with a run name) that would inject a script."""
    base = tmp_path_factory.mktemp("browser")
    run = base / EVIL
    overrides = ("data.lines={per_class: 10}", "train.epochs=2", f"name={EVIL}")
    tiny = ("model.channels=[8, 16]", "model.dense=[32]")
    train("part2-lines", out=run, overrides=overrides + tiny, quiet=True)
    prepare_runs([run])  # its test evaluation, as cnnlab report makes it first
    return build_report([run], base / "report.html")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
        page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_screenshot_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(report, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000")
    assert shot.is_file()
    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        pixels = np.asarray(image.convert("RGB"))
    grey = pixels.mean(axis=2)
    assert (grey < 128).mean() > 0.005  # text, lines and figures drawn
    assert (grey < 250).any(axis=1).mean() > 0.5  # content down most of the page
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200  # figures, not just text on white


def test_every_image_decodes_and_nothing_runs(report: Path, tmp_path: Path) -> None:
    page = report.read_text()
    expected = len(re.findall(r"<img\s", page))
    # learning curves (2), per-class F1, confusion matrix; where it fails: the top losses with
    # their heatmaps, the confused pairs, the reliability diagram
    assert expected == 4 + 3
    assert "<h3>Where it fails</h3>" in page
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    result = chromium(
        probe,
        tmp_path / "profile",
        "--dump-dom",
        "--virtual-time-budget=10000",
        "--enable-logging=stderr",
        "--v=0",
    )
    found = re.search(r'<pre id="probe">(\d+)\|([^<]*)</pre>', result.stdout)
    assert found, result.stdout[-2000:]
    assert found.group(1) == "1"  # only the probe: the escaped run name did not become a script
    rows = [row.split() for row in found.group(2).split(";")]
    assert len(rows) == expected
    for complete, width, height in rows:
        assert complete == "true" and int(width) > 300 and int(height) > 200
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    assert "Uncaught" not in result.stderr
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in result.stdout
