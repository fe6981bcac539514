"""report.html renders in headless Chromium, with every embedded figure decoded.

Two runs of a fresh browser profile: one takes a screenshot of the report as
written; the other loads a copy with a probe script appended that, after the
window's ``load`` event (which waits for images), writes how many images
decoded into the DOM, which ``--dump-dom`` prints. A rationale holding markup
is shown as text, never run: the probe also says whether its element exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
from test_report_numbers import ExactTask, synthetic_rows, three_recipes

from curator.report import write_report

PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  const marker = document.createElement("pre");
  marker.id = "image-probe";
  const injected = document.getElementById("injected") !== null;
  const shown = document.body.textContent.includes("<script>document.write");
  marker.textContent = `images decoded ${decoded} of ${images.length}; injected ${injected}; shown ${shown}`;
  document.body.appendChild(marker);
});
</script>"""


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium is not installed (apt-get install -y chromium)")


def _run(browser: str, profile, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,3000",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_report_html_renders_with_every_image(tmp_path):
    browser = _browser()
    rows = synthetic_rows()
    rows[0]["rationale"] = "<script>document.write('<p id=injected>')</script> 2 + 2 = 4"
    for row in rows:  # every score of the first question at its best, so its rationale is among the examples
        if row["id"] == rows[0]["id"]:
            row.update(ds=0.5, beta=1.5, answer=row["reference"], vote_answer=row["reference"], vote_share=1.0,
                       entropy=0.0)  # fmt: skip
    files = write_report(three_recipes(rows), tmp_path / "report", task=ExactTask())
    assert "<script>document.write" not in files.html.read_text()
    expected = len(files.figures)
    assert expected >= 6

    shot = tmp_path / "shot.png"
    result = _run(browser, tmp_path / "profile-shot", f"--screenshot={shot}", files.html.as_uri())
    assert shot.exists(), result.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (3000, 1200)
    assert float(np.std(pixels[..., :3])) > 0.05  # not a blank page

    probed = tmp_path / "probed.html"
    probed.write_text(files.html.read_text().replace("</body>", PROBE + "</body>"))
    result = _run(
        browser, tmp_path / "profile-dom", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()
    )
    match = re.search(r"images decoded (\d+) of (\d+); injected (\w+); shown (\w+)", result.stdout)
    assert match, f"probe did not run: {result.stderr[-2000:]}"
    assert (int(match[1]), int(match[2])) == (expected, expected)
    assert (match[3], match[4]) == ("false", "true")
